//! Which checkpoint tensor is W, and why: the rules transformers 5.x follows when it fills `lm_head.weight`
//! (see the README's design notes). Works on key names and the config only; it never reads tensor bytes.

use crate::checkpoint::config::ModelConfig;
use crate::checkpoint::header::{Dtype, TensorInfo};

pub(crate) const HEAD_KEYS: &[&str] = &["lm_head.weight", "language_model.lm_head.weight"];
pub(crate) const EMBED_KEYS: &[&str] = &[
    "model.embed_tokens.weight",
    "model.language_model.embed_tokens.weight",
    "language_model.model.embed_tokens.weight",
];

/// The decision: the key to read, a sentence for the manifest, and a warning when transformers versions disagree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Choice {
    pub(crate) key: String,
    pub(crate) reason: String,
    pub(crate) warning: Option<String>,
}

/// Decides W's key from the config and the checkpoint's key names; `explicit` (the job's `tensor:`) wins.
pub(crate) fn choose(cfg: &ModelConfig, keys: &[&str], explicit: Option<&str>) -> Result<Choice, String> {
    if cfg.quantized {
        return Err("the checkpoint is quantized (config.json has quantization_config): W is stored packed, \
                    not as a float matrix; use an unquantized revision of the model"
            .into());
    }
    if let Some(key) = explicit {
        if keys.contains(&key) {
            return Ok(Choice {
                key: key.into(),
                reason: "named explicitly by the job's `tensor:`".into(),
                warning: None,
            });
        }
        return Err(format!(
            "the job names tensor {key:?}, which the checkpoint does not hold; {}",
            nearest(keys, &[key])
        ));
    }
    let head = HEAD_KEYS.iter().find(|k| keys.contains(k));
    let embed = EMBED_KEYS.iter().find(|k| keys.contains(k));
    match (head, embed, cfg.tied) {
        (Some(h), Some(e), true) => Ok(Choice {
            key: h.to_string(),
            reason: format!("{}, but {h} is stored beside {e}: transformers 5.x keeps the stored head", cfg.tied_from),
            warning: Some(format!(
                "tied config but both {h} and {e} are stored; using the head as transformers 5.x does \
                 (4.x used the embedding); name `tensor:` to choose"
            )),
        }),
        (Some(h), _, false) => {
            Ok(Choice { key: h.to_string(), reason: format!("untied head ({})", cfg.tied_from), warning: None })
        }
        (Some(h), None, true) => Ok(Choice {
            key: h.to_string(),
            reason: format!("{}; only the head {h} is stored", cfg.tied_from),
            warning: None,
        }),
        (None, Some(e), true) => {
            Ok(Choice { key: e.to_string(), reason: format!("tied embedding ({})", cfg.tied_from), warning: None })
        }
        (None, Some(e), false) => Err(format!(
            "{} but no head is stored (tried {}): transformers would initialise lm_head randomly, so W is not \
             reproducible; if the head is really the embedding, set `tensor: {e}` in the job",
            cfg.tied_from,
            HEAD_KEYS.join(", ")
        )),
        (None, None, _) => Err(format!(
            "cannot find W: tried {}; {}; name it with `tensor:` in the job",
            [HEAD_KEYS, EMBED_KEYS].concat().join(", "),
            nearest(keys, &["lm_head.weight", "embed_tokens.weight"])
        )),
    }
}

/// W must be a bf16/f16/f32 matrix of shape [vocab_size, hidden_size].
pub(crate) fn check(cfg: &ModelConfig, w: &TensorInfo) -> Result<(), String> {
    if !matches!(w.dtype, Dtype::Bf16 | Dtype::F16 | Dtype::F32) {
        return Err(format!(
            "{} is stored as {}, not BF16, F16 or F32 (a quantized or integer tensor)",
            w.name,
            w.dtype.name()
        ));
    }
    if w.shape != [cfg.vocab_size, cfg.hidden_size] {
        return Err(format!(
            "{} has shape {:?} but config.json says vocab_size × hidden_size = [{}, {}]",
            w.name, w.shape, cfg.vocab_size, cfg.hidden_size
        ));
    }
    Ok(())
}

/// "nearest keys present: a, b, c" — keys sharing the most trailing dotted segments with the wanted ones.
fn nearest(keys: &[&str], wanted: &[&str]) -> String {
    let score = |k: &str| -> usize {
        wanted
            .iter()
            .map(|w| {
                let common = k.rsplit('.').zip(w.rsplit('.')).take_while(|(a, b)| a == b).count();
                let hint = ["embed", "head", "wte", "output"].iter().any(|h| k.contains(h)) as usize;
                common * 2 + hint
            })
            .max()
            .unwrap_or(0)
    };
    let mut ranked: Vec<(usize, &str)> = keys.iter().map(|k| (score(k), *k)).filter(|(s, _)| *s > 0).collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let near: Vec<&str> = ranked.iter().take(5).map(|(_, k)| *k).collect();
    if near.is_empty() {
        format!("the checkpoint holds {} tensors, none named like W", keys.len())
    } else {
        format!("nearest keys present: {}", near.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(tied: bool) -> ModelConfig {
        ModelConfig {
            model_type: "llama".into(),
            vocab_size: 4,
            hidden_size: 2,
            tied,
            tied_from: "t".into(),
            quantized: false,
        }
    }

    #[test]
    fn follows_transformers_rules() {
        let both = ["model.embed_tokens.weight", "lm_head.weight"];
        assert_eq!(choose(&cfg(false), &both, None).unwrap().key, "lm_head.weight");
        let c = choose(&cfg(true), &both, None).unwrap();
        assert_eq!(c.key, "lm_head.weight");
        assert!(c.warning.is_some());
        assert_eq!(choose(&cfg(true), &["model.embed_tokens.weight"], None).unwrap().key, "model.embed_tokens.weight");
        assert_eq!(
            choose(&cfg(true), &["model.language_model.embed_tokens.weight"], None).unwrap().key,
            "model.language_model.embed_tokens.weight"
        );
        assert_eq!(
            choose(&cfg(false), &["language_model.lm_head.weight"], None).unwrap().key,
            "language_model.lm_head.weight"
        );
        assert!(choose(&cfg(false), &["model.embed_tokens.weight"], None).unwrap_err().contains("randomly"));
        assert_eq!(
            choose(&cfg(false), &["model.embed_tokens.weight"], Some("model.embed_tokens.weight")).unwrap().key,
            "model.embed_tokens.weight"
        );
        let mut q = cfg(true);
        q.quantized = true;
        assert!(choose(&q, &both, None).unwrap_err().contains("quantized"));
    }

    #[test]
    fn lists_tried_and_nearest_keys_when_w_is_missing() {
        let err = choose(&cfg(true), &["transformer.wte.weight", "model.norm.weight"], None).unwrap_err();
        assert!(err.contains("tried lm_head.weight"), "{err}");
        // Both share the trailing `weight`; `wte` also looks like an embedding, so it ranks first.
        assert!(err.contains("nearest keys present: transformer.wte.weight, model.norm.weight"), "{err}");
    }

    #[test]
    fn checks_shape_and_dtype() {
        let w = |dtype, shape: Vec<u64>| TensorInfo { name: "w".into(), dtype, shape, begin: 0, end: 0 };
        assert!(check(&cfg(true), &w(Dtype::Bf16, vec![4, 2])).is_ok());
        assert!(check(&cfg(true), &w(Dtype::Bf16, vec![2, 4])).unwrap_err().contains("vocab_size"));
        assert!(check(&cfg(true), &w(Dtype::parse("I8").unwrap(), vec![4, 2])).is_err());
    }
}
