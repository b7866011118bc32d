//! All user-facing output of the commands: run summaries, the status table and JSON, verify results.
//! Commands hand their results here; nothing else prints to stdout.

use crate::commands::verify::Checked;
use crate::manifest::freshness::State;
use crate::runner::{Outcome, Report, Row};
use crate::store::Store;
use serde_json::json;

pub fn run(reports: &[Report], dry_run: bool) {
    let (mut built, mut fresh, mut failed) = (0, 0, 0);
    for r in reports {
        for w in &r.warnings {
            tracing::warn!(name = %r.name, frame = r.frame, "{w}");
        }
        let id = format!("{}/{}", r.name, r.frame);
        match &r.outcome {
            Outcome::Fresh => {
                fresh += 1;
                println!("fresh    {id}");
            }
            Outcome::Built { reasons, sha256, size } => {
                built += 1;
                println!("built    {id}  ({})  {size} bytes  sha256 {sha256}", reasons.join("; "));
            }
            Outcome::WouldBuild { reasons } => {
                built += 1;
                println!("would build {id}  ({})", reasons.join("; "));
            }
            Outcome::Failed(e) => {
                failed += 1;
                println!("FAILED   {id}: {e}");
            }
            Outcome::Skipped(why) => {
                failed += 1;
                println!("SKIPPED  {id}: {why}");
            }
        }
    }
    let verb = if dry_run { "to build" } else { "built" };
    println!("{built} {verb}, {fresh} fresh, {failed} failed");
}

fn state_words(state: &Result<State, crate::error::Error>) -> (&'static str, Vec<String>) {
    match state {
        Ok(State::Fresh) => ("fresh", vec![]),
        Ok(State::Missing) => ("missing", vec!["never built".into()]),
        Ok(State::Stale(r)) => ("stale", r.clone()),
        Err(e) => ("error", vec![e.to_string()]),
    }
}

pub fn status_table(rows: &[Row]) {
    for r in rows {
        let (state, reasons) = state_words(&r.state);
        let id = format!("{}/{}", r.name, r.frame);
        if reasons.is_empty() {
            println!("{state:<8} {id}");
        } else {
            println!("{state:<8} {id}: {}", reasons.join("; "));
        }
    }
}

pub fn status_json(rows: &[Row], store: &Store) {
    let items: Vec<_> = rows
        .iter()
        .map(|r| {
            let (state, reasons) = state_words(&r.state);
            let m = r.manifest.as_ref();
            json!({
                "name": r.name,
                "frame": r.frame,
                "state": state,
                "reasons": reasons,
                "output": store.relative_to_root(&r.output_path),
                "manifest": store.relative_to_root(&r.manifest_path),
                "commit": m.and_then(|m| m.source.as_ref()).and_then(|s| s.commit.clone()),
                "sha256": m.map(|m| m.output.sha256.clone()),
            })
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&items).expect("json"));
}

pub fn verify(checked: &[Checked], as_json: bool) {
    if as_json {
        let items: Vec<_> = checked
            .iter()
            .map(|c| json!({"manifest": c.manifest, "output": c.output, "ok": c.problem.is_none(), "problem": c.problem}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&items).expect("json"));
        return;
    }
    for c in checked {
        let out = c.output.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        match &c.problem {
            None => println!("ok        {out}"),
            Some(p) => println!("MISMATCH  {} ({out}): {p}", c.manifest.display()),
        }
    }
    let bad = checked.iter().filter(|c| c.problem.is_some()).count();
    println!("{} verified, {bad} mismatched", checked.len() - bad);
}
