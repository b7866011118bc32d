//! Coordinate frames. A frame has a name, a version, the frames it is computed from, its parameters, and knows
//! how to plan its output (`prepare`: what decides it, cheaply) and produce its bytes (`Producer`).
//!
//! Adding a frame is one file and one line in `FRAMES`: implement `Frame` (see `causal.rs` for a derived
//! frame: it implements `Derived` and the kit in `derived.rs` and `input.rs` does the rest), register it, and the
//! runner orders it after its inputs, staleness follows its inputs' hashes, version and parameters, and
//! `verify --recompute` can rebuild it from its inputs.

mod causal;
mod causal_metric;
mod derived;
mod extracted;
mod gamma_prime;
mod input;
mod linalg;
mod param;
pub(crate) mod stats_summary;
mod token_stats;

pub(crate) use derived::{Derivation, Derived, Inputs};
pub(crate) use param::{Param, resolve_params};

pub(crate) use extracted::Reextract;

use crate::error::Result;
use crate::manifest::{InputRecord, Manifest, SourceRecord, fingerprint};
use crate::source::SourceOptions;
use crate::source::{Fetch, SourceSpec};
use crate::store::{ByteSink, Store};
use std::collections::BTreeMap;
use std::path::Path;

pub(crate) type Params = BTreeMap<String, String>;

pub(crate) trait Frame: Sync {
    fn name(&self) -> &'static str;
    /// Bump when the bytes this frame writes for the same inputs change.
    fn version(&self) -> u32;
    /// Frames this one is computed from (empty: from the model source).
    fn inputs(&self) -> &'static [&'static dyn Frame];
    /// Parameters a job may set, with their defaults.
    fn params(&self) -> &'static [Param] {
        &[]
    }
    /// File name under `<tensors>/<name>/`.
    fn file_name(&self) -> &'static str;
    /// A frame computed from other frames' stored outputs says so here; the kit then prepares and reproduces it.
    fn derived(&self) -> Option<&dyn Derived> {
        None
    }
    /// Works out what decides the output, reading no tensor bytes. Derived frames leave this to the kit.
    fn prepare(&self, cx: &Context, target: &Target, params: &Params) -> Result<Plan> {
        match self.derived() {
            Some(d) => derived::prepare(self.name(), self.version(), d, cx, target, params),
            None => unreachable!("frame {} is neither extracted (own prepare) nor derived", self.name()),
        }
    }
    /// For derived frames: a producer that rebuilds the output a manifest describes from the inputs its
    /// fingerprint names (`verify --recompute`). `inputs` are the input frames' manifests, already checked to
    /// agree with it; `root` is the parent of the manifests directory.
    fn reproduce(&self, root: &Path, manifest: &Manifest, inputs: &[Manifest]) -> Option<Result<Box<dyn Producer>>> {
        self.derived().map(|d| derived::reproduce(d, root, manifest, inputs))
    }
}

/// What a frame is asked to build: one output of a job (its name, the model source, the job's `tensor:`
/// override and fetch mode). Frames see this, not the job file's types.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub(crate) name: &'a str,
    pub(crate) source: &'a SourceSpec,
    pub(crate) tensor: Option<&'a str>,
    pub(crate) fetch: Fetch,
    /// The grid the output belongs to: its siblings' stored bytes may be shared (same shard content, same range).
    pub(crate) grid: Option<&'a str>,
}

/// Everything frames may consult.
#[derive(Clone)]
pub(crate) struct Context {
    pub(crate) store: Store,
    pub(crate) sources: SourceOptions,
    /// While a run builds outputs concurrently: the W contents its outputs set out to fetch, so each distinct
    /// content is fetched once (`None`: no deferring, as for `status` and a run's second pass).
    pub(crate) claims: Option<std::sync::Arc<crate::source::share::Claims>>,
}

/// A planned output: its identity, provenance, and how to produce it.
pub(crate) struct Plan {
    pub(crate) fingerprint: fingerprint::Inputs,
    pub(crate) tensor: String,
    pub(crate) dtype: crate::store::safetensors_file::OutDtype,
    pub(crate) inputs: Vec<InputRecord>,
    pub(crate) params: Params,
    /// Source files guarded by a stat cache (their content is not in the fingerprint).
    pub(crate) watched: Vec<crate::store::Watched>,
    /// Bytes of tensor data building this output reads, when known without building it (for `--dry-run`).
    pub(crate) reads: Option<u64>,
    /// What a user should know about how the output was judged (e.g. a branch not re-checked offline).
    pub(crate) notes: Vec<String>,
    /// The source tensor the rules choose now (key, shard), when known without the network.
    pub(crate) reads_tensor: Option<(String, String)>,
    pub(crate) producer: Box<dyn Producer>,
}

/// What producing an output came to (one per output built: its size does not matter).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Production {
    /// The whole file was streamed: facts for its manifest.
    Done(Produced),
    /// Nothing was written: another output of this run is fetching the same W (its name); produce again once that
    /// one is stored, and its bytes are copied.
    Wait(String),
}

pub(crate) trait Producer: Send + Sync {
    /// Streams the whole output file into `out` (or says it must wait).
    fn produce(&self, out: &mut dyn ByteSink) -> Result<Production>;
    /// For `--dry-run`: what producing would move from the model source (`None`: it reads only its inputs).
    fn transfer(&self) -> Result<Option<crate::source::Transfer>> {
        Ok(None)
    }
    /// For `--dry-run`: whether producing would write exactly the bytes `old` describes (so the outputs computed
    /// from this one stay fresh). `false` when it cannot be known without producing.
    fn same_bytes_as(&self, _old: &Manifest) -> bool {
        false
    }
}

/// What producing an output found out: facts for its manifest.
pub(crate) struct Produced {
    pub(crate) shape: Vec<u64>,
    /// NaNs in the output (canonicalised where a conversion made them).
    pub(crate) nan_count: u64,
    /// Where the bytes came from, for frames read from a model source.
    pub(crate) source: Option<SourceRecord>,
    pub(crate) warnings: Vec<String>,
    /// The SHA-256 the written bytes must have (a copy of another output's file: its manifest's), and the file
    /// they came from; checked before anything is stored.
    pub(crate) expect_sha256: Option<(String, std::path::PathBuf)>,
    /// What computing the output found that a reader of its manifest needs (an eigenvalue range, the solver
    /// used): the manifest's `facts`.
    pub(crate) facts: Vec<(String, String)>,
}

static FRAMES: &[&dyn Frame] = &[
    &extracted::GAMMA,
    &gamma_prime::GammaPrime,
    &extracted::EMBEDDING,
    &token_stats::TokenStats,
    &causal_metric::CausalMetric,
    &causal::Causal,
];

/// γ's name: the frame that is W itself (grids group and share its outputs).
pub(crate) const GAMMA_NAME: &str = "gamma";

pub(crate) fn by_name(name: &str) -> Option<&'static dyn Frame> {
    FRAMES.iter().copied().find(|f| f.name() == name)
}

/// Every registered frame, in registry order.
pub(crate) fn all() -> &'static [&'static dyn Frame] {
    FRAMES
}

pub(crate) fn names() -> Vec<&'static str> {
    FRAMES.iter().map(|f| f.name()).collect()
}

/// `frame`'s inputs, transitively, then `frame` itself: the order to build them in.
pub(crate) fn with_inputs(frame: &'static dyn Frame) -> Vec<&'static dyn Frame> {
    let mut out: Vec<&'static dyn Frame> = Vec::new();
    for input in frame.inputs() {
        for f in with_inputs(*input) {
            if !out.iter().any(|o| o.name() == f.name()) {
                out.push(f);
            }
        }
    }
    out.push(frame);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_after_their_inputs_and_each_once() {
        let names = |f: &'static dyn Frame| with_inputs(f).iter().map(|f| f.name()).collect::<Vec<_>>();
        assert_eq!(names(by_name("gamma").unwrap()), ["gamma"]);
        assert_eq!(names(by_name("gamma_prime").unwrap()), ["gamma", "gamma_prime"]);
        // Every registered frame's inputs are registered, and none is its own input.
        for f in FRAMES {
            for i in f.inputs() {
                assert!(by_name(i.name()).is_some() && i.name() != f.name(), "{}", f.name());
            }
        }
        assert!(resolve_params(by_name("gamma_prime").unwrap(), &Params::new()).unwrap()["dtype"] == "f32");
        let bad = Params::from([("dtype".to_string(), "f16".to_string())]);
        assert!(resolve_params(by_name("gamma_prime").unwrap(), &bad).unwrap_err().contains("one of f32, bf16"));
    }
}
