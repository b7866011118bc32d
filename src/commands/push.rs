//! `gamma-run push JOBFILE`: every selected output that is fresh here is pushed to the remote store (bytes, then
//! the index entry), in parallel; one the remote already holds is not sent again. An output that is not fresh is
//! not pushed (run it first): exit 1, as `status --check` says something is stale; a push that fails: exit 2.

use super::Exit;
use crate::cli::PushArgs;
use crate::error::Result;
use crate::manifest::freshness::State;
use crate::remote::push::Line;
use rayon::prelude::*;

pub fn execute(args: PushArgs, quiet: bool) -> Result<Exit> {
    let jf = crate::job::load(&args.jobfile)?;
    crate::job::neighbours::check_names(&jf)?;
    let cx = super::context(&jf, args.offline)?;
    let jf = crate::grid::expand(&jf, cx.sources.hub.as_deref())?;
    let remote = super::pull::required(args.remote.remote.as_deref(), &jf, "push to")?;
    let rows = crate::runner::status(&jf, &cx, &args.only, args.shard)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(usize::from(args.jobs))
        .build()
        .map_err(|e| crate::error::Error::Usage(format!("cannot start {} workers: {e}", args.jobs)))?;
    let results: Vec<(String, Line)> = pool.install(|| {
        rows.par_iter()
            .map(|r| {
                let id = format!("{}/{}", r.name, r.frame);
                let line = match (&r.state, &r.manifest) {
                    (Ok(State::Fresh), Some(m)) => match remote.push(m, &r.output_path, jf.store.root()) {
                        Ok(p) => Line::Pushed(p),
                        Err(e) => Line::Failed(crate::redact::redact(&e.to_string()).into_owned()),
                    },
                    (Ok(State::Fresh), None) => Line::Failed("fresh, but its manifest could not be read".into()),
                    (Ok(State::Missing), _) => Line::NotFresh("not built here; run it first".into()),
                    (Ok(State::Stale(why)), _) => Line::NotFresh(format!("stale ({}); run it first", why.join("; "))),
                    (Err(e), _) => Line::Failed(e.to_string()),
                };
                (id, line)
            })
            .collect()
    });
    let report = crate::report::remote::pushed(&results, remote.shown(), quiet);
    Ok(if report.failed > 0 {
        Exit::Error
    } else if report.not_fresh > 0 {
        Exit::Found
    } else {
        Exit::Ok
    })
}
