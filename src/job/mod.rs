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

/// A frame to build for a job — the frame itself, from the registry — with its parameters (checked against
/// the frame's, defaults filled in).
#[derive(Clone)]
pub struct FrameReq {
    pub frame: &'static dyn crate::frame::Frame,
    pub params: crate::frame::Params,
}

impl FrameReq {
    pub fn name(&self) -> &'static str {
        self.frame.name()
    }
}

impl std::fmt::Debug for FrameReq {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("FrameReq").field("frame", &self.name()).field("params", &self.params).finish()
    }
}

impl PartialEq for FrameReq {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name() && self.params == other.params
    }
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
