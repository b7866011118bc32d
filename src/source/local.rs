//! A local checkpoint directory. Its identity is its content: config, index and W's shard header by SHA-256,
//! W's bytes by a stat cache on the shard (re-checked by content when the stat changes). `commit` is null.

use super::files::Dir;
use super::{Located, WBytes};
use crate::error::{Error, Result};
use crate::manifest::FileRecord;
use crate::store::{FileStat, Watched, sha256_bytes};
use std::collections::BTreeMap;
use std::path::Path;

pub(crate) fn locate(dir: &Path, wanted: crate::unembedding::Wanted) -> Result<(Located, BTreeMap<String, String>)> {
    if !dir.exists() {
        return Err(Error::checkpoint(dir, format!("does not exist{}", did_you_mean(dir))));
    }
    if !dir.is_dir() {
        return Err(Error::checkpoint(dir, "not a directory; `path:` must name a local checkpoint directory"));
    }
    // Stat the shards first: if one changes after this, the build notices and stores nothing.
    let stats = shard_stats(dir)?;
    let found = super::find::find_w(&Dir(dir), wanted).map_err(|e| match e {
        Error::MissingFile { path } => Error::checkpoint(
            path,
            "missing (a checkpoint is config.json plus model.safetensors, or model.safetensors.index.json and its \
             shards, or pytorch_model.bin, or pytorch_model.bin.index.json and its shards)",
        ),
        e => e,
    })?;
    let w = found.w().clone();
    // Config and index were read whole: their digests are computed once, for the identity and the record.
    let mut files = vec![FileRecord::computed("config.json", &found.config_bytes)];
    if let Some((name, b)) = &found.index {
        files.push(FileRecord::computed(name, b));
    }
    let digest = |i: usize| files.get(i).and_then(|f| f.sha256.clone());
    let mut identity = BTreeMap::new();
    identity.insert("source.kind".into(), "local".into());
    identity.insert("source.config_sha256".into(), digest(0).unwrap_or_default());
    let index_sha = if found.index.is_some() { digest(1) } else { None };
    identity.insert("source.index_sha256".into(), index_sha.unwrap_or_else(|| "-".into()));
    identity.insert("source.shard".into(), found.shard.clone());
    identity.insert("source.header_sha256".into(), sha256_bytes(&found.described_by));
    // W's shard is not read whole (only W's range): no digest is claimed for it.
    files.push(FileRecord { path: found.shard.clone(), size: found.shard_len, sha256: None, sha256_from: None });
    let shard_path = dir.join(&found.shard);
    let loc = Located {
        kind: crate::manifest::SourceKind::Local,
        repo: None,
        dir: Some(dir.to_owned()),
        revision: None,
        commit: None,
        fetch: crate::manifest::FetchMode::Local,
        w_offset: found.w_offset(),
        w,
        format: found.format,
        entry: found.entry.clone(),
        choice: found.choice,
        watched: vec![Watched {
            name: found.shard.clone(),
            stat: match stats.get(&found.shard) {
                Some(s) => *s,
                None => FileStat::of(&shard_path)?,
            },
            path: shard_path.clone(),
        }],
        bytes: WBytes::File(shard_path),
        shard: found.shard,
        files,
    };
    Ok((loc, identity))
}

/// The stat of every `*.safetensors` file directly in `dir`, by name.
fn shard_stats(dir: &Path) -> Result<BTreeMap<String, FileStat>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let weights = name.ends_with(".safetensors") || name.ends_with(".bin");
        if let (true, Ok(stat)) = (weights, FileStat::of(&e.path())) {
            out.insert(name, stat);
        }
    }
    Ok(out)
}

/// "; did you mean …?" for a directory that does not exist, from the names beside where it would be; and where
/// `path:` is read from.
pub(crate) fn did_you_mean(dir: &Path) -> String {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name().and_then(|n| n.to_str())) else {
        return String::new();
    };
    let names: Vec<String> = std::fs::read_dir(parent)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    let hint = crate::names::closest(name, names.iter().map(String::as_str))
        .map(|n| format!("; did you mean {}?", parent.join(n).display()))
        .unwrap_or_default();
    format!("{hint} (`path:` is relative to the job file's directory)")
}
