//! `causal`: every token's causal coordinates, in which the Euclidean inner product is the causal one. From γ and
//! its `causal_metric`: `basis: symmetric` (default) g(y) = A (γ(y) − μ), Park et al.'s canonical representation;
//! `basis: eigen` z(y) = Λ^(-1/2) Qᵀ (γ(y) − μ), the same geometry in C's eigenbasis; `center: none` whitens γ
//! itself (the ICML 2024 code). File `G.safetensors`, tensor `G` [V, d], f32 (or f64 with `dtype: f64`).
//!
//! The metric file is read whole once, hashed and checked against its manifest, keeping only μ and the d × d
//! transform. γ is streamed in 2048-row blocks (verified against its manifest beside the work) and each block's
//! coordinates written before the next is read: memory is the transform plus a few blocks, whatever V. Each
//! 256-row sub-block is one sequential faer product (centring in f64, rounded once to the product precision), so
//! the bytes do not depend on the thread count.

use super::causal_metric::{Choices, SHARED, TENSORS};
use super::input::MatrixInput;
use super::linalg;
use super::{Derivation, Derived, Frame, Inputs, Param, Params, Produced, Producer, Production};
use crate::checkpoint::header::Dtype;
use crate::dtype;
use crate::error::{Error, IoContext, Result};
use crate::manifest::Manifest;
use crate::store::ByteSink;
use crate::store::safetensors_file::{self, OutDtype};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rayon::prelude::*;
use sha2::Digest;
use std::path::PathBuf;

/// safetensors' F64, as the header reader types it.
const F64: Dtype = Dtype::Other { name: "F64", bits: 64 };

/// Rows read and hashed per block.
const BLOCK_ROWS: usize = 2048;
/// Rows per product: one sequential faer call each, in parallel.
const SUB_ROWS: usize = 256;

pub(crate) struct Causal;

impl Frame for Causal {
    fn name(&self) -> &'static str {
        "causal"
    }
    fn version(&self) -> u32 {
        1
    }
    fn inputs(&self) -> &'static [&'static dyn Frame] {
        static INPUTS: &[&dyn Frame] = &[&super::extracted::GAMMA, &super::causal_metric::CausalMetric];
        INPUTS
    }
    fn params(&self) -> &'static [Param] {
        const PARAMS: &[Param] = &[
            Param::one_of("basis", "symmetric", &["symmetric", "eigen"]),
            Param::one_of("center", "mean", &["mean", "none"]),
            Param::one_of("divisor", "n", &["n", "n-1"]),
            Param::non_negative("ridge", "0"),
            Param::one_of("dtype", "f32", &["f32", "f64"]),
        ];
        PARAMS
    }
    fn file_name(&self) -> &'static str {
        "G.safetensors"
    }
    fn derived(&self) -> Option<&dyn Derived> {
        Some(self)
    }
}

impl Derived for Causal {
    fn reads(&self, _: &Params) -> Vec<&'static str> {
        vec!["gamma", "causal_metric"]
    }
    fn derive(&self, inputs: &Inputs, params: &Params) -> std::result::Result<Derivation, String> {
        let eigen = params.get("basis").is_some_and(|b| b == "eigen");
        let center = params.get("center").is_none_or(|c| c == "mean");
        let dtype = match params.get("dtype").map(String::as_str) {
            Some("f32") | None => OutDtype::F32,
            Some("f64") => OutDtype::F64,
            Some(o) => return Err(format!("causal's dtype must be f32 or f64, not {o:?}")),
        };
        let metric = inputs.manifest("causal_metric").clone();
        let coordinates = Coordinates {
            gamma: inputs.matrix("gamma")?,
            metric_path: inputs.root.join(&metric.output.path),
            metric,
            choices: Choices::of(params)?,
            params: params.clone(),
            eigen,
            center,
            dtype,
        };
        Ok(Derivation { tensor: "G", dtype, producer: Box::new(coordinates) })
    }
}

struct Coordinates {
    gamma: MatrixInput,
    metric: Manifest,
    metric_path: PathBuf,
    choices: Choices,
    params: Params,
    eigen: bool,
    center: bool,
    dtype: OutDtype,
}

impl Coordinates {
    fn refuse(&self, message: String) -> Error {
        Error::Input { input: self.metric_path.display().to_string(), message }
    }

    /// The metric is the one this output is for: computed from this γ, with this output's shared choices.
    fn check_metric(&self) -> Result<()> {
        crate::manifest::check_output_path(&self.metric.output.path).map_err(|e| self.refuse(e))?;
        let made_from = self.metric.fingerprint_inputs.get("input.gamma");
        if made_from != Some(&self.gamma.sha256) {
            return Err(self.refuse(format!(
                "causal_metric was computed from another gamma (sha256 {}), not this one ({}): rebuild causal_metric",
                made_from.map_or("unknown", String::as_str),
                self.gamma.sha256
            )));
        }
        let theirs = Choices::of(&self.metric.params).map_err(|e| self.refuse(e))?;
        if theirs != self.choices {
            let show =
                |p: &Params| SHARED.iter().map(|k| format!("{k} {}", p.get(*k).map_or("-", |v| v))).collect::<Vec<_>>();
            return Err(self.refuse(format!(
                "causal ({}) and its input causal_metric ({}) disagree: set the same divisor and ridge on both, or \
                 only on causal (its input takes them)",
                show(&self.params).join(", "),
                show(&self.metric.params).join(", ")
            )));
        }
        Ok(())
    }

    /// μ and the transform `L` with g = L x (x = γ − μ, or γ): A, or Λ^(-1/2) Qᵀ. The metric file is read whole
    /// and must hash to its manifest's digest.
    fn transform(&self) -> Result<(Vec<f64>, Mat<f64>)> {
        let d = self.gamma.d;
        let (header, size) = crate::source::read_header(&self.metric_path)?;
        let names: Vec<&str> = header.tensors.iter().map(|t| t.name.as_str()).collect();
        let wanted: &[&str] = if self.eigen { &["mu", "eigenvalues", "Q"] } else { &["mu", "A"] };
        if names != TENSORS || size != self.metric.output.size {
            return Err(self.refuse(format!("not a causal_metric file of this build (tensors {names:?})")));
        }
        let mut kept: Vec<(String, Vec<u8>)> = Vec::new();
        let file = crate::fsread::open_regular(&self.metric_path)?;
        let mut hasher = sha2::Sha256::new();
        hasher.update(&header.raw);
        for t in &header.tensors {
            // The metric's tensors are F64 or F32 (its dtype), 64 or 32 bits a value.
            let float = t.dtype == Dtype::F32 || t.dtype == F64;
            let expect: u64 = t.shape.iter().product::<u64>() * (t.dtype.bits() / 8);
            if !float || t.end - t.begin != expect || t.shape[0] != d as u64 {
                return Err(self.refuse(format!("tensor {} is not the {d}-dimensional float it should be", t.name)));
            }
            let keep = wanted.contains(&t.name.as_str());
            let mut bytes = Vec::new();
            let (mut at, end) = (header.data_start() + t.begin, header.data_start() + t.end);
            let mut piece = vec![0u8; 1 << 20];
            while at < end {
                let n = (end - at).min(piece.len() as u64) as usize;
                crate::fsread::read_exact_at(&file, &mut piece[..n], at).at(&self.metric_path)?;
                hasher.update(&piece[..n]);
                if keep {
                    bytes.extend_from_slice(&piece[..n]);
                }
                at += n as u64;
            }
            if keep {
                kept.push((t.name.clone(), bytes));
            }
        }
        let got = crate::names::hex(&hasher.finalize());
        if got != self.metric.output.sha256 {
            return Err(Error::InputChanged {
                frame: "causal_metric",
                path: self.metric_path.clone(),
                message: format!(
                    "its sha256 {got} differs from causal_metric's manifest ({}); rebuild causal_metric",
                    self.metric.output.sha256
                ),
            });
        }
        // Every wanted tensor was kept by the pass above (its names were checked against TENSORS first).
        let values = |name: &str| -> Result<Vec<f64>> {
            let (_, bytes) = kept.iter().find(|(n, _)| n == name).ok_or_else(|| self.refuse(format!("no {name}")))?;
            let f64s = header.get(name).is_some_and(|t| t.dtype == F64);
            Ok(if f64s {
                bytes.chunks_exact(8).map(|b| f64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7].map(|i| b[i]))).collect()
            } else {
                bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64).collect()
            })
        };
        let mu = values("mu")?;
        // Row-major d × d values → L[(i, j)].
        let l = if self.eigen {
            let (lambda, q) = (values("eigenvalues")?, values("Q")?);
            if lambda.iter().any(|l| l.is_nan() || *l <= 0.0) {
                return Err(self.refuse("its eigenvalues are not all positive".into()));
            }
            Mat::from_fn(d, d, |i, j| q[j * d + i] / lambda[i].sqrt())
        } else {
            let a = values("A")?;
            Mat::from_fn(d, d, |i, j| a[i * d + j])
        };
        Ok((if self.center { mu } else { vec![0.0; d] }, l))
    }
}

/// `out` (row-major rows × d) = rows of `x − mu` times Lᵀ, in precision `T`.
fn coordinates<T: faer::traits::ComplexField + Copy + Send + Sync>(
    rows: &[u8],
    mu: &[f64],
    l: &Mat<T>,
    cast: impl Fn(f64) -> T + Sync,
    one: T,
    out: &mut [T],
) {
    let d = mu.len();
    out.par_chunks_mut(SUB_ROWS * d).zip(rows.par_chunks(SUB_ROWS * d * 2)).for_each(|(o, r)| {
        let m = r.len() / (2 * d);
        let mut x: Vec<T> = Vec::with_capacity(m * d);
        for row in r.chunks_exact(2 * d) {
            let centred = row
                .chunks_exact(2)
                .zip(mu)
                .map(|(b, c)| dtype::bf16_to_f32(u16::from_le_bytes([b[0], b[1]])) as f64 - c);
            x.extend(centred.map(&cast));
        }
        let xt = MatRef::from_column_major_slice(&x, d, m);
        let ot = MatMut::from_column_major_slice_mut(&mut o[..m * d], d, m);
        faer::linalg::matmul::matmul(ot, Accum::Replace, l.as_ref(), xt, one, Par::Seq);
    });
}

impl Producer for Coordinates {
    fn produce(&self, out: &mut dyn ByteSink) -> Result<Production> {
        let (v, d) = (self.gamma.v, self.gamma.d);
        self.check_metric()?;
        let (mu, l) = self.transform()?;
        let opened = self.gamma.open()?;
        let header = safetensors_file::header(&[safetensors_file::Entry {
            name: "G",
            dtype: self.dtype,
            shape: &[v as u64, d as u64],
        }]);
        out.reserve(header.len() as u64 + (v * d) as u64 * self.dtype.width())?;
        out.write(&header)?;
        let mut nans = 0u64;
        if self.dtype == OutDtype::F64 {
            opened.verified_map(
                BLOCK_ROWS,
                &mut |_, rows| {
                    let mut g = vec![0f64; rows.len() / 2];
                    coordinates(rows, &mu, &l, |x| x, 1.0, &mut g);
                    Ok(g)
                },
                &mut |g| {
                    nans += g.iter().filter(|x| x.is_nan()).count() as u64;
                    write_floats(out, &g)
                },
            )?;
        } else {
            let l32 = Mat::<f32>::from_fn(d, d, |i, j| to_f32(l[(i, j)]));
            opened.verified_map(
                BLOCK_ROWS,
                &mut |_, rows| {
                    let mut g = vec![0f32; rows.len() / 2];
                    coordinates(rows, &mu, &l32, to_f32, 1.0, &mut g);
                    Ok(g)
                },
                &mut |g| {
                    nans += g.iter().filter(|x| x.is_nan()).count() as u64;
                    write_floats(out, &g)
                },
            )?;
        }
        opened.unchanged()?;
        let precision = if self.dtype == OutDtype::F64 { "f64" } else { "f32" };
        let mut facts = vec![
            (
                "accumulation".to_string(),
                format!(
                    "γ − μ in f64, rounded once to {precision}; products in {precision}, one sequential sum per entry"
                ),
            ),
            ("metric_sha256".to_string(), self.metric.output.sha256.clone()),
            ("solver".to_string(), format!("{} (matmul)", linalg::SOLVER)),
        ];
        for k in ["eigenvalues", "condition_number"] {
            if let Some(x) = self.metric.facts.get(k) {
                facts.push((k.to_string(), x.clone()));
            }
        }
        Ok(Production::Done(Produced {
            shape: vec![v as u64, d as u64],
            nan_count: nans,
            source: None,
            warnings: Vec::new(),
            expect_sha256: None,
            facts,
        }))
    }
}

/// Writes floats little-endian: a cast where the machine is little-endian, each value's bytes reversed where not.
fn write_floats<T: bytemuck::Pod>(out: &mut dyn ByteSink, values: &[T]) -> Result<()> {
    let bytes: &[u8] = bytemuck::cast_slice(values);
    if cfg!(target_endian = "little") {
        return out.write(bytes);
    }
    let mut swapped = bytes.to_vec();
    swapped.chunks_exact_mut(std::mem::size_of::<T>()).for_each(<[u8]>::reverse);
    out.write(&swapped)
}

/// Rounds to the nearest f32 (ties to even).
fn to_f32(x: f64) -> f32 {
    f32::from_bits(dtype::f64_to_f32_bits(x))
}
