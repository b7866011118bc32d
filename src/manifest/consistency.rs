//! Does a manifest agree with itself? Its fingerprint must be the digest of its `fingerprint_inputs`, and the
//! fields a reader acts on — the source's repo, commit, files and range, the frame, the output dtype, the
//! inputs' digests — must say what those fingerprint inputs say. Any disagreement means the manifest was edited
//! by hand (`status`: stale, `verify`: a mismatch, `attest`: refused). `inputs` checks a derived manifest
//! against the manifests of the frames it names. Someone who rewrites an output and its manifest consistently
//! can forge both; signed attestations are the defence against that (README, "Threat model").

use super::{Manifest, SourceRecord, fingerprint};
use std::path::Path;

/// The seal of a source record: SHA-256 of `key=value` lines (values JSON-quoted) of every field a reader acts
/// on — kind, repo, path, revision, commit, fetch, each file's path, size, digest and its origin, W's tensor,
/// dtype, shape and byte range, the format and zip entry, and whose bytes a shared copy holds. Explicit keys in
/// a fixed order, so the encoding never changes with the struct.
pub(crate) fn seal(s: &SourceRecord) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut lines = vec![
        ("kind", s.kind.as_str().to_string()),
        ("repo", opt(&s.repo)),
        ("path", opt(&s.path)),
        ("revision", opt(&s.revision)),
        ("commit", opt(&s.commit)),
        ("fetch", s.fetch.map_or("-", |f| f.as_str()).to_string()),
        ("tensor", s.tensor.clone()),
        ("dtype", s.dtype.clone()),
        ("shape", s.shape.iter().map(u64::to_string).collect::<Vec<_>>().join(",")),
        ("range.file", s.range.file.clone()),
        ("range.offset", s.range.offset.to_string()),
        ("range.length", s.range.length.to_string()),
        ("format", s.format.map_or("-", |f| f.as_str()).to_string()),
        ("entry", opt(&s.entry)),
        ("shared_from", opt(&s.shared_from)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect::<Vec<_>>();
    for (i, f) in s.files.iter().enumerate() {
        lines.push((format!("files.{i}.path"), f.path.clone()));
        lines.push((format!("files.{i}.size"), f.size.to_string()));
        lines.push((format!("files.{i}.sha256"), opt(&f.sha256)));
        lines.push((format!("files.{i}.sha256_from"), f.sha256_from.map_or("-", |d| d.as_str()).to_string()));
    }
    let mut text = String::from("gamma-run source seal v1\n");
    for (k, v) in lines {
        text.push_str(&k);
        text.push('=');
        text.push_str(&serde_json::to_string(&v).expect("strings serialise"));
        text.push('\n');
    }
    crate::store::sha256_bytes(text.as_bytes())
}

/// `s` with its seal set (what the runner stores).
pub(crate) fn sealed(mut s: SourceRecord) -> SourceRecord {
    s.seal = None;
    s.seal = Some(seal(&s));
    s
}

/// `Err(why)` when the manifest contradicts itself.
pub(crate) fn check(m: &Manifest) -> Result<(), String> {
    let fp = &m.fingerprint_inputs;
    if m.fingerprint != fingerprint::digest(fp) {
        return Err("its fingerprint is not the digest of its fingerprint_inputs".into());
    }
    let same = |key: &str, field: &str, value: Option<&str>| -> Result<(), String> {
        match (fp.get(key).map(String::as_str), value) {
            (Some(a), Some(b)) if a == b => Ok(()),
            (a, b) => {
                let shown = |v: Option<&str>| v.map_or_else(|| "absent".to_string(), |v| format!("{v:?}"));
                Err(format!("{field} is {} but its fingerprint records {key} = {}", shown(b), shown(a)))
            }
        }
    };
    same("frame", "frame", Some(&m.frame))?;
    same("frame_version", "frame_version", Some(&m.frame_version.to_string()))?;
    same("output.dtype", "output.dtype", Some(m.output.dtype.name()))?;
    match (&m.source, m.inputs.is_empty()) {
        (Some(s), true) => {
            if let Some(recorded) = &s.seal
                && *recorded != seal(s)
            {
                return Err("a source field (files, their digests, W's tensor, shape, range, path, …) is not what \
                            its seal records"
                    .into());
            }
            match fp.get("source.kind").map(String::as_str) {
                Some("hub") => {
                    if !s.kind.is_hub() {
                        return Err(format!(
                            "source.kind is {:?} but its fingerprint records a Hub model",
                            s.kind.as_str()
                        ));
                    }
                    same("source.repo", "source.repo", s.repo.as_deref())?;
                    same("source.commit", "source.commit", s.commit.as_deref())?;
                }
                Some("local") => {
                    if s.kind != super::SourceKind::Local {
                        return Err(format!(
                            "source.kind is {:?} but its fingerprint records a local directory",
                            s.kind.as_str()
                        ));
                    }
                    let digest = |name: &str| s.files.iter().find(|f| f.path == name).and_then(|f| f.sha256.as_deref());
                    same("source.config_sha256", "source.files[config.json].sha256", digest("config.json"))?;
                    let name = ["model.safetensors.index.json", "pytorch_model.bin.index.json"]
                        .into_iter()
                        .find(|n| s.files.iter().any(|f| f.path == *n))
                        .unwrap_or("model.safetensors.index.json");
                    let index = digest(name).unwrap_or("-");
                    same("source.index_sha256", &format!("source.files[{name}].sha256"), Some(index))?;
                    same("source.shard", "source.range.file", Some(&s.range.file))?;
                }
                other => return Err(format!("its fingerprint records source.kind = {other:?}")),
            }
            match fp.get("tensor_override").map(String::as_str) {
                Some("-") | None => {}
                Some(t) if t == s.tensor => {}
                Some(t) => {
                    return Err(format!("source.tensor is {:?} but the job's tensor: override was {t:?}", s.tensor));
                }
            }
            if !s.files.iter().any(|f| f.path == s.range.file) {
                return Err(format!("source.range.file {:?} is not among source.files", s.range.file));
            }
        }
        (None, false) => {
            for i in &m.inputs {
                same(&format!("input.{}", i.frame), &format!("inputs[{}].sha256", i.frame), Some(&i.sha256))?;
            }
            let named: std::collections::BTreeSet<&str> = fp.keys().filter_map(|k| k.strip_prefix("input.")).collect();
            let listed: std::collections::BTreeSet<&str> = m.inputs.iter().map(|i| i.frame.as_str()).collect();
            if named != listed || listed.len() != m.inputs.len() {
                return Err(format!("its inputs[] {listed:?} are not the inputs its fingerprint names {named:?}"));
            }
        }
        (Some(_), false) => return Err("it records both a model source and input frames".into()),
        (None, true) => return Err("it records neither a model source nor input frames".into()),
    }
    Ok(())
}

/// `Err(why)` when a derived manifest's `inputs[]` disagree with the manifests of those inputs (same output
/// name, in `manifests`): each input's path must be the one that input's manifest says it wrote (paths are
/// fixed by the layout, so a different one was written by hand). A different SHA-256 is not an edit — the
/// input was rebuilt since, which makes this output stale, not forged — and a missing input manifest (an
/// interrupted rebuild) leaves nothing to compare. Returns the input manifests found.
pub(crate) fn inputs(m: &Manifest, manifests: &Path) -> Result<Vec<Manifest>, String> {
    let mut found = Vec::new();
    for i in &m.inputs {
        if i.frame.is_empty() || !i.frame.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(format!("inputs[].frame {:?} is not a frame name", i.frame));
        }
        let path = manifests.join(&m.name).join(format!("{}.json", i.frame));
        if !path.exists() {
            continue;
        }
        let input = Manifest::read(&path).map_err(|e| format!("input {}'s manifest: {e}", i.frame))?;
        if input.output.path != i.path {
            return Err(format!(
                "inputs[{}].path is {}, but {}'s manifest records its output at {}",
                i.frame, i.path, i.frame, input.output.path
            ));
        }
        found.push(input);
    }
    Ok(found)
}
