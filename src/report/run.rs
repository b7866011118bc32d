//! What `run` and `init` print: a line per output (built, fresh, failed, skipped, deferred, and with `--dry-run`
//! what would be built and moved), the summary, and where a workspace is.

use super::{human_bytes, shown_path};
use crate::runner::{Outcome, Report};
use crate::text::plain;

/// What a run took: its wall time and the bytes it fetched from the Hub.
pub(crate) struct Moved {
    pub(crate) elapsed: std::time::Duration,
    pub(crate) fetched: u64,
    /// A remote store was used: the summary counts what was pulled and pushed.
    pub(crate) remote: bool,
}

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

/// The run's result lines and summary; with `quiet`, only failed and skipped outputs (and then the summary).
/// The summary ends with the elapsed time and the bytes moved: fetched from the Hub, written to outputs.
pub(crate) fn run(reports: &[Report], dry_run: bool, quiet: bool, moved: &Moved) {
    let (mut built, mut fresh, mut failed, mut skipped, mut written) = (0, 0, 0, 0, 0u64);
    let (mut pulled, mut pushed) = (0, 0);
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
            Outcome::Pulled { reasons, sha256, size, path } => {
                pulled += 1;
                written += size;
                if !quiet {
                    let short = sha256.get(..12).unwrap_or(sha256);
                    let at = plain(&shown_path(path)).into_owned();
                    let size = human_bytes(*size);
                    out!("pulled   {id}  ({})  {size}  sha256 {short}…  → {at}", plain(&reasons.join("; ")));
                }
            }
            Outcome::WouldPull { reasons } => {
                pulled += 1;
                if !quiet {
                    out!(
                        "would pull {id}  ({}); the remote holds it (verified when pulled; built here if that fails)",
                        plain(&reasons.join("; "))
                    );
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
        match &r.pushed {
            Some(Ok(crate::remote::push::Pushed::Sent)) => {
                pushed += 1;
                if !quiet {
                    out!("pushed   {id}");
                }
            }
            Some(Ok(crate::remote::push::Pushed::AlreadyThere | crate::remote::push::Pushed::NotShared)) | None => {}
            Some(Err(e)) => {
                failed += 1;
                out!("FAILED   {id}: built, but not pushed: {}", plain(e));
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
    let (pulled, pushed) = match (moved.remote, dry_run) {
        (true, false) => (format!(", {pulled} pulled"), format!(", {pushed} pushed")),
        (true, true) => (format!(", {pulled} to pull"), String::new()),
        (false, _) => (String::new(), String::new()),
    };
    if !quiet || failed > 0 || !skipped.is_empty() {
        out!("{built} {verb}{pulled}, {fresh} fresh, {failed} failed{skipped}{pushed}  ({took})");
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
