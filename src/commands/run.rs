//! `gamma-run run JOBFILE`: build what is stale, skip what is fresh, report each output, exit 2 if any failed.

use super::Exit;
use crate::cli::RunArgs;
use crate::error::Result;
use crate::runner::{self, Outcome, RunOptions};

/// Without `--jobs`: one worker, or — when several jobs read from the Hub, whose time goes on waiting for
/// answers — two per connection of the budget (which bounds the requests in flight whatever the worker count):
/// while half of them write, copy or fsync, the other half keep the connections busy. On the 154-revision grid
/// bench, 8 workers took 4.8–5.1 s and 12–24 took 3.8–4.2 s with 8 connections.
fn default_workers(jf: &crate::job::JobFile, cx: &crate::frame::Context) -> usize {
    let from_hub = jf.jobs.iter().filter(|j| matches!(j.source, crate::job::SourceSpec::Hub { .. })).count();
    match &cx.sources.hub {
        Some(hub) if from_hub > 1 => 2 * hub.connections(),
        _ => 1,
    }
}

pub fn execute(args: RunArgs, quiet: bool) -> Result<Exit> {
    let started = std::time::Instant::now();
    let jf = crate::job::load(&args.jobfile)?;
    crate::job::neighbours::check_names(&jf)?;
    for note in &jf.notes {
        tracing::warn!("{note}");
    }
    let root = jf.store.root();
    tracing::info!(workspace = %root.display(), "outputs go to its tensors/ and manifests/");
    if args.dry_run && !quiet {
        crate::report::workspace(root);
    }
    let cx = super::context(&jf, args.offline)?;
    let jf = crate::grid::expand(&jf, cx.sources.hub.as_deref())?;
    let opts = RunOptions {
        force: args.force || args.force_all,
        force_inputs: args.force_all,
        dry_run: args.dry_run,
        only: args.only,
        shard: args.shard,
        jobs: args.jobs.map_or_else(|| default_workers(&jf, &cx), usize::from),
    };
    let reports = runner::run(&jf, &cx, &opts)?;
    let moved = crate::report::Moved { elapsed: started.elapsed(), fetched: crate::progress::fetched() };
    crate::report::run(&reports, args.dry_run, quiet, &moved);
    if !args.dry_run && !quiet {
        let done: Vec<String> = reports
            .iter()
            .filter(|r| r.frame == super::gamma() && matches!(r.outcome, Outcome::Fresh | Outcome::Built { .. }))
            .map(|r| r.name.clone())
            .collect();
        crate::report::duplicates(&super::grid_duplicates(&jf, &done));
    }
    let failed = reports
        .iter()
        .any(|r| !matches!(r.outcome, Outcome::Fresh | Outcome::Built { .. } | Outcome::WouldBuild { .. }));
    Ok(if failed { Exit::Error } else { Exit::Ok })
}
