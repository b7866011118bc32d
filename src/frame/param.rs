//! Frame parameters as typed values with a domain: a choice from a fixed list, or a non-negative number. A value is
//! checked against its domain and written in one canonical spelling before it reaches a fingerprint, so `1e-6`,
//! `0.000001` and `1E-06` are one output. This module owns the checking; what a value means belongs to its frame.

use super::{Frame, Params};

/// A frame parameter: its name, default and domain.
pub(crate) struct Param {
    pub(crate) name: &'static str,
    pub(crate) default: &'static str,
    pub(crate) domain: Domain,
}

/// The values a parameter may take.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Domain {
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// A finite number ≥ 0 (written canonically: `0`, or Rust's shortest round-trip `1e-6`).
    NonNegative,
}

impl Param {
    pub(crate) const fn one_of(name: &'static str, default: &'static str, allowed: &'static [&'static str]) -> Param {
        Param { name, default, domain: Domain::OneOf(allowed) }
    }
    pub(crate) const fn non_negative(name: &'static str, default: &'static str) -> Param {
        Param { name, default, domain: Domain::NonNegative }
    }
}

impl Domain {
    /// `value` in its canonical spelling, or what is wrong with it (`what` names the parameter, e.g. `causal.ridge`).
    pub(crate) fn canonical(&self, what: &str, value: &str) -> Result<String, String> {
        match self {
            Domain::OneOf(allowed) if allowed.contains(&value) => Ok(value.to_string()),
            Domain::OneOf(allowed) => Err(format!("{what} must be one of {}, not {value:?}", allowed.join(", "))),
            Domain::NonNegative => {
                let x: f64 = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("{what} must be a number (e.g. 0 or 1e-6), not {value:?}"))?;
                if !x.is_finite() || x < 0.0 {
                    return Err(format!("{what} must be a finite number ≥ 0, not {value:?}"));
                }
                Ok(canonical_number(x))
            }
        }
    }

    /// The domain in words, for the CLI's JOB FILE section and error messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Domain::OneOf(allowed) => allowed.join(" | "),
            Domain::NonNegative => "a number ≥ 0".into(),
        }
    }
}

/// `0` for zero (either sign), otherwise the shortest scientific spelling that reads back as the same f64.
pub(crate) fn canonical_number(x: f64) -> String {
    if x == 0.0 { "0".into() } else { format!("{x:e}") }
}

/// A canonical number parameter back as a number (a manifest from elsewhere may hold anything).
pub(crate) fn number(params: &Params, name: &str) -> Result<f64, String> {
    let v = params.get(name).ok_or_else(|| format!("no {name} parameter"))?;
    Domain::NonNegative.canonical(name, v)?.parse().map_err(|_| format!("{name} {v:?} is not a number"))
}

/// Checks `given` against the frame's parameters, writes each value canonically and fills in defaults.
pub(crate) fn resolve_params(frame: &dyn Frame, given: &Params) -> Result<Params, String> {
    let specs = frame.params();
    let mut out = Params::new();
    for (k, v) in given {
        let Some(p) = specs.iter().find(|p| p.name == k) else {
            let known: Vec<&str> = specs.iter().map(|p| p.name).collect();
            let takes =
                if known.is_empty() { "it takes none".to_string() } else { format!("it takes: {}", known.join(", ")) };
            return Err(format!("frame {} has no parameter {k:?} ({takes})", frame.name()));
        };
        out.insert(k.clone(), p.domain.canonical(&format!("{}.{k}", frame.name()), v)?);
    }
    for p in specs {
        if !out.contains_key(p.name) {
            out.insert(p.name.to_string(), p.domain.canonical(p.name, p.default)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_have_one_spelling_and_a_domain() {
        let n = |v: &str| Domain::NonNegative.canonical("causal.ridge", v);
        for same in ["1e-6", "0.000001", "1E-06", " 1e-6", "0.0000010"] {
            assert_eq!(n(same).unwrap(), "1e-6", "{same}");
        }
        assert_eq!(n("0").unwrap(), "0");
        assert_eq!(n("-0").unwrap(), "0");
        assert_eq!(n("0.0").unwrap(), "0");
        assert_eq!(n("2.5").unwrap(), "2.5e0");
        for bad in ["-1e-6", "nan", "inf", "one", ""] {
            let e = n(bad).unwrap_err();
            assert!(e.contains("causal.ridge"), "{bad}: {e}");
        }
        assert_eq!(canonical_number(1e-6).parse::<f64>().unwrap(), 1e-6);
    }

    #[test]
    fn choices_are_checked_and_defaults_filled_in() {
        // (gamma_prime's default and its refused dtype: frame/mod.rs's test.)
        let metric = super::super::by_name("causal_metric").unwrap();
        let given = Params::from([("ridge".to_string(), "0.000001".to_string())]);
        let p = resolve_params(metric, &given).unwrap();
        assert_eq!((p["ridge"].as_str(), p["divisor"].as_str()), ("1e-6", "n"));
    }
}
