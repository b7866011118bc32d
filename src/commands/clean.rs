//! `gamma-run clean JOBFILE...` (alias `gc`): removes the outputs and manifests that no job in the given job
//! files produces any more, and temp files interrupted runs left; `--dry-run` lists them first, as DVC's `gc`
//! does. Give every job file that writes into the workspace: what none of them lists is removed.

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
}

pub fn execute(args: CleanArgs) -> Result<Exit> {
    // Job files that share a workspace are judged together; each workspace on its own.
    let mut stores: BTreeMap<std::path::PathBuf, Workspace> = BTreeMap::new();
    for path in &args.jobfiles {
        let jf = crate::grid::expand_stored(&crate::job::load(path)?)?;
        let ws = stores.entry(jf.store.root().to_path_buf()).or_insert_with(|| Workspace {
            store: jf.store.clone(),
            kept: BTreeSet::new(),
            files: Vec::new(),
        });
        ws.files.push(path.display().to_string());
        for job in &jf.jobs {
            for req in &job.frames {
                ws.kept.insert((job.name.clone(), req.name().to_string()));
            }
        }
    }
    let frames = crate::frame::names();
    let known: Vec<(&str, &str)> =
        frames.iter().filter_map(|n| crate::frame::by_name(n).map(|f| (f.name(), f.file_name()))).collect();
    let mut failed = false;
    let (mut count, mut bytes) = (0usize, 0u64);
    for Workspace { store, kept, files } in stores.values() {
        let found: Vec<_> = clean::find(store, &known, kept)?.into_iter().filter(|r| is_ours(store, r)).collect();
        let why = |w: Why, output: &(String, String)| match w {
            Why::NotProduced => format!("no job in {} produces {}/{}", files.join(", "), output.0, output.1),
            Why::Leftover => "a temp file left by an interrupted run".to_string(),
        };
        if args.dry_run {
            for r in &found {
                crate::report::cleaned("would remove", &r.path, r.size, &why(r.why, &r.output));
            }
            count += found.len();
            bytes += found.iter().map(|r| r.size).sum::<u64>();
            continue;
        }
        let (done, skipped) = clean::remove(store, &found);
        for r in &done {
            crate::report::cleaned("removed", &r.path, r.size, &why(r.why, &r.output));
        }
        for (r, reason) in &skipped {
            failed = true;
            crate::report::cleaned("KEPT", &r.path, r.size, reason);
        }
        count += done.len();
        bytes += done.iter().map(|r| r.size).sum::<u64>();
    }
    crate::report::cleaned_summary(count, bytes, args.dry_run);
    Ok(if failed { Exit::Error } else { Exit::Ok })
}
