//! Byte ranges, checked: a range answer must be `206` with a `Content-Range` that matches what was asked and
//! exactly that many bytes. A body cut short is resumed from where it stopped. A server that ignores `Range`
//! (answers 200) gets a warning and a fallback that skips to the range in the full body — correct, but slower.
//! A large range is fetched as several concurrent pieces and handed on in order, a bounded window at a time, when
//! it is the only one being streamed; while others are (a grid's workers), each is one request streamed through a
//! small buffer, so memory stays bounded whatever the number of workers and the connection budget is shared.

use super::Remote;
use super::http::{Ctx, Http};
use crate::error::Result;
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

/// Pieces fetched at once by `stream_ordered` (memory: WINDOW × chunk).
const WINDOW: u64 = 4;

/// Fetches `[offset, offset + len)` into `sink`, resuming after cuts, until every byte has arrived.
pub(crate) fn fetch_into(
    http: &Http,
    remote: &Remote,
    offset: u64,
    len: u64,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let first = Ctx::new(&remote.repo, remote.path.clone());
    let mut got = 0u64;
    let mut cuts = 0;
    // A signed CDN URL expires (about an hour): refused mid-transfer (403, or 404 as some stores say it), it is
    // asked for again at the endpoint and the transfer resumes from the bytes already received.
    let mut url = std::borrow::Cow::Borrowed(remote.url.as_str());
    let mut renewed = 0;
    while got < len {
        let (a, b) = (offset + got, offset + len - 1);
        let mut resp = match http.send(super::http::Method::Get, &url, Some((a, b)), &first, true) {
            Err(crate::error::Error::Hub { status: Some(403 | 404), .. })
                if remote.resolve.is_some() && renewed < http.settings.attempts =>
            {
                renewed += 1;
                tracing::warn!(repo = %remote.repo, file = %remote.path, got, of = len, "the signed URL was refused (expired?); asking the Hub for a new one and resuming");
                url = std::borrow::Cow::Owned(super::re_resolve(http, remote)?);
                continue;
            }
            other => other?,
        };
        let ctx = first.answered(&resp);
        let status = resp.status().as_u16();
        let mut skip = 0u64;
        match status {
            206 => {
                let cr =
                    resp.headers().get("content-range").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                let want = format!("bytes {a}-{b}/");
                if !cr.starts_with(&want) {
                    return Err(ctx.protocol(format!("asked for bytes {a}-{b}, got Content-Range {cr:?}")));
                }
                let total = cr[want.len()..].parse::<u64>().ok();
                if total.is_some_and(|t| t != remote.size) {
                    return Err(
                        ctx.protocol(format!("Content-Range {cr:?} disagrees with the file's size {}", remote.size))
                    );
                }
            }
            200 => {
                // The whole file, not the range: believe it only if it is the whole file.
                let declared = resp
                    .headers()
                    .get("content-length")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                if declared.is_some_and(|n| n != remote.size) {
                    return Err(
                        ctx.protocol(format!("a 200 answer of {declared:?} bytes for a file of {} bytes", remote.size))
                    );
                }
                if !http.ranges_ignored.swap(true, Ordering::Relaxed) {
                    tracing::warn!(repo = %remote.repo, file = %remote.path, "the server ignored a Range request (200, not 206); reading the full body and keeping only the range — correct but slower");
                }
                skip = a;
            }
            s => return Err(ctx.protocol(format!("asked for a byte range, got HTTP {s}"))),
        }
        let mut reader = resp.body_mut().as_reader();
        if skip > 0 {
            let skipped = std::io::copy(&mut (&mut reader).take(skip), &mut std::io::sink()).unwrap_or(0);
            crate::progress::count_fetched(skipped);
            if skipped < skip {
                cuts += 1;
                check_cuts(cuts, http, &ctx)?;
                continue;
            }
        }
        let want = b - a + 1;
        let mut buf = vec![0u8; (want.min(1 << 20)) as usize];
        let mut this = 0u64;
        // The buffer is filled before it is handed on: a few large writes (and hasher wake-ups) per range, not
        // one per socket read.
        let cut = loop {
            let room = ((want - this) as usize).min(buf.len());
            if room == 0 {
                break None;
            }
            let (filled, cut) = fill(&mut reader, &mut buf[..room]);
            if filled > 0 {
                crate::progress::count_fetched(filled as u64);
                sink(&buf[..filled])?;
                this += filled as u64;
            }
            if cut.is_some() {
                break cut;
            }
        };
        got += this;
        if status == 206 && cut.is_none() {
            // Exactly the requested count arrived; a server that sends more is not believed either.
            let mut extra = [0u8; 1];
            if matches!(reader.read(&mut extra), Ok(n) if n > 0) {
                return Err(ctx.protocol(format!("the server sent more than the {want} bytes asked for")));
            }
        }
        if let Some(why) = cut {
            cuts += 1;
            tracing::warn!(repo = %remote.repo, file = %remote.path, got, of = len, "{why}; resuming");
            check_cuts(cuts, http, &ctx)?;
        }
    }
    Ok(())
}

/// Reads into all of `buf` unless the body ends or fails first: the bytes read, and why it stopped short.
fn fill(reader: &mut impl std::io::Read, buf: &mut [u8]) -> (usize, Option<String>) {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return (filled, Some("the body ended early".to_string())),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (filled, Some(e.to_string())),
        }
    }
    (filled, None)
}

fn check_cuts(cuts: u32, http: &Http, ctx: &Ctx) -> Result<()> {
    if cuts >= http.settings.attempts {
        return Err(ctx.protocol(format!("the transfer was cut {cuts} times; giving up")));
    }
    std::thread::sleep(http.settings.backoff * cuts.min(6));
    Ok(())
}

/// `fetch_into` collected in memory.
pub(crate) fn fetch_vec(http: &Http, remote: &Remote, offset: u64, len: u64) -> Result<Vec<u8>> {
    let mut v = Vec::with_capacity(len as usize);
    fetch_into(http, remote, offset, len, &mut |b| {
        v.extend_from_slice(b);
        Ok(())
    })?;
    Ok(v)
}

/// Counts a stream as active for as long as it lives.
struct Streaming<'a>(&'a AtomicUsize);

impl Drop for Streaming<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Streams `[offset, offset + len)` to `sink` in order, in pieces of any length: as `chunk`-sized pieces fetched
/// by up to `WINDOW` threads when no other stream is active, else as one request read through a 1 MiB buffer.
pub(crate) fn stream_ordered(
    http: &Http,
    remote: &Remote,
    offset: u64,
    len: u64,
    chunk: u64,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let others = http.streams.fetch_add(1, Ordering::SeqCst);
    let _active = Streaming(&http.streams);
    if others > 0 {
        return fetch_into(http, remote, offset, len, sink);
    }
    let chunk = chunk.max(1);
    let pieces = len.div_ceil(chunk);
    // The first piece alone: it tells whether the server honours ranges at all.
    let first = chunk.min(len);
    sink(&fetch_vec(http, remote, offset, first)?)?;
    if pieces <= 1 {
        return Ok(());
    }
    if http.ranges_ignored.load(Ordering::Relaxed) {
        // One pass over the full body for the rest, instead of one full body per piece.
        return fetch_into(http, remote, offset + first, len - first, sink);
    }
    let next = AtomicU64::new(1);
    let state = Mutex::new((1u64, BTreeMap::<u64, Result<Vec<u8>>>::new(), false));
    let ready = Condvar::new();
    let mut outcome = Ok(());
    std::thread::scope(|s| {
        for _ in 0..WINDOW.min(pieces) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= pieces {
                        break;
                    }
                    {
                        // Stay within WINDOW pieces of the consumer, so memory stays bounded.
                        let mut st = state.lock().expect("lock");
                        while i >= st.0 + WINDOW && !st.2 {
                            st = ready.wait(st).expect("lock");
                        }
                        if st.2 {
                            break;
                        }
                    }
                    let a = offset + i * chunk;
                    let n = chunk.min(offset + len - a);
                    let r = fetch_vec(http, remote, a, n);
                    state.lock().expect("lock").1.insert(i, r);
                    ready.notify_all();
                }
            });
        }
        for i in 1..pieces {
            let piece = {
                let mut st = state.lock().expect("lock");
                loop {
                    if let Some(p) = st.1.remove(&i) {
                        break p;
                    }
                    st = ready.wait(st).expect("lock");
                }
            };
            let r = piece.and_then(|p| sink(&p));
            let mut st = state.lock().expect("lock");
            st.0 = i + 1;
            if let Err(e) = r {
                st.2 = true;
                outcome = Err(e);
                ready.notify_all();
                break;
            }
            ready.notify_all();
        }
    });
    outcome
}
