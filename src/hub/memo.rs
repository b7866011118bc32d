//! What one run has learnt from the Hub and may use again: a file's metadata at a commit (a commit's files never
//! change; a redirect's signed URL is reused for a few minutes only), and small byte ranges of files named by
//! their content (an LFS file's SHA-256, a small file's git blob id): config files and headers that a grid's
//! revisions share. Bounded in entries and bytes; nothing is kept past the process, and errors are not kept.

use super::Remote;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a file's metadata (with its CDN URL, which may be signed for a limited time) is reused.
const FILE_TTL: Duration = Duration::from_secs(5 * 60);
/// Files whose metadata is kept, at most.
const MAX_FILES: usize = 16_384;
/// Ranges longer than this are not kept; nor is anything once the kept ranges total `MAX_RANGE_BYTES`.
const MAX_RANGE: u64 = 256 << 10;
const MAX_RANGE_BYTES: usize = 8 << 20;

type FileKey = (String, String, String);
/// Kept ranges by (content, offset, length), and their bytes in all.
type Ranges = (HashMap<(String, u64, u64), Vec<u8>>, usize);

#[derive(Default)]
pub(super) struct Memo {
    files: Mutex<HashMap<FileKey, (Option<Remote>, Instant)>>,
    /// One asker at a time per file (single-flight): the lock a caller holds while asking.
    asking: Mutex<HashMap<FileKey, Arc<Mutex<()>>>>,
    ranges: Mutex<Ranges>,
}

/// The content a remote file's bytes are named by, if the Hub gave one.
fn content(remote: &Remote) -> Option<String> {
    remote
        .sha256
        .as_ref()
        .map(|s| format!("sha256:{s}"))
        .or_else(|| remote.git_etag.as_ref().map(|g| format!("git:{g}")))
}

impl Memo {
    /// `path` at `commit` of `repo`, if looked at lately: `Some(None)` for a file known not to exist.
    pub(super) fn file(&self, repo: &str, commit: &str, path: &str) -> Option<Option<Remote>> {
        let files = self.files.lock().ok()?;
        let (r, at) = files.get(&(repo.to_string(), commit.to_string(), path.to_string()))?;
        (at.elapsed() < FILE_TTL).then(|| r.clone())
    }

    /// The turn to ask for `path` at `commit`: hold its lock while asking, then look in `file` again.
    pub(super) fn turn(&self, repo: &str, commit: &str, path: &str) -> Arc<Mutex<()>> {
        let mut asking = self.asking.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if asking.len() >= MAX_FILES {
            asking.retain(|_, turn| Arc::strong_count(turn) > 1);
        }
        asking.entry((repo.into(), commit.into(), path.into())).or_default().clone()
    }

    pub(super) fn keep_file(&self, repo: &str, commit: &str, path: &str, r: &Option<Remote>) {
        let Ok(mut files) = self.files.lock() else { return };
        if files.len() < MAX_FILES {
            files.insert((repo.into(), commit.into(), path.into()), (r.clone(), Instant::now()));
        }
    }

    pub(super) fn range(&self, remote: &Remote, offset: u64, len: u64) -> Option<Vec<u8>> {
        let key = (content(remote)?, offset, len);
        self.ranges.lock().ok()?.0.get(&key).cloned()
    }

    pub(super) fn keep_range(&self, remote: &Remote, offset: u64, bytes: &[u8]) {
        let Some(c) = content(remote) else { return };
        if bytes.len() as u64 > MAX_RANGE {
            return;
        }
        let Ok(mut ranges) = self.ranges.lock() else { return };
        if ranges.1 + bytes.len() > MAX_RANGE_BYTES {
            return;
        }
        ranges.1 += bytes.len();
        ranges.0.insert((c, offset, bytes.len() as u64), bytes.to_vec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(sha: Option<&str>, etag: Option<&str>) -> Remote {
        Remote {
            repo: "o/r".into(),
            path: "model.safetensors".into(),
            url: "http://cdn/x".into(),
            size: 100,
            sha256: sha.map(str::to_string),
            git_etag: etag.map(str::to_string),
            resolve: None,
        }
    }

    #[test]
    fn ranges_are_kept_by_content_only_and_bounded() {
        let m = Memo::default();
        let a = remote(Some(&"a".repeat(64)), None);
        m.keep_range(&a, 0, b"12345678");
        assert_eq!(m.range(&a, 0, 8).as_deref(), Some(&b"12345678"[..]));
        assert_eq!(m.range(&a, 0, 7), None, "another length is another range");
        // The same path with other content is not served from the memo.
        assert_eq!(m.range(&remote(Some(&"b".repeat(64)), None), 0, 8), None);
        // A file the Hub named by no content is never kept.
        let anon = remote(None, None);
        m.keep_range(&anon, 0, b"x");
        assert_eq!(m.range(&anon, 0, 1), None);
        // Past the byte bound, nothing more is kept.
        let big = vec![0u8; MAX_RANGE as usize];
        for i in 0..(MAX_RANGE_BYTES as u64 / MAX_RANGE + 2) {
            m.keep_range(&a, 1000 + i, &big);
        }
        assert!(m.ranges.lock().unwrap().1 <= MAX_RANGE_BYTES);
        m.keep_range(&a, 1 << 40, &vec![0u8; MAX_RANGE as usize + 1]);
        assert_eq!(m.range(&a, 1 << 40, MAX_RANGE + 1), None);
    }

    #[test]
    fn files_are_kept_per_commit_with_absent_ones_too() {
        let m = Memo::default();
        assert!(m.file("o/r", "c1", "config.json").is_none());
        m.keep_file("o/r", "c1", "config.json", &Some(remote(None, Some(&"e".repeat(40)))));
        m.keep_file("o/r", "c1", "model.safetensors.index.json", &None);
        assert!(m.file("o/r", "c1", "config.json").unwrap().is_some());
        assert!(m.file("o/r", "c1", "model.safetensors.index.json").unwrap().is_none());
        assert!(m.file("o/r", "c2", "config.json").is_none(), "another commit is another file");
    }
}
