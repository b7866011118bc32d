//! What `status` prints — the table, JSON and markdown — with the grids' duplicate groups, and what `lock` pinned.

use super::shown_path;
use crate::manifest::freshness::State;
use crate::runner::Row;
use crate::store::Store;
use crate::text::{md, plain};
use serde_json::json;

fn state_words(state: &Result<State, crate::error::Error>) -> (&'static str, Vec<String>) {
    match state {
        Ok(State::Fresh) => ("fresh", vec![]),
        Ok(State::Missing) => ("missing", vec!["never built".into()]),
        Ok(State::Stale(r)) => ("stale", r.clone()),
        Err(e) => ("error", vec![e.to_string()]),
    }
}

/// The status table; with `quiet`, only the outputs that are not fresh (nothing when all are, as `dvc status -q`).
pub(crate) fn status_table(rows: &[Row], quiet: bool) {
    for r in rows {
        let synced =
            r.remote.is_none_or(|p| matches!(p, crate::remote::Presence::Both | crate::remote::Presence::NotShared));
        if quiet && matches!(r.state, Ok(State::Fresh)) && synced {
            continue;
        }
        let (state, reasons) = state_words(&r.state);
        let id = format!("{}/{}", r.name, r.frame);
        let mut notes = if r.notes.is_empty() { String::new() } else { format!("  ({})", plain(&r.notes.join("; "))) };
        if let Some(p) = r.remote {
            notes.push_str(&format!("  [remote: {}]", p.as_str()));
        }
        if reasons.is_empty() {
            out!("{state:<8} {id}{notes}");
        } else {
            out!("{state:<8} {id}: {}{notes}", plain(&reasons.join("; ")));
        }
    }
}

pub(crate) fn status_json(rows: &[Row], store: &Store, dups: &[crate::grid::Duplicates]) {
    let items: Vec<_> = rows
        .iter()
        .map(|r| {
            let (state, reasons) = state_words(&r.state);
            let m = r.manifest.as_ref();
            let mut row = json!({
                "name": r.name,
                "frame": r.frame,
                "state": state,
                "reasons": reasons,
                "notes": r.notes,
                "output": store.relative_to_root(&r.output_path),
                "manifest": store.relative_to_root(&r.manifest_path),
                "commit": m.and_then(|m| m.source.as_ref()).and_then(|s| s.commit.clone()),
                "sha256": m.map(|m| m.output.sha256.clone()),
                "same_w_as": dups
                    .iter()
                    .filter(|g| r.frame == crate::frame::GAMMA_NAME && g.names.contains(&r.name))
                    .flat_map(|g| g.names.iter().filter(|n| **n != r.name).cloned())
                    .collect::<Vec<_>>(),
            });
            // Only with `--remote`: where it stands against the remote store.
            if let Some(p) = r.remote {
                row["remote"] = p.as_str().into();
            }
            row
        })
        .collect();
    out!("{}", serde_json::to_string_pretty(&items).expect("json"));
}

/// A markdown table for CI job summaries and pull-request comments; commits link to the Hub's tree.
pub(crate) fn status_markdown(
    rows: &[Row],
    store: &Store,
    endpoint: &str,
    dups: &[crate::grid::Duplicates],
    stats: &[(String, crate::frame::stats_summary::Summary)],
) {
    let (fresh, total) = (rows.iter().filter(|r| matches!(r.state, Ok(State::Fresh))).count(), rows.len());
    out!("### gamma-run status: {fresh} of {total} outputs fresh\n");
    out!("| output | state | why | source | sha256 |");
    out!("|---|---|---|---|---|");
    for r in rows {
        let (state, reasons) = state_words(&r.state);
        let icon = match state {
            "fresh" => "✅ fresh",
            "stale" => "🔄 stale",
            "missing" => "➕ missing",
            _ => "❌ error",
        };
        let m = r.manifest.as_ref();
        let source = match m.and_then(|m| m.source.as_ref()) {
            Some(s) => match (&s.repo, &s.commit) {
                // A link only for a repo id and a commit that are what they should be (a manifest may be edited).
                (Some(repo), Some(c)) if crate::names::is_commit(c) && crate::names::check_repo_id(repo).is_ok() => {
                    format!("[{}@{}]({endpoint}/{repo}/tree/{c})", md(repo), c.chars().take(8).collect::<String>())
                }
                (Some(repo), _) => md(repo),
                _ => format!("local {}", md(s.path.as_deref().unwrap_or("?"))),
            },
            None => m
                .map(|m| m.inputs.iter().map(|i| format!("← {}", i.frame)).collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
        };
        let sha = m
            .map(|m| match crate::names::is_hex(&m.output.sha256, 64) {
                true => format!("`{}…`", &m.output.sha256[..12]),
                false => md(&m.output.sha256),
            })
            .unwrap_or_default();
        let why = md(&reasons.iter().chain(&r.notes).cloned().collect::<Vec<_>>().join("; "));
        out!("| {} | {icon} | {why} | {source} | {sha} |", md(&store.relative_to_root(&r.output_path)));
    }
    if !dups.is_empty() {
        out!("\n#### Revisions with byte-identical W\n");
        out!("| grid | revisions | W sha256 | files |");
        out!("|---|---|---|---|");
        for g in dups {
            let revs: Vec<&str> = g.names.iter().map(|n| n.split_once('@').map_or(n.as_str(), |(_, r)| r)).collect();
            let files = if g.files_differ { "differ" } else { "identical" };
            let sha = &g.sha256[..12.min(g.sha256.len())];
            out!("| {} | {} | `{}…` | {files} |", md(&g.grid), md(&revs.join(", ")), md(sha));
        }
    }
    if !stats.is_empty() {
        out!("\n#### Token statistics\n");
        out!(
            "| output | rows × d | zero rows | duplicate groups (rows; largest) | norm median [min, max] | outliers | distinct values | non-finite | subnormals |"
        );
        out!("|---|---|---|---|---|---|---|---|---|");
        for (name, s) in stats {
            let largest =
                s.duplicate_groups.first().map_or(String::new(), |g| format!("; {} from row {}", g.size, g.first_row));
            out!(
                "| {} | {} × {} | {} | {} ({}{largest}) | {:.4} [{:.4}, {:.4}] | {} | {} | {} | {} |",
                md(name),
                s.rows,
                s.columns,
                s.zero_rows,
                s.duplicate_group_count,
                s.rows_in_duplicate_groups,
                s.norm.median,
                s.norm.min,
                s.norm.max,
                s.outliers.count,
                s.distinct_values,
                s.nonfinite_values,
                s.subnormal_values
            );
        }
    }
}

/// The grids' duplicate groups: revisions whose W is byte-identical.
pub(crate) fn duplicates(groups: &[crate::grid::Duplicates]) {
    for g in groups {
        let revs: Vec<&str> = g.names.iter().map(|n| n.split_once('@').map_or(n.as_str(), |(_, r)| r)).collect();
        let files = if g.files_differ { "different files, the same W" } else { "the same shard file" };
        out!(
            "same W   {}: {} ({} revisions; W sha256 {}…; {files})",
            plain(&g.grid),
            plain(&revs.join(" = ")),
            g.names.len(),
            &g.sha256[..12.min(g.sha256.len())]
        );
    }
}

/// What `lock` pinned.
pub(crate) fn locked(path: &std::path::Path, lock: &crate::grid::Lock) {
    for (name, g) in &lock.grids {
        out!("locked   {name}: {} revisions of {}", g.revisions.len(), plain(&g.repo));
    }
    for (name, p) in &lock.pins {
        out!("locked   {name}: {} {} → {}", plain(&p.repo), plain(&p.revision), plain(&p.commit));
    }
    out!("wrote    {}", plain(&shown_path(path)));
}
