//! `gamma-run clean JOBFILE...` (alias `gc`): removes the outputs and manifests that no job file of the
//! workspace produces any more (the given ones and every other job file found in it), and temp files
//! interrupted runs left; `--dry-run` lists them, and removing asks first unless `--yes`, as DVC's `gc` does.

use super::Exit;
use crate::cli::CleanArgs;
use crate::error::Result;
use crate::store::clean::{self, Why};
use std::collections::{BTreeMap, BTreeSet};

/// Whether a file `find` proposes is gamma-run's own: a temp file of the layout; a manifest that reads as one,
/// for the output its place says; an output that such a manifest names. Anything else stays.
fn is_ours(store: &crate::store::Store, r: &clean::Removal) -> bool {
    use crate::manifest::Manifest;
    if r.why == Why::Leftover {
        return true;
    }
    let manifest_path = store.manifest_path(&r.output.0, &r.output.1);
    let Ok(m) = Manifest::read(&manifest_path) else { return false };
    if m.name != r.output.0 || m.frame != r.output.1 {
        return false;
    }
    if r.path == manifest_path {
        return true;
    }
    crate::manifest::check_output_path(&m.output.path).is_ok()
        && std::fs::canonicalize(store.root().join(&m.output.path)).ok() == std::fs::canonicalize(&r.path).ok()
}

/// One workspace's store, the outputs its job files produce, and those files' names.
struct Workspace {
    store: crate::store::Store,
    kept: BTreeSet<(String, String)>,
    files: Vec<String>,
    /// The Hub repos its job files read: their interrupted downloads in the HF cache are cleaned too.
    repos: BTreeSet<String>,
}

/// A temp file of an interrupted `fetch: full` download in the HF cache: path, blob, size, repo folder.
struct Download {
    path: std::path::PathBuf,
    sha: String,
    size: u64,
    folder: String,
}

/// The interrupted downloads of `repos` in the HF cache at `cache`.
fn downloads(cache: &std::path::Path, repos: &BTreeSet<String>) -> Vec<Download> {
    let mut out = Vec::new();
    for repo in repos {
        let folder = crate::source::hf_cache::repo_folder(repo);
        for (path, sha, size) in crate::store::lock::temp_blobs(cache, &folder) {
            out.push(Download { path, sha, size, folder: folder.clone() });
        }
    }
    out
}

pub fn execute(args: CleanArgs) -> Result<Exit> {
    // Job files that share a workspace are judged together, with every other job file found in it; each
    // workspace on its own.
    let mut stores: BTreeMap<std::path::PathBuf, Workspace> = BTreeMap::new();
    let keep = |ws: &mut Workspace, path: String, jf: &crate::job::JobFile| -> Result<()> {
        if ws.files.contains(&path) {
            return Ok(());
        }
        ws.files.push(path);
        for job in &jf.jobs {
            if let crate::source::SourceSpec::Hub { repo, .. } = &job.source {
                ws.repos.insert(repo.clone());
            }
        }
        for job in &crate::grid::expand_stored(jf)?.jobs {
            for req in &job.frames {
                ws.kept.insert((job.name.clone(), req.name().to_string()));
            }
        }
        Ok(())
    };
    for path in &args.jobfiles {
        let jf = crate::job::load(path)?;
        let ws = stores.entry(jf.store.root().to_path_buf()).or_insert_with(|| Workspace {
            store: jf.store.clone(),
            kept: BTreeSet::new(),
            files: Vec::new(),
            repos: BTreeSet::new(),
        });
        keep(ws, path.display().to_string(), &jf)?;
        for (other, loaded) in crate::job::neighbours::of(&jf) {
            let shown = crate::report::shown_path(&other);
            let loaded =
                loaded.map_err(|e| crate::error::Error::UnreadableNeighbour { path: other, why: e.to_string() })?;
            keep(ws, shown, &loaded)?;
        }
    }
    let frames = crate::frame::names();
    let known: Vec<(&str, &str)> =
        frames.iter().filter_map(|n| crate::frame::by_name(n).map(|f| (f.name(), f.file_name()))).collect();
    let mut found = Vec::new();
    for ws in stores.values() {
        let mine: Vec<_> =
            clean::find(&ws.store, &known, &ws.kept)?.into_iter().filter(|r| is_ours(&ws.store, r)).collect();
        found.push(mine);
    }
    let why = |ws: &Workspace, w: Why, output: &(String, String)| match w {
        Why::NotProduced => format!("no job in {} produces {}/{}", ws.files.join(", "), output.0, output.1),
        Why::Leftover => "a temp file left by an interrupted run".to_string(),
    };
    let cache = crate::source::hf_cache::cache_dir(|k| std::env::var(k).ok());
    let repos: BTreeSet<String> = stores.values().flat_map(|w| w.repos.iter().cloned()).collect();
    let downloads = downloads(&cache, &repos);
    const DOWNLOAD: &str = "an interrupted download in the HF cache";
    let total: usize = found.iter().map(Vec::len).sum::<usize>() + downloads.len();
    let total_bytes: u64 =
        found.iter().flatten().map(|r| r.size).sum::<u64>() + downloads.iter().map(|d| d.size).sum::<u64>();
    if args.dry_run {
        for (ws, rs) in stores.values().zip(&found) {
            for r in rs {
                crate::report::clean::cleaned("would remove", &r.path, r.size, &why(ws, r.why, &r.output));
            }
        }
        for d in &downloads {
            crate::report::clean::cleaned("would remove", &d.path, d.size, DOWNLOAD);
        }
        crate::report::clean::cleaned_summary(total, total_bytes, true);
        return Ok(Exit::Ok);
    }
    if !args.yes && total > 0 && !confirmed(total, total_bytes)? {
        crate::report::clean::clean_declined(total);
        return Ok(Exit::Ok);
    }
    let mut failed = false;
    let (mut count, mut bytes) = (0usize, 0u64);
    for (ws, rs) in stores.values().zip(&found) {
        let (done, skipped) = clean::remove(&ws.store, rs);
        for r in &done {
            crate::report::clean::cleaned("removed", &r.path, r.size, &why(ws, r.why, &r.output));
        }
        for (r, reason) in &skipped {
            failed = true;
            crate::report::clean::cleaned("KEPT", &r.path, r.size, reason);
        }
        count += done.len();
        bytes += done.iter().map(|r| r.size).sum::<u64>();
    }
    for d in &downloads {
        match crate::store::lock::remove_download_if_idle(&cache, &d.folder, &d.path, &d.sha) {
            Ok(true) => {
                crate::report::clean::cleaned("removed", &d.path, d.size, DOWNLOAD);
                count += 1;
                bytes += d.size;
            }
            Ok(false) => {
                failed = true;
                crate::report::clean::cleaned(
                    "KEPT",
                    &d.path,
                    d.size,
                    "another process is downloading it (its blob lock is held)",
                );
            }
            Err(e) => {
                failed = true;
                crate::report::clean::cleaned("KEPT", &d.path, d.size, &e.to_string());
            }
        }
    }
    crate::report::clean::cleaned_summary(count, bytes, false);
    Ok(if failed { Exit::Error } else { Exit::Ok })
}

/// Asks on the terminal whether to remove `n` files; where there is no terminal to ask (CI, a pipe), the answer
/// is no, and the error says how to remove them without asking.
fn confirmed(n: usize, bytes: u64) -> Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    let size = crate::report::human_bytes(bytes);
    if !std::io::stdin().is_terminal() {
        return Err(crate::error::Error::Usage(format!(
            "clean would remove {n} files ({size}) and cannot ask here (no terminal): list them with `--dry-run`, \
             remove them with `--yes` (-y)"
        )));
    }
    eprint!("Remove {n} files ({size})? Run with --dry-run to list them first. [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(|e| crate::error::Error::io("<stdin>", e))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES"))
}
