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
    let o = ws.run_env(&[job.to_str().unwrap(), "--offline", "--force"], &env).expect(2);
    assert!(o.stdout.contains("not in the Hugging Face cache"), "{}", o.stdout);
}

#[test]
fn quiet_runs_print_only_what_failed() {
    let ws = Ws::new();
    ws.synth("m", &[]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n  - path: ../models/none\n");
    let o = ws.run(&[job.to_str().unwrap(), "-q"]).expect(2);
    assert!(!o.stdout.contains("built    m/gamma"), "{}", o.stdout);
    assert!(
        o.stdout.contains("FAILED   none/gamma") && o.stdout.contains("1 built, 0 fresh, 1 failed"),
        "{}",
        o.stdout
    );
    let good = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
    let o = ws.run(&[good.to_str().unwrap(), "-q"]).ok();
    assert_eq!(o.stdout, "", "nothing to say when all is well");
    // Issue 28: -q is silent on success for status, verify and attest too (`status --check -q` as a CI gate),
    // and says only what is wrong otherwise.
    let good = good.to_str().unwrap();
    for args in [vec!["status", good, "--check", "-q"], vec!["verify", "-q"], vec!["attest", "-q"]] {
        let o = ws.run(&args).ok();
        assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("", ""), "{args:?}");
    }
    std::fs::remove_file(ws.path("manifests/m/gamma.json")).unwrap();
    let o = ws.run(&["status", good, "--check", "-q"]).expect(1);
    assert_eq!(o.stdout, "stale    m/gamma: manifest missing\n");
    ws.run(&[good, "-q"]).ok();
    let mut w = ws.read("tensors/m/W.safetensors");
    let last = w.len() - 1;
    w[last] ^= 1;
    std::fs::write(ws.path("tensors/m/W.safetensors"), &w).unwrap();
    let o = ws.run(&["verify", "-q"]).expect(1);
    assert!(o.stdout.starts_with("MISMATCH  ") && o.stdout.ends_with("0 verified, 1 mismatched\n"), "{}", o.stdout);
    assert_eq!(o.stdout.lines().count(), 2, "{}", o.stdout);
}

#[test]
fn log_lines_are_coloured_only_when_asked_or_on_a_terminal() {
    let ws = Ws::new();
    ws.synth("m", &["--tie", "true", "--store", "both-differ"]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
    let job = job.to_str().unwrap();
    // The warning about a head stored beside a tied embedding is a log line; stderr here is a pipe.
    let o = ws.run(&[job]).ok();
    assert!(o.stderr.starts_with("warning: tied config but both"), "as cargo prints warnings: {:?}", o.stderr);
    assert!(!o.stderr.contains('\u{1b}'), "no colour into a pipe: {:?}", o.stderr);
    // Times and the level column from -v on (issue 28: not at the default verbosity).
    let o = ws.run(&[job, "--force", "-v"]).ok();
    assert!(o.stderr.contains("Z  WARN tied config"), "{:?}", o.stderr);
    let o = ws.run(&[job, "--force", "--color", "always"]).ok();
    assert!(o.stderr.contains("\u{1b}["), "--color always colours: {:?}", o.stderr);
    let o = ws.run(&["--color", "never", job, "--force"]).ok();
    assert!(!o.stderr.contains('\u{1b}'), "{:?}", o.stderr);
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let ws = Ws::new();
    ws.synth("m", &[]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
    ws.run(&[job.to_str().unwrap()]).ok();
    for args in [vec!["status", job.to_str().unwrap(), "--format", "json"], vec!["completions", "bash"], vec!["man"]] {
        let mut child = ws
            .command(&args, &[])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // `| head` that has already exited
        let o = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!stderr.contains("panicked") && !stderr.contains("failed printing"), "{args:?}: {stderr}");
        assert_eq!(o.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

#[test]
fn writing_into_the_hf_cache_tags_it_as_a_cache() {
    let ws = Ws::new();
    let hub = crate::support::hub::TestHub::start();
    let dir = ws.synth("m", &[]);
    hub.publish("org/m", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &dir, Some("main"));
    let job = ws.job("version: 1\njobs:\n  - model: org/m\n    fetch: full\n");
    ws.run_env(&[job.to_str().unwrap()], &[("HF_ENDPOINT", &hub.endpoint)]).ok();
    let tag = String::from_utf8(ws.read("hf-cache/CACHEDIR.TAG")).unwrap();
    assert!(tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55\n"), "{tag}");
    assert!(ws.path("hf-cache/.locks/models--org--m").is_dir(), "the Python client's lock layout");
}

/// With no network, a Hub endpoint that cannot be reached is learnt once: no retries with backoff, every Hub job
/// fails fast with one error naming the endpoint and what to do (issue 15).
#[test]
fn an_unreachable_endpoint_fails_every_hub_job_fast_and_says_what_to_do() {
    let ws = Ws::new();
    let job = ws.job(
        "version: 1\njobs:\n  - model: org/a\n  - model: org/b\n    revision: main\n  - model: org/c\n    frames: [gamma, gamma_prime]\n",
    );
    // A closed loopback port refuses the connection (the test environment's default endpoint); a long backoff
    // would make retries visible in the elapsed time.
    let env = [("GAMMA_RUN_HTTP_BACKOFF_MS", "2000"), ("GAMMA_RUN_HTTP_ATTEMPTS", "6")];
    // Counted, not timed: with -v the client says when it learns a host is unreachable (at most once per job
    // asking at the same moment), and every retry would be a "retrying" warning.
    let o = ws.run_within(20, &[job.to_str().unwrap(), "--dry-run", "-v"], &env).expect(2);
    let learnt = o.stderr.lines().filter(|l| l.contains("is unreachable")).count();
    assert!((1..=3).contains(&learnt), "learnt unreachable {learnt} times: {}", o.all());
    assert!(!o.all().contains("retrying"), "a refused connection is not retried: {}", o.all());
    for name in ["a", "b", "c"] {
        assert!(o.stdout.contains(&format!("FAILED   {name}/gamma")), "{name}: {}", o.stdout);
    }
    let all = o.all();
    assert!(all.contains("cannot reach the Hub endpoint http://127.0.0.1:9"), "{all}");
    assert!(all.contains("--offline") && all.contains("HF_HUB_OFFLINE=1") && all.contains("HF_ENDPOINT"), "{all}");
    // status the same way.
    let o = ws.run_within(20, &["status", job.to_str().unwrap(), "-v"], &env).expect(2);
    assert!(!o.all().contains("retrying"), "status does not retry a refused connection: {}", o.all());
    // A name that does not resolve (`.invalid` never does) is the same: not retried.
    let env = [("HF_ENDPOINT", "http://gamma-run-test.invalid"), ("GAMMA_RUN_HTTP_BACKOFF_MS", "2000")];
    let o = ws.run_within(60, &["status", job.to_str().unwrap()], &env).expect(2);
    assert!(o.all().contains("cannot reach the Hub endpoint http://gamma-run-test.invalid"), "{}", o.all());
    assert!(!o.all().contains("retrying"), "{}", o.all());
}

/// `--dry-run` tells the truth (issue 15): skipped outputs are counted apart from failed ones, and a cosmetic
/// config edit predicts a γ rebuild with unchanged bytes — not a γ′ rebuild the real run then skips.
#[test]
fn dry_runs_count_skips_apart_and_do_not_predict_rebuilds_the_run_skips() {
    let ws = Ws::new();
    ws.synth("m", &[]);
    let job = ws.job(
        "version: 1\njobs:\n  - path: ../models/m\n    frames: [gamma, gamma_prime]\n  - path: ../models/none\n    frames: [gamma, gamma_prime]\n",
    );
    let job = job.to_str().unwrap();
    let o = ws.run(&[job, "--dry-run"]).expect(2);
    assert!(o.stdout.contains("SKIPPED  none/gamma_prime: its input gamma failed"), "{}", o.stdout);
    assert!(o.stdout.contains("\n2 to build, 0 fresh, 1 failed, 1 skipped  (in "), "{}", o.stdout);
    let o = ws.run(&[job]).expect(2);
    assert!(o.stdout.contains("\n2 built, 0 fresh, 1 failed, 1 skipped  (in "), "{}", o.stdout);

    // A cosmetic edit of config.json: γ is stale (its config changed) but W is where it was, in the same shard.
    let cfg = ws.path("models/m/config.json");
    let text = std::fs::read_to_string(&cfg).unwrap().replacen('{', "{\n  \"_comment\": \"re-exported\",", 1);
    std::fs::write(&cfg, text).unwrap();
    let dry = ws.run(&[job, "--dry-run", "--only", "m"]).ok();
    assert!(dry.stdout.contains("would build m/gamma  (config.json changed)"), "{}", dry.stdout);
    assert!(dry.stdout.contains("W is unchanged (same tensor, range and shard)"), "{}", dry.stdout);
    assert!(dry.stdout.contains("fresh    m/gamma_prime"), "{}", dry.stdout);
    // Issue 28: status agrees with what run will do: γ stale (and why), γ′ fresh.
    let st = ws.run(&["status", job, "--only", "m"]).ok();
    assert!(st.stdout.contains("stale    m/gamma: config.json changed  (its W is unchanged"), "{}", st.stdout);
    assert!(st.stdout.contains("fresh    m/gamma_prime"), "{}", st.stdout);
    let real = ws.run(&[job, "--only", "m"]).ok();
    assert!(
        real.stdout.contains("built    m/gamma") && real.stdout.contains("fresh    m/gamma_prime"),
        "{}",
        real.stdout
    );
    // When W's bytes do change (the shard rewritten), the dry run predicts the γ′ rebuild, and the run makes it.
    let before = ws.read("tensors/m/W.safetensors");
    ws.synth("m", &["--seed", "9"]);
    let dry = ws.run(&[job, "--dry-run", "--only", "m"]).ok();
    assert!(dry.stdout.contains("would build m/gamma_prime  (input gamma would be rebuilt)"), "{}", dry.stdout);
    assert!(!dry.stdout.contains("W is unchanged"), "{}", dry.stdout);
    let st = ws.run(&["status", job, "--only", "m"]).ok();
    assert!(st.stdout.contains("stale    m/gamma_prime: input gamma is not fresh"), "{}", st.stdout);
    let real = ws.run(&[job, "--only", "m"]).ok();
    assert!(real.stdout.contains("built    m/gamma_prime"), "{}", real.stdout);
    assert_ne!(ws.read("tensors/m/W.safetensors"), before);
}

/// `verify`, `attest` and `show` take a job file, as `run` and `status` do: they audit that file's outputs,
/// wherever it puts them and wherever they are run from, and print paths as `run` does (issue 15).
#[test]
fn verify_attest_and_show_take_a_job_file() {
    let ws = Ws::new();
    ws.synth("a", &[]);
    ws.synth("b", &["--seed", "3"]);
    let a = ws.path("jobs/a.yaml");
    std::fs::write(&a, "version: 1\njobs:\n  - path: ../models/a\n    frames: [gamma, gamma_prime]\n").unwrap();
    let b = ws.path("jobs/b.yaml");
    std::fs::write(&b, "version: 1\njobs:\n  - path: ../models/b\n  - path: ../models/never\n").unwrap();
    ws.run(&["jobs/a.yaml"]).ok();
    ws.run(&["jobs/b.yaml"]).expect(2);

    let o = ws.run(&["verify", "jobs/a.yaml"]).ok();
    assert_eq!(
        o.stdout,
        "ok        tensors/a/W.safetensors\nok        tensors/a/W_prime.safetensors\n2 verified, 0 mismatched\n"
    );
    // Only b's own outputs; the one never built is named, not counted as verified.
    let o = ws.run(&["verify", "jobs/b.yaml"]).ok();
    assert_eq!(o.stdout, "ok        tensors/b/W.safetensors\n1 verified, 0 mismatched\n");
    assert!(o.stderr.contains("1 output(s) not built yet, so not audited: never/gamma"), "{}", o.stderr);
    // From another directory, the same outputs, shown relative to it.
    let mut cmd = ws.command(&["verify", "a.yaml"], &[]);
    let o = cmd.current_dir(ws.path("jobs")).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("ok        ../tensors/a/W.safetensors\n"), "{o:?}");

    flip(&ws.path("tensors/b/W.safetensors"), 200);
    let o = ws.run(&["verify", "jobs/b.yaml"]).expect(1);
    assert!(o.stdout.contains("MISMATCH  manifests/b/gamma.json (tensors/b/W.safetensors)"), "{}", o.stdout);
    ws.run(&["verify", "jobs/a.yaml"]).ok();

    let o = ws.run(&["show", "jobs/a.yaml", "--json"]).ok();
    let shown: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let frames: Vec<&str> =
        shown.as_array().unwrap().iter().map(|s| s["manifest"]["frame"].as_str().unwrap()).collect();
    assert_eq!(frames, ["gamma", "gamma_prime"]);
    let o = ws.run(&["show", "jobs/b.yaml"]).expect(1);
    assert!(
        o.stdout.contains("file             tensors/b/W.safetensors") && o.stdout.contains("matches          NO"),
        "{}",
        o.stdout
    );

    let o = ws.run(&["attest", "jobs/a.yaml"]).ok();
    assert_eq!(
        o.stdout,
        "wrote    attestations/a/gamma.intoto.json\nwrote    attestations/a/gamma_prime.intoto.json\n2 statements\n"
    );
    assert!(!ws.path("attestations/b").exists(), "only the job file's outputs");
    let o = ws.run(&["verify", "jobs/missing.yaml"]).expect(2);
    assert!(o.stderr.contains("jobs/missing.yaml"), "{}", o.stderr);
}

/// The man page is one page: it refers to no `gamma-run-<sub>(1)` page (none is shipped), documents every
/// subcommand's options, and its ENVIRONMENT section lists every variable the source reads (issue 15).
#[test]
fn the_man_page_refers_to_no_missing_pages_and_lists_every_environment_variable() {
    let ws = Ws::new();
    let page = ws.run(&["man"]).ok().stdout.clone();
    let dangling: Vec<&str> =
        page.lines().filter(|l| l.contains("gamma\\-run\\-") || l.contains("gamma-run-")).collect();
    assert!(dangling.is_empty(), "refers to pages that do not exist: {dangling:?}");
    for sub in ["run", "status", "verify", "show", "attest", "completions", "man"] {
        assert!(page.contains(&format!("\\fBgamma\\-run {sub}")), "{sub} is documented");
    }
    assert!(page.contains("\\-\\-dry\\-run") && page.contains("\\-\\-only\\fR <PATTERN>"), "options, with values");
    assert!(!page.contains("synth"), "the hidden developer command stays hidden");
    let env_section = page.split(".SH ENVIRONMENT").nth(1).expect("an ENVIRONMENT section");
    let env_section = env_section.split(".SH ").next().unwrap();
    // Every variable name the source mentions as a string literal ("HF_…", "GAMMA_RUN_…", …) is listed.
    let mut names = std::collections::BTreeSet::new();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for piece in text.split('"').skip(1).step_by(2) {
                    let var = ["HF_", "HUGGINGFACE_", "GAMMA_RUN_", "XDG_"].iter().any(|p| piece.starts_with(p))
                        || ["HOME", "NO_COLOR", "RUST_LOG"].contains(&piece);
                    if var && piece.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                        names.insert(piece.to_string());
                    }
                }
            }
        }
    }
    assert!(names.len() >= 15, "the scan finds the variables: {names:?}");
    for n in &names {
        assert!(env_section.contains(&format!("\\fB{}\\fR", n.replace('-', "\\-"))), "{n} is not in ENVIRONMENT");
    }
}

/// `gamma-run clean` (alias `gc`): what no job in the given job files produces any more, and temp files killed
/// runs left, listed with `--dry-run` and removed without it — only gamma-run's own files, never one another run
/// is building (issue 15).
#[test]
fn clean_lists_then_removes_what_no_job_produces_any_more() {
    let ws = Ws::new();
    ws.synth("a", &[]);
    ws.synth("b", &["--seed", "2"]);
    ws.synth("c", &["--seed", "3"]);
    let job = ws.job(
        "version: 1\njobs:\n  - path: ../models/a\n    frames: [gamma, gamma_prime]\n  - path: ../models/b\n  - path: ../models/c\n",
    );
    let job = job.to_str().unwrap();
    ws.run(&[job]).ok();
    // The job file moves on: a loses γ′, b goes. A killed run left a temp file; a user keeps notes beside W.
    ws.job("version: 1\njobs:\n  - path: ../models/a\n  - path: ../models/c\n");
    std::fs::write(ws.path("tensors/a/.W.safetensors.Ab12Cd.tmp"), vec![0u8; 4096]).unwrap();
    std::fs::write(ws.path("tensors/a/notes.txt"), "mine").unwrap();

    let o = ws.run(&["clean", "jobs/test.yaml", "--dry-run"]).ok();
    let expect = [
        "would remove manifests/a/gamma_prime.json",
        "would remove manifests/b/gamma.json",
        "would remove tensors/a/.W.safetensors.Ab12Cd.tmp  (4.0 KiB; a temp file left by an interrupted run)",
        "would remove tensors/a/W_prime.safetensors",
        "would remove tensors/b/W.safetensors  (64.1 KiB; no job in jobs/test.yaml produces b/gamma)",
    ];
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{}", o.stdout);
    for (line, want) in lines.iter().zip(expect) {
        assert!(line.starts_with(want), "{line:?} should start with {want:?}");
    }
    assert!(lines[5].starts_with("5 files would be removed ("), "{}", o.stdout);
    assert!(ws.path("tensors/b/W.safetensors").exists() && ws.path("tensors/a/.W.safetensors.Ab12Cd.tmp").exists());

    // Another gamma-run building b/gamma holds its lock: b's files stay, the rest go.
    let locks = ws.path(".gamma-run/locks");
    std::fs::create_dir_all(&locks).unwrap();
    let held = std::fs::File::create(locks.join("b.gamma.lock")).unwrap();
    held.lock().unwrap();
    // Without --yes, and no terminal to ask on: nothing removed, and the error says how.
    let o = ws.run(&["gc", job]).expect(2);
    assert!(o.stderr.contains("clean would remove 5 files") && o.stderr.contains("--yes"), "{}", o.all());
    assert!(ws.path("tensors/a/W_prime.safetensors").exists());
    let o = ws.run(&["gc", job, "-y"]).expect(2);
    assert!(
        o.stdout.contains("KEPT         tensors/b/W.safetensors") && o.stdout.contains("another gamma-run"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("removed      tensors/a/W_prime.safetensors"), "{}", o.stdout);
    assert!(o.stdout.contains("3 files removed"), "{}", o.stdout);
    drop(held);
    let o = ws.run(&["clean", job, "--yes"]).ok();
    assert!(o.stdout.contains("2 files removed"), "{}", o.stdout);
    assert!(!ws.path("tensors/b").exists() && !ws.path("manifests/b").exists(), "empty name directories go too");
    assert!(ws.path("tensors/a/notes.txt").exists(), "files that are not gamma-run's stay");
    // Named like gamma-run's but not its own: a file no manifest describes, a "manifest" that is not one.
    std::fs::create_dir_all(ws.path("tensors/stray")).unwrap();
    std::fs::write(ws.path("tensors/stray/E.safetensors"), "user data").unwrap();
    std::fs::create_dir_all(ws.path("manifests/other")).unwrap();
    std::fs::write(ws.path("manifests/other/gamma.json"), "{\"not\": \"a manifest\"}").unwrap();
    assert_eq!(ws.run(&["clean", job]).ok().stdout, "nothing to remove\n");
    assert_eq!(ws.run(&["clean", job, "-y"]).ok().stdout, "nothing to remove\n");
    assert!(ws.path("tensors/stray/E.safetensors").exists() && ws.path("manifests/other/gamma.json").exists());
    // What the job file still produces is untouched and fresh.
    let o = ws.run(&["status", job, "--check"]).ok();
    assert_eq!(o.stdout, "fresh    a/gamma\nfresh    c/gamma\n");
    ws.run(&["verify", job]).ok();
}

/// Issue 24: two job files in one workspace. `clean` with one of them keeps what the other produces (it reads
/// every job file of the workspace), and refuses when one of them cannot be read; two job files producing the
/// same output name are refused by `run` and `status`, naming both.
#[test]
fn clean_keeps_what_another_job_file_of_the_workspace_produces() {
    let ws = Ws::new();
    ws.synth("a", &[]);
    ws.synth("b", &["--seed", "2"]);
    std::fs::write(
        ws.path("jobs/mine.yaml"),
        "version: 1\njobs:\n  - path: ../models/a\n    frames: [gamma, gamma_prime]\n",
    )
    .unwrap();
    std::fs::write(ws.path("jobs/two.yaml"), "version: 1\njobs:\n  - path: ../models/b\n").unwrap();
    ws.run(&["jobs/mine.yaml"]).ok();
    ws.run(&["jobs/two.yaml"]).ok();
    let o = ws.run(&["clean", "jobs/two.yaml", "--yes"]).ok();
    assert_eq!(o.stdout, "nothing to remove\n");
    assert!(ws.path("tensors/a/W_prime.safetensors").exists());
    // A job file of the workspace that cannot be read: clean cannot know what it keeps, so it removes nothing.
    std::fs::write(ws.path("jobs/mine.yaml"), "version: 1\njobs:\n  - path: ../models/a\n    frames: [gamma, nope]\n")
        .unwrap();
    let o = ws.run(&["clean", "jobs/two.yaml", "--yes"]).expect(2);
    assert!(o.stderr.contains("mine.yaml") && o.stderr.contains("cannot be read"), "{}", o.all());
    assert!(ws.path("tensors/a/W.safetensors").exists());
    // Once mine.yaml no longer lists a's γ′, clean with either file removes it.
    std::fs::write(ws.path("jobs/mine.yaml"), "version: 1\njobs:\n  - path: ../models/a\n").unwrap();
    let o = ws.run(&["clean", "jobs/two.yaml", "--yes"]).ok();
    assert!(o.stdout.contains("2 files removed"), "{}", o.stdout);
    assert!(o.stdout.contains("no job in jobs/two.yaml, jobs/mine.yaml produces a/gamma_prime"), "{}", o.stdout);
    // The same output name in two job files of the workspace: refused, naming both.
    std::fs::write(ws.path("jobs/clash.yml"), "version: 1\njobs:\n  - path: ../models/b\n    name: a\n").unwrap();
    for cmd in [vec!["jobs/clash.yml"], vec!["status", "jobs/clash.yml"]] {
        let o = ws.run(&cmd).expect(2);
        assert!(o.stderr.contains("jobs/clash.yml") && o.stderr.contains("mine.yaml"), "{}", o.all());
        assert!(o.stderr.contains("output \"a\" is also produced by"), "{}", o.all());
    }
    assert!(ws.manifest("a", "gamma")["source"]["path"].as_str().unwrap().ends_with("models/a"), "a untouched");
    ws.run(&["verify"]).ok();
}

/// Issue 24: the workspace rule. A job file at the project's top with no `output:` writes beside itself (it used
/// to write into the project's parent); one in `jobs/sub/` writes into the project, or where its outputs already
/// are; a dry run names the workspace.
#[test]
fn a_job_file_without_output_keys_writes_inside_its_project() {
    let ws = Ws::new();
    ws.synth("a", &[]);
    std::fs::write(ws.path("top.yaml"), "version: 1\njobs:\n  - path: models/a\n").unwrap();
    let root = std::fs::canonicalize(ws.path("")).unwrap();
    let o = ws.run(&["top.yaml", "--dry-run"]).ok();
    assert!(o.stdout.starts_with(&format!("workspace {}  (tensors/, manifests/)\n", root.display())), "{}", o.stdout);
    ws.run(&["top.yaml"]).ok();
    assert!(ws.path("tensors/a/W.safetensors").is_file() && ws.path("manifests/a/gamma.json").is_file());
    assert!(!root.parent().unwrap().join("tensors/a").exists(), "wrote outside the project");
    // jobs/sub/x.yaml: the project (the directory holding jobs/), where the top-level file's outputs are.
    std::fs::create_dir_all(ws.path("jobs/sub")).unwrap();
    std::fs::write(ws.path("jobs/sub/x.yaml"), "version: 1\njobs:\n  - path: ../../models/a\n    name: a2\n").unwrap();
    ws.run(&["jobs/sub/x.yaml"]).ok();
    assert!(ws.path("tensors/a2/W.safetensors").is_file() && !ws.path("jobs/tensors").exists());
    assert_eq!(ws.run(&["status", "jobs/sub/x.yaml", "--check"]).ok().stdout, "fresh    a2/gamma\n");
}

/// Issue 28: `show NAME` and `show NAME/FRAME` find the output in the workspace here; a name that is not there is
/// an error saying what was looked for.
#[test]
fn show_takes_an_output_name() {
    let ws = Ws::new();
    ws.synth("qwen3-tied", &[]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/qwen3-tied\n    frames: [gamma, gamma_prime]\n");
    ws.run(&[job.to_str().unwrap()]).ok();
    let one = ws.run(&["show", "qwen3-tied/gamma"]).ok();
    assert_eq!(one.stdout, ws.run(&["show", "tensors/qwen3-tied/W.safetensors"]).ok().stdout);
    let both = ws.run(&["show", "qwen3-tied"]).ok();
    assert!(both.stdout.contains("W.safetensors") && both.stdout.contains("W_prime.safetensors"), "{}", both.stdout);
    let o = ws.run(&["show", "nope"]).expect(2);
    assert!(o.stderr.contains("no output of that name"), "{}", o.stderr);
}

/// Issue 28: a `path:` that does not exist is said when the job file is read, at its place, with the nearest
/// existing name and where paths are relative to; the job fails with the same words, the others still run.
#[test]
fn a_path_that_does_not_exist_is_named_at_its_place_with_a_suggestion() {
    let ws = Ws::new();
    ws.synth("qwen3-tied", &[]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/qwen3-tied\n  - path: ../models/qwen3-tide\n");
    let o = ws.run(&[job.to_str().unwrap()]).expect(2);
    let at = format!("{}:4:11: `path:` \"../models/qwen3-tide\" does not exist; did you mean ", job.display());
    assert!(o.stderr.contains(&at) && o.stderr.contains("models/qwen3-tied?"), "{}", o.stderr);
    assert!(o.stderr.contains("relative to the job file's directory"), "{}", o.stderr);
    assert!(o.stdout.contains("built    qwen3-tied/gamma"), "{}", o.stdout);
    assert!(
        o.stdout.contains("FAILED   qwen3-tide/gamma") && o.stdout.contains("does not exist; did you mean"),
        "{}",
        o.stdout
    );
}

/// Issue 28: an unknown key gets a "did you mean" (as clap and cargo do); a tab is pointed at where it is.
#[test]
fn job_file_typos_and_tabs_are_pointed_at() {
    let ws = Ws::new();
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n    frams: [gamma]\n");
    let o = ws.run(&[job.to_str().unwrap()]).expect(2);
    assert!(
        o.stderr.contains("test.yaml:4:5: unknown field `frams`") && o.stderr.contains("; did you mean `frames`?"),
        "{}",
        o.stderr
    );
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n\tframes: [gamma]\n");
    let o = ws.run(&[job.to_str().unwrap()]).expect(2);
    assert!(o.stderr.contains("test.yaml:4:1: a tab: YAML indents with spaces only"), "{}", o.stderr);
}

/// Issue 28: `init` writes a commented job file that parses and says where outputs go (and never overwrites);
/// `get` builds W for one model with no job file, where `-o` says.
#[test]
fn init_writes_a_starter_job_file_and_get_needs_none() {
    let ws = Ws::new();
    std::fs::remove_dir_all(ws.path("jobs")).unwrap();
    let o = ws.run(&["init"]).ok();
    let root = std::fs::canonicalize(ws.path("")).unwrap();
    assert!(o.stdout.starts_with("wrote    jobs/models.yaml\n"), "{}", o.stdout);
    assert!(
        o.stdout.contains(&format!("outputs  {}/tensors and {}/manifests", root.display(), root.display())),
        "{}",
        o.stdout
    );
    let text = String::from_utf8(ws.read("jobs/models.yaml")).unwrap();
    for key in [
        "output:",
        "tensors:",
        "manifests:",
        "remote:",
        "defaults:",
        "revision:",
        "revisions:",
        "frames:",
        "fetch:",
        "name:",
        "tensor:",
        "path:",
    ] {
        assert!(text.contains(key), "{key} is not shown");
    }
    // It parses: judged offline, its one Hub job is an error of that job, not of the file.
    let o = ws.run(&["status", "jobs/models.yaml", "--offline"]).expect(2);
    assert!(o.stdout.starts_with("error    Qwen3-4B-Instruct-2507/gamma: "), "{}", o.stdout);
    ws.run(&["init"]).expect(2);
    // get: a local checkpoint, and a Hub model at a revision, each into -o's workspace.
    let dir = ws.synth("m", &[]);
    let o = ws.run(&["get", dir.to_str().unwrap(), "--frame", "gamma_prime", "-o", "nb"]).ok();
    assert!(
        o.stdout.contains("→ nb/tensors/m/W.safetensors") && o.stdout.contains("→ nb/tensors/m/W_prime.safetensors"),
        "{}",
        o.stdout
    );
    assert_eq!(ws.read("nb/tensors/m/W.safetensors"), reference_w(&dir, "model.embed_tokens.weight"));
    assert!(ws.run(&["get", dir.to_str().unwrap(), "-o", "nb"]).ok().stdout.starts_with("fresh    m/gamma"));
    let hub = crate::support::hub::TestHub::start();
    hub.publish("org/tiny", &"c".repeat(40), &dir, Some("v1"));
    let o = ws.run_env(&["get", "org/tiny@v1", "-o", "nb"], &[("HF_ENDPOINT", hub.endpoint.as_str())]).ok();
    assert!(
        o.stdout.contains("built    tiny/gamma") && o.stdout.contains("→ nb/tensors/tiny/W.safetensors"),
        "{}",
        o.stdout
    );
    let m: serde_json::Value = serde_json::from_slice(&ws.read("nb/manifests/tiny/gamma.json")).unwrap();
    assert_eq!(m["source"]["revision"], "v1");
}

/// Issue 28: a local source inside the workspace is recorded relative to it, so a moved workspace (a CI cache
/// restored elsewhere) still re-reads its sources and attests where they are now.
#[test]
fn a_moved_workspace_still_finds_its_local_sources() {
    let ws = Ws::new();
    std::fs::create_dir_all(ws.path("proj/jobs")).unwrap();
    let o = ws.run(&["synth", "--out", "proj/models/m"]).ok();
    drop(o);
    std::fs::write(ws.path("proj/jobs/x.yaml"), "version: 1\njobs:\n  - path: ../models/m\n").unwrap();
    ws.run(&["proj/jobs/x.yaml"]).ok();
    let m: serde_json::Value = serde_json::from_slice(&ws.read("proj/manifests/m/gamma.json")).unwrap();
    assert_eq!(m["source"]["path"], "models/m", "recorded relative to the workspace");
    std::fs::rename(ws.path("proj"), ws.path("moved")).unwrap();
    let v = ws.run(&["verify", "--sources", "moved/manifests"]).ok();
    assert!(v.stdout.contains("source files re-read, W re-extracted"), "{}", v.stdout);
    ws.run(&["attest", "moved/manifests"]).ok();
    let st: serde_json::Value = serde_json::from_slice(&ws.read("moved/attestations/m/gamma.intoto.json")).unwrap();
    let deps = st["predicate"]["buildDefinition"]["resolvedDependencies"].to_string();
    let now = std::fs::canonicalize(ws.path("moved")).unwrap();
    assert!(deps.contains(&format!("file://{}/models/m/config.json", now.display())), "{deps}");
    assert!(ws.run(&["status", "moved/jobs/x.yaml", "--check"]).ok().stdout.starts_with("fresh    m/gamma"));
}

/// Issue 28: a result line stays short: the size in human units and 12 hex digits of the SHA-256 (the manifest,
/// `show` and `--json` carry the whole).
#[test]
fn result_lines_are_short() {
    let ws = Ws::new();
    ws.synth("m", &[]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
    let o = ws.run(&[job.to_str().unwrap()]).ok();
    let sha = ws.manifest("m", "gamma")["output"]["sha256"].as_str().unwrap().to_string();
    let line = o.stdout.lines().next().unwrap();
    assert!(line.contains(&format!("sha256 {}…  → tensors/m/W.safetensors", &sha[..12])), "{line}");
    assert!(!line.contains(&sha) && line.chars().count() < 110, "{line}");
}

/// The lines users and scripts read, compared whole (the elapsed time masked), not by `contains`: a reworded or an
/// extra line fails here. The synthetic model is deterministic, so its digests are too.
#[test]
fn the_lines_users_read_are_exactly_these() {
    let ws = Ws::new();
    ws.synth("m", &["--vocab", "300", "--hidden", "16"]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n    frames: [gamma, gamma_prime]\n");
    let job = job.to_str().unwrap();
    // "(in 0.01 s;" → "(in T s;": the only part that varies between runs.
    let masked = |s: &str| {
        s.lines()
            .map(|l| match (l.find("(in "), l.find(" s;")) {
                (Some(a), Some(b)) if a < b => format!("{}(in T{}", &l[..a], &l[b..]),
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let o = ws.run(&[job]).ok();
    assert_eq!(
        masked(&o.stdout),
        "built    m/gamma  (never built)  9.4 KiB  sha256 0beac3a0ae40…  → tensors/m/W.safetensors\n\
         built    m/gamma_prime  (never built)  19.0 KiB  sha256 5a0530a6a9c5…  → tensors/m/W_prime.safetensors\n\
         2 built, 0 fresh, 0 failed  (in T s; 0 bytes fetched from the Hub, 28.4 KiB written)"
    );
    assert_eq!(o.stderr, "");
    let o = ws.run(&["status", job]).ok();
    assert_eq!(o.stdout, "fresh    m/gamma\nfresh    m/gamma_prime\n");
    let o = ws.run(&["verify", job]).ok();
    assert_eq!(
        o.stdout,
        "ok        tensors/m/W.safetensors\nok        tensors/m/W_prime.safetensors\n2 verified, 0 mismatched\n"
    );
    let rows: serde_json::Value =
        serde_json::from_str(&ws.run(&["status", job, "--format", "json"]).ok().stdout).unwrap();
    assert_eq!(
        rows[1],
        serde_json::json!({
            "commit": null, "frame": "gamma_prime", "manifest": "manifests/m/gamma_prime.json", "name": "m",
            "notes": [], "output": "tensors/m/W_prime.safetensors", "reasons": [], "same_w_as": [],
            "sha256": "5a0530a6a9c5ba4fccad196802e0dcf4ee2aa5babef6f7796d367296aab08312", "state": "fresh"
        })
    );
    // A parameter changed: the stale reason and the dry run's plan, word for word.
    let job =
        ws.job("version: 1\njobs:\n  - path: ../models/m\n    frames: [gamma, {name: gamma_prime, dtype: bf16}]\n");
    let job = job.to_str().unwrap();
    let o = ws.run(&["status", job]).ok();
    assert_eq!(
        o.stdout,
        "fresh    m/gamma\nstale    m/gamma_prime: output.dtype changed F32 → BF16; parameter dtype changed f32 → bf16\n"
    );
    let o = ws.run(&[job, "-n"]).ok();
    let root = ws.path("").canonicalize().unwrap();
    assert_eq!(
        masked(&o.stdout),
        format!(
            "workspace {}  (tensors/, manifests/)\nfresh    m/gamma\nwould build m/gamma_prime  (output.dtype changed \
             F32 → BF16; parameter dtype changed f32 → bf16); reads its inputs (9.4 KiB)\n1 to build, 1 fresh, 0 failed  \
             (in T s; 0 bytes fetched from the Hub)",
            root.display()
        )
    );
}

/// `show` and the main job-file error, compared whole (the build time masked).
#[test]
fn show_and_a_job_file_error_read_exactly_so() {
    let ws = Ws::new();
    ws.synth("m", &["--vocab", "300", "--hidden", "16"]);
    let job = ws.job("version: 1\njobs:\n  - path: ../models/m\n    frames: [gamma, gamma_prime]\n");
    ws.run(&[job.to_str().unwrap(), "-q"]).ok();
    let o = ws.run(&["show", "m/gamma_prime"]).ok();
    let shown: Vec<&str> = o.stdout.lines().filter(|l| !l.starts_with("built ")).collect();
    assert_eq!(
        shown.join("\n"),
        "file             tensors/m/W_prime.safetensors\n\
         size             19416 bytes\n\
         sha256           5a0530a6a9c5ba4fccad196802e0dcf4ee2aa5babef6f7796d367296aab08312\n\
         tensor           W_prime  F32  [300, 16]\n\
         tensor           centroid  F32  [16]\n\
         manifest         manifests/m/gamma_prime.json\n\
         matches          yes: size and sha256 as recorded\n\
         name / frame     m / gamma_prime (version 1)\n\
         input            gamma tensors/m/W.safetensors sha256 \
         0beac3a0ae4038d88163cfcff516812902f3cd97cac047ba47fcb104624b3cc2\n\
         parameter        dtype = f32\n\
         NaNs             0"
    );
    assert!(o.stdout.lines().last().unwrap().starts_with("built            20"), "{}", o.stdout);
    let bad = ws.job("version: 1\njobs:\n  - path: ../models/m\n    frames: [gama]\n");
    let o = ws.run(&[bad.to_str().unwrap()]).expect(2);
    let known = "known frames: gamma, gamma_prime, embedding, token_stats, causal_metric, causal";
    assert_eq!(
        o.stderr,
        format!(
            "error: {path}:4:14: unknown frame \"gama\" (did you mean gamma?); {known}\n --> {path}:4:14\n  |\n\
             2 | jobs:\n3 |   - path: ../models/m\n4 |     frames: [gama]\n  |              ^ unknown frame \"gama\" \
             (did you mean gamma?); {known}\n",
            path = bad.display()
        )
    );
    assert_eq!(o.stdout, "");
}
