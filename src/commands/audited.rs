//! What `verify`, `attest` and `show` audit: a manifests directory (every manifest in it), or a job file (the
//! manifests of the outputs it produces, found where `run` and `status` put them). Owns telling the two apart
//! and listing the manifests; the checks themselves belong to each command.

use crate::error::{Error, IoContext, Result};
use std::path::{Path, PathBuf};

/// The manifests to audit and the directory they live in.
pub(crate) struct Audited {
    pub(crate) dir: PathBuf,
    pub(crate) manifests: Vec<PathBuf>,
}

/// Whether `path` names a job file rather than a directory or a stored file: a YAML file.
pub(crate) fn is_job_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "yaml" || e == "yml") && !path.is_dir()
}

/// The manifests `path` stands for: every one under a manifests directory, or those of a job file's outputs that
/// have been built (the others are counted in a warning: there is nothing stored to audit).
pub(crate) fn manifests(path: &Path, command: &str) -> Result<Audited> {
    if is_job_file(path) {
        let jf = crate::grid::expand_stored(&crate::job::load(path)?)?;
        let mut manifests = Vec::new();
        let mut unbuilt = Vec::new();
        for job in &jf.jobs {
            for req in &job.frames {
                let m = jf.store.manifest_path(&job.name, req.name());
                if m.exists() { manifests.push(m) } else { unbuilt.push(format!("{}/{}", job.name, req.name())) }
            }
        }
        if !unbuilt.is_empty() {
            tracing::warn!(
                "{}: {} output(s) not built yet, so not audited: {}",
                path.display(),
                unbuilt.len(),
                unbuilt.join(", ")
            );
        }
        if manifests.is_empty() {
            return Err(Error::Usage(format!(
                "{}: none of its outputs is built yet, so there is nothing to {command}; run `gamma-run {}` first",
                path.display(),
                path.display()
            )));
        }
        return Ok(Audited { dir: jf.store.manifests.clone(), manifests });
    }
    if !path.is_dir() {
        return Err(Error::Usage(format!(
            "{}: no such manifests directory or job file (pass a directory, as `gamma-run {command} DIR`, or a job \
             file, as `gamma-run {command} jobs/x.yaml`)",
            path.display()
        )));
    }
    Ok(Audited { dir: path.to_owned(), manifests: find_manifests(path)? })
}

/// `<dir>/<name>/<frame>.json`, sorted.
fn find_manifests(dir: &Path) -> Result<Vec<PathBuf>> {
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
