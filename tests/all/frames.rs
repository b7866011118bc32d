//! γ′ against an independent f64 reference, thread-count independence, and staleness propagating through the
//! frame graph (γ′ ← γ).

use crate::support::*;

fn setup(frames: &str) -> (Ws, String) {
    let ws = Ws::new();
    ws.synth("m", &["--vocab", "3000", "--hidden", "48", "--shards", "2"]);
    let job = ws.job(&format!("version: 1\njobs:\n  - path: ../models/m\n    frames: {frames}\n"));
    (ws, job.to_str().unwrap().to_string())
}

#[test]
fn gamma_prime_matches_an_f64_reference() {
    let (ws, job) = setup("[gamma_prime]");
    let o = ws.run(&[&job]);
    assert_eq!(o.code(), 0, "{}", o.all());
    assert!(o.stdout.contains("built    m/gamma ") && o.stdout.contains("built    m/gamma_prime "), "γ′ implies γ");
    assert_gamma_prime_matches_reference(&ws, "m");
    let file = ws.read("tensors/m/W_prime.safetensors");
    let m = ws.manifest("m", "gamma_prime");
    assert_eq!(m["inputs"][0]["frame"], "gamma");
    assert_eq!(m["inputs"][0]["path"], "tensors/m/W.safetensors");
    assert_eq!(m["inputs"][0]["sha256"], ws.manifest("m", "gamma")["output"]["sha256"]);
    assert_eq!(m["params"]["dtype"], "f32");
    assert_eq!(m["output"]["sha256"], sha256(&file));
    assert_eq!(m["output"]["dtype"], "F32");
}

#[test]
fn bf16_gamma_prime_is_the_reference_rounded_once() {
    let (ws, job) = setup("[gamma, {name: gamma_prime, dtype: bf16}]");
    assert_eq!(ws.run(&[&job]).code(), 0);
    let (_, d, w) = read_w(&ws.read("tensors/m/W.safetensors"));
    let file = ws.read("tensors/m/W_prime.safetensors");
    let st = safetensors::SafeTensors::deserialize(&file).unwrap();
    let (_, c) = read_f32(&st, "centroid");
    let t = st.tensor("W_prime").unwrap();
    assert_eq!(t.dtype(), safetensors::Dtype::BF16);
    for (i, b) in t.data().chunks(2).enumerate() {
        let got = half::bf16::from_le_bytes([b[0], b[1]]).to_f64();
        let want = w[i] - c[i % d];
        assert!((got - want).abs() <= want.abs() * 2f64.powi(-8) + 1e-9, "{i}: {got} vs {want}");
    }
    assert_eq!(ws.manifest("m", "gamma_prime")["params"]["dtype"], "bf16");
}

#[test]
fn thread_count_does_not_change_gamma_prime() {
    let (ws, job) = setup("[gamma_prime]");
    let mut outputs = Vec::new();
    for threads in ["1", "2", "5"] {
        let o = ws.run_env(&[&job, "--force"], &[("RAYON_NUM_THREADS", threads)]);
        assert_eq!(o.code(), 0, "{}", o.all());
        outputs.push(ws.read("tensors/m/W_prime.safetensors"));
    }
    assert!(outputs.windows(2).all(|p| p[0] == p[1]), "γ′ bytes depend on the thread count");
}

#[test]
fn staleness_follows_the_frame_graph() {
    let (ws, job) = setup("[gamma, gamma_prime]");
    let status = |ws: &Ws| ws.run(&["status", &job]).ok().stdout.clone();
    assert_eq!(ws.run(&[&job]).code(), 0);
    assert_eq!(status(&ws), "fresh    m/gamma\nfresh    m/gamma_prime\n");

    // Change γ's source: both stale, then both rebuilt.
    let offset = ws.manifest("m", "gamma")["source"]["range"]["offset"].as_u64().unwrap();
    flip(&ws.path("models/m/model-00001-of-00002.safetensors"), offset + 11);
    let s = status(&ws);
    assert!(
        s.contains("stale    m/gamma: tensor changed")
            && s.contains("stale    m/gamma_prime: input gamma is not fresh"),
        "{s}"
    );
    let o = ws.run(&[&job]).ok();
    assert!(o.stdout.contains("built    m/gamma_prime  (input gamma changed"), "{}", o.stdout);
    assert_eq!(status(&ws), "fresh    m/gamma\nfresh    m/gamma_prime\n");

    // Rebuilding γ with identical bytes leaves γ′ fresh.
    std::fs::remove_file(ws.path("manifests/m/gamma.json")).unwrap();
    let o = ws.run(&[&job]).ok();
    assert!(
        o.stdout.contains("built    m/gamma  (manifest missing)") && o.stdout.contains("fresh    m/gamma_prime"),
        "{}",
        o.stdout
    );

    // A γ′ manifest written by an older version of the frame: only γ′ is stale.
    let mp = ws.path("manifests/m/gamma_prime.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mp).unwrap()).unwrap();
    m["frame_version"] = 0.into();
    m["fingerprint_inputs"]["frame_version"] = "0".into();
    m["fingerprint"] = fingerprint(&m["fingerprint_inputs"]).into();
    std::fs::write(&mp, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    assert_eq!(status(&ws), "fresh    m/gamma\nstale    m/gamma_prime: frame version changed 0 → 1\n");
    ws.run(&[&job]).ok();

    // A parameter change.
    let bf16_job =
        ws.job("version: 1\njobs:\n  - path: ../models/m\n    frames: [gamma, gamma_prime]\n    dtype: bf16\n");
    let s = ws.run(&["status", bf16_job.to_str().unwrap()]).ok().stdout.clone();
    assert!(
        s.contains("stale    m/gamma_prime: output.dtype changed F32 → BF16; parameter dtype changed f32 → bf16"),
        "{s}"
    );
}

#[test]
fn a_failed_input_skips_the_derived_frame_and_verify_recompute_checks_bytes() {
    let (ws, job) = setup("[gamma, gamma_prime]");
    assert_eq!(ws.run(&[&job]).code(), 0);
    // γ′ whose bytes and manifest were both altered consistently: plain verify passes, --recompute does not.
    let wp = ws.path("tensors/m/W_prime.safetensors");
    flip(&wp, 1000);
    let mp = ws.path("manifests/m/gamma_prime.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mp).unwrap()).unwrap();
    m["output"]["sha256"] = sha256(&std::fs::read(&wp).unwrap()).into();
    std::fs::write(&mp, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    assert_eq!(ws.run(&["verify"]).code(), 0);
    let o = ws.run(&["verify", "--recompute"]);
    assert_eq!(o.code(), 1, "{}", o.all());
    assert!(o.stdout.contains("recomputed from its inputs"), "{}", o.stdout);

    std::fs::write(ws.path("models/m/config.json"), "{").unwrap();
    let o = ws.run(&[&job]);
    assert_eq!(o.code(), 2);
    assert!(o.stdout.contains("SKIPPED  m/gamma_prime: its input gamma failed"), "{}", o.stdout);
}

#[test]
fn frame_parameters_are_validated() {
    for (frames, want) in [
        ("[{name: gamma_prime, dtype: f16}]", "gamma_prime.dtype must be one of f32, bf16"),
        ("[{name: gamma_prime, centre: mean}]", "frame gamma_prime has no parameter \"centre\""),
        ("[{name: gamma_prime, dtype: [1]}]", "a frame is a name (gamma) or a mapping of a name and parameters"),
        ("[{name: gamma, dtype: bf16}]", "frame gamma has no parameter \"dtype\""),
    ] {
        let ws = Ws::new();
        let job = ws.job(&format!("version: 1\njobs:\n  - path: x\n    frames: {frames}\n"));
        let o = ws.run(&[job.to_str().unwrap()]);
        assert_eq!(o.code(), 2);
        assert!(o.stderr.contains(want) && o.stderr.contains("test.yaml:4:"), "{frames}: {}", o.stderr);
    }
    let ws = Ws::new();
    let job = ws.job("version: 1\njobs:\n  - path: x\n    dtype: bf16\n");
    assert!(ws.run(&[job.to_str().unwrap()]).expect(2).stderr.contains("gamma is always bf16"));
}

/// The documented fingerprint encoding, independently: SHA-256 of "gamma-run fingerprint v1\n" + sorted
/// `key=<json string>\n` lines.
fn fingerprint(inputs: &serde_json::Value) -> String {
    let mut text = String::from("gamma-run fingerprint v1\n");
    let map = inputs.as_object().unwrap();
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for k in keys {
        text.push_str(&format!("{k}={}\n", serde_json::to_string(&map[k]).unwrap()));
    }
    sha256(text.as_bytes())
}

/// Issue 28: `--force` with `--only NAME/FRAME` rebuilds the selected output only; its inputs are rebuilt only
/// when stale, unless `--force-all` (Snakemake's `--force` / `--forceall`); `-n` is `--dry-run`.
#[test]
fn force_rebuilds_what_was_selected_and_force_all_its_inputs_too() {
    let (ws, job) = setup("[gamma, gamma_prime]");
    ws.run(&[&job]).ok();
    let o = ws.run(&[&job, "--force", "--only", "m/gamma_prime"]).ok();
    assert!(
        o.stdout.contains("fresh    m/gamma\n") && o.stdout.contains("built    m/gamma_prime  (--force)"),
        "{}",
        o.stdout
    );
    let o = ws.run(&[&job, "--force-all", "--only", "m/gamma_prime"]).ok();
    assert!(
        o.stdout.contains("built    m/gamma  (--force)") && o.stdout.contains("built    m/gamma_prime  (--force)"),
        "{}",
        o.stdout
    );
    let o = ws.run(&[&job, "-n", "--force", "--only", "m/gamma_prime"]).ok();
    assert!(
        o.stdout.contains("would build m/gamma_prime") && !o.stdout.contains("would build m/gamma "),
        "{}",
        o.stdout
    );
}
