//! Reading a job file: the file checked (a regular file, within the size limit, UTF-8), its YAML parsed into the
//! raw spec with a budget, and parse errors given as `file:line:col` with the line, a caret and the nearest known
//! key. Validating what was parsed is `validate.rs`'s.

use super::JobFile;
use super::spec::{JobFileSpec, MAX_JOB_FILE_BYTES};
use super::validate::{Validator, snippet};
use crate::error::{Error, IoContext, Result};
use serde_saphyr::Location;
use std::path::Path;

/// Reads, parses and validates the job file at `path`.
pub(crate) fn load(path: &Path) -> Result<JobFile> {
    let meta = std::fs::metadata(path).at(path)?;
    if !meta.is_file() {
        return Err(Error::Usage(format!("{}: not a job file (a directory or special file)", path.display())));
    }
    if meta.len() > MAX_JOB_FILE_BYTES {
        let message = format!("the job file is {} bytes; the limit is {MAX_JOB_FILE_BYTES}", meta.len());
        return Err(Error::JobFile { path: path.into(), line: 1, col: 1, message });
    }
    let bytes = crate::fsread::read_small(path, MAX_JOB_FILE_BYTES)?;
    let text = String::from_utf8(bytes).map_err(|e| Error::JobFile {
        path: path.into(),
        line: 1,
        col: 1,
        message: format!("not UTF-8 text: {e}"),
    })?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(dir).at(dir)?;
    from_text(path, &text, &dir)
}

/// Parses and validates job-file `text`, as if read from `path` in directory `dir` (absolute). No I/O but the
/// workspace rule's look for existing workspaces (`workspace::default_root`): the entry point for `load` and for
/// the fuzzer.
pub fn from_text(path: &Path, text: &str, dir: &Path) -> Result<JobFile> {
    if text.len() as u64 > MAX_JOB_FILE_BYTES {
        let message = format!("the job file is {} bytes; the limit is {MAX_JOB_FILE_BYTES}", text.len());
        return Err(Error::JobFile { path: path.into(), line: 1, col: 1, message });
    }
    let raw = parse(path, text)?;
    Validator { path: path.to_owned(), dir: dir.to_owned(), text, notes: Default::default() }.job_file(raw)
}

fn parse(path: &Path, text: &str) -> Result<JobFileSpec> {
    if text.trim().is_empty() {
        let message = "the job file is empty; it needs `version: 1` and a `jobs:` list".to_string();
        return Err(Error::JobFile { path: path.into(), line: 1, col: 1, message });
    }
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = 16;
    budget.max_events = 200_000;
    budget.max_aliases = 64;
    budget.max_anchors = 64;
    budget.max_documents = 1;
    budget.max_nodes = 100_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let loc = e.location().unwrap_or(Location::UNKNOWN);
        let mut message = tidy(&e.to_string(), path);
        let (mut line, mut col) = (loc.line().max(1), loc.column().max(1));
        // The scanner reports a tab where the scalar before it began: point at the tab itself.
        if message.contains("found a tab")
            && let Some((l, c)) = first_tab(text, line)
        {
            (line, col) = (l, c);
            let what = "a tab: YAML indents with spaces only; replace it with spaces";
            message = format!("{what}{}", snippet(text, path, line, col, what));
        }
        Error::JobFile { path: path.into(), line, col, message }
    })
}

/// The first tab at or after line `from` (1-based line and column).
fn first_tab(text: &str, from: u64) -> Option<(u64, u64)> {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1) as usize)
        .find_map(|(i, l)| l.find('\t').map(|c| (i as u64 + 1, l[..c].chars().count() as u64 + 1)))
}

/// "unknown field `frams`, expected one of …" → the same, with "; did you mean `frames`?" when one is close.
fn did_you_mean(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else { return message.to_string() };
    let Some((given, rest)) = rest.split_once('`') else { return message.to_string() };
    let Some(list) = rest.strip_prefix(", expected one of ").or_else(|| rest.strip_prefix(", expected ")) else {
        return message.to_string();
    };
    let known: Vec<&str> = list.split(',').map(|k| k.trim().trim_matches('`')).filter(|k| !k.is_empty()).collect();
    match crate::names::closest(given, known.iter().copied()) {
        Some(k) => format!("{message}; did you mean `{k}`?"),
        None => message.to_string(),
    }
}

/// serde-saphyr's message, without its own "error: line L column C:" prefix (we print `file:line:col`) and with
/// the snippet naming the file rather than `<input>`.
fn tidy(msg: &str, path: &Path) -> String {
    let body = match (msg.strip_prefix("error: line "), msg.find(": ")) {
        (Some(rest), Some(_)) => rest.split_once(": ").map_or(msg, |(_, m)| m),
        _ => msg,
    };
    // The suggestion goes with the message's first line, and with its copy under the caret.
    let first = body.lines().next().unwrap_or_default();
    body.replace(first, &did_you_mean(first))
        .replace(", set DuplicateKeyPolicy in Options if acceptable", "")
        .replace(
            "data did not match any variant of untagged enum FrameItem",
            "a frame is a name (gamma) or a mapping of a name and parameters ({name: gamma_prime, dtype: bf16})",
        )
        .replace("<input>", &path.display().to_string())
        .trim_end()
        .to_string()
}

#[cfg(test)]
mod did_you_mean_tests {
    #[test]
    fn unknown_keys_get_the_nearest_known_one() {
        let m = "unknown field `frams`, expected one of model, path, name, revision, revisions, frames, tensor, dtype, fetch";
        assert_eq!(super::did_you_mean(m), format!("{m}; did you mean `frames`?"));
        assert_eq!(super::first_tab("a: 1\nb:\n\tc: 2\n", 1), Some((3, 1)));
    }
}
