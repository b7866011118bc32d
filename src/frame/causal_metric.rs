//! `causal_metric`: Park et al.'s causal inner product, from γ's exact bf16 rows. The mean μ (γ′'s centroid, bit
//! for bit), the covariance C = Σ(γᵢ − μ)(γᵢ − μ)ᵀ / D (D = V, or V − 1 with `divisor: n-1`), the eigendecomposition
//! C + λI = Q Λ Qᵀ (`ridge: λ`; eigenvalues ascending, each eigenvector's largest-magnitude component positive), the
//! metric M = (C + λI)⁻¹, the whitening A = (C + λI)^(-1/2) and its inverse A⁻¹. File `M.safetensors`, tensors in
//! this order: `mu` [d], `C` [d, d], `eigenvalues` [d], `Q` (eigenvectors as columns), `M`, `A`, `A_inv` [d, d]; f64, or f32
//! with `dtype: f32` (computed in f64 and rounded once).
//!
//! Deterministic: the mean as γ′'s; C's entries accumulated in f64 over 1024-row blocks in order, each block's
//! product summed by one sequential faer call per output panel (`linalg.rs`), so no sum depends on the thread count.
//! Refuses what it cannot compute honestly: non-finite γ, a C + λI that is singular or too ill-conditioned for f64.
//! γ is read twice (the first pass verified against its manifest); only d × d matrices are held.

use super::input::{MatrixInput, Opened};
use super::linalg;
use super::param::number;
use super::{Derivation, Derived, Frame, Inputs, Param, Params, Produced, Producer, Production};
use crate::dtype;
use crate::error::{Error, Result};
use crate::store::ByteSink;
use crate::store::safetensors_file::{self, OutDtype};
use faer::{Accum, Mat, MatRef};
use rayon::prelude::*;

/// Rows per partial sum of the mean: γ′'s chunk, so μ is γ′'s centroid bit for bit.
const CHUNK_ROWS: usize = 256;
/// Rows per covariance block (a fixed order of accumulation; 1024 × d f64 held).
const GRAM_ROWS: usize = 1024;
/// Columns per task when centring and transposing a block.
const COLUMN_GROUP: usize = 64;

/// The tensors of `M.safetensors`, in file order.
pub(super) const TENSORS: [&str; 7] = ["mu", "C", "eigenvalues", "Q", "M", "A", "A_inv"];

pub(crate) struct CausalMetric;

/// The choices `causal_metric` and `causal` share (a `causal` output's must equal its metric's).
pub(super) const SHARED: [&str; 2] = ["divisor", "ridge"];

impl Frame for CausalMetric {
    fn name(&self) -> &'static str {
        "causal_metric"
    }
    fn version(&self) -> u32 {
        1
    }
    fn inputs(&self) -> &'static [&'static dyn Frame] {
        static INPUTS: &[&dyn Frame] = &[&super::extracted::GAMMA];
        INPUTS
    }
    fn params(&self) -> &'static [Param] {
        const PARAMS: &[Param] = &[
            Param::one_of("divisor", "n", &["n", "n-1"]),
            Param::non_negative("ridge", "0"),
            Param::one_of("dtype", "f64", &["f64", "f32"]),
        ];
        PARAMS
    }
    fn file_name(&self) -> &'static str {
        "M.safetensors"
    }
    fn derived(&self) -> Option<&dyn Derived> {
        Some(self)
    }
}

impl Derived for CausalMetric {
    fn reads(&self, _: &Params) -> Vec<&'static str> {
        vec!["gamma"]
    }
    fn derive(&self, inputs: &Inputs, params: &Params) -> std::result::Result<Derivation, String> {
        let choices = Choices::of(params)?;
        let dtype = match params.get("dtype").map(String::as_str) {
            Some("f64") | None => OutDtype::F64,
            Some("f32") => OutDtype::F32,
            Some(o) => return Err(format!("causal_metric's dtype must be f64 or f32, not {o:?}")),
        };
        let metric = Metric { matrix: inputs.matrix("gamma")?, choices, dtype };
        Ok(Derivation { tensor: "M", dtype, producer: Box::new(metric) })
    }
}

/// The covariance's divisor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Divisor {
    /// V, as Park et al.
    N,
    /// V − 1, as the notebook series.
    NMinus1,
}

/// The choices that change C: its divisor and the ridge λ added to its diagonal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Choices {
    pub(super) divisor: Divisor,
    pub(super) ridge: f64,
}

impl Choices {
    pub(super) fn of(params: &Params) -> std::result::Result<Choices, String> {
        let divisor = match params.get("divisor").map(String::as_str) {
            Some("n") | None => Divisor::N,
            Some("n-1") => Divisor::NMinus1,
            Some(o) => return Err(format!("divisor must be n or n-1, not {o:?}")),
        };
        let ridge = if params.contains_key("ridge") { number(params, "ridge")? } else { 0.0 };
        Ok(Choices { divisor, ridge })
    }
}

struct Metric {
    matrix: MatrixInput,
    choices: Choices,
    dtype: OutDtype,
}

impl Metric {
    /// Pass 1, verified: μ and the number of non-finite values (and the first row holding one).
    fn mean(&self, opened: &Opened) -> Result<Vec<f64>> {
        let (v, d) = (self.matrix.v, self.matrix.d);
        let mut sum = vec![0f64; d];
        let (mut bad, mut first_bad) = (0u64, None);
        opened.verified_pass(CHUNK_ROWS * 8, &mut |first, buf| {
            let parts: Vec<(Vec<f64>, u64, Option<usize>)> = buf
                .par_chunks(CHUNK_ROWS * d * 2)
                .map(|c| {
                    let (n, at) = non_finite(c, d);
                    (super::gamma_prime::column_sums(c, d), n, at)
                })
                .collect();
            for (i, (s, n, at)) in parts.into_iter().enumerate() {
                sum.iter_mut().zip(&s).for_each(|(a, x)| *a += x);
                bad += n;
                if first_bad.is_none() {
                    first_bad = at.map(|r| first + i * CHUNK_ROWS + r);
                }
            }
            Ok(())
        })?;
        if bad > 0 {
            return Err(self.refuse(format!(
                "γ holds {bad} non-finite values (NaN or ±inf; the first in row {}): its covariance is undefined. \
                 Look at them with the token_stats frame; a causal metric needs a finite W",
                first_bad.unwrap_or(0)
            )));
        }
        Ok(sum.iter().map(|s| s / v as f64).collect())
    }

    /// Pass 2: Σ(γᵢ − μ)(γᵢ − μ)ᵀ (lower triangle), block by block in row order.
    fn scatter(&self, opened: &Opened, mu: &[f64]) -> Result<Mat<f64>> {
        let (v, d) = (self.matrix.v, self.matrix.d);
        let mut c = Mat::<f64>::zeros(d, d);
        let (mut bytes, mut x) = (Vec::new(), vec![0f64; GRAM_ROWS * d]);
        let mut row = 0;
        while row < v {
            let n = GRAM_ROWS.min(v - row);
            opened.rows(row, n, &mut bytes)?;
            // Centred and transposed: column j of the block is contiguous (the layout faer's kernels read fastest).
            x[..n * d].par_chunks_mut(n * COLUMN_GROUP).enumerate().for_each(|(g, cols)| {
                let j0 = g * COLUMN_GROUP;
                for r in 0..n {
                    let src = &bytes[(r * d + j0) * 2..];
                    for (k, col) in cols.chunks_exact_mut(n).enumerate() {
                        let b = u16::from_le_bytes([src[2 * k], src[2 * k + 1]]);
                        col[r] = dtype::bf16_to_f32(b) as f64 - mu[j0 + k];
                    }
                }
            });
            let block = MatRef::from_column_major_slice(&x[..n * d], n, d);
            linalg::lower_product(c.as_mut(), Accum::Add, block.transpose(), block);
            row += n;
        }
        opened.unchanged()?;
        linalg::mirror_lower(&mut c);
        Ok(c)
    }

    fn refuse(&self, message: String) -> Error {
        Error::Input { input: self.matrix.path.display().to_string(), message }
    }
}

/// Non-finite values in whole bf16 rows, and the row (within `rows`) of the first.
fn non_finite(rows: &[u8], d: usize) -> (u64, Option<usize>) {
    let (mut n, mut first) = (0u64, None);
    for (r, row) in rows.chunks_exact(d * 2).enumerate() {
        let k = row.chunks_exact(2).filter(|b| u16::from_le_bytes([b[0], b[1]]) & 0x7f80 == 0x7f80).count() as u64;
        if k > 0 && first.is_none() {
            first = Some(r);
        }
        n += k;
    }
    (n, first)
}

/// Writes a vector or a matrix (row by row) in the output dtype.
fn write_values(out: &mut dyn ByteSink, dtype: OutDtype, values: impl Iterator<Item = f64>) -> Result<()> {
    let mut buf = Vec::with_capacity(1 << 20);
    for x in values {
        match dtype {
            OutDtype::F32 => buf.extend_from_slice(&dtype::f64_to_f32_bits(x).to_le_bytes()),
            _ => buf.extend_from_slice(&x.to_le_bytes()),
        }
        if buf.len() >= 1 << 20 {
            out.write(&buf)?;
            buf.clear();
        }
    }
    out.write(&buf)
}

fn rows_of(m: &Mat<f64>) -> impl Iterator<Item = f64> + '_ {
    (0..m.nrows()).flat_map(move |i| (0..m.ncols()).map(move |j| m[(i, j)]))
}

/// Eigenvalues for a message: the `k` smallest, with the largest.
fn spectrum_summary(lambda: &[f64], k: usize) -> String {
    let small: Vec<String> = lambda.iter().take(k).map(|l| format!("{l:.3e}")).collect();
    format!("smallest {}; largest {:.3e}", small.join(", "), lambda.last().copied().unwrap_or(f64::NAN))
}

impl Producer for Metric {
    fn produce(&self, out: &mut dyn ByteSink) -> Result<Production> {
        let (v, d) = (self.matrix.v, self.matrix.d);
        let Choices { divisor, ridge } = self.choices;
        if d >= v && ridge == 0.0 {
            return Err(self.refuse(format!(
                "γ has {v} rows in {d} dimensions: its covariance has rank at most {} < {d}, so it is singular. \
                 Set ridge: (e.g. ridge: 1e-6) to regularise it, or use a model with more tokens than dimensions",
                v - 1
            )));
        }
        let opened = self.matrix.open()?;
        let mu = self.mean(&opened)?;
        let mut c = self.scatter(&opened, &mu)?;
        let denominator = match divisor {
            Divisor::N => v as f64,
            Divisor::NMinus1 => (v as f64 - 1.0).max(1.0),
        };
        for j in 0..d {
            for i in 0..d {
                c[(i, j)] /= denominator;
            }
        }
        let dd = [d as u64, d as u64];
        let shapes: [&[u64]; 7] = [&dd[..1], &dd, &dd[..1], &dd, &dd, &dd, &dd];
        let entries: Vec<safetensors_file::Entry> = TENSORS
            .iter()
            .zip(shapes)
            .map(|(name, shape)| safetensors_file::Entry { name, dtype: self.dtype, shape })
            .collect();
        let header = safetensors_file::header(&entries);
        out.reserve(header.len() as u64 + entries.iter().map(safetensors_file::Entry::byte_len).sum::<u64>())?;
        out.write(&header)?;
        write_values(out, self.dtype, mu.iter().copied())?;
        write_values(out, self.dtype, rows_of(&c))?;
        // C is written: regularise it in place (one d × d matrix less held while the eigensolver runs).
        for i in 0..d {
            c[(i, i)] += ridge;
        }
        let (lambda, q) = linalg::eigh(&c).map_err(|e| self.refuse(e))?;
        drop(c);
        let (low, high) = (lambda[0], lambda[d - 1]);
        // f64 resolves a condition number up to about 1 / (d ε); past it M has no correct digit to promise.
        let limit = 1.0 / (d as f64 * f64::EPSILON);
        let resolvable = low > 0.0 && high / low < limit; // false for NaN too
        if !resolvable {
            let what = if ridge > 0.0 { format!("C + {ridge:e}·I") } else { "C".to_string() };
            return Err(self.refuse(format!(
                "{what} is singular or too ill-conditioned to invert in f64 (eigenvalues: {}; condition number {:.3e}, \
                 f64 resolves up to {limit:.1e}). Duplicate or constant directions in W do this: set ridge: (e.g. \
                 ridge: 1e-6, as the notebook series) or a larger one",
                spectrum_summary(&lambda, 5),
                high / low
            )));
        }

        write_values(out, self.dtype, lambda.iter().copied())?;
        write_values(out, self.dtype, rows_of(&q))?;
        for power in [-1.0, -0.5, 0.5] {
            let m = linalg::spectral(&q, &lambda, |l| l.powf(power));
            write_values(out, self.dtype, rows_of(&m))?;
        }
        let facts = vec![
            ("eigenvalues".to_string(), format!("{low:.6e} … {high:.6e} (of C + λI, ascending)")),
            ("condition_number".to_string(), format!("{:.6e}", high / low)),
            ("denominator".to_string(), format!("{denominator}")),
            (
                "accumulation".to_string(),
                "f64: μ over 256-row chunks in order; C over 1024-row blocks in order, each entry one sequential sum"
                    .to_string(),
            ),
            ("solver".to_string(), format!("{} (self_adjoint_evd; products in f64)", linalg::SOLVER)),
        ];
        Ok(Production::Done(Produced {
            shape: dd.to_vec(),
            nan_count: 0,
            source: None,
            warnings: Vec::new(),
            expect_sha256: None,
            facts,
        }))
    }
}
