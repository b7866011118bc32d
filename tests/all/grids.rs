//! Checkpoint grids (issue 14): `revisions:` as a list or `{match: GLOB}` over the repo's branches and tags, one
//! refs listing instead of a lookup per revision, each distinct W fetched once, byte-identical W reported, a
//! lock file for offline judgement, sharding, and an interrupted grid resumed.

use crate::support::hub::TestHub;
use crate::support::*;

/// A pythia-like repo: step0–step2 serve the same files; step3 other weights; step4 step3's W in a shard whose
/// other tensors differ (so its file and W's offset differ); step10 other weights again.
fn grid_repo(ws: &Ws, hub: &TestHub) -> Vec<(String, std::path::PathBuf)> {
    let a = ws.synth("a", &["--vocab", "2048", "--seed", "1"]);
    let b = ws.synth("b", &["--vocab", "2048", "--seed", "2"]);
    let c = ws.synth("c", &["--vocab", "2048", "--seed", "3"]);
    // b's checkpoint with one more tensor: the shard differs, W's bytes do not.
    let b2 = ws.path("models/b2");
    std::fs::create_dir_all(&b2).unwrap();
    std::fs::copy(b.join("config.json"), b2.join("config.json")).unwrap();
    let bytes = std::fs::read(b.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let zeros = vec![0u8; 64];
    let mut tensors = st.tensors();
    tensors.push((
        "aaa.extra".into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![16], &zeros).unwrap(),
    ));
    std::fs::write(b2.join("model.safetensors"), safetensors::serialize(tensors, None).unwrap()).unwrap();
    let revs = [("step0", &a), ("step1", &a), ("step2", &a), ("step3", &b), ("step4", &b2), ("step10", &c)];
    let mut out = Vec::new();
    for (i, (name, dir)) in revs.iter().enumerate() {
        let commit = format!("{:040x}", i + 1);
        hub.publish("org/pythia", &commit, dir, Some(name));
        out.push((name.to_string(), (*dir).clone()));
    }
    hub.publish("org/pythia", &format!("{:040x}", 99), &c, Some("main"));
    out
}

#[test]
fn a_matched_grid_fetches_each_distinct_w_once_and_reports_identical_ones() {
    let ws = Ws::new();
    let hub = TestHub::start();
    let revs = grid_repo(&ws, &hub);
    let job = ws.job("version: 1\njobs:\n  - model: org/pythia\n    name: p\n    revisions: {match: \"step*\"}\n");
    let job = job.to_str().unwrap();
    let env = [("HF_ENDPOINT", hub.endpoint.as_str())];
    let o = ws.run_env(&[job], &env).ok();
    // Natural order, every revision its own output.
    let built: Vec<&str> = o
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("built    "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        built,
        ["p@step0/gamma", "p@step1/gamma", "p@step2/gamma", "p@step3/gamma", "p@step4/gamma", "p@step10/gamma"]
    );
    for (rev, dir) in &revs {
        assert_eq!(
            ws.read(&format!("tensors/p@{rev}/W.safetensors")),
            reference_w(dir, "model.embed_tokens.weight"),
            "{rev}"
        );
    }
    // One refs listing; no revision lookups; W fetched from the CDN for 4 distinct (file, range) pairs only.
    let reqs = hub.requests();
    assert_eq!(reqs.iter().filter(|r| r.path.ends_with("/refs")).count(), 1, "{reqs:?}");
    assert!(!reqs.iter().any(|r| r.path.contains("/revision/")), "{reqs:?}");
    let w_len = ws.manifest("p@step0", "gamma")["source"]["range"]["length"].as_u64().unwrap();
    assert_eq!(w_fetches(&hub, w_len), 4, "two of step0–step2 share the third's bytes: {reqs:?}");
    // Which of step0–step2 fetched depends on which worker got there first (they run in parallel); the other
    // two say whose bytes they took.
    let (mut fetched, mut shared) = (Vec::new(), Vec::new());
    for rev in ["step0", "step1", "step2"] {
        let m = ws.manifest(&format!("p@{rev}"), "gamma");
        assert_eq!(m["source"]["revision"], rev);
        match m["source"]["fetch"].as_str() {
            Some("shared") => shared.push(m["source"]["shared_from"].as_str().unwrap().to_string()),
            Some("range") => fetched.push(format!("p@{rev}")),
            other => panic!("{rev}: fetch {other:?}"),
        }
    }
    assert_eq!((fetched.len(), shared.len()), (1, 2), "{fetched:?} {shared:?}");
    assert!(shared.iter().all(|s| s.starts_with("p@step") && s != "p@step3"), "{shared:?}");
    // The duplicate report: the same files, and different files with the same W.
    assert!(o.stdout.contains("same W   p: step0 = step1 = step2 (3 revisions; W sha256"), "{}", o.stdout);
    assert!(
        o.stdout.contains("same W   p: step3 = step4 (2 revisions") && o.stdout.contains("different files, the same W"),
        "{}",
        o.stdout
    );

    // status: fresh, one listing, the duplicates in JSON too.
    hub.reset_counters();
    let o = ws.run_env(&["status", job, "--format", "json"], &env).ok();
    let rows: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 6);
    assert_eq!(rows[1]["same_w_as"], serde_json::json!(["p@step0", "p@step2"]));
    assert_eq!(hub.requests().len(), 1, "a fresh grid is judged from one refs listing");
    let md = ws.run_env(&["status", job, "--format", "markdown"], &env).ok();
    assert!(
        md.stdout.contains("Revisions with byte-identical W") && md.stdout.contains("| p | step3, step4 |"),
        "{}",
        md.stdout
    );

    // A lock file pins the grid: judged with no network at all.
    let o = ws.run_env(&["lock", job], &env).ok();
    assert!(o.stdout.contains("locked   p: 6 revisions of org/pythia"), "{}", o.stdout);
    let lock: serde_json::Value = serde_json::from_slice(&ws.read("jobs/test.lock.json")).unwrap();
    assert_eq!(lock["grids"]["p"]["revisions"][5]["revision"], "step10");
    assert_eq!(lock["job_file"], "test.yaml");
    // Issue 24: jobs/test.yml beside it would share jobs/test.lock.json: refused for both, naming both.
    let pins = ws.read("jobs/test.lock.json");
    std::fs::copy(ws.path("jobs/test.yaml"), ws.path("jobs/test.yml")).unwrap();
    let o = ws.run_env(&["lock", "jobs/test.yml"], &env).expect(2);
    assert!(o.stderr.contains("test.yml") && o.stderr.contains("would share one lock file"), "{}", o.all());
    // (status finds the copy producing the same outputs first, and refuses that, naming it too)
    let o = ws.run_env(&["status", job, "--offline"], &env).expect(2);
    assert!(o.stderr.contains("test.yml"), "{}", o.all());
    std::fs::remove_file(ws.path("jobs/test.yml")).unwrap();
    assert_eq!(ws.read("jobs/test.lock.json"), pins, "the refused lock wrote nothing");
    // Offline, judged from the lock and the workspace alone: not one request (counted, not timed).
    let served = hub.served();
    let o = ws.run(&["status", job, "--check", "--offline"]).ok();
    assert_eq!(o.stdout.lines().filter(|l| l.starts_with("fresh")).count(), 6, "{}", o.stdout);
    assert_eq!(hub.served(), served, "status --offline asked the Hub");
    drop(hub);
    ws.run(&["verify", job]).ok();
    // Offline with no lock, the grid cannot know its revisions: said, not guessed.
    std::fs::remove_file(ws.path("jobs/test.lock.json")).unwrap();
    let o = ws.run(&["status", job, "--offline"]).expect(2);
    assert!(
        o.stdout.starts_with("error    p/gamma: grid p (org/pythia") && o.stdout.contains("run `gamma-run lock"),
        "{}",
        o.stdout
    );
    // Issue 28: and only that grid fails: a local job beside it is still judged, and built.
    ws.synth("local", &[]);
    std::fs::write(
        ws.path("jobs/test.yaml"),
        "version: 1\njobs:\n  - model: org/pythia\n    name: p\n    revisions: {match: \"step*\"}\n  - path: ../models/local\n",
    )
    .unwrap();
    let o = ws.run(&[job, "--offline"]).expect(2);
    assert!(o.stdout.contains("built    local/gamma") && o.stdout.contains("FAILED   p/gamma: grid p"), "{}", o.stdout);
    assert!(o.stdout.contains("1 built, 0 fresh, 1 failed"), "{}", o.stdout);
}

#[test]
fn listed_grids_shards_and_an_interrupted_grid() {
    let ws = Ws::new();
    let hub = TestHub::start();
    grid_repo(&ws, &hub);
    let env = [("HF_ENDPOINT", hub.endpoint.as_str())];
    let job =
        ws.job("version: 1\njobs:\n  - model: org/pythia\n    name: p\n    revisions: [step3, step1, step10, step2]\n");
    let job = job.to_str().unwrap();
    // Listed order is kept; the shards of a grid partition it.
    let mut seen = Vec::new();
    for k in 0..3 {
        let o = ws.run_env(&["status", job, "--shard", &format!("{k}/3")], &env).ok();
        seen.extend(o.stdout.lines().map(|l| l.split_whitespace().nth(1).unwrap().trim_end_matches(':').to_string()));
    }
    seen.sort();
    assert_eq!(seen, ["p@step1/gamma", "p@step10/gamma", "p@step2/gamma", "p@step3/gamma"]);
    // Two built, then a crash in the middle of the rest: a rerun keeps the two and builds what is missing.
    ws.run_env(&[job, "--only", "p@step3", "--only", "p@step1"], &env).ok();
    let mut crash = env.to_vec();
    crash.push(("GAMMA_RUN_FAILPOINT", "before-manifest"));
    let o = ws.run_env(&[job], &crash);
    assert_ne!(o.code(), 0, "aborted");
    let o = ws.run_env(&[job], &env).ok();
    assert!(o.stdout.contains("fresh    p@step3/gamma") && o.stdout.contains("fresh    p@step1/gamma"), "{}", o.stdout);
    assert!(
        o.stdout.contains("built    p@step10/gamma") && o.stdout.contains("built    p@step2/gamma"),
        "{}",
        o.stdout
    );
    assert_eq!(ws.manifest("p@step2", "gamma")["source"]["shared_from"], "p@step1");
    // Syntax errors name the line and what to do.
    for (yaml, want) in [
        ("  - model: org/pythia\n    revision: main\n    revisions: [step1]\n", "either `revision:` or `revisions:`"),
        ("  - path: ../models/a\n    revisions: [step1]\n", "applies to `model:` jobs"),
        ("  - model: org/pythia\n    revisions: []\n", "`revisions:` is empty"),
        ("  - model: org/pythia\n    revisions: [refs/pr/1]\n", "must be a plain name"),
        ("  - model: org/pythia\n    revisions: [step1, step1]\n", "listed twice"),
        ("  - model: org/pythia\n    revisions: {glob: step}\n", "revisions"),
        (
            "  - model: org/pythia\n    name: p\n    revisions: [step1]\n  - model: org/pythia\n    name: p@step1\n",
            "duplicate output name",
        ),
    ] {
        let bad = ws.job(&format!("version: 1\njobs:\n{yaml}"));
        let o = ws.run(&["status", bad.to_str().unwrap()]).expect(2);
        assert!(o.stderr.contains(want), "{yaml}: {}", o.stderr);
    }
}

/// Many revisions are latency-bound: `--jobs` overlaps their requests, and one connection budget
/// (`GAMMA_RUN_HTTP_CONNECTIONS`) bounds what all workers have in flight together.
#[test]
fn parallel_revisions_share_one_connection_budget() {
    let ws = Ws::new();
    let hub = TestHub::start();
    grid_repo(&ws, &hub);
    hub.faults(crate::support::hub::Faults { slow_ms: 30, ..Default::default() });
    let job = ws.job("version: 1\njobs:\n  - model: org/pythia\n    name: p\n    revisions: {match: \"step*\"}\n");
    let job = job.to_str().unwrap();
    let o = ws.run_env(&[job, "-j", "6"], &[("HF_ENDPOINT", &hub.endpoint), ("GAMMA_RUN_HTTP_CONNECTIONS", "2")]).ok();
    assert!(o.stdout.contains("6 built"), "{}", o.stdout);
    assert!(hub.max_in_flight() <= 2, "at most 2 requests in flight, saw {}", hub.max_in_flight());
    // Without the cap the workers do overlap (the budget is what held them).
    std::fs::remove_dir_all(ws.path("tensors")).unwrap();
    std::fs::remove_dir_all(ws.path("manifests")).unwrap();
    hub.reset_counters();
    ws.run_env(&[job, "-j", "6"], &[("HF_ENDPOINT", &hub.endpoint)]).ok();
    assert!(hub.max_in_flight() > 2, "saw {}", hub.max_in_flight());
}

/// Requests for W (ranges of at least a quarter of W) that reached the CDN.
fn w_fetches(hub: &TestHub, w_len: u64) -> usize {
    hub.requests()
        .iter()
        .filter(|r| {
            r.origin == "cdn"
                && r.range.as_deref().is_some_and(|g| {
                    let (a, b) = g.trim_start_matches("bytes=").split_once('-').unwrap();
                    b.parse::<u64>().unwrap() - a.parse::<u64>().unwrap() + 1 >= w_len / 4
                })
        })
        .count()
}

#[test]
fn parallel_workers_fetch_each_distinct_w_once_through_rate_limits_and_cut_connections() {
    let ws = Ws::new();
    let hub = TestHub::start();
    let revs = grid_repo(&ws, &hub);
    let job = ws.job("version: 1\njobs:\n  - model: org/pythia\n    name: p\n    revisions: {match: \"step*\"}\n");
    let job = job.to_str().unwrap();
    let env = [("HF_ENDPOINT", hub.endpoint.as_str()), ("GAMMA_RUN_HTTP_BACKOFF_MS", "10")];
    // Slow answers, so that workers overlap on the same content; a 429 with Retry-After, 503s and a cut body
    // on the way: retried and resumed, and the grid does not fail.
    hub.faults(crate::support::hub::Faults {
        slow_ms: 20,
        rate_limit: 1,
        fail_503: 2,
        drop_mid_body: 1,
        ..Default::default()
    });
    let o = ws.run_env(&[job, "-j", "6"], &env).ok();
    assert!(o.stdout.contains("6 built"), "{}", o.stdout);
    for (rev, dir) in &revs {
        assert_eq!(
            ws.read(&format!("tensors/p@{rev}/W.safetensors")),
            reference_w(dir, "model.embed_tokens.weight"),
            "{rev}"
        );
    }
    let w_len = ws.manifest("p@step0", "gamma")["source"]["range"]["length"].as_u64().unwrap();
    // 4 distinct (file, range) pairs; the retried and resumed requests come on top of those.
    let shared: Vec<String> = ["step0", "step1", "step2"]
        .iter()
        .filter_map(|r| ws.manifest(&format!("p@{r}"), "gamma")["source"]["shared_from"].as_str().map(String::from))
        .collect();
    assert_eq!(shared.len(), 2, "two of step0–step2 take the third's bytes: {shared:?}");
    let served_w = w_fetches(&hub, w_len);
    assert!((4..=4 + 4).contains(&served_w), "4 distinct W, each fetched once (plus retries): {served_w}");

    // Without faults the count is exact, and it does not depend on the worker count.
    for workers in ["1", "3", "8"] {
        std::fs::remove_dir_all(ws.path("tensors")).unwrap();
        std::fs::remove_dir_all(ws.path("manifests")).unwrap();
        hub.faults(crate::support::hub::Faults { slow_ms: 10, ..Default::default() });
        hub.reset_counters();
        let o = ws.run_env(&[job, "-j", workers], &env).ok();
        assert!(o.stdout.contains("6 built"), "{}", o.stdout);
        assert_eq!(w_fetches(&hub, w_len), 4, "-j {workers}");
        assert!(o.stdout.contains("same W   p: step0 = step1 = step2"), "{}", o.stdout);
    }

    // With a derived frame: a deferred revision's job runs again as soon as the one it waited for is done, and
    // then builds both its outputs; every output is reported once, as built (none is left deferred or skipped).
    let job2 = ws.job(
        "version: 1\njobs:\n  - model: org/pythia\n    name: q\n    revisions: {match: \"step*\"}\n    frames: [gamma, gamma_prime]\n",
    );
    hub.faults(crate::support::hub::Faults { slow_ms: 10, ..Default::default() });
    hub.reset_counters();
    let o = ws.run_env(&[job2.to_str().unwrap(), "-j", "8"], &env).ok();
    assert!(o.stdout.contains("12 built"), "{}", o.stdout);
    assert_eq!(o.stdout.matches("built    q@").count(), 12, "{}", o.stdout);
    assert_eq!(w_fetches(&hub, w_len), 4);
}

/// Issue 30: a sibling is taken only when its file is the one its manifest describes. Deleting one revision's W
/// (the first in name order, so that it is its own first candidate) and rerunning rebuilds it from a sibling
/// with its old bytes; a sibling whose file was replaced is passed over. Fails if sharing skips the stat/hash
/// check of the candidate (the revision then copies its own missing file, or a replaced one).
#[test]
fn a_deleted_or_replaced_grid_output_is_never_taken_as_a_sibling() {
    let ws = Ws::new();
    let hub = TestHub::start();
    grid_repo(&ws, &hub);
    let job = ws.job("version: 1\njobs:\n  - model: org/pythia\n    name: p\n    revisions: [step0, step1, step2]\n");
    let job = job.to_str().unwrap();
    let env = [("HF_ENDPOINT", hub.endpoint.as_str())];
    ws.run_env(&[job, "-j", "1"], &env).ok();
    let old = ws.read("tensors/p@step0/W.safetensors");
    let w_len = ws.manifest("p@step0", "gamma")["source"]["range"]["length"].as_u64().unwrap();
    // step0's file gone; step1's replaced by other bytes of the same size (its manifest untouched).
    std::fs::remove_file(ws.path("tensors/p@step0/W.safetensors")).unwrap();
    let mut other = ws.read("tensors/p@step1/W.safetensors");
    let last = other.len() - 1;
    other[last] ^= 0x40;
    std::fs::write(ws.path("tensors/p@step1/W.safetensors"), &other).unwrap();
    hub.reset_counters();
    let o = ws.run_env(&[job, "-j", "1"], &env).expect(0);
    assert!(o.stdout.contains("built    p@step0/gamma") && o.stdout.contains("built    p@step1/gamma"), "{}", o.all());
    assert_eq!(sha256(&ws.read("tensors/p@step0/W.safetensors")), sha256(&old), "step0 rebuilt with its old bytes");
    assert_eq!(sha256(&ws.read("tensors/p@step1/W.safetensors")), sha256(&old), "step1 rebuilt with its old bytes");
    let m = ws.manifest("p@step0", "gamma");
    assert_eq!((m["source"]["fetch"].as_str(), m["source"]["shared_from"].as_str()), (Some("shared"), Some("p@step2")));
    assert_eq!(w_fetches(&hub, w_len), 0, "W came from step2's stored file: {:?}", hub.requests());
    ws.run(&["verify"]).ok();
}

/// Issue 24: a wrong W cannot be laundered through grid sharing. Revision step3's manifest is edited to claim
/// step0's shard (its digest), and step0 is then rebuilt:
/// - edited alone, step3's manifest reads as "manifest edited" and is never a sibling: step0 fetches its own W;
/// - sealed again as a forger would (self-consistent), step0 does take step3's bytes — but its manifest says
///   whose they are, and once step3's manifest is repaired `verify` says step3 no longer vouches for them;
/// - a planted manifest of an output the job file does not have (`p@evil`) is never a sibling.
#[test]
fn a_wrong_w_is_not_laundered_through_grid_sharing() {
    let ws = Ws::new();
    let hub = TestHub::start();
    grid_repo(&ws, &hub);
    let job = ws.job("version: 1\njobs:\n  - model: org/pythia\n    name: p\n    revisions: [step0, step3]\n");
    let job = job.to_str().unwrap();
    let env = [("HF_ENDPOINT", hub.endpoint.as_str())];
    ws.run_env(&[job, "-j", "1"], &env).ok();
    let w = |rev: &str| sha256(&ws.read(&format!("tensors/p@{rev}/W.safetensors")));
    let (w0, w3) = (w("step0"), w("step3"));
    assert_ne!(w0, w3);
    let good3 = ws.read("manifests/p@step3/gamma.json");
    let m0 = ws.manifest("p@step0", "gamma");
    let shard0 =
        m0["source"]["files"].as_array().unwrap().iter().find(|f| f["path"] == m0["source"]["range"]["file"]).unwrap()
            ["sha256"]
            .clone();
    let claim_step0s_shard = |m: &mut serde_json::Value| {
        let file = m["source"]["range"]["file"].clone();
        for f in m["source"]["files"].as_array_mut().unwrap() {
            if f["path"] == file {
                f["sha256"] = shard0.clone();
            }
        }
        m["source"]["range"] = m0["source"]["range"].clone();
    };
    let write3 = |m: &serde_json::Value| {
        std::fs::write(ws.path("manifests/p@step3/gamma.json"), serde_json::to_vec_pretty(m).unwrap()).unwrap();
    };

    // Edited alone: caught, and not lent.
    let mut m3 = ws.manifest("p@step3", "gamma");
    claim_step0s_shard(&mut m3);
    write3(&m3);
    let s = ws.run_env(&["status", job, "--check"], &env).expect(1);
    assert!(s.stdout.contains("p@step3/gamma: manifest edited"), "{}", s.stdout);
    std::fs::remove_file(ws.path("tensors/p@step0/W.safetensors")).unwrap();
    ws.run_env(&[job, "-j", "1"], &env).ok();
    assert_eq!(w("step0"), w0, "step0 took the edited sibling's bytes");
    assert_eq!(ws.manifest("p@step0", "gamma")["source"]["fetch"], "range");
    assert_eq!(w("step3"), w3);
    ws.run_env(&["verify"], &env).ok();

    // A planted output of no job (a copy of step3's manifest and file under another grid name): never lent.
    let mut evil = ws.manifest("p@step3", "gamma");
    claim_step0s_shard(&mut evil);
    evil["name"] = "p@evil".into();
    evil["output"]["path"] = "tensors/p@evil/W.safetensors".into();
    crate::trust::reseal(&mut evil);
    std::fs::create_dir_all(ws.path("manifests/p@evil")).unwrap();
    std::fs::create_dir_all(ws.path("tensors/p@evil")).unwrap();
    std::fs::write(ws.path("manifests/p@evil/gamma.json"), serde_json::to_vec_pretty(&evil).unwrap()).unwrap();
    std::fs::copy(ws.path("tensors/p@step3/W.safetensors"), ws.path("tensors/p@evil/W.safetensors")).unwrap();
    std::fs::remove_file(ws.path("tensors/p@step0/W.safetensors")).unwrap();
    ws.run_env(&[job, "-j", "1"], &env).ok();
    assert_eq!(w("step0"), w0, "step0 took a planted manifest's bytes");
    std::fs::remove_dir_all(ws.path("manifests/p@evil")).unwrap();
    std::fs::remove_dir_all(ws.path("tensors/p@evil")).unwrap();

    // Sealed again: self-consistent, so lent; the copy says whose bytes it holds, and verify re-checks that.
    let mut m3 = ws.manifest("p@step3", "gamma");
    claim_step0s_shard(&mut m3);
    crate::trust::reseal(&mut m3);
    write3(&m3);
    std::fs::remove_file(ws.path("tensors/p@step0/W.safetensors")).unwrap();
    ws.run_env(&[job, "-j", "1"], &env).ok();
    assert_eq!(ws.manifest("p@step0", "gamma")["source"]["shared_from"], "p@step3");
    std::fs::write(ws.path("manifests/p@step3/gamma.json"), &good3).unwrap();
    let v = ws.run_env(&["verify"], &env).expect(1);
    assert!(
        v.stdout.contains("p@step0/gamma.json")
            && v.stdout.contains("shared from p@step3, whose manifest no longer records"),
        "{}",
        v.stdout
    );
    // verify --sources re-extracts W from step0's own shard and says the same in its own words.
    let v = ws.run_env(&["verify", "--sources"], &env).expect(1);
    assert!(v.stdout.contains("MISMATCH") && v.stdout.contains("p@step0"), "{}", v.stdout);
}

/// Issue 24: a manifest written before seals existed (no `source.seal`) stays fresh, but is never lent to a
/// sibling: it cannot prove the shard digest sharing relies on, so the sibling fetches W instead.
#[test]
fn an_unsealed_manifest_stays_fresh_but_is_not_lent() {
    let ws = Ws::new();
    let hub = TestHub::start();
    grid_repo(&ws, &hub);
    let job = ws.job("version: 1\njobs:\n  - model: org/pythia\n    name: p\n    revisions: [step0, step1]\n");
    let job = job.to_str().unwrap();
    let env = [("HF_ENDPOINT", hub.endpoint.as_str())];
    ws.run_env(&[job, "-j", "1"], &env).ok();
    for rev in ["step0", "step1"] {
        let path = ws.path(&format!("manifests/p@{rev}/gamma.json"));
        let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        m["source"].as_object_mut().unwrap().remove("seal");
        m["source"].as_object_mut().unwrap().remove("shared_from");
        m["source"]["fetch"] = "range".into();
        std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    }
    let o = ws.run_env(&["status", job, "--check"], &env).ok();
    assert!(o.stdout.starts_with("fresh    p@step0/gamma\nfresh    p@step1/gamma\n"), "{}", o.stdout);
    std::fs::remove_file(ws.path("tensors/p@step1/W.safetensors")).unwrap();
    let w_len = ws.manifest("p@step0", "gamma")["source"]["range"]["length"].as_u64().unwrap();
    hub.reset_counters();
    ws.run_env(&[job, "-j", "1"], &env).ok();
    assert_eq!(ws.manifest("p@step1", "gamma")["source"]["fetch"], "range");
    assert_eq!(w_fetches(&hub, w_len), 1, "W fetched, not copied from the unsealed sibling");
    ws.run_env(&["verify"], &env).ok();
}

/// Issue 28: `lock` offline says it needs the network (it used to say there was nothing to lock).
#[test]
fn lock_offline_says_it_needs_the_network() {
    let ws = Ws::new();
    let job = ws.job(
        "version: 1\njobs:\n  - model: org/a\n    revisions: [s1, s2]\n  - model: org/b\n    revisions: {match: \"s*\"}\n",
    );
    let o = ws.run_env(&["lock", job.to_str().unwrap()], &[("HF_HUB_OFFLINE", "1")]).expect(2);
    assert!(o.stderr.contains("the commits of its 2 Hub job(s), and this run is offline"), "{}", o.stderr);
    let local = ws.job("version: 1\njobs:\n  - path: ../models/m\n");
    let o = ws.run(&["lock", local.to_str().unwrap()]).expect(2);
    assert!(o.stderr.contains("no `model:` job to lock"), "{}", o.stderr);
}

/// Issue 28: `lock` pins single-revision jobs too (`revision: main` → its commit): judged offline at that commit
/// with no refs in any cache, until `lock` runs again.
#[test]
fn lock_pins_single_revision_jobs() {
    let ws = Ws::new();
    let hub = TestHub::start();
    let dir = ws.synth("m", &[]);
    hub.publish("org/m", &"1".repeat(40), &dir, Some("main"));
    let job = ws.job("version: 1\njobs:\n  - model: org/m\n");
    let job = job.to_str().unwrap();
    let env = [("HF_ENDPOINT", hub.endpoint.as_str())];
    ws.run_env(&[job], &env).ok();
    let o = ws.run_env(&["lock", job], &env).ok();
    assert!(o.stdout.contains(&format!("locked   m: org/m main → {}", "1".repeat(40))), "{}", o.stdout);
    let lock: serde_json::Value = serde_json::from_slice(&ws.read("jobs/test.lock.json")).unwrap();
    assert_eq!(lock["pins"]["m"]["commit"], "1".repeat(40));
    drop(hub);
    // Offline, a range fetch left no refs/main anywhere: the pin is what judges it.
    assert_eq!(ws.run(&["status", job, "--offline", "--check"]).ok().stdout, "fresh    m/gamma\n");
    // A lock file written for another job file is refused, saying how to write this one's.
    let mut other = lock.clone();
    other["job_file"] = "other.yaml".into();
    std::fs::write(ws.path("jobs/test.lock.json"), serde_json::to_vec_pretty(&other).unwrap()).unwrap();
    let o = ws.run(&["status", job, "--offline"]).expect(2);
    assert!(o.stderr.contains("pins other.yaml, not") && o.stderr.contains("gamma-run lock"), "{}", o.stderr);
}
