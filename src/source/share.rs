//! Sharing W's bytes between a grid's outputs — the "sibling" way W's bytes can come from, owned here with the
//! other ways (`source`): a revision whose shard has the SHA-256 of a sibling's (and W at the same range, key,
//! dtype and shape) is written from the sibling's stored file instead of fetching W again (`decide`).
//! Within one run, `Claims` makes concurrent workers fetch each distinct content once: the first to reach a
//! content fetches it, the others are deferred until it is stored (the runner runs them again afterwards).
//! A sibling is only ever an output of the same job file's grid whose manifest passes the consistency check
//! and is sealed (`consistency::seal`: its shard digests and W's range cannot have been edited unnoticed), and
//! whose file is the one that manifest describes. It does not decide freshness, and it does not fetch anything.

use super::Located;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::store::ByteSink;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The output being built, as sharing needs to know it: its frame's name, version and file name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameId {
    pub(crate) name: &'static str,
    pub(crate) version: u32,
    pub(crate) file_name: &'static str,
}

/// Where a grid output's W comes from, as sharing decides it.
pub(crate) enum Share {
    /// A sibling's stored file holds it: copy that (`copy`).
    Copy(Sibling),
    /// Another output of this run is fetching the same content: wait for it (its name).
    Wait(String),
    /// Fetch it (this output now claims the content for the run).
    Fetch,
}

/// Decides for output `name` of grid `grid` whose W is at `loc`: a sibling's bytes, a wait, or a fetch.
pub(crate) fn decide(
    store: &crate::store::Store,
    grid: &str,
    name: &str,
    id: FrameId,
    loc: &Located,
    claims: Option<&Claims>,
) -> Share {
    if let Some(sib) = sibling(store, grid, id, loc, claims) {
        return Share::Copy(sib);
    }
    if let (Some(claims), Some(content)) = (claims, Content::of(id.name, loc))
        && let Some(by) = claims.claim(content, name)
    {
        return Share::Wait(by);
    }
    Share::Fetch
}

/// A stored output whose bytes this one may take.
pub(crate) struct Sibling {
    pub(crate) name: String,
    pub(crate) file: PathBuf,
    pub(crate) sha256: String,
    pub(crate) size: u64,
    pub(crate) nan_count: u64,
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
    pub(crate) fn of(frame: &'static str, loc: &Located) -> Option<Content> {
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

/// A grid's stored outputs (for one frame) and the content each was built from, in name order.
type Index = Vec<(String, Content)>;

/// The run's sharing state. `taken`: the contents some output of this run has set out to fetch, and which
/// output. A claim is released when its claimant's job returns, and the content is then remembered as that
/// output's (`stored`): had it stored W, the outputs deferred by it find that file when they run again; had it
/// failed, the first of them to run claims the content for itself. `scanned`: per grid and frame, the contents
/// of the outputs stored before (read once a run from their manifests, not once an output).
#[derive(Debug, Default)]
pub(crate) struct Claims {
    /// Per grid, the output names the job file gives it: the only outputs that may be siblings.
    members: HashMap<String, std::collections::BTreeSet<String>>,
    taken: Mutex<HashMap<Content, String>>,
    stored: Mutex<HashMap<Content, String>>,
    scanned: Mutex<HashMap<(String, &'static str), Arc<Index>>>,
}

impl Claims {
    /// The run's sharing state for a job file whose grids have these (grid, output name) pairs.
    pub(crate) fn for_grids(members: impl Iterator<Item = (String, String)>) -> Claims {
        let mut by_grid: HashMap<String, std::collections::BTreeSet<String>> = HashMap::new();
        for (grid, name) in members {
            by_grid.entry(grid).or_default().insert(name);
        }
        Claims { members: by_grid, ..Claims::default() }
    }

    /// Claims `content` for output `name`; `Some(other)` if another output has claimed it already.
    pub(crate) fn claim(&self, content: Content, name: &str) -> Option<String> {
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

    /// Lets go of whatever output `name` claimed, remembering it as the place to look for that content.
    pub(crate) fn release(&self, name: &str) {
        let mut taken = self.taken.lock().expect("claims lock");
        let mine: Vec<Content> = taken.iter().filter(|(_, by)| *by == name).map(|(c, _)| c.clone()).collect();
        let mut stored = self.stored.lock().expect("claims lock");
        for c in mine {
            taken.remove(&c);
            stored.insert(c, name.to_string());
        }
    }

    /// The outputs of grid `grid` that may hold `want`: this run's claimant first, then those stored before.
    fn candidates(&self, store: &crate::store::Store, grid: &str, want: &Content) -> Vec<String> {
        let first = self.stored.lock().expect("claims lock").get(want).cloned();
        let index = {
            let mut scanned = self.scanned.lock().expect("claims lock");
            let key = (grid.to_string(), want.frame);
            scanned.entry(key).or_insert_with(|| Arc::new(scan(store, grid, want.frame))).clone()
        };
        let before = index.iter().filter(|(n, c)| c == want && Some(n) != first.as_ref()).map(|(n, _)| n.clone());
        let member = |n: &String| self.members.get(grid).is_some_and(|m| m.contains(n));
        first.clone().into_iter().chain(before).filter(member).collect()
    }
}

/// The content each stored output of grid `grid` (frame `frame`) was built from, by its manifest, in name order.
fn scan(store: &crate::store::Store, grid: &str, frame: &'static str) -> Index {
    let prefix = format!("{grid}@");
    let Ok(dir) = std::fs::read_dir(&store.manifests) else { return Vec::new() };
    let mut names: Vec<String> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with(&prefix))
        .collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| {
            let m = Manifest::read(&store.manifest_path(&name, frame)).ok()?;
            let c = content_of(frame, &m)?;
            Some((name, c))
        })
        .collect()
}

/// The content a stored output's manifest says it was built from.
fn content_of(frame: &'static str, m: &Manifest) -> Option<Content> {
    let src = m.source.as_ref()?;
    Some(Content {
        frame,
        repo: src.repo.clone(),
        shard_sha256: src.files.iter().find(|f| f.path == src.range.file)?.sha256.clone()?,
        offset: src.range.offset,
        length: src.range.length,
        tensor: src.tensor.clone(),
        dtype: src.dtype.clone(),
        shape: src.shape.clone(),
    })
}

/// An output of grid `grid` (frame `frame`) of this job file, built from a shard with this one's content,
/// whose stored file is the one its manifest describes: by its stat cache when that matches (the bytes are
/// checked again as they are copied: `Produced::expect_sha256`), else by hashing it now. The candidates come
/// from the run's `claims`; outside a run (no claims) nothing is shared.
fn sibling(
    store: &crate::store::Store,
    grid: &str,
    id: FrameId,
    loc: &Located,
    claims: Option<&Claims>,
) -> Option<Sibling> {
    let want = Content::of(id.name, loc)?;
    let names = claims?.candidates(store, grid, &want);
    names.into_iter().find_map(|name| stored_as_recorded(store, name, id, &want))
}

/// Output `name`, if its manifest (read now) is sealed, agrees with itself, says it holds `want`, and its file is
/// the one the manifest describes. Never an output pulled from a remote store: its source record is the
/// builder's word (only its bytes, fingerprint and inputs were checked here), so it cannot vouch for another W.
fn stored_as_recorded(store: &crate::store::Store, name: String, id: FrameId, want: &Content) -> Option<Sibling> {
    let (frame, file_name) = (id.name, id.file_name);
    let m = Manifest::read(&store.manifest_path(&name, frame)).ok()?;
    let sealed = m.source.as_ref().is_some_and(|s| s.seal.is_some());
    let same = m.name == name
        && sealed
        && m.pulled.is_none()
        && crate::manifest::consistency::check(&m).is_ok()
        && m.frame == frame
        && content_of(frame, &m).as_ref() == Some(want)
        && m.frame_version == id.version
        && crate::manifest::check_output_path(&m.output.path).is_ok()
        && store.root().join(&m.output.path) == store.output_path(&name, file_name);
    if !same {
        return None;
    }
    let file = store.root().join(&m.output.path);
    let as_recorded = crate::store::FileStat::of(&file).is_ok_and(|now| m.stat.output.unchanged(&now));
    if !as_recorded && crate::store::sha256_file(&file).ok().as_deref() != Some(m.output.sha256.as_str()) {
        return None;
    }
    Some(Sibling { name, file, sha256: m.output.sha256, size: m.output.size, nan_count: m.nan_count })
}

/// `Err(why)` when the output a shared copy (`source.shared_from`) took its bytes from no longer vouches for
/// them: its manifest, where it still has one, must agree with itself, record the same content (shard digest,
/// W's range, tensor, dtype, shape) and the same output SHA-256. A sibling whose manifest is gone (its revision
/// left the grid, `clean` removed it) contradicts nothing: the bytes were checked against it when copied.
pub(crate) fn vouched(manifests: &std::path::Path, m: &Manifest) -> std::result::Result<(), String> {
    let Some(from) = m.source.as_ref().and_then(|s| s.shared_from.as_deref()) else { return Ok(()) };
    if crate::names::check_relative_file(from).is_err() || from.contains('/') {
        return Err(format!("source.shared_from {from:?} is not an output name"));
    }
    let path = manifests.join(from).join(format!("{}.json", m.frame));
    if !path.exists() {
        return Ok(());
    }
    let redo = format!("rebuild it (`gamma-run run JOBFILE --force --only {}`) to fetch W", m.name);
    let sib = Manifest::read(&path)
        .map_err(|e| format!("shared from {from}, whose manifest cannot be read ({e}); {redo}"))?;
    crate::manifest::consistency::check(&sib)
        .map_err(|why| format!("shared from {from}, whose manifest was edited ({why}); {redo}"))?;
    let frame: &'static str = if m.frame == "embedding" { "embedding" } else { "gamma" };
    let same_content = content_of(frame, &sib).is_some() && content_of(frame, &sib) == content_of(frame, m);
    if !same_content || sib.output.sha256 != m.output.sha256 || sib.name != from {
        return Err(format!(
            "shared from {from}, whose manifest no longer records this content (shard digest, W's range) and bytes; {redo}"
        ));
    }
    Ok(())
}

/// Copies the sibling's file into `out`. The sink hashes what it writes; the caller checks that hash against
/// the sibling's manifest before anything is stored.
pub(crate) fn copy(sib: &Sibling, out: &mut dyn ByteSink) -> Result<()> {
    let f = crate::fsread::open_regular(&sib.file)?;
    out.reserve(sib.size)?;
    let copied = out.copy_from(&f, &sib.file)?;
    if copied != sib.size {
        return Err(Error::checkpoint(
            &sib.file,
            format!("holds {copied} bytes, its manifest {}; nothing was stored: run `gamma-run verify`", sib.size),
        ));
    }
    Ok(())
}
