//! The Hugging Face cache (`$HF_HUB_CACHE`, shared with the Python client), read offline: `refs/<branch>` →
//! `snapshots/<commit>/…` → `blobs/`. Path builders are pure and unit-tested; LFS blob names are the files' SHA-256.

use super::{Located, WBytes, files};
use crate::error::{Error, Result};
use crate::manifest::FileRecord;
use std::path::{Path, PathBuf};

/// `$HF_HUB_CACHE`, else `$HUGGINGFACE_HUB_CACHE` (the older name huggingface_hub still honours, with the same
/// precedence), else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
pub(crate) fn cache_dir(env: impl Fn(&str) -> Option<String>) -> PathBuf {
    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(c) = set("HF_HUB_CACHE").or_else(|| set("HUGGINGFACE_HUB_CACHE")) {
        return PathBuf::from(c);
    }
    crate::env::hf_home(&env).join("hub")
}

/// `models--org--name`
pub(crate) fn repo_folder(repo: &str) -> String {
    format!("models--{}", repo.replace('/', "--"))
}

use crate::names::is_commit;

/// The commit a revision names in the cache: itself if 40-hex, else the content of `refs/<revision>`.
pub(crate) fn resolve_commit(repo_dir: &Path, revision: &str) -> Result<Option<String>> {
    if is_commit(revision) {
        return Ok(Some(revision.to_string()));
    }
    let ref_path = repo_dir.join("refs").join(revision);
    // A ref is 40 hex digits and perhaps a newline; anything much larger is not one.
    let Some(bytes) = crate::fsread::read_small_opt(&ref_path, 4096)? else { return Ok(None) };
    let s = String::from_utf8_lossy(&bytes);
    if is_commit(s.trim()) {
        Ok(Some(s.trim().to_string()))
    } else {
        let shown: String = s.trim().chars().take(80).collect();
        Err(Error::checkpoint(&ref_path, format!("holds {shown:?}, not a 40-hex commit")))
    }
}

/// W from the snapshot of `commit`. `Err(MissingFile)` when the snapshot lacks a file that is needed.
pub(crate) fn locate(cache: &Path, at: &super::HubRef, wanted: crate::unembedding::Wanted) -> Result<Located> {
    let (repo, revision, commit) = (at.repo.as_str(), at.revision.as_str(), at.commit.as_str());
    let snapshot = cache.join(repo_folder(repo)).join("snapshots").join(commit);
    if !snapshot.is_dir() {
        return Err(Error::MissingFile { path: snapshot });
    }
    let found = super::find::find_w(&files::Dir(&snapshot), wanted)?;
    let w = found.w().clone();
    // Config and index were read whole: their digests are computed. The shard's is its blob's name, unchecked.
    let mut files = vec![FileRecord::computed("config.json", &found.config_bytes)];
    if let Some((name, b)) = &found.index {
        files.push(FileRecord::computed(name, b));
    }
    files.push(record(&snapshot, &found.shard, found.shard_len));
    Ok(Located {
        kind: crate::manifest::SourceKind::HfCache,
        repo: Some(repo.into()),
        dir: Some(snapshot.clone()),
        revision: Some(revision.into()),
        commit: Some(commit.into()),
        fetch: crate::manifest::FetchMode::Cache,
        w_offset: found.w_offset(),
        w,
        format: found.format,
        entry: found.entry.clone(),
        choice: found.choice,
        bytes: WBytes::File(snapshot.join(&found.shard)),
        shard: found.shard,
        files,
        watched: Vec::new(),
    })
}

/// Says which cached file an error is about and which blob holds it: "the cached file S (blob B) is damaged: …".
pub(crate) fn damaged(e: &Error) -> String {
    let path = match e {
        Error::Checkpoint { path, .. } | Error::Io { path, .. } => path.clone(),
        _ => return format!("the cache could not be read: {e}"),
    };
    let blob = std::fs::read_link(&path).ok().map(|t| path.parent().unwrap_or(Path::new("")).join(t));
    let blob = blob.and_then(|b| std::fs::canonicalize(&b).ok().or(Some(b)));
    match blob {
        Some(b) => format!("the cached file {} (blob {}) is damaged: {e}", path.display(), b.display()),
        None => format!("the cached file {} is damaged: {e}", path.display()),
    }
}

/// Where a blob lives and how a snapshot links to it (relative, as the Python client does).
pub(crate) fn blob_path(cache: &Path, repo: &str, etag: &str) -> PathBuf {
    cache.join(repo_folder(repo)).join("blobs").join(etag)
}

/// Links `snapshots/<commit>/<rel>` to `blobs/<etag>` and, for a branch, points `refs/<revision>` at the commit
/// (through `store`, which does the writing).
pub(crate) fn link(cache: &Path, at: &super::HubRef, rel: &str, etag: &str) -> Result<()> {
    let (repo, revision, commit) = (at.repo.as_str(), at.revision.as_str(), at.commit.as_str());
    let root = cache.join(repo_folder(repo));
    let link = root.join("snapshots").join(commit).join(rel);
    let depth = rel.matches('/').count() + 2;
    crate::store::symlink_atomic(&format!("{}blobs/{etag}", "../".repeat(depth)), &link)?;
    if !is_commit(revision) {
        crate::store::write_atomic(&root.join("refs").join(revision), commit.as_bytes())?;
    }
    Ok(())
}

/// A snapshot file's record: its SHA-256 is the blob's name when the blob is an LFS file (64 hex) — the
/// cache's word for it, not checked against the bytes (`sha256_from: cache`).
fn record(snapshot: &Path, rel: &str, size: u64) -> FileRecord {
    let sha256 = std::fs::read_link(snapshot.join(rel))
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| crate::names::is_hex(n, 64));
    let sha256_from = sha256.as_ref().map(|_| crate::manifest::DigestFrom::Cache);
    FileRecord { path: rel.into(), size, sha256, sha256_from }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_paths_follow_the_python_client() {
        let env =
            |pairs: &'static [(&str, &str)]| move |k: &str| pairs.iter().find(|p| p.0 == k).map(|p| p.1.to_string());
        assert_eq!(cache_dir(env(&[("HOME", "/h")])), PathBuf::from("/h/.cache/huggingface/hub"));
        assert_eq!(cache_dir(env(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")])), PathBuf::from("/x/huggingface/hub"));
        assert_eq!(cache_dir(env(&[("HF_HOME", "/hf")])), PathBuf::from("/hf/hub"));
        assert_eq!(cache_dir(env(&[("HF_HOME", "/hf"), ("HF_HUB_CACHE", "/c")])), PathBuf::from("/c"));
        assert_eq!(cache_dir(env(&[("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "/old")])), PathBuf::from("/old"));
        assert_eq!(
            cache_dir(env(&[("HUGGINGFACE_HUB_CACHE", "/old"), ("HF_HUB_CACHE", "/new")])),
            PathBuf::from("/new")
        );
        assert_eq!(repo_folder("Qwen/Qwen3-4B"), "models--Qwen--Qwen3-4B");
        assert!(is_commit("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit("main") && !is_commit("0123456789ABCDEF0123456789abcdef01234567"));
    }
}
