//! `gamma-run show PATH`: one stored output, or its manifest (or, given a job file, each of its outputs), for a person auditing it — shape, dtype, sizes,
//! provenance (repo, commit, key and why, source files, inputs) and whether the file still matches its manifest.
//! Exit 1 when it does not (or when no manifest describes the file).

use super::Exit;
use crate::cli::ShowArgs;
use crate::error::{Error, IoContext, Result};
use crate::manifest::{Manifest, check_output_path};
use crate::report::show::Shown;
use std::path::{Path, PathBuf};

pub fn execute(args: ShowArgs) -> Result<Exit> {
    // A job file: each of its built outputs, in job order (JSON: an array).
    if super::audited::is_job_file(&args.path) {
        let audited = super::audited::manifests(&args.path, "show")?;
        let shown = audited.manifests.iter().map(|m| shown(m)).collect::<Result<Vec<_>>>()?;
        crate::report::show::show_all(&shown, args.json);
        return Ok(if shown.iter().all(|s| s.matches) { Exit::Ok } else { Exit::Found });
    }
    // An output's name (NAME or NAME/FRAME) where no such file exists: its manifests in the workspace here.
    if !args.path.exists()
        && let Some(manifests) = by_name(&args.path)?
    {
        let shown = manifests.iter().map(|m| shown(m)).collect::<Result<Vec<_>>>()?;
        match shown.as_slice() {
            [one] => crate::report::show::show(one, args.json),
            all => crate::report::show::show_all(all, args.json),
        }
        return Ok(if shown.iter().all(|s| s.matches) { Exit::Ok } else { Exit::Found });
    }
    let shown = shown(&args.path)?;
    crate::report::show::show(&shown, args.json);
    Ok(if shown.matches { Exit::Ok } else { Exit::Found })
}

/// The manifests an output name stands for (`NAME`: every frame built; `NAME/FRAME`: that one), in the nearest
/// workspace (a directory holding `manifests/`) at or above the current directory. `None` when `path` is not
/// shaped like a name; an error naming what was looked for when it is, but nothing matches.
fn by_name(path: &Path) -> Result<Option<Vec<PathBuf>>> {
    let text = path.to_string_lossy();
    let (name, frame) = match text.split_once('/') {
        Some((n, f)) => (n, Some(f)),
        None => (text.as_ref(), None),
    };
    let plain = |s: &str| crate::job::check_name(s).is_ok();
    if !plain(name) || frame.is_some_and(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')) {
        return Ok(None);
    }
    let cwd = std::env::current_dir().at(".")?;
    let Some(root) = cwd.ancestors().find(|a| a.join("manifests").is_dir()) else { return Ok(None) };
    let dir = root.join("manifests").join(name);
    let mut found: Vec<PathBuf> = match frame {
        Some(f) => vec![dir.join(format!("{f}.json"))].into_iter().filter(|p| p.is_file()).collect(),
        None => std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json") && p.is_file())
            .collect(),
    };
    found.sort();
    if found.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no such file, and no output of that name in {} (give a file, a manifest, a job file, or NAME[/FRAME] \
             of a built output)",
            path.display(),
            root.join("manifests").display()
        )));
    }
    Ok(Some(found))
}

/// One stored output (named by its file or its manifest), read and compared with its manifest.
fn shown(path: &Path) -> Result<Shown> {
    let path = &path.to_path_buf();
    let (file, manifest_path) = if path.extension().is_some_and(|e| e == "json") {
        let m = Manifest::read(path)?;
        check_output_path(&m.output.path).map_err(|e| Error::manifest(path, e))?;
        let root = manifests_root(path)?;
        (root.join(&m.output.path), Some(path.clone()))
    } else {
        (path.clone(), find_manifest(path)?)
    };
    let manifest = manifest_path.as_deref().map(Manifest::read).transpose()?;
    // A missing or unreadable file is reported as not matching; the manifest's provenance is still shown.
    let (tensors, size, sha256) = match crate::source::read_header(&file) {
        Ok((header, size)) => {
            let t = header.tensors.iter().map(|t| (t.name.clone(), t.dtype.name().to_string(), t.shape.clone()));
            (t.collect(), size, crate::store::sha256_file(&file)?)
        }
        Err(e) if manifest.is_some() => (Vec::new(), 0, format!("(unreadable: {e})")),
        Err(e) => return Err(e),
    };
    let matches = manifest.as_ref().is_some_and(|m| m.output.sha256 == sha256 && m.output.size == size);
    // A token_stats file: its summary (from the file, which is what the manifest describes only when it matches).
    let is_stats = manifest.as_ref().is_some_and(|m| m.frame == "token_stats");
    let stats = if is_stats && size > 0 { Some(crate::frame::stats_summary::summarize(&file)?) } else { None };
    Ok(Shown { file, manifest_path, manifest, tensors, size, sha256, matches, stats })
}

/// `<root>/manifests/<name>/<frame>.json` → `<root>`.
fn manifests_root(manifest: &Path) -> Result<PathBuf> {
    let abs = std::fs::canonicalize(manifest).at(manifest)?;
    // <manifests>/<name>/<frame>.json: the manifests directory is two levels up.
    abs.ancestors()
        .nth(2)
        .map(|dir| crate::store::workspace_of(dir).to_path_buf())
        .ok_or_else(|| Error::manifest(manifest, "not inside a <manifests>/<name>/ directory"))
}

/// The manifest whose `output.path` is this file: looked for in `manifests/` beside the tensors directory.
fn find_manifest(file: &Path) -> Result<Option<PathBuf>> {
    let abs = std::fs::canonicalize(file).at(file)?;
    for root in abs.ancestors().skip(1) {
        let dir = root.join("manifests");
        let Ok(names) = std::fs::read_dir(&dir) else { continue };
        for name in names.flatten() {
            for entry in std::fs::read_dir(name.path()).into_iter().flatten().flatten() {
                let p = entry.path();
                let Ok(m) = Manifest::read(&p) else { continue };
                if check_output_path(&m.output.path).is_ok()
                    && std::fs::canonicalize(root.join(&m.output.path)).ok().as_deref() == Some(&*abs)
                {
                    return Ok(Some(p));
                }
            }
        }
    }
    Ok(None)
}
