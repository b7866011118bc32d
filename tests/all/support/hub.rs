//! A loopback Hugging Face Hub for tests, faithful to ../shared/notes/hub-protocol.md: the revision API, resolve
//! URLs with X-Repo-Commit, small files with ETag, LFS files as a 302 to a second origin (the "CDN", another port)
//! with X-Linked-Etag/X-Linked-Size, Range → 206/416, the Hub's error codes, and switches that inject faults.
//! It counts the body bytes it serves and records every request's origin, path and whether it carried a token.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

pub const GOOD_TOKEN: &str = "hf_testtoken_5ecret";

#[derive(Default)]
pub struct Repo {
    pub refs: HashMap<String, String>,
    pub commits: HashMap<String, HashMap<String, Vec<u8>>>,
    pub gated: bool,
}

#[derive(Default, Clone)]
pub struct Faults {
    /// Cut this many CDN bodies halfway.
    pub drop_mid_body: u32,
    /// Answer this many CDN requests with 503 first.
    pub fail_503: u32,
    /// Answer this many CDN requests with 429 + Retry-After: 1 first.
    pub rate_limit: u32,
    /// Answer ranges with 200 and the whole file.
    pub ignore_range: bool,
    /// Send 16 bytes more than the range asked for.
    pub extra_bytes: bool,
    /// Sleep this long between 64 KiB pieces of a body.
    pub slow_ms: u64,
    /// X-Linked-Etag: "../../../evil"
    pub hostile_etag: bool,
    /// The CDN redirects once more, to a third origin.
    pub redirect_chain: bool,
    /// The CDN redirects back to the hub's own origin (which then serves the blob).
    pub redirect_back: bool,
    /// The revision API answers 200 with an HTML page.
    pub html_200: bool,
    /// The revision API answers a commit that is not 40 hex.
    pub bad_commit: bool,
    /// The CDN serves bytes that do not match the blob's sha256.
    pub corrupt_blob: bool,
    /// Ranges that start past the header's first byte (W's, not the 8-byte length or the header) come back with
    /// one byte flipped,
    /// with correct framing (206, matching Content-Range, the right length): a lying CDN or proxy.
    pub lie_in_ranges: bool,
    /// GETs of the revision API and of small files' resolve URLs answer with a redirect to the third origin,
    /// which serves the same answer: a request that starts at the endpoint, carrying the token, and leaves it.
    pub redirect_endpoint_to_third: bool,
    /// 206 answers carry a Content-Range for another range (`1`) or another total size (`2`); the bytes are
    /// the ones asked for.
    pub wrong_content_range: u8,
    /// Signed CDN URLs expire: after this many CDN requests (0: never), every URL the endpoint issued before is
    /// refused with 403 (as S3 refuses an expired signature); the endpoint's resolve answers carry new ones.
    pub expire_urls_after: u32,
}

#[derive(Debug, Clone)]
pub struct Req {
    pub origin: &'static str,
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub range: Option<String>,
}

#[derive(Default)]
pub struct State {
    pub endpoint: String,
    pub cdn: String,
    pub third: String,
    pub repos: HashMap<String, Repo>,
    pub faults: Faults,
    pub served: u64,
    pub requests: Vec<Req>,
    /// Requests being answered now, and the most at once.
    pub in_flight: u32,
    pub max_in_flight: u32,
    /// The signature generation of the CDN URLs issued now, and CDN requests since it began.
    pub sig_gen: u32,
    pub cdn_since_sig: u32,
}

pub struct TestHub {
    pub endpoint: String,
    pub cdn: String,
    pub third: String,
    pub state: Arc<Mutex<State>>,
}

fn sha256(b: &[u8]) -> String {
    super::sha256(b)
}

/// What the Hub sends as a small file's ETag: git's blob id.
fn git_blob_id(b: &[u8]) -> String {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", b.len()).as_bytes());
    h.update(b);
    h.finalize().iter().map(|x| format!("{x:02x}")).collect()
}

impl TestHub {
    pub fn start() -> TestHub {
        let state = Arc::new(Mutex::new(State::default()));
        let (hub, cdn, third) = (bind(), bind(), bind());
        let addr = |l: &TcpListener| format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
        let (endpoint, cdn_url, third_url) = (addr(&hub), addr(&cdn), addr(&third));
        for (listener, origin) in [(hub, "hub"), (cdn, "cdn"), (third, "third")] {
            let st = state.clone();
            let urls = (cdn_url.clone(), third_url.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming().flatten() {
                    let st = st.clone();
                    let urls = urls.clone();
                    std::thread::spawn(move || serve(conn, origin, &st, &urls));
                }
            });
        }
        {
            let mut s = state.lock().unwrap();
            s.endpoint = endpoint.clone();
            s.cdn = cdn_url.clone();
            s.third = third_url.clone();
        }
        TestHub { endpoint, cdn: cdn_url, third: third_url, state }
    }

    /// Publishes the files of checkpoint `dir` as `repo` at `commit`; `branch` (if any) points at it.
    pub fn publish(&self, repo: &str, commit: &str, dir: &Path, branch: Option<&str>) {
        let mut files = HashMap::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            files.insert(p.file_name().unwrap().to_str().unwrap().to_string(), std::fs::read(&p).unwrap());
        }
        let mut st = self.state.lock().unwrap();
        let r = st.repos.entry(repo.to_string()).or_default();
        r.commits.insert(commit.to_string(), files);
        if let Some(b) = branch {
            r.refs.insert(b.to_string(), commit.to_string());
        }
    }

    pub fn faults(&self, f: Faults) {
        self.state.lock().unwrap().faults = f;
    }
    pub fn set_gated(&self, repo: &str) {
        self.state.lock().unwrap().repos.get_mut(repo).unwrap().gated = true;
    }
    pub fn served(&self) -> u64 {
        self.state.lock().unwrap().served
    }
    pub fn requests(&self) -> Vec<Req> {
        self.state.lock().unwrap().requests.clone()
    }
    /// The most requests answered at once since the last reset.
    pub fn max_in_flight(&self) -> u32 {
        self.state.lock().unwrap().max_in_flight
    }
    pub fn reset_counters(&self) {
        let mut st = self.state.lock().unwrap();
        st.served = 0;
        st.max_in_flight = 0;
        st.requests.clear();
    }
}

fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Declared length when it differs from the body (a cut).
    declared: Option<usize>,
}

fn resp(status: u16, headers: &[(&str, String)], body: Vec<u8>) -> Response {
    Response {
        status,
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        body,
        declared: None,
    }
}

fn error(status: u16, code: &str, commit: Option<&str>) -> Response {
    let mut h = vec![("X-Error-Code", code.to_string()), ("X-Request-Id", "req-test-0001".to_string())];
    h.push(("X-Error-Message", format!("{code} (test hub)")));
    if let Some(c) = commit {
        h.push(("X-Repo-Commit", c.to_string()));
    }
    resp(status, &h, format!("{{\"error\":\"{code}\"}}").into_bytes())
}

fn serve(conn: TcpStream, origin: &'static str, st: &Mutex<State>, urls: &(String, String)) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let req = Req {
        origin,
        method: method.clone(),
        path: path.clone(),
        authorization: headers.get("authorization").cloned(),
        range: headers.get("range").cloned(),
    };
    let (response, faults) = {
        let mut s = st.lock().unwrap();
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        s.requests.push(req);
        let r = match origin {
            "hub" => hub_route(&mut s, &method, &path, &headers, &urls.0),
            _ => cdn_route(&mut s, origin, &path, &headers, &urls.1),
        };
        (r, s.faults.clone())
    };
    write_response(conn, &method, response, faults.slow_ms, st);
}

/// Ends a request's time in flight once: just before its last bytes are written (the client may start its next
/// request as soon as it has them), or on any early return.
struct Answering<'a>(&'a Mutex<State>, bool);

impl Answering<'_> {
    fn done(&mut self) {
        if !self.1 {
            self.1 = true;
            self.0.lock().unwrap().in_flight -= 1;
        }
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.done();
    }
}

fn hub_route(s: &mut State, method: &str, path: &str, headers: &HashMap<String, String>, cdn: &str) -> Response {
    // GETs only: HEADs of small files keep answering at the endpoint (their metadata), their bodies are moved.
    if s.faults.redirect_endpoint_to_third && method == "GET" && !path.starts_with("/cdn-return/") && !is_lfs(path) {
        return resp(302, &[("Location", format!("{}/relay{path}", s.third))], Vec::new());
    }
    if path.starts_with("/cdn-return/") {
        return cdn_route(s, "hub", path.trim_start_matches("/cdn-return"), headers, "");
    }
    let path = path.split('?').next().unwrap_or("");
    if let Some(repo) = path.strip_prefix("/api/models/").and_then(|r| r.strip_suffix("/refs")) {
        // The refs listing: every branch (and tag: refs named `tags/…` here) with its commit, in one answer.
        let Some(r) = s.repos.get(repo) else { return error(401, "RepoNotFound", None) };
        let item = |name: &str, kind: &str, c: &str| {
            format!("{{\"name\":\"{name}\",\"ref\":\"refs/{kind}/{name}\",\"targetCommit\":\"{c}\"}}")
        };
        let mut branches: Vec<String> = Vec::new();
        let mut tags: Vec<String> = Vec::new();
        let mut names: Vec<(&String, &String)> = r.refs.iter().collect();
        names.sort();
        for (name, c) in names {
            match name.strip_prefix("tags/") {
                Some(t) => tags.push(item(t, "tags", c)),
                None => branches.push(item(name, "heads", c)),
            }
        }
        let body = format!("{{\"branches\":[{}],\"converts\":[],\"tags\":[{}]}}", branches.join(","), tags.join(","));
        return resp(200, &[("Content-Type", "application/json".into())], body.into_bytes());
    }
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let Some((repo, rev)) = rest.split_once("/revision/") else { return error(404, "NotFound", None) };
        let rev = rev.replace("%2F", "/");
        if s.faults.html_200 {
            return resp(
                200,
                &[("Content-Type", "text/html".into())],
                b"<html><body>Service unavailable</body></html>".to_vec(),
            );
        }
        let Some(r) = s.repos.get(repo) else { return error(401, "RepoNotFound", None) };
        let commit = r.refs.get(&rev).cloned().or_else(|| r.commits.contains_key(&rev).then(|| rev.clone()));
        let Some(commit) = commit else { return error(404, "RevisionNotFound", None) };
        let sha = if s.faults.bad_commit { "../../not-a-commit".to_string() } else { commit.clone() };
        let siblings: Vec<String> = r.commits[&commit].keys().map(|k| format!("{{\"rfilename\":\"{k}\"}}")).collect();
        let body = format!("{{\"id\":\"{repo}\",\"sha\":\"{sha}\",\"siblings\":[{}]}}", siblings.join(","));
        return resp(200, &[("Content-Type", "application/json".into())], body.into_bytes());
    }
    // /{org}/{name}/resolve/{rev}/{file}
    let segs: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if segs.len() != 5 || segs[2] != "resolve" {
        return error(404, "NotFound", None);
    }
    let repo = format!("{}/{}", segs[0], segs[1]);
    let rev = segs[3].replace("%2F", "/");
    let file = segs[4].to_string();
    let Some(r) = s.repos.get(&repo) else { return error(401, "RepoNotFound", None) };
    let commit = r.refs.get(&rev).cloned().or_else(|| r.commits.contains_key(&rev).then(|| rev.clone()));
    let Some(commit) = commit else { return error(404, "RevisionNotFound", None) };
    if r.gated && headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {GOOD_TOKEN}")) {
        return error(403, "GatedRepo", Some(&commit));
    }
    let Some(bytes) = r.commits[&commit].get(&file) else { return error(404, "EntryNotFound", Some(&commit)) };
    let mut h = vec![("X-Repo-Commit", commit.clone())];
    if is_lfs(&file) {
        let sha = if s.faults.hostile_etag { "../../../evil".to_string() } else { sha256(bytes) };
        h.push(("X-Linked-Etag", format!("\"{sha}\"")));
        h.push(("X-Linked-Size", bytes.len().to_string()));
        h.push(("Location", format!("{cdn}/blobs/{}?sig=g{}", sha256(bytes), s.sig_gen)));
        return resp(302, &h, Vec::new());
    }
    h.push(("ETag", format!("\"{}\"", git_blob_id(bytes))));
    h.push(("Accept-Ranges", "bytes".into()));
    let _ = method;
    ranged(bytes.clone(), headers, h, &s.faults, false)
}

fn cdn_route(s: &mut State, origin: &str, path: &str, headers: &HashMap<String, String>, third: &str) -> Response {
    if let Some(rest) = path.strip_prefix("/relay") {
        // The third origin relays what the hub would answer, without redirecting again.
        let saved = std::mem::take(&mut s.faults.redirect_endpoint_to_third);
        let cdn = s.cdn.clone();
        let r = hub_route(s, "GET", rest, headers, &cdn);
        s.faults.redirect_endpoint_to_third = saved;
        return r;
    }
    let sha = path.trim_start_matches("/blobs/").split('?').next().unwrap_or("").to_string();
    if origin == "cdn" && s.faults.expire_urls_after > 0 {
        let sig = path.split_once("?sig=").map(|(_, g)| g.to_string()).unwrap_or_default();
        if sig != format!("g{}", s.sig_gen) {
            return error(403, "AccessDenied", None);
        }
        s.cdn_since_sig += 1;
        if s.cdn_since_sig >= s.faults.expire_urls_after {
            s.sig_gen += 1;
            s.cdn_since_sig = 0;
        }
    }
    if origin == "cdn" && s.faults.redirect_chain {
        return resp(302, &[("Location", format!("{third}/blobs/{sha}?sig=def"))], Vec::new());
    }
    if origin == "cdn" && s.faults.redirect_back {
        return resp(302, &[("Location", format!("{}/cdn-return/blobs/{sha}", s.endpoint))], Vec::new());
    }
    if s.faults.fail_503 > 0 {
        s.faults.fail_503 -= 1;
        return error(503, "ServiceUnavailable", None);
    }
    if s.faults.rate_limit > 0 {
        s.faults.rate_limit -= 1;
        let mut r = error(429, "RateLimited", None);
        r.headers.push(("Retry-After".into(), "1".into()));
        return r;
    }
    let blob =
        s.repos.values().flat_map(|r| r.commits.values()).flat_map(|f| f.values()).find(|b| sha256(b) == sha).cloned();
    let Some(mut blob) = blob else { return error(404, "NotFound", None) };
    if s.faults.corrupt_blob {
        let n = blob.len() - 1;
        blob[n] ^= 1;
    }
    let cut = if s.faults.drop_mid_body > 0 {
        s.faults.drop_mid_body -= 1;
        true
    } else {
        false
    };
    ranged(blob, headers, vec![("Accept-Ranges", "bytes".into())], &s.faults, cut)
}

fn ranged(
    bytes: Vec<u8>,
    headers: &HashMap<String, String>,
    mut h: Vec<(&str, String)>,
    f: &Faults,
    cut: bool,
) -> Response {
    let total = bytes.len();
    let range = headers.get("range").and_then(|r| r.strip_prefix("bytes=")).and_then(|r| {
        let (a, b) = r.split_once('-')?;
        let a: usize = a.parse().ok()?;
        let b: usize = if b.is_empty() { total - 1 } else { b.parse().ok()? };
        Some((a, b.min(total - 1)))
    });
    let mut r = match range {
        Some((a, _)) if a >= total => {
            h.push(("Content-Range", format!("bytes */{total}")));
            resp(416, &h, Vec::new())
        }
        Some((a, b)) if !f.ignore_range => {
            let range = match f.wrong_content_range {
                1 => format!("bytes {}-{}/{total}", a + 1, b + 1),
                2 => format!("bytes {a}-{b}/{}", total + 1),
                _ => format!("bytes {a}-{b}/{total}"),
            };
            h.push(("Content-Range", range));
            let mut body = bytes[a..=b].to_vec();
            if f.lie_in_ranges && a > 8 && !body.is_empty() {
                let mid = body.len() / 2;
                body[mid] ^= 0x10;
            }
            if f.extra_bytes {
                body.extend_from_slice(&[0u8; 16]);
            }
            resp(206, &h, body)
        }
        _ => resp(200, &h, bytes),
    };
    if cut {
        r.declared = Some(r.body.len());
        let half = r.body.len() / 2;
        r.body.truncate(half);
    }
    r
}

fn write_response(mut conn: TcpStream, method: &str, r: Response, slow_ms: u64, st: &Mutex<State>) {
    let reason = match r.status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        _ => "Status",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", r.status);
    if !r.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("x-request-id")) {
        // As the Hub does, every answer carries a request id.
        head.push_str("X-Request-Id: req-test-ok\r\n");
    }
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", r.declared.unwrap_or(r.body.len())));
    let mut answering = Answering(st, false);
    if method == "HEAD" || r.body.is_empty() {
        answering.done();
    }
    if conn.write_all(head.as_bytes()).is_err() || method == "HEAD" {
        return;
    }
    let pieces = r.body.len().div_ceil(64 << 10);
    for (i, piece) in r.body.chunks(64 << 10).enumerate() {
        if slow_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(slow_ms));
        }
        if i + 1 == pieces {
            answering.done();
        }
        if conn.write_all(piece).is_err() {
            return;
        }
        st.lock().unwrap().served += piece.len() as u64;
    }
    let _ = conn.flush();
    let _ = conn.shutdown(std::net::Shutdown::Both);
}

/// Files the Hub stores in LFS (served from the CDN with `X-Linked-Etag`): weights, as on the real Hub.
fn is_lfs(path: &str) -> bool {
    path.ends_with(".safetensors") || path.ends_with(".bin")
}
