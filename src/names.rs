//! Names from untrusted input, checked before they become paths or identities: relative file names (shards an
//! index names, output paths a manifest records), and hex identities (SHA-256 digests, git commits and blob
//! ids: lowercase, fixed length). One rule each, used by every module that needs it; the hex encoding; and the
//! "did you mean" of a name given against the names that exist. This module only checks and encodes strings.

/// A file name from untrusted input that will be joined to a directory: plain relative segments only.
pub(crate) fn check_relative_file(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty file name".into());
    }
    if name.starts_with('/') || name.contains('\\') || name.contains('\0') || name.contains('%') || name.contains(':') {
        return Err("not a plain relative file name".into());
    }
    if name.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return Err("path segments must not be empty, '.' or '..'".into());
    }
    Ok(())
}

/// A Hub repo id: `name` or `org/name`, plain segments of letters, digits, `.`, `_`, `-` (so it can go into a
/// URL path and a cache folder name as it is).
pub(crate) fn check_repo_id(id: &str) -> std::result::Result<(), String> {
    let parts: Vec<&str> = id.split('/').collect();
    let ok = (1..=2).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && p.len() <= 96
                && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        });
    if ok { Ok(()) } else { Err(format!("{id:?} is not a Hub repo id (expected org/name)")) }
}

/// `len` lowercase hex digits: a SHA-256 (64), a git commit or blob id (40).
pub(crate) fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A 40-hex git commit, as the Hub and the HF cache name them.
pub(crate) fn is_commit(s: &str) -> bool {
    is_hex(s, 40)
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The candidate closest to `wanted` by edit distance (strsim's Levenshtein), when close enough to be a likely
/// typo: at most a third of the longer name's length, and at least one edit.
pub(crate) fn closest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let best = candidates.into_iter().map(|c| (strsim::levenshtein(wanted, c), c)).min_by_key(|(d, c)| (*d, *c))?;
    let limit = (wanted.chars().count().max(best.1.chars().count()) / 3).max(1);
    (best.0 <= limit).then_some(best.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_identities() {
        assert!(check_relative_file("model-00001-of-00002.safetensors").is_ok());
        assert!(check_relative_file("sub/model.safetensors").is_ok());
        for bad in ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a\\b", "%2e%2e/x", "c:x", "a\0b"] {
            assert!(check_relative_file(bad).is_err(), "{bad:?}");
        }
        assert!(is_hex(&"a".repeat(64), 64) && !is_hex("../../x", 64) && !is_hex(&"A".repeat(40), 40));
        assert!(is_commit("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit("main") && !is_commit("0123456789ABCDEF0123456789abcdef01234567"));
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }
}
