//! The table of what decides W for every `model_type` that `AutoModelForCausalLM` resolves, generated from
//! transformers itself by `tools/gen-w-table.py` and committed as `table.json` (with the transformers version it
//! came from). This module only loads and looks it up; `rules` applies it to a config.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::LazyLock;

#[derive(Debug, Deserialize)]
pub(crate) struct Table {
    pub(crate) transformers_version: String,
    pub(crate) types: BTreeMap<String, Entry>,
}

/// One model type: where its sizes and tie flag are in config.json, which on-disk keys hold its output and
/// input embeddings, and what its head does beyond `h @ W.T`.
#[derive(Debug, Deserialize)]
pub(crate) struct Entry {
    /// The class `AutoModelForCausalLM` picks.
    pub(crate) class: String,
    pub(crate) vocab_size: Sized,
    pub(crate) hidden_size: Sized,
    /// Config names (dotted paths) whose values W's rows and columns equal; `None` where no config field does.
    pub(crate) w_shape: [Option<String>; 2],
    pub(crate) tie: Flag,
    pub(crate) head: Module,
    pub(crate) embedding: Option<Module>,
    /// W keeps only the first N rows of the stored tensor on load, N being this config field.
    pub(crate) rows_from: Option<String>,
    /// Any other load-time change to W's values (gamma-run refuses these).
    pub(crate) value_op: Option<String>,
    #[serde(default)]
    pub(crate) logits: Vec<LogitOp>,
}

/// A size: the config names that give it, in the order transformers reads them, and the class default.
#[derive(Debug, Deserialize)]
pub(crate) struct Sized {
    pub(crate) names: Vec<String>,
    pub(crate) default: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Flag {
    pub(crate) names: Vec<String>,
    pub(crate) default: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Module {
    pub(crate) module: String,
    /// On-disk keys that hold the module's weight, in priority order.
    pub(crate) keys: Vec<String>,
    #[serde(default)]
    pub(crate) bias_key: Option<String>,
}

/// What the head applies to the logits beyond `h @ W.T`.
#[derive(Debug, Deserialize)]
pub(crate) struct LogitOp {
    /// `multiply`, `divide`, `softcap` or `add_bias`.
    pub(crate) op: String,
    /// The config field holding its value (none for a bias).
    pub(crate) config: Option<String>,
    pub(crate) default: Option<serde_json::Value>,
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    serde_json::from_str(include_str!("table.json")).expect("the committed table.json parses (tested)")
});

pub(crate) fn table() -> &'static Table {
    &TABLE
}

/// The entry for `model_type`, if transformers' table has one.
pub(crate) fn lookup(model_type: &str) -> Option<&'static Entry> {
    TABLE.types.get(model_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_table_parses_and_covers_the_seed_types() {
        let t = table();
        assert!(t.transformers_version.starts_with("5."), "{}", t.transformers_version);
        assert!(t.types.len() > 100, "{} types", t.types.len());
        for ty in ["llama", "qwen2", "qwen3", "gemma3", "gemma3_text", "phi3", "granitemoehybrid", "gpt2", "gpt_neox"] {
            assert!(lookup(ty).is_some(), "{ty}");
        }
    }
}
