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
        let hub = TestHub::start();
        let a = Ws::new();
        let dir = a.synth("m", &["--vocab", "512", "--hidden", "64"]);
        hub.publish("org/m", C1, &dir, Some("main"));
        let store = tempfile::tempdir().unwrap();
        let team = Team { hub, store, a, b: Ws::new() };
        for ws in [&team.a, &team.b] {
            ws.job(&format!(
                "version: 1\noutput:\n  remote: {}\njobs:\n  - model: org/m\n    frames: [gamma, gamma_prime]\n",
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
    // Two pushers of the same content at once: neither fails, one entry per output.
    let push = |ws: &Ws| t.run_env(ws, &["push", "jobs/test.yaml"], &[]);
    t.run(&t.b, &["jobs/test.yaml", "--no-push", "--no-pull"]).ok();
    std::thread::scope(|s| {
        let x = s.spawn(|| push(&t.a).code());
        let y = s.spawn(|| push(&t.b).code());
        assert_eq!((x.join().unwrap(), y.join().unwrap()), (0, 0));
    });
    assert_eq!(t.index().len(), 2, "{:?}", t.index());
    assert_eq!(t.objects().len(), 2, "{:?}", t.objects());
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
    _root: tempfile::TempDir,
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
    let s3 = S3 { child, endpoint: format!("http://127.0.0.1:{port}"), _root: root };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(s3);
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    None
}

#[test]
fn a_real_s3_server_serves_as_the_remote_and_its_secret_is_never_printed() {
    let Some(s3) = s3s_fs() else {
        return skip(
            "a_real_s3_server_serves_as_the_remote_and_its_secret_is_never_printed",
            "s3s-fs is not installed (cargo install s3s-fs@0.14.1 --features binary; .ci/run does)",
        );
    };
    let t = Team::new();
    let env = [
        ("AWS_ENDPOINT_URL", s3.endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", S3_KEY),
        ("AWS_SECRET_ACCESS_KEY", S3_SECRET),
        ("AWS_REGION", "us-east-1"),
    ];
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
    // A wrong secret: one error, and the secret in neither output.
    let bad = [("AWS_SECRET_ACCESS_KEY", "wrong-secret-value-xyz"), env[0], env[1], env[3]];
    let denied = t.run_env(&t.b, &["-vv", "push", "jobs/test.yaml", "--remote", url], &bad).expect(2);
    for out in [&a, &b, &s, &denied] {
        assert!(!out.all().contains(S3_SECRET), "the secret was printed: {}", out.all());
        assert!(!out.all().contains("wrong-secret-value-xyz"), "the secret was printed: {}", out.all());
    }
    for (k, v) in [("a", &t.a), ("b", &t.b)] {
        for f in files(&v.path("manifests")) {
            let text = std::fs::read_to_string(&f).unwrap();
            assert!(!text.contains(S3_SECRET) && !text.contains(S3_KEY), "{k}: {}", f.display());
        }
    }
}
