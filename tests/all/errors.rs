//! Bad input of every kind gets a clear error (file:line:col for job files), exit 2, and loses nothing:
//! one failed job does not stop the others, and nothing already stored is touched.

use crate::support::*;

fn job_error(yaml: &str) -> String {
    let ws = Ws::new();
    let job = ws.job(yaml);
    let o = ws.run(&[job.to_str().unwrap()]);
    assert_eq!(o.code(), 2, "{yaml:?} should fail: {}", o.all());
    assert!(!ws.path("tensors").exists() && !ws.path("manifests").exists(), "{yaml:?} wrote something");
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    o.stderr.clone()
}

#[test]
fn bad_job_files_name_the_place_and_what_to_do() {
    // The parser's cases are unit tests (src/job/validate.rs); this one checks the whole path end to end:
    // the binary prints file:line:col, exits 2 and writes nothing.
    let cases: &[(&str, &str)] = &[(
        "version: 1\njobs:\n  - path: x\n    nmae: y\n",
        "test.yaml:4:5: unknown field `nmae`, expected one of model, path, name",
    )];
    for (yaml, want) in cases {
        let err = job_error(yaml);
        assert!(err.contains(want), "{yaml:?}\n wanted: {want}\n got: {err}");
    }
    // The snippet prints as lines (not with its line breaks escaped), the offending line and a caret.
    let err = job_error(cases[0].0);
    assert!(err.contains("\n4 |     nmae: y\n  |     ^ unknown field"), "{err}");
}

#[test]
fn hostile_yaml_fails_fast() {
    let bomb = "version: 1\njobs: &a [&b [&c [&d [&e [&f [&g [&h [&i [&j [x]]]]]]]]]]\nx: [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n";
    let deep = format!("version: 1\njobs: {}{}\n", "[".repeat(5000), "]".repeat(5000));
    let big = format!("version: 1\njobs:\n{}", "  - path: x\n".repeat(1_000_000));
    for yaml in [bomb.to_string(), deep, big] {
        let t = std::time::Instant::now();
        job_error(&yaml);
        assert!(t.elapsed().as_secs() < 10, "took {:?}", t.elapsed());
    }
    assert!(job_error(&format!("version: 1\njobs:\n{}", "  - path: x\n".repeat(200_000))).contains("limit"));
    // Under the size cap but over the node budget: refused by the parser's budget, quickly.
    let many = format!("version: 1\ndefaults:\n  frames: [{}]\njobs: []\n", vec!["gamma"; 150_000].join(","));
    assert!(many.len() < 1024 * 1024);
    let t = std::time::Instant::now();
    assert!(job_error(&many).contains("budget"), "{}", job_error(&many));
    assert!(t.elapsed().as_secs() < 10);
}

/// Adds an F32 tensor of `shape` (zeros) to a safetensors file.
fn add_tensor(file: &std::path::Path, name: &str, shape: &[usize]) {
    let bytes = std::fs::read(file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let zeros = vec![0u8; shape.iter().product::<usize>() * 4];
    let mut tensors: Vec<(String, safetensors::tensor::TensorView)> = st.tensors();
    tensors.push((
        name.into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.to_vec(), &zeros).unwrap(),
    ));
    let out = safetensors::serialize(tensors, None).unwrap();
    std::fs::write(file, out).unwrap();
}

/// A quantized checkpoint whose head is stored as plain floats (kept out of quantization, as bitsandbytes and
/// FP8 models keep `lm_head`): W is extracted (issue 12).
#[test]
fn a_quantized_checkpoint_with_a_float_head_gives_w() {
    let ws = Ws::new();
    let dir = ws.synth("q", &["--quantized", "--tie", "false", "--store", "both-differ"]);
    // The quantized layers' packed weights beside it do not matter; only W's own tensors do.
    add_tensor(&dir.join("model.safetensors"), "model.layers.0.mlp.down_proj.weight_scale", &[1]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/q\n");
    ws.run(&[job.to_str().unwrap()]).ok();
    assert_eq!(ws.read("tensors/q/W.safetensors"), reference_w(&dir, "lm_head.weight"));
}

#[test]
fn checkpoint_problems_are_reported_per_job_and_the_others_still_run() {
    let ws = Ws::new();
    ws.synth("good", &[]);
    ws.synth("nohead", &["--arch", "llama", "--tie", "false", "--store", "embed"]);
    // Quantized, with W stored scaled (a companion `weight_scale`, as FP8 checkpoints store): refused.
    let quant = ws.synth("quant", &["--quantized"]);
    add_tensor(&quant.join("model.safetensors"), "model.embed_tokens.weight_scale", &[1]);
    ws.synth("noW", &["--arch", "gemma3"]);
    // Rename W's key so no candidate matches.
    let p = ws.path("models/noW/model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    let key = b"language_model.model.embed_tokens.weight";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap();
    let mut renamed = bytes.clone();
    renamed[at..at + key.len()].copy_from_slice(b"language_model.model.embed_tokenz.weight");
    std::fs::write(&p, renamed).unwrap();
    ws.synth("shape", &["--vocab", "100"]);
    let cfg = ws.path("models/shape/config.json");
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("\"vocab_size\": 100", "\"vocab_size\": 101"))
        .unwrap();
    ws.synth("evil", &["--shards", "2"]);
    let idx = ws.path("models/evil/model.safetensors.index.json");
    std::fs::write(
        &idx,
        std::fs::read_to_string(&idx)
            .unwrap()
            .replace("\"model-00001-of-00002.safetensors\"", "\"../good/model.safetensors\""),
    )
    .unwrap();
    ws.synth("trunc", &[]);
    let t = ws.path("models/trunc/model.safetensors");
    let len = std::fs::metadata(&t).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&t).unwrap().set_len(len - 10).unwrap();
    std::fs::create_dir_all(ws.path("models/noconfig")).unwrap();

    let job = ws.job(
        "version: 1\njobs:\n  - path: ../models/nohead\n  - path: ../models/quant\n  - path: ../models/noW\n  - path: ../models/shape\n  - path: ../models/evil\n  - path: ../models/trunc\n  - path: ../models/noconfig\n  - path: ../models/good\n  - path: ../models/good\n    name: wrongkey\n    tensor: model.embed_tokenz.weight\n",
    );
    let o = ws.run(&[job.to_str().unwrap()]);
    assert_eq!(o.code(), 2);
    let line = |name: &str| {
        o.stdout
            .lines()
            .find(|l| l.contains(&format!(" {name}/gamma")))
            .unwrap_or_else(|| panic!("{name}: {}", o.stdout))
            .to_string()
    };
    assert!(line("nohead").contains("initialise the head randomly"), "{}", line("nohead"));
    assert!(
        line("quant").contains("quantized") && line("quant").contains("model.embed_tokens.weight_scale"),
        "{}",
        line("quant")
    );
    let now = line("noW");
    assert!(
        now.contains("tried language_model.lm_head.weight, lm_head.weight")
            && now.contains("nearest keys present: language_model.model.embed_tokenz.weight"),
        "{now}"
    );
    assert!(
        line("shape").contains("has shape [100, 64] but config.json says vocab_size × hidden_size = [101, 64]"),
        "{}",
        line("shape")
    );
    assert!(
        line("evil").contains("model.safetensors.index.json") && line("evil").contains("\"../good/model.safetensors\""),
        "{}",
        line("evil")
    );
    assert!(line("trunc").contains("model.safetensors") && line("trunc").contains("data section"), "{}", line("trunc"));
    assert!(line("noconfig").contains("config.json"), "{}", line("noconfig"));
    assert!(
        line("wrongkey").contains("does not hold") && line("wrongkey").contains("model.embed_tokens.weight"),
        "{}",
        line("wrongkey")
    );
    assert!(line("good").starts_with("built"));
    assert!(o.stdout.contains("1 built, 0 fresh, 8 failed"), "{}", o.stdout);
    let made: Vec<_> = std::fs::read_dir(ws.path("tensors")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(made, vec!["good"]);
}

#[test]
fn a_failed_rebuild_keeps_the_previous_good_output() {
    let ws = Ws::new();
    ws.synth("m", &[]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
    let job = job.to_str().unwrap();
    assert_eq!(ws.run(&[job]).code(), 0);
    let (w, m) = (ws.read("tensors/m/W.safetensors"), ws.read("manifests/m/gamma.json"));
    std::fs::write(ws.path("models/m/config.json"), "{ broken").unwrap();
    let o = ws.run(&[job]);
    assert_eq!(o.code(), 2);
    assert!(o.stdout.contains("config.json: not a valid config"), "{}", o.stdout);
    assert_eq!((w, m), (ws.read("tensors/m/W.safetensors"), ws.read("manifests/m/gamma.json")));
    assert_eq!(ws.run(&["verify"]).code(), 0);
    assert_eq!(ws.run(&["status", job]).code(), 2, "status cannot judge a broken source: an error, not fresh");
}

#[test]
fn verify_catches_tampered_manifests_and_missing_dirs() {
    let ws = Ws::new();
    ws.synth("m", &[]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
    assert_eq!(ws.run(&[job.to_str().unwrap()]).code(), 0);
    let mp = ws.path("manifests/m/gamma.json");
    let good = std::fs::read(&mp).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
    v["output"]["path"] = "../../etc/passwd".into();
    std::fs::write(&mp, serde_json::to_vec(&v).unwrap()).unwrap();
    let o = ws.run(&["verify"]);
    assert_eq!(o.code(), 1);
    assert!(o.stdout.contains("gamma.json") && o.stdout.contains("unsafe"), "{}", o.stdout);
    v["output"]["path"] = "tensors/m/W.safetensors".into();
    v["output"]["sha256"] = "0".repeat(64).into();
    std::fs::write(&mp, serde_json::to_vec(&v).unwrap()).unwrap();
    let o = ws.run(&["verify", "manifests"]);
    assert_eq!(o.code(), 1);
    assert!(o.stdout.contains("differs from the manifest's 0000"), "{}", o.stdout);
    std::fs::write(&mp, "not json").unwrap();
    assert_eq!(ws.run(&["verify"]).code(), 1);
    // A huge file in a manifest's place is refused without being read whole, and `run` replaces it.
    let mut huge = good.clone();
    huge.resize(3 << 20, b' ');
    std::fs::write(&mp, &huge).unwrap();
    let o = ws.run(&["verify"]);
    assert_eq!(o.code(), 1);
    assert!(o.stdout.contains("over 1048576 bytes, so not a gamma-run manifest"), "{}", o.stdout);
    let o = ws.run(&["status", job.to_str().unwrap()]).ok();
    assert!(o.stdout.contains("manifest unreadable"), "{}", o.stdout);
    assert_eq!(ws.run(&[job.to_str().unwrap()]).code(), 0);
    assert_eq!(std::fs::read(&mp).unwrap().len(), good.len());
    assert_eq!(ws.run(&["verify"]).code(), 0);
    let o = ws.run(&["verify", "nowhere"]);
    assert_eq!(o.code(), 2);
    assert!(o.stderr.contains("nowhere: no such manifests directory"), "{}", o.stderr);
}

#[test]
fn synth_refuses_decoder_layouts_it_would_write_wrong_and_writes_nothing() {
    let ws = Ws::new();
    let out = ws.path("models/bad");
    for (args, want) in [
        (&["--arch", "qwen2"][..], "qwen3 or llama decoders"),
        (&["--tie", "false"][..], "untied (--tie false --store head)"),
        (&["--shards", "2"][..], "--shards and --filler-mib do not apply"),
    ] {
        let mut a = vec!["synth", "--out", out.to_str().unwrap(), "--layers", "2"];
        a.extend_from_slice(args);
        let o = ws.run(&a);
        assert_eq!(o.code(), 2, "{args:?}: {}", o.all());
        assert!(o.stderr.contains(want), "{args:?}: {}", o.stderr);
        assert!(!out.exists(), "{args:?} wrote something");
    }
}

#[test]
fn help_exists_for_every_command() {
    let ws = Ws::new();
    for cmd in [vec!["--help"], vec!["run", "--help"], vec!["status", "--help"], vec!["verify", "--help"]] {
        let o = ws.run(&cmd);
        assert_eq!(o.code(), 0);
        assert!(o.stdout.contains("Usage: gamma-run"), "{}", o.stdout);
    }
    let o = ws.run(&["missing.yaml"]);
    assert_eq!(o.code(), 2);
    assert!(o.stderr.contains("missing.yaml: No such file"), "{}", o.stderr);
}

#[test]
fn symlinks_that_lead_outside_the_output_roots_are_refused() {
    let ws = Ws::new();
    ws.synth("m", &[]);
    let outside = ws.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(ws.path("tensors")).unwrap();
    std::os::unix::fs::symlink(&outside, ws.path("tensors/m")).unwrap();
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
    let o = ws.run(&[job.to_str().unwrap()]);
    assert_eq!(o.code(), 2);
    assert!(o.stdout.contains("outside") && o.stdout.contains("remove the symlink"), "{}", o.stdout);
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing written outside");

    // An output file that is itself a symlink is not followed either.
    std::fs::remove_file(ws.path("tensors/m")).unwrap();
    std::fs::create_dir_all(ws.path("tensors/m")).unwrap();
    std::fs::write(outside.join("victim"), b"keep me").unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), ws.path("tensors/m/W.safetensors")).unwrap();
    let o = ws.run(&[job.to_str().unwrap()]);
    assert_eq!(o.code(), 2);
    assert!(o.stdout.contains("is a symlink"), "{}", o.stdout);
    assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"keep me");
}

#[test]
fn a_read_only_output_directory_is_a_clear_error_that_keeps_what_is_stored() {
    let ws = Ws::new();
    ws.synth("m", &[]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
    let job = job.to_str().unwrap();
    let Some(mut ro) = ReadOnly::prepare(&ws.path("tensors"), &ws.path("tensors/m"), "4m") else {
        skip(
            "a_read_only_output_directory_is_a_clear_error_that_keeps_what_is_stored",
            "running as root and cannot mount a tmpfs",
        );
        return;
    };
    assert_eq!(ws.run(&[job]).code(), 0);
    let before = ws.read("tensors/m/W.safetensors");
    assert!(ro.engage());
    let o = ws.run(&[job, "--force"]);
    let mounted = ro.mounted();
    drop(ro);
    assert_eq!(o.code(), 2);
    let said = o.stdout.contains("tensors/m")
        && (o.stdout.contains("ermission denied") || o.stdout.contains("Read-only file system"));
    assert!(said, "{}", o.stdout);
    if !mounted {
        assert_eq!(ws.read("tensors/m/W.safetensors"), before);
    }
}

#[test]
fn a_tensor_the_index_places_wrongly_is_read_where_it_is_and_one_stored_twice_is_refused() {
    let ws = Ws::new();
    let dir = ws.synth("m", &["--shards", "2"]);
    let want = reference_w(&dir, "model.embed_tokens.weight");
    let idx = ws.path("models/m/model.safetensors.index.json");
    let text = std::fs::read_to_string(&idx).unwrap();
    let moved = text.replace(
        "\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\"",
        "\"model.embed_tokens.weight\": \"model-00002-of-00002.safetensors\"",
    );
    assert_ne!(text, moved);
    std::fs::write(&idx, moved).unwrap();
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
    // transformers loads every tensor of every shard: the index's word is only a hint. So does gamma-run.
    let o = ws.run(&[job.to_str().unwrap()]).ok();
    assert!(o.stderr.contains("the index says model.embed_tokens.weight is in model-00002-of-00002.safetensors, but model-00001-of-00002.safetensors holds it"), "{}", o.stderr);
    assert_eq!(ws.read("tensors/m/W.safetensors"), want);
    assert_eq!(ws.manifest("m", "gamma")["source"]["range"]["file"], "model-00001-of-00002.safetensors");

    // The same key in two shards: which copy transformers keeps is an accident of load order. Refused.
    std::fs::write(&idx, &text).unwrap();
    let second = dir.join("model-00002-of-00002.safetensors");
    let bytes = std::fs::read(&second).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, safetensors::tensor::TensorView)> = st.tensors();
    let first = std::fs::read(dir.join("model-00001-of-00002.safetensors")).unwrap();
    let first = safetensors::SafeTensors::deserialize(&first).unwrap();
    let w = first.tensor("model.embed_tokens.weight").unwrap();
    tensors.push(("model.embed_tokens.weight".into(), w));
    std::fs::write(&second, safetensors::serialize(tensors, None).unwrap()).unwrap();
    let o = ws.run(&[job.to_str().unwrap(), "--force"]).expect(2);
    assert!(o.stdout.contains("model.embed_tokens.weight is stored in 2 shards (model-00001-of-00002.safetensors, model-00002-of-00002.safetensors)") && o.stdout.contains("load order"), "{}", o.stdout);

    // A shard the index names but the directory lacks.
    std::fs::write(&second, &bytes).unwrap();
    std::fs::write(&idx, text.replace("model-00001-of-00002.safetensors", "model-00009-of-00009.safetensors")).unwrap();
    let o = ws.run(&[job.to_str().unwrap()]);
    assert_eq!(o.code(), 2);
    assert!(o.stdout.contains("model-00009-of-00009.safetensors: missing"), "{}", o.stdout);
}

/// Issue 28: a workspace that cannot be written gives one error naming what was being created and what to do,
/// not one "Read-only file system" line per output.
#[test]
fn an_unwritable_workspace_is_one_error() {
    let ws = Ws::new();
    let models: Vec<std::path::PathBuf> = ["a", "b", "c"].iter().map(|n| ws.synth(n, &["--seed", "3"])).collect();
    let Some(mut ro) = ReadOnly::prepare(&ws.path("proj"), &ws.path("proj"), "4m") else {
        skip("an_unwritable_workspace_is_one_error", "running as root and cannot mount a tmpfs");
        return;
    };
    std::fs::create_dir_all(ws.path("proj/jobs")).unwrap();
    let jobs: String = models.iter().map(|m| format!("  - path: {}\n", m.display())).collect();
    std::fs::write(ws.path("proj/jobs/x.yaml"), format!("version: 1\njobs:\n{jobs}")).unwrap();
    assert!(ro.engage());
    let o = ws.run(&["proj/jobs/x.yaml"]);
    drop(ro);
    assert_eq!(o.code(), 2, "{}", o.all());
    assert!(o.stderr.contains("cannot be written here, so none of the 3 outputs to build could be"), "{}", o.all());
    assert!(o.stderr.contains("point `output:` at a writable directory"), "{}", o.all());
    assert_eq!(o.stderr.lines().filter(|l| l.starts_with("error:")).count(), 1, "{}", o.all());
    assert!(!o.stdout.contains("FAILED"), "{}", o.all());
}
