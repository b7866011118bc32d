//! `model.safetensors.index.json`: which shard holds each tensor. Shard names become paths, so they are checked:
//! relative, no `..`, no backslashes, percent signs, NUL or empty segments.

use super::StrictObject;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct Index {
    /// tensor name → shard file name (relative to the checkpoint root).
    pub weight_map: BTreeMap<String, String>,
}

impl Index {
    pub fn parse(bytes: &[u8]) -> Result<Index, String> {
        #[derive(serde::Deserialize)]
        struct Raw {
            weight_map: StrictObject,
        }
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| format!("not a valid index: {e}"))?;
        let map = raw.weight_map;
        let mut weight_map = BTreeMap::new();
        for (tensor, shard) in map.0 {
            let shard = shard.as_str().ok_or_else(|| format!("weight_map[{tensor:?}] is not a string"))?.to_string();
            crate::names::check_relative_file(&shard)
                .map_err(|e| format!("weight_map[{tensor:?}] = {shard:?}: {e}"))?;
            weight_map.insert(tensor, shard);
        }
        Ok(Index { weight_map })
    }

    pub(crate) fn shard_of(&self, tensor: &str) -> Option<&str> {
        self.weight_map.get(tensor).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_weight_map() {
        let i = Index::parse(br#"{"metadata":{"total_size":4},"weight_map":{"a":"model-1.safetensors"}}"#).unwrap();
        assert_eq!(i.shard_of("a"), Some("model-1.safetensors"));
        assert_eq!(i.shard_of("b"), None);
    }

    #[test]
    fn refuses_hostile_shard_names() {
        for bad in ["../x", "/etc/passwd", "a\\b", "%2e%2e/x", "", "a//b", "./a", "a\u{0}b", "C:x"] {
            let json = serde_json::json!({"weight_map": {"t": bad}}).to_string();
            assert!(Index::parse(json.as_bytes()).is_err(), "{bad:?} accepted");
        }
        assert!(Index::parse(br#"{"weight_map":{"t":"a","t":"b"}}"#).unwrap_err().contains("duplicate"));
        assert!(Index::parse(br#"{"weight_map":{"t":1}}"#).is_err());
        assert!(Index::parse(br#"{}"#).is_err());
    }
}
