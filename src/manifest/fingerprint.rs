//! The fingerprint: SHA-256 of an explicit encoding of what decides an output — `key=value` lines in sorted key
//! order, values JSON-quoted. Never `Debug` output, mtimes or HashMap order.

use std::collections::BTreeMap;

/// Bump when the bytes gamma-run writes for the same inputs change (header layout, rounding, NaN rule).
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Bump when the rules that decide which tensor is W change.
pub(crate) const RULES_VERSION: u32 = 1;

pub(crate) type Inputs = BTreeMap<String, String>;

pub(crate) fn digest(inputs: &Inputs) -> String {
    let mut text = String::from("gamma-run fingerprint v1\n");
    for (k, v) in inputs {
        text.push_str(k);
        text.push('=');
        text.push_str(&serde_json::to_string(v).expect("strings serialise"));
        text.push('\n');
    }
    crate::store::sha256_bytes(text.as_bytes())
}

/// The fields every output's fingerprint starts from.
pub(crate) fn base(frame: &str, version: u32, dtype: &str) -> Inputs {
    let mut m = Inputs::new();
    m.insert("format_version".into(), FORMAT_VERSION.to_string());
    m.insert("frame".into(), frame.into());
    m.insert("frame_version".into(), version.to_string());
    m.insert("output.dtype".into(), dtype.into());
    m
}

/// Human reasons for the differences between a recorded and a current fingerprint.
pub(crate) fn diff(old: &Inputs, new: &Inputs) -> Vec<String> {
    let short = |s: &str| {
        if s.len() == 40 || s.len() == 64 { s.chars().take(8).collect::<String>() + "…" } else { s.to_string() }
    };
    let mut reasons = Vec::new();
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for k in keys {
        let (a, b) = (old.get(k).map_or("-", String::as_str), new.get(k).map_or("-", String::as_str));
        if a == b {
            continue;
        }
        let what = match k.as_str() {
            "source.commit" => format!("revision moved {} → {}", short(a), short(b)),
            "source.header_sha256" | "source.shard" => "tensor changed (W's shard header differs)".into(),
            "source.config_sha256" => "config.json changed".into(),
            "source.index_sha256" => "the shard index changed".into(),
            "format_version" => format!("format version changed {a} → {b}"),
            "rules_version" => format!("W-selection rules changed {a} → {b}"),
            "frame_version" => format!("frame version changed {a} → {b}"),
            "tensor_override" => format!("`tensor:` changed {a} → {b}"),
            k if k.starts_with("input.") => format!("input {} changed ({} → {})", &k[6..], short(a), short(b)),
            k if k.starts_with("param.") => format!("parameter {} changed {a} → {b}", &k[6..]),
            _ => format!("{k} changed {} → {}", short(a), short(b)),
        };
        if !reasons.contains(&what) {
            reasons.push(what);
        }
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_stable_and_sensitive() {
        let a = base("gamma", 1, "BF16");
        assert_eq!(digest(&a), digest(&a.clone()));
        // Pinned: changing the encoding silently would make every stored output stale.
        assert_eq!(digest(&Inputs::new()), crate::store::sha256_bytes(b"gamma-run fingerprint v1\n"));
        let mut b = a.clone();
        b.insert("source.commit".into(), "a".repeat(40));
        assert_ne!(digest(&a), digest(&b));
        let mut c = b.clone();
        c.insert("source.commit".into(), "c".repeat(40));
        assert_eq!(diff(&b, &c), vec!["revision moved aaaaaaaa… → cccccccc…".to_string()]);
    }
}
