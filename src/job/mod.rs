//! Job files: read (`spec`), validated (`validate`) into `JobFile` and `Job`s that the rest of gamma-run uses.
//! A `Job` names one model source and the frames to build from it under one output name.

mod spec;
mod validate;

pub use validate::{check_name, from_text, load};

pub use crate::source::{Fetch, SourceSpec};
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

/// A frame to build for a job, with its parameters (defaults filled in).
#[derive(Debug, Clone, PartialEq)]
pub struct FrameReq {
    pub name: &'static str,
    pub params: std::collections::BTreeMap<String, String>,
}

impl Job {
    /// What a frame is asked to build for this job.
    pub fn target(&self) -> crate::frame::Target<'_> {
        crate::frame::Target {
            name: &self.name,
            source: &self.source,
            tensor: self.tensor.as_deref(),
            fetch: self.fetch,
        }
    }
}
