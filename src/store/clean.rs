//! Finding and removing what no job produces any more (`gamma-run clean`): outputs and manifests of names or
//! frames the given job files no longer list, and temp files interrupted runs left. Owns the rule for what may
//! be removed — only files in gamma-run's own layout (`tensors/<name>/<frame file>`,
//! `manifests/<name>/<frame>.json`, `.<file>.*.tmp` beside them), regular files only, never through a symlink,
//! each under its output's lock — not which outputs the job files want (the caller says).

use super::{Store, lock};
use crate::error::{Error, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A file that may go, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Removal {
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    pub(crate) why: Why,
    /// The output it belongs to (`name`, `frame`), whose lock is taken to remove it.
    pub(crate) output: (String, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    /// No given job produces this output any more.
    NotProduced,
    /// A temp file an interrupted run left.
    Leftover,
}

/// Frames as the layout knows them: (frame name, output file name).
pub(crate) type Known<'a> = &'a [(&'a str, &'a str)];

/// Everything under `store` that may be removed, given the outputs (`name`, `frame`) the job files produce.
pub(crate) fn find(store: &Store, known: Known, kept: &BTreeSet<(String, String)>) -> Result<Vec<Removal>> {
    let mut out = Vec::new();
    for (root, is_manifests) in [(&store.tensors, false), (&store.manifests, true)] {
        for name_dir in entries(root)? {
            let Some(name) = plain_dir(&name_dir) else { continue };
            for file in entries(&name_dir)? {
                let Ok(meta) = std::fs::symlink_metadata(&file) else { continue };
                if !meta.file_type().is_file() {
                    continue;
                }
                let base = file.file_name().unwrap_or_default().to_string_lossy().into_owned();
                let (base, why) = match leftover_of(&base) {
                    Some(b) => (b, Why::Leftover),
                    None => (base, Why::NotProduced),
                };
                let frame = known.iter().find(
                    |(f, file)| {
                        if is_manifests { base == format!("{f}.json") } else { base == *file }
                    },
                );
                // Not a file of gamma-run's layout: left alone.
                let Some((frame, _)) = frame else { continue };
                let output = (name.clone(), frame.to_string());
                // Kept when a job produces it — names compared without case too, so that a case-insensitive
                // filesystem (where `M` writes into `m/`) never loses an output a job still produces.
                let produced = kept.iter().any(|(n, f)| n.eq_ignore_ascii_case(&output.0) && *f == output.1);
                if why == Why::NotProduced && produced {
                    continue;
                }
                out.push(Removal { path: file, size: meta.len(), why, output });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Removes `removals`, each under its output's lock (skipped, and returned as such, when another gamma-run holds
/// it), then the name directories left empty. Returns what was removed and what was skipped, with why.
pub(crate) fn remove(store: &Store, removals: &[Removal]) -> (Vec<Removal>, Vec<(Removal, String)>) {
    let (mut done, mut skipped) = (Vec::new(), Vec::new());
    let root = store.root();
    let mut dirs = BTreeSet::new();
    for r in removals {
        let guard = if lock::OutputLock::enabled() {
            match lock::OutputLock::try_acquire(root, &r.output.0, &r.output.1) {
                Ok(Some(l)) => Some(l),
                Ok(None) => {
                    skipped.push((r.clone(), "another gamma-run is building this output".into()));
                    continue;
                }
                Err(e) => {
                    skipped.push((r.clone(), e.to_string()));
                    continue;
                }
            }
        } else if r.why == Why::Leftover {
            // Without locks, a temp file may be one a running gamma-run is writing.
            skipped.push((r.clone(), "locks are off (GAMMA_RUN_NO_LOCK): a run may be writing it".into()));
            continue;
        } else {
            None
        };
        let result = super::no_links_below(
            if r.path.starts_with(&store.tensors) { &store.tensors } else { &store.manifests },
            &r.path,
        )
        .and_then(|()| super::remove_durably(&r.path));
        drop(guard);
        match result {
            Ok(()) => {
                if let Some(d) = r.path.parent() {
                    dirs.insert(d.to_path_buf());
                }
                done.push(r.clone());
            }
            Err(e) => skipped.push((r.clone(), e.to_string())),
        }
    }
    for d in dirs {
        // Only if empty: anything else in it (a user's file) keeps it.
        let _ = std::fs::remove_dir(&d);
    }
    (done, skipped)
}

/// `.W.safetensors.a1B2c3.tmp` → `W.safetensors` (the temp-file names `Sink` makes).
fn leftover_of(name: &str) -> Option<String> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (base, _random) = inner.rsplit_once('.')?;
    (!base.is_empty()).then(|| base.to_string())
}

/// The entries of `dir` (none if it does not exist).
fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(rd.flatten().map(|e| e.path()).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// A real directory's name (not a symlink, not hidden like `.gamma-run`).
fn plain_dir(p: &Path) -> Option<String> {
    let meta = std::fs::symlink_metadata(p).ok()?;
    let name = p.file_name()?.to_string_lossy().into_owned();
    (meta.file_type().is_dir() && !name.starts_with('.')).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_file_names_map_back_to_their_file() {
        assert_eq!(leftover_of(".W.safetensors.a1B2c3.tmp").as_deref(), Some("W.safetensors"));
        assert_eq!(leftover_of(".gamma.json.XyZ.tmp").as_deref(), Some("gamma.json"));
        assert_eq!(leftover_of("W.safetensors"), None);
        assert_eq!(leftover_of(".x.tmp"), None);
    }
}
