//! What `verify` and `attest` print: each manifest's verdict (what was checked beyond size and hash, said with
//! `ok`), JSON, and the statements written.

use super::shown_path;
use crate::text::plain;
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
