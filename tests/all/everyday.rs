//! Everyday use (issue 15, in part): conventions users bring from hf, cargo and Unix tools.

use crate::support::*;

#[test]
fn built_lines_say_where_the_file_went() {
    let ws = Ws::new();
    ws.synth("m", &[]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
    let o = ws.run(&[job.to_str().unwrap()]).ok();
    assert!(o.stdout.contains("  → tensors/m/W.safetensors\n"), "relative to the current directory: {}", o.stdout);
}

#[test]
fn a_mistyped_subcommand_is_named_not_run_as_a_job_file() {
    let ws = Ws::new();
    for (typo, meant) in [("stauts", "status"), ("verfy", "verify")] {
        let o = ws.run(&[typo, "jobs/x.yaml"]).expect(2);
        assert!(o.stderr.contains(&format!("a similar subcommand exists: '{meant}'")), "{typo}: {}", o.stderr);
    }
    // A job file is still a job file, whatever it is called.
    ws.synth("m", &[]);
    std::fs::write(ws.path("status.yml"), "version: 1\njobs:\n  - path: models/m\n").unwrap();
    ws.run(&["status.yml"]).ok();
}

#[test]
fn the_older_huggingface_hub_cache_variable_is_honoured_after_hf_hub_cache() {
    let ws = Ws::new();
    let dir = ws.synth("m", &[]);
    cache_model(&ws, &dir, "org/m", "cccccccccccccccccccccccccccccccccccccccc", Some("main"));
    let old = ws.path("old-cache");
    std::fs::rename(ws.path("hf-cache"), &old).unwrap();
    let job = ws.job("version: 1\njobs:\n  - model: org/m\n");
    let env = [("HF_HUB_CACHE", ""), ("HUGGINGFACE_HUB_CACHE", old.to_str().unwrap())];
    ws.run_env(&[job.to_str().unwrap(), "--offline"], &env).ok();
    // HF_HUB_CACHE, when set, wins (as in huggingface_hub).
    let env = [
        ("HF_HUB_CACHE", ws.path("empty").to_str().unwrap().to_string()),
        ("HUGGINGFACE_HUB_CACHE", old.to_str().unwrap().to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let o = ws.run_env(&["status", job.to_str().unwrap(), "--offline"], &env).expect(2);
    assert!(o.stdout.contains("not in the Hugging Face cache"), "{}", o.stdout);
}
