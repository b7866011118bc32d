//! What a person reads about a `stats.safetensors` (`gamma-run show`): the headline numbers a researcher would
//! otherwise compute in a notebook — shape, zero rows, duplicate groups, the spread of row norms and the rows
//! at its extremes, outliers, distinct values, non-finite and subnormal counts, the exponent histogram. It reads
//! the file `token_stats` wrote; it computes nothing from W and prints nothing (`report` does).
//!
//! Outliers: rows whose norm lies more than `OUTLIER_MADS` median absolute deviations from the median norm
//! (finite norms only; none when the deviation is 0), the rule of Land & Bartolo's under-trained-token screen.

use crate::error::{Error, Result};
use serde::Serialize;
use std::path::Path;

/// How far from the median, in median absolute deviations, a norm must be to be an outlier.
pub(crate) const OUTLIER_MADS: f64 = 4.0;
/// How many duplicate groups, extreme rows and outliers are listed.
const LISTED: usize = 5;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    pub(crate) rows: u64,
    pub(crate) columns: u64,
    pub(crate) zero_rows: u64,
    pub(crate) duplicate_groups: Vec<Group>,
    pub(crate) duplicate_group_count: u64,
    pub(crate) rows_in_duplicate_groups: u64,
    pub(crate) norm: Spread,
    pub(crate) outliers: Outliers,
    pub(crate) distinct_values: u64,
    pub(crate) nonfinite_values: u64,
    pub(crate) nonfinite_rows: u64,
    pub(crate) subnormal_values: u64,
    pub(crate) subnormal_rows: u64,
    /// Per unbiased exponent (both signs together): (exponent, count), ascending; zeros and subnormals under
    /// "0/subnormal", infinities and NaNs under "inf/nan".
    pub(crate) exponents: Vec<(String, u64)>,
}

/// A group of byte-identical rows: its size and first row (the largest `LISTED`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Group {
    pub(crate) size: u64,
    pub(crate) first_row: u64,
}

/// Finite norms: min, quartiles, max, and the rows at the extremes.
#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct Spread {
    pub(crate) min: f64,
    pub(crate) q1: f64,
    pub(crate) median: f64,
    pub(crate) q3: f64,
    pub(crate) max: f64,
    pub(crate) smallest_rows: Vec<(u64, f64)>,
    pub(crate) largest_rows: Vec<(u64, f64)>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct Outliers {
    pub(crate) mad: f64,
    pub(crate) count: u64,
    /// The furthest from the median first.
    pub(crate) rows: Vec<(u64, f64)>,
}

/// Reads a stats file and summarises it.
pub(crate) fn summarize(path: &Path) -> Result<Summary> {
    let (header, _) = crate::source::read_header(path)?;
    let file = crate::fsread::open_regular(path)?;
    let bad = |m: String| Error::checkpoint(path, m);
    let read = |name: &str, width: usize| -> Result<Vec<[u8; 8]>> {
        let t = header.get(name).ok_or_else(|| bad(format!("no tensor {name:?}: not a token_stats file")))?;
        let mut buf = vec![0u8; usize::try_from(t.end - t.begin).map_err(|e| bad(e.to_string()))?];
        crate::fsread::read_exact_at(&file, &mut buf, header.data_start() + t.begin).map_err(|e| Error::io(path, e))?;
        Ok(buf
            .chunks_exact(width)
            .map(|c| {
                let mut w = [0u8; 8];
                w[..width].copy_from_slice(c);
                w
            })
            .collect())
    };
    let float = |name: &str| -> Result<Vec<f64>> {
        let t = header.get(name).ok_or_else(|| bad(format!("no tensor {name:?}")))?;
        Ok(match t.dtype.name() {
            "F64" => read(name, 8)?.iter().map(|b| f64::from_le_bytes(*b)).collect(),
            _ => read(name, 4)?.iter().map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect(),
        })
    };
    let int = |name: &str, width: usize| -> Result<Vec<i64>> {
        Ok(read(name, width)?
            .iter()
            .map(|b| {
                if width == 8 {
                    i64::from_le_bytes(*b)
                } else {
                    i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                }
            })
            .collect())
    };
    let dup = int("duplicate_of", 8)?;
    let zeros = int("zeros", 4)?;
    let subnormals = int("subnormals", 4)?;
    let nonfinite = int("nonfinite", 4)?;
    let norms = float("norm")?;
    let hist = int("exponent_histogram", 8)?;
    let distinct = int("distinct_values", 8)?.first().copied().unwrap_or(0);
    let columns = header.get("column_distinct").map_or(0, |t| t.shape.first().copied().unwrap_or(0));
    let rows = dup.len() as u64;
    if [zeros.len(), subnormals.len(), nonfinite.len(), norms.len()].iter().any(|n| *n as u64 != rows)
        || hist.len() != 512
    {
        return Err(bad("its tensors disagree in length: not a token_stats file".into()));
    }
    let groups = groups(&dup);
    Ok(Summary {
        rows,
        columns,
        zero_rows: zeros.iter().filter(|z| **z as u64 == columns).count() as u64,
        duplicate_group_count: groups.len() as u64,
        rows_in_duplicate_groups: groups.iter().map(|g| g.size).sum(),
        duplicate_groups: groups.into_iter().take(LISTED).collect(),
        norm: spread(&norms),
        outliers: outliers(&norms),
        distinct_values: distinct as u64,
        nonfinite_values: nonfinite.iter().sum::<i64>() as u64,
        nonfinite_rows: nonfinite.iter().filter(|n| **n > 0).count() as u64,
        subnormal_values: subnormals.iter().sum::<i64>() as u64,
        subnormal_rows: subnormals.iter().filter(|n| **n > 0).count() as u64,
        exponents: exponents(&hist),
    })
}

/// Every group of byte-identical rows (from `duplicate_of`), the largest first (then by first row).
fn groups(dup: &[i64]) -> Vec<Group> {
    let mut sizes: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
    for d in dup.iter().filter(|d| **d >= 0) {
        *sizes.entry(*d as u64).or_insert(1) += 1;
    }
    let mut groups: Vec<Group> = sizes.into_iter().map(|(first_row, size)| Group { size, first_row }).collect();
    groups.sort_by(|a, b| b.size.cmp(&a.size).then(a.first_row.cmp(&b.first_row)));
    groups
}

/// Sorted finite values with their rows.
fn finite(values: &[f64]) -> Vec<(u64, f64)> {
    let mut v: Vec<(u64, f64)> =
        values.iter().enumerate().filter(|(_, x)| x.is_finite()).map(|(i, x)| (i as u64, *x)).collect();
    v.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    v
}

/// The value at quantile `q` of sorted values (the lower of the two around it).
fn quantile(sorted: &[(u64, f64)], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).floor() as usize].1
}

fn spread(values: &[f64]) -> Spread {
    let s = finite(values);
    if s.is_empty() {
        return Spread::default();
    }
    Spread {
        min: s[0].1,
        q1: quantile(&s, 0.25),
        median: quantile(&s, 0.5),
        q3: quantile(&s, 0.75),
        max: s[s.len() - 1].1,
        smallest_rows: s.iter().take(LISTED).copied().collect(),
        largest_rows: s.iter().rev().take(LISTED).copied().collect(),
    }
}

fn outliers(values: &[f64]) -> Outliers {
    let s = finite(values);
    if s.is_empty() {
        return Outliers::default();
    }
    let median = quantile(&s, 0.5);
    let mut dev: Vec<(u64, f64)> = s.iter().map(|(i, x)| (*i, (x - median).abs())).collect();
    dev.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    let mad = quantile(&dev, 0.5);
    if mad == 0.0 {
        return Outliers { mad, count: 0, rows: Vec::new() };
    }
    let mut far: Vec<(u64, f64)> =
        dev.iter().filter(|(_, d)| *d > OUTLIER_MADS * mad).map(|(i, _)| (*i, values[*i as usize])).collect();
    far.sort_by(|a, b| (b.1 - median).abs().total_cmp(&(a.1 - median).abs()).then(a.0.cmp(&b.0)));
    let count = far.len() as u64;
    far.truncate(LISTED);
    Outliers { mad, count, rows: far }
}

/// The histogram by exponent, both signs together, in ascending order of the exponent.
fn exponents(hist: &[i64]) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for e in 0..256usize {
        let n = (hist[e] + hist[256 + e]) as u64;
        if n == 0 {
            continue;
        }
        let label = match e {
            0 => "0/subnormal".to_string(),
            255 => "inf/nan".to_string(),
            e => format!("2^{}", e as i64 - 127),
        };
        out.push((label, n));
    }
    out
}
