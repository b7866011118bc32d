//! Ctrl-C and CI cancels (SIGINT, SIGTERM): the temp files this process is writing — outputs, manifests, and
//! `fetch: full` downloads preallocated to a whole shard in the shared HF cache — are removed, and the process
//! exits 130 or 143 (128 + the signal, as a shell reports it). Files committed already stay; locks are flock
//! locks, released by the OS. It owns the list of temp files being written, not the writing (`sink`). SIGKILL
//! cannot be caught: what it leaves, the next run (or `clean`) removes under the file's lock.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

static WRITING: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Remembers a temp file being written, to remove it if the process is interrupted.
pub(crate) fn track(path: &Path) {
    WRITING.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(path.to_path_buf());
}

/// Forgets a temp file: renamed into place, or removed.
pub(crate) fn untrack(path: &Path) {
    WRITING.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(path);
}

/// Untracks its path when dropped.
pub(crate) struct Tracked(pub(crate) PathBuf);

impl Drop for Tracked {
    fn drop(&mut self) {
        untrack(&self.0);
    }
}

/// Routes SIGINT and SIGTERM to a thread that removes the temp files being written and exits. Call once, from
/// the main thread, before any other thread starts (the threads started later inherit the blocked signals, so
/// only the watcher receives them).
pub fn install() {
    // SAFETY: plain libc calls on a local, fully initialised signal set; no Rust state is shared with them.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return;
        }
        set
    };
    let spawned = std::thread::Builder::new().name("signals".into()).spawn(move || {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is initialised above and outlives the call; `sig` is a valid out-pointer.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            return;
        }
        let removed = remove_all();
        let name = if sig == libc::SIGINT { "SIGINT" } else { "SIGTERM" };
        eprintln!("interrupted ({name}): {removed} temp files removed; outputs already stored are kept");
        std::process::exit(128 + sig);
    });
    if spawned.is_err() {
        // Without the watcher, restore the default behaviour rather than ignore the signals.
        // SAFETY: as above.
        unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
    }
}

/// Removes every tracked temp file; how many were there.
fn remove_all() -> usize {
    let writing = WRITING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    writing.iter().filter(|p| std::fs::remove_file(p).is_ok()).count()
}
