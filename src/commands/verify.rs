//! `gamma-run verify [MANIFESTS_DIR | JOBFILE]`: re-hashes every output named by a manifest under the directory
//! (or of the job file's outputs), checks
//! size, SHA-256 and the tensor header against the manifest, and that the manifest agrees with itself and with
//! its inputs' manifests. `--recompute` rebuilds derived frames from the inputs their fingerprints name;
//! `--sources` re-reads every recorded source file whole (local, cache or Hub), hashes it, compares it with the
//! manifest and the Hub's current digest, and re-extracts W from those bytes. Exit 1 on any mismatch, 2 when
//! something could not be checked.

use super::Exit;
use crate::cli::VerifyArgs;
use crate::error::{IoContext, Result};
use crate::manifest::{Manifest, check_output_path, consistency};
use crate::report::verify::{Checked, Problem};
use crate::source::SourceOptions;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

pub fn execute(args: VerifyArgs, quiet: bool) -> Result<Exit> {
    let audited = super::audited::manifests(&args.manifests, "verify")?;
    let (dir, manifests) = (&audited.dir, audited.manifests);
    let dir = std::fs::canonicalize(dir).at(dir)?;
    let root = crate::store::workspace_of(&dir).to_path_buf();
    let sources = if args.sources { Some(super::source_options(args.offline, true)?) } else { None };
    let how =
        How { root: &root, manifests: &dir, recompute: args.recompute || args.sources, sources: sources.as_ref() };
    // Re-reading sources streams whole files: one at a time, each using the cores for hashing.
    let checked: Vec<Checked> = if args.sources {
        manifests.iter().map(|m| check(m, &how)).collect()
    } else {
        manifests.par_iter().map(|m| check(m, &how)).collect()
    };
    crate::report::verify::verify(&checked, &root, args.json, quiet);
    let exit = if checked.iter().any(|c| matches!(c.problem, Some(Problem::Error(_)))) {
        Exit::Error
    } else if checked.iter().any(|c| c.problem.is_some()) {
        Exit::Found
    } else {
        Exit::Ok
    };
    Ok(exit)
}

struct How<'a> {
    root: &'a Path,
    manifests: &'a Path,
    recompute: bool,
    sources: Option<&'a SourceOptions>,
}

fn check(path: &Path, how: &How) -> Checked {
    let mut c = Checked { manifest: path.to_owned(), output: None, problem: None, also: Vec::new() };
    if let Err(problem) = check_inner(path, how, &mut c.output, &mut c.also) {
        c.problem = Some(problem);
    }
    c
}

fn check_inner(
    path: &Path,
    how: &How,
    output: &mut Option<PathBuf>,
    also: &mut Vec<String>,
) -> std::result::Result<(), Problem> {
    let mismatch = Problem::Mismatch;
    let m = Manifest::read(path).map_err(|e| mismatch(e.to_string()))?;
    let name = path.parent().and_then(Path::file_name).map(|s| s.to_string_lossy().into_owned());
    let frame = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    if name.as_deref() != Some(m.name.as_str()) || frame.as_deref() != Some(m.frame.as_str()) {
        return Err(mismatch(format!(
            "manifest says {}/{} but is stored as {}/{}",
            m.name,
            m.frame,
            name.unwrap_or_default(),
            frame.unwrap_or_default()
        )));
    }
    consistency::check(&m).map_err(|why| mismatch(format!("manifest edited: {why}")))?;
    let inputs = consistency::inputs(&m, how.manifests).map_err(|why| mismatch(format!("manifest edited: {why}")))?;
    crate::source::share::vouched(how.manifests, &m).map_err(mismatch)?;
    check_output_path(&m.output.path).map_err(mismatch)?;
    let root = how.root;
    let out = root.join(&m.output.path);
    *output = Some(out.clone());
    let real = std::fs::canonicalize(&out).map_err(|e| mismatch(format!("output {}: {e}", out.display())))?;
    if !real.starts_with(root) {
        return Err(mismatch(format!("output {} resolves outside {}", out.display(), root.display())));
    }
    let size = std::fs::metadata(&real).map_err(|e| mismatch(e.to_string()))?.len();
    if size != m.output.size {
        return Err(mismatch(format!("size {size} differs from the manifest's {}", m.output.size)));
    }
    let sha = crate::store::sha256_file(&real).map_err(|e| mismatch(e.to_string()))?;
    if sha != m.output.sha256 {
        return Err(mismatch(format!("sha256 {sha} differs from the manifest's {}", m.output.sha256)));
    }
    let (h, _) = crate::source::read_header(&real).map_err(|e| mismatch(e.to_string()))?;
    let t = h.get(&m.output.tensor).ok_or_else(|| mismatch(format!("the file has no tensor {:?}", m.output.tensor)))?;
    if t.dtype.name() != m.output.dtype.name() || t.shape != m.output.shape {
        return Err(mismatch(format!(
            "tensor {:?} is {} {:?}, the manifest says {} {:?}",
            t.name,
            t.dtype.name(),
            t.shape,
            m.output.dtype.name(),
            m.output.shape
        )));
    }
    if how.recompute {
        let frame = crate::frame::by_name(&m.frame).ok_or_else(|| mismatch(format!("unknown frame {:?}", m.frame)))?;
        if let Some(producer) = frame.reproduce(root, &m, &inputs) {
            let mut h = crate::store::HashOnly::new();
            let done = producer
                .and_then(|p| p.produce(&mut h))
                .map_err(|e| Problem::Error(format!("cannot recompute: {e}")))?;
            if let crate::frame::Production::Wait(by) = done {
                return Err(Problem::Error(format!("cannot recompute: it waits for {by}")));
            }
            let again = h.finish();
            if again != m.output.sha256 {
                return Err(mismatch(format!(
                    "recomputed from its inputs, it hashes to {again}, not {}",
                    m.output.sha256
                )));
            }
            also.push("recomputed from its inputs".into());
        }
    }
    if let (Some(opts), Some(s)) = (how.sources, &m.source) {
        check_sources(&m, s, root, opts)?;
        also.push(format!("{} source files re-read, {} re-extracted", s.files.len(), m.output.tensor));
    }
    Ok(())
}

/// Re-reads every source file whole, compares it with the manifest (and the Hub's current digest, online), and
/// re-extracts W from the bytes read.
fn check_sources(
    m: &Manifest,
    s: &crate::manifest::SourceRecord,
    root: &Path,
    opts: &SourceOptions,
) -> std::result::Result<(), Problem> {
    let mut problems = Vec::new();
    for f in &s.files {
        let mut w = if f.path == s.range.file {
            Some(
                crate::frame::Reextract::new(s, &m.output.tensor)
                    .map_err(|e| Problem::Mismatch(format!("manifest edited: {e}")))?,
            )
        } else {
            None
        };
        let mut feed = |pos: u64, piece: &[u8]| match w.as_mut() {
            Some(r) => r.feed(pos, piece),
            None => Ok(()),
        };
        let got = crate::source::reread::reread(s, f, root, opts, &mut feed)
            .map_err(|e| Problem::Error(format!("source file {}: {e}", f.path)))?;
        let from = got.read_from;
        if got.size != f.size {
            problems.push(format!("source {from}: {} bytes, the manifest records {}", got.size, f.size));
        }
        if let Some(want) = &f.sha256
            && got.sha256 != *want
        {
            let said = f.digest_from(s.kind).map_or("?", super::super::manifest::DigestFrom::as_str);
            problems.push(format!(
                "source {from}: sha256 {} differs from the manifest's {want} (sha256_from: {said})",
                got.sha256
            ));
        }
        if let Some(Err(why)) = got.hub_agrees {
            problems.push(format!("source {from}: {why}, the bytes read hash to {}", got.sha256));
        }
        if let Some(r) = w {
            match r.finish() {
                Some(h) if h == m.output.sha256 => {}
                Some(h) => problems.push(format!(
                    "{} re-extracted from {from} gives a file with sha256 {h}, not the stored output's {}",
                    m.output.tensor, m.output.sha256
                )),
                None => problems.push(format!("{from} ends before W's recorded range")),
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(Problem::Mismatch(problems.join("; "))) }
}
