//! The job file exactly as written: serde structs that mirror the YAML, unknown keys refused. Nothing outside
//! `job` sees these; `validate` turns them into `Job`s.

use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFileSpec {
    pub version: Spanned<u64>,
    #[serde(default)]
    pub output: Option<OutputSpec>,
    #[serde(default)]
    pub defaults: Option<DefaultsSpec>,
    pub jobs: Spanned<Vec<Spanned<JobSpec>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub tensors: Option<Spanned<String>>,
    pub manifests: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsSpec {
    pub revision: Option<Spanned<String>>,
    pub fetch: Option<Spanned<String>>,
    pub frames: Option<Spanned<Vec<Spanned<FrameItem>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub model: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub revision: Option<Spanned<String>>,
    pub frames: Option<Spanned<Vec<Spanned<FrameItem>>>>,
    pub tensor: Option<Spanned<String>>,
    /// Output dtype of derived frames (γ is always bf16).
    pub dtype: Option<Spanned<String>>,
    /// `range` (default) or `full`.
    pub fetch: Option<Spanned<String>>,
}

/// A frame in `frames:`: its name, or `{name: …, <param>: …}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum FrameItem {
    Name(String),
    WithParams {
        name: String,
        #[serde(flatten)]
        params: std::collections::BTreeMap<String, String>,
    },
}
