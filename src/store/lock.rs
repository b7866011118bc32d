//! Per-output locks, so two gamma-run processes on one workspace (CI shards, array jobs on a shared filesystem)
//! don't build the same output at once: the second waits, says so, and then finds it fresh. The lock is an OS
//! file lock (flock), released when its holder exits or is killed, so a crashed run never leaves it stuck.
//! Correctness does not rest on it — unique temp files and atomic renames already keep writers from corrupting
//! each other — and `GAMMA_RUN_NO_LOCK=1` switches it off (e.g. where locks are not supported).

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// Held while an output is being built; dropping it releases the lock.
pub(crate) struct OutputLock {
    _file: Option<File>,
}

impl OutputLock {
    /// Whether locking is on (it is unless `GAMMA_RUN_NO_LOCK` is set to a true value).
    pub(crate) fn enabled() -> bool {
        !crate::env::truthy(std::env::var("GAMMA_RUN_NO_LOCK").ok())
    }

    /// Takes the lock of output `name`/`frame` in workspace `root`, waiting (and saying so) if another process
    /// holds it. Returns the lock and whether we had to wait.
    pub(crate) fn acquire(root: &Path, name: &str, frame: &str) -> Result<(OutputLock, bool)> {
        if !Self::enabled() {
            return Ok((OutputLock { _file: None }, false));
        }
        let path = lock_path(root, name, frame);
        let file = open_lock_file(root, &path)?;
        let waited = match file.try_lock() {
            Ok(()) => false,
            Err(TryLockError::WouldBlock) => {
                tracing::warn!("Blocking waiting for file lock on {name}/{frame} (another gamma-run is building it)");
                file.lock().map_err(|e| Error::io(&path, e))?;
                true
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        };
        Ok((OutputLock { _file: Some(file) }, waited))
    }

    /// Takes the lock only if nobody holds it: `Ok(None)` when another process does. With locking off, an
    /// empty lock.
    pub(crate) fn try_acquire(root: &Path, name: &str, frame: &str) -> Result<Option<OutputLock>> {
        if !Self::enabled() {
            return Ok(Some(OutputLock { _file: None }));
        }
        let path = lock_path(root, name, frame);
        let file = open_lock_file(root, &path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(OutputLock { _file: Some(file) })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }
}

/// Creates (or opens) a lock file under `root`, refusing symlinks on the way (`.gamma-run/`, `locks/`, the
/// file): a planted link must not make gamma-run create files elsewhere.
fn open_lock_file(root: &Path, path: &Path) -> Result<File> {
    super::no_links_below(root, path)?;
    let dir = path.parent().unwrap_or(root);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    super::no_links_below(root, path)?;
    let mut opts = OpenOptions::new();
    opts.create(true).truncate(false).write(true);
    // Not through a link, and never blocking: a FIFO planted as a lock file fails the open (ENXIO) at once.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut opts, libc::O_NOFOLLOW | libc::O_NONBLOCK);
    let file = opts.open(path).map_err(|e| Error::io(path, e))?;
    if !file.metadata().map_err(|e| Error::io(path, e))?.is_file() {
        return Err(Error::Refused {
            path: path.to_path_buf(),
            message: format!("{}: not a regular file; remove it (gamma-run recreates its locks)", path.display()),
        });
    }
    Ok(file)
}

/// The Python client's lock for a blob it downloads into the HF cache: `<cache>/.locks/<repo folder>/<sha>.lock`
/// (huggingface_hub takes it with `filelock`, an flock on Unix, so the two tools exclude each other). Waits,
/// saying so, while another process holds it.
pub(crate) fn blob_lock(cache: &Path, repo_folder: &str, sha: &str) -> Result<File> {
    let path = cache.join(".locks").join(repo_folder).join(format!("{sha}.lock"));
    let file = open_lock_file(cache, &path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            tracing::warn!("Blocking waiting for file lock on {} (another process is downloading it)", path.display());
            file.lock().map_err(|e| Error::io(&path, e))?;
        }
        Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    Ok(file)
}

/// Removes temp files of interrupted downloads (`blobs/.<sha>.*.tmp`, full-size preallocated) whose blob lock
/// nobody holds; `held` is the blob whose lock the caller holds already.
pub(crate) fn remove_stale_downloads(cache: &Path, repo_folder: &str, held: &str) {
    for (path, sha, _) in temp_blobs(cache, repo_folder) {
        if sha == held {
            tracing::info!(file = %path.display(), "removing an interrupted download");
            let _ = std::fs::remove_file(&path);
        } else {
            let _ = remove_download_if_idle(cache, repo_folder, &path, &sha);
        }
    }
}

/// Temp files of downloads in a repo's blobs (`blobs/.<sha>.*.tmp`): path, blob SHA-256, size. Whether one is
/// being written now, only its blob lock can tell (`remove_download_if_idle`).
pub(crate) fn temp_blobs(cache: &Path, repo_folder: &str) -> Vec<(PathBuf, String, u64)> {
    let blobs = cache.join(repo_folder).join("blobs");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&blobs).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let Some(sha) = n.strip_prefix('.').and_then(|r| r.split('.').next()) else { continue };
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else { continue };
        if n.ends_with(".tmp") && crate::names::is_hex(sha, 64) && meta.file_type().is_file() {
            out.push((e.path(), sha.to_string(), meta.len()));
        }
    }
    out.sort();
    out
}

/// Removes one interrupted download's temp file under its blob lock; `Ok(false)` when another process holds
/// the lock (it may be writing it).
pub(crate) fn remove_download_if_idle(cache: &Path, repo_folder: &str, temp: &Path, sha: &str) -> Result<bool> {
    let path = cache.join(".locks").join(repo_folder).join(format!("{sha}.lock"));
    let file = open_lock_file(cache, &path)?;
    if file.try_lock().is_err() {
        return Ok(false);
    }
    tracing::info!(file = %temp.display(), "removing an interrupted download");
    let removed = std::fs::remove_file(temp).map_err(|e| Error::io(temp, e));
    drop(file);
    removed.map(|()| true)
}

/// `<root>/.gamma-run/locks/<name>.<frame>.lock` — beside `tensors/` and `manifests/`, never inside them.
pub(crate) fn lock_path(root: &Path, name: &str, frame: &str) -> PathBuf {
    root.join(".gamma-run").join("locks").join(format!("{name}.{frame}.lock"))
}

/// On a fresh output: removes temp files a killed run left beside its files, if any, when nobody holds its lock.
pub(crate) fn tidy_if_idle(root: &Path, name: &str, frame: &str, files: &[PathBuf]) {
    if !OutputLock::enabled() || files.iter().all(|f| leftovers(f).is_empty()) {
        return;
    }
    let path = lock_path(root, name, frame);
    // The file must stay open (and so locked) while the leftovers are removed. Runs without locks never made
    // the locks directory: it is made here, so their leftovers are tidied too.
    let Ok(file) = open_lock_file(root, &path) else { return };
    if file.try_lock().is_ok() {
        remove_leftovers(files);
    }
    drop(file);
}

fn leftovers(output: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(base)) = (output.parent(), output.file_name()) else { return Vec::new() };
    let prefix = format!(".{}.", base.to_string_lossy());
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&prefix) && n.ends_with(".tmp")
        })
        .map(|e| e.path())
        .collect()
}

/// Removes temp files a killed run left for `files` (`.<file>.*.tmp` beside each). Only called under the
/// output's lock, when no other process can be writing them.
pub(crate) fn remove_leftovers(files: &[PathBuf]) {
    for path in files.iter().flat_map(|f| leftovers(f)) {
        tracing::info!(file = %path.display(), "removing a temp file left by an interrupted run");
        let _ = std::fs::remove_file(path);
    }
}
