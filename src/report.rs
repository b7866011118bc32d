//! All user-facing output of the commands: run summaries, the status table and JSON, verify results.
//! Commands hand their results here; nothing else prints to stdout. Names and messages can come from
//! checkpoints anyone can publish: human output shows their control characters escaped (`plain`), markdown
//! escapes its own syntax too (`md`), JSON is JSON-escaped by serde.

use crate::manifest::Manifest;
use crate::manifest::freshness::State;
use crate::runner::{Outcome, Report, Row};
use crate::store::Store;
use crate::text::{md, plain};

/// `println!` to stdout, except that a closed stdout (`gamma-run status --format json | head`) is not an error:
/// printing stops quietly, the command finishes its work (nothing is left half-written) and `main` decides the
/// exit (`stdout_state`), as other Unix tools do, instead of panicking or exiting mid-command. (SIGPIPE stays
/// ignored: restoring it would also kill the process when the Hub closes a connection under a write.)
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::report::emit(&format!($($arg)*))
    };
}

/// One line to stdout (see `out!`).
pub(crate) fn emit(line: &str) {
    // Every line printed passes the redactor too (an error may quote what a server said).
    emit_bytes(format!("{}\n", crate::redact::redact(line)).as_bytes());
}

/// What became of stdout: still open, closed by the reader, or failing (the first error, said once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StdoutState {
    Open,
    Closed,
    Failed(String),
}

static STDOUT: std::sync::Mutex<Option<StdoutState>> = std::sync::Mutex::new(None);

/// Whether stdout took everything printed (`main` turns `Failed` into an error exit).
pub fn stdout_state() -> StdoutState {
    STDOUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone().unwrap_or(StdoutState::Open)
}

/// Bytes to stdout; once stdout is closed or failing, nothing more is written.
pub(crate) fn emit_bytes(bytes: &[u8]) {
    use std::io::Write;
    let mut state = STDOUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if state.is_some() {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => *state = Some(StdoutState::Closed),
        Err(e) => *state = Some(StdoutState::Failed(format!("writing to stdout: {e}"))),
    }
}
use serde_json::json;
use std::path::PathBuf;

/// One manifest's verdict.
pub(crate) struct Checked {
    pub(crate) manifest: PathBuf,
    pub(crate) output: Option<PathBuf>,
    pub(crate) problem: Option<Problem>,
    /// What was checked beyond the file's size, hash and header (recomputed, sources re-read), said with `ok`.
    pub(crate) also: Vec<String>,
}

/// Why a manifest did not verify.
pub(crate) enum Problem {
    /// The bytes (or the manifest) are not what the manifest says: exit 1.
    Mismatch(String),
    /// It could not be checked (a source unreadable, the Hub unreachable): exit 2.
    Error(String),
}

impl Problem {
    pub(crate) fn text(&self) -> &str {
        match self {
            Problem::Mismatch(s) | Problem::Error(s) => s,
        }
    }
}

/// What `show` found, for the report.
pub(crate) struct Shown {
    pub(crate) file: PathBuf,
    pub(crate) manifest_path: Option<PathBuf>,
    pub(crate) manifest: Option<Manifest>,
    /// The file's own header: (tensor, dtype, shape) in file order.
    pub(crate) tensors: Vec<(String, String, Vec<u64>)>,
    pub(crate) size: u64,
    pub(crate) sha256: String,
    pub(crate) matches: bool,
    /// For a `token_stats` file: its summary.
    pub(crate) stats: Option<crate::frame::stats_summary::Summary>,
}

/// What a run took: its wall time and the bytes it fetched from the Hub.
pub(crate) struct Moved {
    pub(crate) elapsed: std::time::Duration,
    pub(crate) fetched: u64,
}

/// The run's result lines and summary; with `quiet`, only failed and skipped outputs (and then the summary).
/// The summary ends with the elapsed time and the bytes moved: fetched from the Hub, written to outputs.
/// What `init` wrote, and where its outputs will go.
pub(crate) fn initialised(path: &std::path::Path, root: &std::path::Path) {
    out!("wrote    {}", plain(&shown_path(path)));
    out!(
        "outputs  {}/tensors and {}/manifests (edit the jobs, then: gamma-run {})",
        plain(&root.display().to_string()),
        plain(&root.display().to_string()),
        plain(&shown_path(path))
    );
}

/// The workspace a run writes into (a dry run's first line).
pub(crate) fn workspace(root: &std::path::Path) {
    out!("workspace {}  (tensors/, manifests/)", plain(&root.display().to_string()));
}

pub(crate) fn run(reports: &[Report], dry_run: bool, quiet: bool, moved: &Moved) {
    let (mut built, mut fresh, mut failed, mut skipped, mut written) = (0, 0, 0, 0, 0u64);
    for r in reports {
        if let Outcome::Built { warnings, .. } = &r.outcome {
            for w in warnings {
                tracing::warn!(name = %r.name, frame = r.frame, "{}", plain(w));
            }
        }
        let id = format!("{}/{}", r.name, r.frame);
        match &r.outcome {
            Outcome::Fresh => {
                fresh += 1;
                if !quiet {
                    out!("fresh    {id}");
                }
            }
            Outcome::Built { reasons, sha256, size, path, .. } => {
                built += 1;
                written += size;
                let at = plain(&shown_path(path)).into_owned();
                if !quiet {
                    // A short line (12 hex digits, as the markdown table has); `show` and `--json` give the whole.
                    let short = sha256.get(..12).unwrap_or(sha256);
                    let size = human_bytes(*size);
                    out!("built    {id}  ({})  {size}  sha256 {short}…  → {at}", plain(&reasons.join("; ")));
                }
            }
            Outcome::WouldBuild { reasons, reads, transfer, same_bytes } => {
                built += 1;
                let mut moves = match (transfer, reads) {
                    (Some(t), _) => transfer_words(t),
                    (None, Some(n)) => format!("reads its inputs ({})", human_bytes(*n)),
                    (None, None) => "reads its inputs once they are rebuilt".into(),
                };
                if *same_bytes {
                    moves.push_str("; W is unchanged (same tensor, range and shard), so its bytes will not change");
                }
                if !quiet {
                    out!("would build {id}  ({}); {moves}", plain(&reasons.join("; ")));
                }
            }
            Outcome::Failed(e) => {
                failed += 1;
                out!("FAILED   {id}: {}", plain(&crate::redact::redact(&e.to_string())));
            }
            Outcome::Skipped(why) => {
                skipped += 1;
                out!("SKIPPED  {id}: {}", plain(why));
            }
            // Settled by the runner before it reports (run again, or rebuilt first); said as it is if one remains.
            Outcome::Deferred { by } => {
                skipped += 1;
                out!("SKIPPED  {id}: waited for {} to fetch the same W", plain(by));
            }
            Outcome::InputChanged { input, message, .. } => {
                failed += 1;
                out!("FAILED   {id}: input {input}: {}", plain(message));
            }
        }
    }
    let verb = if dry_run { "to build" } else { "built" };
    let skipped = if skipped > 0 { format!(", {skipped} skipped") } else { String::new() };
    let secs = moved.elapsed.as_secs_f64();
    let took = if dry_run {
        format!("in {secs:.2} s; {} fetched from the Hub", human_bytes(moved.fetched))
    } else {
        format!("in {secs:.2} s; {} fetched from the Hub, {} written", human_bytes(moved.fetched), human_bytes(written))
    };
    if !quiet || failed > 0 || !skipped.is_empty() {
        out!("{built} {verb}, {fresh} fresh, {failed} failed{skipped}  ({took})");
    }
}

/// "fetches W's byte range (1.0 MiB) from the Hub", and the like: what a dry run's output would move.
fn transfer_words(t: &crate::source::Transfer) -> String {
    use crate::manifest::FetchMode;
    let w = human_bytes(t.w_bytes);
    match t.fetch {
        FetchMode::Local => format!("reads W ({w}) from the local checkpoint; no network"),
        FetchMode::Cache => format!("reads W ({w}) from the HF cache; no network"),
        FetchMode::Range => format!("fetches W's byte range ({w}) of {} from the Hub", t.shard),
        FetchMode::Shared => format!("copies W ({w}) from another output of its grid; no network"),
        FetchMode::Full if t.download == 0 => {
            format!("{} is in the HF cache's blobs already (re-hashed before use); reads W ({w}) from it", t.shard)
        }
        FetchMode::Full => format!(
            "downloads all of {} ({}) into the HF cache (fetch: full), then reads W ({w}) from it",
            t.shard,
            human_bytes(t.download)
        ),
    }
}

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
        if quiet && matches!(r.state, Ok(State::Fresh)) {
            continue;
        }
        let (state, reasons) = state_words(&r.state);
        let id = format!("{}/{}", r.name, r.frame);
        let notes = if r.notes.is_empty() { String::new() } else { format!("  ({})", plain(&r.notes.join("; "))) };
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
            json!({
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
            })
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

fn shown_json(s: &Shown) -> serde_json::Value {
    json!({
        "file": s.file, "size": s.size, "sha256": s.sha256, "matches_manifest": s.matches,
        "tensors": s.tensors.iter().map(|(n, d, sh)| json!({"name": n, "dtype": d, "shape": sh})).collect::<Vec<_>>(),
        "manifest_path": s.manifest_path, "manifest": s.manifest, "stats": s.stats,
    })
}

/// Several outputs (a job file's): each as `show` shows one, separated by a blank line; JSON, an array.
/// `show` of a stats file: the headline numbers first.
fn stats_summary(s: &crate::frame::stats_summary::Summary) {
    let row = |k: &str, v: String| out!("{k:<16} {}", plain(&v));
    let listed = |rows: &[(u64, f64)]| rows.iter().map(|(r, x)| format!("{r} ({x:.4})")).collect::<Vec<_>>().join(", ");
    row("rows", format!("{} × {}", s.rows, s.columns));
    row("zero rows", s.zero_rows.to_string());
    let largest: Vec<String> =
        s.duplicate_groups.iter().map(|g| format!("{} rows from row {}", g.size, g.first_row)).collect();
    row(
        "duplicate groups",
        match s.duplicate_group_count {
            0 => "none (every row's bytes are unique)".into(),
            n => format!("{n} ({} rows in all; largest: {})", s.rows_in_duplicate_groups, largest.join("; ")),
        },
    );
    let n = &s.norm;
    row("norm", format!("min {:.4}  q1 {:.4}  median {:.4}  q3 {:.4}  max {:.4}", n.min, n.q1, n.median, n.q3, n.max));
    row("smallest norms", listed(&n.smallest_rows));
    row("largest norms", listed(&n.largest_rows));
    let o = &s.outliers;
    row(
        "norm outliers",
        format!(
            "{} rows more than {} MADs (MAD {:.4}) from the median{}",
            o.count,
            crate::frame::stats_summary::OUTLIER_MADS,
            o.mad,
            if o.rows.is_empty() { String::new() } else { format!(": {}", listed(&o.rows)) }
        ),
    );
    row("distinct values", format!("{} of 65536 bf16 patterns", s.distinct_values));
    row("non-finite", format!("{} values in {} rows", s.nonfinite_values, s.nonfinite_rows));
    row("subnormals", format!("{} values in {} rows", s.subnormal_values, s.subnormal_rows));
    let top = s.exponents.iter().map(|e| e.1).max().unwrap_or(1).max(1);
    for (i, (label, count)) in s.exponents.iter().enumerate() {
        let bar = "█".repeat(((count * 30).div_ceil(top)) as usize);
        row(if i == 0 { "exponents" } else { "" }, format!("{label:>12} {bar} {count}"));
    }
    out!("");
}

pub(crate) fn show_all(all: &[Shown], as_json: bool) {
    if as_json {
        let items: Vec<_> = all.iter().map(shown_json).collect();
        out!("{}", serde_json::to_string_pretty(&items).expect("json"));
        return;
    }
    for (i, s) in all.iter().enumerate() {
        if i > 0 {
            out!("");
        }
        show(s, false);
    }
}

pub(crate) fn show(s: &Shown, as_json: bool) {
    if as_json {
        out!("{}", serde_json::to_string_pretty(&shown_json(s)).expect("json"));
        return;
    }
    let row = |k: &str, v: String| out!("{k:<16} {}", plain(&v));
    if let Some(st) = &s.stats {
        stats_summary(st);
    }
    row("file", shown_path(&s.file));
    row("size", format!("{} bytes", s.size));
    row("sha256", s.sha256.clone());
    for (n, d, sh) in &s.tensors {
        row("tensor", format!("{n}  {d}  {sh:?}"));
    }
    let Some(m) = &s.manifest else {
        row("manifest", "none found (no manifests/<name>/<frame>.json names this file)".into());
        return;
    };
    row("manifest", s.manifest_path.as_ref().map(|p| shown_path(p)).unwrap_or_default());
    row(
        "matches",
        if s.matches {
            "yes: size and sha256 as recorded".into()
        } else {
            format!("NO: the manifest records {} bytes, sha256 {}", m.output.size, m.output.sha256)
        },
    );
    row("name / frame", format!("{} / {} (version {})", m.name, m.frame, m.frame_version));
    if let Some(src) = &m.source {
        row(
            "source",
            match (&src.repo, &src.path) {
                (Some(r), _) => format!(
                    "{r} @ {} (revision {})",
                    src.commit.as_deref().unwrap_or("?"),
                    src.revision.as_deref().unwrap_or("?")
                ),
                (_, Some(p)) => format!("local directory {p}"),
                _ => src.kind.as_str().to_string(),
            },
        );
        row("key", format!("{} ({} {:?})", src.tensor, src.dtype, src.shape));
        row("why this key", src.reason.clone());
        if let Some(bias) = &src.head.bias {
            row("head bias", format!("{bias} (logits = h @ W.T + bias)"));
        }
        for l in &src.head.logits {
            let value = l.value.as_ref().map_or("none (off)".to_string(), ToString::to_string);
            let what = match l.op.as_str() {
                "multiply" => "logits × value",
                "divide" => "logits ÷ value",
                "softcap" => "value · tanh(logits / value)",
                _ => "",
            };
            let config = l.config.as_deref().unwrap_or("-");
            row("head logits", format!("{} {config} = {value} ({}; {what})", l.op, l.from));
        }
        row(
            "read",
            format!(
                "bytes [{}, {}) of {} ({})",
                src.range.offset,
                src.range.offset + src.range.length,
                src.range.file,
                src.fetch.map_or("?", |f| f.as_str())
            ),
        );
        for f in &src.files {
            let digest = match (&f.sha256, f.digest_from(src.kind)) {
                (Some(sha), Some(crate::manifest::DigestFrom::Computed)) => format!("sha256 {sha} (computed)"),
                (Some(sha), Some(from)) => format!("sha256 {sha} ({}, not checked)", from.as_str()),
                _ => "sha256 not known (the file was not read whole)".into(),
            };
            row("source file", format!("{}  {} bytes  {digest}", f.path, f.size));
        }
    }
    for i in &m.inputs {
        row("input", format!("{} {} sha256 {}", i.frame, i.path, i.sha256));
    }
    for (k, v) in &m.params {
        row("parameter", format!("{k} = {v}"));
    }
    for (k, v) in &m.facts {
        row(k, v.clone());
    }
    row("NaNs", m.nan_count.to_string());
    row("built", format!("{} by {} {}", m.created_at, m.tool.name, m.tool.version));
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

/// One line of `clean`: what happened to a file, its size, and why.
pub(crate) fn cleaned(verb: &str, path: &std::path::Path, size: u64, why: &str) {
    out!("{verb:<12} {}  ({}; {})", plain(&shown_path(path)), human_bytes(size), plain(why));
}

pub(crate) fn clean_declined(count: usize) {
    out!("nothing removed ({count} files would have been; `--dry-run` lists them)");
}

pub(crate) fn cleaned_summary(count: usize, bytes: u64, dry_run: bool) {
    match (count, dry_run) {
        (0, _) => out!("nothing to remove"),
        (n, true) => out!("{n} files would be removed ({}); run without --dry-run to remove them", human_bytes(bytes)),
        (n, false) => out!("{n} files removed ({})", human_bytes(bytes)),
    }
}

/// The statements written; nothing with `quiet`.
pub(crate) fn attested(files: &[std::path::PathBuf], quiet: bool) {
    if quiet {
        return;
    }
    for f in files {
        out!("wrote    {}", plain(&shown_path(f)));
    }
    out!("{} statements", files.len());
}

/// `verify`'s lines; with `quiet`, only mismatches and errors (and then the summary): nothing when all match.
pub(crate) fn verify(checked: &[Checked], root: &std::path::Path, as_json: bool, quiet: bool) {
    if as_json {
        // Paths as `status --json` gives them: relative to the workspace (the parent of the manifests directory).
        let rel = |p: &std::path::Path| {
            let abs = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            abs.strip_prefix(root).map_or_else(|_| p.display().to_string(), |r| r.display().to_string())
        };
        let items: Vec<_> = checked
            .iter()
            .map(|c| {
                json!({
                    "manifest": rel(&c.manifest),
                    "output": c.output.as_deref().map(rel),
                    "ok": c.problem.is_none(),
                    "checked": c.also,
                    "problem": c.problem.as_ref().map(Problem::text),
                    "error": matches!(c.problem, Some(Problem::Error(_))),
                })
            })
            .collect();
        out!("{}", serde_json::to_string_pretty(&items).expect("json"));
        return;
    }
    for c in checked {
        let out = c.output.as_ref().map(|p| shown_path(p)).unwrap_or_default();
        match &c.problem {
            None if quiet => {}
            None if c.also.is_empty() => out!("ok        {}", plain(&out)),
            None => out!("ok        {}  ({})", plain(&out), plain(&c.also.join("; "))),
            Some(Problem::Mismatch(p)) => {
                out!("MISMATCH  {} ({}): {}", plain(&shown_path(&c.manifest)), plain(&out), plain(p));
            }
            Some(Problem::Error(p)) => {
                out!("ERROR     {} ({}): {}", plain(&shown_path(&c.manifest)), plain(&out), plain(p));
            }
        }
    }
    let bad = checked.iter().filter(|c| matches!(c.problem, Some(Problem::Mismatch(_)))).count();
    let errors = checked.iter().filter(|c| matches!(c.problem, Some(Problem::Error(_)))).count();
    let ok = checked.len() - bad - errors;
    if quiet && bad + errors == 0 {
        return;
    }
    if errors > 0 {
        out!("{ok} verified, {bad} mismatched, {errors} could not be checked");
    } else {
        out!("{ok} verified, {bad} mismatched");
    }
}

/// `path` relative to the current directory when it lies below it (as the user would type it), else as is.
/// A path as every command prints it: relative to the current directory (with up to two `..`, as a job file's
/// outputs beside `jobs/` are), else as it is.
pub(crate) fn shown_path(path: &std::path::Path) -> String {
    let cwd = std::env::current_dir().ok().and_then(|d| std::fs::canonicalize(d).ok());
    match cwd {
        Some(cwd) if path.is_absolute() => relative(path, &cwd).unwrap_or_else(|| path.display().to_string()),
        _ => path.display().to_string(),
    }
}

fn relative(path: &std::path::Path, from: &std::path::Path) -> Option<String> {
    use std::path::Component;
    let (p, f): (Vec<Component>, Vec<Component>) = (path.components().collect(), from.components().collect());
    let common = p.iter().zip(&f).take_while(|(a, b)| a == b).count();
    let ups = f.len() - common;
    // Only a short climb; and never through the root alone (that is just the absolute path).
    if ups > 2 || common <= 1 {
        return None;
    }
    let mut out = std::path::PathBuf::new();
    for _ in 0..ups {
        out.push("..");
    }
    out.extend(&p[common..]);
    Some(out.display().to_string())
}

pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut u) = (n as f64, 0);
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} bytes") } else { format!("{v:.1} {}", UNITS[u]) }
}

#[cfg(test)]
mod tests {
    use super::relative;
    use std::path::Path;

    #[test]
    fn paths_are_shown_relative_to_the_current_directory() {
        let at = |p: &str, f: &str| relative(Path::new(p), Path::new(f));
        assert_eq!(at("/w/tensors/m/W.safetensors", "/w").as_deref(), Some("tensors/m/W.safetensors"));
        assert_eq!(at("/w/tensors/m/W.safetensors", "/w/jobs").as_deref(), Some("../tensors/m/W.safetensors"));
        assert_eq!(at("/w/t/x", "/w/a/b/c"), None, "three levels up is shown absolute");
        assert_eq!(at("/tmp/x", "/home/u"), None, "nothing but the root in common");
    }
}
