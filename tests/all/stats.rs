//! `token_stats` (issue 27): planted rows (a cluster of identical rows, zero rows, a ±0 mix, NaN payloads, ±Inf,
//! subnormals) checked against brute force here and, where numpy is installed, against the independent reference
//! `examples/python/token_stats_check.py`; byte-identical files for any thread count; `verify --recompute`;
//! `show`'s summary.

use crate::support::*;
use std::collections::{HashMap, HashSet};

const V: usize = 600;
const D: usize = 24;

/// A model whose W rows are planted: returns the workspace, the job path and W's bf16 bit patterns. With
/// `specials`, rows 30 and 31 hold NaNs and infinities (which make the mean, and so every centred norm, NaN).
fn planted(frames: &str, specials: bool) -> (Ws, String, Vec<u16>) {
    let ws = Ws::new();
    let dir = ws.synth("m", &["--vocab", &V.to_string(), "--hidden", &D.to_string(), "--seed", "4"]);
    let file = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("model.embed_tokens.weight").unwrap();
    assert_eq!((t.shape(), t.dtype()), (&[V, D][..], safetensors::Dtype::BF16));
    let at = t.data().as_ptr() as usize - bytes.as_ptr() as usize;
    let mut w: Vec<u16> = t.data().chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
    let set = |w: &mut Vec<u16>, row: usize, vals: &[u16]| w[row * D..(row + 1) * D].copy_from_slice(vals);
    let row = |w: &Vec<u16>, r: usize| w[r * D..(r + 1) * D].to_vec();
    // A cluster: rows 300..=340 (and 7) are copies of row 3; rows 500, 501 another pair.
    for r in (300..=340).chain([7]) {
        let src = row(&w, 3);
        set(&mut w, r, &src);
    }
    let src = row(&w, 450);
    set(&mut w, 500, &src);
    set(&mut w, 501, &src);
    // Zero rows: +0 everywhere (twice), and a ±0 mix (the same values, other bytes: not a duplicate).
    set(&mut w, 20, &[0x0000; D]);
    set(&mut w, 21, &[0x0000; D]);
    let mut mix = [0x0000u16; D];
    mix[5] = 0x8000;
    set(&mut w, 22, &mix);
    // NaN payloads (two different NaNs), infinities, subnormals, all ones.
    if specials {
        let mut nan = row(&w, 30);
        nan[0] = 0x7fc0;
        nan[1] = 0xffc1;
        set(&mut w, 30, &nan);
        let mut inf = row(&w, 31);
        inf[2] = 0x7f80;
        inf[3] = 0xff80;
        set(&mut w, 31, &inf);
    }
    let mut sub = row(&w, 32);
    sub[4] = 0x0001;
    sub[5] = 0x807f;
    set(&mut w, 32, &sub);
    set(&mut w, 33, &[0x3f80; D]);
    for (i, x) in w.iter().enumerate() {
        bytes[at + 2 * i..at + 2 * i + 2].copy_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&file, &bytes).unwrap();
    let job = ws.job(&format!("version: 1\njobs:\n  - path: ../models/m\n    frames: {frames}\n"));
    (ws, job.to_str().unwrap().to_string(), w)
}

fn tensor_bytes(file: &[u8], name: &str) -> (Vec<usize>, Vec<u8>) {
    let st = safetensors::SafeTensors::deserialize(file).unwrap();
    let t = st.tensor(name).unwrap();
    (t.shape().to_vec(), t.data().to_vec())
}

fn i64s(b: &[u8]) -> Vec<i64> {
    b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()
}
fn i32s(b: &[u8]) -> Vec<i32> {
    b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect()
}
fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}
fn f64s(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
}
fn value(bits: u16) -> f64 {
    f64::from(f32::from_bits(u32::from(bits) << 16))
}

#[test]
fn planted_rows_are_found_exactly() {
    let (ws, job, w) = planted("[gamma, token_stats]", true);
    let o = ws.run(&[&job]).ok();
    assert!(o.stderr.contains("the mean of 4 columns is not finite"), "{}", o.stderr);
    let file = ws.read("tensors/m/stats.safetensors");
    let rows: Vec<&[u16]> = w.chunks_exact(D).collect();
    // duplicate_of: brute force over byte identity.
    let (shape, dup) = tensor_bytes(&file, "duplicate_of");
    assert_eq!(shape, [V]);
    let want: Vec<i64> = (0..V).map(|i| (0..i).find(|&j| rows[j] == rows[i]).map_or(-1, |j| j as i64)).collect();
    assert_eq!(i64s(&dup), want);
    assert_eq!(want[340], 3);
    assert_eq!(want[21], 20);
    assert_eq!(want[22], -1, "+0 and -0 are different bytes");
    assert_eq!(want[501], 450);
    // Counts per row.
    let count = |f: &dyn Fn(u16) -> bool| -> Vec<i32> {
        rows.iter().map(|r| r.iter().filter(|b| f(**b)).count() as i32).collect()
    };
    let (_, zeros) = tensor_bytes(&file, "zeros");
    assert_eq!(i32s(&zeros), count(&|b| b & 0x7fff == 0));
    let (_, subs) = tensor_bytes(&file, "subnormals");
    assert_eq!(i32s(&subs), count(&|b| b & 0x7f80 == 0 && b & 0x7f != 0));
    assert_eq!(i32s(&subs)[32], 2);
    let (_, nonfinite) = tensor_bytes(&file, "nonfinite");
    assert_eq!(i32s(&nonfinite), count(&|b| b & 0x7f80 == 0x7f80));
    // Histogram, distinct values, per column.
    let (shape, hist) = tensor_bytes(&file, "exponent_histogram");
    assert_eq!(shape, [2, 256]);
    let mut want_hist = vec![0i64; 512];
    w.iter().for_each(|b| want_hist[usize::from(b >> 7)] += 1);
    assert_eq!(i64s(&hist), want_hist);
    let (shape, distinct) = tensor_bytes(&file, "distinct_values");
    assert_eq!(shape, Vec::<usize>::new());
    assert_eq!(i64s(&distinct), [w.iter().collect::<HashSet<_>>().len() as i64]);
    let (_, cols) = tensor_bytes(&file, "column_distinct");
    let want_cols: Vec<i32> = (0..D).map(|j| rows.iter().map(|r| r[j]).collect::<HashSet<_>>().len() as i32).collect();
    assert_eq!(i32s(&cols), want_cols);
    // Norms: special rows, and every finite row against an f64 sum in ascending order (exact here: these sums
    // of 24 bf16 squares fit in 53 bits), rounded once to f32.
    let (_, norm) = tensor_bytes(&file, "norm");
    let norm = f32s(&norm);
    assert!(norm[30].is_nan() && norm[31] == f32::INFINITY);
    assert_eq!(norm[20], 0.0);
    assert_eq!(norm[33], (D as f32).sqrt());
    for (i, r) in rows.iter().enumerate().filter(|(i, _)| ![30, 31].contains(i)) {
        let mut sq: Vec<f64> = r.iter().map(|b| value(*b) * value(*b)).collect();
        sq.sort_by(f64::total_cmp);
        let s: f64 = sq.iter().sum();
        assert_eq!(norm[i], s.sqrt() as f32, "row {i}");
    }
    let (_, max_abs) = tensor_bytes(&file, "max_abs");
    let max_abs = f32s(&max_abs);
    assert_eq!(max_abs[31], f32::INFINITY);
    assert_eq!(max_abs[33], 1.0);
    // The mean is γ′'s centroid, bit for bit.
    let (_, mean) = tensor_bytes(&file, "mean");
    let mean = f64s(&mean);
    let mut total = [0f64; D];
    for chunk in rows.chunks(256) {
        let mut s = vec![0f64; D];
        chunk.iter().for_each(|r| r.iter().zip(&mut s).for_each(|(b, a)| *a += value(*b)));
        total.iter_mut().zip(&s).for_each(|(t, x)| *t += x);
    }
    let want_mean: Vec<f64> = total.iter().map(|t| t / V as f64).collect();
    assert_eq!(
        mean.iter().map(|m| m.to_bits()).collect::<Vec<_>>(),
        want_mean.iter().map(|m| m.to_bits()).collect::<Vec<_>>()
    );
    // NaN and ±Inf in four columns: their means are not finite, and so is every centred norm.
    assert_eq!(mean.iter().filter(|m| !m.is_finite()).count(), 4);
    let (_, centered) = tensor_bytes(&file, "centered_norm");
    assert!(f32s(&centered).iter().all(|c| c.is_nan()));
    let m = ws.manifest("m", "token_stats");
    assert_eq!(m["inputs"][0]["frame"], "gamma");
    assert_eq!(m["params"]["of"], "gamma");
    assert_eq!(m["nan_count"], 1 + V as u64 + 2, "row 30's norm, every centred norm, two means: {m}");
    let v = ws.run(&["verify", "--recompute"]).ok();
    // Issue 28: verify says what it checked beyond the hash.
    assert!(v.stdout.contains("tensors/m/stats.safetensors  (recomputed from its inputs)\n"), "{}", v.stdout);
    let v = ws.run(&["verify", "--sources"]).ok();
    assert!(v.stdout.contains("tensors/m/W.safetensors  (2 source files re-read, W re-extracted)\n"), "{}", v.stdout);
}

#[test]
fn centred_norms_use_the_mean_row() {
    let (ws, job, w) = planted("[gamma, token_stats]", false);
    ws.run(&[&job]).ok();
    let file = ws.read("tensors/m/stats.safetensors");
    let mean = f64s(&tensor_bytes(&file, "mean").1);
    let centered = f32s(&tensor_bytes(&file, "centered_norm").1);
    for (i, r) in w.chunks_exact(D).enumerate() {
        // Each term is computed in f64 and the 24 terms summed in ascending order: the error is far below an
        // f32 ulp, but not zero, so one ulp either way is allowed (the numpy reference checks it bit for bit
        // where it can).
        let mut t: Vec<f64> = r.iter().zip(&mean).map(|(b, m)| (value(*b) - m).powi(2)).collect();
        t.sort_by(f64::total_cmp);
        let want = t.iter().sum::<f64>().sqrt() as f32;
        let got = centered[i];
        assert!(got == want || got == want.next_up() || got == want.next_down(), "row {i}: {got} vs {want}");
    }
    assert_eq!(centered[20], centered[21], "identical rows, identical centred norms");
    assert_eq!(ws.manifest("m", "token_stats")["nan_count"], 0);
}

#[test]
fn the_same_w_gives_the_same_file_for_any_thread_count_and_f64_on_request() {
    let (ws, job, _) = planted("[gamma, token_stats]", true);
    let mut seen = HashMap::new();
    for threads in ["1", "2", "5"] {
        ws.run_env(&[&job, "--force", "--only", "m/token_stats"], &[("RAYON_NUM_THREADS", threads)]).ok();
        seen.insert(threads, sha256(&ws.read("tensors/m/stats.safetensors")));
    }
    assert_eq!(seen.values().collect::<HashSet<_>>().len(), 1, "{seen:?}");
    // dtype: f64 — the same norms, unrounded to f32.
    let f32_norm = f32s(&tensor_bytes(&ws.read("tensors/m/stats.safetensors"), "norm").1);
    let job64 =
        ws.job("version: 1\njobs:\n  - path: ../models/m\n    frames: [gamma, {name: token_stats, dtype: f64}]\n");
    let o = ws.run(&[job64.to_str().unwrap()]).ok();
    assert!(
        o.stdout.contains("built    m/token_stats  (") && o.stdout.contains("parameter dtype changed f32 → f64"),
        "{}",
        o.stdout
    );
    let f64_norm = f64s(&tensor_bytes(&ws.read("tensors/m/stats.safetensors"), "norm").1);
    for (a, b) in f32_norm.iter().zip(&f64_norm) {
        assert!(a.is_nan() && b.is_nan() || *a == *b as f32, "{a} {b}");
    }
}

/// The independent numpy reference (skipped, saying so, without numpy).
#[test]
fn token_stats_agree_with_the_numpy_reference() {
    let probe = std::process::Command::new("python3").args(["-c", "import numpy"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        skip("token_stats_agree_with_the_numpy_reference", "python3 with numpy is not installed");
        return;
    }
    let (ws, job, _) = planted("[gamma, token_stats]", true);
    ws.run(&[&job]).ok();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python/token_stats_check.py");
    let o = std::process::Command::new("python3")
        .arg(&script)
        .arg(ws.path("tensors/m/W.safetensors"))
        .arg(ws.path("tensors/m/stats.safetensors"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains(" 0 failed"), "{out}");
}

#[test]
fn show_summarises_the_statistics() {
    let (ws, job, _) = planted("[gamma, token_stats]", true);
    ws.run(&[&job]).ok();
    let o = ws.run(&["show", "tensors/m/stats.safetensors"]).ok();
    // The ±0 mix is a zero row too (its values are all zero), but not a duplicate (its bytes differ).
    for want in [
        "rows             600 × 24\n",
        "zero rows        3\n",
        "duplicate groups 3 (48 rows in all; largest: 43 rows from row 3; 3 rows from row 450; 2 rows from row 20)\n",
        "largest norms    33 (4.8990), ",
        "norm outliers    9 rows more than 4 MADs",
        "non-finite       4 values in 2 rows\n",
        "subnormals       2 values in 1 rows\n",
        "                      inf/nan █ 4\n",
    ] {
        assert!(o.stdout.contains(want), "{want:?} not in:\n{}", o.stdout);
    }
    let j = ws.run(&["show", "tensors/m/stats.safetensors", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["stats"]["duplicate_groups"][0]["size"], 43);
    assert_eq!(v["stats"]["zero_rows"], 3);
    // The markdown status report carries the headline numbers.
    let md = ws.run(&["status", &job, "--format", "markdown"]).ok();
    assert!(md.stdout.contains("#### Token statistics"), "{}", md.stdout);
    assert!(md.stdout.contains("| m | 600 × 24 | 3 | 3 (48; 43 from row 3) | "), "{}", md.stdout);
}

/// `of: embedding` describes E instead of W (the job must build `embedding` too, and is told so otherwise).
#[test]
fn statistics_of_the_input_embedding() {
    let ws = Ws::new();
    ws.synth("m", &["--vocab", "300", "--hidden", "16", "--tie", "false", "--store", "both-differ"]);
    let job =
        ws.job("version: 1\njobs:\n  - path: ../models/m\n    frames: [gamma, {name: token_stats, of: embedding}]\n");
    let o = ws.run(&[job.to_str().unwrap()]).expect(2);
    assert!(
        o.stdout.contains("FAILED   m/token_stats") && o.stdout.contains("add embedding to the job's frames:"),
        "{}",
        o.stdout
    );
    let job = ws.job(
        "version: 1\njobs:\n  - path: ../models/m\n    frames: [gamma, embedding, {name: token_stats, of: embedding}]\n",
    );
    ws.run(&[job.to_str().unwrap()]).ok();
    let m = ws.manifest("m", "token_stats");
    assert_eq!(m["inputs"][0]["frame"], "embedding");
    assert_eq!(m["inputs"][0]["sha256"], ws.manifest("m", "embedding")["output"]["sha256"]);
    // E's rows, not W's: the norms are those of E.
    let e = ws.read("tensors/m/E.safetensors");
    let (_, e_bytes) = tensor_bytes(&e, "E");
    let first: Vec<f64> = e_bytes[..32].chunks_exact(2).map(|b| value(u16::from_le_bytes([b[0], b[1]]))).collect();
    let mut sq: Vec<f64> = first.iter().map(|x| x * x).collect();
    sq.sort_by(f64::total_cmp);
    let norm = f32s(&tensor_bytes(&ws.read("tensors/m/stats.safetensors"), "norm").1);
    assert_eq!(norm[0], sq.iter().sum::<f64>().sqrt() as f32);
    ws.run(&["verify", "--recompute"]).ok();
}

/// One row of one value: norm |x|, centred norm 0 (the mean is the row), no duplicates, one distinct value.
#[test]
fn a_single_row_of_one_value() {
    let ws = Ws::new();
    ws.synth("m", &["--vocab", "1", "--hidden", "1"]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n    frames: [gamma, token_stats]\n");
    ws.run(&[job.to_str().unwrap()]).ok();
    let (_, w) = tensor_bytes(&ws.read("tensors/m/W.safetensors"), "W");
    let x = value(u16::from_le_bytes([w[0], w[1]]));
    let file = ws.read("tensors/m/stats.safetensors");
    assert_eq!(f32s(&tensor_bytes(&file, "norm").1), [x.abs() as f32]);
    assert_eq!(f32s(&tensor_bytes(&file, "centered_norm").1), [0.0]);
    assert_eq!(i64s(&tensor_bytes(&file, "duplicate_of").1), [-1]);
    assert_eq!(i64s(&tensor_bytes(&file, "distinct_values").1), [1]);
    assert_eq!(f64s(&tensor_bytes(&file, "mean").1), [x]);
}
