//! Reruns on the same workspace: fresh outputs are skipped without writing, each kind of change gives its own
//! stale reason and is rebuilt, `status --check` and `verify` exit codes, HF-cache revisions.

use crate::support::*;

const C1: &str = "1111111111111111111111111111111111111111";
const C2: &str = "2222222222222222222222222222222222222222";

fn setup() -> (Ws, String) {
    let ws = Ws::new();
    ws.synth("m", &["--shards", "2", "--dtype", "f32"]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n").to_str().unwrap().to_string();
    let out = ws.run(&[&job]);
    assert_eq!(out.code(), 0, "{}", out.all());
    (ws, job)
}

fn status(ws: &Ws, job: &str) -> (i32, String) {
    let o = ws.run(&["status", job, "--check"]);
    (o.code(), o.stdout.clone())
}

#[test]
fn a_second_run_writes_nothing_and_says_fresh() {
    let (ws, job) = setup();
    let (w, m) = (ws.path("tensors/m/W.safetensors"), ws.path("manifests/m/gamma.json"));
    let before = (mtime(&w), mtime(&m), ws.read("manifests/m/gamma.json"));
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = ws.run(&[&job]);
    assert_eq!(out.code(), 0);
    assert!(out.stdout.contains("fresh    m/gamma"), "{}", out.stdout);
    assert_eq!(before, (mtime(&w), mtime(&m), ws.read("manifests/m/gamma.json")));
    assert_eq!(status(&ws, &job), (0, "fresh    m/gamma\n".to_string()));
    let leftovers: Vec<_> = std::fs::read_dir(ws.path("tensors/m")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, vec!["W.safetensors"]);
}

/// The workspace after one build, with W's shard and where W sits in it.
fn built() -> (Ws, String, std::path::PathBuf, serde_json::Value) {
    let (ws, job) = setup();
    let shard = ws.path("models/m/model-00001-of-00002.safetensors");
    let m = ws.manifest("m", "gamma");
    (ws, job, shard, m)
}

#[test]
fn a_touched_source_stays_fresh_and_its_new_stat_is_stored() {
    let (ws, job, shard, m) = built();
    // Touching the source without changing its bytes keeps it fresh (the stat cache misses, content matches).
    let bytes = std::fs::read(&shard).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&shard, &bytes).unwrap();
    assert_eq!(status(&ws, &job).0, 0);
    // `run` stores the new stat, so later checks are metadata-only again.
    let old = m["stat"]["sources"]["model-00001-of-00002.safetensors"]["mtime_ns"].clone();
    assert!(ws.run(&[&job]).ok().stdout.contains("fresh    m/gamma"));
    let new = ws.manifest("m", "gamma")["stat"]["sources"]["model-00001-of-00002.safetensors"]["mtime_ns"].clone();
    assert_ne!(old, new, "the stat cache was not refreshed");
    assert_eq!(ws.manifest("m", "gamma")["output"], m["output"]);
}

#[test]
fn w_changed_in_place_is_stale_and_rebuilt() {
    let (ws, job, shard, m) = built();
    // Same header, different tensor.
    flip(&shard, m["source"]["range"]["offset"].as_u64().unwrap() + 103); // the high byte of an f32
    let (code, out) = status(&ws, &job);
    assert_eq!(code, 1);
    assert!(out.contains("stale    m/gamma: tensor changed (W's bytes differ)"), "{out}");
    let run = ws.run(&[&job]).ok();
    assert!(run.stdout.contains("built    m/gamma  (tensor changed"), "{}", run.stdout);
    assert_eq!(ws.read("tensors/m/W.safetensors"), reference_w(&ws.path("models/m"), "model.embed_tokens.weight"));
    assert_eq!(status(&ws, &job).0, 0);
}

#[test]
fn a_config_change_is_stale() {
    let (ws, job, _, _) = built();
    let cfg = ws.path("models/m/config.json");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("\"dtype\"", "\"note\": 1, \"dtype\"");
    std::fs::write(&cfg, text).unwrap();
    assert!(status(&ws, &job).1.contains("config.json changed"));
    assert!(ws.run(&[&job]).ok().stdout.contains("built    m/gamma  (config.json changed)"));
    assert_eq!(status(&ws, &job).0, 0);
}

#[test]
fn a_tampered_output_is_named_by_status_and_verify_and_repaired_by_run() {
    let (ws, job, _, _) = built();
    flip(&ws.path("tensors/m/W.safetensors"), 500);
    assert!(status(&ws, &job).1.contains("output modified (sha256 differs)"));
    let v = ws.run(&["verify"]).expect(1);
    assert!(v.stdout.contains("MISMATCH") && v.stdout.contains("sha256"), "{}", v.stdout);
    ws.run(&[&job]).ok();
    ws.run(&["verify"]).ok();
}

#[test]
fn a_missing_output_or_manifest_is_stale_and_rebuilt() {
    let (ws, job, _, _) = built();
    std::fs::remove_file(ws.path("tensors/m/W.safetensors")).unwrap();
    assert!(status(&ws, &job).1.contains("output missing"));
    ws.run(&[&job]).ok();
    std::fs::remove_file(ws.path("manifests/m/gamma.json")).unwrap();
    assert!(status(&ws, &job).1.contains("manifest missing"));
    ws.run(&[&job]).ok();
    assert_eq!(status(&ws, &job), (0, "fresh    m/gamma\n".into()));
}

#[test]
fn a_manifest_of_an_older_format_is_stale() {
    let (ws, job, _, _) = built();
    let mp = ws.path("manifests/m/gamma.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&mp).unwrap()).unwrap();
    v["fingerprint_inputs"]["format_version"] = "0".into();
    std::fs::write(&mp, serde_json::to_vec(&v).unwrap()).unwrap();
    let out = status(&ws, &job).1;
    assert!(out.contains("format version changed 0 → 1") && out.contains("manifest edited"), "{out}");
    ws.run(&[&job]).ok();
    assert_eq!(status(&ws, &job), (0, "fresh    m/gamma\n".into()));
}

#[test]
fn never_built_is_missing_and_check_fails() {
    let ws = Ws::new();
    ws.synth("m", &[]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
    let o = ws.run(&["status", job.to_str().unwrap()]);
    assert_eq!((o.code(), o.stdout.as_str()), (0, "missing  m/gamma: never built\n"));
    let o = ws.run(&["status", job.to_str().unwrap(), "--check", "--json"]);
    assert_eq!(o.code(), 1);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v[0]["state"], "missing");
    assert_eq!(v[0]["output"], "tensors/m/W.safetensors");
    assert!(!ws.path("tensors").exists(), "status writes nothing");
}

#[test]
fn force_dry_run_and_only() {
    let ws = Ws::new();
    ws.synth("a", &[]);
    ws.synth("b", &["--seed", "2"]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/a\n  - path: ../models/b\n");
    let job = job.to_str().unwrap();
    let o = ws.run(&[job, "--dry-run"]).ok();
    assert!(o.stdout.contains("would build a/gamma  (never built)"), "{}", o.stdout);
    assert!(!ws.path("tensors").exists() && !ws.path("manifests").exists());
    let o = ws.run(&[job, "--only", "b"]).ok();
    assert!(o.stdout.contains("b/gamma") && !o.stdout.contains("a/gamma"), "{}", o.stdout);
    assert!(ws.path("tensors/b/W.safetensors").exists() && !ws.path("tensors/a").exists());
    let o = ws.run(&[job, "--only", "nope"]);
    assert_eq!(o.code(), 2);
    assert!(o.stderr.contains("--only \"nope\" matches no output"), "{}", o.stderr);
    let before = mtime(&ws.path("tensors/b/W.safetensors"));
    std::thread::sleep(std::time::Duration::from_millis(20));
    let o = ws.run(&[job, "--force", "--only", "b"]).ok();
    assert!(o.stdout.contains("built    b/gamma  (--force)"), "{}", o.stdout);
    assert_ne!(before, mtime(&ws.path("tensors/b/W.safetensors")));
}

#[test]
fn hf_cache_revisions_resolve_offline_and_branch_moves_are_stale() {
    let ws = Ws::new();
    let m1 = ws.synth("v1", &["--arch", "qwen2", "--tie", "false", "--store", "both-differ", "--shards", "2"]);
    let m2 = ws
        .synth("v2", &["--arch", "qwen2", "--tie", "false", "--store", "both-differ", "--shards", "2", "--seed", "9"]);
    cache_model(&ws, &m1, "org/tiny", C1, Some("main"));
    let job = ws.job(&format!(
        "version: 1\njobs:\n  - model: org/tiny\n  - model: org/tiny\n    name: pinned\n    revision: {C1}\n"
    ));
    let job = job.to_str().unwrap();
    let o = ws.run_env(&[job], &[("HF_HUB_OFFLINE", "1")]);
    assert_eq!(o.code(), 0, "{}", o.all());
    let m = ws.manifest("tiny", "gamma");
    assert_eq!(m["source"]["kind"], "hf_cache");
    assert_eq!(m["source"]["repo"], "org/tiny");
    assert_eq!(m["source"]["revision"], "main");
    assert_eq!(m["source"]["commit"], C1);
    let files = m["source"]["files"].as_array().unwrap();
    let shard = files.iter().find(|f| f["path"].as_str().unwrap().ends_with(".safetensors")).unwrap();
    assert_eq!(
        shard["sha256"].as_str().unwrap(),
        sha256(&std::fs::read(m1.join(shard["path"].as_str().unwrap())).unwrap())
    );
    // The shard's digest is the blob's name (unchecked); config.json was read whole and hashed.
    assert_eq!(shard["sha256_from"], "cache");
    let config = files.iter().find(|f| f["path"] == "config.json").unwrap();
    assert_eq!(config["sha256"].as_str().unwrap(), sha256(&std::fs::read(m1.join("config.json")).unwrap()));
    assert_eq!(config["sha256_from"], "computed");
    assert_eq!(ws.read("tensors/tiny/W.safetensors"), reference_w(&m1, "lm_head.weight"));

    // The branch moves: the branch job is stale with both commits named; the pinned one stays fresh.
    cache_model(&ws, &m2, "org/tiny", C2, Some("main"));
    let o = ws.run(&["status", job]).ok();
    assert!(o.stdout.contains("stale    tiny/gamma: revision moved 11111111… → 22222222…"), "{}", o.stdout);
    assert!(o.stdout.contains("fresh    pinned/gamma"), "{}", o.stdout);
    ws.run(&[job]).ok();
    assert_eq!(ws.read("tensors/tiny/W.safetensors"), reference_w(&m2, "lm_head.weight"));
    assert_eq!(ws.manifest("tiny", "gamma")["source"]["commit"], C2);

    // A pinned commit is judged with no network and no refs at all.
    std::fs::remove_dir_all(ws.path("hf-cache/models--org--tiny/refs")).unwrap();
    let o = ws.run(&["status", job, "--only", "pinned", "--offline"]);
    assert_eq!((o.code(), o.stdout.as_str()), (0, "fresh    pinned/gamma\n"), "{}", o.stderr);
}

#[test]
fn a_model_missing_from_the_cache_is_a_clear_error() {
    let ws = Ws::new();
    let job = ws.job("version: 1\njobs:\n  - model: org/absent\n    revision: v1.0\n");
    let o = ws.run(&[job.to_str().unwrap(), "--offline"]);
    assert_eq!(o.code(), 2);
    assert!(o.stdout.contains("org/absent@v1.0 is not in the Hugging Face cache at"), "{}", o.stdout);
    // Issue 28: what is missing decides what is said — here the cache itself.
    assert!(o.stdout.contains("offline, and that cache does not exist: fill it online"), "{}", o.stdout);
    // A cache without the model; a model without the ref.
    std::fs::create_dir_all(ws.path("hf-cache")).unwrap();
    let o = ws.run(&[job.to_str().unwrap(), "--offline"]).expect(2);
    assert!(o.stdout.contains("offline, and the cache holds nothing of org/absent"), "{}", o.stdout);
    std::fs::create_dir_all(ws.path("hf-cache/models--org--absent/refs")).unwrap();
    let o = ws.run(&[job.to_str().unwrap(), "--offline"]).expect(2);
    assert!(o.stdout.contains("offline, and the cache has no refs/v1.0"), "{}", o.stdout);
}
