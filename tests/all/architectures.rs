//! W for every architecture transformers loads (issue 12): which file transformers reads when a folder has both
//! a single file and an index, the input embedding as a frame, and — where a Python with torch and transformers
//! is available — every table entry, on checkpoints `tools/arch-sweep.py` writes with transformers itself.

use crate::support::*;

#[test]
fn model_safetensors_wins_over_an_index_beside_it_as_in_transformers() {
    let ws = Ws::new();
    let dir = ws.synth("m", &["--shards", "2"]);
    let single = ws.synth("single", &["--seed", "7"]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
    ws.run(&[job.to_str().unwrap()]).ok();
    // A single file appears beside the index: transformers now reads it, so the output is stale.
    std::fs::copy(single.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let o = ws.run(&["status", job.to_str().unwrap()]).ok();
    assert!(o.stdout.contains("stale    m/gamma") && o.stdout.contains("in model.safetensors (the manifest records model.embed_tokens.weight in model-00001-of-00002.safetensors)"), "{}", o.stdout);
    ws.run(&[job.to_str().unwrap()]).ok();
    assert_eq!(ws.read("tensors/m/W.safetensors"), reference_w(&single, "model.embed_tokens.weight"));
    assert_eq!(ws.manifest("m", "gamma")["source"]["range"]["file"], "model.safetensors");
}

#[test]
fn the_embedding_frame_writes_e_beside_w() {
    let ws = Ws::new();
    // Untied, both stored with different bytes: E is the embedding, W the head.
    let dir = ws.synth("u", &["--arch", "qwen2", "--tie", "false", "--store", "both-differ", "--shards", "2"]);
    let tied = ws.synth("t", &["--seed", "4"]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/u\n    frames: [gamma, embedding]\n  - path: ../models/t\n    frames: [embedding]\n");
    let job = job.to_str().unwrap();
    let o = ws.run(&[job]).ok();
    assert!(
        o.stdout.contains("built    u/embedding") && o.stdout.contains("→ tensors/u/E.safetensors"),
        "{}",
        o.stdout
    );
    let payload = |f: &[u8]| f[8 + u64::from_le_bytes(f[..8].try_into().unwrap()) as usize..].to_vec();
    let e = ws.read("tensors/u/E.safetensors");
    assert_eq!(payload(&e), payload(&reference_w(&dir, "model.embed_tokens.weight")));
    assert_eq!(ws.read("tensors/u/W.safetensors"), reference_w(&dir, "lm_head.weight"));
    // The file: one tensor named E, bf16.
    let st = safetensors::SafeTensors::deserialize(&e).unwrap();
    assert_eq!(st.names(), vec!["E"]);
    let m = ws.manifest("u", "embedding");
    assert_eq!(
        (m["output"]["tensor"].as_str(), m["source"]["tensor"].as_str()),
        (Some("E"), Some("model.embed_tokens.weight"))
    );
    // Tied: E's bytes are W's.
    assert_eq!(payload(&ws.read("tensors/t/E.safetensors")), payload(&reference_w(&tied, "model.embed_tokens.weight")));
    // Fresh, verified and shown like any output.
    assert_eq!(
        ws.run(&["status", job, "--check"]).ok().stdout,
        "fresh    u/gamma\nfresh    u/embedding\nfresh    t/embedding\n"
    );
    ws.run(&["verify", "--sources"]).ok();
}

/// Every table entry, on tiny checkpoints transformers writes (default tying and flipped): gamma-run's W and E
/// files are the notebook's, byte for byte. Needs `$GAMMA_RUN_TORCH_PYTHON` (or `python3`) with torch and
/// transformers; skipped otherwise (CI does not install torch: 5 GB).
#[test]
fn every_table_entry_gives_the_notebooks_bytes_when_torch_is_available() {
    let python = std::env::var("GAMMA_RUN_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = std::process::Command::new(&python).args(["-c", "import torch, transformers"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        skip(
            "every_table_entry_gives_the_notebooks_bytes_when_torch_is_available",
            &format!("{python} has no torch + transformers (set GAMMA_RUN_TORCH_PYTHON to run this test)"),
        );
        return;
    }
    let ws = Ws::new();
    let out = ws.path("sweep");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/arch-sweep.py");
    let mut cmd = std::process::Command::new(&python);
    cmd.arg(script).arg(&out);
    if let Ok(types) = std::env::var("GAMMA_RUN_SWEEP_TYPES") {
        cmd.args(["--types", &types]);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "arch-sweep failed: {}", String::from_utf8_lossy(&o.stderr));
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("expected.json")).unwrap()).unwrap();
    let cases = expected["fixtures"].as_object().unwrap();
    let mut yaml = String::from("version: 1\njobs:\n");
    for name in cases.keys() {
        yaml.push_str(&format!("  - path: {}\n    frames: [gamma, embedding]\n", out.join(name).display()));
    }
    let job = ws.job(&yaml);
    let run = ws.run(&[job.to_str().unwrap()]);
    let code = run.code();
    let mut wrong = Vec::new();
    // Known gaps, reported rather than hidden (none at present: marian's W rows, decoder_vocab_size with the
    // default tie, are now the table's rule).
    const KNOWN: &[(&str, &str)] = &[];
    let mut refused = 0;
    for (name, want) in cases {
        if let Some((_, why)) = KNOWN.iter().find(|(k, _)| k == name) {
            eprintln!("known gap, not checked: {name}: {why}");
            continue;
        }
        let line = |frame: &str| {
            run.stdout.lines().find(|l| l.contains(&format!(" {name}/{frame}"))).unwrap_or("?").to_string()
        };
        // What transformers gives but gamma-run does not reproduce (a W kept in f32, say), or cannot give
        // reproducibly (a random head): refused, with a reason, never written wrong.
        if want["expect_error"] == true || want["w_dtype"].as_str().is_some_and(|d| d != "bf16") {
            let l = line("gamma");
            if !l.starts_with("FAILED") {
                wrong.push(format!("{name}/gamma: should be refused: {l}"));
            }
            refused += 1;
            continue;
        }
        for (file, key) in [("W.safetensors", "output_sha256"), ("E.safetensors", "e_output_sha256")] {
            let Some(sha) = want[key].as_str() else { continue };
            match std::fs::read(ws.path(&format!("tensors/{name}/{file}"))) {
                Ok(bytes) if self::sha256(&bytes) == sha => {}
                Ok(_) => wrong.push(format!("{name}/{file}: bytes differ from the notebook's")),
                Err(_) => wrong.push(format!(
                    "{name}/{file}: not written ({})",
                    line(if key == "output_sha256" { "gamma" } else { "embedding" })
                )),
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {} checkpoints differ:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
    assert!(code == 0 || refused > 0, "{}", run.all());
    eprintln!("checked {} checkpoints ({refused} refused as expected)", cases.len());
}
