//! An output being written: a temp file beside its final name, fed whole buffers by one thread while a second
//! thread hashes them (SHA-256 comes free on a two-core machine). `commit` makes it durable and visible;
//! dropping it uncommitted removes the temp file.

use crate::error::{Error, IoContext, Result};
use sha2::Digest;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Buffers in flight between writer and hasher; bounds memory to `POOL × BUF_LEN`.
const POOL: usize = 4;
pub const BUF_LEN: usize = 4 << 20;

/// Writeback is started every this many bytes, so the final fsync has little left to do.
const WRITEBACK_EVERY: u64 = 32 << 20;

/// Streaming-write pattern: start writing back the range just written, and wait for the one before it. Dirty
/// pages stay bounded, the disk works while we copy, and the final fsync finds almost nothing to do. Only an
/// optimisation: errors are ignored here and surface at the fsync.
#[cfg(target_os = "linux")]
fn stream_writeback(f: &std::fs::File, offset: u64, len: u64, previous: Option<(u64, u64)>) {
    use std::os::fd::AsRawFd;
    let fd = f.as_raw_fd();
    // SAFETY: sync_file_range only reads its integer arguments; `fd` is open for the duration of the call.
    unsafe {
        libc::sync_file_range(fd, offset as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
        if let Some((o, l)) = previous {
            let wait =
                libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
            libc::sync_file_range(fd, o as i64, l as i64, wait);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn stream_writeback(_: &std::fs::File, _: u64, _: u64, _: Option<(u64, u64)>) {}

/// The committed file: its size, SHA-256 and stat at write time.
#[derive(Debug, Clone)]
pub struct Written {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    pub stat: super::FileStat,
}

pub struct Sink {
    path: PathBuf,
    file: Option<tempfile::NamedTempFile>,
    to_hasher: Option<SyncSender<Vec<u8>>>,
    recycled: Receiver<Vec<u8>>,
    hasher: Option<JoinHandle<String>>,
    allocated: usize,
    size: u64,
    /// Bytes handed to the kernel's writeback so far, and the range handed over before that.
    flushed: u64,
    previous: Option<(u64, u64)>,
}

impl Sink {
    /// Starts writing `path`: creates its directory and a uniquely named temp file beside it.
    pub fn create(path: &Path) -> Result<Sink> {
        let dir = path.parent().expect("output paths have a parent");
        std::fs::create_dir_all(dir).at(dir)?;
        let base = path.file_name().unwrap_or_default().to_string_lossy();
        // 0o666 through the umask, as any file the user creates (tempfile's default is 0o600).
        let file = tempfile::Builder::new()
            .prefix(&format!(".{base}."))
            .suffix(".tmp")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(dir)
            .at(dir)?;
        let (to_hasher, inbox) = mpsc::sync_channel::<Vec<u8>>(POOL);
        let (give_back, recycled) = mpsc::sync_channel::<Vec<u8>>(POOL);
        let hasher = std::thread::spawn(move || {
            let mut h = sha2::Sha256::new();
            for buf in inbox {
                h.update(&buf);
                let _ = give_back.try_send(buf);
            }
            super::hex(&h.finalize())
        });
        Ok(Sink {
            path: path.to_owned(),
            file: Some(file),
            to_hasher: Some(to_hasher),
            recycled,
            hasher: Some(hasher),
            allocated: 0,
            size: 0,
            flushed: 0,
            previous: None,
        })
    }

    /// An empty buffer with `BUF_LEN` capacity, recycled from the hasher once `POOL` exist.
    pub fn buffer(&mut self) -> Vec<u8> {
        if self.allocated < POOL {
            self.allocated += 1;
            return Vec::with_capacity(BUF_LEN);
        }
        let mut buf = self.recycled.recv().unwrap_or_else(|_| Vec::with_capacity(BUF_LEN));
        buf.clear();
        buf
    }

    /// Appends `buf` to the file, then hands it to the hasher.
    pub fn write(&mut self, buf: Vec<u8>) -> Result<()> {
        let file = self.file.as_mut().expect("sink is open");
        if let Err(e) = file.as_file_mut().write_all(&buf) {
            return Err(self.err(e));
        }
        self.size += buf.len() as u64;
        if self.size - self.flushed >= WRITEBACK_EVERY {
            stream_writeback(file.as_file(), self.flushed, self.size - self.flushed, self.previous);
            self.previous = Some((self.flushed, self.size - self.flushed));
            self.flushed = self.size;
        }
        self.to_hasher.as_ref().expect("sink is open").send(buf).expect("hasher thread alive");
        Ok(())
    }

    /// fsync, rename over the final name, fsync the directory. Returns what was written.
    pub fn commit(self) -> Result<Written> {
        self.commit_checked(|_, _| Ok(()))
    }

    /// Like `commit`, but `check(size, sha256)` decides first; on `Err` the temp file is removed, nothing kept.
    pub fn commit_checked(mut self, check: impl FnOnce(u64, &str) -> Result<()>) -> Result<Written> {
        drop(self.to_hasher.take());
        let sha256 = self.hasher.take().expect("sink is open").join().expect("hasher thread panicked");
        check(self.size, &sha256)?;
        let file = self.file.take().expect("sink is open");
        super::failpoint("after-temp-write");
        file.as_file().sync_all().map_err(|e| Error::io(&self.path, e))?;
        super::failpoint("after-fsync");
        let (path, size) = (self.path.clone(), self.size);
        file.persist(&path).map_err(|e| Error::io(&path, e.error))?;
        super::failpoint("after-rename");
        let dir = path.parent().expect("output paths have a parent");
        std::fs::File::open(dir).and_then(|d| d.sync_all()).at(dir)?;
        let stat = super::FileStat::of(&path)?;
        Ok(Written { path, size, sha256, stat })
    }

    fn err(&self, e: std::io::Error) -> Error {
        Error::io(&self.path, e)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        drop(self.to_hasher.take());
        if let Some(h) = self.hasher.take() {
            let _ = h.join();
        }
    }
}

/// Where a frame streams its output: a file being written (`Sink`) or only a hash (`HashOnly`, for re-checks).
pub trait ByteSink {
    fn buffer(&mut self) -> Vec<u8>;
    fn write(&mut self, buf: Vec<u8>) -> Result<()>;
}

impl ByteSink for Sink {
    fn buffer(&mut self) -> Vec<u8> {
        Sink::buffer(self)
    }
    fn write(&mut self, buf: Vec<u8>) -> Result<()> {
        Sink::write(self, buf)
    }
}

/// Hashes what it is given and keeps nothing: "what SHA-256 would this output have?".
#[derive(Default)]
pub struct HashOnly {
    hasher: sha2::Sha256,
    spare: Option<Vec<u8>>,
}

impl HashOnly {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn finish(self) -> String {
        super::hex(&self.hasher.finalize())
    }
}

impl ByteSink for HashOnly {
    fn buffer(&mut self) -> Vec<u8> {
        let mut b = self.spare.take().unwrap_or_else(|| Vec::with_capacity(BUF_LEN));
        b.clear();
        b
    }
    fn write(&mut self, buf: Vec<u8>) -> Result<()> {
        self.hasher.update(&buf);
        self.spare = Some(buf);
        Ok(())
    }
}
