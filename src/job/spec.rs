//! The job file exactly as written: serde structs that mirror the YAML, unknown keys refused. Nothing outside
//! `job` sees these; `validate` turns them into `Job`s.

use serde::Deserialize;
use serde_saphyr::Spanned;

/// Job files larger than this are refused before parsing (real ones are a few KB).
pub(crate) const MAX_JOB_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobFileSpec {
    pub(crate) version: Spanned<u64>,
    #[serde(default)]
    pub(crate) output: Option<OutputSpec>,
    #[serde(default)]
    pub(crate) defaults: Option<DefaultsSpec>,
    pub(crate) jobs: Spanned<Vec<Spanned<JobSpec>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OutputSpec {
    pub(crate) tensors: Option<Spanned<String>>,
    pub(crate) manifests: Option<Spanned<String>>,
    /// A remote store shared with CI runners and colleagues (`s3://bucket/prefix`, `file:///shared/store`, …).
    pub(crate) remote: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DefaultsSpec {
    pub(crate) revision: Option<Spanned<String>>,
    pub(crate) fetch: Option<Spanned<String>>,
    pub(crate) frames: Option<Spanned<Vec<Spanned<FrameItem>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobSpec {
    pub(crate) model: Option<Spanned<String>>,
    pub(crate) path: Option<Spanned<String>>,
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) revision: Option<Spanned<String>>,
    /// A grid: several revisions, each its own output (`[step1000, step2000]` or `{match: "step*"}`).
    pub(crate) revisions: Option<Spanned<RevisionsSpec>>,
    pub(crate) frames: Option<Spanned<Vec<Spanned<FrameItem>>>>,
    pub(crate) tensor: Option<Spanned<String>>,
    /// Output dtype of derived frames (γ is always bf16).
    pub(crate) dtype: Option<Spanned<String>>,
    /// `range` (default) or `full`.
    pub(crate) fetch: Option<Spanned<String>>,
}

/// A frame in `frames:`: its name, or `{name: …, <param>: …}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum FrameItem {
    Name(String),
    WithParams {
        name: String,
        #[serde(flatten)]
        params: std::collections::BTreeMap<String, ParamValue>,
    },
}

/// A parameter's value as written: a word or a number (`ridge: 1e-6`), kept as text for the frame to check.
#[derive(Debug, Clone)]
pub(crate) struct ParamValue(pub(crate) String);

impl<'de> Deserialize<'de> for ParamValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Scalar;
        impl serde::de::Visitor<'_> for Scalar {
            type Value = ParamValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a word or a number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ParamValue, E> {
                Ok(ParamValue(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<ParamValue, E> {
                Ok(ParamValue(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ParamValue, E> {
                Ok(ParamValue(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ParamValue, E> {
                Ok(ParamValue(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ParamValue, E> {
                Ok(ParamValue(format!("{v:e}")))
            }
        }
        d.deserialize_any(Scalar)
    }
}

/// `revisions:` — a list of branches, tags or commits, or `{match: GLOB}` over the repo's branches and tags.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RevisionsSpec {
    List(Vec<String>),
    Match(MatchSpec),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MatchSpec {
    #[serde(rename = "match")]
    pub(crate) pattern: String,
}
