//! Every seed layout, end to end through the binary: the output is byte-identical to an independent reference
//! (safetensors crate + half), and the manifest says which key was read and why.

use crate::support::*;

struct Case {
    name: &'static str,
    synth: &'static [&'static str],
    key: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "qwen3-tied-sharded",
        synth: &["--arch", "qwen3", "--shards", "3", "--tie", "true", "--store", "embed"],
        key: "model.embed_tokens.weight",
    },
    Case {
        name: "qwen2-untied-sharded",
        synth: &["--arch", "qwen2", "--shards", "4", "--tie", "false", "--store", "both-differ"],
        key: "lm_head.weight",
    },
    Case {
        name: "llama-tied-single",
        synth: &["--arch", "llama", "--tie", "true", "--store", "embed"],
        key: "model.embed_tokens.weight",
    },
    Case {
        name: "phi3-untied",
        synth: &["--arch", "phi3", "--shards", "2", "--tie", "absent", "--store", "both-differ"],
        key: "lm_head.weight",
    },
    Case {
        name: "granite-tied",
        synth: &["--arch", "granite", "--shards", "2", "--tie", "true", "--store", "embed"],
        key: "model.embed_tokens.weight",
    },
    Case {
        name: "gemma3-old-keys",
        synth: &["--arch", "gemma3", "--shards", "3", "--tie", "absent", "--store", "embed"],
        key: "language_model.model.embed_tokens.weight",
    },
    Case {
        name: "gemma3-new-keys",
        synth: &["--arch", "gemma3-new", "--shards", "2", "--tie", "true", "--store", "embed"],
        key: "model.language_model.embed_tokens.weight",
    },
    Case {
        name: "tied-both-identical",
        synth: &["--arch", "llama", "--tie", "true", "--store", "both"],
        key: "lm_head.weight",
    },
    Case {
        name: "tied-both-differ",
        synth: &["--arch", "llama", "--tie", "true", "--store", "both-differ"],
        key: "lm_head.weight",
    },
    Case {
        name: "untied-head-only",
        synth: &["--arch", "llama", "--tie", "false", "--store", "head"],
        key: "lm_head.weight",
    },
    Case {
        name: "f32-untied-specials",
        synth: &[
            "--arch",
            "llama",
            "--dtype",
            "f32",
            "--tie",
            "false",
            "--store",
            "head",
            "--specials",
            "--vocab",
            "300",
            "--hidden",
            "32",
        ],
        key: "lm_head.weight",
    },
    Case {
        name: "f16-sharded-specials",
        synth: &[
            "--arch",
            "llama",
            "--dtype",
            "f16",
            "--shards",
            "3",
            "--tie",
            "false",
            "--store",
            "both-differ",
            "--specials",
        ],
        key: "lm_head.weight",
    },
    Case {
        name: "bf16-specials",
        synth: &["--arch", "qwen3", "--specials", "--store", "embed"],
        key: "model.embed_tokens.weight",
    },
];

#[test]
fn every_seed_layout_matches_the_reference_bit_for_bit() {
    let ws = Ws::new();
    let mut yaml = String::from("version: 1\njobs:\n");
    for c in CASES {
        ws.synth(c.name, c.synth);
        yaml.push_str(&format!("  - path: ../models/{}\n", c.name));
    }
    let job = ws.job(&yaml);
    let out = ws.run(&[job.to_str().unwrap()]);
    assert_eq!(out.code(), 0, "{}", out.all());
    for c in CASES {
        let got = ws.read(&format!("tensors/{}/W.safetensors", c.name));
        let want = reference_w(&ws.path(&format!("models/{}", c.name)), c.key);
        assert!(got == want, "{}: output differs from the reference", c.name);
        let m = ws.manifest(c.name, "gamma");
        assert_eq!(m["source"]["tensor"], c.key, "{}", c.name);
        assert_eq!(m["output"]["sha256"], sha256(&got), "{}", c.name);
        assert_eq!(m["output"]["size"], got.len() as u64, "{}", c.name);
        assert_eq!(m["output"]["path"], format!("tensors/{}/W.safetensors", c.name));
        assert_eq!(m["source"]["kind"], "local");
        assert!(m["source"]["commit"].is_null());
        assert!(!m["source"]["reason"].as_str().unwrap().is_empty());
    }
    // One warning per tied-and-both-stored job (two of them), not one per step that sees it.
    let warned =
        out.stderr.matches("tied config but both lm_head.weight and model.embed_tokens.weight are stored").count();
    assert_eq!(warned, 2, "{}", out.stderr);
}

#[test]
fn nans_are_canonicalised_counted_and_recorded() {
    let ws = Ws::new();
    ws.synth("nan", &["--arch", "llama", "--dtype", "f32", "--tie", "false", "--store", "head", "--specials", "--nan"]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/nan\n");
    let out = ws.run(&[job.to_str().unwrap()]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(out.stderr.contains("1 NaN"), "{}", out.stderr);
    assert_eq!(ws.manifest("nan", "gamma")["nan_count"], 1);
    let got = ws.read("tensors/nan/W.safetensors");
    assert_eq!(got, reference_w(&ws.path("models/nan"), "lm_head.weight"));
}

#[test]
fn an_explicit_tensor_overrides_the_rules() {
    let ws = Ws::new();
    ws.synth("m", &["--arch", "llama", "--tie", "false", "--store", "both-differ"]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n    tensor: model.embed_tokens.weight\n");
    let out = ws.run(&[job.to_str().unwrap()]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(ws.read("tensors/m/W.safetensors"), reference_w(&ws.path("models/m"), "model.embed_tokens.weight"));
    assert!(ws.manifest("m", "gamma")["source"]["reason"].as_str().unwrap().contains("explicitly"));
}

#[test]
fn thread_count_does_not_change_the_bytes() {
    let ws = Ws::new();
    let mut yaml = String::from("version: 1\noutput:\n  tensors: ../t1\n  manifests: ../man1\njobs:\n");
    for i in 0..4 {
        ws.synth(&format!("m{i}"), &["--seed", &i.to_string(), "--dtype", "f32", "--shards", "2"]);
        yaml.push_str(&format!("  - path: ../models/m{i}\n"));
    }
    let one = ws.job(&yaml);
    assert_eq!(ws.run(&[one.to_str().unwrap(), "--jobs", "1"]).code(), 0);
    let four = ws.path("jobs/four.yaml");
    std::fs::write(&four, yaml.replace("../t1", "../t4").replace("../man1", "../man4")).unwrap();
    assert_eq!(ws.run(&[four.to_str().unwrap(), "--jobs", "4"]).code(), 0);
    for i in 0..4 {
        assert_eq!(ws.read(&format!("t1/m{i}/W.safetensors")), ws.read(&format!("t4/m{i}/W.safetensors")));
    }
}
