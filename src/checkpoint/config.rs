//! `config.json`, parsed strictly (no duplicate keys) and kept whole: the rules of the model's type (see
//! `unembedding`) name the fields that decide W — sizes under their class's names, the tie flag, head values.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModelConfig {
    /// The top-level `model_type` (empty when absent).
    pub(crate) model_type: String,
    /// The whole config, for the fields the model type's rules name (`n_embd`, `text_config.vocab_size`, …).
    pub(crate) top: Map<String, Value>,
    /// Whether config.json declares a quantization (`quantization_config`, top level or in `text_config`).
    pub(crate) quantized: bool,
}

impl ModelConfig {
    pub(crate) fn parse(bytes: &[u8]) -> Result<ModelConfig, String> {
        let top: Map<String, Value> = match super::StrictObject::parse(bytes) {
            Ok(obj) => obj.0.into_iter().collect(),
            Err(e) => return Err(format!("not a valid config: {e}")),
        };
        match top.get("text_config") {
            None | Some(Value::Object(_) | Value::Null) => {}
            Some(_) => return Err("\"text_config\" is not an object".into()),
        }
        let model_type = str_field(&top, "model_type")?.unwrap_or_default();
        let quantized = top.contains_key("quantization_config")
            || matches!(top.get("text_config"), Some(Value::Object(t)) if t.contains_key("quantization_config"));
        Ok(ModelConfig { model_type, top, quantized })
    }

    /// The value at a dotted path (`vocab_size`, `text_config.vocab_size`); `None` when absent or null.
    pub(crate) fn get(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('.');
        let mut v = self.top.get(parts.next()?)?;
        for p in parts {
            v = v.as_object()?.get(p)?;
        }
        (!v.is_null()).then_some(v)
    }

    /// A non-negative integer at `path`: `Ok(None)` when absent, an error when it is something else.
    pub(crate) fn int(&self, path: &str) -> Result<Option<u64>, String> {
        match self.get(path) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| format!("{path:?} is not a non-negative integer")),
        }
    }

    /// A boolean at `path`: `Ok(None)` when absent, an error when it is something else.
    pub(crate) fn bool(&self, path: &str) -> Result<Option<bool>, String> {
        match self.get(path) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| format!("{path:?} is not a boolean")),
        }
    }

    /// The text config: `text_config` when present (multimodal wrappers), else the top level, as a path prefix.
    pub(crate) fn text_prefix(&self) -> &'static str {
        if matches!(self.top.get("text_config"), Some(Value::Object(_))) { "text_config." } else { "" }
    }
}

fn str_field(m: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key:?} is not a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dotted_paths_and_quantization() {
        let c = ModelConfig::parse(
            br#"{"model_type":"gemma3","text_config":{"model_type":"gemma3_text","hidden_size":64,"x":null}}"#,
        )
        .unwrap();
        assert_eq!(c.int("text_config.hidden_size"), Ok(Some(64)));
        assert_eq!(c.int("text_config.vocab_size"), Ok(None));
        assert_eq!(c.get("text_config.x"), None, "null is absent");
        assert_eq!(c.text_prefix(), "text_config.");
        let c = ModelConfig::parse(br#"{"model_type":"qwen3","vocab_size":"10","quantization_config":{}}"#).unwrap();
        assert!(c.quantized && c.int("vocab_size").is_err() && c.text_prefix().is_empty());
    }

    #[test]
    fn refuses_malformed_configs() {
        assert!(ModelConfig::parse(b"{").is_err());
        assert!(ModelConfig::parse(br#"{"text_config":3}"#).is_err());
        assert!(ModelConfig::parse(br#"{"vocab_size":1,"vocab_size":2}"#).unwrap_err().contains("duplicate"));
    }
}
