//! `gamma-run pull JOBFILE`: every selected output that is not fresh here and that the remote store holds under
//! the fingerprint it would have now is pulled, verified before it is stored; nothing is built. An output the
//! remote does not hold (or holds only in a form that fails a check) fails, and the exit code says so.

use super::Exit;
use crate::cli::PullArgs;
use crate::error::{Error, Result};
use crate::runner::{Outcome, RunOptions};

pub fn execute(args: PullArgs, quiet: bool) -> Result<Exit> {
    let require_attestation = args.trust.verifier();
    let args = args.common;
    let started = std::time::Instant::now();
    let jf = crate::job::load(&args.jobfile)?;
    crate::job::neighbours::check_names(&jf)?;
    let cx = super::context(&jf, args.offline)?;
    let jf = crate::grid::expand(&jf, cx.sources.hub.as_deref())?;
    let remote = required(args.remote.remote.as_deref(), &jf, "pull")?;
    let opts = RunOptions {
        only: args.only,
        shard: args.shard,
        jobs: usize::from(args.jobs),
        remote: Some(remote),
        pull: true,
        no_build: true,
        require_attestation,
        ..RunOptions::default()
    };
    let reports = crate::runner::run(&jf, &cx, &opts)?;
    let moved =
        crate::report::run::Moved { elapsed: started.elapsed(), fetched: crate::progress::fetched(), remote: true };
    crate::report::run::run(&reports, false, quiet, &moved);
    let failed = reports.iter().any(|r| !matches!(r.outcome, Outcome::Fresh | Outcome::Pulled { .. }));
    Ok(if failed { Exit::Error } else { Exit::Ok })
}

/// The remote `push` and `pull` work with: one must be named, and reachable (an error otherwise, whichever way
/// it was named: these commands do nothing else).
pub(crate) fn required(
    given: Option<&str>,
    jf: &crate::job::JobFile,
    command: &str,
) -> Result<std::sync::Arc<crate::remote::Remote>> {
    let remote = crate::remote::from_args(given, jf.remote.as_deref())?.ok_or_else(|| {
        Error::Usage(format!(
            "{}: no remote store to {command}: give --remote URL, set GAMMA_RUN_REMOTE, or add `output: {{remote: \
             s3://BUCKET/PREFIX}}` to the job file",
            jf.path.display()
        ))
    })?;
    remote.reachable()?;
    Ok(remote)
}
