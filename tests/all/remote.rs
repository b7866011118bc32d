//! The remote store: a second workspace pulls what the first built and pushed instead of fetching W again, every
//! pulled object verified (a flipped byte, a truncated object, a manifest edited or listed under another
//! fingerprint are not used: built here instead, or an error for `pull`), `status --remote` as `dvc status -c`,
//! create-only pushes (concurrent pushers, a crash between bytes and index), an unreachable remote, and the same
//! against a real S3 server (s3s-fs) on loopback with its secret never printed.

use crate::support::hub::{GOOD_TOKEN, TestHub};
use crate::support::*;
use std::path::{Path, PathBuf};

const C1: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// A Hub model (org/m) and a file:// remote beside two workspaces.
struct Team {
    hub: TestHub,
    store: tempfile::TempDir,
    a: Ws,
    b: Ws,
}

impl Team {
    fn new() -> Team {
        Team::with(&["--vocab", "512", "--hidden", "64"], "[gamma, gamma_prime]")
    }
    fn with(synth: &[&str], frames: &str) -> Team {
        let hub = TestHub::start();
        let a = Ws::new();
        let dir = a.synth("m", synth);
        hub.publish("org/m", C1, &dir, Some("main"));
        let store = tempfile::tempdir().unwrap();
        let team = Team { hub, store, a, b: Ws::new() };
        for ws in [&team.a, &team.b] {
            ws.job(&format!(
                "version: 1\noutput:\n  remote: {}\njobs:\n  - model: org/m\n    frames: {frames}\n",
                team.url()
            ));
        }
        team
    }
    fn url(&self) -> String {
        format!("file://{}", self.store.path().display())
    }
    #[track_caller]
    fn run(&self, ws: &Ws, args: &[&str]) -> Out {
        self.run_env(ws, args, &[])
    }
    #[track_caller]
    fn run_env(&self, ws: &Ws, args: &[&str], extra: &[(&str, &str)]) -> Out {
        let mut env = vec![("HF_ENDPOINT", self.hub.endpoint.as_str()), ("HF_TOKEN", GOOD_TOKEN)];
        env.extend_from_slice(extra);
        ws.run_env(args, &env)
    }
    /// The remote's objects (content-addressed bytes) and index entries.
    fn objects(&self) -> Vec<PathBuf> {
        files(&self.store.path().join("objects/sha256"))
    }
    fn index(&self) -> Vec<PathBuf> {
        files(&self.store.path().join("index"))
    }
    /// Requests for W's bytes (ranged GETs of the shard) the hub has served.
    fn w_fetches(&self) -> usize {
        self.hub.requests().iter().filter(|r| r.range.is_some() && r.path.ends_with(".safetensors")).count()
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(files(&p)) } else { out.push(p) }
    }
    out.sort();
    out
}

#[test]
fn a_second_workspace_pulls_what_the_first_pushed_instead_of_fetching_w() {
    let t = Team::new();
    let a = t.run(&t.a, &["jobs/test.yaml"]).ok();
    assert!(a.stdout.contains("pushed   m/gamma") && a.stdout.contains("pushed   m/gamma_prime"), "{}", a.all());
    assert!(a.stdout.contains("2 built, 0 pulled, 0 fresh, 0 failed, 2 pushed"), "{}", a.all());
    assert_eq!(t.objects().len(), 2, "{:?}", t.objects());
    assert_eq!(t.index().len(), 2, "{:?}", t.index());
    // Each object is named by the SHA-256 of its bytes.
    for o in t.objects() {
        assert_eq!(sha256(&std::fs::read(&o).unwrap()), o.file_name().unwrap().to_str().unwrap());
    }

    t.hub.reset_counters();
    let plan = t.run(&t.b, &["jobs/test.yaml", "-n"]).ok();
    assert!(plan.stdout.contains("would pull m/gamma  (never built); the remote holds it"), "{}", plan.all());
    assert!(plan.stdout.contains("1 to build, 1 to pull, 0 fresh"), "{}", plan.all());
    assert!(!t.b.path("tensors/m/W.safetensors").exists());
    let b = t.run(&t.b, &["jobs/test.yaml"]).ok();
    assert!(b.stdout.contains("pulled   m/gamma") && b.stdout.contains("pulled   m/gamma_prime"), "{}", b.all());
    assert!(b.stdout.contains("0 built, 2 pulled, 0 fresh, 0 failed, 0 pushed"), "{}", b.all());
    assert_eq!(t.w_fetches(), 0, "W was fetched from the Hub although the remote held it");
    for f in ["tensors/m/W.safetensors", "tensors/m/W_prime.safetensors"] {
        assert_eq!(t.a.read(f), t.b.read(f), "{f} differs between the builder and the puller");
    }
    let m = t.b.manifest("m", "gamma");
    assert_eq!(m["pulled"]["from"], t.url());
    assert!(m["pulled"]["index"].as_str().unwrap().starts_with("index/"), "{m}");
    assert!(m["pulled"]["checked"].as_str().unwrap().contains("sha256 recomputed"), "{m}");
    assert_eq!(m["source"]["commit"], C1);
    // Pulled outputs are fresh, verify, and are not pulled again.
    t.run(&t.b, &["status", "jobs/test.yaml", "--check"]).ok();
    t.run(&t.b, &["verify", "manifests"]).ok();
    let again = t.run(&t.b, &["jobs/test.yaml"]).ok();
    assert!(again.stdout.contains("0 built, 0 pulled, 2 fresh"), "{}", again.all());
}

#[test]
fn status_remote_tells_where_each_output_is_and_push_sends_only_what_is_missing() {
    let t = Team::new();
    // Building nothing and forcing a rebuild contradict each other: refused before anything is done.
    let out = t.run(&t.a, &["jobs/test.yaml", "--force", "--no-build"]).expect(2);
    assert!(out.stderr.contains("cannot be used with"), "{}", out.all());
    t.run(&t.a, &["jobs/test.yaml", "--no-push"]).ok();
    let s = t.run(&t.a, &["status", "jobs/test.yaml", "--remote"]).ok();
    assert!(s.stdout.contains("fresh    m/gamma  [remote: only local]"), "{}", s.all());
    t.run(&t.a, &["status", "jobs/test.yaml", "--remote", "--check"]).expect(1);

    let p = t.run(&t.a, &["push", "jobs/test.yaml"]).ok();
    assert!(p.stdout.contains("2 pushed, 0 already in"), "{}", p.all());
    let p = t.run(&t.a, &["push", "jobs/test.yaml"]).ok();
    assert!(p.stdout.contains("0 pushed, 2 already in"), "{}", p.all());
    assert_eq!(t.index().len(), 2);
    let s = t.run(&t.a, &["status", "jobs/test.yaml", "--remote", "--check"]).ok();
    assert!(s.stdout.contains("[remote: in both]"), "{}", s.all());

    // The other workspace: only remote, until pulled.
    let s = t.run(&t.b, &["status", "jobs/test.yaml", "--remote", "--json"]).ok();
    let rows: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
    assert_eq!(rows[0]["remote"], "only remote", "{}", s.stdout);
    let pull = t.run(&t.b, &["pull", "jobs/test.yaml"]).ok();
    assert!(pull.stdout.contains("2 pulled"), "{}", pull.all());
    t.run(&t.b, &["status", "jobs/test.yaml", "--remote", "--check"]).ok();

    // A push of something not fresh is not made: exit 1, saying to run it first.
    std::fs::remove_file(t.b.path("tensors/m/W_prime.safetensors")).unwrap();
    let p = t.run(&t.b, &["push", "jobs/test.yaml"]).expect(1);
    assert!(p.stdout.contains("not pushed m/gamma_prime: stale (output missing); run it first"), "{}", p.all());
}

#[test]
fn a_damaged_remote_object_is_never_used_and_the_output_is_built_instead() {
    let t = Team::new();
    t.run(&t.a, &["jobs/test.yaml"]).ok();
    let gamma_sha = t.a.manifest("m", "gamma")["output"]["sha256"].as_str().unwrap().to_string();
    let object = t.store.path().join("objects/sha256").join(&gamma_sha);
    let good = std::fs::read(&object).unwrap();
    let expected = t.a.read("tensors/m/W.safetensors");

    // A flipped byte, then a truncated object: `pull` refuses (exit 2, nothing stored), `run` builds instead.
    for damage in ["flipped", "truncated"] {
        let b = Ws::new();
        b.job(&std::fs::read_to_string(t.a.path("jobs/test.yaml")).unwrap());
        std::fs::write(&object, &good).unwrap();
        if damage == "flipped" {
            flip(&object, good.len() as u64 - 3);
        } else {
            std::fs::write(&object, &good[..good.len() / 2]).unwrap();
        }
        let pull = t.run(&b, &["pull", "jobs/test.yaml", "--only", "m/gamma"]).expect(2);
        assert!(pull.all().contains(&format!("objects/sha256/{gamma_sha}")), "{damage}: {}", pull.all());
        assert!(!b.path("tensors/m/W.safetensors").exists(), "{damage}: a damaged object was stored");
        assert!(!b.path("manifests/m/gamma.json").exists());
        let run = t.run(&b, &["jobs/test.yaml", "--no-push"]).ok();
        assert!(run.stderr.contains(&format!("objects/sha256/{gamma_sha}")), "{damage}: {}", run.all());
        assert!(run.stderr.contains("not used"), "{damage}: {}", run.all());
        assert!(run.stdout.contains("built    m/gamma"), "{damage}: {}", run.all());
        assert_eq!(b.read("tensors/m/W.safetensors"), expected, "{damage}");
        assert!(b.manifest("m", "gamma").get("pulled").is_none());
        // A stale local output and a damaged remote one: the refused pull leaves the local output and its
        // manifest as they were (stale, still described).
        flip(&b.path("tensors/m/W.safetensors"), 100);
        t.run(&b, &["pull", "jobs/test.yaml", "--only", "m/gamma"]).expect(2);
        assert!(b.path("manifests/m/gamma.json").exists(), "{damage}: a refused pull removed the manifest");
        let s = t.run(&b, &["status", "jobs/test.yaml", "--only", "m/gamma"]).ok();
        assert!(s.stdout.contains("output modified (sha256 differs)"), "{damage}: {}", s.all());
    }
}

#[test]
fn a_remote_manifest_that_disagrees_with_itself_or_its_listing_is_not_used() {
    let t = Team::new();
    t.run(&t.a, &["jobs/test.yaml"]).ok();
    let m = t.a.manifest("m", "gamma");
    let (fp, sha) = (m["fingerprint"].as_str().unwrap(), m["output"]["sha256"].as_str().unwrap());
    let entry = t.store.path().join(format!("index/{fp}/{sha}.json"));
    let good = std::fs::read(&entry).unwrap();
    // γ′'s parameters are what `verify --recompute` recomputes with: a remote manifest naming others is refused.
    let p = t.a.manifest("m", "gamma_prime");
    let (pfp, psha) = (p["fingerprint"].as_str().unwrap(), p["output"]["sha256"].as_str().unwrap());
    let pentry = t.store.path().join(format!("index/{pfp}/{psha}.json"));
    let mut v = p.clone();
    v["params"]["dtype"] = "bf16".into();
    std::fs::write(&pentry, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let b = Ws::new();
    b.job(&std::fs::read_to_string(t.a.path("jobs/test.yaml")).unwrap());
    let pull = t.run(&b, &["pull", "jobs/test.yaml"]).expect(2);
    assert!(pull.all().contains("its parameters"), "{}", pull.all());
    assert!(!b.path("tensors/m/W_prime.safetensors").exists());
    type Edit<'a> = (&'a str, &'a dyn Fn(&mut serde_json::Value));
    let edits: [Edit; 3] = [
        ("a commit edited", &|m| m["source"]["commit"] = "c".repeat(40).into()),
        ("a fingerprint input edited", &|m| m["fingerprint_inputs"]["source.commit"] = "c".repeat(40).into()),
        ("bytes named other than listed", &|m| m["output"]["sha256"] = "0".repeat(64).into()),
    ];
    for (what, edit) in edits {
        let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
        edit(&mut v);
        std::fs::write(&entry, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
        let b = Ws::new();
        b.job(&std::fs::read_to_string(t.a.path("jobs/test.yaml")).unwrap());
        let pull = t.run(&b, &["pull", "jobs/test.yaml", "--only", "m/gamma"]).expect(2);
        assert!(pull.all().contains("not used"), "{what}: {}", pull.all());
        assert!(!b.path("tensors/m/W.safetensors").exists(), "{what}: stored");
    }
}

#[test]
fn a_crash_between_bytes_and_index_leaves_no_entry_and_a_second_pusher_finishes() {
    let t = Team::new();
    t.run(&t.a, &["jobs/test.yaml", "--no-push"]).ok();
    let crashed =
        t.run_env(&t.a, &["push", "jobs/test.yaml", "-j", "1"], &[("GAMMA_RUN_FAILPOINT", "push-before-index")]);
    assert_ne!(crashed.code(), 0);
    assert_eq!(t.index().len(), 0, "an index entry was written before its bytes were complete");
    // Nothing half-written under an object's name: any object there is whole.
    for o in t.objects() {
        assert_eq!(sha256(&std::fs::read(&o).unwrap()), o.file_name().unwrap().to_str().unwrap());
    }
    // Two pushers of the same content and a third of other content, at once: none fails, one entry per output.
    let push = |ws: &Ws| t.run_env(ws, &["push", "jobs/test.yaml"], &[]);
    t.run(&t.b, &["jobs/test.yaml", "--no-push", "--no-pull"]).ok();
    let other = Ws::new();
    let dir = other.synth("n", &["--vocab", "256", "--hidden", "32", "--seed", "7"]);
    t.hub.publish("org/n", C1, &dir, Some("main"));
    other.job(&format!("version: 1\noutput:\n  remote: {}\njobs:\n  - model: org/n\n", t.url()));
    t.run(&other, &["jobs/test.yaml", "--no-push", "--no-pull"]).ok();
    std::thread::scope(|s| {
        let x = s.spawn(|| push(&t.a).code());
        let y = s.spawn(|| push(&t.b).code());
        let z = s.spawn(|| push(&other).code());
        assert_eq!((x.join().unwrap(), y.join().unwrap(), z.join().unwrap()), (0, 0, 0));
    });
    assert_eq!(t.index().len(), 3, "{:?}", t.index());
    assert_eq!(t.objects().len(), 3, "{:?}", t.objects());
    remote_is_consistent(t.store.path());
}

#[test]
fn an_unreachable_remote_is_one_error_when_asked_for_and_a_warning_when_the_job_file_names_it() {
    let t = Team::new();
    let gone = t.store.path().join("not-mounted/store");
    let url = format!("file://{}", gone.display());
    let out = t.run(&t.a, &["jobs/test.yaml", "--remote", &url]).expect(2);
    assert!(out.stderr.contains("is not a directory (is the share mounted?)"), "{}", out.all());
    assert_eq!(out.stderr.lines().filter(|l| l.starts_with("error:")).count(), 1, "{}", out.all());
    assert!(!t.a.path("tensors/m/W.safetensors").exists());

    // The job file's remote: a warning, and the run goes on building here.
    let ws = Ws::new();
    ws.job(&format!("version: 1\noutput:\n  remote: {url}\njobs:\n  - model: org/m\n"));
    let out = t.run(&ws, &["jobs/test.yaml"]).ok();
    assert!(out.stderr.contains("is not a directory") && out.stderr.contains("going on without it"), "{}", out.all());
    assert!(out.stdout.contains("built    m/gamma"), "{}", out.all());
    // `pull` has nothing else to do: there it is an error.
    let out = t.run(&ws, &["pull", "jobs/test.yaml"]).expect(2);
    assert!(out.stderr.contains("is not a directory"), "{}", out.all());

    // An S3 endpoint nobody listens on (a closed loopback port): the same two ways, each said once, quickly.
    let closed =
        [("AWS_ENDPOINT_URL", "http://127.0.0.1:9"), ("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s")];
    let ws = Ws::new();
    ws.job("version: 1\noutput:\n  remote: s3://bucket/p\njobs:\n  - model: org/m\n");
    let started = std::time::Instant::now();
    let out = t.run_env(&ws, &["jobs/test.yaml"], &closed).ok();
    assert_eq!(out.stderr.matches("going on without it").count(), 1, "{}", out.all());
    assert!(out.stderr.contains("remote s3://bucket/p: cannot list index/"), "{}", out.all());
    assert!(out.stdout.contains("built    m/gamma"), "{}", out.all());
    let out = t.run_env(&ws, &["jobs/test.yaml", "--force", "--remote", "s3://bucket/p"], &closed).expect(2);
    assert_eq!(out.stderr.lines().filter(|l| l.starts_with("error:")).count(), 1, "{}", out.all());
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "retries took {:?}", started.elapsed());
    // --offline touches no network: the job file's remote is not tried at all.
    let out = t.run_env(&ws, &["jobs/test.yaml", "--offline"], &closed);
    let _ = out.code();
    assert!(!out.stderr.contains("remote s3://bucket/p"), "{}", out.all());
}

#[test]
fn a_remote_that_is_not_a_url_is_reported_at_its_place_in_the_job_file() {
    let ws = Ws::new();
    ws.job("version: 1\noutput:\n  remote: bucket/prefix\njobs:\n  - model: org/m\n");
    let out = ws.run(&["status", "jobs/test.yaml"]).expect(2);
    assert!(out.stderr.contains("test.yaml:3:11") && out.stderr.contains("s3://BUCKET/PREFIX"), "{}", out.all());
}

/// s3s-fs (an S3 server on a directory, from crates.io; `.ci/run` installs it), on a free loopback port.
struct S3 {
    child: std::process::Child,
    endpoint: String,
    root: tempfile::TempDir,
}

impl S3 {
    fn root(&self) -> &Path {
        self.root.path()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const S3_KEY: &str = "gammarunaccess";
const S3_SECRET: &str = "gamma-run-s3-secret-never-printed";

fn s3s_fs() -> Option<S3> {
    let bin = std::env::var("GAMMA_RUN_S3S_FS").unwrap_or_else(|_| "s3s-fs".into());
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("team-bucket")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(&bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", S3_KEY, "--secret-key", S3_SECRET])
        .arg(root.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let s3 = S3 { child, endpoint: format!("http://127.0.0.1:{port}"), root };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(s3);
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    None
}

/// moto in server mode (PyPI: `moto[server]`; `.ci/run` installs it), a second S3 implementation, on a free
/// loopback port, with the bucket `team-bucket` created.
struct Moto {
    child: std::process::Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto() -> Option<Moto> {
    use std::io::{Read, Write};
    let python = std::env::var("GAMMA_RUN_MOTO_PYTHON").unwrap_or_else(|_| "python3".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(&python)
        .args(["-c", "from moto.server import main; main()", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let m = Moto { child, endpoint: format!("http://127.0.0.1:{port}") };
    for _ in 0..400 {
        if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            // CreateBucket (moto checks no signature).
            let req = format!(
                "PUT /team-bucket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            c.write_all(req.as_bytes()).ok()?;
            let mut answer = String::new();
            let _ = c.read_to_string(&mut answer);
            return answer.starts_with("HTTP/1.1 200").then_some(m);
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    None
}

/// Push from one workspace and pull into another through the S3 server at `endpoint` (bucket `team-bucket`):
/// no W fetched by the puller, the same bytes, `status --remote` in both; a wrong secret is one error; neither
/// secret appears in any output (at -vv) or manifest.
fn s3_round_trip(endpoint: &str) {
    let t = Team::new();
    let env = s3_env(endpoint);
    let env = pairs(&env);
    let url = "s3://team-bucket/gamma";
    let a = t.run_env(&t.a, &["-vv", "jobs/test.yaml", "--remote", url], &env).ok();
    assert!(a.stdout.contains("2 pushed"), "{}", a.all());
    t.hub.reset_counters();
    let b = t.run_env(&t.b, &["-vv", "pull", "jobs/test.yaml", "--remote", url], &env).ok();
    assert!(b.stdout.contains("2 pulled"), "{}", b.all());
    assert_eq!(t.w_fetches(), 0);
    assert_eq!(t.a.read("tensors/m/W.safetensors"), t.b.read("tensors/m/W.safetensors"));
    let s = t.run_env(&t.b, &["status", "jobs/test.yaml", "--remote", url, "--check"], &env).ok();
    assert!(s.stdout.contains("[remote: in both]"), "{}", s.all());
    // Pushing again sends nothing (the index says the remote holds them).
    let again = t.run_env(&t.a, &["push", "jobs/test.yaml", "--remote", url], &env).ok();
    assert!(again.stdout.contains("0 pushed, 2 already in"), "{}", again.all());
    // Every library's log at its most verbose (RUST_LOG=trace): the secret is not in it either.
    let mut traced = env.clone();
    traced.push(("RUST_LOG", "trace"));
    let c = Ws::new();
    c.job(&std::fs::read_to_string(t.a.path("jobs/test.yaml")).unwrap());
    let trace = t.run_env(&c, &["pull", "jobs/test.yaml", "--remote", url], &traced).ok();
    // A wrong secret: one error, and the secret in neither output.
    let mut bad = env.clone();
    bad.retain(|(k, _)| *k != "AWS_SECRET_ACCESS_KEY");
    bad.push(("AWS_SECRET_ACCESS_KEY", "wrong-secret-value-xyz"));
    let denied = t.run_env(&t.b, &["-vv", "push", "jobs/test.yaml", "--remote", "s3://team-bucket/other"], &bad);
    for out in [&a, &b, &s, &again, &trace, &denied] {
        assert!(!out.all().contains(S3_SECRET), "the secret was printed: {}", out.all());
        assert!(!out.all().contains("wrong-secret-value-xyz"), "the secret was printed: {}", out.all());
    }
    for (k, v) in [("a", &t.a), ("b", &t.b)] {
        for f in files(&v.path("manifests")) {
            let text = std::fs::read_to_string(&f).unwrap();
            assert!(!text.contains(S3_SECRET) && !text.contains(S3_KEY), "{k}: {}", f.display());
        }
    }
    // s3s-fs checks signatures (a wrong secret is refused); moto does not (it accepts any).
    let _ = denied.code();
}

#[test]
fn a_real_s3_server_serves_as_the_remote_and_its_secret_is_never_printed() {
    let Some(s3) = s3s_fs() else {
        return skip(
            "a_real_s3_server_serves_as_the_remote_and_its_secret_is_never_printed",
            "s3s-fs is not installed (cargo install s3s-fs@0.14.1 --features binary; .ci/run does)",
        );
    };
    s3_round_trip(&s3.endpoint);
    // An object damaged in the server's storage: served as it is, refused by the pull, built here instead.
    let dir = s3.root().join("team-bucket/gamma/objects/sha256");
    for o in files(&dir) {
        flip(&o, 40);
    }
    let t = Team::new();
    let env = s3_env(&s3.endpoint);
    let out =
        t.run_env(&t.b, &["jobs/test.yaml", "--remote", "s3://team-bucket/gamma", "--no-push"], &pairs(&env)).ok();
    assert!(out.stderr.contains("not used") && out.stdout.contains("2 built, 0 pulled"), "{}", out.all());
    // A service without conditional puts (as object_store is told with AWS_CONDITIONAL_PUT=disabled): a look,
    // then a plain put; a second push finds everything there.
    let mut plain = s3_env(&s3.endpoint);
    plain.push(("AWS_CONDITIONAL_PUT", "disabled".into()));
    let out = t.run_env(&t.b, &["push", "jobs/test.yaml", "--remote", "s3://team-bucket/plain"], &pairs(&plain)).ok();
    assert!(out.stdout.contains("2 pushed"), "{}", out.all());
    let out = t.run_env(&t.b, &["push", "jobs/test.yaml", "--remote", "s3://team-bucket/plain"], &pairs(&plain)).ok();
    assert!(out.stdout.contains("0 pushed, 2 already in"), "{}", out.all());
    remote_is_consistent(&s3.root().join("team-bucket/plain"));
    // s3s-fs checks signatures: a wrong secret is refused with one error.
    let t = Team::new();
    let mut bad = s3_env(&s3.endpoint);
    bad.retain(|(k, _)| *k != "AWS_SECRET_ACCESS_KEY");
    bad.push(("AWS_SECRET_ACCESS_KEY", "wrong-secret-value-xyz".into()));
    let out = t.run_env(&t.a, &["-vv", "jobs/test.yaml", "--remote", "s3://team-bucket/x"], &pairs(&bad)).expect(2);
    assert_eq!(out.stderr.lines().filter(|l| l.starts_with("error:")).count(), 1, "{}", out.all());
    assert!(!out.all().contains("wrong-secret-value-xyz"), "{}", out.all());
}

#[test]
fn aws_credentials_come_from_a_profile_when_the_environment_names_none() {
    let Some(s3) = s3s_fs() else {
        return skip("aws_credentials_come_from_a_profile_when_the_environment_names_none", "s3s-fs is not installed");
    };
    let t = Team::new();
    let aws = tempfile::tempdir().unwrap();
    let creds = aws.path().join("credentials");
    std::fs::write(
        &creds,
        format!("[default]\naws_access_key_id = nobody\naws_secret_access_key = wrong-default-secret\n\n[team]\naws_access_key_id = {S3_KEY}\naws_secret_access_key = {S3_SECRET}\n"),
    )
    .unwrap();
    let config = aws.path().join("config");
    std::fs::write(&config, "[profile team]\nregion = us-east-1\n").unwrap();
    let env = [
        ("AWS_ENDPOINT_URL", s3.endpoint.as_str()),
        ("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap()),
        ("AWS_CONFIG_FILE", config.to_str().unwrap()),
        ("AWS_PROFILE", "team"),
    ];
    let out = t.run_env(&t.a, &["-vv", "jobs/test.yaml", "--remote", "s3://team-bucket/profile"], &env).ok();
    assert!(out.stdout.contains("2 pushed"), "{}", out.all());
    assert!(!out.all().contains(S3_SECRET), "{}", out.all());
    // The default profile's (wrong) keys: refused by the server, one error, its secret not printed.
    let default = [env[0], env[1], env[2]];
    let out = t.run_env(&t.a, &["-vv", "push", "jobs/test.yaml", "--remote", "s3://team-bucket/profile2"], &default);
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(!out.all().contains("wrong-default-secret"), "{}", out.all());
}

#[test]
fn a_second_s3_implementation_moto_serves_as_the_remote() {
    let Some(m) = moto() else {
        return skip(
            "a_second_s3_implementation_moto_serves_as_the_remote",
            "moto[server] is not installed for python3 (pip install 'moto[server]'; .ci/run does)",
        );
    };
    s3_round_trip(&m.endpoint);
}

#[test]
fn shards_on_many_machines_push_to_one_remote_and_a_final_job_finds_the_whole_plan_fresh() {
    let t = Team::new();
    let extra = t.a.synth("n", &["--vocab", "256", "--hidden", "32"]);
    t.hub.publish("org/n", C1, &extra, Some("main"));
    let yaml = format!(
        "version: 1\noutput:\n  remote: {}\njobs:\n  - model: org/m\n    frames: [gamma, gamma_prime]\n  - model: org/n\n",
        t.url()
    );
    let shards: Vec<Ws> = (0..2).map(|_| Ws::new()).collect();
    for (k, ws) in shards.iter().enumerate() {
        ws.job(&yaml);
        t.run(ws, &["jobs/test.yaml", "--shard", &format!("{k}/2")]).ok();
    }
    let last = Ws::new();
    last.job(&yaml);
    t.hub.reset_counters();
    let out = t.run(&last, &["pull", "jobs/test.yaml"]).ok();
    assert!(out.stdout.contains("3 pulled"), "{}", out.all());
    assert_eq!(t.w_fetches(), 0);
    t.run(&last, &["status", "jobs/test.yaml", "--check", "--remote"]).ok();
}

/// The S3 environment for an endpoint (s3s-fs, or the fault proxy in front of it).
fn s3_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ACCESS_KEY_ID", S3_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", S3_SECRET.into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

fn pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Every object under `dir` (an s3s-fs bucket prefix) is whole: its bytes hash to its name; and every index entry
/// names an object that is there.
fn remote_is_consistent(dir: &Path) {
    let objects = files(&dir.join("objects/sha256"));
    for o in &objects {
        assert_eq!(sha256(&std::fs::read(o).unwrap()), o.file_name().unwrap().to_str().unwrap(), "a partial object");
    }
    for e in files(&dir.join("index")) {
        let sha = e.file_name().unwrap().to_str().unwrap().trim_end_matches(".json").to_string();
        assert!(objects.iter().any(|o| o.ends_with(&sha)), "index entry {} names missing bytes", e.display());
    }
}

#[test]
fn network_faults_are_retried_or_fail_cleanly_with_nothing_half_written() {
    let Some(s3) = s3s_fs() else {
        return skip("network_faults_are_retried_or_fail_cleanly_with_nothing_half_written", "s3s-fs is not installed");
    };
    let proxy = crate::support::faulty::Proxy::start(s3.endpoint.trim_start_matches("http://"));
    let env = s3_env(&proxy.url);
    let env = pairs(&env);
    // W of 1 MiB, γ′ of 2 MiB: each a single PUT.
    let t = Team::with(&["--vocab", "4096", "--hidden", "128"], "[gamma, gamma_prime]");
    t.run(&t.a, &["jobs/test.yaml", "--no-push"]).ok();
    let bucket = s3.root().join("team-bucket");
    let url = "s3://team-bucket/faults";
    use crate::support::faulty::Faults;

    // The server sheds load (503 Slow Down) three times: retried, pushed.
    proxy.faults(Faults { slow_down: 3, ..Faults::default() });
    let out = t.run_env(&t.a, &["push", "jobs/test.yaml", "--remote", url], &env).ok();
    assert!(out.stdout.contains("2 pushed"), "{}", out.all());
    assert_eq!(proxy.happened().0, 3);
    remote_is_consistent(&bucket.join("faults"));

    // Downloads cut midway on the first connections: resumed from where they stopped (object_store's retries),
    // never stored half, and what is stored is the builder's bytes.
    proxy.faults(Faults { cut_downloads: 2, cut_after: 300_000, ..Faults::default() });
    let out = t.run_env(&t.b, &["jobs/test.yaml", "--remote", url, "--no-push"], &env).ok();
    assert!(proxy.happened().1 >= 1, "no download was cut: {}", out.all());
    assert!(out.stdout.contains("2 pulled"), "the cut downloads were not resumed: {}", out.all());
    for f in ["tensors/m/W.safetensors", "tensors/m/W_prime.safetensors"] {
        assert_eq!(t.a.read(f), t.b.read(f), "{f}: {}", out.all());
    }
    t.run(&t.b, &["verify", "manifests"]).ok();

    // An upload cut midway: retried; nothing partial visible, no entry before its bytes.
    proxy.faults(Faults { cut_uploads: 1, cut_after: 400_000, ..Faults::default() });
    let second = "s3://team-bucket/cut-upload";
    let out = t.run_env(&t.a, &["push", "jobs/test.yaml", "--remote", second], &env).ok();
    assert_eq!(proxy.happened().2, 1, "{}", out.all());
    assert!(out.stdout.contains("2 pushed"), "{}", out.all());
    remote_is_consistent(&bucket.join("cut-upload"));

    // A server that never recovers: each push fails with one clear error; no index entry written.
    proxy.faults(Faults { slow_down: 1000, ..Faults::default() });
    let third = "s3://team-bucket/down";
    let out = t.run_env(&t.a, &["push", "jobs/test.yaml", "--remote", third], &env).expect(2);
    assert!(
        out.all().contains("503") || out.all().contains("Slow Down") || out.all().contains("SlowDown"),
        "{}",
        out.all()
    );
    assert!(files(&bucket.join("down/index")).is_empty());
}

#[test]
fn a_push_killed_during_a_multipart_upload_leaves_nothing_visible_and_the_next_push_completes() {
    let Some(s3) = s3s_fs() else {
        return skip(
            "a_push_killed_during_a_multipart_upload_leaves_nothing_visible_and_the_next_push_completes",
            "s3s-fs is not installed",
        );
    };
    let env = s3_env(&s3.endpoint);
    let env = pairs(&env);
    // W of 20 MiB: more than one 16 MiB part.
    let t = Team::with(&["--vocab", "65536", "--hidden", "160"], "[gamma]");
    t.run(&t.a, &["jobs/test.yaml", "--no-push"]).ok();
    let url = "s3://team-bucket/multipart";
    let mut killed = env.clone();
    killed.push(("GAMMA_RUN_FAILPOINT", "push-before-complete"));
    let out = t.run_env(&t.a, &["push", "jobs/test.yaml", "--remote", url], &killed);
    assert_ne!(out.code(), 0, "{}", out.all());
    let dir = s3.root().join("team-bucket/multipart");
    assert!(files(&dir.join("objects")).is_empty(), "an incomplete upload is visible: {:?}", files(&dir));
    assert!(files(&dir.join("index")).is_empty());
    let out = t.run_env(&t.a, &["push", "jobs/test.yaml", "--remote", url], &env).ok();
    assert!(out.stdout.contains("1 pushed"), "{}", out.all());
    remote_is_consistent(&dir);
    // Killed while pulling: nothing stored; the next pull completes.
    let mut killed = env.clone();
    killed.push(("GAMMA_RUN_FAILPOINT", "after-temp-write"));
    let out = t.run_env(&t.b, &["pull", "jobs/test.yaml", "--remote", url], &killed);
    assert_ne!(out.code(), 0, "{}", out.all());
    assert!(!t.b.path("tensors/m/W.safetensors").exists() && !t.b.path("manifests/m/gamma.json").exists());
    t.run_env(&t.b, &["pull", "jobs/test.yaml", "--remote", url], &env).ok();
    assert_eq!(t.a.read("tensors/m/W.safetensors"), t.b.read("tensors/m/W.safetensors"));
}

#[test]
fn outputs_read_from_a_local_directory_are_never_shared() {
    let t = Team::new();
    let dir = t.a.synth("local", &["--vocab", "512", "--hidden", "64"]);
    t.a.job(&format!(
        "version: 1\noutput:\n  remote: {}\njobs:\n  - path: {}\n    frames: [gamma, gamma_prime]\n",
        t.url(),
        dir.display()
    ));
    let out = t.run(&t.a, &["jobs/test.yaml"]).ok();
    // γ′ is computed from γ's bytes (its fingerprint names them): shared; γ of a local directory is not.
    assert!(out.stdout.contains("1 pushed"), "{}", out.all());
    let s = t.run(&t.a, &["status", "jobs/test.yaml", "--remote", "--check"]).ok();
    assert!(
        s.stdout.contains("fresh    local/gamma  [remote: not shared (read from a local directory)]"),
        "{}",
        s.all()
    );
    let p = t.run(&t.a, &["push", "jobs/test.yaml"]).ok();
    assert!(p.stdout.contains("local    local/gamma") && p.stdout.contains("1 not shared"), "{}", p.all());
}

/// A stand-in for `cosign verify-blob` (cosign itself is not installable from the registries this project may
/// use): it accepts a bundle that reads `sig:<sha256 of the statement>:<the --key given>`, and refuses anything
/// else as cosign does (exit 1, an error line). What is tested is gamma-run's side: that it asks the verifier
/// about exactly the statement for these bytes, passes the user's identity, and uses nothing it refuses.
const STAND_IN_COSIGN: &str = r#"#!/bin/sh
[ "$1" = verify-blob ] || exit 2
shift
bundle=""; key=""; statement=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) bundle="$2"; shift 2;;
    --key=*) key="${1#--key=}"; shift;;
    *) statement="$1"; shift;;
  esac
done
want="sig:$(sha256sum "$statement" | cut -d' ' -f1):$key"
[ "$(cat "$bundle")" = "$want" ] && exit 0
echo "Error: invalid signature when validating ASN.1 encoded signature" >&2
exit 1
"#;

#[test]
fn require_attestation_pulls_only_outputs_whose_signed_statement_the_verifier_accepts() {
    use std::os::unix::fs::PermissionsExt;
    let t = Team::new();
    let cosign = t.store.path().join("../cosign-stand-in");
    let cosign = std::path::absolute(&cosign).unwrap();
    std::fs::write(&cosign, STAND_IN_COSIGN).unwrap();
    std::fs::set_permissions(&cosign, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cosign_env = [("GAMMA_RUN_COSIGN", cosign.to_str().unwrap())];

    t.run(&t.a, &["jobs/test.yaml"]).ok();
    t.run(&t.a, &["attest", "manifests"]).ok();
    // The builder signs γ's statement (not γ′'s) and pushes again: the statement and bundle go to the remote.
    let statement = t.a.read("attestations/m/gamma.intoto.json");
    std::fs::write(t.a.path("attestations/m/gamma.sigstore.json"), format!("sig:{}:team.pub", sha256(&statement)))
        .unwrap();
    t.run(&t.a, &["push", "jobs/test.yaml"]).ok();
    let m = t.a.manifest("m", "gamma");
    let (fp, sha) = (m["fingerprint"].as_str().unwrap(), m["output"]["sha256"].as_str().unwrap());
    let remote_statement = t.store.path().join(format!("attestations/{fp}/{sha}.intoto.json"));
    assert_eq!(std::fs::read(&remote_statement).unwrap(), statement);

    let pull = |ws: &Ws, key: &str| {
        let arg = format!("--cosign-arg=--key={key}");
        t.run_env(ws, &["pull", "jobs/test.yaml", "--require-attestation", &arg], &cosign_env)
    };
    // γ is signed: pulled, its statement and bundle kept; γ′ is not: refused, saying how to sign one.
    let b = pull(&t.b, "team.pub").expect(2);
    assert!(b.stdout.contains("pulled   m/gamma "), "{}", b.all());
    assert!(b.all().contains("no signed attestation in the remote"), "{}", b.all());
    assert!(!t.b.path("tensors/m/W_prime.safetensors").exists());
    assert!(t.b.manifest("m", "gamma")["pulled"]["checked"].as_str().unwrap().contains("cosign verify-blob accepted"));
    assert_eq!(t.b.read("attestations/m/gamma.intoto.json"), statement);

    // Another identity, or a statement altered in the remote: refused, nothing stored.
    let c = Ws::new();
    c.job(&std::fs::read_to_string(t.a.path("jobs/test.yaml")).unwrap());
    let out = pull(&c, "someone-else.pub").expect(2);
    assert!(out.all().contains("refused its signature (Error: invalid signature"), "{}", out.all());
    assert!(!c.path("tensors/m/W.safetensors").exists());
    let mut altered: serde_json::Value = serde_json::from_slice(&statement).unwrap();
    altered["predicate"]["runDetails"]["metadata"]["finishedOn"] = "2020-01-01T00:00:00Z".into();
    std::fs::write(&remote_statement, serde_json::to_vec_pretty(&altered).unwrap()).unwrap();
    let out = pull(&c, "team.pub").expect(2);
    assert!(out.all().contains("does not describe the manifest it was pushed with"), "{}", out.all());
    assert!(!c.path("tensors/m/W.safetensors").exists());
    // A statement re-signed after the edit (someone with the key) but describing another manifest: refused too,
    // before the verifier is asked.
    std::fs::write(
        remote_statement.with_extension("").with_extension("sigstore.json"),
        format!("sig:{}:team.pub", sha256(&std::fs::read(&remote_statement).unwrap())),
    )
    .unwrap();
    let out = pull(&c, "team.pub").expect(2);
    assert!(out.all().contains("does not describe the manifest"), "{}", out.all());
    // The statement as signed, with the remote manifest edited in a field the fingerprint does not hash (a shard
    // digest, resealed): the signed statement no longer describes it.
    std::fs::write(&remote_statement, &statement).unwrap();
    let entry = t.store.path().join(format!("index/{fp}/{sha}.json"));
    let good_entry = std::fs::read(&entry).unwrap();
    let mut e: serde_json::Value = serde_json::from_slice(&good_entry).unwrap();
    e["source"]["files"][1]["sha256"] = "f".repeat(64).into();
    e["source"]["seal"] = serde_json::Value::Null;
    std::fs::write(&entry, serde_json::to_vec_pretty(&e).unwrap()).unwrap();
    let out = pull(&c, "team.pub").expect(2);
    assert!(out.all().contains("not used"), "{}", out.all());
    assert!(!c.path("tensors/m/W.safetensors").exists());
    std::fs::write(&entry, &good_entry).unwrap();
    // Without the requirement, both are pulled on the strength of their hashes alone.
    t.run(&c, &["pull", "jobs/test.yaml"]).ok();
}

/// Azurite (Microsoft's Azure Storage emulator, from npm; `.ci/run` installs it) on a free loopback port, with the
/// container `team` created through the Azure SDK for Python (object_store creates no containers).
struct Azurite {
    child: std::process::Child,
    url: String,
    _data: tempfile::TempDir,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The emulator's well-known account key (published by Microsoft; not a secret).
const AZURITE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn azurite() -> Result<Azurite, String> {
    let bin = std::env::var("GAMMA_RUN_AZURITE").unwrap_or_else(|_| "azurite-blob".into());
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(&bin)
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--silent", "--skipApiVersionCheck"])
        .arg("--location")
        .arg(data.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("{bin} cannot be started ({e}): npm install -g azurite; .ci/run does"))?;
    let az = Azurite { child, url: format!("http://127.0.0.1:{port}"), _data: data };
    let connection = format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};BlobEndpoint={}/devstoreaccount1;",
        az.url
    );
    let script = "import sys\nfrom azure.storage.blob import BlobServiceClient\n\
                  BlobServiceClient.from_connection_string(sys.argv[1]).create_container('team')\n";
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let made = std::process::Command::new("python3").args(["-c", script, &connection]).output();
            return match made {
                Ok(o) if o.status.success() => Ok(az),
                Ok(o) => Err(format!(
                    "the container could not be created (pip install azure-storage-blob; .ci/run does): {}",
                    String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("")
                )),
                Err(e) => Err(format!("python3 cannot be run ({e})")),
            };
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    Err("azurite did not listen".into())
}

#[test]
fn an_azure_container_serves_as_the_remote() {
    let az = match azurite() {
        Ok(a) => a,
        Err(why) => return skip("an_azure_container_serves_as_the_remote", &why),
    };
    let t = Team::new();
    let env = [("AZURE_STORAGE_USE_EMULATOR", "true"), ("AZURITE_BLOB_STORAGE_URL", az.url.as_str())];
    let url = "az://team/gamma";
    let a = t.run_env(&t.a, &["jobs/test.yaml", "--remote", url], &env).ok();
    assert!(a.stdout.contains("2 pushed"), "{}", a.all());
    t.hub.reset_counters();
    let b = t.run_env(&t.b, &["pull", "jobs/test.yaml", "--remote", url], &env).ok();
    assert!(b.stdout.contains("2 pulled"), "{}", b.all());
    assert_eq!(t.w_fetches(), 0);
    assert_eq!(t.a.read("tensors/m/W_prime.safetensors"), t.b.read("tensors/m/W_prime.safetensors"));
    let s = t.run_env(&t.b, &["status", "jobs/test.yaml", "--remote", url, "--check"], &env).ok();
    assert!(s.stdout.contains("[remote: in both]"), "{}", s.all());
    let again = t.run_env(&t.a, &["push", "jobs/test.yaml", "--remote", url], &env).ok();
    assert!(again.stdout.contains("0 pushed, 2 already in"), "{}", again.all());
}

#[test]
fn a_push_over_a_damaged_object_indexes_nothing_and_no_build_without_a_remote_builds_nothing() {
    let t = Team::new();
    t.run(&t.a, &["jobs/test.yaml", "--no-push"]).ok();
    // Someone left a short object under γ's content address: objects are immutable, so the push says it is
    // damaged and writes no index entry pointing at it.
    let sha = t.a.manifest("m", "gamma")["output"]["sha256"].as_str().unwrap().to_string();
    let object = t.store.path().join("objects/sha256").join(&sha);
    std::fs::create_dir_all(object.parent().unwrap()).unwrap();
    std::fs::write(&object, b"short").unwrap();
    let out = t.run(&t.a, &["push", "jobs/test.yaml", "--only", "m/gamma"]).expect(2);
    assert!(out.stdout.contains("the object is damaged"), "{}", out.all());
    assert!(t.index().is_empty(), "{:?}", t.index());
    assert_eq!(std::fs::read(&object).unwrap(), b"short", "a create-only store overwrote an object");
    // --no-build with no remote at all: each output not fresh fails, saying so; nothing is written.
    let ws = Ws::new();
    ws.job("version: 1\njobs:\n  - model: org/m\n");
    let out = t.run(&ws, &["jobs/test.yaml", "--no-build"]).expect(2);
    assert!(out.stdout.contains("FAILED   m/gamma: not built: never built"), "{}", out.all());
    assert!(!ws.path("tensors").exists());
}
