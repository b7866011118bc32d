//! The batch: every (job, frame) output judged fresh, stale or missing, and the stale ones rebuilt — jobs in
//! parallel (`--jobs`), frames of a job in dependency order. One failed output does not stop the others; a
//! frame whose input failed is skipped and says why.

use crate::error::{Error, Result};
use crate::frame::{Context, Frame, Params, Plan};
use crate::job::{Job, JobFile};
use crate::manifest::freshness::{self, State};
use crate::manifest::{Manifest, OutputRecord, SCHEMA, StatCache, Tool, fingerprint};
use crate::store::{self, FileStat};
use rayon::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub(crate) struct RunOptions {
    pub(crate) force: bool,
    /// With `force`: also the inputs `--only` brought along (`--force-all`); without, they are judged.
    pub(crate) force_inputs: bool,
    pub(crate) dry_run: bool,
    pub(crate) only: Vec<String>,
    pub(crate) shard: Option<crate::selection::Shard>,
    pub(crate) jobs: usize,
    /// The remote store, if any: outputs it holds are pulled (`pull`) instead of built, what is built is pushed
    /// (`push`). With `no_build`, an output neither fresh nor pullable fails (`pull`, `run --no-build`).
    pub(crate) remote: Option<std::sync::Arc<crate::remote::Remote>>,
    pub(crate) pull: bool,
    pub(crate) push: bool,
    pub(crate) no_build: bool,
    /// Pull only outputs whose signed attestation this verifier accepts (`--require-attestation`).
    pub(crate) require_attestation: Option<crate::remote::attestation::Verifier>,
}

#[derive(Debug)]
pub(crate) enum Outcome {
    Fresh,
    Built {
        reasons: Vec<String>,
        sha256: String,
        size: u64,
        /// Where the file went.
        path: std::path::PathBuf,
        /// What building it found that a user should know (reported once, when it is built).
        warnings: Vec<String>,
    },
    /// `--dry-run` with a remote store that holds it: it would be pulled (and verified) instead of built.
    WouldPull {
        reasons: Vec<String>,
    },
    /// Taken from the remote store, verified, instead of built.
    Pulled {
        reasons: Vec<String>,
        sha256: String,
        size: u64,
        path: std::path::PathBuf,
    },
    /// `--dry-run`: it would be built, for these reasons, reading this many tensor bytes (if known), moving
    /// `transfer` from the model source; `same_bytes` when its bytes are known not to change (its dependents
    /// then stay fresh).
    WouldBuild {
        reasons: Vec<String>,
        reads: Option<u64>,
        transfer: Option<crate::source::Transfer>,
        same_bytes: bool,
    },
    Failed(Error),
    Skipped(String),
    /// Not built yet: another output of this run is fetching the same W (its name). The runner runs this job again
    /// once that one's job has returned; never reported.
    Deferred {
        by: String,
    },
    /// An input judged fresh whose bytes differ from its manifest (found while building): the runner rebuilds
    /// that input first, then this output; reported as a failure only if that does not settle it.
    InputChanged {
        input: &'static str,
        path: std::path::PathBuf,
        message: String,
    },
}

#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) name: String,
    pub(crate) frame: &'static str,
    pub(crate) outcome: Outcome,
    /// What pushing it to the remote store did (built outputs, with a remote and without `--no-push`).
    pub(crate) pushed: Option<std::result::Result<crate::remote::push::Pushed, String>>,
}

/// One output's state as `status` shows it.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) frame: &'static str,
    pub(crate) state: Result<State>,
    pub(crate) manifest: Option<Manifest>,
    pub(crate) output_path: std::path::PathBuf,
    pub(crate) manifest_path: std::path::PathBuf,
    /// How it was judged, where a user should know (a branch not re-checked offline, also for its dependents).
    pub(crate) notes: Vec<String>,
    /// The fingerprint it would have if built now (unknown when it could not be planned: an input not built).
    pub(crate) fingerprint: Option<String>,
    /// Whether a remote store may hold it (`remote::shareable`).
    pub(crate) shareable: bool,
    /// Where it stands against the remote store (`status --remote`).
    pub(crate) remote: Option<crate::remote::Presence>,
}

/// Runs the selected jobs on `opts.jobs` workers. A grid output whose W another worker is fetching is deferred
/// (`Outcome::Deferred`): its job runs again as soon as that worker's job has returned, and finds those bytes
/// stored (or, if that one failed, fetches them itself). Each distinct W is fetched once, however many workers
/// overlap, and copies overlap with fetches.
pub(crate) fn run(jf: &JobFile, cx: &Context, opts: &RunOptions) -> Result<Vec<Report>> {
    let selected = crate::selection::select(jf, &opts.only, opts.shard)?;
    // A grid that could not be expanded (offline, no lock) fails on its own; the other jobs run.
    let (mut pending, mut ready) = (Vec::new(), Vec::new());
    for job in selected {
        match crate::grid::unexpanded(&jf.path, &job) {
            Some(why) => pending.push((job, why)),
            None => ready.push(job),
        }
    }
    let selected = ready;
    let unexpanded: Vec<Report> = pending
        .iter()
        .flat_map(|(j, why)| {
            j.frames.iter().map(move |f| Report {
                name: j.name.clone(),
                frame: f.name(),
                outcome: Outcome::Failed(Error::Plan(why.clone())),
                pushed: None,
            })
        })
        .collect();
    // Siblings are the outputs of this job file's grids (all of them, selected or not), never another name.
    let members = jf.jobs.iter().filter_map(|j| Some((j.grid.as_ref()?.base.clone(), j.name.clone())));
    let claims = std::sync::Arc::new(crate::source::share::Claims::for_grids(members));
    let cx = Context { claims: Some(claims.clone()), ..cx.clone() };
    let batch = crate::schedule::Batch {
        name: &|job: &Job| job.name.clone(),
        run: &|job: &Job, previous: Option<Vec<Report>>| run_job(job, &cx, opts, previous.unwrap_or_default()),
        waits_for: &|reports: &Vec<Report>| {
            reports.iter().find_map(|r| match &r.outcome {
                Outcome::Deferred { by } => Some(by.clone()),
                _ => None,
            })
        },
        returned: &|name: &str| claims.release(name),
    };
    let mut reports: Vec<Report> = crate::schedule::run(&selected, opts.jobs, &batch).into_iter().flatten().collect();
    reports.extend(unexpanded);
    Ok(reports)
}

/// A report a job's next run keeps: anything but a deferred output, or one skipped (because of it).
fn settled(r: &Report) -> bool {
    !matches!(r.outcome, Outcome::Deferred { .. } | Outcome::Skipped(_))
}

pub(crate) fn status(
    jf: &JobFile,
    cx: &Context,
    only: &[String],
    shard: Option<crate::selection::Shard>,
) -> Result<Vec<Row>> {
    let selected = crate::selection::select(jf, only, shard)?;
    let rows: Vec<Vec<Row>> = selected
        .par_iter()
        .map(|job| match crate::grid::unexpanded(&jf.path, job) {
            Some(why) => job
                .frames
                .iter()
                .map(|f| Row {
                    name: job.name.clone(),
                    frame: f.name(),
                    state: Err(Error::Plan(why.clone())),
                    manifest: None,
                    output_path: output_path(cx, job, f.frame),
                    manifest_path: manifest_path(cx, job, f.frame),
                    notes: Vec::new(),
                    fingerprint: None,
                    shareable: true,
                    remote: None,
                })
                .collect(),
            None => status_job(job, cx),
        })
        .collect();
    Ok(rows.into_iter().flatten().collect())
}

/// Where an input stands for the outputs computed from it. `status` and `run` share one rule: an output is
/// judged, or built, on its own only when every input is ready; otherwise its first input that is not says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Fresh, or just built.
    Ready,
    /// Stale or missing (`status`), or about to be rebuilt (`--dry-run`).
    WillChange,
    /// Could not be judged or built.
    Failed,
}

/// The first input of `frame` that is not ready (a failed one before one that will change), by `standing`.
fn unready_input(frame: &dyn Frame, standing: &dyn Fn(&str) -> Option<Standing>) -> Option<(&'static str, Standing)> {
    let not_ready = || frame.inputs().iter().map(|i| (i.name(), standing(i.name())));
    let first = |want: Standing| not_ready().find(|(_, s)| *s == Some(want)).map(|(n, _)| (n, want));
    first(Standing::Failed).or_else(|| first(Standing::WillChange))
}

fn status_job(job: &Job, cx: &Context) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    // Stale outputs whose rebuild is known to write the same bytes (a cosmetic config edit): their dependents
    // stay as they are, as `run` and `--dry-run` leave them.
    let mut same_bytes: Vec<&'static str> = Vec::new();
    for req in &job.frames {
        let frame = req.frame;
        let manifest_path = manifest_path(cx, job, frame);
        let standing = |name: &str| {
            rows.iter().find(|r| r.frame == name).map(|r| match &r.state {
                Ok(State::Fresh) => Standing::Ready,
                Ok(_) if same_bytes.contains(&r.frame) => Standing::Ready,
                Ok(_) => Standing::WillChange,
                Err(_) => Standing::Failed,
            })
        };
        let stale_input = unready_input(frame, &standing).map(|(i, _)| i);
        let mut notes: Vec<String> = Vec::new();
        for input in frame.inputs() {
            for r in rows.iter().filter(|r| r.frame == input.name()) {
                notes.extend(r.notes.iter().map(|n| format!("input {}: {n}", r.frame)));
            }
        }
        let mut planned = None;
        let judged = judge(frame, job, &req.params, cx).map(|(plan, a)| {
            planned = Some((fingerprint::digest(&plan.fingerprint), crate::remote::shareable(&plan.fingerprint)));
            notes.extend(plan.notes);
            // Only a manifest that agrees with itself can vouch for the bytes it describes.
            let unchanged = matches!(a.state, State::Stale(_))
                && a.manifest
                    .as_ref()
                    .is_some_and(|m| crate::manifest::consistency::check(m).is_ok() && plan.producer.same_bytes_as(m));
            if unchanged {
                notes.push("its W is unchanged (same tensor, range and shard): a rebuild writes the same bytes".into());
            }
            (a.state, a.manifest, unchanged)
        });
        let judged = judged.map(|(state, m, unchanged)| {
            if unchanged {
                same_bytes.push(frame.name());
            }
            (state, m)
        });
        let (state, manifest) = match (judged, stale_input) {
            (Ok((state, m)), None) => (Ok(state), m),
            (Err(e), None) => (Err(e), None),
            // An input that is not fresh makes this output stale whatever its own record says.
            (judged, Some(input)) => {
                let why = format!("input {input} is not fresh");
                let manifest = judged.as_ref().ok().and_then(|(_, m)| m.clone());
                let state = match judged {
                    Ok((State::Missing, _)) => State::Missing,
                    _ if !manifest_path.exists() => State::Missing,
                    Ok((State::Stale(mut r), _)) => {
                        r.push(why);
                        State::Stale(r)
                    }
                    _ => State::Stale(vec![why]),
                };
                (Ok(state), manifest)
            }
        };
        rows.push(Row {
            name: job.name.clone(),
            frame: frame.name(),
            state,
            manifest,
            output_path: output_path(cx, job, frame),
            manifest_path,
            notes,
            fingerprint: planned.as_ref().map(|(f, _)| f.clone()),
            shareable: planned.is_none_or(|(_, s)| s),
            remote: None,
        });
    }
    rows
}

/// Runs a job's outputs in order. `previous`: what its last run reported, when it was deferred; outputs settled
/// then keep their reports (one built then is not reported fresh now, nor built twice with `--force`).
fn run_job(job: &Job, cx: &Context, opts: &RunOptions, mut previous: Vec<Report>) -> Vec<Report> {
    let mut reports: Vec<Report> = Vec::new();
    for req in &job.frames {
        let frame = req.frame;
        // `--force` rebuilds what was selected; an input brought along only when stale (unless `--force-all`).
        let own;
        let opts = if opts.force && !req.selected && !opts.force_inputs {
            own = RunOptions { force: false, ..opts.clone() };
            &own
        } else {
            opts
        };
        if let Some(at) = previous.iter().position(|r| r.frame == frame.name() && settled(r)) {
            reports.push(previous.swap_remove(at));
            continue;
        }
        let standing = |name: &str| {
            reports.iter().find(|r| r.frame == name).map(|r| match &r.outcome {
                // A dry-run rebuild known to write the same bytes leaves its dependents as they are.
                Outcome::Fresh
                | Outcome::Built { .. }
                | Outcome::Pulled { .. }
                | Outcome::WouldBuild { same_bytes: true, .. } => Standing::Ready,
                Outcome::WouldBuild { .. } | Outcome::WouldPull { .. } => Standing::WillChange,
                Outcome::Failed(_) | Outcome::Skipped(_) | Outcome::Deferred { .. } | Outcome::InputChanged { .. } => {
                    Standing::Failed
                }
            })
        };
        let outcome = match unready_input(frame, &standing) {
            Some((i, Standing::Failed)) => Outcome::Skipped(format!("its input {i} failed")),
            Some((i, _)) => {
                let why = if opts.force { "--force".to_string() } else { format!("input {i} would be rebuilt") };
                let reasons = vec![why];
                Outcome::WouldBuild { reasons, reads: None, transfer: None, same_bytes: false }
            }
            None => match run_output(frame, job, &req.params, cx, opts) {
                // An input judged fresh by its stat cache whose bytes turn out to differ from its manifest: it
                // is stale after all. Rebuild it, then build this output from the rebuilt bytes (once).
                Outcome::InputChanged { input, path, message } => {
                    tracing::warn!("{}: {message}; rebuilding {input} first", path.display());
                    match rebuild_input(job, input, &mut reports, cx, opts) {
                        true => settle(run_output(frame, job, &req.params, cx, opts)),
                        false => Outcome::Skipped(format!("its input {input} failed")),
                    }
                }
                other => other,
            },
        };
        let _span = tracing::info_span!("output", name = %job.name, frame = frame.name()).entered();
        match &outcome {
            Outcome::Failed(e) => tracing::debug!(error = %e, "failed"),
            Outcome::Built { sha256, .. } => tracing::debug!(%sha256, "built"),
            _ => {}
        }
        let pushed = match (&outcome, &opts.remote) {
            (Outcome::Built { path, .. }, Some(remote)) if opts.push => Some(push_built(remote, cx, job, frame, path)),
            _ => None,
        };
        reports.push(Report { name: job.name.clone(), frame: frame.name(), outcome, pushed });
    }
    reports
}

/// An input that still differs after its rebuild is a failure, said as such.
fn settle(outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::InputChanged { input, path, message } => {
            Outcome::Failed(Error::InputChanged { frame: input, path, message })
        }
        other => other,
    }
}

/// Rebuilds input frame `input` of `job` (it was judged fresh, but its bytes differ from its manifest) and
/// puts the outcome in place of its report. Whether it was built.
fn rebuild_input(job: &Job, input: &str, reports: &mut [Report], cx: &Context, opts: &RunOptions) -> bool {
    let Some(req) = job.frames.iter().find(|r| r.name() == input) else { return false };
    let frame = req.frame;
    let forced = RunOptions { force: true, ..opts.clone() };
    let mut outcome = settle(run_output(frame, job, &req.params, cx, &forced));
    if let Outcome::Built { reasons, .. } = &mut outcome {
        *reasons = vec!["output modified (its bytes differ from its manifest)".into()];
    }
    let built = matches!(outcome, Outcome::Built { .. });
    if let Some(r) = reports.iter_mut().find(|r| r.frame == input) {
        r.outcome = outcome;
    }
    built
}

fn run_output(frame: &dyn Frame, job: &Job, params: &Params, cx: &Context, opts: &RunOptions) -> Outcome {
    // `--force` rebuilds whatever the output's state: it is not judged (no re-hash, no re-read of W).
    if opts.force {
        return match frame.prepare(cx, &job.target(), params) {
            Ok(plan) => build_locked(frame, job, params, cx, opts, plan, vec!["--force".to_string()], None),
            Err(e) => Outcome::Failed(e),
        };
    }
    let (plan, assessment) = match judge(frame, job, params, cx) {
        Ok(j) => j,
        Err(e) => return Outcome::Failed(e),
    };
    let reasons = match assessment.state {
        State::Fresh => {
            // Fresh after a touch: store the new stats so the next check is metadata-only again.
            if let (true, false, Some(m)) = (assessment.restat, opts.dry_run, &assessment.manifest) {
                refresh_stat_cache(cx, job, frame, m);
            }
            if !opts.dry_run {
                let root = cx.store.root();
                let files = [output_path(cx, job, frame), manifest_path(cx, job, frame)];
                store::lock::tidy_if_idle(root, &job.name, frame.name(), &files);
            }
            return Outcome::Fresh;
        }
        State::Missing => vec!["never built".to_string()],
        State::Stale(r) => r,
    };
    if opts.dry_run && pullable(opts, &plan) {
        return Outcome::WouldPull { reasons };
    }
    if !opts.dry_run
        && let Some(outcome) = pull_locked(frame, job, params, cx, opts, &plan, &reasons)
    {
        return outcome;
    }
    if opts.no_build {
        let why = match &opts.remote {
            Some(r) => format!(
                "not in the remote {} (or not usable there), and not built here: {}",
                r.shown(),
                reasons.join("; ")
            ),
            None => format!("not built: {}", reasons.join("; ")),
        };
        return Outcome::Failed(Error::Usage(why));
    }
    build_locked(frame, job, params, cx, opts, plan, reasons, assessment.manifest.as_ref())
}

/// Takes output `job`/`frame` from the remote store when it holds one with the fingerprint planned here, under
/// the output's lock: every candidate verified (`remote::pull`), the first that passes stored as a local build
/// would be, its manifest saying where it came from. `None`: nothing usable there (each rejected candidate said
/// in a warning); the caller builds it. Outputs read from a local directory are never pulled (they are at hand,
/// and their manifests name this machine's paths).
fn pull_locked(
    frame: &dyn Frame,
    job: &Job,
    params: &Params,
    cx: &Context,
    opts: &RunOptions,
    plan: &Plan,
    reasons: &[String],
) -> Option<Outcome> {
    let remote = opts.remote.as_ref().filter(|_| opts.pull)?;
    if !crate::remote::shareable(&plan.fingerprint) {
        return None;
    }
    let fp = fingerprint::digest(&plan.fingerprint);
    let shas = match remote.index() {
        Ok(index) => index.holds(&fp)?.clone(),
        Err(e) => {
            tracing::warn!("{e}; building {}/{} here", job.name, frame.name());
            return None;
        }
    };
    let root = cx.store.root();
    let (_lock, waited) = match store::lock::OutputLock::acquire(root, &job.name, frame.name()) {
        Ok(l) => l,
        Err(e) => return Some(Outcome::Failed(e)),
    };
    if waited
        && let Ok((_, a)) = judge(frame, job, params, cx)
        && a.state == State::Fresh
    {
        return Some(Outcome::Fresh);
    }
    let want = crate::remote::pull::Wanted { fingerprint: &fp, frame: frame.name(), inputs: &plan.inputs };
    let (output, manifest) = (output_path(cx, job, frame), manifest_path(cx, job, frame));
    let rejected = |e: &Error| {
        tracing::warn!("{}; building {}/{} here instead", crate::remote::pull::why(e), job.name, frame.name());
    };
    for sha in &shas {
        // The remote manifest checked, then what this output asks of it, then (if required) its attestation.
        let checked = remote.candidate(&want, sha).and_then(|c| {
            same_request(&c.manifest, plan).map_err(|why| remote.error(format!("{}: {why}; not used", c.key)))?;
            let attested = match &opts.require_attestation {
                Some(v) => Some(remote.verified_attestation(&c.manifest, root, v)?),
                None => None,
            };
            Ok((c, attested))
        });
        let (candidate, attested) = match checked {
            Ok(c) => c,
            Err(e) => {
                rejected(&e);
                continue;
            }
        };
        let publication = match cx.store.begin(&output, &manifest) {
            Ok(p) => p,
            Err(e) => return Some(Outcome::Failed(e)),
        };
        let local = |written: &store::Written| {
            let mut m = candidate.manifest.clone();
            m.name = job.name.clone();
            m.output.path = cx.store.relative_to_root(&output);
            m.inputs = plan.inputs.clone();
            // The revision is this job's to name (a tag and a branch at one commit share a fingerprint).
            if let (Some(src), crate::source::SourceSpec::Hub { revision, .. }) = (m.source.as_mut(), &job.source) {
                src.revision = Some(revision.clone());
                *src = crate::manifest::consistency::sealed(src.clone());
            }
            m.stat = StatCache { output: written.stat, sources: BTreeMap::new() };
            m.pulled = Some(crate::manifest::Pulled {
                from: remote.shown().to_string(),
                index: candidate.key.clone(),
                at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                checked: format!(
                    "bytes: size and sha256 recomputed while stored; manifest: self-consistent, fingerprint \
                     recomputed here, inputs' sha256 equal to this workspace's, parameters and tensor the ones planned \
                     here{}; not checked here: the source record, facts and nan_count (the builder's)",
                    if attested.is_some() {
                        "; attestation: its statement names these bytes and this fingerprint, and cosign verify-blob \
                         accepted its signature bundle"
                    } else {
                        ""
                    }
                ),
            });
            m.to_bytes()
        };
        match remote.fetch_into(&candidate, publication, local) {
            Ok(written) => {
                if let Some((statement, bundle)) = &attested {
                    keep_attestation(root, &job.name, frame.name(), statement, bundle);
                }
                return Some(Outcome::Pulled {
                    reasons: reasons.to_vec(),
                    sha256: written.sha256,
                    size: written.size,
                    path: output,
                });
            }
            Err(e) => rejected(&e),
        }
    }
    None
}

/// For `--dry-run`: whether the remote lists an output under the fingerprint planned here (listed, not read: a
/// real run verifies it, and builds instead if it fails).
fn pullable(opts: &RunOptions, plan: &Plan) -> bool {
    let Some(remote) = opts.remote.as_ref().filter(|_| opts.pull && crate::remote::shareable(&plan.fingerprint)) else {
        return false;
    };
    remote.index().is_ok_and(|i| i.holds(&fingerprint::digest(&plan.fingerprint)).is_some())
}

/// Whether a remote manifest (already checked against the fingerprint planned here) answers this output's request
/// in the fields the fingerprint does not hash and later steps act on: the parameters a recompute uses
/// (`verify --recompute`) and the tensor the output names must be the plan's.
fn same_request(m: &Manifest, plan: &Plan) -> std::result::Result<(), String> {
    if m.params != plan.params {
        return Err(format!("its parameters {:?} are not this output's {:?}", m.params, plan.params));
    }
    if m.output.tensor != plan.tensor || m.output.dtype != plan.dtype {
        return Err(format!(
            "it holds tensor {} ({}), not {} ({})",
            m.output.tensor,
            m.output.dtype.name(),
            plan.tensor,
            plan.dtype.name()
        ));
    }
    Ok(())
}

/// Stores a pulled output's verified statement and bundle where `attest` would put them, so they can be checked
/// again here (`cosign verify-blob`); a failure to store them is a warning: the output itself is stored.
fn keep_attestation(root: &std::path::Path, name: &str, frame: &str, statement: &[u8], bundle: &[u8]) {
    let (s, b) = crate::remote::attestation::local_paths(root, name, frame);
    for (path, bytes) in [(&s, statement), (&b, bundle)] {
        let kept = std::fs::create_dir_all(path.parent().unwrap_or(root))
            .map_err(|e| Error::io(path, e))
            .and_then(|()| store::no_links_below(root, path))
            .and_then(|()| store::write_atomic(path, bytes));
        if let Err(e) = kept {
            tracing::warn!("{name}/{frame}: its verified attestation was not kept: {e}");
        }
    }
}

/// Pushes an output just built (its manifest read back; its bytes re-hashed on the way out).
fn push_built(
    remote: &crate::remote::Remote,
    cx: &Context,
    job: &Job,
    frame: &dyn Frame,
    path: &std::path::Path,
) -> std::result::Result<crate::remote::push::Pushed, String> {
    let manifest = Manifest::read(&manifest_path(cx, job, frame)).map_err(|e| e.to_string())?;
    remote.push(&manifest, path, cx.store.root()).map_err(|e| crate::redact::redact(&e.to_string()).into_owned())
}

/// Builds an output that is to be built (or says it would, with `--dry-run`, and what it would move), under the
/// output's lock. `old` is the manifest it was judged against, if any.
#[allow(clippy::too_many_arguments)]
fn build_locked(
    frame: &dyn Frame,
    job: &Job,
    params: &Params,
    cx: &Context,
    opts: &RunOptions,
    plan: Plan,
    reasons: Vec<String>,
    old: Option<&Manifest>,
) -> Outcome {
    if opts.dry_run {
        let transfer = match plan.producer.transfer() {
            Ok(t) => t,
            Err(e) => return Outcome::Failed(e),
        };
        let same_bytes =
            old.is_some_and(|m| crate::manifest::consistency::check(m).is_ok() && plan.producer.same_bytes_as(m));
        return Outcome::WouldBuild { reasons, reads: plan.reads, transfer, same_bytes };
    }
    // Stale: take the output's lock. If another process held it, it may have just built this output.
    let root = cx.store.root();
    let (_lock, waited) = match store::lock::OutputLock::acquire(root, &job.name, frame.name()) {
        Ok(l) => l,
        Err(e) => return Outcome::Failed(e),
    };
    let plan = if waited {
        match judge(frame, job, params, cx) {
            Ok((_, a)) if a.state == State::Fresh && !opts.force => return Outcome::Fresh,
            Ok((plan, _)) => plan,
            Err(e) => return Outcome::Failed(e),
        }
    } else {
        plan
    };
    if store::lock::OutputLock::enabled() {
        store::lock::remove_leftovers(&[output_path(cx, job, frame), manifest_path(cx, job, frame)]);
    }
    let started = std::time::Instant::now();
    let id = format!("{}/{}", job.name, frame.name());
    match crate::progress::for_output(&id, || build(frame, job, cx, plan)) {
        Ok(Stored::Written(written, warnings)) => {
            let path = output_path(cx, job, frame);
            tracing::debug!("{id}: wrote {} bytes in {:.3} s", written.size, started.elapsed().as_secs_f64());
            Outcome::Built { reasons, sha256: written.sha256, size: written.size, path, warnings }
        }
        Ok(Stored::Waits(by)) => Outcome::Deferred { by },
        Err(Error::InputChanged { frame: input, path, message }) => Outcome::InputChanged { input, path, message },
        Err(e) => Outcome::Failed(e),
    }
}

/// Stores a fresh output's new stats (after a touch or a copy) — an optimisation, so it never fails the run: it
/// is done only under the output's lock (never over a manifest a concurrent builder has just written: the one
/// on disk must still be the one judged) and skipped, with a debug line, where it cannot be written (a
/// read-only workspace).
fn refresh_stat_cache(cx: &Context, job: &Job, frame: &dyn Frame, judged: &Manifest) {
    let path = manifest_path(cx, job, frame);
    let root = cx.store.root();
    let skip = |why: String| tracing::debug!(manifest = %path.display(), "stat cache not refreshed: {why}");
    let _lock = match store::lock::OutputLock::try_acquire(root, &job.name, frame.name()) {
        Ok(Some(l)) => l,
        Ok(None) => return skip("another gamma-run holds the output's lock".into()),
        Err(e) => return skip(e.to_string()),
    };
    match Manifest::read(&path) {
        Ok(now)
            if now.fingerprint == judged.fingerprint
                && now.output == judged.output
                && now.created_at == judged.created_at => {}
        Ok(_) => return skip("the manifest changed since it was judged".into()),
        Err(e) => return skip(e.to_string()),
    }
    if let Err(e) = cx.store.guard(&path).and_then(|()| store::write_atomic(&path, &judged.to_bytes()).map(|_| ())) {
        skip(e.to_string());
    }
}

/// Where output `job`/`frame` and its manifest live.
fn output_path(cx: &Context, job: &Job, frame: &dyn Frame) -> std::path::PathBuf {
    cx.store.output_path(&job.name, frame.file_name())
}

fn manifest_path(cx: &Context, job: &Job, frame: &dyn Frame) -> std::path::PathBuf {
    cx.store.manifest_path(&job.name, frame.name())
}

/// Plans an output and compares it with what is stored.
fn judge(frame: &dyn Frame, job: &Job, params: &Params, cx: &Context) -> Result<(Plan, freshness::Assessment)> {
    let plan = frame.prepare(cx, &job.target(), params)?;
    let output_path = output_path(cx, job, frame);
    let manifest_path = manifest_path(cx, job, frame);
    let rel = cx.store.relative_to_root(&output_path);
    let recheck = || {
        let mut h = store::HashOnly::new();
        plan.producer.produce(&mut h)?;
        Ok(h.finish())
    };
    let expected = freshness::Expected {
        manifest_path: &manifest_path,
        output_path: &output_path,
        output_rel: &rel,
        fingerprint: &plan.fingerprint,
        watched: &plan.watched,
        inputs: &plan.inputs,
        recheck: &recheck,
        reads: plan.reads_tensor.as_ref().map(|(k, s)| (k.as_str(), s.as_str())),
    };
    let a = freshness::assess(&expected)?;
    Ok((plan, a))
}

/// Writes the output, then its manifest. The old manifest is removed first, so no manifest ever describes
/// bytes other than the ones beside it; a crash in between leaves an output without a manifest (stale).
/// What `build` did: stored the output (with the warnings building it found), or nothing, because it waits for
/// another output fetching the same W.
enum Stored {
    Written(store::Written, Vec<String>),
    Waits(String),
}

fn build(frame: &dyn Frame, job: &Job, cx: &Context, plan: Plan) -> Result<Stored> {
    let output_path = output_path(cx, job, frame);
    let manifest_path = manifest_path(cx, job, frame);
    let before: BTreeMap<String, FileStat> = plan.watched.iter().map(|w| (w.name.clone(), w.stat)).collect();
    let mut publication = cx.store.begin(&output_path, &manifest_path)?;
    let produced = match plan.producer.produce(publication.sink()) {
        Ok(crate::frame::Production::Done(p)) => p,
        Ok(crate::frame::Production::Wait(by)) => {
            publication.abandon();
            return Ok(Stored::Waits(by));
        }
        Err(e) => {
            // Leave no trace of a failed first build.
            publication.abandon();
            return Err(e);
        }
    };
    for w in &plan.watched {
        if FileStat::of(&w.path)? != w.stat {
            publication.abandon();
            return Err(Error::checkpoint(&w.path, "changed while it was being read; nothing was stored, run again"));
        }
    }
    let expect = produced.expect_sha256.as_ref().map(|(sha, from)| (sha.as_str(), from.as_path()));
    let relative = cx.store.relative_to_root(&output_path);
    let (shape, source, nan_count) = (produced.shape.clone(), produced.source.clone(), produced.nan_count);
    let written = publication.commit(expect, |written| {
        Manifest {
            schema: SCHEMA.into(),
            name: job.name.clone(),
            frame: frame.name().into(),
            frame_version: frame.version(),
            output: OutputRecord {
                path: relative,
                sha256: written.sha256.clone(),
                size: written.size,
                tensor: plan.tensor,
                dtype: plan.dtype,
                shape,
            },
            source: source.map(crate::manifest::consistency::sealed),
            inputs: plan.inputs,
            params: plan.params,
            facts: produced.facts.iter().cloned().collect(),
            nan_count,
            fingerprint: fingerprint::digest(&plan.fingerprint),
            fingerprint_inputs: plan.fingerprint,
            stat: StatCache { output: written.stat, sources: before },
            tool: Tool::this(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            pulled: None,
        }
        .to_bytes()
    })?;
    Ok(Stored::Written(written, produced.warnings))
}
