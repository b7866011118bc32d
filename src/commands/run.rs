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
    let from_hub = jf.jobs.iter().filter(|j| matches!(j.source, crate::source::SourceSpec::Hub { .. })).count();
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
        crate::report::run::workspace(root);
    }
    let cx = super::context(&jf, args.offline)?;
    let jf = crate::grid::expand(&jf, cx.sources.hub.as_deref())?;
    // Neither pulling nor pushing, or `--offline` without a remote named for this run: none is opened (offline
    // touches no network; the job file's remote waits for the next online run).
    let remote = if (args.no_pull && args.no_push) || (args.offline && args.remote.remote.is_none()) {
        if args.offline && jf.remote.is_some() {
            tracing::info!("--offline: the job file's remote store is not used");
        }
        None
    } else {
        super::remote(args.remote.remote.as_deref(), &jf)?
    };
    let opts = RunOptions {
        pull: !args.no_pull,
        push: !args.no_push,
        no_build: args.no_build,
        require_attestation: args.trust.verifier(),
        remote: remote.clone(),
        force: args.force || args.force_all,
        force_inputs: args.force_all,
        dry_run: args.dry_run,
        only: args.only,
        shard: args.shard,
        jobs: args.jobs.map_or_else(|| default_workers(&jf, &cx), usize::from),
    };
    let reports = runner::run(&jf, &cx, &opts)?;
    if let Some(e) = unwritable(&reports, jf.store.root()) {
        return Err(e);
    }
    let moved = crate::report::run::Moved {
        elapsed: started.elapsed(),
        fetched: crate::progress::fetched(),
        remote: remote.is_some(),
    };
    crate::report::run::run(&reports, args.dry_run, quiet, &moved);
    if !args.dry_run && !quiet {
        let done: Vec<String> = reports
            .iter()
            .filter(|r| {
                r.frame == super::gamma()
                    && matches!(r.outcome, Outcome::Fresh | Outcome::Built { .. } | Outcome::Pulled { .. })
            })
            .map(|r| r.name.clone())
            .collect();
        crate::report::status::duplicates(&super::grid_duplicates(&jf, &done));
    }
    let failed = reports.iter().any(|r| {
        !matches!(
            r.outcome,
            Outcome::Fresh
                | Outcome::Built { .. }
                | Outcome::Pulled { .. }
                | Outcome::WouldBuild { .. }
                | Outcome::WouldPull { .. }
        ) || matches!(r.pushed, Some(Err(_)))
    });
    Ok(if failed { Exit::Error } else { Exit::Ok })
}

/// One error instead of a line per output when every output that failed did so for the same reason: a path of
/// the workspace that cannot be written (a read-only mount, no permission) — what was being created, and what to
/// do.
fn unwritable(reports: &[runner::Report], root: &std::path::Path) -> Option<crate::error::Error> {
    use std::io::ErrorKind::{PermissionDenied, ReadOnlyFilesystem};
    let failed: Vec<&crate::error::Error> = reports
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Failed(e) => Some(e),
            _ => None,
        })
        .collect();
    let paths: Vec<&std::path::Path> = failed
        .iter()
        .filter_map(|e| match e {
            crate::error::Error::Io { path, source }
                if matches!(source.kind(), PermissionDenied | ReadOnlyFilesystem) =>
            {
                Some(path.as_path())
            }
            _ => None,
        })
        .collect();
    let first = *paths.first()?;
    if failed.len() < 2 || paths.len() != failed.len() || paths.iter().any(|p| *p != first) || !first.starts_with(root)
    {
        return None;
    }
    let why = match &failed[0] {
        crate::error::Error::Io { source, .. } => source.to_string(),
        _ => String::new(),
    };
    Some(crate::error::Error::Usage(format!(
        "cannot create {} ({why}): the workspace {} cannot be written here, so none of the {} outputs to build \
         could be; run where it can be written, or point `output:` at a writable directory",
        first.display(),
        root.display(),
        failed.len()
    )))
}
