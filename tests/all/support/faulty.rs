//! A TCP proxy on loopback that puts network faults between gamma-run and a real server (the S3 server of the
//! remote-store tests): answers the first requests with `503 Slow Down`, or cuts connections midway through a
//! download or an upload. Byte-level, so the server and the client are the real ones.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer this many requests (connections) with `503 Slow Down`, then forward.
    pub slow_down: u32,
    /// Cut the first this many connections on which the server sends more than `cut_after` bytes, there (a
    /// download cut midway).
    pub cut_downloads: u32,
    /// Cut the first this many connections on which the client sends more than `cut_after` bytes (an upload cut
    /// midway).
    pub cut_uploads: u32,
    pub cut_after: u64,
}

#[derive(Debug, Default)]
struct State {
    faults: Faults,
    /// Faults that happened: 503s sent, downloads cut, uploads cut.
    slowed: u32,
    cut_down: u32,
    cut_up: u32,
}

pub struct Proxy {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl Proxy {
    /// Forwards 127.0.0.1:<new port> to `upstream` (host:port).
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let state = Arc::new(Mutex::new(State::default()));
        let (st, up) = (state.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (st, up) = (st.clone(), up.clone());
                std::thread::spawn(move || serve(conn, &up, &st));
            }
        });
        Proxy { url, state }
    }
    pub fn faults(&self, f: Faults) {
        let mut s = self.state.lock().unwrap();
        *s = State { faults: f, ..State::default() };
    }
    /// (503s sent, downloads cut, uploads cut) since `faults` was last set.
    pub fn happened(&self) -> (u32, u32, u32) {
        let s = self.state.lock().unwrap();
        (s.slowed, s.cut_down, s.cut_up)
    }
}

fn take(state: &Mutex<State>, pick: impl FnOnce(&mut Faults) -> &mut u32) -> bool {
    let mut s = state.lock().unwrap();
    let n = pick(&mut s.faults);
    if *n > 0 {
        *n -= 1;
        true
    } else {
        false
    }
}

fn serve(mut client: TcpStream, upstream: &str, state: &Arc<Mutex<State>>) {
    if take(state, |f| &mut f.slow_down) {
        // Read the request head, answer as S3 does when it sheds load, and close.
        let mut buf = [0u8; 8192];
        let _ = client.set_read_timeout(Some(std::time::Duration::from_millis(200)));
        let _ = client.read(&mut buf);
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your \
                    request rate.</Message></Error>";
        let _ = write!(
            client,
            "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        state.lock().unwrap().slowed += 1;
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let Ok(server) = TcpStream::connect(upstream) else { return };
    let limit = state.lock().unwrap().faults.cut_after;
    // A cut is spent when a connection's stream crosses `limit` bytes while cuts of its direction remain: the
    // first transfers that large are cut, whichever connections carry them.
    let pipe = move |mut from: TcpStream, mut to: TcpStream, download: bool, state: Arc<Mutex<State>>| {
        let mut sent = 0u64;
        let mut spared = false;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let crossing = !spared && sent + n as u64 > limit;
            let cut = crossing && take(&state, |f| if download { &mut f.cut_downloads } else { &mut f.cut_uploads });
            spared |= crossing && !cut;
            let n = if cut { (limit - sent) as usize } else { n };
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
            sent += n as u64;
            if cut {
                let mut s = state.lock().unwrap();
                if download {
                    s.cut_down += 1;
                } else {
                    s.cut_up += 1;
                }
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    };
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let st = state.clone();
    let up = std::thread::spawn(move || pipe(c2, s2, false, st));
    pipe(server, client, true, state.clone());
    let _ = up.join();
}
