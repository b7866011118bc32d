//! Fresh, stale (and why) or missing: a manifest compared with the present. Tensor bytes are re-read only when a
//! stat cache says a file changed — a quiet workspace is judged from metadata alone.

use super::{Manifest, fingerprint};
use crate::error::Result;
use crate::store::{FileStat, Watched, sha256_file};
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum State {
    Fresh,
    Stale(Vec<String>),
    /// Never built: neither manifest nor output exists.
    Missing,
}

/// What the output should be now.
pub(crate) struct Expected<'a> {
    pub(crate) manifest_path: &'a Path,
    pub(crate) output_path: &'a Path,
    pub(crate) output_rel: &'a str,
    pub(crate) fingerprint: &'a fingerprint::Inputs,
    /// Source files guarded by the stat cache, by the names the manifest records them under.
    pub(crate) watched: &'a [Watched],
    /// The inputs the output is computed from now (derived frames), as the input frames' manifests name them.
    pub(crate) inputs: &'a [super::InputRecord],
    /// Recomputes the SHA-256 the output would have from the source's current bytes.
    pub(crate) recheck: &'a dyn Fn() -> Result<String>,
}

/// The judgement, and the manifest it was made against. `restat` is set when the output is fresh but a file's
/// stat changed (a touch, a copy): the manifest's stat cache in `manifest` is updated so `run` can store it and
/// later checks stay metadata-only.
pub(crate) struct Assessment {
    pub(crate) state: State,
    pub(crate) manifest: Option<Manifest>,
    pub(crate) restat: bool,
}

pub(crate) fn assess(e: &Expected) -> Result<Assessment> {
    let done = |state, manifest| Ok(Assessment { state, manifest, restat: false });
    if !e.manifest_path.exists() {
        let state = if e.output_path.exists() { State::Stale(vec!["manifest missing".into()]) } else { State::Missing };
        return done(state, None);
    }
    let mut m = match Manifest::read(e.manifest_path) {
        Ok(m) => m,
        Err(err) => return done(State::Stale(vec![format!("manifest unreadable ({err})")]), None),
    };
    let mut reasons = Vec::new();
    if m.output.path != e.output_rel {
        reasons.push(format!("output path changed {} → {}", m.output.path, e.output_rel));
    }
    if let Err(why) = super::consistency::check(&m) {
        reasons.push(format!("manifest edited ({why})"));
    }
    for (recorded, now) in m.inputs.iter().zip(e.inputs) {
        if recorded.frame != now.frame || recorded.path != now.path {
            reasons.push(format!(
                "manifest edited (inputs[] names {} {}, but the input is {} {})",
                recorded.frame, recorded.path, now.frame, now.path
            ));
        }
    }
    reasons.extend(fingerprint::diff(&m.fingerprint_inputs, e.fingerprint));
    let mut restat = false;
    match FileStat::of(e.output_path) {
        Err(_) => reasons.push("output missing".into()),
        Ok(stat) if stat.size != m.output.size => reasons.push("output modified (size differs)".into()),
        Ok(stat) if !m.stat.output.unchanged(&stat) => {
            if sha256_file(e.output_path)? != m.output.sha256 {
                reasons.push("output modified (sha256 differs)".into());
            } else {
                m.stat.output = stat;
                restat = true;
            }
        }
        Ok(stat) if stat != m.stat.output => {
            // The same file, recorded without its ctime: record it.
            m.stat.output = stat;
            restat = true;
        }
        Ok(_) => {}
    }
    if reasons.is_empty() && source_touched(&m, e.watched) {
        if (e.recheck)()? != m.output.sha256 {
            reasons.push("tensor changed (W's bytes differ)".into());
        } else {
            m.stat.sources = e.watched.iter().map(|w| (w.name.clone(), w.stat)).collect();
            restat = true;
        }
    } else if reasons.is_empty() && e.watched.iter().any(|w| m.stat.sources.get(&w.name) != Some(&w.stat)) {
        m.stat.sources = e.watched.iter().map(|w| (w.name.clone(), w.stat)).collect();
        restat = true;
    }
    let state = if reasons.is_empty() { State::Fresh } else { State::Stale(reasons) };
    Ok(Assessment { restat: restat && state == State::Fresh, state, manifest: Some(m) })
}

fn source_touched(m: &Manifest, watched: &[Watched]) -> bool {
    watched.iter().any(|w| !m.stat.sources.get(&w.name).is_some_and(|s| s.unchanged(&w.stat)))
}
