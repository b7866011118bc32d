//! `gamma-run get ORG/MODEL[@REV]` (or a local directory): W of one model without writing a job file — for a
//! notebook's `!gamma-run get …` cell. The same job, manifest and cache rules as a job file with that one job,
//! in the workspace `-o DIR` (default: here); prints where each output went.

use super::Exit;
use crate::cli::GetArgs;
use crate::error::{Error, Result};
use crate::runner::{Outcome, RunOptions};

pub fn execute(args: GetArgs, quiet: bool) -> Result<Exit> {
    let out = args.out.clone().unwrap_or_else(|| ".".into());
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let dir = std::fs::canonicalize(&out).map_err(|e| Error::io(&out, e))?;
    let yaml = job_yaml(&args)?;
    // As if `DIR/get.yaml` held the job: its workspace is DIR (tensors/ and manifests/ there).
    let jf = crate::job::from_text(&dir.join("get.yaml"), &yaml, &dir)?;
    let cx = super::context(&jf, args.offline)?;
    let jf = crate::grid::expand(&jf, cx.sources.hub.as_deref())?;
    let opts = RunOptions { jobs: 1, ..RunOptions::default() };
    let started = std::time::Instant::now();
    let reports = crate::runner::run(&jf, &cx, &opts)?;
    let moved =
        crate::report::run::Moved { elapsed: started.elapsed(), fetched: crate::progress::fetched(), remote: false };
    crate::report::run::run(&reports, false, quiet, &moved);
    let failed = reports.iter().any(|r| !matches!(r.outcome, Outcome::Fresh | Outcome::Built { .. }));
    Ok(if failed { Exit::Error } else { Exit::Ok })
}

/// The one-job job file `args` stand for (YAML strings quoted by serde_json, which YAML reads as they are).
fn job_yaml(args: &GetArgs) -> Result<String> {
    let q = |s: &str| serde_json::to_string(s).expect("strings serialise");
    let local = std::path::Path::new(&args.model).is_dir();
    let source = if local {
        let abs = std::fs::canonicalize(&args.model).map_err(|e| Error::io(&args.model, e))?;
        format!("path: {}", q(&abs.to_string_lossy()))
    } else {
        match args.model.split_once('@') {
            Some((repo, rev)) => format!("model: {}\n    revision: {}", q(repo), q(rev)),
            None => format!("model: {}", q(&args.model)),
        }
    };
    let mut frames = vec!["gamma".to_string()];
    frames.extend(args.frames.iter().filter(|f| *f != "gamma").cloned());
    let frames: Vec<String> = frames.iter().map(|f| q(f)).collect();
    let fetch = if args.full { "\n    fetch: full" } else { "" };
    Ok(format!("version: 1\njobs:\n  - {source}\n    frames: [{}]{fetch}\n", frames.join(", ")))
}
