//! Test support: a workspace in a temp dir, the real binary, synthetic checkpoints made by `gamma-run synth`,
//! and an independent reference for W (the safetensors crate to read, `half` to convert, the safetensors
//! crate's writer for the expected file).
#![allow(dead_code, unreachable_pub)]

pub mod faulty;
pub mod hub;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Records that a test could not run here, and why: printed, and appended to `skipped.txt` in cargo's
/// per-target temp dir, which `.ci/run` lists after the suite — a test that could not run is reported as
/// skipped, not counted silently as passed. The caller returns right after.
pub fn skip(test: &str, why: &str) {
    let line = format!("SKIPPED {test}: {why}");
    eprintln!("{line}");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        use std::io::Write;
        let _ = writeln!(f, "{line}");
    }
}

/// What a run of the binary gave. Its exit code must be looked at — `code()`, or `ok()` / `expect(n)`, which
/// assert it and print the output on failure — or the test fails when the `Out` is dropped, naming the line
/// that ran the command: a test that ignores an exit code would otherwise fail later, somewhere confusing.
/// A directory a test can make read-only in a way that binds. As root permissions do not, so a tmpfs is mounted
/// there and later remounted read-only (EROFS); otherwise `chmod 555` on `inner` (a directory inside it that
/// exists by then). Undone on drop.
pub struct ReadOnly {
    dir: PathBuf,
    inner: PathBuf,
    mounted: bool,
    engaged: bool,
}

impl ReadOnly {
    /// Prepares `dir`; `None` when running as root without the right to mount (the caller skips, saying so).
    pub fn prepare(dir: &Path, inner: &Path, size: &str) -> Option<ReadOnly> {
        std::fs::create_dir_all(dir).unwrap();
        let root = running_as_root();
        if root && !mount(dir, &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]) {
            return None;
        }
        Some(ReadOnly { dir: dir.to_owned(), inner: inner.to_owned(), mounted: root, engaged: false })
    }
    /// Makes it read-only; whether that worked.
    pub fn engage(&mut self) -> bool {
        use std::os::unix::fs::PermissionsExt;
        self.engaged = if self.mounted {
            mount(&self.dir, &["-o", "remount,ro"])
        } else {
            std::fs::set_permissions(&self.inner, std::fs::Permissions::from_mode(0o555)).is_ok()
        };
        self.engaged
    }
    /// Whether a tmpfs is in use (as root), where a refused write may still have replaced nothing.
    pub fn mounted(&self) -> bool {
        self.mounted
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.mounted {
            let _ = Command::new("umount").arg(&self.dir).status();
        } else if self.engaged {
            let _ = std::fs::set_permissions(&self.inner, std::fs::Permissions::from_mode(0o755));
        }
    }
}

fn mount(dir: &Path, args: &[&str]) -> bool {
    Command::new("mount").args(args).arg(dir).status().is_ok_and(|s| s.success())
}

pub fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

pub struct Out {
    code: i32,
    pub stdout: String,
    pub stderr: String,
    checked: std::cell::Cell<bool>,
    at: &'static std::panic::Location<'static>,
}

impl Out {
    fn new(code: i32, stdout: String, stderr: String, at: &'static std::panic::Location<'static>) -> Out {
        Out { code, stdout, stderr, checked: std::cell::Cell::new(false), at }
    }
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
    /// The exit code (the test then owns the assertion).
    pub fn code(&self) -> i32 {
        self.checked.set(true);
        self.code
    }
    /// Asserts exit code `want`, showing the output and the line that ran the command if not.
    #[track_caller]
    pub fn expect(self, want: i32) -> Out {
        assert_eq!(self.code(), want, "the command run at {} exited {}: {}", self.at, self.code, self.all());
        self
    }
    /// Asserts exit code 0.
    #[track_caller]
    pub fn ok(self) -> Out {
        self.expect(0)
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        if !self.checked.get() && !std::thread::panicking() {
            panic!(
                "the exit code ({}) of the command run at {} was never checked: end with .ok(), .expect(n) or look at .code()\n{}",
                self.code,
                self.at,
                self.all()
            );
        }
    }
}

pub struct Ws {
    pub dir: tempfile::TempDir,
}

impl Ws {
    pub fn new() -> Ws {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("jobs")).unwrap();
        Ws { dir }
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn job(&self, yaml: &str) -> PathBuf {
        let p = self.path("jobs/test.yaml");
        std::fs::write(&p, yaml).unwrap();
        p
    }
    /// Runs the binary with `args`, in the workspace, with an empty HF cache unless the test sets one.
    #[track_caller]
    pub fn run(&self, args: &[&str]) -> Out {
        self.run_env(args, &[])
    }
    #[track_caller]
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let at = std::panic::Location::caller();
        // Never the real Hub: a closed loopback port unless the test starts its own hub; no stray tokens.
        let mut cmd = self.command(args, env);
        let o = cmd.output().unwrap();
        Out::new(
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into(),
            String::from_utf8_lossy(&o.stderr).into(),
            at,
        )
    }
    /// `run_env`, but the test fails (instead of hanging) when the binary is still running after `secs`.
    #[track_caller]
    pub fn run_within(&self, secs: u64, args: &[&str], env: &[(&str, &str)]) -> Out {
        let at = std::panic::Location::caller();
        let mut cmd = self.command(args, env);
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let (mut so, mut se) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let read = |r: &mut dyn std::io::Read| {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        };
        let (tout, terr) = std::thread::scope(|s| {
            let a = s.spawn(|| read(&mut so));
            let b = s.spawn(|| read(&mut se));
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
            let status = loop {
                if let Some(st) = child.try_wait().unwrap() {
                    break Some(st);
                }
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            };
            let (o, e) = (a.join().unwrap(), b.join().unwrap());
            let status = status.unwrap_or_else(|| panic!("gamma-run {args:?} still ran after {secs} s (hung): {o}{e}"));
            (status.code().unwrap_or(-1), (o, e))
        });
        Out::new(tout, terr.0, terr.1, at)
    }
    /// The binary with `args` and the test environment (see `run_env`), not started.
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gamma-run"));
        cmd.args(args).current_dir(self.dir.path());
        cmd.env("HF_HUB_CACHE", self.path("hf-cache"))
            .env("HF_HOME", self.path("hf-home"))
            .env("HF_ENDPOINT", "http://127.0.0.1:9")
            .env("GAMMA_RUN_HTTP_BACKOFF_MS", "20")
            .env_remove("HF_TOKEN")
            .env_remove("HF_TOKEN_PATH")
            .env_remove("HF_HUB_OFFLINE")
            .env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }
    /// `gamma-run synth --out models/<name> <args>`
    pub fn synth(&self, name: &str, args: &[&str]) -> PathBuf {
        let out = self.path(&format!("models/{name}"));
        let mut a = vec!["synth", "--out", out.to_str().unwrap()];
        a.extend_from_slice(args);
        self.run(&a).ok();
        out
    }
    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }
    pub fn manifest(&self, name: &str, frame: &str) -> serde_json::Value {
        serde_json::from_slice(&self.read(&format!("manifests/{name}/{frame}.json"))).unwrap()
    }
}

/// The W.safetensors the reference implementation would write for checkpoint `dir`'s tensor `key`.
pub fn reference_w(dir: &Path, key: &str) -> Vec<u8> {
    let (shape, bf16) = reference_w_bytes(dir, key);
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::BF16, shape, &bf16).unwrap();
    safetensors::serialize([("W", view)], None).unwrap()
}

/// W's shape and bf16 bytes, read with the safetensors crate and converted with `half` (NaN → 0x7FC0).
pub fn reference_w_bytes(dir: &Path, key: &str) -> (Vec<usize>, Vec<u8>) {
    let index = dir.join("model.safetensors.index.json");
    let file = if index.exists() {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
        dir.join(v["weight_map"][key].as_str().unwrap())
    } else {
        dir.join("model.safetensors")
    };
    let bytes = std::fs::read(&file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(key).unwrap();
    let data = t.data();
    let bf16: Vec<u16> = match t.dtype() {
        safetensors::Dtype::BF16 => data.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect(),
        safetensors::Dtype::F16 => data
            .chunks(2)
            .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .map(to_bf16)
            .collect(),
        safetensors::Dtype::F32 => {
            data.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).map(to_bf16).collect()
        }
        other => panic!("unexpected dtype {other:?}"),
    };
    (t.shape().to_vec(), bf16.iter().flat_map(|x| x.to_le_bytes()).collect())
}

fn to_bf16(f: f32) -> u16 {
    if f.is_nan() { 0x7FC0 } else { half::bf16::from_f32(f).to_bits() }
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn mtime(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

/// Puts checkpoint `model` into the workspace's HF cache as `repo` at `commit`, the way the Python client lays it
/// out (blobs by etag, snapshot symlinks); `branch` (if any) is pointed at the commit.
pub fn cache_model(ws: &Ws, model: &Path, repo: &str, commit: &str, branch: Option<&str>) {
    let root = ws.path("hf-cache").join(format!("models--{}", repo.replace('/', "--")));
    let blobs = root.join("blobs");
    let snap = root.join("snapshots").join(commit);
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::create_dir_all(&snap).unwrap();
    for entry in std::fs::read_dir(model).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        let bytes = std::fs::read(&p).unwrap();
        // LFS files are named by their sha256, small git files by a (here: fake) 40-hex git blob id.
        let etag = if name.ends_with(".safetensors") { sha256(&bytes) } else { sha256(&bytes)[..40].to_string() };
        std::fs::write(blobs.join(&etag), &bytes).unwrap();
        let link = snap.join(&name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("../../blobs/{etag}"), link).unwrap();
    }
    if let Some(b) = branch {
        std::fs::create_dir_all(root.join("refs")).unwrap();
        std::fs::write(root.join("refs").join(b), commit).unwrap();
    }
}

/// Flips one byte of `path` at `offset`.
pub fn flip(path: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], offset).unwrap();
}

/// (V, d, W as f64) from a W.safetensors, read with the safetensors crate.
pub fn read_w(bytes: &[u8]) -> (usize, usize, Vec<f64>) {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let t = st.tensor("W").unwrap();
    let w = t.data().chunks(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f64()).collect();
    (t.shape()[0], t.shape()[1], w)
}

pub fn read_f32(st: &safetensors::SafeTensors, name: &str) -> (Vec<usize>, Vec<f64>) {
    let t = st.tensor(name).unwrap();
    assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
    (t.shape().to_vec(), t.data().chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect())
}

/// γ′ of output `name` against an f64 reference computed here from its stored γ: the centroid is the f64 mean
/// rounded to f32, W′ = W − mean within one f32 rounding, and W′'s own column means ≈ 0.
pub fn assert_gamma_prime_matches_reference(ws: &Ws, name: &str) {
    let (v, d, w) = read_w(&ws.read(&format!("tensors/{name}/W.safetensors")));
    let mut centroid = vec![0f64; d];
    for row in w.chunks(d) {
        for (c, x) in centroid.iter_mut().zip(row) {
            *c += x;
        }
    }
    centroid.iter_mut().for_each(|c| *c /= v as f64);
    let file = ws.read(&format!("tensors/{name}/W_prime.safetensors"));
    let st = safetensors::SafeTensors::deserialize(&file).unwrap();
    let (cshape, got_c) = read_f32(&st, "centroid");
    assert_eq!(cshape, vec![d]);
    for (g, want) in got_c.iter().zip(&centroid) {
        assert!(*g == *want as f32 as f64 || (g.is_nan() && want.is_nan()), "{name}: centroid {g} vs {want}");
    }
    let (wshape, wp) = read_f32(&st, "W_prime");
    assert_eq!(wshape, vec![v, d]);
    for (i, (g, x)) in wp.iter().zip(&w).enumerate() {
        let want = x - centroid[i % d];
        let ok = (g - want).abs() <= want.abs() * 2f64.powi(-23) + 1e-12 || (g.is_nan() && want.is_nan()) || g == &want;
        assert!(ok, "{name}: W′[{i}] = {g}, want {want}");
    }
    // Column means of W′ ≈ 0, relative to the column's scale (fixtures hold values near f32's range).
    let (mut mean, mut scale) = (vec![0f64; d], vec![1e-3f64; d]);
    for row in wp.chunks(d) {
        for j in 0..d {
            mean[j] += row[j] / v as f64;
            if row[j].is_finite() {
                scale[j] = scale[j].max(row[j].abs());
            }
        }
    }
    for j in 0..d {
        assert!(
            !mean[j].is_finite() || mean[j].abs() <= scale[j] * 1e-6,
            "{name}: column {j} of γ′ has mean {}",
            mean[j]
        );
    }
}

/// A zip archive of `entries`, each stored uncompressed, as `torch.save` writes them (CRCs are left 0: gamma-run
/// reads byte ranges and never checks them, and the crafted archives the tests need are not meant for zip tools).
/// An entry's data is pieces, each bytes repeated a number of times, streamed to `out`: a large crafted entry
/// never sits in the test's memory.
/// An entry's data: pieces, each bytes repeated a number of times.
pub type Pieces<'a> = &'a [(&'a [u8], usize)];

pub fn stored_zip(out: &mut dyn std::io::Write, entries: &[(&str, Pieces)]) {
    let (mut at, mut cd) = (0u32, Vec::new());
    for (name, pieces) in entries {
        let len: usize = pieces.iter().map(|(b, n)| b.len() * n).sum();
        let header = |sig: &[u8], central: bool| {
            let mut h = sig.to_vec();
            if central {
                h.extend_from_slice(&20u16.to_le_bytes()); // made by
            }
            h.extend_from_slice(&20u16.to_le_bytes()); // version needed
            h.extend_from_slice(&[0; 2]); // flags
            h.extend_from_slice(&[0; 2]); // method: stored
            h.extend_from_slice(&[0; 4]); // time, date
            h.extend_from_slice(&[0; 4]); // crc
            h.extend_from_slice(&(len as u32).to_le_bytes());
            h.extend_from_slice(&(len as u32).to_le_bytes());
            h.extend_from_slice(&(name.len() as u16).to_le_bytes());
            h.extend_from_slice(&[0; 2]); // extra
            if central {
                h.extend_from_slice(&[0; 6]); // comment length, disk, internal attributes
                h.extend_from_slice(&[0; 4]); // external attributes
                h.extend_from_slice(&at.to_le_bytes());
            }
            h.extend_from_slice(name.as_bytes());
            h
        };
        let local = header(b"PK\x03\x04", false);
        out.write_all(&local).unwrap();
        for (bytes, n) in *pieces {
            for _ in 0..*n {
                out.write_all(bytes).unwrap();
            }
        }
        cd.extend(header(b"PK\x01\x02", true));
        at += (local.len() + len) as u32;
    }
    out.write_all(&cd).unwrap();
    let mut end = b"PK\x05\x06".to_vec();
    end.extend_from_slice(&[0; 4]);
    end.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    end.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    end.extend_from_slice(&(cd.len() as u32).to_le_bytes());
    end.extend_from_slice(&at.to_le_bytes());
    end.extend_from_slice(&[0; 2]);
    out.write_all(&end).unwrap();
}
