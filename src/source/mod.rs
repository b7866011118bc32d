//! Where W comes from. A job's `SourceSpec` is resolved cheaply to an identity (for the fingerprint) and located
//! when it is needed: a local directory (`local`), a snapshot in the Hugging Face cache (`hf_cache`), or the Hub
//! itself (`hub`: W's byte range read over HTTP, or `fetch: full` into the cache). All three find W through
//! `find::find_w` (safetensors; the legacy `.bin` through `torch_bin`) over what `files` holds, so the rules and
//! checks are the same whatever holds the bytes. For a grid's output, the bytes
//! may also come from a sibling's stored file (`share`), which decides that too.

pub(crate) mod files;
pub(crate) mod find;
pub(crate) mod hf_cache;
mod hub;
pub(crate) mod local;
pub(crate) mod share;
mod spec;
mod torch_bin;

pub(crate) use spec::{Fetch, SourceSpec};
pub(crate) mod reread;

use crate::manifest::FileRecord;
pub(crate) use files::read_header;

use crate::checkpoint::header::TensorInfo;
use crate::error::{Error, Result};
use crate::unembedding::Choice;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::manifest::{FetchMode, Format, SourceKind};

/// Where W's bytes can be read.
#[derive(Clone)]
pub(crate) enum WBytes {
    File(PathBuf),
    Remote(Arc<crate::hub::Hub>, crate::hub::Remote),
}

/// W found: which file holds it, where, and everything the manifest says about the source.
#[derive(Clone)]
pub(crate) struct Located {
    pub(crate) kind: SourceKind,
    pub(crate) repo: Option<String>,
    pub(crate) dir: Option<PathBuf>,
    pub(crate) revision: Option<String>,
    pub(crate) commit: Option<String>,
    /// How the bytes were obtained.
    pub(crate) fetch: FetchMode,
    /// How the shard stores them, and (a `.bin`) the zip entry of the matrix's storage.
    pub(crate) format: Format,
    pub(crate) entry: Option<String>,
    pub(crate) choice: Choice,
    pub(crate) w: TensorInfo,
    /// The shard holding W, relative to the checkpoint root.
    pub(crate) shard: String,
    pub(crate) bytes: WBytes,
    /// Offset of W's first byte in the shard file.
    pub(crate) w_offset: u64,
    pub(crate) files: Vec<FileRecord>,
    /// Files whose bytes the fingerprint does not cover by content; guarded by a stat cache (local sources).
    pub(crate) watched: Vec<crate::store::Watched>,
}

/// Settings that decide how sources are reached.
#[derive(Clone)]
pub(crate) struct SourceOptions {
    pub(crate) hf_cache: PathBuf,
    /// `None` when offline (`--offline` or `HF_HUB_OFFLINE`).
    pub(crate) hub: Option<Arc<crate::hub::Hub>>,
}

/// A source resolved as far as freshness needs: its identity, and what is needed to locate W later.
pub(crate) enum Resolved {
    /// Local directories are located at once (their identity is their content).
    Local(Box<Located>, BTreeMap<String, String>),
    Hub(HubRef),
}

/// A Hub model at a revision, and the commit that revision named when it was resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HubRef {
    pub(crate) repo: String,
    pub(crate) revision: String,
    pub(crate) commit: String,
    /// Offline, a branch the cache cannot resolve is taken at the commit the output's manifest recorded for it:
    /// the branch was not re-checked (said in `status`).
    pub(crate) unchecked: bool,
}

impl HubRef {
    /// A note for `status` when the commit was not re-checked against the branch.
    pub(crate) fn note(&self) -> Option<String> {
        self.unchecked.then(|| {
            format!(
                "offline: {} was not re-checked; judged at the commit its manifest records ({})",
                self.revision,
                &self.commit[..12.min(self.commit.len())]
            )
        })
    }
}

impl Resolved {
    /// The source's part of the fingerprint.
    pub(crate) fn identity(&self) -> BTreeMap<String, String> {
        match self {
            Resolved::Local(_, id) => id.clone(),
            Resolved::Hub(at) => BTreeMap::from([
                ("source.kind".to_string(), "hub".to_string()),
                ("source.repo".to_string(), at.repo.clone()),
                ("source.commit".to_string(), at.commit.clone()),
            ]),
        }
    }
}

/// Resolves `spec`: a local directory is read (small files and one header); a Hub revision becomes a commit
/// (no network for a 40-hex revision or offline, where the cache's refs answer; one API call otherwise).
/// `recorded` is what the output's manifest says it was built from: offline, when the cache cannot resolve the
/// branch (a range fetch writes no refs), its commit is used for the same repo and revision, marked `unchecked`.
pub(crate) fn resolve(
    spec: &SourceSpec,
    wanted: crate::unembedding::Wanted,
    opts: &SourceOptions,
    recorded: Option<&crate::manifest::SourceRecord>,
) -> Result<Resolved> {
    match spec {
        SourceSpec::Local { dir } => {
            let (loc, id) = local::locate(dir, wanted)?;
            Ok(Resolved::Local(Box::new(loc), id))
        }
        SourceSpec::Hub { repo, revision, commit: known } => {
            let at = |commit, unchecked| HubRef { repo: repo.clone(), revision: revision.clone(), commit, unchecked };
            if let Some(c) = known.as_ref().filter(|c| crate::names::is_commit(c)) {
                return Ok(Resolved::Hub(at(c.clone(), false)));
            }
            match hub::resolve_commit(repo, revision, opts) {
                Ok(commit) => Ok(Resolved::Hub(at(commit, false))),
                Err(e @ Error::NotInCache { .. }) if opts.hub.is_none() => {
                    let same = recorded.filter(|r| r.kind.is_hub());
                    let same =
                        same.filter(|r| r.repo.as_deref() == Some(repo) && r.revision.as_deref() == Some(revision));
                    match same.and_then(|r| r.commit.clone()).filter(|c| crate::names::is_commit(c)) {
                        Some(commit) => Ok(Resolved::Hub(at(commit, true))),
                        None => Err(e),
                    }
                }
                Err(e) => Err(e),
            }
        }
    }
}

impl Located {
    /// Streams W's bytes in order, in pieces of at most `piece` bytes — which may split an element (a Hub stream
    /// hands on what each read gave): from the local file or cache blob by positional reads, or from the Hub by
    /// range.
    /// This and `locate` are the only places that decide where W's bytes come from; frames only transform them.
    pub(crate) fn read_w(&self, piece: u64, take: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let len = self.w.end - self.w.begin;
        match &self.bytes {
            WBytes::File(path) => {
                let file = crate::fsread::open_regular(path)?;
                let mut buf = Vec::new();
                let mut done = 0u64;
                while done < len {
                    let n = piece.min(len - done);
                    buf.resize(n as usize, 0);
                    crate::fsread::read_exact_at(&file, &mut buf, self.w_offset + done)
                        .map_err(|e| Error::io(path, e))?;
                    take(&buf)?;
                    done += n;
                }
                Ok(())
            }
            WBytes::Remote(hub, remote) => {
                let bar = crate::progress::bar(len, &format!("W from {}", remote.path));
                hub.stream(remote, self.w_offset, len, piece, &mut |bytes| {
                    bar.inc(bytes.len() as u64);
                    take(bytes)
                })?;
                bar.finish_and_clear();
                Ok(())
            }
        }
    }
}

/// What building from a source would move, for `--dry-run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transfer {
    /// Where W's bytes would come from.
    pub(crate) fetch: FetchMode,
    /// The shard holding W, and its size.
    pub(crate) shard: String,
    pub(crate) shard_size: u64,
    /// W's bytes, read from wherever they are.
    pub(crate) w_bytes: u64,
    /// Bytes of tensor data fetched from the Hub (W's range, or the whole shard; 0 from disk).
    pub(crate) download: u64,
}

impl Located {
    /// What building from this located W moves: nothing over the network (it is on disk).
    pub(crate) fn transfer(&self) -> Transfer {
        let w_bytes = self.w.end - self.w.begin;
        let download = if self.fetch == FetchMode::Range { w_bytes } else { 0 };
        let shard_size = self.files.iter().find(|f| f.path == self.shard).map_or(0, |f| f.size);
        Transfer { fetch: self.fetch, shard: self.shard.clone(), shard_size, w_bytes, download }
    }

    /// Whether W here is, byte for byte, the W `old` was built from: the same tensor, dtype, shape and range of
    /// the same shard, and the shard unchanged — its stat (local, against the manifest's stat cache) or its
    /// SHA-256 (cache and Hub, as recorded). Then the output's bytes cannot change.
    pub(crate) fn same_w_as(
        &self,
        old: &crate::manifest::SourceRecord,
        old_stats: &BTreeMap<String, crate::store::FileStat>,
    ) -> bool {
        let range = &old.range;
        let placed = old.tensor == self.w.name
            && old.dtype == self.w.dtype.name()
            && old.shape == self.w.shape
            && range.file == self.shard
            && range.offset == self.w_offset
            && range.length == self.w.end - self.w.begin;
        let shard_unchanged = match self.kind {
            SourceKind::Local => self
                .watched
                .iter()
                .any(|w| w.name == self.shard && old_stats.get(&w.name).is_some_and(|s| s.unchanged(&w.stat))),
            SourceKind::HfCache | SourceKind::Hub => {
                let sha =
                    |files: &[FileRecord]| files.iter().find(|f| f.path == self.shard).and_then(|f| f.sha256.clone());
                sha(&self.files).is_some_and(|now| sha(&old.files) == Some(now))
            }
        };
        placed && shard_unchanged
    }
}

/// What building from `resolved` would move (`--dry-run`): from disk when W is there, else from the Hub's
/// metadata and W's header (no tensor bytes read).
pub(crate) fn transfer(
    resolved: &Resolved,
    wanted: crate::unembedding::Wanted,
    fetch: Fetch,
    opts: &SourceOptions,
) -> Result<Transfer> {
    if let Some(loc) = locate_cached(resolved, wanted, opts) {
        return Ok(loc.transfer());
    }
    match (resolved, &opts.hub) {
        (Resolved::Hub(at), Some(hub)) => hub::transfer(hub, at, wanted, fetch, &opts.hf_cache),
        // Offline and not in the cache: the real run would fail the same way.
        _ => locate(resolved, wanted, fetch, opts).map(|l| l.transfer()),
    }
}

/// W located without the network, if it can be: a local directory, or a Hub model whose snapshot in the HF
/// cache has the files (small files and one header on disk). `None` when the Hub would be needed.
pub(crate) fn locate_cached(
    resolved: &Resolved,
    wanted: crate::unembedding::Wanted,
    opts: &SourceOptions,
) -> Option<Located> {
    match resolved {
        Resolved::Local(loc, _) => Some((**loc).clone()),
        Resolved::Hub(at) => hf_cache::locate(&opts.hf_cache, at, wanted).ok(),
    }
}

/// Finds W for a resolved source: from the HF cache when the snapshot has the files, else from the Hub.
pub(crate) fn locate(
    resolved: &Resolved,
    wanted: crate::unembedding::Wanted,
    fetch: Fetch,
    opts: &SourceOptions,
) -> Result<Located> {
    match resolved {
        Resolved::Local(loc, _) => Ok((**loc).clone()),
        Resolved::Hub(at) => {
            let (repo, revision) = (&at.repo, &at.revision);
            match hf_cache::locate(&opts.hf_cache, at, wanted) {
                Ok(loc) => {
                    tracing::debug!("{repo}@{}: in the HF cache (snapshot has W's shard {})", at.commit, loc.shard);
                    return Ok(loc);
                }
                Err(Error::MissingFile { path }) => match &opts.hub {
                    Some(_) => tracing::debug!(missing = %path.display(), "not (fully) in the HF cache; using the Hub"),
                    None => {
                        return Err(Error::NotInCache {
                            repo: repo.clone(),
                            revision: revision.clone(),
                            cache: opts.hf_cache.clone(),
                            hint: format!(
                                "{} is missing and the Hub is not to be used (offline); run without --offline / HF_HUB_OFFLINE",
                                path.display()
                            ),
                        });
                    }
                },
                // A snapshot file that cannot be read as what it should be (a truncated or damaged blob, a special
                // file): online, the Hub is used instead and the blob is replaced only by a verified download
                // (`fetch: full`); offline, the error says which blob it is and how to get rid of it.
                Err(e @ (Error::Checkpoint { .. } | Error::Io { .. })) => {
                    let damaged = hf_cache::damaged(&e);
                    match &opts.hub {
                        Some(_) => tracing::warn!(
                            "{damaged}; reading {repo}@{revision} from the Hub instead (with fetch: full the blob is \
                             replaced once a download has been verified)"
                        ),
                        None => {
                            return Err(Error::NotInCache {
                                repo: repo.clone(),
                                revision: revision.clone(),
                                cache: opts.hf_cache.clone(),
                                hint: format!("{damaged}; remove it and run online to fetch it again"),
                            });
                        }
                    }
                }
                Err(e) => return Err(e),
            }
            let Some(hub) = opts.hub.as_ref() else {
                return Err(Error::NotInCache {
                    repo: at.repo.clone(),
                    revision: at.revision.clone(),
                    cache: opts.hf_cache.clone(),
                    hint: "the Hub is not to be used (offline)".into(),
                });
            };
            hub::locate(hub, at, wanted, fetch, &opts.hf_cache)
        }
    }
}
