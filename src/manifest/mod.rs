//! The manifest: one JSON file per output recording what was written (path, size, SHA-256), where it came from
//! (source or input frames), the fingerprint that decides freshness, and a stat cache. `fingerprint` encodes the
//! key, `freshness` compares a manifest with the present.

pub(crate) mod consistency;
pub(crate) mod fingerprint;
pub(crate) mod freshness;
mod kinds;
pub(crate) mod statement;

pub(crate) use kinds::{FetchMode, Format, SourceKind};

use crate::error::{Error, IoContext, Result};
use crate::store::FileStat;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub(crate) const SCHEMA: &str = "gamma-run/manifest/1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) schema: String,
    pub(crate) name: String,
    pub(crate) frame: String,
    pub(crate) frame_version: u32,
    pub(crate) output: OutputRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) source: Option<SourceRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) inputs: Vec<InputRecord>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) params: BTreeMap<String, String>,
    /// What computing the output found that its reader needs (derived frames: e.g. the causal metric's
    /// eigenvalue range, condition number and solver). Not part of the fingerprint.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) facts: BTreeMap<String, String>,
    pub(crate) nan_count: u64,
    pub(crate) fingerprint: String,
    /// The fields the fingerprint hashes, so staleness can say which one changed.
    pub(crate) fingerprint_inputs: BTreeMap<String, String>,
    pub(crate) stat: StatCache,
    pub(crate) tool: Tool,
    pub(crate) created_at: String,
    /// Set when the output was pulled from a remote store rather than built here: from where, and what was checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pulled: Option<Pulled>,
}

/// Where a pulled output came from, and what gamma-run checked before storing it (never more than it checked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Pulled {
    /// The remote's URL (without credentials).
    pub(crate) from: String,
    /// The index object whose manifest this one copies (the builder's; `created_at` and `tool` are theirs).
    pub(crate) index: String,
    /// When it was pulled (RFC 3339, UTC).
    pub(crate) at: String,
    /// What was verified: the bytes' size and SHA-256 recomputed while storing them, against a remote manifest that
    /// agrees with itself, has the fingerprint computed here and names this workspace's inputs.
    pub(crate) checked: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OutputRecord {
    /// Relative to the parent of the manifests directory.
    pub(crate) path: String,
    pub(crate) sha256: String,
    pub(crate) size: u64,
    pub(crate) tensor: String,
    pub(crate) dtype: crate::store::safetensors_file::OutDtype,
    pub(crate) shape: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SourceRecord {
    pub(crate) kind: SourceKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<String>,
    pub(crate) revision: Option<String>,
    pub(crate) commit: Option<String>,
    /// How W's bytes were read: `local`, `cache`, `range` (only W's byte range, from the Hub) or `full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) fetch: Option<FetchMode>,
    pub(crate) files: Vec<FileRecord>,
    pub(crate) tensor: String,
    pub(crate) dtype: String,
    pub(crate) shape: Vec<u64>,
    pub(crate) reason: String,
    /// W's bytes within `file`: `[offset, offset + length)`; only this range was read.
    pub(crate) range: ByteRange,
    /// How `range.file` stores tensors: `safetensors` or `pytorch-zip` (absent in manifests from before it was
    /// recorded: safetensors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) format: Option<Format>,
    /// For `pytorch-zip`: the zip entry holding W's storage (`archive/data/0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) entry: Option<String>,
    /// With `fetch: shared`: the output of the same grid whose stored bytes were copied (its shard has this
    /// one's SHA-256 and W the same range; its file matched its manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) shared_from: Option<String>,
    /// What the model's head adds beyond `h @ W.T` (a bias, a logit scale, a soft-cap); absent when nothing.
    #[serde(default, skip_serializing_if = "Head::is_empty")]
    pub(crate) head: Head,
    /// SHA-256 of an explicit encoding of the fields above that sharing, freshness and `verify --sources` act
    /// on (`consistency::seal`): an edit to any of them reads as "manifest edited". Absent in manifests written
    /// before it existed: those are judged as before, but never lent to a grid sibling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) seal: Option<String>,
}

impl SourceRecord {
    /// A local source's directory: `path` as recorded when absolute, else relative to the workspace `root` (where
    /// the source lies inside the workspace, it is recorded relative to it, so a moved workspace still finds it).
    pub(crate) fn local_dir(&self, root: &Path) -> Option<std::path::PathBuf> {
        let p = Path::new(self.path.as_deref()?);
        Some(if p.is_absolute() { p.to_path_buf() } else { root.join(p) })
    }
}

/// What the model's head adds to `h @ W.T`, recorded in the manifest (`source.head`) and shown by `show`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Head {
    /// The head's bias tensor, where the class has one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) bias: Option<String>,
    /// Operations on the logits, with their values from the config (or the class default).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub(crate) logits: Vec<LogitValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LogitValue {
    /// `multiply`, `divide`, `softcap` or `add_bias`.
    pub(crate) op: String,
    pub(crate) config: Option<String>,
    /// The value: from config.json, else the class default; null when neither gives one (the op is then off).
    pub(crate) value: Option<serde_json::Value>,
    /// `config.json` or `class default`.
    pub(crate) from: String,
}

impl Head {
    pub(crate) fn is_empty(&self) -> bool {
        self.bias.is_none() && self.logits.is_empty()
    }
}

/// A source file as the manifest records it: its size, and its SHA-256 where known, with where that digest
/// came from (`sha256_from`), so a manifest never claims a check it did not make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FileRecord {
    pub(crate) path: String,
    pub(crate) size: u64,
    pub(crate) sha256: Option<String>,
    /// `None` in manifests written before the field existed: read as not computed (see `digest_from`).
    #[serde(default)]
    pub(crate) sha256_from: Option<DigestFrom>,
}

/// Where a recorded digest came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DigestFrom {
    /// gamma-run read the whole file and hashed it.
    Computed,
    /// The Hub's word (the LFS SHA-256 from `X-Linked-Etag`), not checked against the bytes.
    Hub,
    /// The name of a blob in the HF cache, not checked against the bytes.
    Cache,
}

impl DigestFrom {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DigestFrom::Computed => "computed",
            DigestFrom::Hub => "hub",
            DigestFrom::Cache => "cache",
        }
    }
}

impl FileRecord {
    pub(crate) fn computed(path: &str, bytes: &[u8]) -> FileRecord {
        FileRecord {
            path: path.into(),
            size: bytes.len() as u64,
            sha256: Some(crate::store::sha256_bytes(bytes)),
            sha256_from: Some(DigestFrom::Computed),
        }
    }

    /// Where this record's digest came from; `None` when there is no digest. Manifests older than the field
    /// are read as not computed: `cache` for HF-cache sources, `hub` otherwise.
    pub(crate) fn digest_from(&self, source_kind: SourceKind) -> Option<DigestFrom> {
        self.sha256.as_ref()?;
        let old = if source_kind == SourceKind::HfCache { DigestFrom::Cache } else { DigestFrom::Hub };
        Some(self.sha256_from.unwrap_or(old))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ByteRange {
    pub(crate) file: String,
    pub(crate) offset: u64,
    pub(crate) length: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct InputRecord {
    pub(crate) frame: String,
    pub(crate) path: String,
    pub(crate) sha256: String,
}

/// Stats at write time: the output's, and those of source files whose content the fingerprint does not cover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StatCache {
    pub(crate) output: FileStat,
    #[serde(default)]
    pub(crate) sources: BTreeMap<String, FileStat>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Tool {
    pub(crate) name: String,
    pub(crate) version: String,
}

impl Tool {
    pub(crate) fn this() -> Tool {
        Tool { name: env!("CARGO_PKG_NAME").into(), version: env!("CARGO_PKG_VERSION").into() }
    }
}

/// Manifests are a few KiB; anything far larger is not one, and is not read whole.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 1 << 20;

impl Manifest {
    pub(crate) fn read(path: &Path) -> Result<Manifest> {
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

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifests serialise");
        v.push(b'\n');
        v
    }
}

/// Checks a manifest's `output.path` before it is joined to a directory: relative, no `..`.
pub(crate) fn check_output_path(p: &str) -> std::result::Result<(), String> {
    crate::names::check_relative_file(p).map_err(|e| format!("output.path {p:?} is unsafe: {e}"))
}
