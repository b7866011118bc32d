//! What a job names as its model source, once validated: a Hub repo at a revision, or a local directory; and
//! how a Hub model's bytes are to be read. The job file's parser builds these; `source` resolves them.

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SourceSpec {
    /// A Hub repo at a revision (branch, tag or 40-hex commit), read from the HF cache or the Hub. `commit` is
    /// the revision's commit when already known — from a grid's refs listing or its lock file — so that it need
    /// not be asked for again.
    Hub { repo: String, revision: String, commit: Option<String> },
    /// A local checkpoint directory (absolute).
    Local { dir: PathBuf },
}

/// `fetch: range` (default) reads only W's bytes from the Hub; `fetch: full` downloads the shard holding W into
/// the HF cache, where transformers and huggingface_hub reuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Fetch {
    #[default]
    Range,
    Full,
}
