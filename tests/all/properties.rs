//! Property tests over the real binary: random shapes and random bf16/f16/f32 bit patterns (NaNs, infinities,
//! subnormals included) round-trip through extraction exactly as the reference converts them; the manifest's
//! SHA-256 is the file's; a second run writes nothing.

use crate::support::*;
use proptest::prelude::*;

fn checkpoint(dir: &std::path::Path, dtype: safetensors::Dtype, v: usize, d: usize, bits: &[u32]) {
    std::fs::create_dir_all(dir).unwrap();
    let width = match dtype {
        safetensors::Dtype::F32 => 4,
        _ => 2,
    };
    let data: Vec<u8> = bits.iter().take(v * d).flat_map(|b| b.to_le_bytes()[..width].to_vec()).collect();
    let w = safetensors::tensor::TensorView::new(dtype, vec![v, d], &data).unwrap();
    std::fs::write(dir.join("model.safetensors"), safetensors::serialize([("lm_head.weight", w)], None).unwrap())
        .unwrap();
    let config =
        serde_json::json!({"model_type": "llama", "vocab_size": v, "hidden_size": d, "tie_word_embeddings": false});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn extraction_round_trips_any_values(
        v in 1usize..40,
        d in 1usize..24,
        dtype in prop_oneof![Just(safetensors::Dtype::BF16), Just(safetensors::Dtype::F16), Just(safetensors::Dtype::F32)],
        bits in proptest::collection::vec(any::<u32>(), 40 * 24),
    ) {
        let ws = Ws::new();
        checkpoint(&ws.path("models/m"), dtype, v, d, &bits);
        let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
        let job = job.to_str().unwrap();
        let o = ws.run(&[job]);
        prop_assert_eq!(o.code(), 0, "{}", o.all());
        let file = ws.read("tensors/m/W.safetensors");
        prop_assert!(file == reference_w(&ws.path("models/m"), "lm_head.weight"), "bytes differ from the reference");
        let m = ws.manifest("m", "gamma");
        prop_assert_eq!(m["output"]["sha256"].as_str().unwrap(), sha256(&file));
        prop_assert_eq!(m["output"]["shape"].clone(), serde_json::json!([v, d]));
        let before = (mtime(&ws.path("tensors/m/W.safetensors")), ws.read("manifests/m/gamma.json"));
        let o = ws.run(&[job]).ok();
        prop_assert!(o.stdout.contains("fresh    m/gamma"));
        prop_assert_eq!(before, (mtime(&ws.path("tensors/m/W.safetensors")), ws.read("manifests/m/gamma.json")));
    }
}
