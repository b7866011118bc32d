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
    /// Where the rules find the source tensor now (key, shard), when that is known without the network: an
    /// output read from another tensor (rules from a newer transformers table, a file that now takes
    /// precedence) is stale even though its source files did not change.
    pub(crate) reads: Option<(&'a str, &'a str)>,
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
    if let (Some((key, shard)), Some(src)) = (e.reads, &m.source)
        && (src.tensor.as_str(), src.range.file.as_str()) != (key, shard)
    {
        reasons.push(format!(
            "the source tensor is now {key} in {shard} (the manifest records {} in {})",
            src.tensor, src.range.file
        ));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ByteRange, FileRecord, OutputRecord, SCHEMA, SourceRecord, StatCache, Tool};
    use crate::store::FileStat;
    use std::collections::BTreeMap;

    /// A workspace with one output and the manifest that describes it, from a local source.
    struct Case {
        _dir: tempfile::TempDir,
        output: std::path::PathBuf,
        manifest: std::path::PathBuf,
        fp: fingerprint::Inputs,
    }

    fn case() -> Case {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("tensors/m/W.safetensors");
        let manifest = dir.path().join("manifests/m/gamma.json");
        std::fs::create_dir_all(output.parent().unwrap()).unwrap();
        std::fs::create_dir_all(manifest.parent().unwrap()).unwrap();
        std::fs::write(&output, b"the output's bytes").unwrap();
        let mut fp = fingerprint::base("gamma", 1, "BF16");
        fp.insert("source.kind".into(), "local".into());
        fp.insert("source.config_sha256".into(), "c".repeat(64));
        fp.insert("source.index_sha256".into(), "-".into());
        fp.insert("source.shard".into(), "model.safetensors".into());
        fp.insert("tensor_override".into(), "-".into());
        let file = |path: &str, sha: Option<String>| FileRecord {
            path: path.into(),
            size: 1,
            sha256_from: sha.as_ref().map(|_| crate::manifest::DigestFrom::Computed),
            sha256: sha,
        };
        let m = Manifest {
            schema: SCHEMA.into(),
            name: "m".into(),
            frame: "gamma".into(),
            frame_version: 1,
            output: OutputRecord {
                path: "tensors/m/W.safetensors".into(),
                sha256: crate::store::sha256_file(&output).unwrap(),
                size: 18,
                tensor: "W".into(),
                dtype: crate::store::safetensors_file::OutDtype::Bf16,
                shape: vec![1, 9],
            },
            source: Some(SourceRecord {
                kind: crate::manifest::SourceKind::Local,
                repo: None,
                path: Some("/models/m".into()),
                revision: None,
                commit: None,
                fetch: Some(crate::manifest::FetchMode::Local),
                files: vec![file("config.json", Some("c".repeat(64))), file("model.safetensors", None)],
                tensor: "lm_head.weight".into(),
                dtype: "BF16".into(),
                shape: vec![1, 9],
                reason: "untied head".into(),
                range: ByteRange { file: "model.safetensors".into(), offset: 8, length: 18 },
                head: Default::default(),
                format: None,
                entry: None,
                shared_from: None,
                seal: None,
            }),
            inputs: Vec::new(),
            params: BTreeMap::new(),
            facts: Default::default(),
            nan_count: 0,
            fingerprint: fingerprint::digest(&fp),
            fingerprint_inputs: fp.clone(),
            stat: StatCache { output: FileStat::of(&output).unwrap(), sources: BTreeMap::new() },
            tool: Tool::this(),
            created_at: "2026-12-02T00:00:00Z".into(),
            pulled: None,
        };
        std::fs::write(&manifest, m.to_bytes()).unwrap();
        Case { _dir: dir, output, manifest, fp }
    }

    fn judge(c: &Case, fp: &fingerprint::Inputs, recheck: &dyn Fn() -> Result<String>) -> Assessment {
        let e = Expected {
            manifest_path: &c.manifest,
            output_path: &c.output,
            output_rel: "tensors/m/W.safetensors",
            fingerprint: fp,
            watched: &[],
            inputs: &[],
            recheck,
            reads: None,
        };
        assess(&e).unwrap()
    }

    fn never() -> Result<String> {
        panic!("nothing asked for the source to be re-read")
    }

    fn edit(c: &Case, f: impl FnOnce(&mut Manifest)) {
        let mut m = Manifest::read(&c.manifest).unwrap();
        f(&mut m);
        std::fs::write(&c.manifest, m.to_bytes()).unwrap();
    }

    #[test]
    fn a_quiet_workspace_is_fresh_from_metadata_alone() {
        let c = case();
        let a = judge(&c, &c.fp, &never);
        assert_eq!(a.state, State::Fresh);
        assert!(!a.restat);
    }

    #[test]
    fn a_different_fingerprint_is_stale_with_the_field_that_changed() {
        let c = case();
        let mut now = c.fp.clone();
        now.insert("source.config_sha256".into(), "d".repeat(64));
        assert_eq!(judge(&c, &now, &never).state, State::Stale(vec!["config.json changed".into()]));
    }

    #[test]
    fn a_touched_output_is_rehashed_once_and_its_new_stat_kept() {
        let c = case();
        let f = std::fs::File::options().write(true).open(&c.output).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000)).unwrap();
        let a = judge(&c, &c.fp, &never);
        assert_eq!(a.state, State::Fresh);
        assert!(a.restat, "the new stat is to be stored");
        assert_eq!(a.manifest.unwrap().stat.output, FileStat::of(&c.output).unwrap());
    }

    #[test]
    fn changed_bytes_of_the_same_size_are_an_output_modified() {
        let c = case();
        std::fs::write(&c.output, b"THE output's bytes").unwrap();
        let a = judge(&c, &c.fp, &never);
        assert_eq!(a.state, State::Stale(vec!["output modified (sha256 differs)".into()]));
    }

    #[test]
    fn a_stat_recorded_without_ctime_is_upgraded_without_rehashing() {
        let c = case();
        edit(&c, |m| m.stat.output.ctime_ns = 0);
        std::fs::remove_file(&c.output).unwrap_or(());
        std::fs::write(&c.output, b"the output's bytes").unwrap();
        // A rewrite changes the inode's ctime (and maybe inode): rehashed, equal, fresh.
        assert_eq!(judge(&c, &c.fp, &never).state, State::Fresh);
        let c = case();
        edit(&c, |m| m.stat.output.ctime_ns = 0);
        let a = judge(&c, &c.fp, &never);
        assert_eq!(a.state, State::Fresh);
        assert!(a.restat, "the ctime is recorded");
    }

    #[test]
    fn missing_files_and_edited_manifests_say_so() {
        let c = case();
        std::fs::remove_file(&c.output).unwrap();
        assert_eq!(judge(&c, &c.fp, &never).state, State::Stale(vec!["output missing".into()]));
        std::fs::remove_file(&c.manifest).unwrap();
        assert_eq!(judge(&c, &c.fp, &never).state, State::Missing);
        let c = case();
        std::fs::remove_file(&c.manifest).unwrap();
        assert_eq!(judge(&c, &c.fp, &never).state, State::Stale(vec!["manifest missing".into()]));
        let c = case();
        edit(&c, |m| m.source.as_mut().unwrap().range.file = "other.safetensors".into());
        let State::Stale(r) = judge(&c, &c.fp, &never).state else { panic!("an edited manifest is not fresh") };
        assert!(r[0].starts_with("manifest edited (source.range.file"), "{r:?}");
    }
}
