//! The environment as gamma-run reads it, one rule each: boolean flags the way huggingface_hub reads them
//! (`1/ON/YES/TRUE`), and the home directory fallback for the HF paths. Commands and settings call these;
//! nothing here decides what a variable means beyond its syntax.

use std::path::PathBuf;

/// A flag set the way huggingface_hub reads its booleans: `1`, `ON`, `YES` or `TRUE`, in any case.
pub fn truthy(v: Option<String>) -> bool {
    v.is_some_and(|v| matches!(v.trim().to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE"))
}

/// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface` — where the Python client keeps
/// its cache and token. `env` reads a variable (empty values count as unset).
pub(crate) fn hf_home(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    set("HF_HOME").map_or_else(
        || {
            let cache = set("XDG_CACHE_HOME")
                .map_or_else(|| PathBuf::from(set("HOME").unwrap_or_else(|| "/".into())).join(".cache"), PathBuf::from);
            cache.join("huggingface")
        },
        PathBuf::from,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_homes() {
        assert!(truthy(Some("1".into())) && truthy(Some("yes".into())) && truthy(Some("True".into())));
        assert!(!truthy(Some("0".into())) && !truthy(Some("".into())) && !truthy(None));
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|p| p.0 == k).map(|p| p.1.to_string())
        };
        assert_eq!(hf_home(&env(&[("HOME", "/h")])), PathBuf::from("/h/.cache/huggingface"));
        assert_eq!(hf_home(&env(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")])), PathBuf::from("/x/huggingface"));
        assert_eq!(hf_home(&env(&[("HF_HOME", "/hf"), ("HOME", "/h")])), PathBuf::from("/hf"));
        assert_eq!(hf_home(&env(&[])), PathBuf::from("/.cache/huggingface"));
    }
}
