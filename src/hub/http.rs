//! One HTTP exchange with the Hub, done carefully: redirects followed by hand (the token is attached only when
//! the URL's origin is the endpoint's), transient failures (connect errors, timeouts, 408, 429, 5xx) retried with
//! exponential backoff and `Retry-After`, and HTTP errors mapped to what the user should do. A host that cannot
//! be resolved or connected to is not transient: it is learnt once per run, and every later request to it fails at
//! once with the same advice (`--offline`, `HF_ENDPOINT`).

use super::settings::{HubSettings, Origin, join_url};
use crate::error::{Error, Result};
use std::io::Read;
use std::time::Duration;
use ureq::Body;
use ureq::http::Response;

pub(crate) struct Http {
    agent: ureq::Agent,
    pub(crate) settings: HubSettings,
    /// Set when a server answered a range request with the whole file.
    pub(crate) ranges_ignored: std::sync::atomic::AtomicBool,
    /// The connection budget: requests in flight, all workers together, held until their answer is dropped.
    budget: std::sync::Arc<Budget>,
    /// Hosts (`host:port`) found unreachable in this run, with the error that said so.
    unreachable: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// Hosts that have answered in this run: a refused connection to one of them later (a mirror restarting)
    /// is retried with backoff, not learnt as "unreachable" for the rest of the run.
    answered: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Large ranges being streamed now (`ranges::stream_ordered`), all workers together.
    pub(crate) streams: std::sync::atomic::AtomicUsize,
}

/// The two requests gamma-run makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Head,
}

/// What a request is for, to name it in errors.
pub(crate) struct Ctx<'a> {
    pub(crate) repo: &'a str,
    pub(crate) what: String,
    /// The `X-Request-Id` of the answer being read, once there is one: the Hub's staff can trace a request by it.
    pub(crate) request_id: Option<String>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(repo: &'a str, what: String) -> Ctx<'a> {
        Ctx { repo, what, request_id: None }
    }

    /// The same context, naming the request that `resp` answers.
    pub(crate) fn answered(&self, resp: &Response<Body>) -> Ctx<'a> {
        let id = resp.headers().get("x-request-id").and_then(|v| v.to_str().ok());
        Ctx { repo: self.repo, what: self.what.clone(), request_id: id.map(|s| s.chars().take(300).collect()) }
    }

    pub(crate) fn protocol(&self, message: String) -> Error {
        Error::Hub {
            repo: self.repo.into(),
            what: self.what.clone(),
            status: None,
            code: None,
            request_id: self.request_id.clone(),
            message,
        }
    }
}

const MAX_REDIRECTS: usize = 8;

impl Http {
    pub(crate) fn new(settings: HubSettings) -> Http {
        let agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .user_agent(format!("gamma-run/{}", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(settings.timeout))
            .timeout_recv_body(Some(settings.timeout * 4))
            .build()
            .into();
        let budget = std::sync::Arc::new(Budget {
            limit: settings.connections,
            used: Default::default(),
            freed: Default::default(),
        });
        Http {
            agent,
            settings,
            ranges_ignored: Default::default(),
            budget,
            unreachable: Default::default(),
            answered: Default::default(),
            streams: Default::default(),
        }
    }

    /// Sends `method url` (with `Range: bytes=a-b` if given), retrying transient failures. With `follow`,
    /// redirects are followed by hand; without, a 3xx is returned as is. Error statuses become `Error::Hub`.
    pub(crate) fn send(
        &self,
        method: Method,
        url: &str,
        range: Option<(u64, u64)>,
        ctx: &Ctx,
        follow: bool,
    ) -> Result<Answer> {
        let mut url = url.to_string();
        let home = |u: &str| Origin::of(u).is_ok_and(|o| o == self.settings.origin);
        // Once a redirect has left the endpoint's origin, the token is never attached again, even if it returns.
        let mut with_token = home(&url);
        for _ in 0..=MAX_REDIRECTS {
            let resp = self.send_once_with_retry(method, &url, range, ctx, with_token)?;
            let status = resp.status().as_u16();
            if follow && (300..400).contains(&status) {
                let loc = resp.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default();
                url = join_url(&url, loc).map_err(|e| ctx.protocol(format!("bad redirect: {e}")))?;
                with_token &= home(&url);
                continue;
            }
            if status >= 400 {
                return Err(http_error(resp.resp, ctx, &self.settings));
            }
            return Ok(resp);
        }
        Err(ctx.protocol(format!("more than {MAX_REDIRECTS} redirects")))
    }

    fn send_once_with_retry(
        &self,
        method: Method,
        url: &str,
        range: Option<(u64, u64)>,
        ctx: &Ctx,
        with_token: bool,
    ) -> Result<Answer> {
        let host = Origin::of(url).map(|o| format!("{}:{}", o.host, o.port)).unwrap_or_default();
        let known = |h: &str| self.unreachable.lock().ok()?.get(h).cloned();
        if let Some(message) = known(&host) {
            return Err(ctx.protocol(message));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = match method {
                Method::Head => self.agent.head(url),
                Method::Get => self.agent.get(url),
            };
            if let (true, Some(token)) = (with_token, &self.settings.token) {
                req = req.header("Authorization", format!("Bearer {token}"));
            }
            if let Some((a, b)) = range {
                req = req.header("Range", format!("bytes={a}-{b}"));
            }
            let started = std::time::Instant::now();
            let permit = self.budget.acquire();
            let outcome = req.call();
            if outcome.is_ok()
                && let Ok(mut seen) = self.answered.lock()
            {
                seen.insert(host.clone());
            }
            let has_answered = || self.answered.lock().is_ok_and(|seen| seen.contains(&host));
            if let Ok(r) = &outcome {
                // Never the query: a CDN's signed URL carries its signature there.
                let shown = url.split(['?', '#']).next().unwrap_or_default();
                let range = range.map(|(a, b)| format!(" bytes {a}-{b}")).unwrap_or_default();
                let ms = started.elapsed().as_millis();
                let verb = if method == Method::Head { "HEAD" } else { "GET" };
                tracing::debug!("{verb} {shown}{range} → HTTP {} in {ms} ms", r.status().as_u16());
            }
            let (transient, wait, why) = match &outcome {
                Ok(r) if matches!(r.status().as_u16(), 408 | 429 | 500..=599) => {
                    let retry_after = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(60)));
                    (true, retry_after, format!("HTTP {}", r.status().as_u16()))
                }
                Ok(_) => (false, None, String::new()),
                // A name that does not resolve, or no route: dead for the run, whichever host. A refused or timed-out
                // connection: so for the endpoint itself; a CDN host gets the usual retries (one bad connection
                // there must not fail every job). Only a host that has not answered in this run is learnt so:
                // one that has (a mirror restarting mid-grid) gets the usual retries too.
                Err(e)
                    if is_unreachable(e)
                        && !has_answered()
                        && (is_dead_network(e) || Origin::of(url).is_ok_and(|o| o == self.settings.origin)) =>
                {
                    let message = self.unreachable_advice(url, e);
                    tracing::debug!("{host} is unreachable ({e}): failing every request to it in this run");
                    if let Ok(mut list) = self.unreachable.lock() {
                        list.insert(host, message.clone());
                    }
                    return Err(ctx.protocol(message));
                }
                Err(e) => (is_transient(e) || (is_unreachable(e) && has_answered()), None, e.to_string()),
            };
            if !transient || attempt >= self.settings.attempts {
                return match outcome {
                    Ok(r) => Ok(Answer { resp: r, _permit: permit }),
                    Err(e) => Err(ctx.protocol(format!("{e} (after {attempt} attempts)"))),
                };
            }
            let backoff = self.settings.backoff * 2u32.saturating_pow(attempt - 1);
            let wait = wait.unwrap_or(backoff.min(Duration::from_secs(30)));
            tracing::warn!(repo = ctx.repo, file = %ctx.what, attempt, "{why}; retrying in {wait:?}");
            drop(permit);
            std::thread::sleep(wait);
        }
    }
}

impl Http {
    /// What to do when `url`'s host cannot be reached: the endpoint, the cache, or a mirror.
    fn unreachable_advice(&self, url: &str, e: &ureq::Error) -> String {
        let endpoint = &self.settings.endpoint;
        let what = if Origin::of(url).is_ok_and(|o| o == self.settings.origin) {
            format!("cannot reach the Hub endpoint {endpoint}")
        } else {
            let o = Origin::of(url).map(|o| format!("{}://{}:{}", o.scheme, o.host, o.port)).unwrap_or_default();
            format!("cannot reach {o}, where the Hub endpoint {endpoint} sent this request")
        };
        format!(
            "{what} ({e}); not retried, and later requests to it in this run fail at once. With no network, run with \
             --offline (or HF_HUB_OFFLINE=1) to read models from the HF cache; for a mirror, set HF_ENDPOINT"
        )
    }
}

/// A bounded number of requests in flight: a worker waits for a free slot rather than opening another
/// connection (many revisions of a grid, many workers, one budget).
struct Budget {
    limit: usize,
    used: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Budget {
    fn acquire(self: &std::sync::Arc<Self>) -> Permit {
        let mut used = self.used.lock().expect("budget lock");
        while *used >= self.limit {
            used = self.freed.wait(used).expect("budget lock");
        }
        *used += 1;
        Permit(std::sync::Arc::clone(self))
    }
}

/// A slot of the budget, given back when the answer (and so its connection) is dropped.
pub(crate) struct Permit(std::sync::Arc<Budget>);

impl Drop for Permit {
    fn drop(&mut self) {
        if let Ok(mut used) = self.0.used.lock() {
            *used -= 1;
        }
        self.0.freed.notify_one();
    }
}

/// An answer from the Hub, holding its slot of the connection budget until it is dropped.
pub(crate) struct Answer {
    resp: Response<Body>,
    _permit: Permit,
}

impl std::ops::Deref for Answer {
    type Target = Response<Body>;
    fn deref(&self) -> &Response<Body> {
        &self.resp
    }
}

impl std::ops::DerefMut for Answer {
    fn deref_mut(&mut self) -> &mut Response<Body> {
        &mut self.resp
    }
}

/// No name resolution or no route: nothing a retry can fix in this run.
fn is_dead_network(e: &ureq::Error) -> bool {
    use std::io::ErrorKind as K;
    match e {
        ureq::Error::HostNotFound => true,
        ureq::Error::Timeout(t) => matches!(t, ureq::Timeout::Resolve),
        ureq::Error::Io(io) => {
            matches!(io.kind(), K::NetworkUnreachable | K::HostUnreachable)
                || io.to_string().contains("failed to lookup address information")
        }
        _ => false,
    }
}

/// A failure to resolve or connect: the network or the host is down, not a blip worth six retries.
fn is_unreachable(e: &ureq::Error) -> bool {
    use std::io::ErrorKind as K;
    match e {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Timeout(t) => matches!(t, ureq::Timeout::Resolve | ureq::Timeout::Connect),
        ureq::Error::Io(io) => {
            matches!(io.kind(), K::ConnectionRefused | K::NetworkUnreachable | K::HostUnreachable | K::AddrNotAvailable)
                // The standard library's resolver reports a failed getaddrinfo with this text and no stable kind.
                || io.to_string().contains("failed to lookup address information")
        }
        _ => false,
    }
}

pub(crate) fn is_transient(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound
    )
}

/// Reads a whole body of at most `max` bytes.
pub(crate) fn read_limited(resp: &mut Response<Body>, max: u64, ctx: &Ctx) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    resp.body_mut()
        .as_reader()
        .take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| ctx.protocol(format!("reading the response: {e}")))?;
    if out.len() as u64 > max {
        return Err(ctx.protocol(format!("response larger than {max} bytes")));
    }
    Ok(out)
}

fn http_error(mut resp: Response<Body>, ctx: &Ctx, settings: &HubSettings) -> Error {
    let status = resp.status().as_u16();
    let h = resp.headers();
    let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(300).collect::<String>());
    let code = get("x-error-code");
    let request_id = get("x-request-id");
    let server_says = get("x-error-message");
    let _ = read_limited(&mut resp, 64 << 10, ctx);
    let repo = ctx.repo;
    let page = format!("{}/{repo}", settings.endpoint);
    let mut message = match (status, code.as_deref()) {
        (403, Some("GatedRepo")) => {
            format!("{repo} is a gated repo: accept its terms on {page} and set HF_TOKEN to a token of that account")
        }
        (401, _) => format!("unauthorized: {repo} does not exist, is private, or HF_TOKEN is missing or invalid"),
        (403, _) => format!("forbidden: this token may not read {repo}"),
        (404, Some("RepoNotFound")) => format!("repo {repo} not found"),
        (404, Some("RevisionNotFound")) => format!("revision not found in {repo} ({})", ctx.what),
        (404, Some("EntryNotFound")) => format!("file {} not found in {repo}", ctx.what),
        (404, _) => format!("not found: {}", ctx.what),
        (416, _) => "range not satisfiable".to_string(),
        (429, _) => "rate limited by the Hub; wait and run again (fresh outputs are kept)".to_string(),
        (500..=599, _) => format!("the Hub kept failing (HTTP {status})"),
        _ => format!("unexpected HTTP {status}"),
    };
    if let Some(s) = server_says {
        message.push_str(&format!("; the Hub says: {s}"));
    }
    Error::Hub { repo: repo.into(), what: ctx.what.clone(), status: Some(status), code, request_id, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// Answers one request on `l` with 200 "ok".
    fn answer_one(l: &TcpListener) {
        let (mut c, _) = l.accept().unwrap();
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = c.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").unwrap();
    }

    /// Issue 24: an endpoint that has answered in this run and then refuses connections (a mirror restarting) is
    /// retried with backoff, and the request succeeds once it is back; one that never answered is learnt as
    /// unreachable at once (the no-network case keeps failing fast).
    #[test]
    fn an_endpoint_that_answered_is_retried_when_it_refuses_later() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let env = |k: &str| match k {
            "HF_ENDPOINT" => Some(endpoint.clone()),
            "GAMMA_RUN_HTTP_BACKOFF_MS" => Some("40".into()),
            _ => None,
        };
        let http = Http::new(HubSettings::from_env(env).unwrap());
        let (down, is_down) = std::sync::mpsc::channel();
        let server = std::thread::spawn(move || {
            answer_one(&l);
            drop(l);
            down.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
            answer_one(&l);
        });
        let url = format!("{endpoint}/api/models/org/m");
        let ctx = Ctx::new("org/m", "the revision API".into());
        assert_eq!(http.send(Method::Get, &url, None, &ctx, false).unwrap().status().as_u16(), 200);
        is_down.recv().unwrap();
        let again = http.send(Method::Get, &url, None, &ctx, false);
        assert_eq!(again.map(|a| a.status().as_u16()).map_err(|e| e.to_string()), Ok(200));
        server.join().unwrap();
        // A host that never answered: unreachable at once, and remembered.
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
        drop(closed);
        let env = |k: &str| (k == "HF_ENDPOINT").then(|| dead.clone());
        let http = Http::new(HubSettings::from_env(env).unwrap());
        let t = std::time::Instant::now();
        let err = http.send(Method::Get, &format!("{dead}/api/x"), None, &ctx, false).err().unwrap().to_string();
        assert!(t.elapsed() < Duration::from_millis(400), "{:?}: {err}", t.elapsed());
        assert!(!err.contains("attempts"), "{err}");
    }
}
