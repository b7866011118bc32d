//! What `show` prints for one stored output or several: the file, its tensors, the manifest's provenance,
//! parameters and facts, and for a `token_stats` file its summary first.

use super::shown_path;
use crate::manifest::Manifest;
use crate::text::plain;
use serde_json::json;
use std::path::PathBuf;

/// What `show` found, for the report.
pub(crate) struct Shown {
    pub(crate) file: PathBuf,
    pub(crate) manifest_path: Option<PathBuf>,
    pub(crate) manifest: Option<Manifest>,
    /// The file's own header: (tensor, dtype, shape) in file order.
    pub(crate) tensors: Vec<(String, String, Vec<u64>)>,
    pub(crate) size: u64,
    pub(crate) sha256: String,
    pub(crate) matches: bool,
    /// For a `token_stats` file: its summary.
    pub(crate) stats: Option<crate::frame::stats_summary::Summary>,
}

fn shown_json(s: &Shown) -> serde_json::Value {
    json!({
        "file": s.file, "size": s.size, "sha256": s.sha256, "matches_manifest": s.matches,
        "tensors": s.tensors.iter().map(|(n, d, sh)| json!({"name": n, "dtype": d, "shape": sh})).collect::<Vec<_>>(),
        "manifest_path": s.manifest_path, "manifest": s.manifest, "stats": s.stats,
    })
}

/// `show` of a stats file: the headline numbers first.
fn stats_summary(s: &crate::frame::stats_summary::Summary) {
    let row = |k: &str, v: String| out!("{k:<16} {}", plain(&v));
    let listed = |rows: &[(u64, f64)]| rows.iter().map(|(r, x)| format!("{r} ({x:.4})")).collect::<Vec<_>>().join(", ");
    row("rows", format!("{} × {}", s.rows, s.columns));
    row("zero rows", s.zero_rows.to_string());
    let largest: Vec<String> =
        s.duplicate_groups.iter().map(|g| format!("{} rows from row {}", g.size, g.first_row)).collect();
    row(
        "duplicate groups",
        match s.duplicate_group_count {
            0 => "none (every row's bytes are unique)".into(),
            n => format!("{n} ({} rows in all; largest: {})", s.rows_in_duplicate_groups, largest.join("; ")),
        },
    );
    let n = &s.norm;
    row("norm", format!("min {:.4}  q1 {:.4}  median {:.4}  q3 {:.4}  max {:.4}", n.min, n.q1, n.median, n.q3, n.max));
    row("smallest norms", listed(&n.smallest_rows));
    row("largest norms", listed(&n.largest_rows));
    let o = &s.outliers;
    row(
        "norm outliers",
        format!(
            "{} rows more than {} MADs (MAD {:.4}) from the median{}",
            o.count,
            crate::frame::stats_summary::OUTLIER_MADS,
            o.mad,
            if o.rows.is_empty() { String::new() } else { format!(": {}", listed(&o.rows)) }
        ),
    );
    row("distinct values", format!("{} of 65536 bf16 patterns", s.distinct_values));
    row("non-finite", format!("{} values in {} rows", s.nonfinite_values, s.nonfinite_rows));
    row("subnormals", format!("{} values in {} rows", s.subnormal_values, s.subnormal_rows));
    let top = s.exponents.iter().map(|e| e.1).max().unwrap_or(1).max(1);
    for (i, (label, count)) in s.exponents.iter().enumerate() {
        let bar = "█".repeat(((count * 30).div_ceil(top)) as usize);
        row(if i == 0 { "exponents" } else { "" }, format!("{label:>12} {bar} {count}"));
    }
    out!("");
}

/// Several outputs (a job file's): each as `show` shows one, separated by a blank line; JSON, an array.
pub(crate) fn show_all(all: &[Shown], as_json: bool) {
    if as_json {
        let items: Vec<_> = all.iter().map(shown_json).collect();
        out!("{}", serde_json::to_string_pretty(&items).expect("json"));
        return;
    }
    for (i, s) in all.iter().enumerate() {
        if i > 0 {
            out!("");
        }
        show(s, false);
    }
}

pub(crate) fn show(s: &Shown, as_json: bool) {
    if as_json {
        out!("{}", serde_json::to_string_pretty(&shown_json(s)).expect("json"));
        return;
    }
    let row = |k: &str, v: String| out!("{k:<16} {}", plain(&v));
    if let Some(st) = &s.stats {
        stats_summary(st);
    }
    row("file", shown_path(&s.file));
    row("size", format!("{} bytes", s.size));
    row("sha256", s.sha256.clone());
    for (n, d, sh) in &s.tensors {
        row("tensor", format!("{n}  {d}  {sh:?}"));
    }
    let Some(m) = &s.manifest else {
        row("manifest", "none found (no manifests/<name>/<frame>.json names this file)".into());
        return;
    };
    row("manifest", s.manifest_path.as_ref().map(|p| shown_path(p)).unwrap_or_default());
    row(
        "matches",
        if s.matches {
            "yes: size and sha256 as recorded".into()
        } else {
            format!("NO: the manifest records {} bytes, sha256 {}", m.output.size, m.output.sha256)
        },
    );
    row("name / frame", format!("{} / {} (version {})", m.name, m.frame, m.frame_version));
    if let Some(src) = &m.source {
        row(
            "source",
            match (&src.repo, &src.path) {
                (Some(r), _) => format!(
                    "{r} @ {} (revision {})",
                    src.commit.as_deref().unwrap_or("?"),
                    src.revision.as_deref().unwrap_or("?")
                ),
                (_, Some(p)) => format!("local directory {p}"),
                _ => src.kind.as_str().to_string(),
            },
        );
        row("key", format!("{} ({} {:?})", src.tensor, src.dtype, src.shape));
        row("why this key", src.reason.clone());
        if let Some(bias) = &src.head.bias {
            row("head bias", format!("{bias} (logits = h @ W.T + bias)"));
        }
        for l in &src.head.logits {
            let value = l.value.as_ref().map_or("none (off)".to_string(), ToString::to_string);
            let what = match l.op.as_str() {
                "multiply" => "logits × value",
                "divide" => "logits ÷ value",
                "softcap" => "value · tanh(logits / value)",
                _ => "",
            };
            let config = l.config.as_deref().unwrap_or("-");
            row("head logits", format!("{} {config} = {value} ({}; {what})", l.op, l.from));
        }
        row(
            "read",
            format!(
                "bytes [{}, {}) of {} ({})",
                src.range.offset,
                src.range.offset + src.range.length,
                src.range.file,
                src.fetch.map_or("?", |f| f.as_str())
            ),
        );
        for f in &src.files {
            let digest = match (&f.sha256, f.digest_from(src.kind)) {
                (Some(sha), Some(crate::manifest::DigestFrom::Computed)) => format!("sha256 {sha} (computed)"),
                (Some(sha), Some(from)) => format!("sha256 {sha} ({}, not checked)", from.as_str()),
                _ => "sha256 not known (the file was not read whole)".into(),
            };
            row("source file", format!("{}  {} bytes  {digest}", f.path, f.size));
        }
    }
    for i in &m.inputs {
        row("input", format!("{} {} sha256 {}", i.frame, i.path, i.sha256));
    }
    for (k, v) in &m.params {
        row("parameter", format!("{k} = {v}"));
    }
    for (k, v) in &m.facts {
        row(k, v.clone());
    }
    row("NaNs", m.nan_count.to_string());
    row("built", format!("{} by {} {}", m.created_at, m.tool.name, m.tool.version));
}
