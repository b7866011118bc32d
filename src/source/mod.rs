//! Where W comes from. A job's `SourceSpec` is located here: a local checkpoint directory (`local`) or a snapshot
//! in the Hugging Face cache (`hf_cache`); both end in a checkpoint directory read by `checkpoint_dir`.
//! The Hub itself (network) will plug in beside `hf_cache` behind the same `Located` result.

mod checkpoint_dir;
pub use checkpoint_dir::read_header;
pub mod hf_cache;
mod local;

use crate::checkpoint::config::ModelConfig;
use crate::checkpoint::header::TensorInfo;
use crate::error::Result;
use crate::job::SourceSpec;
use crate::unembedding::Choice;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A source file as the manifest records it; `sha256` only where it is known without reading the file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FileRecord {
    pub path: String,
    pub size: u64,
    pub sha256: Option<String>,
}

/// W found: which file holds it, where, and everything the manifest says about the source.
#[derive(Debug, Clone)]
pub struct Located {
    pub kind: &'static str,
    pub repo: Option<String>,
    pub dir: Option<PathBuf>,
    pub revision: Option<String>,
    pub commit: Option<String>,
    pub config: ModelConfig,
    pub choice: Choice,
    pub w: TensorInfo,
    /// The shard holding W, relative to the checkpoint root, and the file to read it from.
    pub shard: String,
    pub shard_path: PathBuf,
    /// Offset of W's first byte in the shard file.
    pub w_offset: u64,
    pub files: Vec<FileRecord>,
    /// What identifies the source for the fingerprint (stable keys, hex values).
    pub identity: BTreeMap<String, String>,
    /// Files whose bytes the identity does not cover by content; guarded by a stat cache (local sources).
    pub watched: Vec<(String, PathBuf)>,
}

/// Settings that decide how sources are reached.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    pub hf_cache: PathBuf,
    pub offline: bool,
}

/// Finds W for `spec` (the job's `tensor:` override in `explicit`). Reads headers and small files only.
pub fn locate(spec: &SourceSpec, explicit: Option<&str>, opts: &SourceOptions) -> Result<Located> {
    match spec {
        SourceSpec::Local { dir } => local::locate(dir, explicit),
        SourceSpec::Hub { repo, revision } => hf_cache::locate(&opts.hf_cache, repo, revision, explicit),
    }
}
