//! What `clean` prints: each file removed or kept and why, and the total.

use super::{human_bytes, shown_path};
use crate::text::plain;

/// One line of `clean`: what happened to a file, its size, and why.
pub(crate) fn cleaned(verb: &str, path: &std::path::Path, size: u64, why: &str) {
    out!("{verb:<12} {}  ({}; {})", plain(&shown_path(path)), human_bytes(size), plain(why));
}

pub(crate) fn clean_declined(count: usize) {
    out!("nothing removed ({count} files would have been; `--dry-run` lists them)");
}

pub(crate) fn cleaned_summary(count: usize, bytes: u64, dry_run: bool) {
    match (count, dry_run) {
        (0, _) => out!("nothing to remove"),
        (n, true) => out!("{n} files would be removed ({}); run without --dry-run to remove them", human_bytes(bytes)),
        (n, false) => out!("{n} files removed ({})", human_bytes(bytes)),
    }
}
