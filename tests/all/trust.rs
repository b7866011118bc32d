//! Provenance you can trust (issue 11), tried as a hostile user would: sources that lie (a CDN, a damaged
//! cache), manifests edited by hand, special files and links planted where files are expected, kill -9 in the
//! middle of a download, names that carry terminal escapes. Each test fails without the fix it guards; the
//! table in RELIABILITY.md names them.

use crate::support::hub::{Faults, TestHub};
use crate::support::*;
use std::os::unix::fs::FileExt;

const C1: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn mkfifo(path: &std::path::Path) {
    let _ = std::fs::remove_file(path);
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc_mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

unsafe extern "C" {
    #[link_name = "mkfifo"]
    fn libc_mkfifo(path: *const std::ffi::c_char, mode: u32) -> i32;
}

fn edit_manifest(ws: &Ws, name: &str, frame: &str, f: impl FnOnce(&mut serde_json::Value)) {
    let mut m = ws.manifest(name, frame);
    f(&mut m);
    std::fs::write(ws.path(&format!("manifests/{name}/{frame}.json")), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

fn file_record(m: &serde_json::Value, pred: impl Fn(&str) -> bool) -> &serde_json::Value {
    m["source"]["files"].as_array().unwrap().iter().find(|f| pred(f["path"].as_str().unwrap())).unwrap()
}

fn shard_of(m: &serde_json::Value) -> &serde_json::Value {
    file_record(m, |p| p.ends_with(".safetensors"))
}

/// The blob a cached snapshot file links to.
fn blob_of(ws: &Ws, repo: &str, commit: &str, file: &str) -> std::path::PathBuf {
    let snap = ws.path(&format!("hf-cache/models--{}/snapshots/{commit}/{file}", repo.replace('/', "--")));
    std::fs::canonicalize(snap).unwrap()
}

fn tmp_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

// ---- Say only what was checked ----

#[test]
fn a_cdn_that_lies_in_a_range_is_recorded_as_unchecked_and_caught_by_verify_sources() {
    let ws = Ws::new();
    let hub = TestHub::start();
    let dir = ws.synth("m", &["--shards", "2"]);
    hub.publish("org/m", C1, &dir, Some("main"));
    let job = ws.job("version: 1\njobs:\n  - model: org/m\n");
    let job = job.to_str().unwrap();
    let env = [("HF_ENDPOINT", hub.endpoint.as_str())];
    hub.faults(Faults { lie_in_ranges: true, ..Default::default() });
    assert_eq!(ws.run_env(&[job], &env).code(), 0);
    let m = ws.manifest("m", "gamma");
    let key = m["source"]["tensor"].as_str().unwrap().to_string();
    // Wrong bytes with correct framing: nothing a normal run or a plain verify can see …
    assert_ne!(ws.read("tensors/m/W.safetensors"), reference_w(&dir, &key));
    assert_eq!(shard_of(&m)["sha256_from"], "hub", "a range read must not claim a computed digest");
    assert_eq!(file_record(&m, |p| p == "config.json")["sha256_from"], "computed");
    assert_eq!(ws.run_env(&["status", job, "--check"], &env).code(), 0);
    assert_eq!(ws.run(&["verify"]).code(), 0);
    // … but re-reading the sources whole does, whether the CDN still lies or has become honest.
    let v = ws.run_env(&["verify", "--sources"], &env);
    assert_eq!(v.code(), 1, "{}", v.all());
    assert!(v.stdout.contains("MISMATCH") && v.stdout.contains("m/gamma.json"), "{}", v.stdout);
    hub.faults(Faults::default());
    let v = ws.run_env(&["verify", "--sources"], &env);
    assert_eq!(v.code(), 1, "{}", v.all());
    assert!(v.stdout.contains("W re-extracted from hf://org/m@"), "{}", v.stdout);
    // Rebuilt from an honest CDN, the same check passes.
    assert_eq!(ws.run_env(&[job, "--force"], &env).code(), 0);
    assert_eq!(ws.read("tensors/m/W.safetensors"), reference_w(&dir, &key));
    let v = ws.run_env(&["verify", "--sources"], &env);
    assert_eq!(v.code(), 0, "{}", v.all());
}

#[test]
fn a_corrupt_cache_blob_is_recorded_as_the_caches_word_and_caught_by_verify_sources() {
    let ws = Ws::new();
    let dir = ws.synth("m", &[]);
    cache_model(&ws, &dir, "org/m", C1, Some("main"));
    let job = ws.job("version: 1\njobs:\n  - model: org/m\n");
    let job = job.to_str().unwrap();
    let o = ws.run(&[job, "--offline"]);
    assert_eq!(o.code(), 0, "{}", o.all());
    let m = ws.manifest("m", "gamma");
    assert_eq!(shard_of(&m)["sha256_from"], "cache");
    // Bit rot inside W's bytes: same size, so a normal run reads it as W (and says only "cache").
    let blob = blob_of(&ws, "org/m", C1, "model.safetensors");
    flip(&blob, m["source"]["range"]["offset"].as_u64().unwrap() + 6);
    assert_eq!(ws.run(&[job, "--offline", "--force"]).code(), 0);
    assert_eq!(ws.run(&["verify"]).code(), 0);
    let v = ws.run(&["verify", "--sources", "--offline"]);
    assert_eq!(v.code(), 1, "{}", v.all());
    assert!(v.stdout.contains(blob.file_name().unwrap().to_str().unwrap()), "{}", v.stdout);
    assert!(v.stdout.contains("(sha256_from: cache)"), "{}", v.stdout);
}

#[test]
fn a_truncated_cache_blob_falls_back_to_the_hub_online_and_is_named_offline() {
    let ws = Ws::new();
    let hub = TestHub::start();
    let dir = ws.synth("m", &[]);
    cache_model(&ws, &dir, "org/m", C1, Some("main"));
    hub.publish("org/m", C1, &dir, Some("main"));
    let blob = blob_of(&ws, "org/m", C1, "model.safetensors");
    let len = std::fs::metadata(&blob).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&blob).unwrap().set_len(len / 2).unwrap();
    let job = ws.job("version: 1\njobs:\n  - model: org/m\n");
    let job = job.to_str().unwrap();
    let env = [("HF_ENDPOINT", hub.endpoint.as_str())];
    // Offline: an error that names the damaged blob and what to do.
    let o = ws.run_env(&[job, "--offline"], &env);
    assert_eq!(o.code(), 2, "{}", o.all());
    assert!(o.stdout.contains("damaged") && o.stdout.contains(blob.to_str().unwrap()), "{}", o.stdout);
    assert!(o.stdout.contains("remove it"), "{}", o.stdout);
    // Online: read from the Hub instead (a warning), the right bytes.
    let o = ws.run_env(&[job], &env);
    assert_eq!(o.code(), 0, "{}", o.all());
    assert!(o.stderr.contains("damaged"), "{}", o.stderr);
    let key = ws.manifest("m", "gamma")["source"]["tensor"].as_str().unwrap().to_string();
    assert_eq!(ws.read("tensors/m/W.safetensors"), reference_w(&dir, &key));
    // fetch: full replaces the blob, through a verified download only.
    let full = ws.job("version: 1\njobs:\n  - model: org/m\n    fetch: full\n");
    let o = ws.run_env(&[full.to_str().unwrap(), "--force"], &env);
    assert_eq!(o.code(), 0, "{}", o.all());
    assert_eq!(std::fs::metadata(&blob).unwrap().len(), len);
    assert_eq!(sha256(&std::fs::read(&blob).unwrap()), blob.file_name().unwrap().to_str().unwrap());
    assert_eq!(shard_of(&ws.manifest("m", "gamma"))["sha256_from"], "computed");
}

#[test]
fn each_fetch_mode_records_where_its_digests_came_from_and_honest_sources_verify() {
    let ws = Ws::new();
    let hub = TestHub::start();
    let local = ws.synth("l", &["--shards", "2"]);
    let remote = ws.synth("r", &["--tie", "false", "--store", "head"]);
    hub.publish("org/r", C1, &remote, Some("main"));
    hub.publish("org/f", C1, &remote, Some("main"));
    let job = ws.job(
        "version: 1\njobs:\n  - path: ../models/l\n    frames: [gamma, gamma_prime]\n  - model: org/r\n  - model: org/f\n    fetch: full\n",
    );
    let job = job.to_str().unwrap();
    let env = [("HF_ENDPOINT", hub.endpoint.as_str())];
    assert_eq!(ws.run_env(&[job], &env).code(), 0);
    let l = ws.manifest("l", "gamma");
    assert_eq!(file_record(&l, |p| p == "config.json")["sha256_from"], "computed");
    assert_eq!(file_record(&l, |p| p.ends_with(".index.json"))["sha256_from"], "computed");
    assert!(shard_of(&l)["sha256"].is_null() && shard_of(&l)["sha256_from"].is_null(), "{l}");
    assert_eq!(shard_of(&ws.manifest("r", "gamma"))["sha256_from"], "hub");
    assert_eq!(shard_of(&ws.manifest("f", "gamma"))["sha256_from"], "computed");
    let v = ws.run_env(&["verify", "--sources"], &env);
    assert_eq!(v.code(), 0, "{}", v.all());
    assert!(v.stdout.contains("4 verified, 0 mismatched"), "{}", v.stdout);
    // Offline, what was read from the Hub by range cannot be re-read: an error (exit 2), not a pass.
    let v = ws.run_env(&["verify", "--sources", "--offline"], &env);
    assert_eq!(v.code(), 2, "{}", v.all());
    assert!(v.stdout.contains("ERROR") && v.stdout.contains("r/gamma.json"), "{}", v.stdout);
    // A local shard changed after the build (same size, W's bytes): caught by re-extraction.
    let shard = shard_of(&l)["path"].as_str().unwrap().to_string();
    flip(&local.join(&shard), l["source"]["range"]["offset"].as_u64().unwrap() + 2);
    let v = ws.run_env(&["verify", "--sources", "--offline", "manifests"], &env).expect(2);
    assert!(v.stdout.contains("MISMATCH") && v.stdout.contains("W re-extracted from"), "{}", v.stdout);
}

#[test]
fn manifests_from_before_sha256_from_are_read_as_unchecked_and_stay_fresh() {
    let ws = Ws::new();
    let dir = ws.synth("m", &[]);
    cache_model(&ws, &dir, "org/m", C1, Some("main"));
    let job = ws.job("version: 1\njobs:\n  - model: org/m\n");
    let job = job.to_str().unwrap();
    assert_eq!(ws.run(&[job, "--offline"]).code(), 0);
    // As an earlier gamma-run wrote it: no sha256_from, no ctime in the stat cache.
    edit_manifest(&ws, "m", "gamma", |m| {
        for f in m["source"]["files"].as_array_mut().unwrap() {
            f.as_object_mut().unwrap().remove("sha256_from");
        }
        m["stat"]["output"].as_object_mut().unwrap().remove("ctime_ns");
        m["source"].as_object_mut().unwrap().remove("seal");
    });
    let before = mtime(&ws.path("tensors/m/W.safetensors"));
    let o = ws.run(&[job, "--offline"]).ok();
    assert!(o.stdout.contains("fresh    m/gamma"), "{}", o.stdout);
    assert_eq!(mtime(&ws.path("tensors/m/W.safetensors")), before, "not rebuilt");
    let a = ws.run(&["attest"]);
    assert_eq!(a.code(), 0, "{}", a.all());
    let st: serde_json::Value = serde_json::from_slice(&ws.read("attestations/m/gamma.intoto.json")).unwrap();
    let deps = st["predicate"]["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
    assert!(deps.iter().all(|d| d["annotations"]["sha256_from"] != "computed"), "{deps:?}");
    let s = ws.run(&["show", "manifests/m/gamma.json"]).ok();
    assert!(s.stdout.contains("(cache, not checked)"), "{}", s.stdout);
}

// ---- Manifests that contradict themselves ----

/// An edit to one field a reader acts on.
type Edit = (&'static str, &'static str, fn(&mut serde_json::Value));

/// Issue 30 (and 24): every field the consistency check compares, edited alone, reads as "manifest edited" in
/// `status`, `verify` and `attest` — for a Hub model (from the cache), a local directory and a derived frame.
/// Fails if the check stops comparing any one of them (each row is one field; a row names what it edits).
#[test]
fn a_manifest_whose_source_fields_disagree_with_its_fingerprint_is_edited() {
    let ws = Ws::new();
    let dir = ws.synth("m", &["--shards", "2"]);
    cache_model(&ws, &dir, "org/m", C1, Some("main"));
    ws.synth("l", &["--shards", "2"]);
    let job = ws.job("version: 1\njobs:\n  - model: org/m\n    frames: [gamma, gamma_prime]\n  - path: ../models/l\n");
    let job = job.to_str().unwrap();
    assert_eq!(ws.run(&[job, "--offline"]).code(), 0);
    let other_file = |m: &serde_json::Value| -> String {
        let shard = m["source"]["range"]["file"].as_str().unwrap().to_string();
        let files = m["source"]["files"].as_array().unwrap();
        files.iter().map(|f| f["path"].as_str().unwrap().to_string()).find(|p| *p != shard).unwrap()
    };
    let shard_index = |m: &serde_json::Value| -> usize {
        let shard = m["source"]["range"]["file"].as_str().unwrap();
        m["source"]["files"].as_array().unwrap().iter().position(|f| f["path"] == shard).unwrap()
    };
    let rows: Vec<Edit> = vec![
        ("m", "source.repo", |m| m["source"]["repo"] = "org/other".into()),
        ("m", "source.commit", |m| m["source"]["commit"] = "c".repeat(40).into()),
        ("m", "source.kind", |m| m["source"]["kind"] = "local".into()),
        ("m", "frame_version", |m| m["frame_version"] = 7.into()),
        ("m", "output.dtype", |m| m["output"]["dtype"] = "F32".into()),
        ("m", "source.files[shard].sha256", |m| {
            let i = m["source"]["range"]["file"].clone();
            let files = m["source"]["files"].as_array_mut().unwrap();
            let f = files.iter_mut().find(|f| f["path"] == i).unwrap();
            f["sha256"] = "e".repeat(64).into();
        }),
        ("m", "source.range.offset", |m| {
            m["source"]["range"]["offset"] = (m["source"]["range"]["offset"].as_u64().unwrap() + 2).into();
        }),
        ("m", "source.range.length", |m| {
            m["source"]["range"]["length"] = (m["source"]["range"]["length"].as_u64().unwrap() - 2).into();
        }),
        ("m", "source.shape", |m| m["source"]["shape"][0] = 3.into()),
        ("m", "source.dtype", |m| m["source"]["dtype"] = "F16".into()),
        ("m", "source.tensor", |m| m["source"]["tensor"] = "lm_head.weight".into()),
        ("m", "source.shared_from", |m| m["source"]["shared_from"] = "m@other".into()),
        ("m", "fingerprint", |m| m["fingerprint"] = "0".repeat(64).into()),
        ("l", "source.config_sha256", |m| {
            let files = m["source"]["files"].as_array_mut().unwrap();
            let f = files.iter_mut().find(|f| f["path"] == "config.json").unwrap();
            f["sha256"] = "d".repeat(64).into();
        }),
        ("l", "source.index_sha256", |m| {
            let files = m["source"]["files"].as_array_mut().unwrap();
            let f = files.iter_mut().find(|f| f["path"] == "model.safetensors.index.json").unwrap();
            f["sha256"] = "d".repeat(64).into();
        }),
        ("l", "source.path", |m| m["source"]["path"] = "/elsewhere/models/l".into()),
        ("l", "source.files[].size", |m| m["source"]["files"][0]["size"] = 1.into()),
        ("l", "source.range.file (to another file it lists)", |_| {}),
        ("l", "source.files[shard] dropped", |_| {}),
        ("m", "inputs[gamma].sha256", |_| {}),
        ("m", "inputs[gamma].frame", |_| {}),
    ];
    // Fields the fingerprint records are edited twice: alone (the seal catches it), and with the record sealed
    // again as a forger would (only the comparison with the fingerprint catches it).
    let in_fingerprint = [
        "source.repo",
        "source.commit",
        "source.kind",
        "source.config_sha256",
        "source.index_sha256",
        "source.range.file (to another file it lists)",
    ];
    let passes = rows.iter().flat_map(|r| {
        let twice = in_fingerprint.contains(&r.1);
        std::iter::once((r, false)).chain(twice.then_some((r, true)))
    });
    for ((name, field, edit), resealed) in passes {
        let (name, field) = (*name, *field);
        let field_shown = if resealed { format!("{field}, sealed again") } else { field.to_string() };
        let field = field_shown.as_str().split(", sealed").next().unwrap();
        let frame = if field.starts_with("inputs") { "gamma_prime" } else { "gamma" };
        let good = ws.read(&format!("manifests/{name}/{frame}.json"));
        edit_manifest(&ws, name, frame, |m| {
            match field {
                "source.range.file (to another file it lists)" => m["source"]["range"]["file"] = other_file(m).into(),
                "source.files[shard] dropped" => {
                    let i = shard_index(m);
                    m["source"]["files"].as_array_mut().unwrap().remove(i);
                }
                "inputs[gamma].sha256" => m["inputs"][0]["sha256"] = "f".repeat(64).into(),
                "inputs[gamma].frame" => m["inputs"][0]["frame"] = "embedding".into(),
                _ => edit(m),
            }
            if resealed {
                reseal(m);
            }
        });
        let field = field_shown.as_str();
        let s = ws.run(&["status", job, "--offline", "--check"]);
        assert_eq!(s.code(), 1, "{field}: {}", s.all());
        assert!(s.stdout.contains(&format!("{name}/{frame}: manifest edited")), "{field}: {}", s.stdout);
        let v = ws.run(&["verify"]);
        assert_eq!(v.code(), 1, "{field}: {}", v.all());
        assert!(v.stdout.contains("manifest edited"), "{field}: {}", v.stdout);
        let a = ws.run(&["attest"]);
        assert_eq!(a.code(), 2, "{field}: {}", a.all());
        assert!(a.stderr.contains("manifest edited"), "{field}: {}", a.stderr);
        std::fs::write(ws.path(&format!("manifests/{name}/{frame}.json")), &good).unwrap();
    }
    assert_eq!(ws.run(&["status", job, "--offline", "--check"]).code(), 0);
    ws.run(&["verify"]).ok();
}

#[test]
fn a_derived_manifest_pointed_at_a_crafted_input_is_caught() {
    let ws = Ws::new();
    ws.synth("a", &[]);
    ws.synth("b", &["--seed", "7"]);
    let job = ws.job(
        "version: 1\njobs:\n  - path: ../models/a\n    frames: [gamma, gamma_prime]\n  - path: ../models/b\n    frames: [gamma, gamma_prime]\n",
    );
    let job = job.to_str().unwrap();
    assert_eq!(ws.run(&[job]).code(), 0);
    // The crafted γ (b's, copied out of the managed tree) and a genuine γ′ of it, in a's place; a's manifest
    // keeps its own fingerprint but names the crafted file as its input.
    std::fs::create_dir_all(ws.path("tensors/evil")).unwrap();
    std::fs::copy(ws.path("tensors/b/W.safetensors"), ws.path("tensors/evil/W.safetensors")).unwrap();
    std::fs::copy(ws.path("tensors/b/W_prime.safetensors"), ws.path("tensors/a/W_prime.safetensors")).unwrap();
    let b = ws.manifest("b", "gamma_prime");
    edit_manifest(&ws, "a", "gamma_prime", |m| {
        m["output"]["sha256"] = b["output"]["sha256"].clone();
        m["output"]["size"] = b["output"]["size"].clone();
        m["inputs"][0]["path"] = "tensors/evil/W.safetensors".into();
    });
    let s = ws.run(&["status", job, "--check"]);
    assert_eq!(s.code(), 1, "{}", s.all());
    assert!(s.stdout.contains("stale    a/gamma_prime: manifest edited"), "{}", s.stdout);
    let v = ws.run(&["verify", "--recompute"]);
    assert_eq!(v.code(), 1, "{}", v.all());
    assert!(v.stdout.contains("MISMATCH") && v.stdout.contains("a/gamma_prime.json"), "{}", v.stdout);
    // Even with the path put back, recompute follows the γ the fingerprint names, and the bytes differ.
    edit_manifest(&ws, "a", "gamma_prime", |m| m["inputs"][0]["path"] = "tensors/a/W.safetensors".into());
    let v = ws.run(&["verify", "--recompute"]);
    assert_eq!(v.code(), 1, "{}", v.all());
    assert!(v.stdout.contains("recomputed from its inputs"), "{}", v.stdout);
}

// ---- Never hang, never read without bounds ----

#[test]
fn special_files_where_files_are_expected_fail_fast_naming_the_path() {
    let ws = Ws::new();
    let dir = ws.synth("m", &["--shards", "2"]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
    let job = job.to_str().unwrap();
    assert_eq!(ws.run(&[job]).code(), 0);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("model.safetensors.index.json")).unwrap()).unwrap();
    let shard = index["weight_map"].as_object().unwrap().values().next().unwrap().as_str().unwrap().to_string();
    for name in ["config.json", "model.safetensors.index.json", shard.as_str()] {
        let path = dir.join(name);
        let keep = std::fs::read(&path).unwrap();
        mkfifo(&path);
        for cmd in [vec![job, "--force"], vec!["status", job]] {
            let o = ws.run_within(30, &cmd, &[]);
            assert_eq!(o.code(), 2, "{name} {cmd:?}: {}", o.all());
            assert!(o.all().contains(name) && o.all().contains("FIFO"), "{name}: {}", o.all());
        }
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, keep).unwrap();
    }
    // A manifest that is a FIFO: status judges it unreadable (stale), verify reports it; neither blocks.
    assert_eq!(ws.run(&[job]).code(), 0);
    mkfifo(&ws.path("manifests/m/gamma.json"));
    let s = ws.run_within(30, &["status", job], &[]).ok();
    assert!(s.stdout.contains("stale") && s.stdout.contains("FIFO"), "{}", s.all());
    let v = ws.run_within(30, &["verify"], &[]);
    assert_eq!(v.code(), 1, "{}", v.all());
    assert!(v.stdout.contains("gamma.json") && v.stdout.contains("FIFO"), "{}", v.stdout);
    assert_eq!(ws.run_within(30, &[job], &[]).code(), 0, "run replaces it");
}

#[test]
fn refs_and_token_files_are_regular_bounded_and_read_only_when_needed() {
    let ws = Ws::new();
    let dir = ws.synth("m", &[]);
    cache_model(&ws, &dir, "org/m", C1, Some("main"));
    let refs = ws.path("hf-cache/models--org--m/refs/main");
    let job = ws.job("version: 1\njobs:\n  - model: org/m\n");
    let job = job.to_str().unwrap();
    for (what, make) in [
        ("FIFO", Box::new(|p: &std::path::Path| mkfifo(p)) as Box<dyn Fn(&std::path::Path)>),
        ("device", Box::new(|p: &std::path::Path| std::os::unix::fs::symlink("/dev/zero", p).unwrap())),
        ("more than the 4096", Box::new(|p: &std::path::Path| std::fs::write(p, vec![b'a'; 10_000]).unwrap())),
    ] {
        let _ = std::fs::remove_file(&refs);
        make(&refs);
        let o = ws.run_within(30, &[job, "--offline"], &[]);
        assert_eq!(o.code(), 2, "{what}: {}", o.all());
        assert!(o.all().contains("refs/main") && o.all().contains(what), "{what}: {}", o.all());
    }
    std::fs::remove_file(&refs).unwrap();
    std::fs::write(&refs, C1).unwrap();
    // The token file: a FIFO or /dev/zero is refused at once, naming it.
    let hub = TestHub::start();
    hub.publish("org/h", C1, &dir, Some("main"));
    let hjob = ws.path("jobs/hub.yaml");
    std::fs::write(&hjob, "version: 1\njobs:\n  - model: org/h\n").unwrap();
    let token = ws.path("token-fifo");
    mkfifo(&token);
    for t in [token.to_str().unwrap(), "/dev/zero"] {
        let env = [("HF_ENDPOINT", hub.endpoint.as_str()), ("HF_TOKEN_PATH", t)];
        let o = ws.run_within(30, &[hjob.to_str().unwrap()], &env);
        assert_eq!(o.code(), 2, "{t}: {}", o.all());
        assert!(o.all().contains("token file") && o.all().contains(t), "{t}: {}", o.all());
        // A job file with local sources only reads no Hub settings at all.
        let local = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
        let env = [("HF_ENDPOINT", "not a url"), ("HF_TOKEN_PATH", t)];
        let o = ws.run_within(30, &[local.to_str().unwrap()], &env);
        assert_eq!(o.code(), 0, "{}", o.all());
        let s = ws.run_within(30, &["status", local.to_str().unwrap(), "--format", "markdown"], &env);
        assert_eq!(s.code(), 0, "{}", s.all());
    }
}

// ---- Leave nothing behind, write nowhere else ----

/// A slow `fetch: full` of a 8192 × 256 f32 head from a loopback hub: the workspace, the hub (kept alive), the job
/// path and the blobs directory its temp file appears in.
fn slow_full_download() -> (Ws, TestHub, String, std::path::PathBuf) {
    let ws = Ws::new();
    let hub = TestHub::start();
    let dir =
        ws.synth("m", &["--vocab", "8192", "--hidden", "256", "--dtype", "f32", "--tie", "false", "--store", "head"]);
    hub.publish("org/m", C1, &dir, Some("main"));
    let job = ws.job("version: 1\njobs:\n  - model: org/m\n    fetch: full\n");
    hub.faults(Faults { slow_ms: 40, ..Default::default() });
    let blobs = ws.path("hf-cache/models--org--m/blobs");
    (ws, hub, job.to_str().unwrap().to_string(), blobs)
}

/// Starts the download and returns once its temp blob is there (and has grown a little).
fn start_download(ws: &Ws, job: &str, env: &[(&str, &str)], blobs: &std::path::Path) -> std::process::Child {
    let child = ws
        .command(&[job], env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while tmp_files(blobs).is_empty() && started.elapsed().as_secs() < 20 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(tmp_files(blobs).len(), 1, "the download's temp blob");
    std::thread::sleep(std::time::Duration::from_millis(150));
    child
}

#[test]
fn an_interrupted_full_download_is_removed_by_the_next_run() {
    let (ws, hub, job, blobs) = slow_full_download();
    let job = job.as_str();
    let env = [("HF_ENDPOINT", hub.endpoint.as_str())];
    let mut child = start_download(&ws, job, &env, &blobs);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let left = tmp_files(&blobs);
    assert_eq!(left.len(), 1, "the killed download's temp blob: {left:?}");
    hub.faults(Faults::default());
    let o = ws.run_env(&[job], &env);
    assert_eq!(o.code(), 0, "{}", o.all());
    assert!(tmp_files(&blobs).is_empty(), "{:?}", tmp_files(&blobs));
    assert!(ws.path("hf-cache/.locks/models--org--m").is_dir(), "the Python client's lock layout");
}

/// Issue 24: Ctrl-C (SIGINT) or a CI cancel (SIGTERM) during `fetch: full` removes the preallocated temp blob
/// from the shared HF cache and exits 130 / 143; a later run then downloads and builds as usual. A temp blob a
/// SIGKILL left is removed by `clean` (under its blob lock), without a download.
#[test]
fn an_interrupted_download_removes_its_temp_blob_and_exits_with_the_signal() {
    let (ws, hub, job, blobs) = slow_full_download();
    let job = job.as_str();
    let env = [("HF_ENDPOINT", hub.endpoint.as_str())];
    let start_download = || start_download(&ws, job, &env, &blobs);
    for (signal, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let child = start_download();
        // SAFETY: signals our own child, by the pid we hold.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
        let o = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{stderr}");
        assert!(
            stderr.contains("interrupted") && stderr.contains(" temp files removed") && !stderr.contains(": 0 temp"),
            "{stderr}"
        );
        assert!(tmp_files(&blobs).is_empty(), "{:?}", tmp_files(&blobs));
        assert!(!ws.path("tensors/m/W.safetensors").exists());
    }
    // SIGKILL cannot be caught: its temp blob stays until `clean` (or the next fetch of that repo) removes it.
    let mut child = start_download();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(tmp_files(&blobs).len(), 1);
    let o = ws.run_env(&["clean", job, "--dry-run"], &env).ok();
    assert!(o.stdout.contains("would remove") && o.stdout.contains("blobs/."), "{}", o.stdout);
    assert_eq!(tmp_files(&blobs).len(), 1, "a dry run removes nothing");
    let o = ws.run_env(&["clean", job, "--yes"], &env).ok();
    assert!(o.stdout.contains("an interrupted download"), "{}", o.stdout);
    assert!(tmp_files(&blobs).is_empty(), "{:?}", tmp_files(&blobs));
    hub.faults(Faults::default());
    ws.run_env(&[job], &env).ok();
    ws.run(&["verify"]).ok();
}

#[test]
fn temp_files_of_runs_without_locks_are_removed_by_later_runs() {
    let ws = Ws::new();
    ws.synth("m", &[]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
    let job = job.to_str().unwrap();
    let nolock = [("GAMMA_RUN_NO_LOCK", "1")];
    assert_eq!(ws.run_env(&[job], &nolock).code(), 0);
    // What a killed unlocked run leaves: a temp file beside the output and beside the manifest.
    std::fs::write(ws.path("tensors/m/.W.safetensors.Xk3j9a.tmp"), vec![0u8; 4096]).unwrap();
    std::fs::write(ws.path("manifests/m/.gamma.json.Qp2m1z.tmp"), b"{").unwrap();
    let o = ws.run_env(&[job], &nolock).ok();
    assert!(o.stdout.contains("fresh"), "{}", o.all());
    assert_eq!(tmp_files(&ws.path("tensors/m")).len(), 1, "an unlocked run cannot know nobody is writing it");
    let o = ws.run(&[job]).ok();
    assert!(o.stdout.contains("fresh"), "{}", o.all());
    assert!(tmp_files(&ws.path("tensors/m")).is_empty() && tmp_files(&ws.path("manifests/m")).is_empty());
}

/// Issue 30: without locks, `clean` cannot know whether a run is still writing a temp file: it keeps every one,
/// says why, and exits 2 (fails if `clean` removed temp files while locks are off).
#[test]
fn clean_keeps_temp_files_while_locks_are_off() {
    let ws = Ws::new();
    ws.synth("m", &[]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
    let job = job.to_str().unwrap();
    ws.run(&[job]).ok();
    let temps = ["tensors/m/.W.safetensors.Xk3j9a.tmp", "manifests/m/.gamma.json.Qp2m1z.tmp"];
    for t in temps {
        std::fs::write(ws.path(t), b"being written").unwrap();
    }
    let nolock = [("GAMMA_RUN_NO_LOCK", "1")];
    let o = ws.run_env(&["clean", job, "--yes"], &nolock).expect(2);
    for t in temps {
        assert!(ws.path(t).exists(), "{t} removed while locks are off: {}", o.all());
        let name = t.rsplit('/').next().unwrap();
        assert!(o.stdout.lines().any(|l| l.contains(name) && l.contains("locks are off")), "{}", o.all());
    }
    // With locks, nobody holds them: removed.
    ws.run(&["clean", job, "--yes"]).ok();
    assert!(temps.iter().all(|t| !ws.path(t).exists()));
    ws.run(&["verify"]).ok();
}

#[test]
fn links_planted_in_the_workspace_are_never_written_through() {
    let ws = Ws::new();
    ws.synth("a", &[]);
    ws.synth("b", &["--seed", "3"]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/a\n  - path: ../models/b\n");
    let job = job.to_str().unwrap();
    let outside = ws.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    // The locks directory leads out of the workspace.
    std::os::unix::fs::symlink(&outside, ws.path(".gamma-run")).unwrap();
    let o = ws.run(&[job]);
    assert_eq!(o.code(), 2, "{}", o.all());
    assert!(o.stdout.contains(".gamma-run") && o.stdout.contains("symlink"), "{}", o.stdout);
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none(), "wrote outside the workspace");
    std::fs::remove_file(ws.path(".gamma-run")).unwrap();
    assert_eq!(ws.run(&[job]).code(), 0);
    // One output's directory aliasing another's: a's build may not overwrite b's output.
    let b_before = ws.read("tensors/b/W.safetensors");
    std::fs::remove_dir_all(ws.path("tensors/a")).unwrap();
    std::os::unix::fs::symlink(ws.path("tensors/b"), ws.path("tensors/a")).unwrap();
    let o = ws.run(&[job]);
    assert_eq!(o.code(), 2, "{}", o.all());
    assert!(o.stdout.contains("tensors/a") && o.stdout.contains("symlink"), "{}", o.stdout);
    assert_eq!(ws.read("tensors/b/W.safetensors"), b_before);
    assert!(o.stdout.contains("fresh    b/gamma"), "{}", o.stdout);
    // attest through a planted attestations/<name> link.
    std::fs::create_dir_all(ws.path("attestations")).unwrap();
    std::os::unix::fs::symlink(&outside, ws.path("attestations/b")).unwrap();
    let a = ws.run(&["attest"]);
    assert_eq!(a.code(), 2, "{}", a.all());
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none(), "attest wrote outside the workspace");
}

#[test]
fn the_workspace_root_itself_is_not_an_output_directory() {
    let ws = Ws::new();
    ws.synth("m", &[]);
    for tensors in ["..", "../manifests/t"] {
        let job = ws.job(&format!("version: 1\noutput:\n  tensors: {tensors}\njobs:\n  - path: ../models/m\n"));
        let o = ws.run(&[job.to_str().unwrap()]);
        assert_eq!(o.code(), 2, "{tensors}: {}", o.all());
        assert!(o.stderr.contains("test.yaml:3:") && o.stderr.contains("output.tensors"), "{tensors}: {}", o.stderr);
        assert!(!ws.path("m").exists() && !ws.path("manifests").exists(), "{tensors}: wrote somewhere");
    }
}

#[test]
fn the_stat_cache_is_refreshed_only_under_the_outputs_lock() {
    let ws = Ws::new();
    ws.synth("m", &[]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
    let job = job.to_str().unwrap();
    assert_eq!(ws.run(&[job]).code(), 0);
    // A touch makes the stat cache stale; another gamma-run holds the output's lock (it may be rebuilding it).
    let out = ws.path("tensors/m/W.safetensors");
    std::fs::File::options().write(true).open(&out).unwrap().set_modified(std::time::SystemTime::now()).unwrap();
    let manifest = ws.read("manifests/m/gamma.json");
    let lock = std::fs::File::options().read(true).write(true).open(ws.path(".gamma-run/locks/m.gamma.lock")).unwrap();
    lock.lock().unwrap();
    let o = ws.run(&[job]);
    assert_eq!(o.code(), 0, "{}", o.all());
    assert_eq!(ws.read("manifests/m/gamma.json"), manifest, "rewritten while another process held the lock");
    drop(lock);
    assert_eq!(ws.run(&[job]).code(), 0);
    assert_ne!(ws.read("manifests/m/gamma.json"), manifest, "refreshed once the lock is free");
}

// ---- Stat cache and read-only workspaces ----

#[test]
fn an_in_place_edit_with_its_mtime_restored_is_seen_and_rebuilt_before_its_dependents() {
    let ws = Ws::new();
    ws.synth("m", &[]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n    frames: [gamma, gamma_prime]\n");
    assert_eq!(ws.run(&[job.to_str().unwrap()]).code(), 0);
    let out = ws.path("tensors/m/W.safetensors");
    let good = ws.read("tensors/m/W.safetensors");
    let when = mtime(&out);
    let f = std::fs::File::options().read(true).write(true).open(&out).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 200).unwrap();
    f.write_all_at(&[b[0] ^ 0x55], 200).unwrap();
    f.set_modified(when).unwrap(); // touch -d: same size, inode and mtime; only the ctime tells
    drop(f);
    assert_eq!(mtime(&out), when);
    // γ′ made stale by a parameter change: it must be built from a γ that matches γ's manifest.
    let o = prime_in_bf16_from(&ws, &good);
    assert!(o.stdout.contains("built    m/gamma  (output modified (sha256 differs))"), "{}", o.stdout);
}

/// Makes γ′ stale (its dtype becomes bf16) and runs: it must succeed, with γ equal to `good` (rebuilt first
/// where its bytes had changed) and γ′ recomputable from it.
fn prime_in_bf16_from(ws: &Ws, good: &[u8]) -> Out {
    let job =
        ws.job("version: 1\njobs:\n  - path: ../models/m\n    frames: [gamma, {name: gamma_prime, dtype: bf16}]\n");
    let o = ws.run(&[job.to_str().unwrap()]).ok();
    assert!(o.stdout.contains("built    m/gamma_prime"), "{}", o.stdout);
    assert_eq!(ws.read("tensors/m/W.safetensors"), good);
    ws.run(&["verify", "--recompute"]).ok();
    o
}

#[test]
fn an_input_whose_bytes_differ_from_its_manifest_is_rebuilt_before_its_dependent() {
    let ws = Ws::new();
    ws.synth("m", &[]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n    frames: [gamma, gamma_prime]\n");
    assert_eq!(ws.run(&[job.to_str().unwrap()]).code(), 0);
    let good = ws.read("tensors/m/W.safetensors");
    let out = ws.path("tensors/m/W.safetensors");
    flip(&out, 300);
    // Its stat cache says nothing changed (edited to the file's new stat): only its bytes tell.
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(&out).unwrap();
    edit_manifest(&ws, "m", "gamma", |m| {
        m["stat"]["output"] = serde_json::json!({
            "size": md.len(),
            "mtime_ns": md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
            "inode": md.ino(),
            "ctime_ns": md.ctime() as i128 * 1_000_000_000 + md.ctime_nsec() as i128,
        });
    });
    let o = prime_in_bf16_from(&ws, &good);
    assert!(
        o.stdout.contains("built    m/gamma  (output modified (its bytes differ from its manifest))"),
        "{}",
        o.stdout
    );
}

#[test]
fn a_read_only_workspace_whose_outputs_are_fresh_is_not_an_error() {
    let ws = Ws::new();
    ws.synth("m", &[]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
    let job = job.to_str().unwrap();
    let Some(mut ro) = ReadOnly::prepare(&ws.path("manifests"), &ws.path("manifests/m"), "1m") else {
        skip(
            "a_read_only_workspace_whose_outputs_are_fresh_is_not_an_error",
            "root without the right to mount a tmpfs",
        );
        return;
    };
    assert_eq!(ws.run(&[job]).code(), 0);
    // A touch: the stat cache would be refreshed, but the manifests cannot be written.
    let out = ws.path("tensors/m/W.safetensors");
    std::fs::File::options().write(true).open(&out).unwrap().set_modified(std::time::SystemTime::now()).unwrap();
    assert!(ro.engage());
    let o = ws.run(&[job]);
    let s = ws.run(&["status", job, "--check"]);
    drop(ro);
    assert_eq!(o.code(), 0, "{}", o.all());
    assert!(o.stdout.contains("fresh    m/gamma"), "{}", o.stdout);
    assert_eq!(s.code(), 0, "{}", s.all());
}

// ---- Output that cannot be spoofed ----

/// A checkpoint whose tensor names carry terminal escapes and markdown.
fn hostile_names(ws: &Ws) -> std::path::PathBuf {
    let dir = ws.synth("h", &["--vocab", "8", "--hidden", "4"]);
    let data = vec![0u8; 8 * 4 * 2];
    let names = ["evil\u{1b}[2J\u{1b}[1;1H.embed.weight", "x\r<!-- hidden -->\n# Fake heading | col.embed.weight"];
    let views: Vec<(String, safetensors::tensor::TensorView)> = names
        .iter()
        .map(|n| {
            (n.to_string(), safetensors::tensor::TensorView::new(safetensors::Dtype::BF16, vec![8, 4], &data).unwrap())
        })
        .collect();
    std::fs::write(dir.join("model.safetensors"), safetensors::serialize(views, None).unwrap()).unwrap();
    dir
}

#[test]
fn names_from_checkpoints_cannot_rewrite_the_terminal_or_the_markdown_report() {
    let ws = Ws::new();
    hostile_names(&ws);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/h\n    tensor: \"w\\e[31m.embed.weight\"\n");
    let job = job.to_str().unwrap();
    let o = ws.run(&[job]);
    assert_eq!(o.code(), 2, "{}", o.all());
    assert!(o.stdout.contains("nearest keys present"), "{}", o.stdout);
    let verbose = ws.run(&[job, "-vv"]).expect(2);
    assert!(verbose.stderr.contains("nearest keys present"), "the error is logged too: {}", verbose.stderr);
    for (what, text) in
        [("run", o.all()), ("status", ws.run(&["status", job]).expect(2).all()), ("run -vv", verbose.all())]
    {
        assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{what}: raw control characters: {text:?}");
    }
    let md = ws.run(&["status", job, "--format", "markdown"]).expect(2);
    assert!(!md.stdout.contains("<!--") && !md.stdout.contains('\u{1b}'), "{}", md.stdout);
    let headings: Vec<&str> = md.stdout.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(headings.len(), 1, "{}", md.stdout);
    let rows = md.stdout.lines().filter(|l| l.starts_with('|')).count();
    assert_eq!(rows, 3, "header, rule and one row: {}", md.stdout);
    // JSON stays JSON, with the names intact.
    let j = ws.run(&["status", job, "--format", "json"]).expect(2);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert!(v[0]["reasons"][0].as_str().unwrap().contains("evil\u{1b}[2J"), "{v}");
}

/// The fingerprint digest, as gamma-run computes it (sorted `key=value` lines, values JSON-quoted): lets a test
/// forge a manifest that agrees with itself, as someone with write access could.
fn refingerprint(m: &mut serde_json::Value) {
    let inputs = m["fingerprint_inputs"].as_object().unwrap();
    let mut keys: Vec<&String> = inputs.keys().collect();
    keys.sort();
    let mut text = String::from("gamma-run fingerprint v1\n");
    for k in keys {
        text.push_str(&format!("{k}={}\n", serde_json::to_string(inputs[k].as_str().unwrap()).unwrap()));
    }
    m["fingerprint"] = sha256(text.as_bytes()).into();
}

/// What a forger (or a test) must do after editing a source field: seal the record again, in the encoding
/// `consistency::seal` documents (pinned here: changing it would call every stored manifest edited).
pub(crate) fn reseal(m: &mut serde_json::Value) {
    let s = &m["source"];
    let opt = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    let num = |v: &serde_json::Value| v.as_u64().unwrap().to_string();
    let shape: Vec<String> = s["shape"].as_array().unwrap().iter().map(num).collect();
    let mut lines = vec![
        ("kind".to_string(), opt(&s["kind"])),
        ("repo".into(), opt(&s["repo"])),
        ("path".into(), opt(&s["path"])),
        ("revision".into(), opt(&s["revision"])),
        ("commit".into(), opt(&s["commit"])),
        ("fetch".into(), opt(&s["fetch"])),
        ("tensor".into(), opt(&s["tensor"])),
        ("dtype".into(), opt(&s["dtype"])),
        ("shape".into(), shape.join(",")),
        ("range.file".into(), opt(&s["range"]["file"])),
        ("range.offset".into(), num(&s["range"]["offset"])),
        ("range.length".into(), num(&s["range"]["length"])),
        ("format".into(), opt(&s["format"])),
        ("entry".into(), opt(&s["entry"])),
        ("shared_from".into(), opt(&s["shared_from"])),
    ];
    for (i, f) in s["files"].as_array().unwrap().iter().enumerate() {
        lines.push((format!("files.{i}.path"), opt(&f["path"])));
        lines.push((format!("files.{i}.size"), num(&f["size"])));
        lines.push((format!("files.{i}.sha256"), opt(&f["sha256"])));
        lines.push((format!("files.{i}.sha256_from"), opt(&f["sha256_from"])));
    }
    let mut text = String::from("gamma-run source seal v1\n");
    for (k, v) in lines {
        text.push_str(&format!("{k}={}\n", serde_json::to_string(&v).unwrap()));
    }
    m["source"]["seal"] = sha256(text.as_bytes()).into();
}

#[test]
fn a_forged_but_self_consistent_manifest_steers_no_request_no_link_and_no_other_attestation() {
    let ws = Ws::new();
    let hub = TestHub::start();
    let dir = ws.synth("m", &[]);
    hub.publish("org/m", C1, &dir, Some("main"));
    let job = ws.job("version: 1\njobs:\n  - model: org/m\n");
    let env = [("HF_ENDPOINT", hub.endpoint.as_str()), ("HF_TOKEN", "hf_forged_manifest_token")];
    ws.run_env(&[job.to_str().unwrap()], &env).ok();
    // A repo id that is a path on the Hub's origin, with a link-breaking ")" — and a fingerprint to match.
    let evil = "org/m/../../api/whoami-v2?x=)[pwned](http://evil";
    edit_manifest(&ws, "m", "gamma", |m| {
        m["source"]["repo"] = evil.into();
        m["fingerprint_inputs"]["source.repo"] = evil.into();
        refingerprint(m);
        reseal(m);
    });
    let before = hub.requests().len();
    let v = ws.run_env(&["verify", "--sources"], &env).expect(2);
    assert!(v.stdout.contains("is not a Hub repo id"), "{}", v.stdout);
    assert_eq!(hub.requests().len(), before, "a forged repo id reached the Hub: {:?}", &hub.requests()[before..]);
    let md = ws.run_env(&["status", job.to_str().unwrap(), "--format", "markdown"], &env).ok();
    assert!(!md.stdout.contains("](http://evil") && !md.stdout.contains("/tree/"), "{}", md.stdout);
    // A manifest copied under another output's name is not attested in that one's place.
    let ws2 = Ws::new();
    ws2.synth("a", &[]);
    ws2.synth("b", &["--seed", "5"]);
    let j2 = ws2.job("version: 1\njobs:\n  - path: ../models/a\n  - path: ../models/b\n");
    ws2.run(&[j2.to_str().unwrap()]).ok();
    std::fs::copy(ws2.path("manifests/a/gamma.json"), ws2.path("manifests/b/gamma.json")).unwrap();
    let a = ws2.run(&["attest"]).expect(2);
    assert!(a.stderr.contains("stored elsewhere"), "{}", a.stderr);
}
