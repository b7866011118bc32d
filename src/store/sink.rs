//! An output being written: a temp file beside its final name. One thread appends whole buffers (or copies a
//! stored file in, in the kernel where it can: `ByteSink::copy_from`); a second thread
//! reads back what has been written (hot in the page cache) and hashes it, so SHA-256 comes free on a two-core
//! machine and the digest is of the bytes the file holds. The writer waits for the hasher only when it gets more
//! than `MAX_LAG` (256 MiB) ahead, so what is read back is still in the page cache. `commit` makes
//! the file durable and visible; dropping it uncommitted removes the temp file.

use crate::error::{Error, IoContext, Result};
use sha2::Digest;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// The size of the buffers frames fill; the hasher reads back in pieces of the same size.
pub(crate) const BUF_LEN: usize = 4 << 20;

/// Writeback is started every this many bytes, so the disk works while we copy and the final fsync has little
/// left to do.
const WRITEBACK_EVERY: u64 = 32 << 20;

/// Starts writing back a range just written, without waiting for it: the disk works while we copy, and the
/// kernel's own dirty-page limits pace the writer. Only an optimisation: errors surface at the fsync.
#[cfg(target_os = "linux")]
fn start_writeback(f: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads its integer arguments; `f` is open for the duration of the call.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), offset as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &std::fs::File, _: u64, _: u64) {}

/// Allocates `len` bytes of disk for `f` up front, without changing its size: one contiguous allocation instead of
/// many during writeback, and a full disk is found before anything is written. `Ok(false)` where the filesystem
/// cannot (writing then allocates as it goes).
#[cfg(target_os = "linux")]
fn preallocate(f: &std::fs::File, len: u64) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: fallocate only reads its integer arguments; `f` is open for the duration of the call.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len as libc::off_t) };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG) => Err(e),
        _ => Ok(false),
    }
}

#[cfg(not(target_os = "linux"))]
fn preallocate(_: &std::fs::File, _: u64) -> std::io::Result<bool> {
    Ok(false)
}

/// 0o666 through the umask, as any file the user creates (Unix; tempfile's default is 0o600).
#[cfg(unix)]
fn with_user_mode(b: &mut tempfile::Builder) {
    b.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
}

/// Elsewhere, the platform's default permissions.
#[cfg(not(unix))]
fn with_user_mode(_: &mut tempfile::Builder) {}

/// The committed file: its size, SHA-256 and stat at write time.
#[derive(Debug, Clone)]
pub(crate) struct Written {
    pub(crate) size: u64,
    pub(crate) sha256: String,
    pub(crate) stat: super::FileStat,
}

/// How far the writer may run ahead of the hasher. Large enough that the writer never waits when hashing keeps
/// up on average; small enough that what the hasher reads back is still in the page cache on a small machine.
const MAX_LAG: u64 = 256 << 20;

/// The writer and the hasher, in step: bytes written and hashed so far, and whether the writer is finished, has
/// given up (the hasher may stop), or the hasher failed (the writer may stop).
#[derive(Default)]
struct Progress {
    state: Mutex<Shared>,
    moved: Condvar,
    max_lag: u64,
}

#[derive(Default, Clone, Copy)]
struct Shared {
    written: u64,
    hashed: u64,
    done: bool,
    abandoned: bool,
    hasher_failed: bool,
}

impl Progress {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn update(&self, change: impl FnOnce(&mut Shared)) {
        change(&mut self.lock());
        self.moved.notify_all();
    }

    /// The writer: `written` bytes are in the file. Waits while the hasher is more than `MAX_LAG` behind; returns
    /// false if the hasher has failed (its error is reported at commit).
    fn wrote(&self, written: u64) -> bool {
        let mut s = self.lock();
        s.written = written;
        self.moved.notify_all();
        while s.written - s.hashed > self.max_lag && !s.hasher_failed {
            s = self.moved.wait(s).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        !s.hasher_failed
    }

    /// The hasher: `hashed` bytes are hashed. Then blocks until more is written or the writer is finished.
    fn hashed(&self, hashed: u64) -> Shared {
        let mut s = self.lock();
        s.hashed = hashed;
        self.moved.notify_all();
        while s.written <= hashed && !s.done && !s.abandoned {
            s = self.moved.wait(s).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *s
    }
}

/// The most the hasher reads back at once: enough for full speed, little for a grid's many sinks at once.
const HASH_READ: usize = 1 << 20;

/// Hashes `file` from its start, following the writer: reads each range back once it is written.
fn hash_behind(file: std::fs::File, progress: &Progress) -> std::io::Result<String> {
    let mut h = sha2::Sha256::new();
    // Grown to the largest piece read, not allocated whole: a small output's hasher touches little memory, which
    // counts when a grid's workers each hold a sink.
    let mut buf = Vec::new();
    let mut pos = 0u64;
    loop {
        let s = progress.hashed(pos);
        if s.abandoned {
            return Err(std::io::Error::other("abandoned"));
        }
        if pos < s.written {
            let n = (s.written - pos).min(HASH_READ as u64) as usize;
            if buf.len() < n {
                buf.resize(n, 0);
            }
            if let Err(e) = crate::fsread::read_exact_at(&file, &mut buf[..n], pos) {
                progress.update(|s| s.hasher_failed = true);
                return Err(e);
            }
            h.update(&buf[..n]);
            pos += n as u64;
        } else if s.done {
            return Ok(crate::names::hex(&h.finalize()));
        }
    }
}

pub(crate) struct Sink {
    path: PathBuf,
    file: Option<tempfile::NamedTempFile>,
    progress: Arc<Progress>,
    hasher: Option<JoinHandle<std::io::Result<String>>>,
    size: u64,
    /// Bytes handed to the kernel's writeback so far.
    flushed: u64,
    /// Bytes preallocated by `reserve`.
    reserved: u64,
    /// A write failed: the file's end is unknown, so nothing more may be written or committed.
    poisoned: bool,
}

impl Sink {
    /// Starts writing `path`: creates its directory and a uniquely named temp file beside it.
    pub(crate) fn create(path: &Path) -> Result<Sink> {
        Self::create_with_lag(path, MAX_LAG)
    }

    fn create_with_lag(path: &Path, max_lag: u64) -> Result<Sink> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).at(dir)?;
        let base = path.file_name().unwrap_or_default().to_string_lossy();
        let prefix = format!(".{base}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        with_user_mode(&mut builder);
        let file = builder.tempfile_in(dir).at(dir)?;
        super::interrupt::track(file.path());
        let reader = file.as_file().try_clone().at(file.path())?;
        let progress = Arc::new(Progress { max_lag, ..Default::default() });
        let follow = Arc::clone(&progress);
        let hasher = std::thread::spawn(move || hash_behind(reader, &follow));
        Ok(Sink {
            path: path.to_owned(),
            file: Some(file),
            progress,
            hasher: Some(hasher),
            size: 0,
            flushed: 0,
            reserved: 0,
            poisoned: false,
        })
    }

    /// Preallocates the file's final size, when known before writing. A full disk is reported here, before
    /// anything is written.
    pub(crate) fn reserve(&mut self, len: u64) -> Result<()> {
        let file = self.file.as_ref().expect("sink is open");
        if preallocate(file.as_file(), len).map_err(|e| self.err(e))? {
            self.reserved = self.reserved.max(len);
        }
        Ok(())
    }

    /// Appends `buf` to the file; the hasher follows.
    pub(crate) fn write(&mut self, buf: &[u8]) -> Result<()> {
        if self.poisoned {
            return Err(self.poisoned_error());
        }
        let file = self.file.as_mut().expect("sink is open");
        if let Err(e) = file.as_file_mut().write_all(buf) {
            self.poisoned = true;
            return Err(self.err(e));
        }
        self.appended(buf.len() as u64)
    }

    /// `n` more bytes are in the file (written or copied in): starts their writeback every so often, and lets
    /// the hasher follow.
    fn appended(&mut self, n: u64) -> Result<()> {
        self.size += n;
        if self.size - self.flushed >= WRITEBACK_EVERY {
            start_writeback(
                self.file.as_ref().expect("sink is open").as_file(),
                self.flushed,
                self.size - self.flushed,
            );
            self.flushed = self.size;
        }
        if !self.progress.wrote(self.size) {
            // The hasher could not read the file back: stop here; `commit` would report its error.
            self.poisoned = true;
            let why = self.hasher.take().map(|h| h.join().expect("hasher thread panicked"));
            let e = why.and_then(std::result::Result::err).unwrap_or_else(|| std::io::Error::other("hashing failed"));
            return Err(self.err(e));
        }
        Ok(())
    }

    /// fsync, rename over the final name, fsync the directory. Returns what was written.
    pub(crate) fn commit(self) -> Result<Written> {
        self.commit_checked(|_, _| Ok(()))
    }

    /// Like `commit`, but `check(size, sha256)` decides before the rename; on `Err` the temp file is removed and
    /// nothing is kept.
    pub(crate) fn commit_checked(mut self, check: impl FnOnce(u64, &str) -> Result<()>) -> Result<Written> {
        if self.poisoned {
            return Err(self.poisoned_error());
        }
        self.progress.update(|s| s.done = true);
        let file = self.file.take().expect("sink is open");
        // Renamed or removed by the time this returns, whichever way it returns.
        let _tracked = super::interrupt::Tracked(file.path().to_path_buf());
        if self.reserved > self.size {
            // Fewer bytes than reserved (a short download, refused by `check` below): free the rest of the
            // allocation past the end.
            file.as_file().set_len(self.size).map_err(|e| Error::io(&self.path, e))?;
        }
        super::failpoint("after-temp-write");
        // The flush to disk overlaps the hasher's last pieces; nothing is visible until the rename below.
        file.as_file().sync_all().map_err(|e| Error::io(&self.path, e))?;
        super::failpoint("after-fsync");
        let hashed = self.hasher.take().expect("sink is open").join().expect("hasher thread panicked");
        let sha256 = hashed.map_err(|e| self.err(e))?;
        check(self.size, &sha256)?;
        let (path, size) = (self.path.clone(), self.size);
        file.persist(&path).map_err(|e| Error::io(&path, e.error))?;
        super::failpoint("after-rename");
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        super::sync_dir(dir)?;
        let stat = super::FileStat::of(&path)?;
        Ok(Written { size, sha256, stat })
    }

    fn poisoned_error(&self) -> Error {
        self.err(std::io::Error::other("an earlier write to this file failed"))
    }

    fn err(&self, e: std::io::Error) -> Error {
        Error::io(&self.path, e)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // Uncommitted (an error, or a panic): the hasher stops at its next piece instead of finishing.
        self.progress.update(|s| s.abandoned = true);
        if let Some(h) = self.hasher.take() {
            let _ = h.join();
        }
        // The temp file itself is removed when `file` drops, right after this.
        if let Some(f) = &self.file {
            super::interrupt::untrack(f.path());
        }
    }
}

/// Where a frame streams its output: a file being written (`Sink`) or only a hash (`HashOnly`, for re-checks).
pub(crate) trait ByteSink: Send {
    /// Says how many bytes will be written in all, before the first `write` (a hint; sinks may ignore it).
    fn reserve(&mut self, _len: u64) -> Result<()> {
        Ok(())
    }
    fn write(&mut self, bytes: &[u8]) -> Result<()>;
    /// Appends all of `src` (from its start; `path` names it in errors); returns the bytes copied.
    fn copy_from(&mut self, src: &std::fs::File, path: &Path) -> Result<u64> {
        copy_through_buffer(src, path, 0, &mut |b| self.write(b))
    }
}

/// Reads `src` from `offset` to its end into `write`, 1 MiB at a time; the bytes read.
fn copy_through_buffer(
    src: &std::fs::File,
    path: &Path,
    offset: u64,
    write: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    use std::io::{Read, Seek};
    let mut f = src;
    f.seek(std::io::SeekFrom::Start(offset)).at(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut copied = 0u64;
    loop {
        let n = f.read(&mut buf).at(path)?;
        if n == 0 {
            return Ok(copied);
        }
        copied += n as u64;
        write(&buf[..n])?;
    }
}

impl ByteSink for Sink {
    fn reserve(&mut self, len: u64) -> Result<()> {
        Sink::reserve(self, len)
    }
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        Sink::write(self, bytes)
    }
    /// In the kernel where it can (`copy_file_range`: the bytes never pass through this process, which halves
    /// the copying of a grid's shared outputs); the hasher reads back what was copied, as for `write`.
    fn copy_from(&mut self, src: &std::fs::File, path: &Path) -> Result<u64> {
        let copied = self.copy_in_kernel(src, path)?;
        let rest = copy_through_buffer(src, path, copied, &mut |b| Sink::write(self, b))?;
        Ok(copied + rest)
    }
}

impl Sink {
    /// Copies what `copy_file_range` will of `src` (none where the kernel or filesystem cannot); the bytes copied.
    #[cfg(target_os = "linux")]
    fn copy_in_kernel(&mut self, src: &std::fs::File, path: &Path) -> Result<u64> {
        use std::os::fd::AsRawFd;
        if self.poisoned {
            return Err(self.poisoned_error());
        }
        let dst = self.file.as_ref().expect("sink is open").as_file().as_raw_fd();
        let mut from: libc::loff_t = 0;
        loop {
            // SAFETY: both descriptors are open for the call; `from` is a valid loff_t the kernel advances; a
            // null output offset means the destination's own file offset, which it advances as `write` does.
            let n =
                unsafe { libc::copy_file_range(src.as_raw_fd(), &mut from, dst, std::ptr::null_mut(), HASH_READ, 0) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                let unsupported = matches!(
                    e.raw_os_error(),
                    Some(libc::ENOSYS | libc::EXDEV | libc::EINVAL | libc::EOPNOTSUPP | libc::EPERM)
                );
                if unsupported && from == 0 {
                    return Ok(0);
                }
                self.poisoned = true;
                return Err(Error::io(path, e));
            }
            if n == 0 {
                return Ok(from as u64);
            }
            self.appended(n as u64)?;
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn copy_in_kernel(&mut self, _: &std::fs::File, _: &Path) -> Result<u64> {
        Ok(0)
    }
}

/// Hashes what it is given and keeps nothing: "what SHA-256 would this output have?".
#[derive(Default)]
pub(crate) struct HashOnly {
    hasher: sha2::Sha256,
}

impl HashOnly {
    pub(crate) fn new() -> Self {
        Self::default()
    }
    pub(crate) fn finish(self) -> String {
        crate::names::hex(&self.hasher.finalize())
    }
}

impl ByteSink for HashOnly {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(total: usize) -> Vec<Vec<u8>> {
        // Uneven pieces of varied bytes: some smaller than the hasher's reads, some larger.
        let (mut out, mut made, mut x) = (Vec::new(), 0usize, 7u32);
        while made < total {
            let n = ((made * 7919) % (3 * BUF_LEN / 2) + 1).min(total - made);
            out.push(
                (0..n)
                    .map(|_| {
                        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        (x >> 16) as u8
                    })
                    .collect(),
            );
            made += n;
        }
        out
    }

    #[test]
    fn the_digest_is_of_the_committed_bytes_even_when_the_writer_must_wait_for_the_hasher() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        let data = pieces(5 * BUF_LEN + 12345);
        let all: Vec<u8> = data.concat();
        // A lag of one piece makes the writer wait on nearly every write.
        let mut sink = Sink::create_with_lag(&path, 64 << 10).unwrap();
        sink.reserve(all.len() as u64).unwrap();
        for p in &data {
            sink.write(p).unwrap();
        }
        let w = sink.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), all);
        assert_eq!(w.size, all.len() as u64);
        assert_eq!(w.sha256, crate::names::hex(&sha2::Sha256::digest(&all)));
    }

    /// A file copied in (in the kernel where it can be), after bytes written: the same file and digest as
    /// writing it all, whatever the hasher's lag; a `HashOnly` sink, which copies through a buffer, agrees.
    #[test]
    fn a_copied_file_is_hashed_as_if_written() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.bin");
        let body: Vec<u8> = pieces(2 * BUF_LEN + 777).concat();
        std::fs::write(&src, &body).unwrap();
        for lag in [64 << 10, MAX_LAG] {
            let path = dir.path().join(format!("out-{lag}.bin"));
            let mut sink = Sink::create_with_lag(&path, lag).unwrap();
            sink.write(b"head").unwrap();
            let f = std::fs::File::open(&src).unwrap();
            assert_eq!(ByteSink::copy_from(&mut sink, &f, &src).unwrap(), body.len() as u64);
            let w = sink.commit().unwrap();
            let all = [b"head".as_slice(), &body].concat();
            assert_eq!(std::fs::read(&path).unwrap(), all);
            assert_eq!(w.sha256, crate::names::hex(&sha2::Sha256::digest(&all)));
            let mut h = HashOnly::new();
            h.write(b"head").unwrap();
            h.copy_from(&f, &src).unwrap();
            assert_eq!(h.finish(), w.sha256);
        }
    }

    #[test]
    fn an_uncommitted_sink_leaves_nothing_and_a_failed_check_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        let mut sink = Sink::create(&path).unwrap();
        sink.reserve(1 << 20).unwrap();
        sink.write(&[1u8; 1 << 20]).unwrap();
        drop(sink);
        let mut sink = Sink::create(&path).unwrap();
        sink.write(b"abc").unwrap();
        let refused = sink.commit_checked(|_, _| Err(crate::error::Error::Usage("no".into())));
        assert!(refused.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "temp files or outputs were left");
    }
}
