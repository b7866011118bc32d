//! What holds a checkpoint's files — a directory (local checkout, HF cache snapshot) or the Hub at a commit,
//! behind `Files` — and what was found in them (`Found`), with the checks every locator applies to the chosen
//! tensor. Finding W is `find.rs`'s (safetensors) and `torch_bin.rs`'s (the legacy `.bin`); nothing here reads
//! more than small files and headers.

use crate::checkpoint::header;
use crate::error::{Error, IoContext, Result};
use crate::unembedding;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Small JSON files larger than this are refused.
pub(crate) const MAX_SMALL_FILE: u64 = 64 * 1024 * 1024;

/// Where a checkpoint's files come from. `Ok(None)`: the file does not exist there.
pub(crate) trait Files {
    fn small(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// A shard's validated header and the shard's length.
    fn header(&self, name: &str) -> Result<Option<(header::Header, u64)>>;
    /// How to name `name` in messages (a path, or repo@commit/name).
    fn describe(&self, name: &str) -> PathBuf;
    /// A file's length, `None` if it does not exist.
    fn size(&self, name: &str) -> Result<Option<u64>>;
    /// Exactly `len` bytes of `name` at `offset`.
    fn read_at(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
}

pub(crate) struct Found {
    pub(crate) config_bytes: Vec<u8>,
    /// The index's name and bytes, for a sharded checkpoint.
    pub(crate) index: Option<(String, Vec<u8>)>,
    pub(crate) choice: unembedding::Choice,
    /// What describes the shard's tensors (a safetensors header, a `.bin`'s pickle): part of a local source's
    /// identity.
    pub(crate) described_by: Vec<u8>,
    pub(crate) format: crate::manifest::Format,
    /// For a `.bin`: the zip entry holding the matrix's storage.
    pub(crate) entry: Option<String>,
    pub(crate) shard: String,
    pub(crate) shard_len: u64,
    /// The tensor read: the chosen key's entry, cut to its first rows where transformers keeps only those;
    /// `begin`/`end` relative to `data_start`.
    pub(super) w: header::TensorInfo,
    pub(super) data_start: u64,
}

impl Found {
    pub(crate) fn w(&self) -> &header::TensorInfo {
        &self.w
    }
    /// Where the matrix's first byte is in the shard file.
    pub(crate) fn w_offset(&self) -> u64 {
        self.data_start + self.w.begin
    }
}

/// The chosen tensor checked — a float matrix of the config's shape, not packed when the checkpoint is
/// quantized — and cut to its first rows where transformers keeps only those.
pub(super) fn checked(
    rules: &unembedding::Rules,
    quantized: bool,
    keys: &[&str],
    choice: &unembedding::Choice,
    wanted: unembedding::Wanted,
    w: header::TensorInfo,
) -> std::result::Result<header::TensorInfo, String> {
    // The config's sizes describe W; the input embedding may have other rows (image or audio tokens) or columns
    // (a factorised embedding), so it is checked only as a float matrix.
    let as_stored = wanted.explicit.is_some() || wanted.matrix == unembedding::Matrix::Embedding;
    unembedding::check(rules, &w, as_stored)?;
    if quantized {
        unembedding::check_quantized(rules, keys, &choice.key)?;
    }
    Ok(match choice.keep_rows {
        Some(rows) if rows < w.shape[0] => {
            let row_bytes = (w.end - w.begin) / w.shape[0];
            header::TensorInfo { end: w.begin + rows * row_bytes, shape: vec![rows, w.shape[1]], ..w }
        }
        _ => w,
    })
}

/// `-v`: which tensor was found, where, and why.
pub(super) fn log_found(
    files: &dyn Files,
    shard: &str,
    wanted: unembedding::Wanted,
    choice: &unembedding::Choice,
    w: &header::TensorInfo,
    at: &str,
) {
    tracing::debug!(
        "{} is {} in {} ({}, {:?}, {} bytes {at}): {}",
        if wanted.matrix == unembedding::Matrix::Embedding { "E" } else { "W" },
        choice.key,
        files.describe(shard).display(),
        w.dtype.name(),
        w.shape,
        w.end - w.begin,
        choice.reason
    );
}

/// A checkpoint directory on disk.
pub(crate) struct Dir<'a>(pub &'a Path);

impl Files for Dir<'_> {
    fn small(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.0.join(name);
        if !path.exists() {
            return Ok(None);
        }
        read_small(&path).map(Some)
    }
    fn header(&self, name: &str) -> Result<Option<(header::Header, u64)>> {
        let path = self.0.join(name);
        if !path.exists() {
            return Ok(None);
        }
        read_header(&path).map(Some)
    }
    fn describe(&self, name: &str) -> PathBuf {
        if name.is_empty() { self.0.to_owned() } else { self.0.join(name) }
    }
    fn size(&self, name: &str) -> Result<Option<u64>> {
        let path = self.0.join(name);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Err(Error::checkpoint(&path, "not a regular file")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }
    fn read_at(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let path = self.0.join(name);
        let f = crate::fsread::open_regular(&path)?;
        let mut buf = vec![0u8; usize::try_from(len).map_err(|_| Error::checkpoint(&path, "a read too large"))?];
        crate::fsread::read_exact_at(&f, &mut buf, offset).map_err(|e| Error::io(&path, e))?;
        Ok(buf)
    }
}

pub(super) fn read_small(path: &Path) -> Result<Vec<u8>> {
    crate::fsread::read_small(path, MAX_SMALL_FILE)
}

/// Reads and validates a shard's header: the prefix, then exactly the header bytes. Returns it and the file length.
pub(crate) fn read_header(path: &Path) -> Result<(header::Header, u64)> {
    let mut f = crate::fsread::open_regular(path)?;
    let len = f.metadata().at(path)?.len();
    let mut prefix = [0u8; 8];
    if len < 8 {
        return Err(Error::checkpoint(path, format!("{len} bytes is too short for a safetensors file")));
    }
    f.read_exact(&mut prefix).at(path)?;
    let n = header::header_len(prefix, len).map_err(|m| Error::checkpoint(path, m))?;
    let mut json = vec![0u8; n as usize];
    f.read_exact(&mut json).at(path)?;
    let h = header::parse(prefix, &json, len).map_err(|m| Error::checkpoint(path, m))?;
    Ok((h, len))
}
