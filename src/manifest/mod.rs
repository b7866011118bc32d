//! The manifest: one JSON file per output recording what was written (path, size, SHA-256), where it came from
//! (source or input frames), the fingerprint that decides freshness, and a stat cache. `fingerprint` encodes the
//! key, `freshness` compares a manifest with the present.

pub mod consistency;
pub mod fingerprint;
pub mod freshness;

use crate::error::{Error, IoContext, Result};
use crate::store::FileStat;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const SCHEMA: &str = "gamma-run/manifest/1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    pub name: String,
    pub frame: String,
    pub frame_version: u32,
    pub output: OutputRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputRecord>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    pub nan_count: u64,
    pub fingerprint: String,
    /// The fields the fingerprint hashes, so staleness can say which one changed.
    pub fingerprint_inputs: BTreeMap<String, String>,
    pub stat: StatCache,
    pub tool: Tool,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputRecord {
    /// Relative to the parent of the manifests directory.
    pub path: String,
    pub sha256: String,
    pub size: u64,
    pub tensor: String,
    pub dtype: String,
    pub shape: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub revision: Option<String>,
    pub commit: Option<String>,
    /// How W's bytes were read: `local`, `cache`, `range` (only W's byte range, from the Hub) or `full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch: Option<String>,
    pub files: Vec<FileRecord>,
    pub tensor: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub reason: String,
    /// W's bytes within `file`: `[offset, offset + length)`; only this range was read.
    pub range: ByteRange,
}

/// A source file as the manifest records it: its size, and its SHA-256 where known, with where that digest
/// came from (`sha256_from`), so a manifest never claims a check it did not make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: String,
    pub size: u64,
    pub sha256: Option<String>,
    /// `None` in manifests written before the field existed: read as not computed (see `digest_from`).
    #[serde(default)]
    pub sha256_from: Option<DigestFrom>,
}

/// Where a recorded digest came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestFrom {
    /// gamma-run read the whole file and hashed it.
    Computed,
    /// The Hub's word (the LFS SHA-256 from `X-Linked-Etag`), not checked against the bytes.
    Hub,
    /// The name of a blob in the HF cache, not checked against the bytes.
    Cache,
}

impl DigestFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            DigestFrom::Computed => "computed",
            DigestFrom::Hub => "hub",
            DigestFrom::Cache => "cache",
        }
    }
}

impl FileRecord {
    pub fn computed(path: &str, bytes: &[u8]) -> FileRecord {
        FileRecord {
            path: path.into(),
            size: bytes.len() as u64,
            sha256: Some(crate::store::sha256_bytes(bytes)),
            sha256_from: Some(DigestFrom::Computed),
        }
    }

    /// Where this record's digest came from; `None` when there is no digest. Manifests older than the field
    /// are read as not computed: `cache` for HF-cache sources, `hub` otherwise.
    pub fn digest_from(&self, source_kind: &str) -> Option<DigestFrom> {
        self.sha256.as_ref()?;
        Some(self.sha256_from.unwrap_or(if source_kind == "hf_cache" { DigestFrom::Cache } else { DigestFrom::Hub }))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ByteRange {
    pub file: String,
    pub offset: u64,
    pub length: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputRecord {
    pub frame: String,
    pub path: String,
    pub sha256: String,
}

/// Stats at write time: the output's, and those of source files whose content the fingerprint does not cover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatCache {
    pub output: FileStat,
    #[serde(default)]
    pub sources: BTreeMap<String, FileStat>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

impl Tool {
    pub fn this() -> Tool {
        Tool { name: env!("CARGO_PKG_NAME").into(), version: env!("CARGO_PKG_VERSION").into() }
    }
}

/// Manifests are a few KiB; anything far larger is not one, and is not read whole.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

impl Manifest {
    pub fn read(path: &Path) -> Result<Manifest> {
        use std::io::Read;
        let mut bytes = Vec::new();
        let f = crate::fsread::open_regular(path)?;
        f.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut bytes).at(path)?;
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            let why = format!("over {MAX_MANIFEST_BYTES} bytes, so not a gamma-run manifest (`run` replaces it)");
            return Err(Error::manifest(path, why));
        }
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| Error::manifest(path, format!("not a gamma-run manifest: {e}")))?;
        if m.schema != SCHEMA {
            return Err(Error::manifest(path, format!("schema {:?}; this gamma-run reads {SCHEMA:?}", m.schema)));
        }
        Ok(m)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifests serialise");
        v.push(b'\n');
        v
    }
}

/// Checks a manifest's `output.path` before it is joined to a directory: relative, no `..`.
pub fn check_output_path(p: &str) -> std::result::Result<(), String> {
    crate::names::check_relative_file(p).map_err(|e| format!("output.path {p:?} is unsafe: {e}"))
}
