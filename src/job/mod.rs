//! Job files: read (`spec`), validated (`validate`) into `JobFile` and `Job`s that the rest of gamma-run uses.
//! A `Job` names one model source and the frames to build from it under one output name.

mod spec;
mod validate;

pub use validate::{check_name, from_text, load};

use std::path::PathBuf;

/// A validated job file: where its outputs go and what to build.
#[derive(Debug, Clone)]
pub struct JobFile {
    pub path: PathBuf,
    pub store: crate::store::Store,
    pub jobs: Vec<Job>,
}

#[derive(Debug, Clone)]
pub struct Job {
    /// Output name: a single safe path segment, unique in the file.
    pub name: String,
    pub source: SourceSpec,
    /// Frames to build, dependencies first (γ′ implies γ).
    pub frames: Vec<FrameReq>,
    /// The job's `tensor:` override.
    pub tensor: Option<String>,
    /// How a Hub model's bytes are read when they are not in the HF cache.
    pub fetch: Fetch,
    /// `file:line:col` of the job's entry, for messages.
    pub at: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// A Hub repo at a revision (branch, tag or 40-hex commit), read from the HF cache or the Hub.
    Hub { repo: String, revision: String },
    /// A local checkpoint directory (absolute).
    Local { dir: PathBuf },
}

/// A frame to build for a job, with its parameters (defaults filled in).
#[derive(Debug, Clone, PartialEq)]
pub struct FrameReq {
    pub name: &'static str,
    pub params: std::collections::BTreeMap<String, String>,
}

/// `fetch: range` (default) reads only W's bytes from the Hub; `fetch: full` downloads the shard holding W into
/// the HF cache, where transformers and huggingface_hub reuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fetch {
    #[default]
    Range,
    Full,
}
