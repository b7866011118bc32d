//! A config read through its model type's table entry: V and d under the class's own names (`n_embd`,
//! `d_model`, `text_config.vocab_size`) with class defaults, W's expected shape, whether the head is tied and
//! why, the on-disk keys that can hold W and the input embedding, and what the head adds. A type the table does
//! not know gets the generic rules (`lm_head.weight` / `model.embed_tokens.weight`, `vocab_size` /
//! `hidden_size`, tied unless the config says not), with a warning.

use super::table::{self, Entry};
use crate::checkpoint::config::ModelConfig;
use crate::manifest::{Head, LogitValue};

pub(crate) const HEAD_KEYS: &[&str] = &["lm_head.weight", "language_model.lm_head.weight"];
pub(crate) const EMBED_KEYS: &[&str] = &[
    "model.embed_tokens.weight",
    "model.language_model.embed_tokens.weight",
    "language_model.model.embed_tokens.weight",
];

#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub(crate) model_type: String,
    /// The table's entry, or `None` for the generic rules.
    pub(crate) entry: Option<&'static Entry>,
    /// W's expected [rows, columns], where the config (or the class default) says.
    pub(crate) w_shape: [Option<u64>; 2],
    /// The config names of those sizes, for messages.
    pub(crate) w_shape_names: [String; 2],
    pub(crate) tied: bool,
    /// Where `tied` came from, for the manifest's `reason`.
    pub(crate) tied_from: String,
    pub(crate) head_keys: Vec<String>,
    pub(crate) embed_keys: Vec<String>,
    /// The head module's path (`lm_head`, `embed_out`…): its other tensors tell a quantized head.
    pub(crate) head_module: String,
    /// W is the first N rows of the stored tensor (the config field and N).
    pub(crate) keep_rows: Option<(String, u64)>,
    pub(crate) value_op: Option<String>,
    pub(crate) head: Head,
}

/// The rules for `cfg`'s model type.
pub(crate) fn rules(cfg: &ModelConfig) -> Result<Rules, String> {
    let ty = cfg.model_type.clone();
    match table::lookup(&ty) {
        Some(e) => from_entry(cfg, ty, e),
        None => generic(cfg, ty),
    }
}

fn from_entry(cfg: &ModelConfig, ty: String, e: &'static Entry) -> Result<Rules, String> {
    let size = |s: &table::Sized| -> Result<Option<u64>, String> {
        for n in &s.names {
            if let Some(v) = cfg.int(n)? {
                return Ok(Some(v));
            }
        }
        Ok(s.default.as_ref().and_then(serde_json::Value::as_u64))
    };
    let (vocab, hidden) = (size(&e.vocab_size)?, size(&e.hidden_size)?);
    // Each of W's dimensions: the config field the table names — a V or d alias takes its value (with the class
    // default); another field (`word_embed_proj_dim`) its own value, unchecked when absent.
    let dim = |name: &Option<String>| -> Result<(Option<u64>, String), String> {
        let Some(n) = name else { return Ok((None, "-".into())) };
        if e.vocab_size.names.contains(n) {
            return Ok((vocab, n.clone()));
        }
        if e.hidden_size.names.contains(n) {
            return Ok((hidden, n.clone()));
        }
        Ok((cfg.int(n)?, n.clone()))
    };
    let ((rows, rn), (cols, cn)) = (dim(&e.w_shape[0])?, dim(&e.w_shape[1])?);
    let mut tie = None;
    for n in &e.tie.names {
        if let Some(b) = cfg.bool(n)? {
            tie = Some((b, format!("{n}={b} in config.json")));
            break;
        }
    }
    let version = &table::table().transformers_version;
    let (tied, tied_from) = tie.unwrap_or_else(|| {
        let d = e.tie.default.unwrap_or(true);
        (d, format!("tie_word_embeddings absent; the {} class default is {d} (transformers {version})", e.class))
    });
    let keep_rows = match &e.rows_from {
        Some(n) => {
            let rows = cfg.int(n)?.ok_or_else(|| {
                format!("{ty} keeps the first {n} rows of the stored head on load, but config.json has no {n:?}")
            })?;
            Some((n.clone(), rows))
        }
        None => None,
    };
    let head = Head {
        bias: e.head.bias_key.clone(),
        logits: e
            .logits
            .iter()
            .filter(|l| l.op != "add_bias")
            .map(|l| {
                let given = l.config.as_deref().and_then(|c| cfg.get(c)).cloned();
                let from = if given.is_some() { "config.json" } else { "class default" };
                LogitValue {
                    op: l.op.clone(),
                    config: l.config.clone(),
                    value: given.or(l.default.clone()),
                    from: from.into(),
                }
            })
            .collect(),
    };
    let embed_keys = e.embedding.as_ref().map(|m| m.keys.clone()).unwrap_or_default();
    Ok(Rules {
        model_type: ty,
        entry: Some(e),
        w_shape: [keep_rows.as_ref().map(|k| k.1).or(rows), cols],
        w_shape_names: [keep_rows.as_ref().map_or(rn, |k| k.0.clone()), cn],
        tied,
        tied_from,
        head_keys: e.head.keys.clone(),
        embed_keys,
        head_module: e.head.module.clone(),
        keep_rows,
        value_op: e.value_op.clone(),
        head,
    })
}

/// Today's generic rules, for a type the table does not know (custom code, a newer transformers).
fn generic(cfg: &ModelConfig, ty: String) -> Result<Rules, String> {
    let text = cfg.text_prefix();
    let vocab = cfg.int(&format!("{text}vocab_size"))?;
    let hidden = cfg.int(&format!("{text}hidden_size"))?;
    let (tied, tied_from) = match (cfg.bool("tie_word_embeddings")?, cfg.bool(&format!("{text}tie_word_embeddings"))?) {
        (Some(b), _) => (b, format!("tie_word_embeddings={b} in config.json")),
        (None, Some(b)) => (b, format!("tie_word_embeddings={b} in config.json's text_config")),
        (None, None) => (true, format!("tie_word_embeddings absent; the base default for {ty:?} is true")),
    };
    Ok(Rules {
        model_type: ty,
        entry: None,
        w_shape: [vocab, hidden],
        w_shape_names: [format!("{text}vocab_size"), format!("{text}hidden_size")],
        tied,
        tied_from,
        head_keys: HEAD_KEYS.iter().map(std::string::ToString::to_string).collect(),
        embed_keys: EMBED_KEYS.iter().map(std::string::ToString::to_string).collect(),
        head_module: "lm_head".into(),
        keep_rows: None,
        value_op: None,
        head: Head::default(),
    })
}

impl Rules {
    /// The warning for a type the table does not know, pointing to `tensor:`.
    pub(crate) fn unknown_type_warning(&self) -> Option<String> {
        self.entry.is_none().then(|| {
            format!(
                "model_type {:?} is not in gamma-run's table (generated from transformers {}): using the generic \
                 rules ({} / {}); if W is another tensor, name it with `tensor:` in the job",
                self.model_type,
                table::table().transformers_version,
                HEAD_KEYS[0],
                EMBED_KEYS[0]
            )
        })
    }
}
