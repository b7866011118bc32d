//! Coordinate frames. A frame has a name, a version, the frames it is computed from, and knows how to plan its
//! output (`prepare`: what decides it, cheaply) and produce its bytes (`Producer`). Adding a frame is one file
//! and one line in `FRAMES`; the runner, staleness and `verify` need no change.

mod gamma;

use crate::error::Result;
use crate::job::Job;
use crate::manifest::{InputRecord, SourceRecord, fingerprint};
use crate::source::SourceOptions;
use crate::store::{ByteSink, Store};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub trait Frame: Sync {
    fn name(&self) -> &'static str;
    /// Bump when the bytes this frame writes for the same inputs change.
    fn version(&self) -> u32;
    /// Frames this one is computed from (empty: from the model source).
    fn inputs(&self) -> &'static [&'static str];
    /// File name under `<tensors>/<name>/`.
    fn file_name(&self) -> &'static str;
    /// Works out what decides the output, reading no tensor bytes.
    fn prepare(&self, cx: &Context, job: &Job) -> Result<Plan>;
}

/// Everything frames may consult.
pub struct Context {
    pub store: Store,
    pub sources: SourceOptions,
}

/// A planned output: its identity, provenance, and how to produce it.
pub struct Plan {
    pub fingerprint: fingerprint::Inputs,
    pub tensor: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub source: Option<SourceRecord>,
    pub inputs: Vec<InputRecord>,
    pub params: BTreeMap<String, String>,
    /// Source files guarded by a stat cache (their content is not in the fingerprint).
    pub watched: Vec<(String, PathBuf)>,
    pub warnings: Vec<String>,
    pub producer: Box<dyn Producer>,
}

pub trait Producer: Send + Sync {
    /// Streams the whole output file into `out`; returns how many NaNs were canonicalised.
    fn produce(&self, out: &mut dyn ByteSink) -> Result<u64>;
}

static FRAMES: &[&dyn Frame] = &[&gamma::Gamma];

pub fn by_name(name: &str) -> Option<&'static dyn Frame> {
    FRAMES.iter().copied().find(|f| f.name() == name)
}

pub fn names() -> Vec<&'static str> {
    FRAMES.iter().map(|f| f.name()).collect()
}

/// `frame`'s inputs, transitively, then `frame` itself: the order to build them in.
pub fn with_inputs(frame: &dyn Frame) -> Vec<&'static str> {
    let mut out = Vec::new();
    for input in frame.inputs() {
        for f in with_inputs(by_name(input).expect("registered input")) {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    out.push(frame.name());
    out
}
