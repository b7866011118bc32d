//! Parsed job file → validated `JobFile`: one place that knows the rules (one source per job, safe unique names,
//! known frames and their parameters, output roots), and reports each violation as `file:line:col` with the
//! offending line and what to do. Reading and parsing the text is `load.rs`'s.

use super::spec::{FrameItem, JobFileSpec, JobSpec};
use super::{FrameReq, Job, JobFile};
use crate::error::{Error, Result};
use crate::source::{Fetch, SourceSpec};
use crate::store::Store;
use serde_saphyr::{Location, Spanned};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

const DTYPE_ONLY_DERIVED: &str = "`dtype:` applies to derived frames such as gamma_prime; gamma is always bf16";

/// The lines up to `line` (two before it for context) with a caret under `col`, in serde-saphyr's layout:
/// ` --> file:line:col`, the numbered lines, `^ message`.
pub(super) fn snippet(text: &str, path: &Path, line: u64, col: u64, message: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let Some(this) = lines.get(line as usize - 1) else { return String::new() };
    let width = line.to_string().len();
    let mut out = format!("\n{:width$}--> {}:{line}:{col}\n{:width$} |", "", path.display(), "");
    for n in line.saturating_sub(2).max(1)..line {
        out.push_str(&format!("\n{n:>width$} | {}", lines[n as usize - 1]));
    }
    out.push_str(&format!("\n{line:>width$} | {this}"));
    let pad = " ".repeat(col.saturating_sub(1) as usize);
    out.push_str(&format!("\n{:width$} | {pad}^ {message}", ""));
    out
}

pub(super) struct Validator<'a> {
    pub(super) path: PathBuf,
    pub(super) dir: PathBuf,
    pub(super) text: &'a str,
    /// Notes for `JobFile::notes`, gathered while validating.
    pub(super) notes: std::cell::RefCell<Vec<String>>,
}

impl Validator<'_> {
    /// A validation error at `at`, with the offending line shown as parse errors show theirs.
    fn err<T>(&self, at: &Location, message: impl Into<String>) -> Result<T> {
        let (line, col) = (at.line().max(1), at.column().max(1));
        let message = message.into();
        let shown = snippet(self.text, &self.path, line, col, &message);
        Err(Error::JobFile { path: self.path.clone(), line, col, message: format!("{message}{shown}") })
    }

    pub(super) fn job_file(&self, raw: JobFileSpec) -> Result<JobFile> {
        if raw.version.value != 1 {
            return self.err(
                &raw.version.referenced,
                format!("unsupported version {}; this gamma-run reads version 1", raw.version.value),
            );
        }
        let (tensors, manifests) = match &raw.output {
            Some(o) => (o.tensors.as_ref(), o.manifests.as_ref()),
            None => (None, None),
        };
        // Without `output:`, the workspace rule; a key given is relative to this file, as always.
        let root = super::workspace::default_root(&self.dir);
        let tensors = self.output_dir(tensors, &root.join("tensors"))?;
        let manifests = self.output_dir(manifests, &root.join("manifests"))?;
        let root = crate::store::workspace_of(&manifests);
        if !tensors.starts_with(root) || tensors == root || tensors.starts_with(&manifests) {
            let at = raw.output.as_ref().and_then(|o| o.tensors.as_ref()).map_or(Location::UNKNOWN, |t| t.referenced);
            return self.err(&at, format!(
                "output.tensors ({}) must be a separate directory inside {} (the parent of output.manifests), so manifests can name outputs by relative path",
                tensors.display(), root.display()
            ));
        }
        let default_revision = raw.defaults.as_ref().and_then(|d| d.revision.as_ref());
        let default_frames = raw.defaults.as_ref().and_then(|d| d.frames.as_ref());
        let default_fetch = raw.defaults.as_ref().and_then(|d| d.fetch.as_ref());
        if let Some(f) = default_fetch {
            self.fetch(f)?;
        }
        if let Some(rev) = default_revision {
            self.revision(rev)?;
        }
        if raw.jobs.value.is_empty() {
            return self.err(&raw.jobs.referenced, "`jobs:` is empty; list at least one job with `model:` or `path:`");
        }
        let mut names: HashMap<String, Location> = HashMap::new();
        let mut jobs = Vec::new();
        for job in &raw.jobs.value {
            let (expanded, at) = self.job(job, default_revision, default_frames, default_fetch)?;
            for job in expanded {
                if let Some(first) = names.get(&job.name) {
                    return self.err(
                        &at,
                        format!(
                            "duplicate output name {:?} (first used at line {}); give one of the jobs a distinct `name:`",
                            job.name,
                            first.line()
                        ),
                    );
                }
                names.insert(job.name.clone(), at);
                jobs.push(job);
            }
        }
        let notes = self.notes.take();
        let remote = match raw.output.as_ref().and_then(|o| o.remote.as_ref()) {
            Some(r) => Some(self.remote(r)?),
            None => None,
        };
        Ok(JobFile { path: self.path.clone(), store: Store { tensors, manifests }, jobs, notes, remote })
    }

    /// `output.remote`: a URL of a scheme gamma-run can use, checked here so a typo is reported at its place.
    fn remote(&self, raw: &Spanned<String>) -> Result<String> {
        let url = raw.value.trim();
        let scheme = url.split_once("://").map(|(s, _)| s);
        match scheme {
            Some(s) if crate::remote::SCHEMES.contains(&s) => Ok(url.to_string()),
            _ => self.err(
                &raw.referenced,
                // Not echoed: a pasted URL can carry credentials.
                "output.remote is not a remote URL; use s3://BUCKET/PREFIX (S3, MinIO, R2, Ceph), gs://BUCKET/PREFIX, \
                 az://CONTAINER/PREFIX or file:///PATH",
            ),
        }
    }

    fn output_dir(&self, raw: Option<&Spanned<String>>, default: &Path) -> Result<PathBuf> {
        let Some(raw) = raw else { return Ok(normalize(default)) };
        if raw.value.trim().is_empty() || raw.value.contains('\0') {
            return self.err(&raw.referenced, "output directory must be a non-empty path");
        }
        Ok(normalize(&self.dir.join(&raw.value)))
    }

    fn job(
        &self,
        job: &Spanned<JobSpec>,
        default_revision: Option<&Spanned<String>>,
        default_frames: Option<&Spanned<Vec<Spanned<FrameItem>>>>,
        default_fetch: Option<&Spanned<String>>,
    ) -> Result<(Vec<Job>, Location)> {
        let at = job.referenced;
        let spec = &job.value;
        let source = match (&spec.model, &spec.path) {
            (Some(_), Some(p)) => {
                return self.err(
                    &p.referenced,
                    "a job has either `model:` (a Hub repo) or `path:` (a local directory), not both",
                );
            }
            (None, None) => {
                return self.err(
                    &at,
                    "this job has neither `model:` (a Hub repo id) nor `path:` (a local checkpoint directory)",
                );
            }
            (Some(m), None) => {
                crate::names::check_repo_id(&m.value).or_else(|e| self.err(&m.referenced, e))?;
                let revision = spec.revision.as_ref().or(default_revision);
                if let Some(r) = revision {
                    self.revision(r)?;
                }
                let revision = revision.map_or_else(|| "main".into(), |r| r.value.clone());
                SourceSpec::Hub { repo: m.value.clone(), revision, commit: None }
            }
            (None, Some(p)) => {
                if let Some(r) = &spec.revision {
                    return self
                        .err(&r.referenced, "`revision:` applies to `model:` jobs; a local `path:` has no revisions");
                }
                if p.value.trim().is_empty() || p.value.contains('\0') {
                    return self.err(&p.referenced, "`path:` must name a checkpoint directory");
                }
                let dir = normalize(&self.dir.join(&p.value));
                if !dir.exists() {
                    let (line, col) = (p.referenced.line(), p.referenced.column());
                    let hint = crate::source::local::did_you_mean(&dir);
                    self.notes.borrow_mut().push(format!(
                        "{}:{line}:{col}: `path:` {:?} does not exist{hint}",
                        self.path.display(),
                        p.value
                    ));
                }
                SourceSpec::Local { dir }
            }
        };
        let name = match &spec.name {
            Some(n) => {
                check_name(&n.value).or_else(|e| self.err(&n.referenced, e))?;
                n.value.clone()
            }
            None => {
                let from = match (&spec.model, &spec.path) {
                    (Some(m), _) => m.value.rsplit('/').next().unwrap_or_default().to_string(),
                    (_, Some(p)) => {
                        Path::new(&p.value).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
                    }
                    // One source per job was checked above; a job without one never gets here.
                    _ => return self.err(&at, "a job needs `model:` or `path:`"),
                };
                check_name(&from)
                    .or_else(|e| self.err(&at, format!("cannot derive an output name: {e}; add `name:`")))?;
                from
            }
        };
        let frames = match spec.frames.as_ref().or(default_frames) {
            None if spec.dtype.is_some() => {
                let at = spec.dtype.as_ref().map_or(at, |d| d.referenced);
                return self.err(&at, DTYPE_ONLY_DERIVED);
            }
            None => {
                let gamma = crate::frame::by_name("gamma").ok_or_else(|| Error::Usage("no gamma frame".into()))?;
                vec![FrameReq { frame: gamma, params: Default::default(), selected: true }]
            }
            Some(list) => self.frames(list, spec.dtype.as_ref())?,
        };
        let tensor = match &spec.tensor {
            Some(t) if t.value.is_empty() || t.value.contains(['\n', '\0']) => {
                return self.err(&t.referenced, "`tensor:` must be a checkpoint key");
            }
            Some(t) => Some(t.value.clone()),
            None => None,
        };
        let fetch = match (&spec.fetch, &source) {
            (Some(f), SourceSpec::Local { .. }) => {
                return self.err(&f.referenced, "`fetch:` applies to `model:` jobs; a local `path:` is read in place");
            }
            (Some(f), _) => self.fetch(f)?,
            (None, _) => default_fetch.map(|f| self.fetch(f)).transpose()?.unwrap_or_default(),
        };
        let job = Job { name, source, frames, tensor, fetch, grid: None };
        match &spec.revisions {
            None => Ok((vec![job], at)),
            Some(revs) => Ok((self.grid(job, revs, spec)?, at)),
        }
    }

    /// A job with `revisions:`: one output per listed revision, named `<name>@<revision>`; or, for
    /// `{match: GLOB}`, one pending job that the grid module's `expand` turns into the matching revisions.
    fn grid(&self, job: Job, revs: &Spanned<super::spec::RevisionsSpec>, spec: &JobSpec) -> Result<Vec<Job>> {
        use super::spec::RevisionsSpec;
        let at = &revs.referenced;
        let SourceSpec::Hub { repo, .. } = &job.source else {
            return self.err(at, "`revisions:` applies to `model:` jobs; a local `path:` has no revisions");
        };
        if let Some(r) = &spec.revision {
            return self.err(&r.referenced, "a job has either `revision:` or `revisions:` (a grid), not both");
        }
        let base = job.name.clone();
        if base.contains('@') {
            return self
                .err(at, format!("a grid's name {base:?} must not contain '@', which joins it to each revision"));
        }
        match &revs.value {
            RevisionsSpec::Match(m) => {
                glob::Pattern::new(&m.pattern)
                    .or_else(|e| self.err(at, format!("`revisions: {{match: {:?}}}`: {e}", m.pattern)))?;
                Ok(vec![Job { grid: Some(super::Grid { base, pending: Some(m.pattern.clone()) }), ..job }])
            }
            RevisionsSpec::List(list) => {
                if list.is_empty() {
                    return self.err(at, "`revisions:` is empty; list revisions, or use {match: \"step*\"}");
                }
                let mut out: Vec<Job> = Vec::new();
                for rev in list {
                    self.revision(&Spanned { value: rev.clone(), referenced: *at, defined: *at })?;
                    grid_revision(rev).or_else(|e| self.err(at, e))?;
                    let name = super::grid_name(&base, rev);
                    if out.iter().any(|j| j.name == name) {
                        return self.err(at, format!("revision {rev:?} is listed twice"));
                    }
                    out.push(Job {
                        name,
                        source: SourceSpec::Hub { repo: repo.clone(), revision: rev.clone(), commit: None },
                        grid: Some(super::Grid { base: base.clone(), pending: None }),
                        ..job.clone()
                    });
                }
                Ok(out)
            }
        }
    }

    /// The frames to build, inputs first, each with its parameters checked and defaults filled in. A job-level
    /// `dtype:` applies to every listed frame that takes a dtype.
    fn frames(
        &self,
        list: &Spanned<Vec<Spanned<FrameItem>>>,
        dtype: Option<&Spanned<String>>,
    ) -> Result<Vec<FrameReq>> {
        if list.value.is_empty() {
            return self.err(&list.referenced, "`frames:` is empty; list at least one frame (e.g. [gamma])");
        }
        let mut out: Vec<FrameReq> = Vec::new();
        let mut dtype_used = false;
        for item in &list.value {
            let (name, given) = match &item.value {
                FrameItem::Name(n) => (n, Default::default()),
                FrameItem::WithParams { name, params } => {
                    (name, params.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
                }
            };
            let Some(frame) = crate::frame::by_name(name) else {
                let known = crate::frame::names().join(", ");
                let hint = crate::names::closest(name, crate::frame::names())
                    .map_or(String::new(), |f| format!(" (did you mean {f}?)"));
                return self.err(&item.referenced, format!("unknown frame {name:?}{hint}; known frames: {known}"));
            };
            let mut given: std::collections::BTreeMap<String, String> = given;
            if let Some(d) = dtype.filter(|_| frame.params().iter().any(|p| p.name == "dtype")) {
                given.entry("dtype".into()).or_insert_with(|| d.value.clone());
                dtype_used = true;
            }
            let params = crate::frame::resolve_params(frame, &given).or_else(|e| self.err(&item.referenced, e))?;
            for dep in crate::frame::with_inputs(frame) {
                let req = if dep.name() == frame.name() {
                    FrameReq { frame: dep, params: params.clone(), selected: true }
                } else {
                    // An input listed implicitly takes the parameters it shares with the frame that needs it
                    // (`causal`'s divisor and ridge are its `causal_metric`'s; never dtype), defaults for the rest.
                    let shared = shared_params(frame, dep, &params);
                    let inherited =
                        crate::frame::resolve_params(dep, &shared).or_else(|e| self.err(&item.referenced, e))?;
                    FrameReq { frame: dep, params: inherited, selected: true }
                };
                match out.iter().position(|r| r.name() == dep.name()) {
                    Some(i) if dep.name() == frame.name() => out[i] = req,
                    Some(_) => {}
                    None => out.push(req),
                }
            }
        }
        if let (Some(d), false) = (dtype, dtype_used) {
            return self.err(&d.referenced, DTYPE_ONLY_DERIVED);
        }
        // A frame and its input must agree on the parameters they share (set both, or only the later frame).
        for req in &out {
            for input in req.frame.inputs() {
                let Some(dep) = out.iter().find(|r| r.name() == input.name()) else { continue };
                for (k, v) in shared_params(req.frame, dep.frame, &req.params) {
                    if dep.params.get(&k) != Some(&v) {
                        let theirs = dep.params.get(&k).map_or("(unset)", String::as_str);
                        return self.err(
                            &list.referenced,
                            format!(
                                "{}.{k} is {v} but its input {}.{k} is {theirs}: they must agree (set {k} on {} \
                                 only, and its input takes it)",
                                req.name(),
                                dep.name(),
                                req.name()
                            ),
                        );
                    }
                }
            }
        }
        Ok(out)
    }

    fn fetch(&self, f: &Spanned<String>) -> Result<Fetch> {
        match f.value.as_str() {
            "range" => Ok(Fetch::Range),
            "full" => Ok(Fetch::Full),
            other => self.err(&f.referenced, format!("fetch must be `range` or `full`, not {other:?}")),
        }
    }

    fn revision(&self, r: &Spanned<String>) -> Result<()> {
        let v = &r.value;
        let bad = v.is_empty()
            || v.starts_with('/')
            || v.contains(['\\', '\0', '\n'])
            || v.split('/').any(|s| s.is_empty() || s == "." || s == "..");
        if bad {
            return self.err(&r.referenced, format!("{v:?} is not a valid revision (a branch, tag or 40-hex commit)"));
        }
        Ok(())
    }
}

/// Output names become one directory level under `tensors/` and `manifests/`.
/// A revision in a grid becomes part of an output name: a plain name (`step1000`, `v1.0`) or a commit.
fn grid_revision(rev: &str) -> std::result::Result<(), String> {
    if rev.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) && !rev.starts_with('.') {
        Ok(())
    } else {
        Err(format!(
            "revision {rev:?} in `revisions:` must be a plain name (letters, digits, '.', '_', '-'), as it names an output"
        ))
    }
}

pub(crate) fn check_name(name: &str) -> std::result::Result<(), String> {
    // `@` joins a grid's name and revision (`pythia@step1000`); only once, and not first.
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with(['.', '@'])
        && name.matches('@').count() <= 1
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid output name (letters, digits, '.', '_', '-'; not starting with '.')"))
    }
}

/// Lexically resolves `.` and `..` (the path need not exist yet).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The parameters `frame` (with values `params`) shares with its input `input`: same name, not `dtype`.
fn shared_params(
    frame: &dyn crate::frame::Frame,
    input: &dyn crate::frame::Frame,
    params: &crate::frame::Params,
) -> crate::frame::Params {
    let theirs: Vec<&str> = input.params().iter().map(|p| p.name).collect();
    frame
        .params()
        .iter()
        .filter(|p| p.name != "dtype" && theirs.contains(&p.name))
        .filter_map(|p| params.get(p.name).map(|v| (p.name.to_string(), v.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::load::from_text;

    fn error_of(yaml: &str) -> String {
        let dir = Path::new("/work/ws/jobs");
        match from_text(&dir.join("test.yaml"), yaml, dir) {
            Ok(_) => panic!("{yaml:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_job_files_name_the_place_and_what_to_do() {
        let cases: &[(&str, &str)] = &[
            (
                "version: 1\njobs:\n  - path: x\n    nmae: y\n",
                "test.yaml:4:5: unknown field `nmae`, expected one of model, path, name",
            ),
            ("version: 1\njobs:\n  - path: x\n    path: y\n", "test.yaml:4:5: duplicate mapping key: path"),
            ("version: 1\nversion: 1\njobs: []\n", "test.yaml:2:1: duplicate mapping key"),
            ("version: 1\njobs:\n  - path: x\n    name: ../y\n", "test.yaml:4:11: \"../y\" is not a valid output name"),
            ("version: 1\njobs:\n  - path: x\n    name: .hidden\n", "is not a valid output name"),
            (
                "version: 1\njobs:\n  - path: a\n  - path: b/a\n",
                "test.yaml:4:5: duplicate output name \"a\" (first used at line 3)",
            ),
            ("version: 1\njobs:\n\t- path: x\n", "test.yaml:3:"),
            ("version: 1\njobs: []\n---\nversion: 1\n", "test.yaml:3:1"),
            ("", "test.yaml:1:1: the job file is empty"),
            ("version: 2\njobs:\n  - path: x\n", "test.yaml:1:10: unsupported version 2"),
            (
                "version: 1\njobs:\n  - path: x\n    frames: [gama]\n",
                "unknown frame \"gama\" (did you mean gamma?); known frames: gamma",
            ),
            ("version: 1\njobs:\n  - path: x\n    frames: gamma\n", "test.yaml:4:13"),
            ("version: one\njobs: []\n", "test.yaml:1:10"),
            ("version: 1\njobs:\n  - model: a/b/c\n", "is not a Hub repo id"),
            ("version: 1\njobs:\n  - model: a/b\n    revision: ../../etc\n", "is not a valid revision"),
            ("version: 1\njobs:\n  - model: a/b\n    path: x\n", "either `model:`"),
            ("version: 1\njobs:\n  - name: x\n", "neither `model:`"),
            ("version: 1\njobs:\n  - path: x\n    revision: main\n", "a local `path:` has no revisions"),
            ("version: 1\njobs: []\n", "`jobs:` is empty"),
            ("version: 1\noutput:\n  tensors: /elsewhere\njobs:\n  - path: x\n", "must be a separate directory inside"),
            ("version: 1\nfoo: 1\njobs: []\n", "unknown field `foo`, expected one of version, output, defaults, jobs"),
            ("version: 1\njobs:\n  - path: x\n    tensor: \"\"\n", "`tensor:` must be a checkpoint key"),
        ];
        for (yaml, want) in cases {
            let err = error_of(yaml);
            assert!(err.contains(want), "{yaml:?}\n wanted: {want}\n got: {err}");
        }
    }

    #[test]
    fn every_error_shows_the_offending_line() {
        // Parse errors and validation errors alike print the line they are about.
        for (yaml, line) in [
            ("version: 1\njobs:\n  - path: x\n    nmae: y\n", "    nmae: y"),
            ("version: 2\njobs:\n  - path: x\n", "version: 2"),
            ("version: 1\njobs:\n  - path: x\n    frames: [gama]\n", "    frames: [gama]"),
            ("version: 1\njobs:\n  - model: a/b\n    revision: ../../etc\n", "    revision: ../../etc"),
        ] {
            let err = error_of(yaml);
            assert!(err.contains(line), "{yaml:?}: the error does not show its line:\n{err}");
        }
    }

    #[test]
    fn a_valid_file_gives_jobs_with_their_frames_in_dependency_order() {
        let dir = Path::new("/work/ws/jobs");
        let yaml = "version: 1\ndefaults:\n  frames: [gamma_prime]\njobs:\n  - path: ../models/m\n  - model: org/x\n    revision: v1\n    fetch: full\n    frames: [gamma]\n";
        let jf = from_text(&dir.join("test.yaml"), yaml, dir).unwrap();
        let names = |j: &Job| j.frames.iter().map(super::super::FrameReq::name).collect::<Vec<_>>();
        assert_eq!(names(&jf.jobs[0]), ["gamma", "gamma_prime"], "γ′ brings γ first");
        assert_eq!(jf.jobs[0].frames[1].params["dtype"], "f32", "defaults filled in");
        assert_eq!(jf.jobs[0].source, SourceSpec::Local { dir: PathBuf::from("/work/ws/models/m") });
        assert_eq!(jf.jobs[1].name, "x");
        assert_eq!(jf.jobs[1].fetch, Fetch::Full);
        assert_eq!(jf.jobs[1].source, SourceSpec::Hub { repo: "org/x".into(), revision: "v1".into(), commit: None });
        assert_eq!(jf.store.tensors, PathBuf::from("/work/ws/tensors"));
        assert_eq!(jf.store.manifests, PathBuf::from("/work/ws/manifests"));
    }
}
