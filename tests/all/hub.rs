//! The Hub source against a loopback hub (tests/support/hub.rs): every seed layout fetched by range and
//! bit-identical to the reference, bytes transferred ≈ W, revisions and freshness with and without network,
//! faults recovered from or failed cleanly with nothing partial stored, and the token kept to its origin.

use crate::support::hub::{Faults, GOOD_TOKEN, Req, TestHub};
use crate::support::*;

const C1: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const C2: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn env(hub: &TestHub) -> Vec<(&'static str, String)> {
    vec![("HF_ENDPOINT", hub.endpoint.clone()), ("HF_TOKEN", GOOD_TOKEN.to_string())]
}

#[track_caller]
fn run(ws: &Ws, hub: &TestHub, args: &[&str]) -> Out {
    let e = env(hub);
    let pairs: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ws.run_env(args, &pairs)
}

/// One model on the hub: (workspace, hub, job path, checkpoint dir).
/// The file names in org/m's blob store (none if it does not exist).
fn blobs(ws: &Ws) -> Vec<std::ffi::OsString> {
    let dir = ws.path("hf-cache/models--org--m/blobs");
    std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default()
}

fn one(synth: &[&str], yaml_extra: &str) -> (Ws, TestHub, String, std::path::PathBuf) {
    let ws = Ws::new();
    let hub = TestHub::start();
    let dir = ws.synth("m", synth);
    hub.publish("org/m", C1, &dir, Some("main"));
    let job = ws.job(&format!("version: 1\njobs:\n  - model: org/m\n{yaml_extra}"));
    (ws, hub, job.to_str().unwrap().to_string(), dir)
}

#[test]
fn every_seed_layout_is_fetched_by_range_bit_identical() {
    let ws = Ws::new();
    let hub = TestHub::start();
    let layouts: &[(&str, &[&str], &str)] = &[
        ("qwen3", &["--arch", "qwen3", "--shards", "3", "--filler-mib", "1"], "model.embed_tokens.weight"),
        ("qwen2", &["--arch", "qwen2", "--shards", "2", "--tie", "false", "--store", "both-differ"], "lm_head.weight"),
        (
            "gemma3",
            &["--arch", "gemma3", "--shards", "2", "--tie", "absent"],
            "language_model.model.embed_tokens.weight",
        ),
        ("gemma3n", &["--arch", "gemma3-new", "--tie", "true"], "model.language_model.embed_tokens.weight"),
        ("phi3", &["--arch", "phi3", "--tie", "false", "--store", "head", "--shards", "2"], "lm_head.weight"),
        (
            "f32",
            &["--arch", "llama", "--dtype", "f32", "--tie", "false", "--store", "head", "--specials"],
            "lm_head.weight",
        ),
        (
            "f16",
            &["--arch", "llama", "--dtype", "f16", "--tie", "false", "--store", "head", "--shards", "2", "--specials"],
            "lm_head.weight",
        ),
    ];
    let mut yaml = String::from("version: 1\njobs:\n");
    for (name, args, _) in layouts {
        let dir = ws.synth(name, args);
        hub.publish(&format!("org/{name}"), C1, &dir, Some("main"));
        yaml.push_str(&format!("  - model: org/{name}\n"));
    }
    let job = ws.job(&yaml);
    let o = run(&ws, &hub, &[job.to_str().unwrap()]);
    assert_eq!(o.code(), 0, "{}", o.all());
    let mut w_total = 0u64;
    for (name, _, key) in layouts {
        let dir = ws.path(&format!("models/{name}"));
        assert_eq!(ws.read(&format!("tensors/{name}/W.safetensors")), reference_w(&dir, key), "{name}");
        let m = ws.manifest(name, "gamma");
        assert_eq!(m["source"]["kind"], "hub");
        assert_eq!(m["source"]["fetch"], "range");
        assert_eq!(m["source"]["commit"], C1);
        assert_eq!(m["source"]["revision"], "main");
        assert_eq!(m["source"]["tensor"], *key);
        let shard = m["source"]["range"]["file"].as_str().unwrap();
        let rec = m["source"]["files"].as_array().unwrap().iter().find(|f| f["path"] == shard).unwrap().clone();
        assert_eq!(
            rec["sha256"].as_str().unwrap(),
            sha256(&std::fs::read(dir.join(shard)).unwrap()),
            "the X-Linked-Etag"
        );
        w_total += m["source"]["range"]["length"].as_u64().unwrap();
    }
    // Headers (one ≤100 kB read per model, capped at the file) and small files on top of W; never whole shards.
    let served = hub.served();
    assert!(served >= w_total && served <= w_total + layouts.len() as u64 * 110_000, "served {served} for W {w_total}");
    let cdn: Vec<_> = hub.requests().into_iter().filter(|r| r.origin == "cdn").collect();
    assert!(cdn.iter().all(|r| r.range.is_some()), "every CDN request is a range");
}

#[test]
fn large_ranges_are_split_and_bytes_stay_close_to_w() {
    let (ws, hub, job, dir) = one(&["--vocab", "24000", "--hidden", "256", "--shards", "2", "--filler-mib", "2"], "");
    let o = run(&ws, &hub, &[&job]);
    assert_eq!(o.code(), 0, "{}", o.all());
    assert_eq!(ws.read("tensors/m/W.safetensors"), reference_w(&dir, "model.embed_tokens.weight"));
    let w = 24000u64 * 256 * 2;
    assert!(hub.served() <= w + w / 100 + (1 << 20), "served {} for W {w}", hub.served());
    let pieces = hub.requests().iter().filter(|r| r.origin == "cdn" && r.range.is_some()).count();
    assert!(pieces >= 3, "W ({w} bytes) should be fetched in several ranges, got {pieces}");
}

#[test]
fn a_second_run_makes_no_data_requests_and_pinned_commits_need_no_network() {
    let (ws, hub, job, _) =
        one(&["--shards", "2"], &format!("  - model: org/m\n    name: pinned\n    revision: {C1}\n"));
    assert_eq!(run(&ws, &hub, &[&job]).code(), 0);
    hub.reset_counters();
    let o = run(&ws, &hub, &[&job]);
    assert_eq!(o.code(), 0);
    assert!(o.stdout.contains("fresh    m/gamma") && o.stdout.contains("fresh    pinned/gamma"), "{}", o.stdout);
    let reqs = hub.requests();
    assert!(reqs.iter().all(|r| r.path.starts_with("/api/models/org/m/revision/main")), "{reqs:?}");
    assert_eq!(reqs.len(), 1, "one revision lookup for the branch job, none for the pinned one");

    // The branch moves: the branch job is stale with both commits named; the pinned one stays fresh.
    let dir2 = ws.synth("m2", &["--seed", "5", "--shards", "2"]);
    hub.publish("org/m", C2, &dir2, Some("main"));
    let o = run(&ws, &hub, &["status", &job]).ok();
    assert!(o.stdout.contains("stale    m/gamma: revision moved aaaaaaaa… → bbbbbbbb…"), "{}", o.all());
    assert!(o.stdout.contains("fresh    pinned/gamma"));

    // With no network at all, the pinned job is still judged; the branch job, which the cache cannot resolve, is
    // judged at the commit its manifest records, and says the branch was not re-checked.
    let o = ws.run(&["status", &job, "--only", "pinned"]);
    assert_eq!((o.code(), o.stdout.as_str()), (0, "fresh    pinned/gamma\n"), "{}", o.stderr);
    let o = ws.run(&["status", &job, "--only", "pinned", "--offline"]);
    assert_eq!(o.code(), 0);
    let o = ws.run(&["status", &job, "--only", "m", "--offline"]).ok();
    assert!(o.stdout.contains("fresh    m/gamma  (offline: main was not re-checked"), "{}", o.stdout);

    let o = run(&ws, &hub, &[&job]).ok();
    assert!(o.stdout.contains("built    m/gamma  (revision moved"), "{}", o.stdout);
    assert_eq!(ws.read("tensors/m/W.safetensors"), reference_w(&dir2, "model.embed_tokens.weight"));
}

#[test]
fn offline_with_nothing_cached_names_what_is_missing() {
    let (ws, hub, _, _) = one(&[], "");
    let job = ws.job(&format!("version: 1\njobs:\n  - model: org/m\n    revision: {C1}\n"));
    let o = ws.run_env(&[job.to_str().unwrap()], &[("HF_HUB_OFFLINE", "1"), ("HF_ENDPOINT", &hub.endpoint)]);
    assert_eq!(o.code(), 2);
    assert!(o.stdout.contains("org/m@aaaaaaaa") && o.stdout.contains("not in the Hugging Face cache"), "{}", o.stdout);
    assert!(o.stdout.contains("offline"), "{}", o.stdout);
    assert!(hub.requests().is_empty(), "offline means no requests");
    assert!(!ws.path("tensors").exists());
}

#[test]
fn transient_faults_are_retried_and_resumed() {
    for (what, faults) in [
        ("cut mid-body", Faults { drop_mid_body: 2, ..Default::default() }),
        ("503 then success", Faults { fail_503: 2, ..Default::default() }),
        ("429 with Retry-After", Faults { rate_limit: 1, ..Default::default() }),
        ("slow responses", Faults { slow_ms: 5, ..Default::default() }),
        ("a redirect chain across origins", Faults { redirect_chain: true, ..Default::default() }),
    ] {
        let (ws, hub, job, dir) = one(&["--vocab", "3000", "--hidden", "128"], "");
        hub.faults(faults);
        let o = run(&ws, &hub, &[&job]);
        assert_eq!(o.code(), 0, "{what}: {}", o.all());
        assert_eq!(ws.read("tensors/m/W.safetensors"), reference_w(&dir, "model.embed_tokens.weight"), "{what}");
        if what.starts_with("cut") {
            assert!(o.stderr.contains("resuming"), "{what}: {}", o.stderr);
            let resumed = hub.requests().iter().filter(|r| r.origin == "cdn").count();
            assert!(resumed >= 3, "{what}");
        }
        if what.starts_with("429") {
            assert!(o.stderr.contains("HTTP 429; retrying in 1s"), "{what}: {}", o.stderr);
        }
    }
}

/// Issue 24: a signed CDN URL that expires mid-stream (403) is asked for again at the endpoint and the transfer
/// resumes from the bytes already received: the job does not fail, W is exact, and no range is fetched twice.
#[test]
fn an_expired_signed_url_is_resolved_again_and_the_stream_resumes() {
    let (ws, hub, job, dir) = one(&["--vocab", "3000", "--hidden", "128"], "");
    // Every CDN body is cut halfway, and every URL expires after one request: each resume needs a new URL.
    hub.faults(Faults { drop_mid_body: 3, expire_urls_after: 1, ..Default::default() });
    let o = run(&ws, &hub, &[&job]);
    assert_eq!(o.code(), 0, "{}", o.all());
    assert_eq!(ws.read("tensors/m/W.safetensors"), reference_w(&dir, "model.embed_tokens.weight"));
    assert!(o.stderr.contains("the signed URL was refused"), "{}", o.stderr);
    let reqs = hub.requests();
    let cdn: Vec<&Req> = reqs.iter().filter(|r| r.origin == "cdn").collect();
    let refused = hub.state.lock().unwrap().sig_gen;
    assert!(refused >= 2, "URLs expired {refused} times");
    // Each resume starts past the previous request's start: bytes already received are kept, not fetched again.
    let starts: Vec<u64> = cdn
        .iter()
        .filter_map(|r| r.range.as_deref()?.trim_start_matches("bytes=").split('-').next()?.parse().ok())
        .collect();
    let w_start = *starts.iter().max().unwrap();
    assert!(starts.windows(2).any(|w| w[1] > w[0] && w[0] > 0), "{starts:?}");
    assert!(w_start > 0, "{starts:?}");
    ws.run_env(&["verify"], &[]).ok();
}

#[test]
fn a_server_that_ignores_range_still_gives_correct_bytes_with_a_warning() {
    let (ws, hub, job, dir) = one(&["--shards", "2"], "");
    hub.faults(Faults { ignore_range: true, ..Default::default() });
    let o = run(&ws, &hub, &[&job]);
    assert_eq!(o.code(), 0, "{}", o.all());
    assert!(o.stderr.contains("ignored a Range request"), "{}", o.stderr);
    assert_eq!(ws.read("tensors/m/W.safetensors"), reference_w(&dir, "model.embed_tokens.weight"));
}

#[test]
fn protocol_violations_fail_cleanly_and_store_nothing() {
    for (what, faults, want) in [
        ("extra bytes", Faults { extra_bytes: true, ..Default::default() }, "more than the"),
        ("hostile etag", Faults { hostile_etag: true, ..Default::default() }, "is not a SHA-256"),
        ("html 200", Faults { html_200: true, ..Default::default() }, "revision info is not JSON"),
        ("bad commit", Faults { bad_commit: true, ..Default::default() }, "not 40 lowercase hex"),
    ] {
        let (ws, hub, job, _) = one(&[], "    fetch: full\n");
        hub.faults(faults);
        let o = run(&ws, &hub, &[&job]);
        assert_eq!(o.code(), 2, "{what}: {}", o.all());
        assert!(o.stdout.contains(want), "{what}: {}", o.stdout);
        assert!(o.stdout.contains("(request id req-test-ok)"), "{what}: the answer's request id: {}", o.stdout);
        assert!(!ws.path("tensors/m/W.safetensors").exists() && !ws.path("manifests/m").exists(), "{what}");
        for evil in [ws.path("evil"), ws.path("hf-cache/evil"), ws.path("hf-cache/models--org--m/evil")] {
            assert!(!evil.exists(), "{what}: wrote {}", evil.display());
        }
        let kept = blobs(&ws);
        assert!(kept.iter().all(|n| !n.to_string_lossy().ends_with(".tmp")), "{what}: temp files left: {kept:?}");
    }
}

#[test]
fn hub_errors_say_what_to_do() {
    let (ws, hub, _, _) = one(&[], "");
    hub.set_gated("org/m");
    let job = ws.job(&format!(
        "version: 1\njobs:\n  - model: org/m\n  - model: org/missing\n  - model: org/m\n    name: norev\n    revision: v9\n  - model: org/m\n    name: nofile\n    revision: {C1}\n    tensor: x\n"
    ));
    let o = ws.run_env(&[job.to_str().unwrap()], &[("HF_ENDPOINT", &hub.endpoint), ("HF_TOKEN", "hf_wrong")]);
    assert_eq!(o.code(), 2);
    let line = |n: &str| o.stdout.lines().find(|l| l.contains(&format!(" {n}/gamma"))).unwrap_or_default().to_string();
    assert!(
        line("m").contains("gated repo: accept its terms on") && line("m").contains("set HF_TOKEN"),
        "{}",
        line("m")
    );
    assert!(line("m").contains("request id req-test-0001"), "{}", line("m"));
    assert!(line("missing").contains("does not exist, is private"), "{}", line("missing"));
    assert!(line("norev").contains("revision not found"), "{}", line("norev"));
    // With the right token the gated repo reads fine.
    let o = run(&ws, &hub, &[job.to_str().unwrap(), "--only", "m"]);
    assert_eq!(o.code(), 0, "{}", o.all());
}

#[test]
fn the_token_goes_only_to_the_endpoint_origin_and_is_never_written() {
    let (ws, hub, job, _) = one(&["--shards", "2"], "");
    hub.faults(Faults { redirect_chain: true, ..Default::default() });
    let o = run(&ws, &hub, &[&job, "-vv"]);
    assert_eq!(o.code(), 0, "{}", o.all());
    let reqs = hub.requests();
    assert!(
        reqs.iter()
            .filter(|r| r.origin == "hub")
            .all(|r| r.authorization.as_deref() == Some(&format!("Bearer {GOOD_TOKEN}")))
    );
    assert!(reqs.iter().any(|r| r.origin == "cdn") && reqs.iter().any(|r| r.origin == "third"));
    assert!(reqs.iter().filter(|r| r.origin != "hub").all(|r| r.authorization.is_none()), "{reqs:?}");
    assert!(!o.all().contains(GOOD_TOKEN), "token in the logs");
    let s = run(&ws, &hub, &["status", &job, "--json", "-vv"]).ok();
    assert!(!s.all().contains(GOOD_TOKEN));
    for dir in ["tensors", "manifests"] {
        for e in walk(&ws.path(dir)) {
            let bytes = std::fs::read(&e).unwrap();
            assert!(!bytes.windows(GOOD_TOKEN.len()).any(|w| w == GOOD_TOKEN.as_bytes()), "token in {}", e.display());
        }
    }
}

#[test]
fn fetch_full_downloads_into_the_cache_checked_and_reused() {
    let (ws, hub, job, dir) = one(&["--shards", "2"], "    fetch: full\n");
    let o = run(&ws, &hub, &[&job]);
    assert_eq!(o.code(), 0, "{}", o.all());
    assert_eq!(ws.read("tensors/m/W.safetensors"), reference_w(&dir, "model.embed_tokens.weight"));
    let m = ws.manifest("m", "gamma");
    assert_eq!(m["source"]["fetch"], "full");
    let shard = "model-00001-of-00002.safetensors";
    let sha = sha256(&std::fs::read(dir.join(shard)).unwrap());
    let root = ws.path("hf-cache/models--org--m");
    assert_eq!(std::fs::read(root.join("blobs").join(&sha)).unwrap(), std::fs::read(dir.join(shard)).unwrap());
    assert_eq!(
        std::fs::read_link(root.join("snapshots").join(C1).join(shard)).unwrap(),
        std::path::PathBuf::from(format!("../../blobs/{sha}"))
    );
    assert_eq!(std::fs::read_to_string(root.join("refs/main")).unwrap(), C1);
    assert!(root.join("snapshots").join(C1).join("config.json").exists());

    // A rebuild online reads the cache: one revision lookup, no file or CDN requests.
    std::fs::remove_dir_all(ws.path("tensors")).unwrap();
    hub.reset_counters();
    let o = run(&ws, &hub, &[&job]);
    assert_eq!(o.code(), 0, "{}", o.all());
    let reqs = hub.requests();
    assert!(reqs.len() == 1 && reqs[0].path.starts_with("/api/models/"), "{reqs:?}");
    assert_eq!(ws.manifest("m", "gamma")["source"]["kind"], "hf_cache");
    // And offline too, with the branch resolved from refs/.
    std::fs::remove_dir_all(ws.path("tensors")).unwrap();
    let o = ws.run_env(&[&job, "--offline"], &[]);
    assert_eq!(o.code(), 0, "{}", o.all());
}

#[test]
fn a_corrupt_full_download_is_discarded() {
    let (ws, hub, job, _) = one(&[], "    fetch: full\n");
    hub.faults(Faults { corrupt_blob: true, ..Default::default() });
    let o = run(&ws, &hub, &[&job]);
    assert_eq!(o.code(), 2, "{}", o.all());
    assert!(o.stdout.contains("discarded"), "{}", o.stdout);
    let kept = blobs(&ws);
    assert!(kept.is_empty(), "nothing kept: {kept:?}");
    assert!(!ws.path("tensors/m").exists());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn the_token_is_not_sent_again_when_a_redirect_returns_to_the_endpoint() {
    let (ws, hub, job, _) = one(&[], "");
    hub.faults(Faults { redirect_back: true, ..Default::default() });
    let o = run(&ws, &hub, &[&job]);
    assert_eq!(o.code(), 0, "{}", o.all());
    let back: Vec<_> = hub.requests().into_iter().filter(|r| r.path.starts_with("/cdn-return/")).collect();
    assert!(!back.is_empty());
    assert!(back.iter().all(|r| r.authorization.is_none()), "{back:?}");
}

#[test]
fn a_full_download_cut_until_retries_run_out_keeps_nothing() {
    let (ws, hub, job, _) = one(&["--vocab", "4000", "--hidden", "128"], "    fetch: full\n");
    hub.faults(Faults { drop_mid_body: 1000, ..Default::default() });
    let e = env(&hub);
    let o = ws.run_env(&[&job], &[("HF_ENDPOINT", &e[0].1), ("GAMMA_RUN_HTTP_ATTEMPTS", "3")]);
    assert_eq!(o.code(), 2, "{}", o.all());
    assert!(o.stdout.contains("cut 3 times"), "{}", o.stdout);
    let kept = blobs(&ws);
    assert!(kept.iter().all(|n| n.len() == 40), "only verified small files may stay: {kept:?}");
    assert!(!ws.path("tensors/m").exists() && !ws.path("manifests/m").exists());
}

#[test]
fn a_snapshot_without_weights_is_completed_from_the_hub() {
    let (ws, hub, job, dir) = one(&["--shards", "2"], "");
    // A Python user loaded only the config: the snapshot exists, the weights do not.
    let only_config = ws.path("partial");
    std::fs::create_dir_all(&only_config).unwrap();
    std::fs::copy(dir.join("config.json"), only_config.join("config.json")).unwrap();
    cache_model(&ws, &only_config, "org/m", C1, Some("main"));
    let o = run(&ws, &hub, &[&job]);
    assert_eq!(o.code(), 0, "{}", o.all());
    assert_eq!(ws.manifest("m", "gamma")["source"]["fetch"], "range");
    assert_eq!(ws.read("tensors/m/W.safetensors"), reference_w(&dir, "model.embed_tokens.weight"));
    // Offline, the same gap is a clear error naming the missing file.
    std::fs::remove_dir_all(ws.path("tensors")).unwrap();
    std::fs::remove_dir_all(ws.path("manifests")).unwrap();
    let o = ws.run(&[&job, "--offline"]);
    assert_eq!(o.code(), 2);
    assert!(o.stdout.contains("model.safetensors") && o.stdout.contains("missing"), "{}", o.stdout);
}

#[test]
fn a_repo_without_config_names_the_missing_file() {
    let ws = Ws::new();
    let hub = TestHub::start();
    let dir = ws.synth("m", &[]);
    std::fs::remove_file(dir.join("config.json")).unwrap();
    hub.publish("org/m", C1, &dir, Some("main"));
    let job = ws.job("version: 1\njobs:\n  - model: org/m\n");
    let o = run(&ws, &hub, &[job.to_str().unwrap()]);
    assert_eq!(o.code(), 2);
    assert!(o.stdout.contains("org/m@aaaaaaaaaaaa/config.json: missing"), "{}", o.stdout);
}

/// Every byte a log could hold: the text itself, plus the bytes of any hex-dump rows (`6865 6c6c … ascii`, as
/// the HTTP stack's wire traces print them) reassembled across lines, so a secret split over rows is found.
fn printed_bytes(text: &str) -> Vec<u8> {
    let mut out = text.as_bytes().to_vec();
    let mut dump = Vec::new();
    for line in text.lines() {
        // A row is 8 groups of 4 hex digits (or `--` padding), after whatever prefix the logger adds.
        let groups: Vec<&str> = line.split(' ').filter(|g| !g.is_empty()).collect();
        let start = groups
            .windows(8)
            .position(|w| w.iter().all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')));
        if let Some(s) = start {
            for g in &groups[s..s + 8] {
                for pair in [&g[..2], &g[2..]] {
                    if let Ok(b) = u8::from_str_radix(pair, 16) {
                        dump.push(b);
                    }
                }
            }
        }
    }
    out.push(b'\n');
    out.extend_from_slice(&dump);
    out
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn the_token_never_reaches_any_output_at_any_verbosity_whatever_its_length() {
    let (ws, hub, job, _) = one(&["--shards", "2"], "");
    // Letters that a log line is unlikely to hold by chance, in lengths around the 16-byte dump rows.
    let lengths = [1usize, 2, 3, 5, 7, 8, 11, 15, 16, 17, 23, 31, 32, 33, 40, 47, 63, 64, 65, 99, 100];
    let settings: [(&str, Option<&str>); 4] =
        [("-vv", None), ("-v", Some("trace")), ("", Some("ureq=trace,ureq_proto=trace")), ("-q", Some("trace"))];
    for (i, &n) in lengths.iter().enumerate() {
        let token: String = (0..n).map(|k| (b'Q' + ((k * 7 + i) % 9) as u8) as char).collect();
        let (flag, rust_log) = settings[i % settings.len()];
        let mut env = vec![("HF_ENDPOINT", hub.endpoint.as_str()), ("HF_TOKEN", token.as_str())];
        if let Some(l) = rust_log {
            env.push(("RUST_LOG", l));
        }
        let mut args = vec![job.as_str(), "--force"];
        if !flag.is_empty() {
            args.push(flag);
        }
        let o = ws.run_env(&args, &env);
        assert_eq!(o.code(), 0, "{}", o.all());
        let sent = format!("Bearer {token}");
        assert!(hub.requests().iter().any(|r| r.authorization.as_deref() == Some(sent.as_str())), "token not sent");
        let printed = printed_bytes(&o.all());
        assert!(!holds(&printed, &sent), "token of {n} chars printed ({flag} RUST_LOG={rust_log:?})");
        if n >= 8 {
            assert!(!holds(&printed, &token), "token of {n} chars printed ({flag} RUST_LOG={rust_log:?})");
        }
        // An error about a request that carried the token: the token is in no message either.
        let s = ws.run_env(&["status", &job, "--json", "-vv"], &env).ok();
        assert!(!holds(&printed_bytes(&s.all()), &sent), "token in status output");
    }
    for dir in ["tensors", "manifests"] {
        for e in walk(&ws.path(dir)) {
            assert!(!holds(&std::fs::read(&e).unwrap(), "Bearer "), "token in {}", e.display());
        }
    }
}

#[test]
fn the_hex_dump_reassembly_finds_a_token_split_across_rows() {
    // The checker above must be able to fail: a dump of `authorization: Bearer QRSTUVWXYZ` split over rows.
    let bytes = b"authorization: Bearer QRSTUVWXYZ\r\n";
    let mut text = String::new();
    for row in bytes.chunks(16) {
        let mut line = String::from("TRACE ");
        for i in 0..16 {
            line.push_str(&row.get(i).map_or_else(|| "--".into(), |b| format!("{b:02x}")));
            if i % 2 == 1 {
                line.push(' ');
            }
        }
        text.push_str(&line);
        text.push_str(" ascii\n");
    }
    assert!(!text.contains("Bearer QRSTUVWXYZ"));
    assert!(holds(&printed_bytes(&text), "Bearer QRSTUVWXYZ"));
}

/// Offline compute nodes after a range fetch: the cache has no `refs/main` (a range read stores nothing), yet each
/// manifest records the commit it was built from. `status --offline` judges the output at that commit, fresh with
/// a note (exit 0, in JSON too), and γ′ computed from it the same way (issue 15).
#[test]
fn offline_status_of_branch_fetched_outputs_is_judged_from_the_manifest_commit() {
    let (ws, hub, job, _) = one(&[], "    frames: [gamma, gamma_prime]\n");
    run(&ws, &hub, &[&job]).ok();
    assert!(!ws.path("hf-cache/models--org--m/refs/main").exists(), "a range fetch writes no refs");
    drop(hub);
    let o = ws.run(&["status", &job, "--offline", "--check"]).ok();
    assert!(o.stdout.contains("fresh    m/gamma  (offline: main was not re-checked; judged at the commit its manifest records (aaaaaaaaaaaa))"), "{}", o.stdout);
    assert!(
        o.stdout.contains("fresh    m/gamma_prime  (input gamma: offline: main was not re-checked"),
        "{}",
        o.stdout
    );
    let o = ws.run_env(&["status", &job, "--format", "json"], &[("HF_HUB_OFFLINE", "1")]).ok();
    let rows: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    for row in rows.as_array().unwrap() {
        assert_eq!(row["state"], "fresh", "{row}");
        assert!(row["notes"][0].as_str().unwrap().contains("main was not re-checked"), "{row}");
    }
    // A run offline finds them fresh too and builds nothing.
    let o = ws.run(&[&job, "--offline"]).ok();
    assert!(o.stdout.contains("0 built, 2 fresh, 0 failed"), "{}", o.stdout);
    // Another revision in the job is not what the manifest records: that needs the Hub (or the cache).
    let other = ws.job("version: 1\njobs:\n  - model: org/m\n    revision: dev\n");
    let o = ws.run(&["status", other.to_str().unwrap(), "--offline"]).expect(2);
    // (Range fetches fill no cache: what is missing is the cache itself, and that is what is said.)
    assert!(o.stdout.contains("org/m@dev") && o.stdout.contains("that cache does not exist"), "{}", o.stdout);
}

/// `--dry-run` against the Hub says what each fetch mode would move, from the Hub's answers (metadata, config and
/// W's header; no tensor bytes), and then the run moves that (issue 15).
#[test]
fn dry_run_says_what_each_fetch_mode_would_move() {
    let ws = Ws::new();
    let hub = TestHub::start();
    let dir = ws.synth("m", &["--shards", "2", "--filler-mib", "1", "--vocab", "4096"]);
    hub.publish("org/m", C1, &dir, Some("main"));
    let job =
        ws.job("version: 1\njobs:\n  - model: org/m\n    name: r\n  - model: org/m\n    name: f\n    fetch: full\n");
    let job = job.to_str().unwrap();
    let o = run(&ws, &hub, &[job, "--dry-run"]).ok();
    assert!(o.stdout.contains("would build r/gamma  (never built); fetches W's byte range (512.0 KiB) of model-00001-of-00002.safetensors from the Hub"), "{}", o.stdout);
    let shard = std::fs::metadata(dir.join("model-00001-of-00002.safetensors")).unwrap().len();
    let full = format!(
        "would build f/gamma  (never built); downloads all of model-00001-of-00002.safetensors ({}) into the HF cache (fetch: full)",
        human(shard)
    );
    assert!(o.stdout.contains(&full), "{full}\n{}", o.stdout);
    // Two jobs: config, index and one header read each (a header's first read is at most 100 kB).
    assert!(hub.served() < 2 * (100_000 + (16 << 10)), "a dry run reads no more than headers: {} served", hub.served());
    assert!(!ws.path("tensors").exists() && !ws.path("hf-cache").exists(), "a dry run writes nothing");
    hub.reset_counters();
    run(&ws, &hub, &[job, "--only", "f"]).ok();
    assert!(hub.served() >= shard, "{} served, shard {shard}", hub.served());
    // Now the blob is cached: the range job reads W from the cache, with no network for its bytes.
    let o = run(&ws, &hub, &[job, "--dry-run"]).ok();
    assert!(
        o.stdout.contains("would build r/gamma  (never built); reads W (512.0 KiB) from the HF cache; no network"),
        "{}",
        o.stdout
    );
}

fn human(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

/// `-v` reports gamma-run's own decisions — revision → commit, cache hit or miss, which key is W and why, each
/// request with its range, bytes and timings — and not the HTTP library's internals, which stay behind RUST_LOG
/// (issue 15). The summary says how long the run took and how many bytes it moved.
#[test]
fn verbose_shows_gamma_runs_decisions_not_the_http_librarys() {
    let (ws, hub, job, _) = one(&[], "");
    let o = run(&ws, &hub, &[&job, "-v"]).ok();
    let e = &o.stderr;
    assert!(
        e.contains("org/m: revision main → commit aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa (asked the Hub)"),
        "{e}"
    );
    assert!(e.contains("not (fully) in the HF cache; using the Hub"), "cache miss: {e}");
    assert!(
        e.contains(
            "W is model.embed_tokens.weight in org/m@aaaaaaaaaaaa/model.safetensors (BF16, [512, 64], 65536 bytes"
        ),
        "{e}"
    );
    assert!(e.contains("tied embedding (tie_word_embeddings=true in config.json)"), "why: {e}");
    assert!(e.contains("GET http://127.0.0.1:") && e.contains(" bytes 272-65807 → HTTP 206 in "), "W's range: {e}");
    assert!(e.contains("m/gamma: wrote 65608 bytes in "), "{e}");
    assert!(!e.contains("Connected TcpStream"), "the HTTP library's own debug lines stay behind RUST_LOG: {e}");
    // Fetched: the header (one first read of 32 KiB + 8 bytes, which holds it) and W's range (64.0 KiB).
    assert!(
        o.stdout.contains("1 built, 0 fresh, 0 failed  (in ")
            && o.stdout.contains("96.2 KiB fetched from the Hub, 64.1 KiB written)"),
        "{}",
        o.stdout
    );
    let o = run(&ws, &hub, &[&job, "-v", "--force"]);
    drop(o.ok());
    // RUST_LOG still reaches the libraries when asked.
    let mut e = env(&hub);
    e.push(("RUST_LOG", "debug".into()));
    let pairs: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let o = ws.run_env(&[&job, "--force"], &pairs).ok();
    assert!(o.stderr.contains("Connected TcpStream"), "{}", o.stderr);
}

/// Progress bars on a terminal (a pty): labelled by output (`name/frame`), sizes in KiB/MiB, rate and ETA (issue 15).
#[test]
fn progress_bars_on_a_terminal_are_labelled_by_output_with_sizes_rate_and_eta() {
    let pty = "import os, pty, subprocess, sys\n\
        m, s = pty.openpty()\n\
        p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stderr=s)\n\
        os.close(s)\n\
        out = b''\n\
        while True:\n\
        \x20   try:\n\
        \x20       d = os.read(m, 65536)\n\
        \x20   except OSError:\n\
        \x20       break\n\
        \x20   if not d:\n\
        \x20       break\n\
        \x20   out += d\n\
        open(sys.argv[1], 'wb').write(out)\n\
        sys.exit(p.wait())\n";
    if !std::process::Command::new("python3").args(["-c", "import pty"]).output().is_ok_and(|o| o.status.success()) {
        return skip(
            "progress_bars_on_a_terminal_are_labelled_by_output_with_sizes_rate_and_eta",
            "no python3 with pty",
        );
    }
    let (ws, hub, job, _) = one(&["--vocab", "8192"], "    name: grid-step1\n");
    hub.faults(Faults { slow_ms: 60, ..Default::default() });
    let inner = ws.command(&[&job], &[("HF_ENDPOINT", &hub.endpoint), ("HF_TOKEN", GOOD_TOKEN)]);
    let mut cmd = std::process::Command::new("python3");
    let seen = ws.path("tty.txt");
    cmd.arg("-c").arg(pty).arg(&seen).arg(inner.get_program()).args(inner.get_args());
    cmd.current_dir(ws.dir.path());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{o:?}");
    let tty = String::from_utf8_lossy(&std::fs::read(&seen).unwrap()).into_owned();
    assert!(tty.contains("grid-step1/gamma"), "labelled by output: {tty:?}");
    assert!(tty.contains("W from model.safetensors"), "{tty:?}");
    // Sizes (done/total: the bar is drawn at a bounded rate, so under load its last frame may be short of the
    // end), rate and ETA.
    assert!(tty.contains("MiB/1.00 MiB") && tty.contains("MiB/s eta"), "sizes, rate, ETA: {tty:?}");
    assert!(!tty.contains("org/m:model"), "{tty:?}");
}
