//! The other job files of a workspace (`workspace::job_files_in`), loaded: `run` and `status` refuse a job file
//! whose output names another one of them also produces, and `clean` keeps what any of them produces. It does
//! not decide what is built or removed.

use super::{JobFile, load, workspace};
use crate::error::{Error, Result};
use std::path::PathBuf;

/// The job files other than `jf` that write into `jf`'s workspace (the same manifests directory), each loaded;
/// `Err` for one that reads like a job file but cannot be loaded.
pub(crate) fn of(jf: &JobFile) -> Vec<(PathBuf, Result<JobFile>)> {
    let me = std::fs::canonicalize(&jf.path).ok();
    let root = crate::store::workspace_of(&jf.store.manifests);
    workspace::job_files_in(root)
        .into_iter()
        .filter(|p| std::fs::canonicalize(p).ok() != me)
        .filter_map(|p| match load::load(&p) {
            Ok(other) if other.store.manifests == jf.store.manifests => Some((p, Ok(other))),
            Ok(_) => None,
            Err(e) => Some((p, Err(e))),
        })
        .collect()
}

/// The name an output claims: a grid's base (its outputs are `base@revision`), else the output's own name.
fn claim(job: &super::Job) -> &str {
    job.grid.as_ref().map_or(job.name.as_str(), |g| g.base.as_str())
}

/// `Err` naming both files when another job file of the workspace produces an output `jf` produces (names
/// compared without case, as a case-insensitive filesystem would). Job files that cannot be loaded are passed
/// over here, with a warning: they stop nothing but `clean`.
pub(crate) fn check_names(jf: &JobFile) -> Result<()> {
    for (path, other) in of(jf) {
        let other = match other {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(job_file = %path.display(), "a job file of this workspace cannot be read: {e}");
                continue;
            }
        };
        for job in &jf.jobs {
            if let Some(theirs) = other.jobs.iter().find(|o| claim(o).eq_ignore_ascii_case(claim(job))) {
                return Err(Error::OutputOfTwoJobFiles {
                    name: claim(theirs).to_string(),
                    first: path,
                    second: jf.path.clone(),
                    root: crate::store::workspace_of(&jf.store.manifests).to_path_buf(),
                });
            }
        }
    }
    Ok(())
}
