//! Two processes on one workspace, and runs killed mid-write: per-output locks make the second process wait and
//! find the output fresh; without locks (GAMMA_RUN_NO_LOCK=1) unique temp files and atomic renames still keep
//! every output whole; a killed run leaves nothing under a final name that its manifest doesn't describe, and
//! the next run repairs everything and removes its temp files.

use crate::support::*;

fn job(ws: &Ws) -> String {
    ws.synth("m", &["--vocab", "30000", "--hidden", "256", "--dtype", "f32", "--tie", "false", "--store", "head"]);
    ws.job("version: 1\njobs:\n  - path: ../models/m\n    frames: [gamma, gamma_prime]\n").to_str().unwrap().to_string()
}

fn spawn(ws: &Ws, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gamma-run"));
    cmd.args(args).current_dir(ws.dir.path()).env("HF_ENDPOINT", "http://127.0.0.1:9").env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
}

fn temp_files(ws: &Ws) -> Vec<String> {
    let mut out = Vec::new();
    for dir in ["tensors/m", "manifests/m"] {
        for e in std::fs::read_dir(ws.path(dir)).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.ends_with(".tmp") {
                out.push(format!("{dir}/{n}"));
            }
        }
    }
    out
}

/// Runs the job twice at once. With locks both succeed; without, one may fail cleanly (exit 2, e.g. "changed
/// while it was read" when the other replaced its input), but neither may crash or corrupt anything.
fn two_at_once(ws: &Ws, job: &str, env: &[(&str, &str)], both_succeed: bool) -> String {
    let (a, b) = (spawn(ws, &[job], env), spawn(ws, &[job], env));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    for o in [&a, &b] {
        let code = o.status.code();
        assert!(code == Some(0) || (!both_succeed && code == Some(2)), "{o:?}");
    }
    format!("{}{}", String::from_utf8_lossy(&a.stdout), String::from_utf8_lossy(&b.stdout))
}

#[test]
fn a_second_process_waits_and_finds_the_output_fresh() {
    let ws = Ws::new();
    let job = job(&ws);
    let out = two_at_once(&ws, &job, &[], true);
    for frame in ["gamma", "gamma_prime"] {
        assert_eq!(out.matches(&format!("built    m/{frame} ")).count(), 1, "built exactly once: {out}");
    }
    assert_eq!(ws.run(&["verify"]).code(), 0);
    assert_eq!(ws.run(&["status", &job, "--check"]).code(), 0);
    assert!(temp_files(&ws).is_empty());
}

#[test]
fn without_locks_two_writers_still_leave_whole_outputs() {
    let ws = Ws::new();
    let job = job(&ws);
    for _ in 0..2 {
        two_at_once(&ws, &job, &[("GAMMA_RUN_NO_LOCK", "1")], false);
        // Whatever was stored describes its own bytes.
        if ws.path("manifests/m").exists() {
            assert_eq!(ws.run(&["verify"]).code(), 0);
        }
    }
    assert_eq!(ws.run_env(&[&job], &[("GAMMA_RUN_NO_LOCK", "1")]).code(), 0);
    let o = ws.run(&["verify", "--recompute"]);
    assert_eq!(o.code(), 0, "{}", o.all());
    assert_eq!(ws.read("tensors/m/W.safetensors"), reference_w(&ws.path("models/m"), "lm_head.weight"));
    assert!(temp_files(&ws).is_empty());
}

#[test]
fn killed_runs_leave_nothing_half_written_and_the_next_run_repairs() {
    let ws = Ws::new();
    let job = job(&ws);
    // Random kill points, different on every run (the seed is printed on failure), bounded in number and time.
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64 | 1;
    let mut x = seed;
    let started = std::time::Instant::now();
    let delays: Vec<u64> = (0..10)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            1 + x % 400
        })
        .collect();
    for (i, delay_ms) in delays.into_iter().enumerate() {
        if started.elapsed().as_secs() > 30 {
            break;
        }
        eprintln!("kill {i} after {delay_ms} ms (seed {seed})");
        if i % 2 == 1 {
            ws.run(&[&job, "--force"]).ok();
        }
        let mut child = spawn(&ws, &[&job, "--force"], &[]);
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Whatever is there now is either absent or whole: every manifest describes the bytes beside it.
        if ws.path("manifests/m").exists() {
            let v = ws.run(&["verify"]);
            assert_eq!(v.code(), 0, "after a kill at {delay_ms} ms (seed {seed}): {}", v.all());
        }
        let o = ws.run(&[&job]);
        assert_eq!(o.code(), 0, "{}", o.all());
        assert_eq!(ws.run(&["verify"]).code(), 0);
        assert_eq!(ws.run(&["status", &job, "--check"]).code(), 0);
        assert!(temp_files(&ws).is_empty(), "after a kill at {delay_ms} ms: {:?}", temp_files(&ws));
    }
    assert_eq!(ws.read("tensors/m/W.safetensors"), reference_w(&ws.path("models/m"), "lm_head.weight"));
}

#[test]
fn a_crash_at_each_step_of_a_commit_is_repaired_by_the_next_run() {
    let steps = ["after-temp-write", "after-fsync", "after-rename", "after-manifest-removed", "before-manifest"];
    for step in steps {
        for rebuild in [false, true] {
            let ws = Ws::new();
            ws.synth("m", &["--shards", "2"]);
            let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n").to_str().unwrap().to_string();
            if rebuild {
                assert_eq!(ws.run(&[&job]).code(), 0);
            }
            let o = ws.run_env(&[&job, "--force"], &[("GAMMA_RUN_FAILPOINT", step)]);
            assert_ne!(o.code(), 0, "{step}: the failpoint did not fire: {}", o.all());
            assert!(o.stderr.contains(&format!("failpoint {step}")), "{step}: {}", o.stderr);
            // Every manifest still describes the bytes beside it; an output without a manifest is stale.
            if ws.path("manifests/m/gamma.json").exists() {
                assert_eq!(ws.run(&["verify"]).code(), 0, "{step} (rebuild: {rebuild})");
            } else if ws.path("tensors/m/W.safetensors").exists() {
                let s = ws.run(&["status", &job]).ok();
                assert!(s.stdout.contains("stale    m/gamma: manifest missing"), "{step}: {}", s.stdout);
            }
            let o = ws.run(&[&job]);
            assert_eq!(o.code(), 0, "{step}: {}", o.all());
            assert_eq!(ws.run(&["verify"]).code(), 0);
            assert_eq!(ws.run(&["status", &job, "--check"]).code(), 0);
            assert!(temp_files(&ws).is_empty(), "{step}: {:?}", temp_files(&ws));
        }
    }
}

#[test]
fn a_full_disk_is_a_clear_error_that_keeps_the_previous_output() {
    let ws = Ws::new();
    ws.synth("m", &["--vocab", "256", "--hidden", "64"]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n").to_str().unwrap().to_string();
    let tensors = ws.path("tensors");
    std::fs::create_dir_all(&tensors).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=192k", "tmpfs"])
        .arg(&tensors)
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        skip(
            "a_full_disk_is_a_clear_error_that_keeps_the_previous_output",
            "cannot mount a small tmpfs here (needs root and CAP_SYS_ADMIN)",
        );
        return;
    }
    let result = std::panic::catch_unwind(|| {
        assert_eq!(ws.run(&[&job]).code(), 0);
        let (w, m) = (ws.read("tensors/m/W.safetensors"), ws.read("manifests/m/gamma.json"));
        // A bigger W no longer fits beside the old one.
        ws.synth("m", &["--vocab", "2048", "--hidden", "64"]);
        let o = ws.run(&[&job]);
        assert_eq!(o.code(), 2, "{}", o.all());
        assert!(o.stdout.contains("tensors/m/W.safetensors") && o.stdout.contains("No space left"), "{}", o.stdout);
        assert_eq!((ws.read("tensors/m/W.safetensors"), ws.read("manifests/m/gamma.json")), (w, m));
        assert!(temp_files(&ws).is_empty(), "{:?}", temp_files(&ws));
    });
    let _ = std::process::Command::new("umount").arg(&tensors).status();
    result.unwrap();
}
