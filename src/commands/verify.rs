//! `gamma-run verify [MANIFESTS_DIR]`: re-hashes every output named by a manifest under the directory, checks
//! size, SHA-256 and the tensor header against the manifest, offline. Exit 1 on any mismatch.

use super::Exit;
use crate::cli::VerifyArgs;
use crate::error::{Error, IoContext, Result};
use crate::manifest::{Manifest, check_output_path, fingerprint};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// One manifest's verdict.
pub struct Checked {
    pub manifest: PathBuf,
    pub output: Option<PathBuf>,
    pub problem: Option<String>,
}

pub fn execute(args: VerifyArgs) -> Result<Exit> {
    let dir = &args.manifests;
    if !dir.is_dir() {
        return Err(Error::Usage(format!(
            "{}: no such manifests directory (pass the directory as `gamma-run verify DIR`)",
            dir.display()
        )));
    }
    let manifests = find_manifests(dir)?;
    let root = std::fs::canonicalize(dir).at(dir)?.parent().map(Path::to_path_buf).unwrap_or_default();
    let checked: Vec<Checked> = manifests.par_iter().map(|m| check(m, &root, args.recompute)).collect();
    crate::report::verify(&checked, args.json);
    Ok(if checked.iter().any(|c| c.problem.is_some()) { Exit::Found } else { Exit::Ok })
}

/// `<dir>/<name>/<frame>.json`, sorted.
pub fn find_manifests(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let sub = entry.at(dir)?.path();
        if !sub.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&sub).at(&sub)? {
            let p = f.at(&sub)?.path();
            // Anything named *.json that is not a directory is a manifest to check: a FIFO or device there is
            // reported (`Manifest::read` refuses it without blocking), never silently skipped.
            if p.extension().is_some_and(|e| e == "json") && !p.is_dir() {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn check(path: &Path, root: &Path, recompute: bool) -> Checked {
    let mut c = Checked { manifest: path.to_owned(), output: None, problem: None };
    match check_inner(path, root, recompute, &mut c.output) {
        Ok(()) => {}
        Err(problem) => c.problem = Some(problem),
    }
    c
}

fn check_inner(
    path: &Path,
    root: &Path,
    recompute: bool,
    output: &mut Option<PathBuf>,
) -> std::result::Result<(), String> {
    let m = Manifest::read(path).map_err(|e| e.to_string())?;
    let name = path.parent().and_then(Path::file_name).map(|s| s.to_string_lossy().into_owned());
    let frame = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    if name.as_deref() != Some(m.name.as_str()) || frame.as_deref() != Some(m.frame.as_str()) {
        return Err(format!(
            "manifest says {}/{} but is stored as {}/{}",
            m.name,
            m.frame,
            name.unwrap_or_default(),
            frame.unwrap_or_default()
        ));
    }
    if m.fingerprint != fingerprint::digest(&m.fingerprint_inputs) {
        return Err("manifest edited: its fingerprint does not match its fields".into());
    }
    check_output_path(&m.output.path)?;
    let out = root.join(&m.output.path);
    *output = Some(out.clone());
    let real = std::fs::canonicalize(&out).map_err(|e| format!("output {}: {e}", out.display()))?;
    if !real.starts_with(root) {
        return Err(format!("output {} resolves outside {}", out.display(), root.display()));
    }
    let size = std::fs::metadata(&real).map_err(|e| e.to_string())?.len();
    if size != m.output.size {
        return Err(format!("size {size} differs from the manifest's {}", m.output.size));
    }
    let sha = crate::store::sha256_file(&real).map_err(|e| e.to_string())?;
    if sha != m.output.sha256 {
        return Err(format!("sha256 {sha} differs from the manifest's {}", m.output.sha256));
    }
    let (h, _) = crate::source::read_header(&real).map_err(|e| e.to_string())?;
    let t = h.get(&m.output.tensor).ok_or_else(|| format!("the file has no tensor {:?}", m.output.tensor))?;
    if t.dtype.name() != m.output.dtype || t.shape != m.output.shape {
        return Err(format!(
            "tensor {:?} is {} {:?}, the manifest says {} {:?}",
            t.name,
            t.dtype.name(),
            t.shape,
            m.output.dtype,
            m.output.shape
        ));
    }
    if recompute {
        let frame = crate::frame::by_name(&m.frame).ok_or_else(|| format!("unknown frame {:?}", m.frame))?;
        if let Some(producer) = frame.reproduce(root, &m) {
            let mut h = crate::store::HashOnly::new();
            producer.and_then(|p| p.produce(&mut h)).map_err(|e| format!("cannot recompute: {e}"))?;
            let again = h.finish();
            if again != m.output.sha256 {
                return Err(format!("recomputed from its inputs, it hashes to {again}, not {}", m.output.sha256));
            }
        }
    }
    Ok(())
}
