//! CI and scale: `--shard` partitions the plan exactly, `--only` globs, `status --format markdown|json`,
//! `run --dry-run` plans, `show`, `attest` statements, completions and the man page, and the shipped examples.

use crate::support::*;
use std::collections::BTreeSet;

/// A workspace with `n` jobs (every third with γ′) over two tiny checkpoints.
fn many(n: usize) -> (Ws, String) {
    let ws = Ws::new();
    ws.synth("a", &["--vocab", "64", "--hidden", "8"]);
    ws.synth("b", &["--vocab", "64", "--hidden", "8", "--seed", "3"]);
    let mut yaml = String::from("version: 1\njobs:\n");
    for i in 0..n {
        let frames = if i % 3 == 0 { "[gamma, gamma_prime]" } else { "[gamma]" };
        let model = if i % 2 == 0 { "a" } else { "b" };
        yaml.push_str(&format!("  - path: ../models/{model}\n    name: m{i}\n    frames: {frames}\n"));
    }
    let job = ws.job(&yaml).to_str().unwrap().to_string();
    (ws, job)
}

/// The outputs a status listing names, as "name/frame".
fn outputs(stdout: &str) -> BTreeSet<String> {
    stdout.lines().filter_map(|l| l.split_whitespace().nth(1)).map(|s| s.trim_end_matches(':').to_string()).collect()
}

#[test]
fn shards_cover_the_plan_exactly_and_keep_frames_with_their_inputs() {
    let (ws, job) = many(20);
    let all = outputs(&ws.run(&["status", &job]).ok().stdout);
    assert_eq!(all.len(), 20 + 7);
    for n in [1, 3, 4] {
        let mut union = BTreeSet::new();
        for k in 0..n {
            let part = outputs(&ws.run(&["status", &job, "--shard", &format!("{k}/{n}")]).ok().stdout);
            for o in &part {
                assert!(union.insert(o.clone()), "{o} in two shards of {n}");
                if let Some(name) = o.strip_suffix("/gamma_prime") {
                    assert!(part.contains(&format!("{name}/gamma")), "{o} without its gamma in shard {k}/{n}");
                }
            }
        }
        assert_eq!(union, all, "the shards of {n} are the whole plan");
    }
    // Building the shards one by one builds everything; merging is the shared workspace.
    for k in 0..3 {
        assert_eq!(ws.run(&[&job, "--shard", &format!("{k}/3")]).code(), 0);
    }
    assert_eq!(ws.run(&["status", &job, "--check"]).code(), 0);
    let o = ws.run(&[&job, "--shard", "3/3"]);
    assert_eq!(o.code(), 2);
    assert!(o.stderr.contains("need 0 ≤ K < N"), "{}", o.stderr);
}

#[test]
fn only_takes_globs_over_names_and_frames() {
    let (ws, job) = many(7);
    let o = ws.run(&["status", &job, "--only", "m[0-2]"]).ok();
    assert_eq!(
        outputs(&o.stdout),
        ["m0/gamma", "m0/gamma_prime", "m1/gamma", "m2/gamma"].iter().map(std::string::ToString::to_string).collect()
    );
    // A derived frame brings its input along.
    let o = ws.run(&["status", &job, "--only", "*/gamma_prime"]).ok();
    let want: BTreeSet<String> =
        ["m0", "m3", "m6"].iter().flat_map(|m| [format!("{m}/gamma"), format!("{m}/gamma_prime")]).collect();
    assert_eq!(outputs(&o.stdout), want);
    let o = ws.run(&["status", &job, "--only", "nothing*"]);
    assert_eq!(o.code(), 2);
    assert!(o.stderr.contains("matches no output"), "{}", o.stderr);
}

#[test]
fn dry_run_plans_with_reasons_and_sizes_and_writes_nothing() {
    let ws = Ws::new();
    ws.synth("m", &["--vocab", "512", "--hidden", "64"]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n    frames: [gamma, gamma_prime]\n");
    let job = job.to_str().unwrap();
    let o = ws.run(&[job, "--dry-run"]).ok();
    assert!(
        o.stdout
            .contains("would build m/gamma  (never built); reads W (64.0 KiB) from the local checkpoint; no network"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("would build m/gamma_prime  (input gamma would be rebuilt)"), "{}", o.stdout);
    assert!(!ws.path("tensors").exists());
    ws.run(&[job]).ok();
    std::fs::remove_file(ws.path("manifests/m/gamma_prime.json")).unwrap();
    let o = ws.run(&[job, "--dry-run"]).ok();
    assert!(
        o.stdout.contains("fresh    m/gamma")
            && o.stdout.contains("would build m/gamma_prime  (manifest missing); reads its inputs (64.1 KiB)"),
        "{}",
        o.stdout
    );
}

#[test]
fn status_json_and_markdown() {
    let ws = Ws::new();
    let m = ws.synth("m", &[]);
    cache_model(&ws, &m, "org/tiny", "1111111111111111111111111111111111111111", Some("main"));
    let job = ws.job("version: 1\njobs:\n  - model: org/tiny\n  - path: ../models/m\n    name: local\n");
    let job = job.to_str().unwrap();
    ws.run(&[job, "--offline"]).ok();
    let o = ws.run(&["status", job, "--format", "json", "--offline"]).ok();
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let first = &v[0];
    for key in ["name", "frame", "state", "reasons", "output", "manifest", "commit", "sha256"] {
        assert!(first.get(key).is_some(), "{key} missing from {first}");
    }
    assert_eq!(first["commit"], "1111111111111111111111111111111111111111");
    assert_eq!(first["sha256"], sha256(&ws.read("tensors/tiny/W.safetensors")));
    assert!(v[1]["commit"].is_null());
    let o = ws
        .run_env(&["status", job, "--format", "markdown", "--offline"], &[("HF_ENDPOINT", "https://hub.example")])
        .ok();
    assert!(o.stdout.contains("| output | state | why | source | sha256 |"), "{}", o.stdout);
    assert!(
        o.stdout.contains(
            "[org/tiny@11111111](https://hub.example/org/tiny/tree/1111111111111111111111111111111111111111)"
        ),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("✅ fresh"), "{}", o.stdout);
}

#[test]
fn show_explains_an_output_and_notices_tampering() {
    let ws = Ws::new();
    ws.synth("m", &["--shards", "2"]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n    frames: [gamma_prime]\n");
    ws.run(&[job.to_str().unwrap()]).ok();
    let o = ws.run(&["show", "tensors/m/W.safetensors"]);
    assert_eq!(o.code(), 0, "{}", o.all());
    for want in [
        "tensor           W  BF16  [512, 64]",
        "matches          yes",
        "key              model.embed_tokens.weight",
        "why this key",
        "model-00001-of-00002.safetensors",
    ] {
        assert!(o.stdout.contains(want), "{want}: {}", o.stdout);
    }
    let o = ws.run(&["show", "manifests/m/gamma_prime.json", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["matches_manifest"], true);
    assert_eq!(v["manifest"]["inputs"][0]["frame"], "gamma");
    assert_eq!(v["tensors"][1]["name"], "centroid");
    flip(&ws.path("tensors/m/W.safetensors"), 300);
    let o = ws.run(&["show", "tensors/m/W.safetensors"]);
    assert_eq!(o.code(), 1);
    assert!(o.stdout.contains("matches          NO"), "{}", o.stdout);
    // A deleted output: its manifest's provenance is still shown, and it does not match.
    std::fs::remove_file(ws.path("tensors/m/W.safetensors")).unwrap();
    let o = ws.run(&["show", "manifests/m/gamma.json"]);
    assert_eq!(o.code(), 1, "{}", o.all());
    assert!(o.stdout.contains("unreadable") && o.stdout.contains("why this key"), "{}", o.stdout);
}

#[test]
fn attest_writes_in_toto_statements_shaped_for_slsa() {
    let ws = Ws::new();
    let m = ws.synth("m", &["--shards", "2"]);
    cache_model(&ws, &m, "org/tiny", "2222222222222222222222222222222222222222", None);
    let job = ws.job("version: 1\njobs:\n  - model: org/tiny\n    revision: 2222222222222222222222222222222222222222\n    frames: [gamma_prime]\n");
    assert_eq!(ws.run(&[job.to_str().unwrap(), "--offline"]).code(), 0);
    let o = ws.run(&["attest"]);
    assert_eq!(o.code(), 0, "{}", o.all());
    for frame in ["gamma", "gamma_prime"] {
        let s: serde_json::Value =
            serde_json::from_slice(&ws.read(&format!("attestations/tiny/{frame}.intoto.json"))).unwrap();
        let manifest = ws.manifest("tiny", frame);
        assert_eq!(s["_type"], "https://in-toto.io/Statement/v1");
        assert_eq!(s["subject"][0]["name"], manifest["output"]["path"]);
        assert_eq!(s["subject"][0]["digest"]["sha256"], manifest["output"]["sha256"]);
        assert!(s["predicateType"].as_str().unwrap().starts_with("https://"));
        let bd = &s["predicate"]["buildDefinition"];
        assert!(bd["buildType"].as_str().unwrap().contains(frame));
        assert_eq!(bd["externalParameters"]["name"], "tiny");
        let deps = bd["resolvedDependencies"].as_array().unwrap();
        assert!(!deps.is_empty());
        for d in deps {
            // An in-toto ResourceDescriptor needs a uri or a digest; uris are absolute, digests are SHA-256.
            assert!(d.get("uri").is_some() || d.get("digest").is_some(), "{d}");
            if let Some(uri) = d.get("uri") {
                assert!(uri.as_str().unwrap().contains("://"), "{d}");
            }
            if let Some(sha) = d.get("digest") {
                assert_eq!(sha["sha256"].as_str().unwrap().len(), 64, "{d}");
            }
        }
        if frame == "gamma_prime" {
            assert_eq!(deps[0]["digest"]["sha256"], ws.manifest("tiny", "gamma")["output"]["sha256"]);
        }
        assert!(s["predicate"]["runDetails"]["builder"]["id"].is_string());
    }
    let s: serde_json::Value = serde_json::from_slice(&ws.read("attestations/tiny/gamma.intoto.json")).unwrap();
    let deps = s["predicate"]["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
    let shard = deps.iter().find(|d| d["name"] == "model-00001-of-00002.safetensors").unwrap();
    assert_eq!(shard["uri"], "hf://org/tiny@2222222222222222222222222222222222222222/model-00001-of-00002.safetensors");
    assert_eq!(shard["digest"]["sha256"], sha256(&std::fs::read(m.join("model-00001-of-00002.safetensors")).unwrap()));
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    let ws = Ws::new();
    for shell in ["bash", "zsh", "fish"] {
        let o = ws.run(&["completions", shell]);
        assert_eq!(o.code(), 0);
        assert!(o.stdout.contains("gamma-run") && o.stdout.contains("shard"), "{shell}");
    }
    let o = ws.run(&["man"]);
    assert_eq!(o.code(), 0);
    assert!(
        o.stdout.contains(".TH gamma-run") && o.stdout.contains("status"),
        "{}",
        &o.stdout[..200.min(o.stdout.len())]
    );
}

#[test]
fn shipped_ci_examples_use_the_shard_contract() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let gha: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(root.join("github-actions/gamma-run.yml")).unwrap()).unwrap();
    let shards = gha["jobs"]["build"]["strategy"]["matrix"]["shard"].as_array().unwrap();
    assert_eq!(
        shards.len().to_string(),
        gha["env"]["SHARDS"].as_str().map_or_else(|| gha["env"]["SHARDS"].to_string(), str::to_string)
    );
    let steps = gha["jobs"]["build"]["steps"].to_string();
    assert!(steps.contains("--shard \\\"${{ matrix.shard }}/$SHARDS\\\""), "{steps}");
    // Issue 28: gamma-run is built once, as a wheel, and installed from that artifact: no job compiles it again.
    let wheel = gha["jobs"]["wheel"]["steps"].to_string();
    assert!(wheel.contains("maturin build --release"), "{wheel}");
    for job in ["build", "gate"] {
        let text = gha["jobs"][job]["steps"].to_string();
        assert!(text.contains("pip install wheels/*.whl") && !text.contains("cargo install"), "{job}: {text}");
    }
    let gate = gha["jobs"]["gate"]["steps"].to_string();
    assert!(
        gate.contains("status \\\"$JOBFILE\\\" --check")
            && gate.contains("--format markdown >> \\\"$GITHUB_STEP_SUMMARY\\\"")
    );
    // The remote-store variant: shards run against the store (no caches, no artifacts of outputs), the gate pulls
    // and checks the plan against it; every gamma-run flag it uses is one `run`, `pull` and `status` accept.
    let remote: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(root.join("github-actions/gamma-run-remote.yml")).unwrap())
            .unwrap();
    assert_eq!(remote["env"]["GAMMA_RUN_REMOTE"], "${{ vars.GAMMA_RUN_REMOTE }}");
    let build = remote["jobs"]["build"]["steps"].to_string();
    assert!(
        build.contains("--shard \\\"${{ matrix.shard }}/$SHARDS\\\"") && !build.contains("actions/cache"),
        "{build}"
    );
    let gate = remote["jobs"]["gate"]["steps"].to_string();
    assert!(gate.contains("gamma-run pull \\\"$JOBFILE\\\"") && gate.contains("--remote --check"), "{gate}");
    let ws = Ws::new();
    ws.job("version: 1\njobs:\n  - model: org/m\n");
    for args in
        [&["run", "jobs/test.yaml", "--shard", "0/4", "-n"][..], &["status", "jobs/test.yaml", "--remote", "--check"]]
    {
        // Parsed by the real binary: no usage error (exit 2 from clap says "Usage:"), whatever the outcome.
        let o = ws.run_env(args, &[("GAMMA_RUN_REMOTE", "file:///nonexistent-share/x")]);
        let _ = o.code();
        assert!(!o.stderr.contains("Usage:"), "{args:?}: {}", o.all());
    }
    let k8s: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(root.join("kubernetes/indexed-job.yaml")).unwrap()).unwrap();
    assert_eq!(k8s["spec"]["completionMode"], "Indexed");
    let n = k8s["spec"]["completions"].as_u64().unwrap();
    assert!(
        k8s["spec"]["template"]["spec"]["containers"][0]["args"][0]
            .as_str()
            .unwrap()
            .contains(&format!("${{JOB_COMPLETION_INDEX}}/{n}"))
    );
    let slurm = std::fs::read_to_string(root.join("slurm/gamma-run.sbatch")).unwrap();
    assert!(slurm.contains("--shard \"${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT}\""));
    let o = std::process::Command::new("bash").arg("-n").arg(root.join("slurm/gamma-run.sbatch")).output().unwrap();
    assert!(o.status.success(), "the Slurm script parses");
}

#[test]
fn the_release_workflow_builds_wheels_for_the_three_platforms_and_smoke_tests_them() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("examples/github-actions/release-wheels.yml")).unwrap();
    let wf: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let matrix = wf["jobs"]["wheels"]["strategy"]["matrix"]["include"].as_array().unwrap();
    for os in ["ubuntu", "macos", "windows"] {
        assert!(matrix.iter().any(|m| m["os"].as_str().unwrap().starts_with(os)), "no {os} wheel");
    }
    let steps = wf["jobs"]["wheels"]["steps"].to_string();
    assert!(steps.contains("PyO3/maturin-action") && steps.contains("--release --locked"), "{steps}");
    for cmd in ["gamma-run\\\" jobs/example.yaml", "status jobs/example.yaml --check", "verify manifests"] {
        assert!(steps.contains(cmd), "the smoke test runs {cmd}: {steps}");
    }
    assert!(wf["jobs"]["publish"]["permissions"]["id-token"] == "write", "trusted publishing");
    // The wheel is built from this Cargo.toml with maturin's binary bindings.
    let py = std::fs::read_to_string(root.join("pyproject.toml")).unwrap();
    assert!(py.contains("build-backend = \"maturin\"") && py.contains("bindings = \"bin\""), "{py}");
}

/// Issue 28: the job file is learnt from the CLI: `--help` shows examples and a job file, `man` has a JOB FILE
/// section with every key `init` writes, and an EXAMPLES section.
#[test]
fn help_and_man_teach_the_job_file() {
    let ws = Ws::new();
    let help = ws.run(&["--help"]).ok();
    assert!(
        help.stdout.contains("Examples:\n  gamma-run init") && help.stdout.contains("A job file:\n  version: 1"),
        "{}",
        help.stdout
    );
    let man = ws.run(&["man"]).ok();
    assert!(man.stdout.contains(".SH JOB FILE") && man.stdout.contains(".SH EXAMPLES"), "no sections");
    std::fs::remove_dir_all(ws.path("jobs")).unwrap();
    ws.run(&["init"]).ok();
    let template = String::from_utf8(ws.read("jobs/models.yaml")).unwrap();
    for key in [
        "version",
        "output",
        "defaults",
        "jobs",
        "model",
        "path",
        "revision",
        "revisions",
        "name",
        "frames",
        "tensor",
        "dtype",
        "fetch",
    ] {
        assert!(man.stdout.contains(&format!("\\fB{key}")), "man lacks {key}");
        assert!(
            template.contains(&format!("{key}:")) || key == "dtype" && template.contains("dtype"),
            "init lacks {key}"
        );
    }
}

/// Issue 28: `verify --json` gives `manifest` and `output` as `status --json` does: relative to the workspace.
#[test]
fn verify_json_paths_match_status_json() {
    let ws = Ws::new();
    ws.synth("m", &[]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
    ws.run(&[job.to_str().unwrap()]).ok();
    let v: serde_json::Value = serde_json::from_str(&ws.run(&["verify", "--json"]).ok().stdout).unwrap();
    let s: serde_json::Value =
        serde_json::from_str(&ws.run(&["status", job.to_str().unwrap(), "--json"]).ok().stdout).unwrap();
    assert_eq!((&v[0]["manifest"], &v[0]["output"]), (&s[0]["manifest"], &s[0]["output"]));
    assert_eq!(v[0]["output"], "tensors/m/W.safetensors");
}
