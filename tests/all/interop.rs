//! Interop with the reference implementation: real checkpoints written by transformers (`../shared/fixtures`,
//! or `$GAMMA_RUN_FIXTURES`) with the W that `from_pretrained(...).lm_head.weight` gives. Skips when absent.
//! Also loads an output with Python's `safetensors` when that is installed.

use crate::support::*;
use std::path::PathBuf;

fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("GAMMA_RUN_FIXTURES")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"), PathBuf::from);
    if dir.join("expected.json").exists() { Some(dir) } else { None }
}

#[test]
fn reference_fixtures_give_the_reference_bytes() {
    let Some(dir) = fixtures() else {
        skip(
            "reference_fixtures_give_the_reference_bytes",
            "no ../shared/fixtures (set GAMMA_RUN_FIXTURES to run this test)",
        );
        return;
    };
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let cases = expected["fixtures"].as_object().unwrap();
    assert!(cases.len() >= 8);
    let ws = Ws::new();
    let mut yaml = String::from("version: 1\njobs:\n");
    for name in cases.keys() {
        yaml.push_str(&format!("  - path: {}\n    frames: [gamma, gamma_prime]\n", dir.join(name).display()));
    }
    let job = ws.job(&yaml);
    let out = ws.run(&[job.to_str().unwrap()]);
    let mut checked = 0;
    for (name, want) in cases {
        if want["expect_error"] == true {
            assert!(out.stdout.contains(&format!("FAILED   {name}/gamma")), "{name} should be refused: {}", out.stdout);
            assert!(out.stdout.contains(&format!("SKIPPED  {name}/gamma_prime: its input gamma failed")));
            assert!(!ws.path(&format!("tensors/{name}")).exists());
            continue;
        }
        let file = ws.read(&format!("tensors/{name}/W.safetensors"));
        assert_eq!(
            sha256(&file),
            want["output_sha256"].as_str().unwrap(),
            "{name}: output file differs from the reference"
        );
        let header_len = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
        assert_eq!(
            std::str::from_utf8(&file[8..8 + header_len]).unwrap(),
            want["output_header"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(sha256(&file[8 + header_len..]), want["w_sha256"].as_str().unwrap(), "{name}: W bytes differ");
        let m = ws.manifest(name, "gamma");
        assert_eq!(m["source"]["tensor"], want["source_key"], "{name}");
        assert_eq!(m["source"]["dtype"], want["source_dtype"], "{name}");
        assert_eq!(m["output"]["shape"], want["w_shape"], "{name}");
        assert_gamma_prime_matches_reference(&ws, name);
        checked += 1;
    }
    assert!(checked >= 7);
    assert_eq!(out.code(), 2, "the negative fixture makes the run fail: {}", out.all());
}

#[test]
fn outputs_load_with_python_safetensors_when_available() {
    let probe = std::process::Command::new("python3").args(["-c", "import safetensors.numpy"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        skip("outputs_load_with_python_safetensors_when_available", "python3 with safetensors is not installed");
        return;
    }
    let ws = Ws::new();
    ws.synth("m", &["--shards", "2", "--vocab", "100", "--hidden", "16"]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
    assert_eq!(ws.run(&[job.to_str().unwrap()]).code(), 0);
    let script = "import sys; from safetensors import safe_open\n\
                  f = safe_open(sys.argv[1], 'np')\n\
                  assert list(f.keys()) == ['W'], f.keys()\n\
                  s = f.get_slice('W'); assert s.get_dtype() == 'BF16' and s.get_shape() == [100, 16], (s.get_dtype(), s.get_shape())\n\
                  print('ok')";
    let o = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(ws.path("tensors/m/W.safetensors"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The mission's contract, checked against the real thing where it is installed: for complete synthetic decoders
/// (tied and untied; bf16, f16 and f32 sources with rounding ties, infinities, subnormals and NaNs), γ is byte for
/// byte the file the notebook writes (NaNs aside: ours are canonical 0x7FC0, see below): `from_pretrained(dir, dtype=torch.bfloat16)`, then
/// `save_file({"W": model.lm_head.weight.data})`. Needs a Python with torch, transformers and safetensors:
/// `$GAMMA_RUN_TORCH_PYTHON`, else `python3`; skips without one (CI does not install torch: 5 GB).
#[test]
fn gamma_is_the_notebooks_file_byte_for_byte_when_torch_is_available() {
    let python = std::env::var("GAMMA_RUN_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = std::process::Command::new(&python).args(["-c", "import torch, transformers, safetensors"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        skip(
            "gamma_is_the_notebooks_file_byte_for_byte_when_torch_is_available",
            &format!("{python} has no torch + transformers (set GAMMA_RUN_TORCH_PYTHON to run this test)"),
        );
        return;
    }
    let ws = Ws::new();
    let decoder = ["--layers", "2", "--intermediate", "96", "--heads", "4", "--kv-heads", "2", "--head-dim", "16"];
    let cases: &[(&str, &[&str])] = &[
        ("qwen3-tied", &["--arch", "qwen3", "--vocab", "300", "--hidden", "64", "--max-shard-bytes", "40000"]),
        ("llama-untied", &["--arch", "llama", "--vocab", "256", "--hidden", "64", "--tie", "false", "--store", "head"]),
        (
            "qwen3-f32",
            &["--arch", "qwen3", "--vocab", "128", "--hidden", "64", "--dtype", "f32", "--specials", "--nan"],
        ),
        ("llama-f16", &["--arch", "llama", "--vocab", "128", "--hidden", "64", "--dtype", "f16", "--specials"]),
    ];
    let mut yaml = String::from("version: 1\njobs:\n");
    for (name, args) in cases {
        let mut a = args.to_vec();
        a.extend_from_slice(&decoder);
        ws.synth(name, &a);
        yaml.push_str(&format!("  - path: ../models/{name}\n"));
    }
    let job = ws.job(&yaml);
    let o = ws.run(&[job.to_str().unwrap()]);
    assert_eq!(o.code(), 0, "{}", o.all());
    let script = "import sys, torch\nfrom transformers import AutoModelForCausalLM\nfrom safetensors.torch import save_file\n\
        m, info = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.bfloat16, output_loading_info=True)\n\
        bad = {k: v for k, v in info.items() if v}\n\
        assert not bad, f'transformers did not load every tensor: {bad}'\n\
        save_file({'W': m.lm_head.weight.data}, sys.argv[2])\n";
    for (name, _) in cases {
        let notebook = ws.path(&format!("{name}.notebook.safetensors"));
        let out = std::process::Command::new(&python)
            .args(["-c", script])
            .arg(ws.path(&format!("models/{name}")))
            .arg(&notebook)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let (ours, theirs) = (ws.read(&format!("tensors/{name}/W.safetensors")), std::fs::read(&notebook).unwrap());
        assert_eq!(ours.len(), theirs.len(), "{name}: sizes differ");
        let data = 8 + u64::from_le_bytes(ours[..8].try_into().unwrap()) as usize;
        assert_eq!(ours[..data], theirs[..data], "{name}: headers differ");
        // Every element is bit-identical, except that a NaN is written as the canonical 0x7FC0 where torch's own
        // encoding depends on its code path (0xFFFF vectorised, 0x7FC0 scalar): the documented NaN rule.
        let (mut nans, mut differ) = (0, Vec::new());
        for (i, (a, b)) in ours[data..].chunks_exact(2).zip(theirs[data..].chunks_exact(2)).enumerate() {
            let (a, b) = (u16::from_le_bytes([a[0], a[1]]), u16::from_le_bytes([b[0], b[1]]));
            let nan = |x: u16| x & 0x7FFF > 0x7F80;
            if nan(b) {
                nans += 1;
                assert_eq!(a, 0x7FC0, "{name}: element {i} is NaN in the notebook's W; ours is {a:#06x}");
            } else if a != b {
                differ.push((i, a, b));
            }
        }
        assert!(differ.is_empty(), "{name}: (element, ours, notebook's) differ: {:?}", &differ[..differ.len().min(8)]);
        assert_eq!(nans, if *name == "qwen3-f32" { 1 } else { 0 }, "{name}: NaNs");
    }
}

/// The README's Python example (`examples/python/read_outputs.py`) on a real workspace: every manifest read with
/// json, every output's SHA-256 checked against it, every tensor loaded with safetensors (torch, or numpy with
/// ml_dtypes for bf16) with the recorded shape; and a tampered output makes it fail.
#[test]
fn the_python_reading_example_reads_outputs_and_checks_their_manifests() {
    let probe = "import safetensors\ntry:\n import safetensors.torch\nexcept ImportError:\n import numpy, ml_dtypes";
    let ok = std::process::Command::new("python3").args(["-c", probe]).output();
    if !ok.is_ok_and(|o| o.status.success()) {
        skip(
            "the_python_reading_example_reads_outputs_and_checks_their_manifests",
            "python3 lacks safetensors with torch or with numpy + ml_dtypes (pip install safetensors numpy ml_dtypes)",
        );
        return;
    }
    let ws = Ws::new();
    ws.synth("m", &["--vocab", "100", "--hidden", "16", "--tie", "false", "--store", "head"]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n    frames: [gamma, gamma_prime]\n");
    assert_eq!(ws.run(&[job.to_str().unwrap()]).code(), 0);
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/python/read_outputs.py");
    let run = || std::process::Command::new("python3").arg(example).arg(ws.dir.path()).output().unwrap();
    let o = run();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{text}");
    assert!(text.contains("2 of 2 outputs match their manifests"), "{text}");
    assert!(text.contains("m/gamma  W BF16 [100, 16]"), "{text}");
    flip(&ws.path("tensors/m/W_prime.safetensors"), 300);
    let o = run();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stdout));
}

/// `../shared/fixtures/arch-zoo`: checkpoints of 13 architectures beyond the seeds (GPT-2, GPT-NeoX, OPT, Mamba,
/// RWKV, MPT, Phi, Gemma 2, Cohere, …) written by transformers, with the reference output's SHA-256, the key
/// that holds W, and what the head adds (issue 12). Each must give the reference file, record that key and,
/// where the head has a bias, a scale or a soft-cap, record it with its value; the input embedding too.
#[test]
fn the_architecture_zoo_gives_the_reference_bytes_keys_and_head_notes() {
    let Some(dir) = fixtures().map(|d| d.join("arch-zoo")).filter(|d| d.join("expected.json").exists()) else {
        skip("the_architecture_zoo_gives_the_reference_bytes_keys_and_head_notes", "no ../shared/fixtures/arch-zoo");
        return;
    };
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let cases = expected["fixtures"].as_object().unwrap();
    assert!(cases.len() >= 13);
    let ws = Ws::new();
    let mut yaml = String::from("version: 1\njobs:\n");
    for name in cases.keys() {
        yaml.push_str(&format!("  - path: {}\n    frames: [gamma, embedding]\n", dir.join(name).display()));
    }
    let job = ws.job(&yaml);
    let out = ws.run(&[job.to_str().unwrap()]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(!out.stderr.contains("not in gamma-run's table"), "every zoo type is in the table: {}", out.stderr);
    for (name, want) in cases {
        let file = ws.read(&format!("tensors/{name}/W.safetensors"));
        assert_eq!(sha256(&file), want["output_sha256"].as_str().unwrap(), "{name}: output differs from the reference");
        let m = ws.manifest(name, "gamma");
        let keys: Vec<&str> = want["w_keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
        assert!(
            keys.contains(&m["source"]["tensor"].as_str().unwrap()),
            "{name}: {} not in {keys:?}",
            m["source"]["tensor"]
        );
        let head = &m["source"]["head"];
        let notes = &want["head_notes"];
        if let Some(bias) = notes["bias_keys"].as_array() {
            assert_eq!(head["bias"], bias[0], "{name}: the head's bias is recorded");
        }
        if let Some(cfg) = notes["logit_config"].as_object() {
            for (k, v) in cfg {
                let op = head["logits"].as_array().and_then(|l| l.iter().find(|o| o["config"] == k.as_str()));
                let op = op.unwrap_or_else(|| panic!("{name}: {k} is not recorded in {head}"));
                assert_eq!(op["value"].as_f64(), v.as_f64(), "{name}: {k}");
            }
        }
        if notes.as_object().is_some_and(serde_json::Map::is_empty) {
            assert!(head.is_null(), "{name}: nothing to record, nothing recorded: {head}");
        }
        // The input embedding: for a tied model it is W itself.
        let e = ws.read(&format!("tensors/{name}/E.safetensors"));
        let tied = want["config_tie_word_embeddings"] == true;
        let payload = |f: &[u8]| f[8 + u64::from_le_bytes(f[..8].try_into().unwrap()) as usize..].to_vec();
        if tied {
            assert_eq!(payload(&e), payload(&file), "{name}: tied, so E's bytes are W's");
        }
    }
    // `show` prints the head.
    let o = ws.run(&["show", "tensors/cohere-default/W.safetensors"]).ok();
    assert!(o.stdout.contains("head") && o.stdout.contains("logit_scale"), "{}", o.stdout);
}

/// Issue 28: the README's Python snippet, pasted as it is, runs with what the `[read]` extra installs
/// (safetensors, numpy, ml_dtypes) in a workspace with the example's output (skipped, saying so, without them).
#[test]
fn the_readme_python_snippet_runs_with_the_read_extra() {
    let ok = std::process::Command::new("python3").args(["-c", "import safetensors.numpy, numpy, ml_dtypes"]).output();
    if !ok.is_ok_and(|o| o.status.success()) {
        skip("the_readme_python_snippet_runs_with_the_read_extra", "python3 lacks safetensors, numpy or ml_dtypes");
        return;
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let after = &readme[readme.find("### Reading outputs from Python").expect("the section")..];
    let start = after.find("```python\n").expect("a python block") + "```python\n".len();
    let snippet = &after[start..start + after[start..].find("```").unwrap()];
    let ws = Ws::new();
    ws.synth("tiny-qwen3", &[]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/tiny-qwen3\n");
    ws.run(&[job.to_str().unwrap()]).ok();
    let script = format!("{snippet}print(W.dtype, W.shape)\n");
    let o = std::process::Command::new("python3").args(["-c", &script]).current_dir(ws.dir.path()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{text}");
    assert!(text.starts_with("bfloat16 ("), "{text}");
}
