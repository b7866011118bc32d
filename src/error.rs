//! The one error type of gamma-run. Every I/O variant names its path; job-file errors carry `file:line:col`.
//! Which exit code an error maps to is decided by the commands, not here.

use std::path::PathBuf;

/// Everything that can go wrong, with enough context to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}", path = path.display())]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{path}:{line}:{col}: {message}", path = path.display())]
    JobFile { path: PathBuf, line: u64, col: u64, message: String },

    #[error("{path}: {message}", path = path.display())]
    Checkpoint { path: PathBuf, message: String },

    #[error("{path}: missing", path = path.display())]
    MissingFile { path: PathBuf },

    #[error("{repo}@{revision} is not in the Hugging Face cache at {cache}; {hint}", cache = cache.display())]
    NotInCache { repo: String, revision: String, cache: PathBuf, hint: String },

    #[error("{path}: {message}", path = path.display())]
    Manifest { path: PathBuf, message: String },

    #[error("{input} is not available: {message}")]
    Input { input: String, message: String },

    /// An input frame's file does not hold the bytes its manifest records (edited in place, bit rot): the input
    /// is stale whatever its stat cache says, and the runner rebuilds it before trying again.
    #[error("{path}: {message}", path = path.display())]
    InputChanged { frame: &'static str, path: PathBuf, message: String },

    #[error("{repo}: {what}: {message}{}", hub_context(*status, request_id))]
    Hub {
        repo: String,
        what: String,
        status: Option<u16>,
        code: Option<String>,
        request_id: Option<String>,
        message: String,
    },

    /// Two job files of one workspace produce the same output: each run would overwrite the other's.
    #[error(
        "{second}: output {name:?} is also produced by {first}, which writes into the same workspace ({root}); each \
         run would overwrite the other's output and call it stale: give one of the jobs a distinct `name:`",
        first = first.display(), second = second.display(), root = root.display()
    )]
    OutputOfTwoJobFiles { name: String, first: PathBuf, second: PathBuf, root: PathBuf },

    /// A job file of the workspace that cannot be read, where what it produces must be known (`clean`).
    #[error(
        "{path} writes into this workspace but cannot be read ({why}); fix it (or move it out of the workspace) \
         before `clean`, which must keep every output any job file produces",
        path = path.display()
    )]
    UnreadableNeighbour { path: PathBuf, why: String },

    /// A lock file that cannot be used: unreadable, another job file's, a pin that is not a commit, two job files
    /// sharing one. (The message names the file and what to do.)
    #[error("{message}")]
    LockFile { path: PathBuf, message: String },

    /// A path gamma-run will not write through or at: a symlink, a place outside the workspace, a lock that is not
    /// a regular file.
    #[error("{message}")]
    Refused { path: PathBuf, message: String },

    /// What a job file asks cannot be planned: a grid that cannot be expanded here, an output name used twice, a
    /// revision pattern that is not a pattern.
    #[error("{0}")]
    Plan(String),

    /// A manifest's source record that must not steer a re-read: an unsafe path, a malformed repo id or commit.
    #[error("{0}")]
    SourceRecord(String),

    /// `--only` that is not a pattern, or matches no output.
    #[error("{0}")]
    Selection(String),

    /// The remote store (`--remote`, `output.remote`) cannot be used, or an object in it is not used (it failed
    /// a check); the URL is shown without credentials.
    #[error("remote {url}: {message}")]
    Remote { url: String, message: String },

    /// A command asked for what it cannot do as asked (nothing to audit, no terminal to confirm, a file that
    /// exists already); the message says how to ask.
    #[error("{0}")]
    Usage(String),
}

fn hub_context(status: Option<u16>, request_id: &Option<String>) -> String {
    match (status, request_id) {
        (Some(s), Some(id)) => format!(" (HTTP {s}, request id {id})"),
        (Some(s), None) => format!(" (HTTP {s})"),
        (None, Some(id)) => format!(" (request id {id})"),
        (None, None) => String::new(),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub(crate) fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Checkpoint { path: path.into(), message: message.into() }
    }
    pub(crate) fn manifest(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Manifest { path: path.into(), message: message.into() }
    }
}

/// Attach a path to `std::io::Result`s: `fs::read(p).at(p)?`.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
