//! γ′: W minus its centroid (the mean row), computed from the stored γ output after checking it against its
//! manifest — never from the model source. The centroid is accumulated in f64 over fixed 256-row chunks combined
//! in order (so any thread count gives the same bytes); W′ = W − centroid is computed in f64 and rounded once to
//! the output dtype (f32 by default, or bf16). File: `W_prime` [V, d] then `centroid` [d] (f32).

use super::input::{MatrixInput, Opened};
use super::{Derivation, Derived, Frame, Inputs, Param, Params, Produced, Producer, Production};
use crate::dtype;
use crate::error::Result;
use crate::store::safetensors_file::{self, OutDtype};
use crate::store::{BUF_LEN, ByteSink};
use rayon::prelude::*;

/// Rows per partial sum: fixed, so the summation order never depends on threads or buffer sizes.
const CHUNK_ROWS: usize = 256;
/// Chunks read per batch in the centroid pass (bounds memory: 8 × 256 rows).
const BATCH_CHUNKS: usize = 8;

pub(crate) struct GammaPrime;

impl Frame for GammaPrime {
    fn name(&self) -> &'static str {
        "gamma_prime"
    }
    fn version(&self) -> u32 {
        1
    }
    fn inputs(&self) -> &'static [&'static dyn Frame] {
        static INPUTS: &[&dyn Frame] = &[&super::extracted::GAMMA];
        INPUTS
    }
    fn params(&self) -> &'static [Param] {
        const PARAMS: &[Param] = &[Param::one_of("dtype", "f32", &["f32", "bf16"])];
        PARAMS
    }
    fn file_name(&self) -> &'static str {
        "W_prime.safetensors"
    }
    fn derived(&self) -> Option<&dyn Derived> {
        Some(self)
    }
}

impl Derived for GammaPrime {
    fn reads(&self, _: &Params) -> Vec<&'static str> {
        vec!["gamma"]
    }
    fn derive(&self, inputs: &Inputs, params: &Params) -> std::result::Result<Derivation, String> {
        let centered = Centered { matrix: inputs.matrix("gamma")?, bf16_out: out_dtype(params)? == OutDtype::Bf16 };
        Ok(Derivation { tensor: "W_prime", dtype: centered.out_dtype(), producer: Box::new(centered) })
    }
}

/// The `dtype` parameter as the output dtype (validation has filled in the default and checked the value; a
/// manifest from elsewhere may hold anything).
fn out_dtype(params: &Params) -> std::result::Result<OutDtype, String> {
    match params.get("dtype").map(String::as_str) {
        Some("f32") | None => Ok(OutDtype::F32),
        Some("bf16") => Ok(OutDtype::Bf16),
        Some(other) => Err(format!("gamma_prime's dtype must be f32 or bf16, not {other:?}")),
    }
}

/// Computes γ′ from γ's stored matrix (checked against γ's manifest by the kit's verified pass).
struct Centered {
    matrix: MatrixInput,
    bf16_out: bool,
}

impl Centered {
    fn out_dtype(&self) -> OutDtype {
        if self.bf16_out { OutDtype::Bf16 } else { OutDtype::F32 }
    }

    /// Pass 1: the f64 column sums in a fixed order, over γ's verified rows.
    fn centroid(&self, opened: &Opened) -> Result<Vec<f64>> {
        let (v, d) = (self.matrix.v, self.matrix.d);
        let mut sum = vec![0f64; d];
        opened.verified_pass(CHUNK_ROWS * BATCH_CHUNKS, &mut |_, buf| {
            let partials: Vec<Vec<f64>> = buf.par_chunks(CHUNK_ROWS * d * 2).map(|c| column_sums(c, d)).collect();
            for p in partials {
                sum.iter_mut().zip(&p).for_each(|(s, x)| *s += x);
            }
            Ok(())
        })?;
        Ok(sum.iter().map(|s| s / v as f64).collect())
    }
}

/// Column sums of whole bf16 rows, in row order (also `token_stats`' mean: the same centroid, bit for bit).
pub(super) fn column_sums(rows: &[u8], d: usize) -> Vec<f64> {
    let mut s = vec![0f64; d];
    for row in rows.chunks_exact(d * 2) {
        for (acc, b) in s.iter_mut().zip(row.chunks_exact(2)) {
            *acc += dtype::bf16_to_f32(u16::from_le_bytes([b[0], b[1]])) as f64;
        }
    }
    s
}

impl Producer for Centered {
    fn produce(&self, out: &mut dyn ByteSink) -> Result<Production> {
        let (v, d) = (self.matrix.v, self.matrix.d);
        let opened = self.matrix.open()?;
        let centroid = self.centroid(&opened)?;

        let width = self.out_dtype().width() as usize;
        let entries = [
            safetensors_file::Entry { name: "W_prime", dtype: self.out_dtype(), shape: &[v as u64, d as u64] },
            safetensors_file::Entry { name: "centroid", dtype: OutDtype::F32, shape: &[d as u64] },
        ];
        let header = safetensors_file::header(&entries);
        out.reserve((header.len() + v * d * width + d * 4) as u64)?;
        out.write(&header)?;

        // Pass 2: rows in output-buffer-sized chunks, two chunks converted in parallel, written in order.
        let rows_per_buf = (BUF_LEN / (d * width)).max(1);
        let (mut nans, mut nans_in_w) = (0u64, 0u64);
        let mut row = 0;
        let mut input = Vec::new();
        let mut bufs: Vec<Vec<u8>> = (0..2).map(|_| Vec::with_capacity(BUF_LEN)).collect();
        while row < v {
            let rows = (rows_per_buf * 2).min(v - row);
            opened.rows(row, rows, &mut input)?;
            let counts: Vec<(u64, u64)> = bufs
                .par_iter_mut()
                .zip(input.par_chunks(rows_per_buf * d * 2))
                .map(|(o, i)| {
                    o.clear();
                    center(i, &centroid, self.bf16_out, o)
                })
                .collect();
            nans += counts.iter().map(|c| c.0).sum::<u64>();
            nans_in_w += counts.iter().map(|c| c.1).sum::<u64>();
            for b in &bufs[..counts.len()] {
                out.write(b)?;
            }
            row += rows;
        }
        let tail: Vec<u8> = centroid.iter().flat_map(|c| dtype::f64_to_f32_bits(*c).to_le_bytes()).collect();
        out.write(&tail)?;
        opened.unchanged()?;
        let warnings = if nans > 0 { vec![nan_warning(nans, nans_in_w)] } else { Vec::new() };
        Ok(Production::Done(Produced {
            shape: vec![v as u64, d as u64],
            nan_count: nans,
            source: None,
            warnings,
            expect_sha256: None,
            facts: Vec::new(),
        }))
    }
}

/// Writes `rows − centroid` into `out` (f32 or bf16, little-endian); returns the number of NaNs written.
/// What the NaNs in W′ come from, said as it is.
fn nan_warning(nans: u64, in_w: u64) -> String {
    let from_inf = nans - in_w.min(nans);
    match (in_w.min(nans), from_inf) {
        (_, 0) => format!("W′ holds {nans} NaN values (from NaNs in W)"),
        (0, _) => format!(
            "W′ holds {nans} NaN values, from inf − inf: W holds infinities in columns whose centroid is infinite"
        ),
        (k, i) => format!("W′ holds {nans} NaN values: {k} from NaNs in W, {i} from inf − inf (infinities in W)"),
    }
}

/// Also returns how many of those NaNs were NaNs in W already (the rest come from `inf − inf`: an infinite W
/// value in a column whose centroid is infinite too).
fn center(rows: &[u8], centroid: &[f64], bf16_out: bool, out: &mut Vec<u8>) -> (u64, u64) {
    let (mut nans, mut from_w) = (0, 0);
    for row in rows.chunks_exact(centroid.len() * 2) {
        for (b, c) in row.chunks_exact(2).zip(centroid) {
            let w = dtype::bf16_to_f32(u16::from_le_bytes([b[0], b[1]])) as f64;
            let x = w - c;
            nans += x.is_nan() as u64;
            from_w += w.is_nan() as u64;
            if bf16_out {
                out.extend_from_slice(&dtype::f64_to_bf16(x).to_le_bytes());
            } else {
                out.extend_from_slice(&dtype::f64_to_f32_bits(x).to_le_bytes());
            }
        }
    }
    (nans, from_w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::HashOnly;
    use std::path::Path;

    /// A γ file of `v`×`d` bf16 values in `dir`, and its SHA-256.
    fn gamma_file(dir: &Path, v: u64, d: u64) -> (std::path::PathBuf, String) {
        let header =
            safetensors_file::header(&[safetensors_file::Entry { name: "W", dtype: OutDtype::Bf16, shape: &[v, d] }]);
        let mut bytes = header.clone();
        for i in 0..v * d {
            bytes.extend_from_slice(&dtype::f64_to_bf16((i % 7) as f64 - 3.0).to_le_bytes());
        }
        let path = dir.join("W.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        (path, crate::store::sha256_bytes(&bytes))
    }

    #[test]
    fn gamma_bytes_that_differ_from_its_manifest_are_refused_whatever_the_digest_looks_like() {
        let dir = tempfile::tempdir().unwrap();
        let (path, sha) = gamma_file(dir.path(), 300, 5);
        let matrix = |sha256: String| MatrixInput {
            frame: "gamma",
            path: path.clone(),
            sha256,
            tensor: "W".into(),
            v: 300,
            d: 5,
        };
        let centered = |sha256: String| Centered { matrix: matrix(sha256), bf16_out: false };
        assert!(centered(sha.clone()).produce(&mut HashOnly::new()).is_ok());
        // Same length, one digit different: a check that compares lengths (or prefixes) would pass it.
        let mut other = sha.clone().into_bytes();
        other[40] = if other[40] == b'0' { b'1' } else { b'0' };
        let Err(err) = centered(String::from_utf8(other).unwrap()).produce(&mut HashOnly::new()) else {
            panic!("γ′ was built from bytes that differ from γ's manifest");
        };
        assert!(err.to_string().contains("differs from gamma's manifest"), "{err}");
    }
}
