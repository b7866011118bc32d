//! `config.json`, reduced to the facts that decide W: the text config (top level or `text_config`), V and d with
//! their class defaults, whether the head is tied, and whether the checkpoint is quantized.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModelConfig {
    pub(crate) model_type: String,
    pub(crate) vocab_size: u64,
    pub(crate) hidden_size: u64,
    pub(crate) tied: bool,
    /// Where `tied` came from, for the manifest's `reason`.
    pub(crate) tied_from: String,
    pub(crate) quantized: bool,
}

/// Class defaults transformers applies when a key is absent: (model_type, vocab_size, hidden_size, tied).
const DEFAULTS: &[(&str, Option<u64>, Option<u64>, bool)] = &[
    ("gemma3", None, None, true),
    ("gemma3_text", Some(262208), Some(2304), true),
    ("qwen2", Some(151936), Some(4096), false),
    ("qwen3", Some(151936), Some(4096), false),
    ("llama", Some(32000), Some(4096), false),
    ("phi3", Some(32064), Some(3072), false),
    ("granitemoehybrid", Some(100352), Some(4096), false),
];

impl ModelConfig {
    pub(crate) fn parse(bytes: &[u8]) -> Result<ModelConfig, String> {
        let top: Map<String, Value> = match super::StrictObject::parse(bytes) {
            Ok(obj) => obj.0.into_iter().collect(),
            Err(e) => return Err(format!("not a valid config: {e}")),
        };
        let text = match top.get("text_config") {
            Some(Value::Object(t)) => t,
            Some(_) => return Err("\"text_config\" is not an object".into()),
            None => &top,
        };
        let top_type = str_field(&top, "model_type")?.unwrap_or_default();
        let text_type = str_field(text, "model_type")?.unwrap_or_else(|| top_type.clone());
        let text_default = DEFAULTS.iter().find(|d| d.0 == text_type);
        let vocab_size = int_field(text, "vocab_size")?
            .or(text_default.and_then(|d| d.1))
            .ok_or("no \"vocab_size\" (and no class default is known for this model_type); add it to config.json")?;
        let hidden_size = int_field(text, "hidden_size")?
            .or(text_default.and_then(|d| d.2))
            .ok_or("no \"hidden_size\" (and no class default is known for this model_type); add it to config.json")?;
        fn tie_at(m: &Map<String, Value>) -> Option<&Value> {
            m.get("tie_word_embeddings")
        }
        let (tied, tied_from) = match (tie_at(&top), tie_at(text)) {
            (Some(Value::Bool(b)), _) => (*b, format!("tie_word_embeddings={b} in config.json")),
            (None, Some(Value::Bool(b))) => (*b, format!("tie_word_embeddings={b} in config.json's text_config")),
            (Some(_), _) | (None, Some(_)) => return Err("\"tie_word_embeddings\" is not a boolean".into()),
            (None, None) => match DEFAULTS.iter().find(|d| d.0 == top_type) {
                Some(d) => (d.3, format!("tie_word_embeddings absent; the {top_type} class default is {}", d.3)),
                None => (true, format!("tie_word_embeddings absent; the base default for {top_type:?} is true")),
            },
        };
        let quantized = top.contains_key("quantization_config") || text.contains_key("quantization_config");
        if vocab_size == 0 || hidden_size == 0 {
            return Err("vocab_size and hidden_size must be positive".into());
        }
        Ok(ModelConfig { model_type: top_type, vocab_size, hidden_size, tied, tied_from, quantized })
    }
}

fn str_field(m: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key:?} is not a string")),
    }
}

fn int_field(m: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| format!("{key:?} is not a non-negative integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_text_config_and_class_defaults() {
        let c = ModelConfig::parse(
            br#"{"model_type":"gemma3","text_config":{"model_type":"gemma3_text","hidden_size":64}}"#,
        )
        .unwrap();
        assert_eq!((c.vocab_size, c.hidden_size, c.tied), (262208, 64, true));
        let c = ModelConfig::parse(br#"{"model_type":"qwen3","vocab_size":10,"hidden_size":4}"#).unwrap();
        assert!(!c.tied);
        let c = ModelConfig::parse(br#"{"model_type":"qwen3","vocab_size":10,"hidden_size":4,"tie_word_embeddings":true,"quantization_config":{}}"#).unwrap();
        assert!(c.tied && c.quantized);
    }

    #[test]
    fn refuses_malformed_configs() {
        assert!(ModelConfig::parse(b"{").is_err());
        assert!(ModelConfig::parse(br#"{"model_type":"mystery","hidden_size":4}"#).unwrap_err().contains("vocab_size"));
        assert!(ModelConfig::parse(br#"{"model_type":"llama","vocab_size":"10"}"#).is_err());
        assert!(ModelConfig::parse(br#"{"vocab_size":1,"vocab_size":2}"#).unwrap_err().contains("duplicate"));
    }
}
