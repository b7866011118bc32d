//! Sharing W's bytes between a grid's outputs: a revision whose shard has the SHA-256 of a sibling's (and W at
//! the same range, key, dtype and shape) is written from the sibling's stored file instead of fetching W again.
//! Within one run, `Claims` makes concurrent workers fetch each distinct content once: the first to reach a
//! content fetches it, the others are deferred until it is stored (the runner runs them again afterwards).
//! It does not decide freshness, and it does not fetch anything.

use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::source::Located;
use crate::store::ByteSink;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// A stored output whose bytes this one may take.
pub(super) struct Sibling {
    pub(super) name: String,
    pub(super) file: PathBuf,
    pub(super) sha256: String,
    pub(super) size: u64,
    pub(super) nan_count: u64,
}

/// What makes two outputs' bytes the same: the frame, and W's place in a shard of the same content.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Content {
    frame: &'static str,
    repo: Option<String>,
    shard_sha256: String,
    offset: u64,
    length: u64,
    tensor: String,
    dtype: String,
    shape: Vec<u64>,
}

impl Content {
    /// The content `loc` names, if its shard's SHA-256 is known (the Hub's word for LFS files).
    pub(super) fn of(frame: &'static str, loc: &Located) -> Option<Content> {
        let shard_sha256 = loc.files.iter().find(|f| f.path == loc.shard)?.sha256.clone()?;
        Some(Content {
            frame,
            repo: loc.repo.clone(),
            shard_sha256,
            offset: loc.w_offset,
            length: loc.w.end - loc.w.begin,
            tensor: loc.w.name.clone(),
            dtype: loc.w.dtype.name().to_string(),
            shape: loc.w.shape.clone(),
        })
    }
}

/// The contents some output of this run has set out to fetch, and which output. A claim is released when its
/// claimant's job returns: had it stored W, the outputs deferred by it find that file (`sibling`) when they run
/// again; had it failed, the first of them to run claims the content for itself.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    taken: Mutex<HashMap<Content, String>>,
}

impl Claims {
    /// Claims `content` for output `name`; `Some(other)` if another output has claimed it already.
    pub(super) fn claim(&self, content: Content, name: &str) -> Option<String> {
        let mut taken = self.taken.lock().expect("claims lock");
        match taken.get(&content) {
            Some(other) if other != name => Some(other.clone()),
            Some(_) => None,
            None => {
                taken.insert(content, name.to_string());
                None
            }
        }
    }

    /// Lets go of whatever output `name` claimed.
    pub(crate) fn release(&self, name: &str) {
        self.taken.lock().expect("claims lock").retain(|_, by| by != name);
    }
}

/// An output of grid `grid` (frame `frame`) built from a shard with this one's content, whose stored file is
/// the one its manifest describes: by its stat cache when that matches (the bytes are checked again as they are
/// copied: `Produced::expect_sha256`), else by hashing it now.
pub(super) fn sibling(
    store: &crate::store::Store,
    grid: &str,
    (frame, file_name): (&'static str, &str),
    loc: &Located,
) -> Option<Sibling> {
    let want = Content::of(frame, loc)?;
    let prefix = format!("{grid}@");
    let mut names: Vec<String> = std::fs::read_dir(&store.manifests)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with(&prefix))
        .collect();
    names.sort();
    for name in names {
        let Ok(m) = Manifest::read(&store.manifest_path(&name, frame)) else { continue };
        let Some(src) = &m.source else { continue };
        let theirs = Content {
            frame,
            repo: src.repo.clone(),
            shard_sha256: match src.files.iter().find(|f| f.path == src.range.file).and_then(|f| f.sha256.clone()) {
                Some(s) => s,
                None => continue,
            },
            offset: src.range.offset,
            length: src.range.length,
            tensor: src.tensor.clone(),
            dtype: src.dtype.clone(),
            shape: src.shape.clone(),
        };
        let same = m.name == name
            && m.frame == frame
            && theirs == want
            && m.frame_version == super::gamma::VERSION
            && crate::manifest::check_output_path(&m.output.path).is_ok()
            && store.root().join(&m.output.path) == store.output_path(&name, file_name);
        if !same {
            continue;
        }
        let file = store.root().join(&m.output.path);
        let as_recorded = crate::store::FileStat::of(&file).is_ok_and(|now| m.stat.output.unchanged(&now));
        if !as_recorded && crate::store::sha256_file(&file).ok().as_deref() != Some(m.output.sha256.as_str()) {
            continue;
        }
        return Some(Sibling { name, file, sha256: m.output.sha256, size: m.output.size, nan_count: m.nan_count });
    }
    None
}

/// Copies the sibling's file into `out`. The sink hashes what it writes; the caller checks that hash against
/// the sibling's manifest before anything is stored.
pub(super) fn copy(sib: &Sibling, out: &mut dyn ByteSink) -> Result<()> {
    use std::io::Read;
    let mut f = crate::fsread::open_regular(&sib.file)?;
    out.reserve(sib.size)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut copied = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(&sib.file, e))?;
        if n == 0 {
            break;
        }
        copied += n as u64;
        out.write(&buf[..n])?;
    }
    if copied != sib.size {
        return Err(Error::checkpoint(
            &sib.file,
            format!("holds {copied} bytes, its manifest {}; nothing was stored: run `gamma-run verify`", sib.size),
        ));
    }
    Ok(())
}
