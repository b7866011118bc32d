//! `gamma-run lock JOBFILE`: pins every grid's revisions to their commits, from one refs listing per repo, in
//! `<jobfile>.lock.json` beside the job file — so the grid is judged (and, with the HF cache or the outputs,
//! built) with no network, the way a lock file pins dependencies. Delete it, or run `lock` again, to move on.

use super::Exit;
use crate::cli::LockArgs;
use crate::error::{Error, Result};

pub fn execute(args: LockArgs) -> Result<Exit> {
    let jf = crate::job::load(&args.jobfile)?;
    let cx = super::context(&jf, false)?;
    let Some(hub) = cx.sources.hub.as_deref() else {
        return Err(Error::Usage(format!("{}: no `model:` job with `revisions:` to lock", args.jobfile.display())));
    };
    let (path, lock) = crate::grid::lock(&jf, hub)?;
    if lock.grids.is_empty() {
        return Err(Error::Usage(format!("{}: no job with `revisions:` to lock", args.jobfile.display())));
    }
    let mut bytes = serde_json::to_vec_pretty(&lock).expect("json");
    bytes.push(b'\n');
    crate::store::write_atomic(&path, &bytes)?;
    crate::report::locked(&path, &lock);
    Ok(Exit::Ok)
}
