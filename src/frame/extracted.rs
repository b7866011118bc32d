//! γ: W exactly as the model holds it, as bf16, in the notebook's file layout (`W.safetensors`, one tensor `W`).
//! Streams W's byte range from the shard that holds it — a local file, the HF cache, or the Hub — converting
//! f32/f16 on the way; nothing else is read.

use super::{Context, Frame, Plan, Produced, Producer, Production};
use crate::checkpoint::header::Dtype;
use crate::dtype;
use crate::error::Result;
use crate::manifest::{ByteRange, SourceRecord, fingerprint};
use crate::source::{self, Fetch, Located, Resolved, SourceOptions};
use crate::store::safetensors_file::{self, OutDtype};
use crate::store::{BUF_LEN, ByteSink};
use crate::unembedding::{Matrix, Wanted};

/// A frame read straight from the model source: γ (W, `W.safetensors`) or the input embedding
/// (`embedding`: E, `E.safetensors`), with the same conversion rules and manifest.
pub(crate) struct Extracted {
    name: &'static str,
    file_name: &'static str,
    tensor: &'static str,
    matrix: Matrix,
}

pub(crate) static GAMMA: Extracted =
    Extracted { name: super::GAMMA_NAME, file_name: "W.safetensors", tensor: "W", matrix: Matrix::Unembedding };
pub(crate) static EMBEDDING: Extracted =
    Extracted { name: "embedding", file_name: "E.safetensors", tensor: "E", matrix: Matrix::Embedding };

/// The bytes these frames write for the same source bytes; bump when they change.
pub(super) const VERSION: u32 = 1;

/// What a frame of `matrix` looks for; the job's `tensor:` names W only.
fn wanted(matrix: Matrix, tensor: Option<&str>) -> Wanted<'_> {
    match matrix {
        Matrix::Unembedding => Wanted::w(tensor),
        Matrix::Embedding => Wanted::e(),
    }
}

impl Extracted {
    fn wanted<'a>(&self, tensor: Option<&'a str>) -> Wanted<'a> {
        wanted(self.matrix, tensor)
    }
}

impl Frame for Extracted {
    fn name(&self) -> &'static str {
        self.name
    }
    fn version(&self) -> u32 {
        VERSION
    }
    fn inputs(&self) -> &'static [&'static dyn super::Frame] {
        &[]
    }
    fn file_name(&self) -> &'static str {
        self.file_name
    }

    fn prepare(&self, cx: &Context, job: &super::Target, _params: &super::Params) -> Result<Plan> {
        // Offline, a branch the cache cannot resolve may be judged at the commit this output was built from.
        let recorded = match (job.source, &cx.sources.hub) {
            (source::SourceSpec::Hub { .. }, None) => {
                crate::manifest::Manifest::read(&cx.store.manifest_path(job.name, self.name())).ok()
            }
            _ => None,
        };
        let recorded = recorded.as_ref().and_then(|m| m.source.as_ref());
        let wanted = self.wanted(job.tensor);
        let resolved = source::resolve(job.source, wanted, &cx.sources, recorded)?;
        let notes = match &resolved {
            Resolved::Hub(at) => at.note().into_iter().collect(),
            Resolved::Local(..) => Vec::new(),
        };
        let mut fp = fingerprint::base(self.name(), self.version(), OutDtype::Bf16.name());
        fp.insert("rules_version".into(), fingerprint::RULES_VERSION.to_string());
        let tensor_override = if self.matrix == Matrix::Unembedding { job.tensor } else { None };
        fp.insert("tensor_override".into(), tensor_override.unwrap_or("-").to_string());
        fp.extend(resolved.identity());
        // W's place when it can be known without the network: a local directory, or a Hub model whose snapshot is
        // in the cache (small files and one header on disk). Building reuses it; otherwise W is located then.
        let located = source::locate_cached(&resolved, wanted, &cx.sources);
        let watched = located.as_ref().map(|l| l.watched.clone()).unwrap_or_default();
        let reads = located.as_ref().map(|l| l.w.end - l.w.begin);
        let reads_tensor = located.as_ref().map(|l| (l.w.name.clone(), l.shard.clone()));
        let producer = Extract {
            root: cx.store.root().to_path_buf(),
            resolved,
            located,
            tensor: tensor_override.map(str::to_string),
            matrix: self.matrix,
            out_tensor: self.tensor,
            grid: job.grid.map(|g| Grid {
                grid: g.to_string(),
                name: job.name.to_string(),
                frame: source::share::FrameId { name: self.name, version: VERSION, file_name: self.file_name },
                store: cx.store.clone(),
                claims: cx.claims.clone(),
            }),
            fetch: job.fetch,
            sources: cx.sources.clone(),
        };
        Ok(Plan {
            fingerprint: fp,
            tensor: self.tensor.into(),
            dtype: OutDtype::Bf16,
            inputs: Vec::new(),
            params: Default::default(),
            watched,
            reads,
            notes,
            reads_tensor,
            producer: Box::new(producer),
        })
    }
}

/// Locates W (lazily for Hub sources: only when the output is built) and copies or converts it.
struct Extract {
    /// The workspace root (a local source inside it is recorded relative to it).
    root: std::path::PathBuf,
    resolved: Resolved,
    /// W as found while planning, if it could be found without the network.
    located: Option<Located>,
    tensor: Option<String>,
    matrix: Matrix,
    /// The output's tensor name (`W`, `E`).
    out_tensor: &'static str,
    fetch: Fetch,
    sources: SourceOptions,
    /// For a grid's output: where its siblings (whose bytes may be shared) are.
    grid: Option<Grid>,
}

/// A grid output's place among its siblings.
struct Grid {
    grid: String,
    /// This output's name (`<grid>@<revision>`).
    name: String,
    /// The frame being built, as sharing identifies it.
    frame: source::share::FrameId,
    store: crate::store::Store,
    claims: Option<std::sync::Arc<source::share::Claims>>,
}

impl Producer for Extract {
    fn produce(&self, out: &mut dyn ByteSink) -> Result<Production> {
        let loc = match &self.located {
            Some(loc) => loc.clone(),
            None => {
                source::locate(&self.resolved, wanted(self.matrix, self.tensor.as_deref()), self.fetch, &self.sources)?
            }
        };
        // A grid revision: `source::share` decides whether a sibling's stored bytes are copied, the revision
        // waits for another worker fetching the same content, or W is fetched.
        if let (source::WBytes::Remote(..), Some(g)) = (&loc.bytes, &self.grid) {
            let decided = source::share::decide(&g.store, &g.grid, &g.name, g.frame, &loc, g.claims.as_deref());
            if let source::share::Share::Copy(sib) = decided {
                source::share::copy(&sib, out)?;
                let mut src = record(&loc, &self.root);
                src.fetch = Some(crate::manifest::FetchMode::Shared);
                src.shared_from = Some(sib.name.clone());
                tracing::debug!(
                    "{}: W is {}'s (same shard SHA-256 and range): copied, not fetched",
                    loc.shard,
                    sib.name
                );
                let warnings = loc.choice.warning.iter().cloned().collect();
                return Ok(Production::Done(Produced {
                    shape: loc.w.shape.clone(),
                    nan_count: sib.nan_count,
                    source: Some(src),
                    warnings,
                    expect_sha256: Some((sib.sha256, sib.file)),
                    facts: Vec::new(),
                }));
            }
            if let source::share::Share::Wait(by) = decided {
                tracing::debug!("{}: W is the same as {by}'s, which is being fetched: deferred", g.name);
                return Ok(Production::Wait(by));
            }
        }
        let header = safetensors_file::header(&[safetensors_file::Entry {
            name: self.out_tensor,
            dtype: OutDtype::Bf16,
            shape: &loc.w.shape,
        }]);
        let width = dtype::source_width(loc.w.dtype) as u64;
        out.reserve(header.len() as u64 + (loc.w.end - loc.w.begin) / width * 2)?;
        out.write(&header)?;
        // Pieces of whole elements, each converting into one output buffer.
        let piece = (BUF_LEN as u64 / 2) * width;
        let (mut nan_count, mut buf) = (0u64, Vec::new());
        let mut whole = Elements::new(loc.w.dtype);
        loc.read_w(piece, &mut |bytes| {
            whole.feed(bytes, &mut |b| {
                nan_count += convert(loc.w.dtype, b, &mut buf, out)?;
                Ok(())
            })
        })?;
        if !whole.is_empty() {
            return Err(crate::error::Error::checkpoint(&loc.shard, "W ended inside an element"));
        }
        // Warnings are reported when an output is built, once: the choice's (a head stored beside a tied
        // embedding, say; the manifest's `reason` keeps it), then what the bytes showed.
        let mut warnings: Vec<String> = loc.choice.warning.iter().cloned().collect();
        if nan_count > 0 {
            warnings.push(format!(
                "W holds {nan_count} NaN values (written as the canonical NaN 0x7FC0 when converted); recorded in the manifest"
            ));
        }
        Ok(Production::Done(Produced {
            shape: loc.w.shape.clone(),
            nan_count,
            source: Some(record(&loc, &self.root)),
            warnings,
            expect_sha256: None,
            facts: Vec::new(),
        }))
    }

    fn transfer(&self) -> Result<Option<source::Transfer>> {
        match &self.located {
            Some(loc) => Ok(Some(loc.transfer())),
            None => {
                let wanted = wanted(self.matrix, self.tensor.as_deref());
                source::transfer(&self.resolved, wanted, self.fetch, &self.sources).map(Some)
            }
        }
    }

    /// γ's bytes are W's, converted the one way version 1 converts: the same W gives the same file.
    fn same_bytes_as(&self, old: &crate::manifest::Manifest) -> bool {
        let (Some(loc), Some(src)) = (&self.located, &old.source) else { return false };
        old.frame_version == VERSION && loc.same_w_as(src, &old.stat.sources)
    }
}

/// The manifest's record of where W came from; a local directory inside the workspace `root` is recorded relative
/// to it (`SourceRecord::local_dir` resolves it), one outside as it is.
fn record(loc: &Located, root: &std::path::Path) -> SourceRecord {
    let shown = |d: &std::path::PathBuf| match d.strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        _ => d.display().to_string(),
    };
    SourceRecord {
        kind: loc.kind,
        repo: loc.repo.clone(),
        path: loc.repo.is_none().then(|| loc.dir.as_ref().map(shown)).flatten(),
        revision: loc.revision.clone(),
        commit: loc.commit.clone(),
        fetch: Some(loc.fetch),
        files: loc.files.clone(),
        tensor: loc.w.name.clone(),
        dtype: loc.w.dtype.name().into(),
        shape: loc.w.shape.clone(),
        reason: loc.choice.reason.clone(),
        shared_from: None,
        seal: None,
        range: ByteRange { file: loc.shard.clone(), offset: loc.w_offset, length: loc.w.end - loc.w.begin },
        head: loc.choice.head.clone(),
        format: Some(loc.format),
        entry: loc.entry.clone(),
    }
}

/// Converts one piece of W (whole elements) into bf16 through `buf` and writes it; returns the NaN count. A bf16
/// piece is written as it is.
fn convert(dtype: Dtype, src: &[u8], buf: &mut Vec<u8>, out: &mut dyn ByteSink) -> Result<u64> {
    if dtype == Dtype::Bf16 {
        out.write(src)?;
        return Ok(dtype::bf16_nans(src));
    }
    buf.resize(src.len() / dtype::source_width(dtype) * 2, 0);
    let nans = dtype::to_bf16(dtype, src, buf);
    out.write(buf)?;
    Ok(nans)
}

/// Rebuilds γ's file hash from W's bytes as they stream past in a re-read of the whole source file
/// (`verify --sources`): the same header, the same conversion, hashed instead of stored.
pub(crate) struct Reextract {
    dtype: Dtype,
    end: u64,
    whole: Elements,
    buf: Vec<u8>,
    next: u64,
    sink: crate::store::HashOnly,
}

/// Regroups a stream of bytes into whole elements, carrying a partial element over to the next piece.
struct Elements {
    width: usize,
    carry: Vec<u8>,
}

impl Elements {
    fn new(dtype: Dtype) -> Elements {
        Elements { width: dtype::source_width(dtype), carry: Vec::new() }
    }

    /// Hands `take` the whole elements that `bytes`, after what was carried over, completes.
    fn feed(&mut self, mut bytes: &[u8], take: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        if !self.carry.is_empty() {
            let need = (self.width - self.carry.len()).min(bytes.len());
            self.carry.extend_from_slice(&bytes[..need]);
            bytes = &bytes[need..];
            if self.carry.len() < self.width {
                return Ok(());
            }
            let c = std::mem::take(&mut self.carry);
            take(&c)?;
        }
        let whole = bytes.len() / self.width * self.width;
        if whole > 0 {
            take(&bytes[..whole])?;
        }
        self.carry.extend_from_slice(&bytes[whole..]);
        Ok(())
    }

    /// No partial element is waiting.
    fn is_empty(&self) -> bool {
        self.carry.is_empty()
    }
}

impl Reextract {
    /// For the source a γ (or embedding) manifest records: the matrix's dtype, shape and byte range in
    /// `range.file`, written as the output's tensor `tensor` (`W`, `E`).
    pub(crate) fn new(src: &SourceRecord, tensor: &str) -> std::result::Result<Reextract, String> {
        if !matches!(tensor, "W" | "E") {
            return Err(format!("the manifest records output tensor {tensor:?}, not W or E"));
        }
        let dtype = Dtype::parse(&src.dtype)
            .filter(|d| matches!(d, Dtype::Bf16 | Dtype::F16 | Dtype::F32))
            .ok_or_else(|| format!("the manifest records W as {:?}, which gamma does not convert", src.dtype))?;
        // The manifest's numbers are input: checked arithmetic, an error rather than a wrap.
        let bytes = src
            .shape
            .iter()
            .try_fold(dtype::source_width(dtype) as u64, |n, d| n.checked_mul(*d))
            .filter(|n| *n == src.range.length);
        let end = src.range.offset.checked_add(src.range.length);
        let (Some(_), Some(end)) = (bytes, end) else {
            return Err(format!("the manifest's range length {} does not fit shape {:?}", src.range.length, src.shape));
        };
        let mut sink = crate::store::HashOnly::new();
        let header = safetensors_file::header(&[safetensors_file::Entry {
            name: tensor,
            dtype: OutDtype::Bf16,
            shape: &src.shape,
        }]);
        ByteSink::write(&mut sink, &header).map_err(|e| e.to_string())?;
        let begin = src.range.offset;
        Ok(Reextract { dtype, end, whole: Elements::new(dtype), buf: Vec::new(), next: begin, sink })
    }

    /// A piece of the file starting at byte `pos`; pieces must come in order.
    pub(crate) fn feed(&mut self, pos: u64, piece: &[u8]) -> Result<()> {
        let (lo, hi) = (pos.max(self.next), (pos + piece.len() as u64).min(self.end));
        if lo >= hi {
            return Ok(());
        }
        let bytes = &piece[(lo - pos) as usize..(hi - pos) as usize];
        self.next = hi;
        let (dtype, buf, sink) = (self.dtype, &mut self.buf, &mut self.sink);
        self.whole.feed(bytes, &mut |b| convert(dtype, b, buf, sink).map(|_| ()))
    }

    /// The SHA-256 of the γ file these bytes give, or `None` if the file ended before W did.
    pub(crate) fn finish(self) -> Option<String> {
        (self.next == self.end && self.whole.is_empty()).then(|| self.sink.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reextract_gives_the_same_hash_whatever_the_pieces() {
        // f32 W of 3×5 at offset 13 of a 200-byte "file", fed in pieces that split elements.
        let file: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
        let src = SourceRecord {
            kind: crate::manifest::SourceKind::Local,
            repo: None,
            path: None,
            revision: None,
            commit: None,
            fetch: None,
            files: Vec::new(),
            tensor: "lm_head.weight".into(),
            dtype: "F32".into(),
            shape: vec![3, 5],
            reason: String::new(),
            range: ByteRange { file: "model.safetensors".into(), offset: 13, length: 60 },
            head: Default::default(),
            format: None,
            entry: None,
            shared_from: None,
            seal: None,
        };
        let whole = {
            let mut r = Reextract::new(&src, "W").unwrap();
            r.feed(0, &file).unwrap();
            r.finish().unwrap()
        };
        for step in [1usize, 3, 7, 64] {
            let mut r = Reextract::new(&src, "W").unwrap();
            for (i, c) in file.chunks(step).enumerate() {
                r.feed((i * step) as u64, c).unwrap();
            }
            assert_eq!(r.finish().unwrap(), whole, "pieces of {step}");
        }
        let mut short = Reextract::new(&src, "W").unwrap();
        short.feed(0, &file[..50]).unwrap();
        assert!(short.finish().is_none());
        let mut flipped = file.clone();
        flipped[20] ^= 1;
        let mut r = Reextract::new(&src, "W").unwrap();
        r.feed(0, &flipped).unwrap();
        assert_ne!(r.finish().unwrap(), whole);
    }
}
