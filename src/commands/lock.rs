//! `gamma-run lock JOBFILE`: pins every grid's revisions to their commits, from one refs listing per repo, in
//! `<jobfile>.lock.json` beside the job file — so the grid is judged (and, with the HF cache or the outputs,
//! built) with no network, the way a lock file pins dependencies. Delete it, or run `lock` again, to move on.

use super::Exit;
use crate::cli::LockArgs;
use crate::error::{Error, Result};

pub fn execute(args: LockArgs) -> Result<Exit> {
    let jf = crate::job::load(&args.jobfile)?;
    let cx = super::context(&jf, false)?;
    let grids = jf
        .jobs
        .iter()
        .filter(|j| matches!(j.source, crate::source::SourceSpec::Hub { .. }))
        .map(|j| j.grid.as_ref().map_or(j.name.as_str(), |g| g.base.as_str()))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let Some(hub) = cx.sources.hub.as_deref() else {
        if grids > 0 {
            return Err(Error::Usage(format!(
                "{}: locking asks the Hub for the commits of its {grids} Hub job(s), and this run is offline \
                 (HF_HUB_OFFLINE is set): run `gamma-run lock` where the Hub (or HF_ENDPOINT's mirror) is reachable",
                args.jobfile.display()
            )));
        }
        return Err(Error::Usage(format!("{}: no `model:` job to lock", args.jobfile.display())));
    };
    let (path, lock) = crate::grid::lock(&jf, hub)?;
    if lock.grids.is_empty() && lock.pins.is_empty() {
        return Err(Error::Usage(format!("{}: no Hub job with a branch or tag to lock", args.jobfile.display())));
    }
    let mut bytes = serde_json::to_vec_pretty(&lock).expect("json");
    bytes.push(b'\n');
    crate::store::write_atomic(&path, &bytes)?;
    crate::report::status::locked(&path, &lock);
    Ok(Exit::Ok)
}
