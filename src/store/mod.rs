//! Everything that writes to disk: where outputs and manifests live, and the one way they are written —
//! a unique temp file in the target directory, hashed while it is written, fsync, rename, fsync the directory.
//! A crash leaves either the old file or the new one under the final name, never a mix.

pub(crate) mod clean;
pub mod interrupt;
pub(crate) mod lock;
mod publish;
pub(crate) mod safetensors_file;
mod sink;

pub(crate) use publish::Publication;
pub(crate) use sink::{BUF_LEN, ByteSink, HashOnly, Sink, Written};

use crate::error::{IoContext, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// The workspace of a manifests directory: its parent, which manifests name outputs relative to. The one
/// rule, for job files (`Store::root`) and for commands given a manifests directory (`verify`, `attest`,
/// `show`); a directory without a parent (`/`) is its own workspace.
pub(crate) fn workspace_of(manifests: &Path) -> &Path {
    manifests.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(manifests)
}

/// The two output roots of a job file.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    pub(crate) tensors: PathBuf,
    pub(crate) manifests: PathBuf,
}

impl Store {
    /// The workspace: the parent of the manifests directory, which manifests name outputs relative to, and
    /// where `.gamma-run/` (locks) and `attestations/` live. Validation makes it the parent of both roots.
    pub(crate) fn root(&self) -> &Path {
        workspace_of(&self.manifests)
    }
    pub(crate) fn output_path(&self, name: &str, file: &str) -> PathBuf {
        self.tensors.join(name).join(file)
    }
    pub(crate) fn manifest_path(&self, name: &str, frame: &str) -> PathBuf {
        self.manifests.join(name).join(format!("{frame}.json"))
    }
    /// Refuses to write `path` (an output or manifest of this store) when a symlink would carry the write
    /// elsewhere: no component below the root (the output's directory, the file itself) may be a symlink — not
    /// one that leaves the root, and not one that makes one output's directory alias another's — and the
    /// nearest existing directory must resolve inside the root.
    pub(crate) fn guard(&self, path: &Path) -> Result<()> {
        let root = if path.starts_with(&self.tensors) { &self.tensors } else { &self.manifests };
        no_links_below(root, path)?;
        // The nearest existing ancestor decides where the write lands.
        let existing = path.ancestors().skip(1).find(|a| a.exists());
        // An ancestor above `root`: the root did not exist when looked for, and the write creates it (checked
        // this way, not by canonicalizing the root afterwards: another worker may create it in between).
        let existing = existing.filter(|d| d.starts_with(root));
        if let (Some(dir), Ok(real_root)) = (existing, std::fs::canonicalize(root)) {
            let real = std::fs::canonicalize(dir).at(dir)?;
            if !real.starts_with(&real_root) {
                return Err(crate::error::Error::Refused {
                    path: dir.to_path_buf(),
                    message: format!(
                        "{} resolves to {}, outside {}; remove the symlink",
                        dir.display(),
                        real.display(),
                        root.display()
                    ),
                });
            }
        }
        Ok(())
    }

    /// `path` as the manifest records it: relative to the parent of the manifests directory.
    pub(crate) fn relative_to_root(&self, path: &Path) -> String {
        path.strip_prefix(self.root()).unwrap_or(path).to_string_lossy().into_owned()
    }
}

/// Refuses a write to `path` when any existing component strictly below `root` (directories on the way, and
/// the file itself) is a symlink: gamma-run writes only where it says it writes. `root` itself may be a link
/// (the paths a job file names are the user's to place).
pub(crate) fn no_links_below(root: &Path, path: &Path) -> Result<()> {
    let Ok(rest) = path.strip_prefix(root) else {
        let message = format!("{} is not inside {}", path.display(), root.display());
        return Err(crate::error::Error::Refused { path: path.to_path_buf(), message });
    };
    let mut at = root.to_path_buf();
    for c in rest.components() {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(crate::error::Error::Refused {
                    path: at.clone(),
                    message: format!(
                        "{} is a symlink (it could lead outside {}, or onto another output); gamma-run never writes through links: remove the symlink",
                        at.display(),
                        root.display()
                    ),
                });
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(())
}

/// What a file looked like when we last hashed it: if all of it still matches, its bytes are taken as
/// unchanged. The ctime is one that `touch -d` cannot set back, so an in-place edit with its mtime restored is
/// still seen; manifests written before it was recorded read 0 (see `unchanged`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct FileStat {
    pub(crate) size: u64,
    pub(crate) mtime_ns: i128,
    pub(crate) inode: u64,
    #[serde(default)]
    pub(crate) ctime_ns: i128,
}

/// A source file whose bytes are guarded by the stat cache, with its stat when it was first looked at.
#[derive(Debug, Clone)]
pub(crate) struct Watched {
    /// The name the manifest records it under.
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) stat: FileStat,
}

impl FileStat {
    /// Whether `now` shows the same file as this recorded stat: size, mtime, inode and — where it was recorded
    /// (manifests from before it was read 0) — ctime. A stat that matches but lacks the ctime is refreshed by
    /// the caller, so the check grows stronger without re-reading anything.
    pub(crate) fn unchanged(&self, now: &FileStat) -> bool {
        self.size == now.size
            && self.mtime_ns == now.mtime_ns
            && self.inode == now.inode
            && (self.ctime_ns == 0 || self.ctime_ns == now.ctime_ns)
    }

    pub(crate) fn of(path: &Path) -> Result<FileStat> {
        let m = fs::metadata(path).at(path)?;
        Ok(Self::from_metadata(&m))
    }

    #[cfg(unix)]
    fn from_metadata(m: &fs::Metadata) -> FileStat {
        use std::os::unix::fs::MetadataExt;
        FileStat {
            size: m.len(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            inode: m.ino(),
            ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
        }
    }

    /// Elsewhere: size and modification time (nanoseconds since the epoch); no inode or change time is exposed
    /// by the standard library, so those read 0 and the stat cache rests on size and mtime.
    #[cfg(not(unix))]
    fn from_metadata(m: &fs::Metadata) -> FileStat {
        let ns = |t: std::io::Result<std::time::SystemTime>| {
            t.ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as i128)
        };
        FileStat { size: m.len(), mtime_ns: ns(m.modified()), inode: 0, ctime_ns: 0 }
    }
}

/// A crash-test hook: when `GAMMA_RUN_FAILPOINT` names this step, the process aborts here, as a power cut or
/// `kill -9` would stop it. Steps: `after-temp-write`, `after-fsync`, `after-rename` (each write, outputs and
/// manifests alike), `after-manifest-removed`, `before-manifest` (an output's commit sequence).
pub(crate) fn failpoint(step: &str) {
    static ARMED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if ARMED.get_or_init(|| std::env::var("GAMMA_RUN_FAILPOINT").ok()).as_deref() == Some(step) {
        eprintln!("gamma-run: failpoint {step}: aborting");
        std::process::abort();
    }
}

/// Writes a small file (a manifest) atomically.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<Written> {
    let mut sink = Sink::create(path)?;
    sink.write(bytes)?;
    sink.commit()
}

/// Removes `path` if it is there, durably: its directory is fsynced, so the removal survives a crash that
/// follows (the old manifest must be gone before a new output takes its place).
pub(crate) fn remove_durably(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {
            let dir = path.parent().unwrap_or(Path::new("."));
            sync_dir(dir)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(crate::error::Error::io(path, e)),
    }
}

/// The directories between `root` (included) and `path` (excluded) that do not exist yet, deepest first: what
/// writing `path` will create, so that a failed first build can leave no trace.
pub(crate) fn missing_dirs(path: &Path, root: &Path) -> Vec<PathBuf> {
    let stop = root.parent().unwrap_or(root);
    path.ancestors().skip(1).take_while(|d| *d != stop && !d.exists()).map(Path::to_path_buf).collect()
}

/// Removes these directories if they are empty (deepest first); a directory that is not empty is kept.
pub(crate) fn remove_empty_dirs(dirs: &[PathBuf]) {
    for d in dirs {
        let _ = fs::remove_dir(d);
    }
}

/// Points `link` at `target` (a relative path, as the Python client's snapshot links are), atomically: a
/// temp link beside it is renamed over it, then the directory is fsynced. Where symlinks cannot be made
/// (Windows without the privilege), a hard link to the resolved target instead.
pub(crate) fn symlink_atomic(target: &str, link: &Path) -> Result<()> {
    let dir = link.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).at(dir)?;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = link.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.{n}.link", std::process::id()));
    let _ = fs::remove_file(&tmp);
    make_symlink(target, &tmp, &dir.join(target)).at(&tmp)?;
    fs::rename(&tmp, link).at(link)?;
    sync_dir(dir)
}

#[cfg(unix)]
fn make_symlink(target: &str, link: &Path, _resolved: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn make_symlink(target: &str, link: &Path, resolved: &Path) -> std::io::Result<()> {
    std::os::windows::fs::symlink_file(target.replace('/', "\\"), link).or_else(|_| fs::hard_link(resolved, link))
}

/// Makes a directory's entries durable (a rename or removal in it survives a crash). Unix only: elsewhere
/// a directory cannot be opened for flushing, and renames are made durable by the filesystem.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir).and_then(|d| d.sync_all()).at(dir)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// SHA-256 of a whole file, streamed.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = crate::fsread::open_regular(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(crate::names::hex(&h.finalize()))
}

pub(crate) fn sha256_bytes(bytes: &[u8]) -> String {
    use sha2::Digest;
    crate::names::hex(&sha2::Sha256::digest(bytes))
}
