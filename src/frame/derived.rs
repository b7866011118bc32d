//! The derived frames' kit, planning side: a frame computed from other frames' stored outputs says which inputs
//! it reads and how it computes (`Derived`); this module finds those inputs' manifests (the live ones for `run`
//! and `status`, the ones a manifest's fingerprint names for `verify --recompute`), and derives from them and the
//! parameters the fingerprint (`input.<frame>` = the input's SHA-256, `param.<name>` = the canonical value), the
//! manifest's input records and the bytes read. Reading an input's bytes, verified, is `input.rs`'s.

use super::{Context, Params, Plan, Producer, Target};
use crate::error::{Error, Result};
use crate::manifest::{Manifest, fingerprint};
use crate::store::safetensors_file::OutDtype;
use std::path::Path;

/// A frame computed from other frames' outputs.
pub(crate) trait Derived: Sync {
    /// The input frames this output reads, in order, given its (checked) parameters.
    fn reads(&self, params: &Params) -> Vec<&'static str>;
    /// The output's main tensor, dtype and producer, from its inputs and parameters (an `Err` says what is wrong
    /// with them; the kit names the job and frame).
    fn derive(&self, inputs: &Inputs, params: &Params) -> std::result::Result<Derivation, String>;
}

/// What a derived frame makes of its inputs.
pub(crate) struct Derivation {
    pub(crate) tensor: &'static str,
    pub(crate) dtype: OutDtype,
    pub(crate) producer: Box<dyn Producer>,
}

/// A derived output's inputs: each input frame's manifest, in `reads` order, and where their files are.
pub(crate) struct Inputs<'a> {
    pub(crate) root: &'a Path,
    manifests: Vec<(&'static str, Manifest)>,
}

impl Inputs<'_> {
    /// The manifest of input frame `frame` (one of `reads`).
    pub(crate) fn manifest(&self, frame: &str) -> &Manifest {
        &self.manifests.iter().find(|(f, _)| *f == frame).unwrap_or_else(|| panic!("{frame} is not an input")).1
    }
    /// Input `frame`'s stored bf16 matrix, checked against its manifest.
    pub(crate) fn matrix(&self, frame: &'static str) -> std::result::Result<super::input::MatrixInput, String> {
        super::input::MatrixInput::of(frame, self.root, self.manifest(frame))
    }
}

/// The plan of a derived output: its inputs are the frames' current manifests in the store.
pub(super) fn prepare(
    name: &'static str,
    version: u32,
    frame: &dyn Derived,
    cx: &Context,
    target: &Target,
    params: &Params,
) -> Result<Plan> {
    let mut manifests = Vec::new();
    for input in frame.reads(params) {
        let path = cx.store.manifest_path(target.name, input);
        let m = Manifest::read(&path).map_err(|e| Error::Input {
            input: format!("{}/{input}", target.name),
            message: format!("{e}; build {input} first: add {input} to the job's frames:"),
        })?;
        manifests.push((input, m));
    }
    let inputs = Inputs { root: cx.store.root(), manifests };
    let fail = |message: String| Error::Input { input: format!("{}/{name}", target.name), message };
    let d = frame.derive(&inputs, params).map_err(fail)?;
    let mut fp = fingerprint::base(name, version, d.dtype.name());
    for (input, m) in &inputs.manifests {
        fp.insert(format!("input.{input}"), m.output.sha256.clone());
    }
    for (k, v) in params {
        fp.insert(format!("param.{k}"), v.clone());
    }
    let records = inputs
        .manifests
        .iter()
        .map(|(f, m)| crate::manifest::InputRecord {
            frame: (*f).into(),
            path: m.output.path.clone(),
            sha256: m.output.sha256.clone(),
        })
        .collect();
    Ok(Plan {
        fingerprint: fp,
        tensor: d.tensor.into(),
        dtype: d.dtype,
        inputs: records,
        params: params.clone(),
        watched: Vec::new(),
        reads: Some(inputs.manifests.iter().map(|(_, m)| m.output.size).sum()),
        notes: Vec::new(),
        reads_tensor: None,
        producer: d.producer,
    })
}

/// `verify --recompute`: the producer of the output `m` describes, from the inputs its fingerprint names (found
/// among `inputs`, the input frames' manifests).
pub(super) fn reproduce(
    frame: &dyn Derived,
    root: &Path,
    m: &Manifest,
    inputs: &[Manifest],
) -> Result<Box<dyn Producer>> {
    let fail = |message: String| Error::Input { input: format!("{}/{}", m.name, m.frame), message };
    let mut manifests = Vec::new();
    for input in frame.reads(&m.params) {
        let Some(named) = m.fingerprint_inputs.get(&format!("input.{input}")) else {
            return Err(fail(format!("the manifest's fingerprint names no {input} input")));
        };
        let Some(im) = inputs.iter().find(|i| i.frame == input && i.output.sha256 == *named) else {
            return Err(fail(format!("no {input} manifest records the sha256 {named} the fingerprint names")));
        };
        manifests.push((input, im.clone()));
    }
    let inputs = Inputs { root, manifests };
    frame.derive(&inputs, &m.params).map(|d| d.producer).map_err(fail)
}
