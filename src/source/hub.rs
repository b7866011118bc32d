//! A model on the Hub at a commit. Freshness needs only the commit (no network for a 40-hex revision). Locating W
//! reads config and index whole, the header of W's shard by range; then either W's byte range is streamed from the
//! Hub (`fetch: range`, the default) or the shard is downloaded into the HF cache, checked against its size and
//! SHA-256, and read from there (`fetch: full`).

use super::Fetch;
use super::files::{self, Files, MAX_SMALL_FILE};
use super::{Located, SourceOptions, WBytes, hf_cache};
use crate::checkpoint::header;
use crate::error::{Error, Result};
use crate::hub::{Hub, Remote};
use crate::manifest::{DigestFrom, FileRecord};
use crate::store::Sink;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The commit `revision` names: itself if 40-hex; offline, the cache's `refs/`; online, one API call (falling back
/// to the cache's ref, with a warning, when the Hub cannot be reached).
pub(crate) fn resolve_commit(repo: &str, revision: &str, opts: &SourceOptions) -> Result<String> {
    if crate::names::is_commit(revision) {
        return Ok(revision.to_string());
    }
    let repo_dir = opts.hf_cache.join(hf_cache::repo_folder(repo));
    let cached = || hf_cache::resolve_commit(&repo_dir, revision);
    let Some(hub) = &opts.hub else {
        let c = cached()?;
        if let Some(c) = &c {
            tracing::debug!("{repo}: revision {revision} → commit {c} (the HF cache's refs/{revision}; offline)");
        }
        // What is missing decides what to say: the cache itself, the model in it, or only the ref.
        let hint = if !opts.hf_cache.is_dir() {
            format!(
                "offline, and that cache does not exist: fill it online (`gamma-run` with `fetch: full`, or `hf \
                 download {repo}`), or point HF_HUB_CACHE / HF_HOME at the one that has it"
            )
        } else if !repo_dir.is_dir() {
            format!(
                "offline, and the cache holds nothing of {repo}: download it online first (`fetch: full`, or `hf \
                 download {repo}`)"
            )
        } else {
            format!(
                "offline, and the cache has no refs/{revision} to resolve the revision; pin a 40-hex commit or run online"
            )
        };
        return c.ok_or_else(|| Error::NotInCache {
            repo: repo.into(),
            revision: revision.into(),
            cache: opts.hf_cache.clone(),
            hint,
        });
    };
    match hub.resolve_revision(repo, revision) {
        Ok(c) => {
            tracing::debug!("{repo}: revision {revision} → commit {c} (asked the Hub)");
            Ok(c)
        }
        Err(e @ Error::Hub { status: None, .. }) => match cached()? {
            Some(c) => {
                tracing::warn!(repo, revision, "the Hub could not be reached ({e}); using the cached ref {c}");
                Ok(c)
            }
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// The first read of a safetensors header: its 8-byte length and, where it is short, the header itself. A round
/// trip less per distinct file (a grid's 70 distinct W: 1.4 s of 20 ms requests, over 8 connections 0.18 s of
/// wall time) for at most 32 KiB read past the header (0.5% of a 6 MiB W, far less of a real model's).
const FIRST_HEADER_READ: u64 = 8 + (32 << 10);

/// The Hub's files at one commit, and the metadata of each file looked at (what the source record lists). The
/// metadata itself is remembered, and asked for once at a time per file, by the Hub client (`hub::memo`).
struct HubFiles<'a> {
    hub: &'a Hub,
    repo: &'a str,
    commit: &'a str,
    seen: Mutex<BTreeMap<String, Remote>>,
}

impl HubFiles<'_> {
    fn remote(&self, name: &str) -> Result<Option<Remote>> {
        crate::names::check_relative_file(name).map_err(|m| Error::checkpoint(self.describe(name), m))?;
        let r = self.hub.file(self.repo, self.commit, name)?;
        if let Some(r) = &r {
            self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(name.into(), r.clone());
        }
        Ok(r)
    }
}

impl Files for HubFiles<'_> {
    fn small(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match self.remote(name)? {
            None => Ok(None),
            Some(r) => self.hub.get_small(&r, MAX_SMALL_FILE).map(Some),
        }
    }

    fn header(&self, name: &str) -> Result<Option<(header::Header, u64)>> {
        let Some(r) = self.remote(name)? else { return Ok(None) };
        let bad = |m: String| Error::checkpoint(self.describe(name), m);
        if r.size < 8 {
            return Err(bad(format!("{} bytes is too short for a safetensors file", r.size)));
        }
        // Every shard's header is read (transformers loads every shard). One request where the header is short:
        // the first `FIRST_HEADER_READ` bytes, which hold most single-file checkpoints' headers whole; the rest
        // of a longer header in a second. At most that much past a header is read, once per distinct file.
        let mut first = self.hub.range(&r, 0, r.size.min(FIRST_HEADER_READ))?;
        let prefix: [u8; 8] = first[..8].try_into().expect("8 bytes");
        let n = header::header_len(prefix, r.size).map_err(bad)?;
        let end = 8 + n;
        if (first.len() as u64) < end {
            let rest = self.hub.range(&r, first.len() as u64, end - first.len() as u64)?;
            first.extend_from_slice(&rest);
        }
        let h = header::parse(prefix, &first[8..end as usize], r.size).map_err(bad)?;
        Ok(Some((h, r.size)))
    }

    fn size(&self, name: &str) -> Result<Option<u64>> {
        Ok(self.remote(name)?.map(|r| r.size))
    }

    fn read_at(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let r = self.remote(name)?.ok_or_else(|| Error::MissingFile { path: self.describe(name) })?;
        if offset.checked_add(len).is_none_or(|end| end > r.size) {
            return Err(Error::checkpoint(self.describe(name), format!("bytes {offset}+{len} lie past its end")));
        }
        self.hub.range(&r, offset, len)
    }

    fn describe(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("{}@{}/{name}", self.repo, &self.commit[..12.min(self.commit.len())]))
    }
}

pub(crate) fn locate(
    hub: &Arc<Hub>,
    at: &super::HubRef,
    wanted: crate::unembedding::Wanted,
    fetch: Fetch,
    cache: &Path,
) -> Result<Located> {
    let (repo, revision, commit) = (at.repo.as_str(), at.revision.as_str(), at.commit.as_str());
    let (found, seen) = find(hub, at, wanted)?;
    let shard = seen.get(&found.shard).expect("its header was read").clone();
    let w = found.w().clone();
    let mut files = vec![FileRecord::computed("config.json", &found.config_bytes)];
    if let Some((name, b)) = &found.index {
        files.push(FileRecord::computed(name, b));
    }
    // By range, the shard's digest is the Hub's word; a full download replaces it with the one computed below.
    let from = shard.sha256.as_ref().map(|_| DigestFrom::Hub);
    files.push(FileRecord {
        path: found.shard.clone(),
        size: shard.size,
        sha256: shard.sha256.clone(),
        sha256_from: from,
    });
    let (bytes, how, dir) = match fetch {
        Fetch::Range => (WBytes::Remote(hub.clone(), shard), crate::manifest::FetchMode::Range, None),
        Fetch::Full => {
            let (blob, sha) = download(hub, &shard, cache)?;
            // `download` hashed every byte it kept (or re-hashed the blob it reused).
            if let Some(f) = files.last_mut() {
                f.sha256_from = Some(DigestFrom::Computed);
            }
            hf_cache::link(cache, at, &found.shard, &sha)?;
            let index = found.index.as_ref().map(|(n, b)| (n.as_str(), b));
            for (name, bytes) in std::iter::once(("config.json", &found.config_bytes)).chain(index) {
                let Some(etag) = seen.get(name).and_then(|r| r.git_etag.clone()) else {
                    tracing::warn!(repo, file = name, "no git etag from the Hub; not stored in the cache");
                    continue;
                };
                if git_blob_id(bytes) != etag {
                    return Err(Error::Hub {
                        repo: repo.into(),
                        what: name.into(),
                        status: None,
                        code: None,
                        request_id: None,
                        message: format!("its content does not match its git etag {etag}; not stored"),
                    });
                }
                crate::store::write_atomic(&hf_cache::blob_path(cache, repo, &etag), bytes)?;
                hf_cache::link(cache, at, name, &etag)?;
            }
            let snapshot = cache.join(hf_cache::repo_folder(repo)).join("snapshots").join(commit);
            (WBytes::File(blob), crate::manifest::FetchMode::Full, Some(snapshot))
        }
    };
    Ok(Located {
        kind: crate::manifest::SourceKind::Hub,
        repo: Some(repo.into()),
        dir,
        revision: Some(revision.into()),
        commit: Some(commit.into()),
        fetch: how,
        w_offset: found.w_offset(),
        w,
        format: found.format,
        entry: found.entry.clone(),
        choice: found.choice,
        shard: found.shard,
        bytes,
        files,
        watched: Vec::new(),
    })
}

/// W found on the Hub (config, index and one header read), with the metadata of every file looked at.
fn find(
    hub: &Hub,
    at: &super::HubRef,
    wanted: crate::unembedding::Wanted,
) -> Result<(files::Found, BTreeMap<String, Remote>)> {
    let hf = HubFiles { hub, repo: &at.repo, commit: &at.commit, seen: Default::default() };
    // The single-file checkpoint is asked for right after config.json whatever config says (see `find_w`): its
    // metadata is asked for at the same time, so a revision costs one round trip less. Its errors are dropped
    // here; `find_w` asks again, in its turn, and reports them.
    let found = std::thread::scope(|s| {
        s.spawn(|| hf.remote(super::find::SINGLE).ok());
        super::find::find_w(&hf, wanted)
    })?;
    Ok((found, hf.seen.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)))
}

/// What building from the Hub would move (`--dry-run`): W's range, or the whole shard for `fetch: full` unless
/// its blob is in the cache already. Reads only metadata, config, index and one header.
pub(crate) fn transfer(
    hub: &Hub,
    at: &super::HubRef,
    wanted: crate::unembedding::Wanted,
    fetch: Fetch,
    cache: &Path,
) -> Result<super::Transfer> {
    let (found, seen) = find(hub, at, wanted)?;
    let shard = seen.get(&found.shard).expect("its header was read");
    let w = found.w();
    let w_bytes = w.end - w.begin;
    let (mode, download) = match fetch {
        Fetch::Range => (crate::manifest::FetchMode::Range, w_bytes),
        Fetch::Full => {
            let cached = shard.sha256.as_deref().map(|sha| hf_cache::blob_path(cache, &at.repo, sha));
            let cached = cached.is_some_and(|b| std::fs::metadata(b).is_ok_and(|m| m.len() == shard.size));
            (crate::manifest::FetchMode::Full, if cached { 0 } else { shard.size })
        }
    };
    Ok(super::Transfer { fetch: mode, shard: found.shard.clone(), shard_size: shard.size, w_bytes, download })
}

/// Marks the HF cache as a cache directory (<https://bford.info/cachedir/>) the first time gamma-run writes into
/// it, so backup tools skip it, as they skip other caches.
fn mark_cache_dir(cache: &Path) -> Result<()> {
    let tag = cache.join("CACHEDIR.TAG");
    if tag.exists() {
        return Ok(());
    }
    let text = "Signature: 8a477f597d28d172789f06886806bc55\n\
                # This file is a cache directory tag created by gamma-run (the Hugging Face hub cache).\n\
                # For information about cache directory tags see https://bford.info/cachedir/\n";
    crate::store::write_atomic(&tag, text.as_bytes()).map(|_| ())
}

/// Downloads a whole LFS file into `blobs/<sha256>`, checked against its size and SHA-256 before it is kept.
/// Returns the blob's path and its SHA-256 (its name).
fn download(hub: &Hub, remote: &Remote, cache: &Path) -> Result<(PathBuf, String)> {
    let sha = remote.sha256.as_deref().ok_or_else(|| {
        remote.error(
            "the Hub gave no SHA-256 for this file, so a full download could not be checked; use fetch: range".into(),
        )
    })?;
    let blob = hf_cache::blob_path(cache, &remote.repo, sha);
    // One downloader per blob (gamma-run or huggingface_hub, which takes the same lock); temp files that
    // interrupted downloads left (preallocated to the shard's full size) go while the lock is held.
    let folder = hf_cache::repo_folder(&remote.repo);
    let _lock = crate::store::lock::blob_lock(cache, &folder, sha)?;
    mark_cache_dir(cache)?;
    crate::store::lock::remove_stale_downloads(cache, &folder, sha);
    if std::fs::metadata(&blob).is_ok_and(|m| m.len() == remote.size) {
        if crate::store::sha256_file(&blob)? == sha {
            return Ok((blob, sha.to_string()));
        }
        tracing::warn!(blob = %blob.display(), "a cached blob does not match its name; downloading it again");
    }
    let mut sink = Sink::create(&blob)?;
    sink.reserve(remote.size)?;
    let bar = crate::progress::bar(remote.size, &format!("downloading {}", remote.path));
    hub.stream(remote, 0, remote.size, 4 << 20, &mut |v| {
        bar.inc(v.len() as u64);
        sink.write(v)
    })?;
    bar.finish_and_clear();
    sink.commit_checked(|size, got| {
        if size != remote.size || got != sha {
            return Err(remote.error(format!(
                "downloaded {size} bytes with SHA-256 {got}, expected {} bytes with {sha}; discarded",
                remote.size
            )));
        }
        Ok(())
    })?;
    Ok((blob, sha.to_string()))
}

/// Git's blob id of `bytes`: SHA-1 of `blob <len>\0` and the content (what the Hub sends as a small file's ETag).
fn git_blob_id(bytes: &[u8]) -> String {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    crate::names::hex(&h.finalize())
}
