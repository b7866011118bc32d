//! Checkpoint grids: a job with `revisions:` is one output per revision, `<name>@<revision>`. This module turns
//! `{match: GLOB}` grids into their revisions — from the lock file beside the job file when it pins them, else
//! from one refs listing per repo (`/api/models/{repo}/refs`), which also gives every revision's commit, so no
//! revision is looked up again — orders them naturally (`step2` before `step10`), writes the lock file
//! (`gamma-run lock`), and groups a grid's outputs whose W is byte-identical (the duplicate report).

use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::job::{Grid, Job, JobFile, grid_name};
use crate::source::SourceSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `jobs/x.yaml` → `jobs/x.lock.json`.
pub(crate) fn lock_path(jf: &JobFile) -> PathBuf {
    let stem = jf.path.file_stem().map_or_else(|| "jobs".into(), |s| s.to_string_lossy().into_owned());
    jf.path.with_file_name(format!("{stem}.lock.json"))
}

/// The job file's name, as a lock file records whose it is.
fn file_name(jf: &JobFile) -> String {
    jf.path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// `Err` when another job file beside this one would share its lock file (`x.yaml` and `x.yml`, or any two
/// names with the same stem): each `lock` would overwrite the other's pins.
fn no_lock_clash(jf: &JobFile) -> Result<()> {
    let (Some(stem), Some(dir)) = (jf.path.file_stem(), jf.path.parent()) else { return Ok(()) };
    let dir = if dir.as_os_str().is_empty() { std::path::Path::new(".") } else { dir };
    for ext in ["yaml", "yml"] {
        let other = dir.join(format!("{}.{ext}", stem.to_string_lossy()));
        if other.file_name() != jf.path.file_name() && other.is_file() {
            return Err(Error::LockFile {
                path: lock_path(jf),
                message: format!(
                    "{} and {} would share one lock file, {}: rename one of them (the lock file is named after the \
                 job file without its extension)",
                    jf.path.display(),
                    other.display(),
                    lock_path(jf).display()
                ),
            });
        }
    }
    Ok(())
}

/// The lock file: per grid, the revisions it resolved to, each with its commit.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Lock {
    pub(crate) version: u32,
    /// The job file it pins (its file name); absent in lock files written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) job_file: Option<String>,
    pub(crate) grids: BTreeMap<String, LockedGrid>,
    /// Single-revision Hub jobs (`revision: main`), by output name: the commit the revision resolved to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) pins: BTreeMap<String, LockedPin>,
}

/// A single-revision job's pin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct LockedPin {
    pub(crate) repo: String,
    pub(crate) revision: String,
    pub(crate) commit: String,
}

/// `jf` with its single-revision Hub jobs pinned to the commits the lock file records for them (same repo and
/// revision as the job says; a job edited since is not pinned).
fn apply_pins(jf: &JobFile, lock: Option<&Lock>) -> JobFile {
    let Some(lock) = lock.filter(|l| !l.pins.is_empty()) else { return jf.clone() };
    let mut out = jf.clone();
    for job in out.jobs.iter_mut().filter(|j| j.grid.is_none()) {
        if let SourceSpec::Hub { repo, revision, commit: commit @ None } = &mut job.source
            && let Some(pin) = lock.pins.get(&job.name).filter(|p| p.repo == *repo && p.revision == *revision)
        {
            *commit = Some(pin.commit.clone());
        }
    }
    out
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct LockedGrid {
    pub(crate) repo: String,
    /// The `match:` glob, or absent for a listed grid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pattern: Option<String>,
    pub(crate) revisions: Vec<LockedRevision>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct LockedRevision {
    pub(crate) revision: String,
    pub(crate) commit: String,
}

fn read_lock(jf: &JobFile) -> Result<Option<Lock>> {
    let path = lock_path(jf);
    let Some(bytes) = crate::fsread::read_small_opt(&path, 16 << 20)? else { return Ok(None) };
    no_lock_clash(jf)?;
    let lock: Lock = serde_json::from_slice(&bytes).map_err(|e| Error::LockFile {
        path: path.clone(),
        message: format!("{}: not a gamma-run lock file: {e}", path.display()),
    })?;
    if let Some(whose) = &lock.job_file
        && *whose != file_name(jf)
    {
        return Err(Error::LockFile {
            path: path.clone(),
            message: format!(
                "{} pins {whose}, not {}: run `gamma-run lock {}` to write this job file's own",
                path.display(),
                jf.path.display(),
                jf.path.display()
            ),
        });
    }
    for g in lock.grids.values() {
        for r in &g.revisions {
            if !crate::names::is_commit(&r.commit) {
                return Err(Error::LockFile {
                    path: path.clone(),
                    message: format!("{}: {} pins {:?}, not a 40-hex commit", path.display(), r.revision, r.commit),
                });
            }
        }
    }
    if let Some((name, p)) = lock.pins.iter().find(|(_, p)| !crate::names::is_commit(&p.commit)) {
        let message = format!("{}: {name} pins {:?}, not a 40-hex commit", path.display(), p.commit);
        return Err(Error::LockFile { path: path.clone(), message });
    }
    Ok(Some(lock))
}

/// Natural order: runs of digits compare as numbers (`step2` < `step10` < `step143000`).
pub(crate) fn natural_key(s: &str) -> Vec<(bool, u128, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        let digit = c.is_ascii_digit();
        let mut run = String::new();
        while let Some(&c) = chars.peek().filter(|c| c.is_ascii_digit() == digit) {
            run.push(c);
            chars.next();
        }
        let n = if digit { run.parse().unwrap_or(u128::MAX) } else { 0 };
        out.push((digit, n, if digit { String::new() } else { run }));
    }
    out
}

/// The job file with every grid expanded and pinned: `{match: …}` grids become their revisions, and every grid
/// revision carries its commit — from the lock file when it pins the grid, else from the repo's refs listing
/// (one call per repo), else (offline, no lock) an error for `match:` grids; listed grids then resolve as
/// plain revisions do.
pub(crate) fn expand(jf: &JobFile, hub: Option<&Hub>) -> Result<JobFile> {
    let lock = read_lock(jf)?;
    let jf = apply_pins(jf, lock.as_ref());
    if !jf.jobs.iter().any(|j| j.grid.is_some()) {
        return Ok(jf);
    }
    expand_with(&jf, hub, lock, true)
}

/// Why a grid job is still pending after `expand` (offline, with no lock file to pin its revisions): said as
/// that job's failure, while the other jobs run.
pub(crate) fn unexpanded(jf_path: &std::path::Path, job: &Job) -> Option<String> {
    let (Some(Grid { base, pending: Some(pattern) }), SourceSpec::Hub { repo, .. }) = (&job.grid, &job.source) else {
        return None;
    };
    Some(format!(
        "grid {base} ({repo}, revisions matching {pattern:?}) needs the repo's refs: offline, and no lock file pins \
         it — run `gamma-run lock {}` online first",
        jf_path.display()
    ))
}

/// A `{match: …}` grid offline and without a lock, for commands that audit what is stored (`verify`, `show`,
/// `attest`, `clean`): the revisions whose outputs exist under the manifests directory.
pub(crate) fn expand_stored(jf: &JobFile) -> Result<JobFile> {
    let mut jobs = Vec::new();
    let strict = if jf.jobs.iter().any(|j| j.grid.is_some()) {
        read_lock(jf).and_then(|lock| expand_with(&apply_pins(jf, lock.as_ref()), None, lock, false))
    } else {
        Ok(jf.clone())
    };
    let expanded = match strict {
        Ok(e) => return Ok(e),
        Err(_) => jf,
    };
    for job in &expanded.jobs {
        let Some(Grid { base, pending: Some(pattern) }) = &job.grid else {
            jobs.push(job.clone());
            continue;
        };
        let glob = glob::Pattern::new(pattern).map_err(|e| Error::Plan(e.to_string()))?;
        let prefix = format!("{base}@");
        let mut found: Vec<String> = std::fs::read_dir(&jf.store.manifests)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n.strip_prefix(&prefix).is_some_and(|rev| glob.matches(rev)))
            .collect();
        found.sort_by_key(|n| natural_key(n));
        for name in found {
            let rev = name[prefix.len()..].to_string();
            let SourceSpec::Hub { repo, .. } = &job.source else { continue };
            jobs.push(Job {
                name,
                source: SourceSpec::Hub { repo: repo.clone(), revision: rev, commit: None },
                grid: Some(Grid { base: base.clone(), pending: None }),
                ..job.clone()
            });
        }
    }
    Ok(JobFile { jobs, ..jf.clone() })
}

/// With `lenient`, a `match:` grid that cannot be expanded (offline, no lock) stays pending, for the runner to
/// fail on its own (`unexpanded`); without, it is an error.
fn expand_with(jf: &JobFile, hub: Option<&Hub>, lock: Option<Lock>, lenient: bool) -> Result<JobFile> {
    let mut listings: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut refs_of = |repo: &str| -> Result<Option<Vec<(String, String)>>> {
        if let Some(l) = listings.get(repo) {
            return Ok(Some(l.clone()));
        }
        let Some(hub) = hub else { return Ok(None) };
        let l = hub.refs(repo)?;
        listings.insert(repo.to_string(), l.clone());
        Ok(Some(l))
    };
    let mut jobs = Vec::new();
    for job in &jf.jobs {
        let (Some(grid), SourceSpec::Hub { repo, revision, .. }) = (&job.grid, &job.source) else {
            jobs.push(job.clone());
            continue;
        };
        let locked = lock
            .as_ref()
            .and_then(|l| l.grids.get(&grid.base))
            .filter(|g| &g.repo == repo && g.pattern == grid.pending);
        match &grid.pending {
            Some(pattern) => {
                let revisions: Vec<(String, String)> = match locked {
                    Some(g) => g.revisions.iter().map(|r| (r.revision.clone(), r.commit.clone())).collect(),
                    None => {
                        let Some(all) = refs_of(repo)? else {
                            if lenient {
                                jobs.push(job.clone());
                                continue;
                            }
                            return Err(Error::Plan(format!(
                                "{}: grid {} ({repo}, revisions matching {pattern:?}) needs the repo's refs: offline, and \
                                 no lock file pins it — run `gamma-run lock {}` online first",
                                jf.path.display(),
                                grid.base,
                                jf.path.display()
                            )));
                        };
                        let glob = glob::Pattern::new(pattern).map_err(|e| Error::Plan(e.to_string()))?;
                        let mut m: Vec<(String, String)> = all.into_iter().filter(|(n, _)| glob.matches(n)).collect();
                        m.sort_by_key(|(n, _)| natural_key(n));
                        m.dedup_by(|a, b| a.0 == b.0);
                        m
                    }
                };
                if revisions.is_empty() {
                    tracing::warn!("grid {}: no branch or tag of {repo} matches {pattern:?}", grid.base);
                }
                for (rev, commit) in revisions {
                    if crate::job::check_name(&grid_name(&grid.base, &rev)).is_err() {
                        tracing::warn!("grid {}: revision {rev:?} cannot name an output; skipped", grid.base);
                        continue;
                    }
                    jobs.push(Job {
                        name: grid_name(&grid.base, &rev),
                        source: SourceSpec::Hub { repo: repo.clone(), revision: rev, commit: Some(commit) },
                        grid: Some(Grid { base: grid.base.clone(), pending: None }),
                        ..job.clone()
                    });
                }
            }
            None => {
                // A listed revision: pinned by the lock, else by the refs listing (one call per repo), else
                // resolved on its own as any revision is.
                let pinned = match locked.and_then(|g| g.revisions.iter().find(|r| &r.revision == revision)) {
                    Some(r) => Some(r.commit.clone()),
                    None if crate::names::is_commit(revision) => Some(revision.clone()),
                    None => refs_of(repo)?.and_then(|l| l.into_iter().find(|(n, _)| n == revision).map(|(_, c)| c)),
                };
                let mut j = job.clone();
                j.source = SourceSpec::Hub { repo: repo.clone(), revision: revision.clone(), commit: pinned };
                jobs.push(j);
            }
        }
    }
    // A grid's names are made here: none may be another job's (`p@step1` named by hand, say).
    let mut seen = std::collections::HashSet::new();
    for j in &jobs {
        if !seen.insert(j.name.as_str()) {
            return Err(Error::Plan(format!(
                "{}: output name {:?} is used twice (a grid's revision and another job); rename one",
                jf.path.display(),
                j.name
            )));
        }
    }
    Ok(JobFile { jobs, ..jf.clone() })
}

/// The lock file for `jf`, from the Hub's refs: every grid's revisions with their commits.
pub(crate) fn lock(jf: &JobFile, hub: &Hub) -> Result<(PathBuf, Lock)> {
    no_lock_clash(jf)?;
    // Expanding afresh: an existing lock is not consulted.
    let expanded = expand_with(jf, Some(hub), None, false)?;
    let mut lock = Lock { version: 1, job_file: Some(file_name(jf)), grids: BTreeMap::new(), pins: BTreeMap::new() };
    for job in jf.jobs.iter().filter(|j| j.grid.is_none()) {
        let SourceSpec::Hub { repo, revision, commit: None } = &job.source else { continue };
        if crate::names::is_commit(revision) {
            continue; // a commit pins itself
        }
        let commit = hub.resolve_revision(repo, revision)?;
        lock.pins.insert(job.name.clone(), LockedPin { repo: repo.clone(), revision: revision.clone(), commit });
    }
    for job in &jf.jobs {
        let (Some(grid), SourceSpec::Hub { repo, .. }) = (&job.grid, &job.source) else { continue };
        let entry = lock.grids.entry(grid.base.clone()).or_insert_with(|| LockedGrid {
            repo: repo.clone(),
            pattern: grid.pending.clone(),
            revisions: Vec::new(),
        });
        if grid.pending.is_some() {
            for j in expanded.jobs.iter().filter(|j| j.grid.as_ref().is_some_and(|g| g.base == grid.base)) {
                if let SourceSpec::Hub { revision, commit: Some(c), .. } = &j.source {
                    entry.revisions.push(LockedRevision { revision: revision.clone(), commit: c.clone() });
                }
            }
        } else if let Some(j) = expanded.jobs.iter().find(|j| j.name == job.name) {
            let SourceSpec::Hub { revision, commit, .. } = &j.source else { continue };
            let c = match commit {
                Some(c) => c.clone(),
                None => hub.resolve_revision(repo, revision)?,
            };
            entry.revisions.push(LockedRevision { revision: revision.clone(), commit: c });
        }
    }
    Ok((lock_path(jf), lock))
}

/// A group of a grid's outputs whose W is byte-identical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Duplicates {
    pub(crate) grid: String,
    pub(crate) names: Vec<String>,
    /// The outputs' SHA-256.
    pub(crate) sha256: String,
    /// Whether their shard files differ (the W is the same although the files are not).
    pub(crate) files_differ: bool,
}

/// One stored γ of a grid, as duplicate grouping sees it.
#[derive(Debug, Clone)]
pub(crate) struct StoredW {
    pub(crate) name: String,
    pub(crate) grid: String,
    /// The output file's SHA-256.
    pub(crate) sha256: String,
    /// The SHA-256 of the shard W was read from, where known.
    pub(crate) shard_sha256: Option<String>,
}

/// Groups of a grid's outputs whose W is byte-identical (the same output SHA-256), two or more each, in job
/// order.
pub(crate) fn duplicates(outputs: &[StoredW]) -> Vec<Duplicates> {
    /// (grid, names, output sha256, their shards' sha256)
    type Group = (String, Vec<String>, String, Vec<Option<String>>);
    let mut groups: Vec<Group> = Vec::new();
    for StoredW { name, grid, sha256: sha, shard_sha256: shard } in outputs {
        match groups.iter_mut().find(|g| &g.0 == grid && &g.2 == sha) {
            Some(g) => {
                g.1.push(name.clone());
                g.3.push(shard.clone());
            }
            None => groups.push((grid.clone(), vec![name.clone()], sha.clone(), vec![shard.clone()])),
        }
    }
    groups
        .into_iter()
        .filter(|g| g.1.len() > 1)
        .map(|(grid, names, sha256, shards)| {
            let files_differ = shards.iter().any(|s| s.is_none() || *s != shards[0]);
            Duplicates { grid, names, sha256, files_differ }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_sort_naturally() {
        let mut v = vec!["step10", "step2", "step143000", "step0", "main", "step1"];
        v.sort_by_key(|s| natural_key(s));
        assert_eq!(v, ["main", "step0", "step1", "step2", "step10", "step143000"]);
    }

    #[test]
    fn duplicates_are_grouped_per_grid_with_whether_files_differ() {
        let o = |n: &str, g: &str, sha: &str, shard: &str| StoredW {
            name: n.into(),
            grid: g.into(),
            sha256: sha.into(),
            shard_sha256: Some(shard.into()),
        };
        let groups = duplicates(&[
            o("p@1", "p", "a", "x"),
            o("p@2", "p", "a", "x"),
            o("p@3", "p", "b", "y"),
            o("p@4", "p", "b", "z"),
            o("p@5", "p", "c", "w"),
            o("q@1", "q", "a", "x"),
        ]);
        assert_eq!(groups.len(), 2);
        assert_eq!(
            (groups[0].names.clone(), groups[0].files_differ),
            (vec!["p@1".to_string(), "p@2".to_string()], false)
        );
        assert_eq!(
            (groups[1].names.clone(), groups[1].files_differ),
            (vec!["p@3".to_string(), "p@4".to_string()], true)
        );
    }
}
