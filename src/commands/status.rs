//! `gamma-run status JOBFILE`: each output's state without building anything; `--check` exits 1 if any is
//! stale or missing; `--format json` (or `--json`) prints the stable schema in the README, `--format markdown` a
//! table for CI job summaries and PR comments.

use super::Exit;
use crate::cli::{Format, StatusArgs};
use crate::error::Result;
use crate::manifest::freshness::State;
use crate::runner;

pub fn execute(args: StatusArgs, quiet: bool) -> Result<Exit> {
    let jf = crate::job::load(&args.jobfile)?;
    crate::job::neighbours::check_names(&jf)?;
    for note in &jf.notes {
        tracing::warn!("{note}");
    }
    let cx = super::context(&jf, args.offline)?;
    let jf = crate::grid::expand(&jf, cx.sources.hub.as_deref())?;
    let mut rows = runner::status(&jf, &cx, &args.only, args.shard)?;
    let remote = match &args.remote {
        // `--remote` alone: GAMMA_RUN_REMOTE, else the job file's.
        Some(url) => {
            let env = std::env::var("GAMMA_RUN_REMOTE").ok();
            let url = if url.is_empty() { env.as_deref() } else { Some(url.as_str()) };
            Some(super::pull::required(url, &jf, "compare with")?)
        }
        None => None,
    };
    if let Some(remote) = &remote {
        let index = remote.index()?;
        for r in &mut rows {
            let local = match (&r.state, &r.manifest) {
                (Ok(State::Fresh), Some(m)) => Some(m.output.sha256.as_str()),
                _ => None,
            };
            let held = r.fingerprint.as_deref().and_then(|f| index.holds(f));
            r.remote = Some(match (r.shareable, &r.fingerprint) {
                (false, _) => crate::remote::Presence::NotShared,
                (true, None) => crate::remote::Presence::Unknown,
                (true, Some(_)) => crate::remote::Presence::of(local, held),
            });
        }
    }
    let format = if args.json { Format::Json } else { args.format };
    let fresh: Vec<String> = rows
        .iter()
        .filter(|r| r.frame == super::gamma() && matches!(r.state, Ok(State::Fresh)))
        .map(|r| r.name.clone())
        .collect();
    let dups = super::grid_duplicates(&jf, &fresh);
    match format {
        Format::Table => {
            crate::report::status::status_table(&rows, quiet);
            if !quiet {
                crate::report::status::duplicates(&dups);
            }
        }
        Format::Json => crate::report::status::status_json(&rows, &cx.store, &dups),
        Format::Markdown => {
            // Headline numbers of fresh token_stats outputs (a file that cannot be read is left out, not an error).
            let stats: Vec<(String, crate::frame::stats_summary::Summary)> = rows
                .iter()
                .filter(|r| r.frame == "token_stats" && matches!(r.state, Ok(State::Fresh)))
                .filter_map(|r| Some((r.name.clone(), crate::frame::stats_summary::summarize(&r.output_path).ok()?)))
                .collect();
            crate::report::status::status_markdown(&rows, &cx.store, &hub_endpoint(), &dups, &stats);
        }
    }
    if rows.iter().any(|r| r.state.is_err()) {
        return Ok(Exit::Error);
    }
    let stale = rows.iter().any(|r| {
        !matches!(r.state, Ok(State::Fresh))
            || r.remote
                .is_some_and(|p| !matches!(p, crate::remote::Presence::Both | crate::remote::Presence::NotShared))
    });
    Ok(if args.check && stale { Exit::Found } else { Exit::Ok })
}

/// Where commit links point: `HF_ENDPOINT`, read as the Hub client reads it.
fn hub_endpoint() -> String {
    crate::hub::HubSettings::endpoint(&|k| std::env::var(k).ok())
}
