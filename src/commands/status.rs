//! `gamma-run status JOBFILE`: each output's state without building anything; `--check` exits 1 if any is
//! stale or missing, `--json` prints a machine-readable list.

use super::Exit;
use crate::cli::StatusArgs;
use crate::error::Result;
use crate::manifest::freshness::State;
use crate::runner;

pub fn execute(args: StatusArgs) -> Result<Exit> {
    let jf = crate::job::load(&args.jobfile)?;
    let cx = super::context(&jf, args.offline)?;
    let rows = runner::status(&jf, &cx, &args.only)?;
    if args.json {
        crate::report::status_json(&rows, &cx.store);
    } else {
        crate::report::status_table(&rows);
    }
    if rows.iter().any(|r| r.state.is_err()) {
        return Ok(Exit::Error);
    }
    let stale = rows.iter().any(|r| !matches!(r.state, Ok(State::Fresh)));
    Ok(if args.check && stale { Exit::Found } else { Exit::Ok })
}
