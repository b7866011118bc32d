//! Legacy PyTorch checkpoints (issue 13): `pytorch_model.bin` files written by torch.save in transformers'
//! layout (`tests/data/torch-bin`, made by `tools/make-bin-fixtures.py`, with the notebook's output SHA-256 for
//! each), read through the restricted pickle reader — never executed — and by range from the Hub.

use crate::support::hub::TestHub;
use crate::support::*;
use std::path::PathBuf;

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/torch-bin")
}

fn expected() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(data().join("expected.json")).unwrap()).unwrap()
}

#[test]
fn every_bin_fixture_gives_the_notebooks_bytes() {
    let ws = Ws::new();
    let want = expected();
    let cases = want["fixtures"].as_object().unwrap();
    assert!(cases.len() >= 6);
    let mut yaml = String::from("version: 1\njobs:\n");
    for name in cases.keys() {
        yaml.push_str(&format!("  - path: {}\n    frames: [gamma, embedding]\n", data().join(name).display()));
    }
    let job = ws.job(&yaml);
    ws.run(&[job.to_str().unwrap()]).ok();
    for (name, w) in cases {
        let file = ws.read(&format!("tensors/{name}/W.safetensors"));
        assert_eq!(sha256(&file), w["output_sha256"].as_str().unwrap(), "{name}: not the notebook's bytes");
        let m = ws.manifest(name, "gamma");
        if w["legacy"] == true {
            assert_eq!(m["source"]["format"], "pytorch-legacy", "{name}");
            assert!(m["source"]["entry"].as_str().unwrap().starts_with("storage "), "{name}");
        } else {
            assert_eq!(m["source"]["format"], "pytorch-zip", "{name}");
            assert!(m["source"]["entry"].as_str().unwrap().contains("/data/"), "{name}: {}", m["source"]["entry"]);
        }
    }
    // The view into a larger storage is read at its storage offset.
    let view = ws.manifest("llama-view-bf16", "gamma");
    assert!(view["source"]["range"]["offset"].as_u64().unwrap() > 0);
    // Fresh on a rerun, and verify --sources re-reads each .bin whole and re-extracts W from it.
    assert!(ws.run(&[job.to_str().unwrap()]).ok().stdout.contains("0 built"));
    ws.run(&["verify", "--sources"]).ok();
}

#[test]
fn hostile_pickles_and_archives_are_refused_and_nothing_runs() {
    let ws = Ws::new();
    let want = expected();
    let cases = want["hostile"].as_object().unwrap();
    for (name, why) in cases {
        let dir = ws.path(&format!("models/{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["config.json", "pytorch_model.bin"] {
            std::fs::copy(data().join(name).join(f), dir.join(f)).unwrap();
        }
        let job = ws.job(&format!("version: 1\njobs:\n  - path: ../models/{name}\n"));
        let o = ws.run_within(20, &[job.to_str().unwrap()], &[]).expect(2);
        let why = why.as_str().unwrap();
        assert!(
            o.stdout.contains(&format!("FAILED   {name}/gamma")) && o.stdout.contains(why),
            "{name}: {why:?} not in {}",
            o.stdout
        );
        assert!(
            !ws.path(&format!("tensors/{name}")).exists() && !ws.path(&format!("manifests/{name}")).exists(),
            "{name}: nothing written"
        );
    }
    // The os.system pickle would have created this file had anything run it.
    assert!(!ws.path("pwned").exists() && !ws.path("jobs/pwned").exists());
}

#[test]
fn safetensors_win_over_a_bin_beside_them() {
    let ws = Ws::new();
    let st = ws.synth("m", &["--arch", "llama", "--tie", "false", "--store", "both-differ"]);
    std::fs::copy(data().join("llama-untied-bf16/pytorch_model.bin"), st.join("pytorch_model.bin")).unwrap();
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
    ws.run(&[job.to_str().unwrap()]).ok();
    assert_eq!(ws.read("tensors/m/W.safetensors"), reference_w(&st, "lm_head.weight"));
    assert_eq!(ws.manifest("m", "gamma")["source"]["format"], "safetensors");
}

/// A sharded `.bin` model on the loopback hub, fetched by range: the zip's end records, its central directory,
/// the pickle, a local header and W — bytes moved ≤ 1.05 × W + 256 KiB.
#[test]
fn a_sharded_bin_model_is_fetched_by_range_moving_little_more_than_w() {
    let ws = Ws::new();
    let hub = TestHub::start();
    let name = "llama-sharded-bf16";
    hub.publish("org/bin", "cccccccccccccccccccccccccccccccccccccccc", &data().join(name), Some("main"));
    let job = ws.job("version: 1\njobs:\n  - model: org/bin\n");
    ws.run_env(&[job.to_str().unwrap()], &[("HF_ENDPOINT", &hub.endpoint)]).ok();
    let want = expected();
    assert_eq!(
        sha256(&ws.read("tensors/bin/W.safetensors")),
        want["fixtures"][name]["output_sha256"].as_str().unwrap()
    );
    let m = ws.manifest("bin", "gamma");
    let w = m["source"]["range"]["length"].as_u64().unwrap();
    assert_eq!(w, 4096 * 64 * 2);
    let served = hub.served();
    assert!(served as f64 <= 1.05 * w as f64 + 256.0 * 1024.0, "served {served} for W {w}");
    assert_eq!(
        m["source"]["files"].as_array().unwrap().iter().filter(|f| f["path"] == "pytorch_model.bin.index.json").count(),
        1
    );
    // verify --sources re-reads the .bin from the Hub and re-extracts W; fetch: full stores the shard in the cache.
    ws.run_env(&["verify", "--sources"], &[("HF_ENDPOINT", &hub.endpoint)]).ok();
    let full = ws.job("version: 1\njobs:\n  - model: org/bin\n    name: full\n    fetch: full\n");
    ws.run_env(&[full.to_str().unwrap()], &[("HF_ENDPOINT", &hub.endpoint)]).ok();
    assert_eq!(ws.read("tensors/full/W.safetensors"), ws.read("tensors/bin/W.safetensors"));
    assert_eq!(ws.manifest("full", "gamma")["source"]["fetch"], "full");
    ws.run(&[full.to_str().unwrap(), "--offline", "--force"]).ok();
    assert_eq!(ws.manifest("full", "gamma")["source"]["kind"], "hf_cache");
}

/// A `pytorch_model.bin` in `models/<name>` whose archive holds `pickle` (pieces: bytes repeated) as its data.pkl.
fn crafted_bin(ws: &Ws, name: &str, pickle: &[(&[u8], usize)]) {
    let dir = ws.path(&format!("models/{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(data().join("llama-untied-bf16/config.json"), dir.join("config.json")).unwrap();
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("pytorch_model.bin")).unwrap());
    stored_zip(&mut out, &[("archive/data.pkl", pickle), ("archive/byteorder", &[(b"little", 1)])]);
}

/// Issue 24: what a crafted checkpoint can make a parse do is bounded. Each crafted `.bin` is refused (or read)
/// quickly, by a process whose peak RSS stays under 256 MiB: 80,000 keys (a duplicate check that compared each
/// key with every earlier one took 66 s) and a 60 MiB string fetched back from the memo 40 times (deep copies
/// peaked at 1.36 GB). `status` parses the same way as a build.
#[test]
fn crafted_pickles_are_read_in_linear_time_and_bounded_memory() {
    let ws = Ws::new();
    // {"t0": tensor, …, "t79999": tensor}, all views of one storage; W is none of them.
    let mut keys = b"\x80\x02}q\x00(".to_vec();
    for i in 0..80_000u32 {
        let key = format!("t{i}");
        keys.push(b'X');
        keys.extend_from_slice(&(key.len() as u32).to_le_bytes());
        keys.extend_from_slice(key.as_bytes());
        keys.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage");
        keys.extend_from_slice(if i == 0 { b"ctorch\nBFloat16Storage\nq\x01" as &[u8] } else { b"h\x01" });
        keys.extend_from_slice(b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQK\x00K\x01\x85K\x01\x85\x89)tR");
    }
    keys.extend_from_slice(b"u.");
    crafted_bin(&ws, "keys", &[(&keys, 1)]);
    // A list holding one 60 MiB string and 40 fetches of it from the memo.
    let mut head = b"\x80\x02]q\x00(X".to_vec();
    head.extend_from_slice(&(60u32 << 20).to_le_bytes());
    crafted_bin(&ws, "string", &[(&head, 1), (&[b's'; 4096], 15 << 10), (b"q\x01", 1), (b"h\x01", 40), (b"e.", 1)]);
    drop(keys);
    for (name, why) in [("keys", "holds 80000 tensors, none named like W"), ("string", "not a state dict")] {
        let job = ws.job(&format!("version: 1\njobs:\n  - path: ../models/{name}\n"));
        for args in [vec![job.to_str().unwrap(), "-v"], vec!["status", job.to_str().unwrap(), "-v"]] {
            let t = std::time::Instant::now();
            let o = ws.run(&args);
            let wall = t.elapsed();
            o.code();
            let out = o.all();
            assert!(out.contains(&format!("{name}/gamma")) && out.contains(why), "{name} {args:?}: {out}");
            assert!(wall < std::time::Duration::from_secs(10), "{name} {args:?}: {wall:?}");
            // The process's own peak (VmHWM, logged at -v): not the test process's, which Linux would count in a
            // child's ru_maxrss.
            let peak: f64 = out
                .lines()
                .find_map(|l| l.split("peak memory ").nth(1)?.split(" MiB").next()?.parse().ok())
                .unwrap_or_else(|| panic!("no peak memory line: {out}"));
            eprintln!("{name} {args:?}: {peak:.0} MiB, {wall:?}");
            assert!(peak < 256.0, "{name} {args:?}: peak RSS {peak:.0} MiB");
        }
    }
}
