//! `token_stats`: a first look at W (or, with `of: embedding`, at E) before any analysis — per row its L2 norm,
//! centred norm, largest |x|, counts of zeros, subnormals and non-finite values, and the first earlier row with
//! the same bytes; for the whole matrix the exponent histogram, the distinct bf16 values (all and per column) and
//! the mean row. File `stats.safetensors`; the tensors and the rules each follows are in README ("Frames").
//!
//! Exact by construction: counts are integers, the mean is γ′'s centroid (f64, fixed 256-row chunks in order),
//! norms are accumulated as double-double sums (an error near 2^-100 of the value) and rounded once, so they are
//! the correctly rounded value unless the true one lies within about 2^-100 of a rounding boundary. Rows are hashed
//! in the first pass and candidates confirmed by reading their bytes again: W is never held. The same γ gives the
//! same file on any machine and thread count.

use super::input::{MatrixInput, Opened};
use super::{Derivation, Derived, Frame, Inputs, Param, Params, Produced, Producer, Production};
use crate::dtype;
use crate::error::Result;
use crate::store::ByteSink;
use crate::store::safetensors_file::{self, OutDtype};
use rayon::prelude::*;

/// Rows per task, and per partial sum of the mean (γ′'s chunk: the mean is computed exactly as γ′'s centroid).
const CHUNK_ROWS: usize = 256;
/// Rows read per block (8 chunks).
const BLOCK_ROWS: usize = 8 * CHUNK_ROWS;
/// Columns per task when marking distinct values (their bitmaps, 8 KiB each, stay in cache).
const COLUMN_GROUP: usize = 32;
/// 65,536 bits: one per bf16 pattern.
const BITMAP_WORDS: usize = 1024;

pub(crate) struct TokenStats;

impl Frame for TokenStats {
    fn name(&self) -> &'static str {
        "token_stats"
    }
    fn version(&self) -> u32 {
        1
    }
    fn inputs(&self) -> &'static [&'static dyn Frame] {
        static INPUTS: &[&dyn Frame] = &[&super::extracted::GAMMA];
        INPUTS
    }
    fn params(&self) -> &'static [Param] {
        const PARAMS: &[Param] =
            &[Param::one_of("of", "gamma", &["gamma", "embedding"]), Param::one_of("dtype", "f32", &["f32", "f64"])];
        PARAMS
    }
    fn file_name(&self) -> &'static str {
        "stats.safetensors"
    }
    fn derived(&self) -> Option<&dyn Derived> {
        Some(self)
    }
}

impl Derived for TokenStats {
    /// γ, or with `of: embedding` the input embedding.
    fn reads(&self, params: &Params) -> Vec<&'static str> {
        vec![choices(params).map_or("gamma", |c| c.0)]
    }
    fn derive(&self, inputs: &Inputs, params: &Params) -> std::result::Result<Derivation, String> {
        let (of, dtype) = choices(params)?;
        Ok(Derivation { tensor: "norm", dtype, producer: Box::new(Stats { matrix: inputs.matrix(of)?, dtype }) })
    }
}

/// The `of` and `dtype` parameters, checked (a manifest from elsewhere may hold anything).
fn choices(params: &Params) -> std::result::Result<(&'static str, OutDtype), String> {
    let of = match params.get("of").map(String::as_str) {
        Some("gamma") | None => "gamma",
        Some("embedding") => "embedding",
        Some(o) => return Err(format!("token_stats' of must be gamma or embedding, not {o:?}")),
    };
    let dtype = match params.get("dtype").map(String::as_str) {
        Some("f32") | None => OutDtype::F32,
        Some("f64") => OutDtype::F64,
        Some(d) => return Err(format!("token_stats' dtype must be f32 or f64, not {d:?}")),
    };
    Ok((of, dtype))
}

struct Stats {
    matrix: MatrixInput,
    dtype: OutDtype,
}

/// What the first pass finds about one row.
#[derive(Clone, Copy, Default)]
struct Row {
    /// √(Σ x²), rounded once to the output dtype (special rows are decided when written).
    norm: f64,
    max_abs: f32,
    /// A non-NaN value was seen (else `max_abs` is NaN).
    any: bool,
    zeros: u32,
    subnormals: u32,
    nans: u32,
    infs: u32,
    hash: u64,
}

/// One chunk's share of the whole-matrix counts.
struct ChunkTotals {
    rows: Vec<Row>,
    sums: Vec<f64>,
    histogram: Vec<u64>,
}

impl Producer for Stats {
    fn produce(&self, out: &mut dyn ByteSink) -> Result<Production> {
        let (v, d) = (self.matrix.v, self.matrix.d);
        let rounding = if self.dtype == OutDtype::F64 { Rounding::F64 } else { Rounding::F32 };
        let opened = self.matrix.open()?;
        // Pass 1 (verified): per-row facts, row hashes, the mean's chunk sums, the histogram, distinct values.
        let mut rows: Vec<Row> = Vec::with_capacity(v);
        let mut total = vec![0f64; d];
        let mut histogram = vec![0u64; 512];
        let mut columns = vec![0u64; d * BITMAP_WORDS];
        opened.verified_pass(BLOCK_ROWS, &mut |_, block| {
            let chunks: Vec<ChunkTotals> =
                block.par_chunks(CHUNK_ROWS * d * 2).map(|c| first_pass(c, d, rounding)).collect();
            for c in chunks {
                rows.extend_from_slice(&c.rows);
                total.iter_mut().zip(&c.sums).for_each(|(t, s)| *t += s);
                histogram.iter_mut().zip(&c.histogram).for_each(|(h, c)| *h += c);
            }
            columns.par_chunks_mut(COLUMN_GROUP * BITMAP_WORDS).enumerate().for_each(|(g, maps)| {
                mark_columns(block, d, g * COLUMN_GROUP, maps);
            });
            Ok(())
        })?;
        let mean: Vec<f64> = total.iter().map(|s| s / v as f64).collect();
        let duplicate_of = duplicates(&opened, &rows)?;
        // Pass 2: centred norms, from the mean (the stat check below says the file did not change since pass 1).
        let mut centered: Vec<f64> = Vec::with_capacity(v);
        let mut buf = Vec::new();
        let mut row = 0;
        while row < v {
            let n = BLOCK_ROWS.min(v - row);
            opened.rows(row, n, &mut buf)?;
            let part: Vec<Vec<f64>> = buf
                .par_chunks(CHUNK_ROWS * d * 2)
                .map(|c| c.chunks_exact(d * 2).map(|r| centered_norm(r, &mean, rounding)).collect())
                .collect();
            part.into_iter().for_each(|p| centered.extend(p));
            row += n;
        }
        opened.unchanged()?;
        let (distinct, column_distinct) = distinct_counts(&columns, d);
        let mut warnings = Vec::new();
        let not_finite = mean.iter().filter(|m| !m.is_finite()).count();
        if not_finite > 0 {
            warnings.push(format!(
                "the mean of {not_finite} columns is not finite (W holds NaN or ±Inf there): every centred norm is NaN \
                 or infinite; see nonfinite for the rows"
            ));
        }
        let stats = Finished { rows, centered, duplicate_of, mean, histogram, distinct, column_distinct };
        let nan_count = stats.write(out, self.dtype)?;
        Ok(Production::Done(Produced {
            shape: vec![v as u64],
            nan_count,
            source: None,
            warnings,
            expect_sha256: None,
            facts: Vec::new(),
        }))
    }
}

/// A double-double: the unevaluated sum `hi + lo`, |lo| ≤ half an ulp of `hi`.
#[derive(Clone, Copy, Default, Debug, PartialEq)]
struct Dd {
    hi: f64,
    lo: f64,
}

impl Dd {
    /// Adds `x` (Knuth's TwoSum: the rounding error of `hi + x` kept in `lo`).
    #[inline(always)]
    fn add(&mut self, x: f64) {
        let s = self.hi + x;
        let bb = s - self.hi;
        let err = (self.hi - (s - bb)) + (x - bb);
        self.hi = s;
        self.lo += err;
    }

    fn add_dd(&mut self, o: Dd) {
        self.add(o.hi);
        self.lo += o.lo;
    }

    /// The same value with `lo` folded in as far as it goes (`hi` the nearest f64 to the sum).
    fn normalized(self) -> Dd {
        let s = self.hi + self.lo;
        Dd { hi: s, lo: self.lo - (s - self.hi) }
    }

    /// √(hi + lo), as a double-double: one Newton step on the f64 root, with the exact residual (FMA).
    fn sqrt(self) -> Dd {
        let x = self.normalized();
        if x.hi <= 0.0 || !x.hi.is_finite() {
            return Dd { hi: x.hi.sqrt(), lo: 0.0 };
        }
        let r = x.hi.sqrt();
        let residual = (-r).mul_add(r, x.hi) + x.lo;
        Dd { hi: r, lo: residual / (2.0 * r) }.normalized()
    }

    /// Rounded once to f64.
    fn to_f64(self) -> f64 {
        self.normalized().hi
    }

    /// Rounded once to f32: `hi` rounds to f32 unless it lies exactly halfway between two f32 values, where the
    /// sign of `lo` decides (the f64 step must not round the tie away).
    fn to_f32(self) -> f32 {
        let x = self.normalized();
        let f = x.hi as f32;
        if !f.is_finite() || f64::from(f) == x.hi || x.lo == 0.0 {
            return f;
        }
        let other = if f64::from(f) < x.hi { f.next_up() } else { f.next_down() };
        let (a, b) = (f64::from(f), f64::from(other));
        if (x.hi - a).abs() != (b - x.hi).abs() {
            return f;
        }
        // A tie in f64: the exact value is on `lo`'s side of it.
        if (x.lo > 0.0) == (b > a) { other } else { f }
    }
}

/// How norms are rounded: once, to the output's dtype.
#[derive(Clone, Copy, PartialEq)]
enum Rounding {
    F32,
    F64,
}

/// √ of a sum of `n` non-negative terms, rounded once: from `plain`, its f64 sum, when the rounding error bound
/// of that sum ((n + 3)·2⁻⁵³ relative, with slack for the bound's own arithmetic) leaves no doubt about the f32
/// result; else from the double-double `exact` computes (about one row in 10⁵ for f32; always for f64).
fn rounded_root(plain: f64, n: usize, to: Rounding, exact: impl FnOnce() -> Dd) -> f64 {
    if plain == 0.0 {
        // Non-negative terms that cannot underflow (bf16 squares are ≥ 2⁻²⁶⁶): all of them zero.
        return 0.0;
    }
    if to == Rounding::F32 && plain.is_finite() {
        let eps = (n as f64 + 16.0) * f64::EPSILON;
        let (low, high) = ((plain * (1.0 - eps)).sqrt() as f32, (plain * (1.0 + eps)).sqrt() as f32);
        if low == high {
            return f64::from(low);
        }
    }
    let root = exact().sqrt();
    match to {
        Rounding::F32 => f64::from(root.to_f32()),
        Rounding::F64 => root.to_f64(),
    }
}

/// Σ x² of a row's non-NaN values as a double-double: eight lanes in a fixed order, each term exact.
fn squares_exact(row: &[u8]) -> Dd {
    let mut lanes = [Dd::default(); 8];
    for (j, b) in row.chunks_exact(2).enumerate() {
        let bits = u16::from_le_bytes([b[0], b[1]]);
        if bits & 0x7f80 == 0x7f80 && bits & 0x7f != 0 {
            continue;
        }
        let x = f64::from(dtype::bf16_to_f32(bits));
        lanes[j % 8].add(x * x);
    }
    fold(lanes)
}

/// The lanes added in order.
fn fold(lanes: [Dd; 8]) -> Dd {
    let mut sum = lanes[0];
    for l in &lanes[1..] {
        sum.add_dd(*l);
    }
    sum
}

/// Pass 1 over one chunk of whole rows.
fn first_pass(chunk: &[u8], d: usize, to: Rounding) -> ChunkTotals {
    let mut histogram = vec![0u64; 512];
    let rows = chunk
        .chunks_exact(d * 2)
        .map(|r| {
            let mut row = Row { max_abs: 0.0, hash: row_hash(r), ..Row::default() };
            // Eight independent partial sums, combined in a fixed order: the same value on every machine.
            let mut lanes = [0f64; 8];
            for (j, b) in r.chunks_exact(2).enumerate() {
                let bits = u16::from_le_bytes([b[0], b[1]]);
                histogram[usize::from(bits >> 7)] += 1;
                let exp = (bits >> 7) & 0xff;
                let mant = bits & 0x7f;
                match (exp, mant) {
                    (0, 0) => row.zeros += 1,
                    (0, _) => row.subnormals += 1,
                    (0xff, 0) => row.infs += 1,
                    (0xff, _) => {
                        row.nans += 1;
                        continue;
                    }
                    _ => {}
                }
                let x = f64::from(dtype::bf16_to_f32(bits));
                row.any = true;
                row.max_abs = row.max_abs.max(x.abs() as f32);
                lanes[j % 8] += x * x;
            }
            if row.nans == 0 && row.infs == 0 {
                let plain = lanes.iter().sum::<f64>();
                row.norm = rounded_root(plain, d, to, || squares_exact(r));
            }
            row
        })
        .collect();
    ChunkTotals { rows, sums: super::gamma_prime::column_sums(chunk, d), histogram }
}

/// ‖row − μ‖, rounded once (`rounded_root`); where the row or the mean is not finite, the IEEE result of the plain
/// f64 computation (inf − inf is NaN).
fn centered_norm(row: &[u8], mean: &[f64], to: Rounding) -> f64 {
    let mut lanes = [0f64; 8];
    for (j, (b, m)) in row.chunks_exact(2).zip(mean).enumerate() {
        let x = f64::from(dtype::bf16_to_f32(u16::from_le_bytes([b[0], b[1]])));
        let s = x - m;
        lanes[j % 8] += s * s;
    }
    let plain = lanes.iter().sum::<f64>();
    if !plain.is_finite() {
        return plain.sqrt();
    }
    rounded_root(plain, mean.len(), to, || centered_exact(row, mean))
}

/// Σ (x − μ)² over one row as a double-double (x − μ split exactly by TwoSum, its square by FMA).
fn centered_exact(row: &[u8], mean: &[f64]) -> Dd {
    let mut lanes = [Dd::default(); 8];
    for (j, (b, m)) in row.chunks_exact(2).zip(mean).enumerate() {
        let x = f64::from(dtype::bf16_to_f32(u16::from_le_bytes([b[0], b[1]])));
        let s = x - m;
        let bb = s - x;
        let e = (x - (s - bb)) + (-m - bb);
        let p = s * s;
        let pe = s.mul_add(s, -p) + 2.0 * s * e;
        let lane = &mut lanes[j % 8];
        lane.add(p);
        lane.lo += pe;
    }
    fold(lanes)
}

/// A 64-bit hash of a row's bytes (FxHash's mix over 8-byte words): only a filter, every match is confirmed
/// by comparing bytes.
fn row_hash(row: &[u8]) -> u64 {
    let mut h = row.len() as u64;
    let mut words = row.chunks_exact(8);
    for w in &mut words {
        let x = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        h = (h.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    for &b in words.remainder() {
        h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    h
}

/// Sets, for columns `first..first + maps.len() / BITMAP_WORDS` of the rows in `block`, the bit of each value.
fn mark_columns(block: &[u8], d: usize, first: usize, maps: &mut [u64]) {
    let n = maps.len() / BITMAP_WORDS;
    for row in block.chunks_exact(d * 2) {
        for (k, b) in row[first * 2..(first + n) * 2].chunks_exact(2).enumerate() {
            let bits = usize::from(u16::from_le_bytes([b[0], b[1]]));
            maps[k * BITMAP_WORDS + bits / 64] |= 1 << (bits % 64);
        }
    }
}

/// Distinct values in all of W, and per column, from the per-column bitmaps.
fn distinct_counts(columns: &[u64], d: usize) -> (u64, Vec<u32>) {
    let mut all = vec![0u64; BITMAP_WORDS];
    let per: Vec<u32> = columns
        .chunks_exact(BITMAP_WORDS)
        .take(d)
        .map(|m| {
            all.iter_mut().zip(m).for_each(|(a, x)| *a |= x);
            m.iter().map(|x| x.count_ones()).sum()
        })
        .collect();
    (all.iter().map(|x| u64::from(x.count_ones())).sum(), per)
}

/// For each row, the first earlier row with the same bytes (−1 for none): rows grouped by hash, in index order,
/// and each candidate's bytes compared with the group's earlier rows, read again from the file.
fn duplicates(opened: &Opened, rows: &[Row]) -> Result<Vec<i64>> {
    let mut by_hash: std::collections::HashMap<u64, Vec<usize>> = std::collections::HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        by_hash.entry(r.hash).or_default().push(i);
    }
    let mut out = vec![-1i64; rows.len()];
    let mut groups: Vec<&Vec<usize>> = by_hash.values().filter(|g| g.len() > 1).collect();
    groups.sort_by_key(|g| g[0]);
    let mut row = Vec::new();
    for group in groups {
        // Distinct byte patterns seen so far in this group: (first row, its bytes).
        let mut firsts: Vec<(usize, Vec<u8>)> = Vec::new();
        for &i in group {
            opened.rows(i, 1, &mut row)?;
            match firsts.iter().find(|(_, bytes)| *bytes == row) {
                Some((first, _)) => out[i] = *first as i64,
                None => firsts.push((i, row.clone())),
            }
        }
    }
    Ok(out)
}

/// Everything the file holds, computed.
struct Finished {
    rows: Vec<Row>,
    centered: Vec<f64>,
    duplicate_of: Vec<i64>,
    mean: Vec<f64>,
    histogram: Vec<u64>,
    distinct: u64,
    column_distinct: Vec<u32>,
}

impl Finished {
    /// Writes the file in the documented order (8-byte types first, so every tensor is aligned to its width);
    /// returns the NaNs written.
    fn write(&self, out: &mut dyn ByteSink, dtype: OutDtype) -> Result<u64> {
        let (v, d) = (self.rows.len() as u64, self.mean.len() as u64);
        let entries = [
            safetensors_file::Entry { name: "duplicate_of", dtype: OutDtype::I64, shape: &[v] },
            safetensors_file::Entry { name: "exponent_histogram", dtype: OutDtype::I64, shape: &[2, 256] },
            safetensors_file::Entry { name: "distinct_values", dtype: OutDtype::I64, shape: &[] },
            safetensors_file::Entry { name: "mean", dtype: OutDtype::F64, shape: &[d] },
            safetensors_file::Entry { name: "norm", dtype, shape: &[v] },
            safetensors_file::Entry { name: "centered_norm", dtype, shape: &[v] },
            safetensors_file::Entry { name: "max_abs", dtype: OutDtype::F32, shape: &[v] },
            safetensors_file::Entry { name: "zeros", dtype: OutDtype::I32, shape: &[v] },
            safetensors_file::Entry { name: "subnormals", dtype: OutDtype::I32, shape: &[v] },
            safetensors_file::Entry { name: "nonfinite", dtype: OutDtype::I32, shape: &[v] },
            safetensors_file::Entry { name: "column_distinct", dtype: OutDtype::I32, shape: &[d] },
        ];
        let header = safetensors_file::header(&entries);
        out.reserve(
            header.len() as u64
                + entries.iter().map(super::super::store::safetensors_file::Entry::byte_len).sum::<u64>(),
        )?;
        out.write(&header)?;
        let mut nans = 0u64;
        let mut bytes = Vec::with_capacity(crate::store::BUF_LEN);
        let mut put = |b: &[u8], out: &mut dyn ByteSink| -> Result<()> {
            bytes.extend_from_slice(b);
            if bytes.len() >= crate::store::BUF_LEN - 16 {
                out.write(&bytes)?;
                bytes.clear();
            }
            Ok(())
        };
        for x in &self.duplicate_of {
            put(&x.to_le_bytes(), out)?;
        }
        for h in &self.histogram {
            put(&(*h as i64).to_le_bytes(), out)?;
        }
        put(&(self.distinct as i64).to_le_bytes(), out)?;
        for m in &self.mean {
            nans += u64::from(m.is_nan());
            put(&m.to_le_bytes(), out)?;
        }
        // A row with NaN: NaN. Otherwise an infinite value makes the norm +Inf; the centred norm is the IEEE
        // result of the plain sum wherever that is not finite (an infinite or NaN mean: inf − inf is NaN).
        // (Each value is already rounded to the output dtype: `as f32` is exact.)
        let norms = self.rows.iter().map(|r| match (r.nans, r.infs) {
            (0, 0) => r.norm,
            (0, _) => f64::INFINITY,
            _ => f64::NAN,
        });
        let centered = self.rows.iter().zip(&self.centered).map(|(r, c)| if r.nans == 0 { *c } else { f64::NAN });
        for values in [norms.collect::<Vec<_>>(), centered.collect::<Vec<_>>()] {
            for x in values {
                nans += u64::from(x.is_nan());
                match dtype {
                    OutDtype::F64 => put(&x.to_le_bytes(), out)?,
                    _ => put(&(x as f32).to_le_bytes(), out)?,
                }
            }
        }
        for r in &self.rows {
            let m = if r.any { r.max_abs } else { f32::NAN };
            nans += u64::from(m.is_nan());
            put(&m.to_le_bytes(), out)?;
        }
        for count in [|r: &Row| r.zeros, |r: &Row| r.subnormals, |r: &Row| r.nans + r.infs] {
            for r in &self.rows {
                put(&(count(r) as i32).to_le_bytes(), out)?;
            }
        }
        for c in &self.column_distinct {
            put(&(*c as i32).to_le_bytes(), out)?;
        }
        out.write(&bytes)?;
        Ok(nans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_doubles_round_once() {
        // 1 + 2^-60 is not an f64, but its square root rounds to 1 in f32 and f64 alike.
        let x = Dd { hi: 1.0, lo: 2f64.powi(-60) };
        assert_eq!(x.sqrt().to_f64(), 1.0);
        // A value exactly halfway between two f32s in f64, nudged by lo: lo decides.
        let a = 1.0f32;
        let mid = (f64::from(a) + f64::from(a.next_up())) / 2.0;
        assert_eq!(Dd { hi: mid, lo: 1e-30 }.to_f32(), a.next_up());
        assert_eq!(Dd { hi: mid, lo: -1e-30 }.to_f32(), a);
        assert_eq!(Dd { hi: mid, lo: 0.0 }.to_f32(), a, "ties to even");
        // Sums that plain f64 gets wrong: 1 + 2^-53 + 2^-53 = 1 + 2^-52.
        let mut s = Dd::default();
        for t in [1.0, 2f64.powi(-53), 2f64.powi(-53)] {
            s.add(t);
        }
        assert_eq!(s.to_f64(), 1.0 + 2f64.powi(-52));
    }

    #[test]
    fn a_norm_on_an_f32_tie_is_decided_by_what_f64_loses() {
        // [2^24, 2^12, 2^12, 1, 2^-20]: Σx² = (2^24 + 1)² + 2^-40. In f64 the 2^-40 is lost and √ lands exactly
        // halfway between the f32s 2^24 and 2^24 + 2 (ties to even: 2^24); the true norm is just above: 2^24 + 2.
        let row: Vec<u8> = [0x4b80u16, 0x4580, 0x4580, 0x3f80, 0x3580].iter().flat_map(|b| b.to_le_bytes()).collect();
        let c = first_pass(&row, 5, Rounding::F32);
        assert_eq!(c.rows[0].norm, 16_777_218.0);
        let plain: f64 = [2f64.powi(48), 2f64.powi(24), 2f64.powi(24), 1.0, 2f64.powi(-40)].iter().sum();
        assert_eq!(plain.sqrt() as f32, 16_777_216.0, "the plain computation gets it wrong");
        // In f64 the norm is 2^24 + 1 + a hair: the nearest f64 to it is 2^24 + 1.
        assert_eq!(first_pass(&row, 5, Rounding::F64).rows[0].norm, 16_777_217.0);
    }

    #[test]
    fn rows_are_counted_by_their_bit_patterns() {
        // d = 4: +0, -0, a subnormal, NaN.
        let row: Vec<u8> = [0x0000u16, 0x8000, 0x0001, 0x7fc1].iter().flat_map(|b| b.to_le_bytes()).collect();
        let c = first_pass(&row, 4, Rounding::F32);
        let r = c.rows[0];
        assert_eq!((r.zeros, r.subnormals, r.nans, r.infs), (2, 1, 1, 0));
        assert_eq!(c.histogram.iter().sum::<u64>(), 4);
        assert_eq!(c.histogram[0x000] + c.histogram[0x100], 3, "three with exponent 0, of either sign");
        assert!(r.any && r.max_abs > 0.0);
    }
}
