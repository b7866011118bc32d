//! Interop with the reference implementation: real checkpoints written by transformers (`../shared/fixtures`,
//! or `$GAMMA_RUN_FIXTURES`) with the W that `from_pretrained(...).lm_head.weight` gives. Skips when absent.
//! Also loads an output with Python's `safetensors` when that is installed.

mod support;
use std::path::PathBuf;
use support::*;

fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("GAMMA_RUN_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    if dir.join("expected.json").exists() { Some(dir) } else { None }
}

#[test]
fn reference_fixtures_give_the_reference_bytes() {
    let Some(dir) = fixtures() else {
        eprintln!("skipped: no ../shared/fixtures (set GAMMA_RUN_FIXTURES to run this test)");
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
    assert_eq!(out.code, 2, "the negative fixture makes the run fail: {}", out.all());
}

#[test]
fn outputs_load_with_python_safetensors_when_available() {
    let probe = std::process::Command::new("python3").args(["-c", "import safetensors.numpy"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: python3 with safetensors is not installed");
        return;
    }
    let ws = Ws::new();
    ws.synth("m", &["--shards", "2", "--vocab", "100", "--hidden", "16"]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
    assert_eq!(ws.run(&[job.to_str().unwrap()]).code, 0);
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
