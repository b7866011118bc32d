//! The causal frames (issue 26): `causal_metric` and `causal` on checkpoints with planted spectra (condition
//! numbers 10³–10⁶, a mean offset, bf16 data), checked here against their identities, and where numpy is
//! installed against the float64 reference `examples/python/causal_check.py`; byte-identical files for 1, 2 and
//! 5 threads; `verify --recompute`; bad input refused with what to do; the parameters' domains and agreement.

use crate::support::*;

/// A workspace with model `m` of `v` rows, `d` columns and the planted condition number, and a job file building
/// `frames`.
fn planted(v: usize, d: usize, condition: &str, frames: &str) -> (Ws, String) {
    let ws = Ws::new();
    ws.synth("m", &["--vocab", &v.to_string(), "--hidden", &d.to_string(), "--condition", condition, "--seed", "3"]);
    let job = ws.job(&format!("version: 1\njobs:\n  - path: ../models/m\n    name: m\n    frames: {frames}\n"));
    (ws, job.to_str().unwrap().to_string())
}

/// A tensor of a safetensors file as f64 (F64 or F32), with its shape.
fn tensor(bytes: &[u8], name: &str) -> (Vec<usize>, Vec<f64>) {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let t = st.tensor(name).unwrap();
    let values = match t.dtype() {
        safetensors::Dtype::F64 => t.data().chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
        safetensors::Dtype::F32 => {
            t.data().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect()
        }
        other => panic!("{name} is {other:?}"),
    };
    (t.shape().to_vec(), values)
}

/// Row-major d × d product.
fn mul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut out = vec![0.0; d * d];
    for i in 0..d {
        for k in 0..d {
            let x = a[i * d + k];
            for j in 0..d {
                out[i * d + j] += x * b[k * d + j];
            }
        }
    }
    out
}

/// max |m − I|.
fn off_identity(m: &[f64], d: usize) -> f64 {
    (0..d * d).map(|k| (m[k] - if k / d == k % d { 1.0 } else { 0.0 }).abs()).fold(0.0, f64::max)
}

#[test]
fn the_metric_and_coordinates_satisfy_their_identities() {
    let (v, d) = (3000, 40);
    let (ws, job) = planted(v, d, "1e5", "[causal]");
    ws.run(&[&job]).ok();
    let m = ws.read("tensors/m/M.safetensors");
    let (shape, c) = tensor(&m, "C");
    assert_eq!(shape, [d, d]);
    let (_, a) = tensor(&m, "A");
    let (_, a_inv) = tensor(&m, "A_inv");
    let (_, metric) = tensor(&m, "M");
    let (_, lambda) = tensor(&m, "eigenvalues");
    let (_, mu) = tensor(&m, "mu");
    assert!(lambda.windows(2).all(|w| w[0] <= w[1]), "eigenvalues ascend");
    let condition = lambda[d - 1] / lambda[0];
    assert!((3e4..3e5).contains(&condition), "the planted spectrum: condition {condition:e}");
    // A C A = I, A⁻¹ A = I, M C = I (ridge 0), every matrix exactly symmetric.
    assert!(off_identity(&mul(&mul(&a, &c, d), &a, d), d) < 1e-9);
    assert!(off_identity(&mul(&a_inv, &a, d), d) < 1e-9);
    assert!(off_identity(&mul(&metric, &c, d), d) < 1e-8);
    for x in [&c, &a, &a_inv, &metric] {
        assert!((0..d).all(|i| (0..d).all(|j| x[i * d + j] == x[j * d + i])), "symmetric to the bit");
    }
    // μ is γ's mean, and G's rows have identity covariance (same divisor: n).
    let (_, _, w) = read_w(&ws.read("tensors/m/W.safetensors"));
    for j in 0..d {
        let mean = (0..v).map(|i| w[i * d + j]).sum::<f64>() / v as f64;
        assert!((mean - mu[j]).abs() <= 1e-12 * mean.abs().max(1.0), "μ[{j}]");
    }
    let (shape, g) = tensor(&ws.read("tensors/m/G.safetensors"), "G");
    assert_eq!(shape, [v, d]);
    let mut cov = vec![0.0; d * d];
    for row in g.chunks(d) {
        for i in 0..d {
            for j in 0..d {
                cov[i * d + j] += row[i] * row[j] / v as f64;
            }
        }
    }
    assert!(off_identity(&cov, d) < 1e-4, "cov(G) = I, to f32 precision: {}", off_identity(&cov, d));
    let manifest = ws.manifest("m", "causal_metric");
    assert_eq!(manifest["output"]["tensor"], "M");
    assert_eq!(manifest["output"]["dtype"], "F64");
    for fact in ["eigenvalues", "condition_number", "solver", "accumulation"] {
        assert!(manifest["facts"][fact].is_string(), "facts.{fact}: {manifest}");
    }
    assert!(manifest["facts"]["solver"].as_str().unwrap().starts_with("faer "));
    assert_eq!(ws.manifest("m", "causal")["params"]["basis"], "symmetric");
}

#[test]
fn eigen_and_symmetric_coordinates_give_the_same_inner_products() {
    let (v, d) = (1500, 24);
    let (ws, job) = planted(v, d, "1e3", "[causal]");
    ws.run(&[&job]).ok();
    let (_, g) = tensor(&ws.read("tensors/m/G.safetensors"), "G");
    let eigen = ws.job(
        "version: 1\njobs:\n  - path: ../models/m\n    name: e\n    frames: [{name: causal, basis: eigen}]\n  \
         - path: ../models/m\n    name: raw\n    frames: [{name: causal, center: none}]\n",
    );
    ws.run(&[eigen.to_str().unwrap()]).ok();
    let (_, z) = tensor(&ws.read("tensors/e/G.safetensors"), "G");
    let (_, raw) = tensor(&ws.read("tensors/raw/G.safetensors"), "G");
    assert_ne!(g, z, "different coordinates");
    let dot = |x: &[f64], i: usize, j: usize| (0..d).map(|k| x[i * d + k] * x[j * d + k]).sum::<f64>();
    for (i, j) in [(0, 1), (5, 900), (1499, 7), (42, 42)] {
        let (a, b) = (dot(&g, i, j), dot(&z, i, j));
        assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "⟨g{i}, g{j}⟩ {a} vs ⟨z{i}, z{j}⟩ {b}");
    }
    // Uncentred: g(y) = A γ(y), so differences of rows agree with the centred coordinates'.
    for k in 0..d {
        let (a, b) = (raw[3 * d + k] - raw[9 * d + k], g[3 * d + k] - g[9 * d + k]);
        assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0));
    }
}

#[test]
fn the_bytes_do_not_depend_on_the_thread_count_and_verify_recomputes_them() {
    // More rows than one block of each pass, more columns than one panel: every fixed order is exercised.
    let (ws, job) = planted(4500, 300, "1e4", "[{name: causal, basis: eigen}]");
    let digests = |threads: &str| {
        ws.run_env(&["run", &job, "--force-all", "-q"], &[("RAYON_NUM_THREADS", threads)]).ok();
        ["M", "G"].map(|f| sha256(&ws.read(&format!("tensors/m/{f}.safetensors"))))
    };
    let one = digests("1");
    assert_eq!(digests("2"), one, "2 threads");
    assert_eq!(digests("5"), one, "5 threads");
    // verify recomputes outputs from inside rayon's pool: one thread must be enough (a blocking wait there
    // once starved it).
    for threads in ["1", "3"] {
        let o = ws.run_within(60, &["verify", &job, "--recompute"], &[("RAYON_NUM_THREADS", threads)]).ok();
        for f in ["M", "G"] {
            assert!(o.stdout.contains(&format!("ok        tensors/m/{f}.safetensors  (recomputed")), "{}", o.stdout);
        }
    }
    // A recomputation that differs is reported: a flipped byte in G.
    flip(&ws.path("tensors/m/G.safetensors"), 4096);
    ws.run(&["verify", &job, "--recompute"]).expect(1);
}

#[test]
fn the_float64_outputs_agree_with_numpy_and_g_beats_numpy_float32() {
    let probe = std::process::Command::new("python3").args(["-c", "import numpy, ml_dtypes, safetensors"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        skip("the_float64_outputs_agree_with_numpy", "python3 with numpy, ml_dtypes and safetensors is not installed");
        return;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python/causal_check.py");
    for (condition, frame, flags) in [
        ("1e3", "{name: causal}", vec![]),
        ("1e6", "{name: causal, divisor: n-1, ridge: 1e-9}", vec!["--divisor", "n-1", "--ridge", "1e-9"]),
        ("1e5", "{name: causal, basis: eigen, center: none}", vec!["--basis", "eigen", "--center", "none"]),
    ] {
        let (ws, job) = planted(6000, 96, condition, &format!("[{frame}]"));
        ws.run(&[&job]).ok();
        let files = ["W", "M", "G"].map(|f| ws.path(&format!("tensors/m/{f}.safetensors")));
        let o = std::process::Command::new("python3").arg(&script).args(&files).args(&flags).output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{condition} {frame}:\n{out}{}", String::from_utf8_lossy(&o.stderr));
        assert!(out.contains("A_inv") && out.contains("as accurate"), "{out}");
    }
}

#[test]
fn bad_gamma_is_refused_with_what_to_do() {
    // Non-finite values.
    let ws = Ws::new();
    ws.synth("m", &["--vocab", "300", "--hidden", "16", "--specials"]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n    frames: [causal]\n");
    let o = ws.run(&[job.to_str().unwrap()]).expect(2);
    assert!(o.stdout.contains("FAILED   m/causal_metric") && o.stdout.contains("non-finite values"), "{}", o.stdout);
    assert!(o.stdout.contains("row 0") && o.stdout.contains("token_stats"), "{}", o.stdout);
    assert!(!ws.path("tensors/m/M.safetensors").exists() && !ws.path("tensors/m/G.safetensors").exists());

    // More dimensions than rows: singular without a ridge, computable with one.
    let (ws, job) = planted(40, 64, "1e2", "[causal]");
    let o = ws.run(&[&job]).expect(2);
    assert!(o.stdout.contains("rank at most 39") && o.stdout.contains("ridge:"), "{}", o.stdout);
    let ridged =
        ws.job("version: 1\njobs:\n  - path: ../models/m\n    name: m\n    frames: [{name: causal, ridge: 1e-3}]\n");
    ws.run(&[ridged.to_str().unwrap()]).ok();

    // A direction with no variance (a constant column after rounding): the smallest eigenvalues are named.
    let (ws, job) = planted(2000, 32, "1e30", "[causal_metric]");
    let o = ws.run(&[&job]).expect(2);
    assert!(o.stdout.contains("singular or too ill-conditioned") && o.stdout.contains("smallest"), "{}", o.stdout);
    assert!(o.stdout.contains("ridge: 1e-6"), "{}", o.stdout);
}

#[test]
fn ridge_has_one_spelling_a_domain_and_is_shared_with_the_metric() {
    let (ws, job) = planted(500, 8, "1e2", "[{name: causal, ridge: 1e-6}]");
    ws.run(&[&job]).ok();
    assert_eq!(ws.manifest("m", "causal_metric")["params"]["ridge"], "1e-6", "the metric takes causal's ridge");
    assert_eq!(ws.manifest("m", "causal")["fingerprint_inputs"]["param.ridge"], "1e-6");
    for same in ["0.000001", "1E-06", "\"1e-6\""] {
        let job = ws.job(&format!(
            "version: 1\njobs:\n  - path: ../models/m\n    name: m\n    frames: [{{name: causal, ridge: {same}}}]\n"
        ));
        ws.run(&["status", job.to_str().unwrap(), "--check"]).ok();
    }
    for (frames, want) in [
        ("[{name: causal, ridge: -1e-6}]", "causal.ridge must be a finite number ≥ 0"),
        ("[{name: causal, ridge: small}]", "causal.ridge must be a number"),
        ("[{name: causal, basis: polar}]", "causal.basis must be one of symmetric, eigen"),
        (
            "[{name: causal_metric, ridge: 0}, {name: causal, ridge: 1e-6}]",
            "causal.ridge is 1e-6 but its input causal_metric.ridge is 0",
        ),
    ] {
        let job = ws.job(&format!("version: 1\njobs:\n  - path: ../models/m\n    name: m\n    frames: {frames}\n"));
        let o = ws.run(&[job.to_str().unwrap()]).expect(2);
        assert!(o.stderr.contains(want) && o.stderr.contains("test.yaml:"), "{frames}: {}", o.stderr);
    }
    // Both set alike is fine; a changed ridge makes both stale, with the reason.
    let job = ws.job(
        "version: 1\njobs:\n  - path: ../models/m\n    name: m\n    frames: [{name: causal_metric, ridge: 1e-5}, \
         {name: causal, ridge: 1e-5}]\n",
    );
    let o = ws.run(&["status", job.to_str().unwrap()]).code();
    assert_eq!(o, 0);
}

#[test]
fn show_prints_the_choices_and_the_spectrum() {
    let (ws, job) = planted(800, 12, "1e3", "[{name: causal, divisor: n-1}]");
    ws.run(&[&job]).ok();
    let o = ws.run(&["show", "m/causal_metric"]).ok();
    for want in ["divisor = n-1", "ridge = 0", "condition_number", "eigenvalues", "faer", "tensor           A_inv"] {
        assert!(o.stdout.contains(want), "{want}: {}", o.stdout);
    }
    let o = ws.run(&["show", "m/causal"]).ok();
    for want in ["basis = symmetric", "center = mean", "condition_number", "metric_sha256"] {
        assert!(o.stdout.contains(want), "{want}: {}", o.stdout);
    }
}
