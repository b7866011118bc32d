//! Fresh, stale (and why) or missing: a manifest compared with the present. Tensor bytes are re-read only when a
//! stat cache says a file changed — a quiet workspace is judged from metadata alone.

use super::{Manifest, fingerprint};
use crate::error::Result;
use crate::store::{FileStat, sha256_file};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Fresh,
    Stale(Vec<String>),
    /// Never built: neither manifest nor output exists.
    Missing,
}

/// What the output should be now.
pub struct Expected<'a> {
    pub manifest_path: &'a Path,
    pub output_path: &'a Path,
    pub output_rel: &'a str,
    pub fingerprint: &'a fingerprint::Inputs,
    /// Source files guarded by the stat cache, by the names the manifest records them under.
    pub watched: &'a [(String, PathBuf)],
    /// Recomputes the SHA-256 the output would have from the source's current bytes.
    pub recheck: &'a dyn Fn() -> Result<String>,
}

pub fn assess(e: &Expected) -> Result<(State, Option<Manifest>)> {
    if !e.manifest_path.exists() {
        let state = if e.output_path.exists() { State::Stale(vec!["manifest missing".into()]) } else { State::Missing };
        return Ok((state, None));
    }
    let m = match Manifest::read(e.manifest_path) {
        Ok(m) => m,
        Err(err) => return Ok((State::Stale(vec![format!("manifest unreadable ({err})")]), None)),
    };
    let mut reasons = Vec::new();
    if m.output.path != e.output_rel {
        reasons.push(format!("output path changed {} → {}", m.output.path, e.output_rel));
    }
    if m.fingerprint != fingerprint::digest(&m.fingerprint_inputs) {
        reasons.push("manifest edited (its fingerprint does not match its fields)".into());
    }
    reasons.extend(fingerprint::diff(&m.fingerprint_inputs, e.fingerprint));
    match FileStat::of(e.output_path) {
        Err(_) => reasons.push("output missing".into()),
        Ok(stat) if stat.size != m.output.size => reasons.push("output modified (size differs)".into()),
        Ok(stat) if stat != m.stat.output => {
            if sha256_file(e.output_path)? != m.output.sha256 {
                reasons.push("output modified (sha256 differs)".into());
            }
        }
        Ok(_) => {}
    }
    if reasons.is_empty() && source_touched(&m, e.watched) && (e.recheck)()? != m.output.sha256 {
        reasons.push("tensor changed (W's bytes differ)".into());
    }
    let state = if reasons.is_empty() { State::Fresh } else { State::Stale(reasons) };
    Ok((state, Some(m)))
}

fn source_touched(m: &Manifest, watched: &[(String, PathBuf)]) -> bool {
    watched.iter().any(|(name, path)| match (m.stat.sources.get(name), FileStat::of(path)) {
        (Some(old), Ok(now)) => *old != now,
        _ => true,
    })
}
