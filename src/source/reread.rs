//! Re-reading a source file whole, as a manifest records it, for `verify --sources`: from the local directory,
//! the HF cache snapshot, or the Hub (streamed, never stored), hashing every byte and handing each piece to the
//! caller (who re-extracts W from it). Online, the Hub's current digest of the file is fetched too. This module
//! reads; it judges nothing — `commands::verify` compares.

use super::{SourceOptions, hf_cache};
use crate::error::{Error, IoContext, Result};
use crate::manifest::{FileRecord, SourceRecord};
use sha2::Digest;
use std::io::Read;
use std::path::PathBuf;

/// Pieces are this large; the reader runs up to two pieces ahead of the hasher.
const PIECE: usize = 8 << 20;

/// What a re-read found.
pub(crate) struct Reread {
    /// Where the bytes were read: a path, or `hf://repo@commit/file`.
    pub(crate) read_from: String,
    pub(crate) size: u64,
    pub(crate) sha256: String,
    /// The Hub's current word on the file, when online and the source is a Hub model: `Ok(())` if it agrees
    /// with the bytes read, `Err` with what it says otherwise.
    pub(crate) hub_agrees: Option<std::result::Result<(), String>>,
}

/// Where a recorded file's bytes are now: a file on disk, or the Hub.
enum At {
    Disk(PathBuf),
    Hub { repo: String, commit: String },
}

pub(crate) fn reread(
    src: &SourceRecord,
    file: &FileRecord,
    root: &std::path::Path,
    opts: &SourceOptions,
    feed: &mut (dyn FnMut(u64, &[u8]) -> Result<()> + Send),
) -> Result<Reread> {
    crate::names::check_relative_file(&file.path)
        .map_err(|m| Error::SourceRecord(format!("the manifest names source file {:?}: {m}", file.path)))?;
    use crate::manifest::{FetchMode, SourceKind};
    let at = match (src.kind, &src.repo, &src.commit, src.local_dir(root)) {
        (SourceKind::Local, _, _, Some(dir)) => At::Disk(dir.join(&file.path)),
        (_, Some(repo), Some(commit), _) => {
            crate::names::check_repo_id(repo)
                .map_err(|m| Error::SourceRecord(format!("the manifest's source.repo: {m}")))?;
            if !crate::names::is_commit(commit) {
                return Err(Error::SourceRecord(format!("the manifest's commit {commit:?} is not 40 hex")));
            }
            let snap = opts.hf_cache.join(hf_cache::repo_folder(repo)).join("snapshots").join(commit).join(&file.path);
            // What was read from the cache (or downloaded into it) is re-read there; a range read, from the Hub.
            let from_cache = src.kind == SourceKind::HfCache || src.fetch == Some(FetchMode::Full);
            if from_cache && snap.exists() {
                At::Disk(snap)
            } else {
                At::Hub { repo: repo.clone(), commit: commit.clone() }
            }
        }
        _ => {
            return Err(Error::SourceRecord(
                "the manifest's source names neither a directory nor a repo and commit".into(),
            ));
        }
    };
    // The Hub's current word, for Hub sources only, and only for a repo id and commit that are what they should
    // be (a manifest is a file anyone may have edited; its fields must not steer requests that carry the token).
    let remote = match (src.kind, &src.repo, &src.commit, &opts.hub) {
        (SourceKind::Hub | SourceKind::HfCache, Some(repo), Some(commit), Some(hub)) => {
            crate::names::check_repo_id(repo)
                .map_err(|m| Error::SourceRecord(format!("the manifest's source.repo: {m}")))?;
            if !crate::names::is_commit(commit) {
                return Err(Error::SourceRecord(format!("the manifest's commit {commit:?} is not 40 hex")));
            }
            hub.file(repo, commit, &file.path)?
        }
        _ => None,
    };
    let mut hasher = sha2::Sha256::new();
    let mut git = remote.as_ref().filter(|r| r.sha256.is_none() && r.git_etag.is_some()).map(|r| {
        let mut h = sha1::Sha1::new();
        sha1::Digest::update(&mut h, format!("blob {}\0", r.size).as_bytes());
        h
    });
    let mut size = 0u64;
    let label = format!("verify {}", file.path);
    let mut take = |piece: &[u8]| -> Result<()> {
        let (_, fed) = rayon::join(
            || {
                hasher.update(piece);
                if let Some(g) = git.as_mut() {
                    sha1::Digest::update(g, piece);
                }
            },
            || feed(size, piece),
        );
        size += piece.len() as u64;
        fed
    };
    let read_from = match &at {
        At::Disk(path) => {
            let f = crate::fsread::open_regular(path)?;
            let len = f.metadata().at(path)?.len();
            let bar = crate::progress::bar(len, &label);
            read_ahead(f, path, &mut |p| {
                bar.inc(p.len() as u64);
                take(p)
            })?;
            bar.finish_and_clear();
            path.display().to_string()
        }
        At::Hub { repo, commit } => {
            let hub = opts.hub.as_ref().ok_or_else(|| Error::NotInCache {
                repo: repo.clone(),
                revision: commit.clone(),
                cache: opts.hf_cache.clone(),
                hint: format!(
                    "{} was read from the Hub; re-reading it needs the Hub (run without --offline)",
                    file.path
                ),
            })?;
            let r = remote.clone().ok_or_else(|| Error::Hub {
                repo: repo.clone(),
                what: file.path.clone(),
                status: Some(404),
                code: None,
                request_id: None,
                message: "the Hub no longer has this file at the recorded commit".into(),
            })?;
            let bar = crate::progress::bar(r.size, &label);
            hub.stream(&r, 0, r.size, PIECE as u64, &mut |p| {
                bar.inc(p.len() as u64);
                take(p)
            })?;
            bar.finish_and_clear();
            format!("hf://{repo}@{commit}/{}", file.path)
        }
    };
    let sha256 = crate::names::hex(&hasher.finalize());
    let hub_agrees = remote.map(|r| match (&r.sha256, &r.git_etag, git) {
        (Some(lfs), _, _) if *lfs == sha256 && r.size == size => Ok(()),
        (Some(lfs), _, _) => Err(format!("the Hub now says {} bytes with sha256 {lfs}", r.size)),
        (None, Some(etag), Some(g)) => {
            let id = crate::names::hex(&sha1::Digest::finalize(g));
            if *etag == id { Ok(()) } else { Err(format!("the Hub's git id is {etag}, the bytes read give {id}")) }
        }
        _ => Err("the Hub gave no digest for this file".into()),
    });
    Ok(Reread { read_from, size, sha256, hub_agrees })
}

/// Reads `f` to the end in pieces, one thread reading ahead while the caller consumes.
fn read_ahead(mut f: std::fs::File, path: &std::path::Path, take: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(2);
    let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| {
        s.spawn(move || {
            loop {
                let mut buf = back_rx.try_recv().unwrap_or_else(|_| vec![0u8; PIECE]);
                buf.resize(PIECE, 0);
                let mut n = 0;
                while n < PIECE {
                    match f.read(&mut buf[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
                buf.truncate(n);
                if n == 0 || tx.send(Ok(buf)).is_err() {
                    return;
                }
            }
        });
        for piece in rx {
            let piece = piece.at(path)?;
            take(&piece)?;
            let _ = back_tx.send(piece);
        }
        Ok(())
    })
}
