//! A local checkpoint directory. Its identity is its content: config, index and W's shard header by SHA-256,
//! W's bytes by a stat cache on the shard (re-checked by content when the stat changes). `commit` is null.

use super::{FileRecord, Located, checkpoint_dir};
use crate::error::{Error, Result};
use crate::store::sha256_bytes;
use std::collections::BTreeMap;
use std::path::Path;

pub fn locate(dir: &Path, explicit: Option<&str>) -> Result<Located> {
    if !dir.is_dir() {
        return Err(Error::checkpoint(dir, "not a directory; `path:` must name a local checkpoint directory"));
    }
    let found = checkpoint_dir::find_w(dir, explicit)?;
    let w = found.header.get(&found.choice.key).expect("checked by find_w").clone();
    let mut identity = BTreeMap::new();
    identity.insert("source.kind".into(), "local".into());
    identity.insert("source.config_sha256".into(), sha256_bytes(&found.config_bytes));
    identity.insert(
        "source.index_sha256".into(),
        found.index_bytes.as_deref().map(sha256_bytes).unwrap_or_else(|| "-".into()),
    );
    identity.insert("source.shard".into(), found.shard.clone());
    identity.insert("source.header_sha256".into(), sha256_bytes(&found.header.raw));
    let mut files = vec![FileRecord {
        path: "config.json".into(),
        size: found.config_bytes.len() as u64,
        sha256: Some(sha256_bytes(&found.config_bytes)),
    }];
    if let Some(b) = &found.index_bytes {
        files.push(FileRecord {
            path: "model.safetensors.index.json".into(),
            size: b.len() as u64,
            sha256: Some(sha256_bytes(b)),
        });
    }
    files.push(FileRecord { path: found.shard.clone(), size: found.shard_len, sha256: None });
    Ok(Located {
        kind: "local",
        repo: None,
        dir: Some(dir.to_owned()),
        revision: None,
        commit: None,
        w_offset: found.header.data_start() + w.begin,
        w,
        config: found.config,
        choice: found.choice,
        watched: vec![(found.shard.clone(), found.shard_path.clone())],
        shard: found.shard,
        shard_path: found.shard_path,
        files,
        identity,
    })
}
