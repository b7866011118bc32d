//! The workspace of a job file: where its outputs go when it has no `output:` keys, and which other job files
//! write into the same one. The rule, as README states it: a job file's workspace is its own directory, unless
//! it sits in a `jobs/` directory (at any depth), when it is the directory holding that `jobs/` — or, for a job
//! file in a subdirectory of `jobs/`, where a directory between them already holds `tensors/`, `manifests/` or
//! `.gamma-run/`, the nearest such (an existing workspace keeps its outputs where they are). Nothing is ever
//! placed above that. It does not read or validate job files (`validate` does), nor decide what to build or
//! remove.

use std::path::{Path, PathBuf};

/// What marks a directory as a workspace already in use.
const MARKS: [&str; 3] = ["tensors", "manifests", ".gamma-run"];

/// The default workspace of a job file in directory `dir` (absolute, canonical).
pub(crate) fn default_root(dir: &Path) -> PathBuf {
    let holder = dir.ancestors().find(|a| a.file_name().is_some_and(|n| n == "jobs")).and_then(Path::parent);
    let Some(holder) = holder else { return dir.to_path_buf() };
    // A job file directly in `jobs/` writes beside it, as it always has.
    if dir.file_name().is_some_and(|n| n == "jobs") {
        return holder.to_path_buf();
    }
    dir.ancestors()
        .take_while(|a| a.starts_with(holder))
        .find(|a| *a != holder && MARKS.iter().any(|m| a.join(m).is_dir()))
        .unwrap_or(holder)
        .to_path_buf()
}

/// Job files that may write into workspace `root`: YAML files in it and, at most three levels down, in its
/// `jobs/` directory, that read like gamma-run job files (a top-level `version:` and `jobs:`), in path order.
/// Hidden directories and symlinks are not followed.
pub(crate) fn job_files_in(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    collect(root, 0, 0, &mut found);
    collect(&root.join("jobs"), 0, 3, &mut found);
    found.sort();
    found.dedup();
    found
}

fn collect(dir: &Path, depth: usize, max: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let (path, name) = (e.path(), e.file_name().to_string_lossy().into_owned());
        let Ok(kind) = e.file_type() else { continue };
        if name.starts_with('.') {
            continue;
        }
        if kind.is_dir() && depth < max {
            collect(&path, depth + 1, max, out);
        } else if kind.is_file() && (name.ends_with(".yaml") || name.ends_with(".yml")) && reads_like_a_job_file(&path)
        {
            out.push(path);
        }
    }
}

/// Whether a YAML file has the top-level keys of a gamma-run job file (a GitHub workflow, a compose file or a
/// config beside them does not).
fn reads_like_a_job_file(path: &Path) -> bool {
    let Ok(text) = crate::fsread::read_small(path, super::spec::MAX_JOB_FILE_BYTES) else { return false };
    let text = String::from_utf8_lossy(&text);
    let top = |key: &str| text.lines().any(|l| l.strip_prefix(key).is_some_and(|r| r.trim_start().starts_with(':')));
    top("version") && top("jobs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_keeps_outputs_inside_the_project() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        let sub = root.join("jobs/sub");
        std::fs::create_dir_all(&sub).unwrap();
        // A job file at the root: its own directory, never its parent.
        assert_eq!(default_root(&root), root);
        // jobs/x.yaml and jobs/sub/x.yaml: the directory holding jobs/.
        assert_eq!(default_root(&root.join("jobs")), root);
        assert_eq!(default_root(&sub), root);
        // An existing workspace in between (jobs/sub's outputs under jobs/ from before this rule) stays put.
        std::fs::create_dir_all(root.join("jobs/manifests")).unwrap();
        assert_eq!(default_root(&sub), root.join("jobs"));
        assert_eq!(default_root(&root.join("jobs")), root, "a jobs/ directory is not its own workspace");
        // Elsewhere: the job file's own directory, whatever lies above it.
        std::fs::create_dir_all(root.join("other/deeper")).unwrap();
        std::fs::create_dir_all(root.join("tensors")).unwrap();
        assert_eq!(default_root(&root.join("other/deeper")), root.join("other/deeper"));
    }

    #[test]
    fn job_files_are_found_in_the_root_and_under_jobs() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("jobs/a/b/c/d")).unwrap();
        std::fs::create_dir_all(root.join(".github/workflows")).unwrap();
        let job = "version: 1\njobs:\n  - path: m\n";
        for p in ["top.yaml", "jobs/one.yml", "jobs/a/two.yaml", "jobs/a/b/c/deep.yaml", "jobs/a/b/c/d/too-deep.yaml"] {
            std::fs::write(root.join(p), job).unwrap();
        }
        std::fs::write(root.join(".github/workflows/ci.yml"), job).unwrap();
        std::fs::write(root.join("jobs/compose.yaml"), "services:\n  jobs: 1\n").unwrap();
        std::fs::write(root.join("jobs/x.lock.json"), "{}").unwrap();
        let found: Vec<String> =
            job_files_in(root).iter().map(|p| p.strip_prefix(root).unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(found, ["jobs/a/b/c/deep.yaml", "jobs/a/two.yaml", "jobs/one.yml", "top.yaml"]);
    }
}
