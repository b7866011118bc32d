//! The only module that talks to the Hugging Face Hub (over ureq; see the README for why not the hf-hub crate).
//! It resolves revisions, reads file metadata, small files and exact byte ranges, and downloads blobs — following
//! redirects by hand so the token only ever goes to the endpoint's own origin, retrying transient failures with
//! backoff (honouring `Retry-After`) and resuming cut ranges, and never taking a 200 body as a range.

mod http;
mod memo;
mod ranges;
mod settings;

pub(crate) use settings::HubSettings;

use crate::error::{Error, Result};
use http::Http;

/// A file on the Hub at a commit: where its bytes are and what the Hub says about them.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    pub(crate) repo: String,
    pub(crate) path: String,
    /// Where to GET the bytes (after the resolve redirect, if any).
    pub(crate) url: String,
    pub(crate) size: u64,
    /// The whole file's SHA-256 (LFS files: `X-Linked-Etag`), validated as 64 hex.
    pub(crate) sha256: Option<String>,
    /// The git blob id of small files (`ETag`), validated as 40 hex.
    pub(crate) git_etag: Option<String>,
    /// For a file served from elsewhere (a CDN's signed URL, which expires): the endpoint's resolve URL that
    /// redirected there, asked again when the signed URL is refused mid-transfer (`ranges::fetch_into`).
    pub(crate) resolve: Option<String>,
}

impl Remote {
    /// An error about this file that no HTTP status explains (a protocol or integrity problem).
    pub(crate) fn error(&self, message: String) -> Error {
        Error::Hub {
            repo: self.repo.clone(),
            what: self.path.clone(),
            status: None,
            code: None,
            request_id: None,
            message,
        }
    }
}

pub(crate) struct Hub {
    http: Http,
    /// What this run has learnt and may use again (a grid's revisions share configs and headers).
    memo: memo::Memo,
}

impl Hub {
    pub(crate) fn new(settings: HubSettings) -> Hub {
        Hub { http: Http::new(settings), memo: Default::default() }
    }

    /// The most requests this client has in flight at once (`GAMMA_RUN_HTTP_CONNECTIONS`).
    pub(crate) fn connections(&self) -> usize {
        self.http.settings.connections
    }

    /// The commit a revision names: one API call; a 40-hex revision needs none.
    pub(crate) fn resolve_revision(&self, repo: &str, revision: &str) -> Result<String> {
        if crate::names::is_commit(revision) {
            return Ok(revision.to_string());
        }
        let url = format!("{}/api/models/{repo}/revision/{}", self.http.settings.endpoint, encode_segment(revision));
        let ctx = http::Ctx::new(repo, format!("revision {revision}"));
        let mut resp = self.http.send(http::Method::Get, &url, None, &ctx, true)?;
        let ctx = ctx.answered(&resp);
        let body = http::read_limited(&mut resp, 16 << 20, &ctx)?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| ctx.protocol(format!("revision info is not JSON: {e}")))?;
        let sha = v["sha"].as_str().unwrap_or_default();
        if !crate::names::is_commit(sha) {
            return Err(ctx.protocol(format!("the Hub answered commit {sha:?}, not 40 lowercase hex")));
        }
        Ok(sha.to_string())
    }

    /// Every branch and tag of `repo` with its commit, from one call (`/api/models/{repo}/refs`).
    pub(crate) fn refs(&self, repo: &str) -> Result<Vec<(String, String)>> {
        let url = format!("{}/api/models/{repo}/refs", self.http.settings.endpoint);
        let ctx = http::Ctx::new(repo, "the refs listing".into());
        let mut resp = self.http.send(http::Method::Get, &url, None, &ctx, true)?;
        let ctx = ctx.answered(&resp);
        let body = http::read_limited(&mut resp, 64 << 20, &ctx)?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| ctx.protocol(format!("the refs listing is not JSON: {e}")))?;
        let mut out = Vec::new();
        for kind in ["branches", "tags"] {
            for r in v[kind].as_array().into_iter().flatten() {
                let (Some(name), Some(commit)) = (r["name"].as_str(), r["targetCommit"].as_str()) else {
                    return Err(ctx.protocol(format!("a {kind} entry without name and targetCommit")));
                };
                if !crate::names::is_commit(commit) {
                    return Err(ctx.protocol(format!("ref {name:?} points at {commit:?}, not a 40-hex commit")));
                }
                out.push((name.to_string(), commit.to_string()));
            }
        }
        tracing::debug!("{repo}: {} refs listed", out.len());
        Ok(out)
    }

    /// Metadata of `path` at `commit`, from a HEAD on its resolve URL. `Ok(None)` if the file does not exist.
    /// Remembered for a few minutes within a run (a commit's files never change), and asked for once at a time:
    /// a caller that finds the same file being asked for waits for that answer instead of sending the request.
    pub(crate) fn file(&self, repo: &str, commit: &str, path: &str) -> Result<Option<Remote>> {
        if let Some(known) = self.memo.file(repo, commit, path) {
            return Ok(known);
        }
        let turn = self.memo.turn(repo, commit, path);
        let _turn = turn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(known) = self.memo.file(repo, commit, path) {
            return Ok(known);
        }
        let r = self.file_uncached(repo, commit, path)?;
        self.memo.keep_file(repo, commit, path, &r);
        Ok(r)
    }

    fn file_uncached(&self, repo: &str, commit: &str, path: &str) -> Result<Option<Remote>> {
        let url = format!("{}/{repo}/resolve/{commit}/{}", self.http.settings.endpoint, encode_path(path));
        let ctx = http::Ctx::new(repo, path.to_string());
        let resp = match self.http.send(http::Method::Head, &url, None, &ctx, false) {
            Err(Error::Hub { status: Some(404), code, .. })
                if code.as_deref() != Some("RepoNotFound") && code.as_deref() != Some("RevisionNotFound") =>
            {
                return Ok(None);
            }
            other => other?,
        };
        let ctx = ctx.answered(&resp);
        let h = resp.headers();
        let header = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        if let Some(c) = header("x-repo-commit").filter(|c| c != commit) {
            return Err(ctx.protocol(format!("asked for commit {commit} but the Hub answered X-Repo-Commit {c:?}")));
        }
        let strip = |e: String| e.trim_start_matches("W/").trim_matches('"').to_string();
        let linked = header("x-linked-etag").map(strip);
        let size = header("x-linked-size")
            .or_else(|| if resp.status().is_redirection() { None } else { header("content-length") });
        let size: u64 = size
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ctx.protocol("no X-Linked-Size or Content-Length".into()))?;
        let (url, sha256, git_etag, resolve) = if resp.status().is_redirection() {
            let loc = header("location").ok_or_else(|| ctx.protocol("a redirect without Location".into()))?;
            let sha = linked.ok_or_else(|| ctx.protocol("a large-file redirect without X-Linked-Etag".into()))?;
            if !crate::names::is_hex(&sha, 64) {
                return Err(ctx.protocol(format!("X-Linked-Etag {sha:?} is not a SHA-256 (64 hex); refusing it")));
            }
            (settings::join_url(&url, &loc).map_err(|e| ctx.protocol(e))?, Some(sha), None, Some(url))
        } else {
            let etag = header("etag").map(strip);
            let sha = linked.filter(|s| crate::names::is_hex(s, 64));
            let git = etag.filter(|e| crate::names::is_hex(e, 40));
            (url, sha, git, None)
        };
        Ok(Some(Remote { repo: repo.into(), path: path.into(), url, size, sha256, git_etag, resolve }))
    }

    /// A whole small file (at most `max` bytes).
    pub(crate) fn get_small(&self, remote: &Remote, max: u64) -> Result<Vec<u8>> {
        if remote.size > max {
            return Err(remote.error(format!("{} bytes is more than the {max} allowed for this file", remote.size)));
        }
        self.range(remote, 0, remote.size)
    }

    /// Exactly `len` bytes at `offset`, retried and resumed until complete. Small ranges of a file named by its
    /// content are remembered for the run: the same config or header in another revision is not fetched again.
    pub(crate) fn range(&self, remote: &Remote, offset: u64, len: u64) -> Result<Vec<u8>> {
        if let Some(bytes) = self.memo.range(remote, offset, len) {
            return Ok(bytes);
        }
        let bytes = ranges::fetch_vec(&self.http, remote, offset, len)?;
        self.memo.keep_range(remote, offset, &bytes);
        Ok(bytes)
    }

    /// Streams `[offset, offset + len)` to `sink` in order, in pieces of any length (up to `chunk` bytes, fetched
    /// a few at a time while no other range is being streamed).
    pub(crate) fn stream(
        &self,
        remote: &Remote,
        offset: u64,
        len: u64,
        chunk: u64,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        ranges::stream_ordered(&self.http, remote, offset, len, chunk, sink)
    }
}

/// Percent-encodes one path segment (a revision: `/` becomes `%2F`).
pub(crate) fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Percent-encodes a relative file path, segment by segment.
pub(crate) fn encode_path(p: &str) -> String {
    p.split('/').map(encode_segment).collect::<Vec<_>>().join("/")
}

/// Asks the endpoint again where `remote`'s bytes are (its resolve URL), for a signed URL that has expired: the
/// new location, provided the Hub still describes the same file (its X-Linked-Etag and size).
pub(crate) fn re_resolve(http: &http::Http, remote: &Remote) -> Result<String> {
    let Some(resolve) = &remote.resolve else {
        return Err(remote.error("its URL was refused and it has no other".into()));
    };
    let ctx = http::Ctx::new(&remote.repo, remote.path.clone());
    let resp = http.send(http::Method::Head, resolve, None, &ctx, false)?;
    let ctx = ctx.answered(&resp);
    let h = resp.headers();
    let header = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(|v| v.trim_start_matches("W/").trim_matches('"'));
    let same = header("x-linked-etag") == remote.sha256.as_deref()
        && header("x-linked-size").and_then(|s| s.parse::<u64>().ok()) == Some(remote.size);
    if !resp.status().is_redirection() || !same {
        return Err(ctx.protocol("asked again for an expired URL, the Hub no longer describes the same file".into()));
    }
    let loc = header("location").ok_or_else(|| ctx.protocol("a redirect without Location".into()))?;
    settings::join_url(resolve, loc).map_err(|e| ctx.protocol(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_revisions_and_paths() {
        assert_eq!(encode_segment("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(encode_path("sub dir/model.safetensors"), "sub%20dir/model.safetensors");
    }
}
