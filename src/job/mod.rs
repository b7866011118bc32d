//! Job files: read and parsed (`load`, into the raw `spec`), validated (`validate`) into `JobFile` and `Job`s that the rest of gamma-run uses.
//! A `Job` names one model source and the frames to build from it under one output name.

mod load;
pub(crate) mod neighbours;
mod spec;
mod validate;
pub(crate) mod workspace;

pub use load::from_text;
pub(crate) use load::load;
pub(crate) use validate::check_name;

use crate::source::{Fetch, SourceSpec};
use std::path::PathBuf;

/// A validated job file: where its outputs go and what to build.
#[derive(Debug, Clone)]
pub struct JobFile {
    pub(crate) path: PathBuf,
    pub(crate) store: crate::store::Store,
    pub(crate) jobs: Vec<Job>,
    /// What reading it found that is not an error of the file but will fail a job (a `path:` that does not
    /// exist), each with its `file:line:col`: said when a command starts, while the other jobs still run.
    pub(crate) notes: Vec<String>,
    /// `output.remote`: the remote store its outputs are pulled from and pushed to (optional: when it cannot be
    /// reached, a run goes on locally and says so).
    pub(crate) remote: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// Output name: a single safe path segment, unique in the file.
    pub(crate) name: String,
    pub(crate) source: SourceSpec,
    /// Frames to build, dependencies first (γ′ implies γ).
    pub(crate) frames: Vec<FrameReq>,
    /// The job's `tensor:` override.
    pub(crate) tensor: Option<String>,
    /// How a Hub model's bytes are read when they are not in the HF cache.
    pub(crate) fetch: Fetch,
    /// The grid this output belongs to (a job with `revisions:`), if any.
    pub(crate) grid: Option<Grid>,
}

/// A job with `revisions:`: each revision is its own output, named `<base>@<revision>`. A `{match: …}` grid is
/// `pending` until the repo's refs (or the lock file) say which revisions it has (the grid module's `expand`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Grid {
    pub(crate) base: String,
    pub(crate) pending: Option<String>,
}

/// The output name of `revision` in grid `base`.
pub(crate) fn grid_name(base: &str, revision: &str) -> String {
    format!("{base}@{revision}")
}

/// A frame to build for a job — the frame itself, from the registry — with its parameters (checked against
/// the frame's, defaults filled in).
#[derive(Clone)]
pub(crate) struct FrameReq {
    pub(crate) frame: &'static dyn crate::frame::Frame,
    pub(crate) params: crate::frame::Params,
    /// Selected itself (by `--only`, or by no `--only`), not only brought along as an input of one that was.
    pub(crate) selected: bool,
}

impl FrameReq {
    pub(crate) fn name(&self) -> &'static str {
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
    pub(crate) fn target(&self) -> crate::frame::Target<'_> {
        crate::frame::Target {
            name: &self.name,
            source: &self.source,
            tensor: self.tensor.as_deref(),
            fetch: self.fetch,
            grid: self.grid.as_ref().map(|g| g.base.as_str()),
        }
    }
}
