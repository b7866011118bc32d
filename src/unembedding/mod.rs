//! Which checkpoint tensor is W (or the input embedding E), and why: the rules transformers 5.x follows, read
//! from a table generated from transformers itself (`table`, applied to a config by `rules`). Works on key
//! names and the config only; it never reads tensor bytes.

mod rules;
pub(crate) mod table;

use crate::manifest::Head;
pub(crate) use rules::{Rules, rules};

use crate::checkpoint::header::{Dtype, TensorInfo};

/// Which matrix a frame wants: the unembedding W (`get_output_embeddings()`) or the input embedding E
/// (`get_input_embeddings()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Matrix {
    Unembedding,
    Embedding,
}

/// What to find: the matrix, and the key a job names explicitly (`tensor:`, for W), which wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wanted<'a> {
    pub(crate) matrix: Matrix,
    pub(crate) explicit: Option<&'a str>,
}

impl<'a> Wanted<'a> {
    pub(crate) fn w(explicit: Option<&'a str>) -> Wanted<'a> {
        Wanted { matrix: Matrix::Unembedding, explicit }
    }
    pub(crate) fn e() -> Wanted<'static> {
        Wanted { matrix: Matrix::Embedding, explicit: None }
    }
}

/// The decision: the key to read, a sentence for the manifest, a warning when transformers versions disagree
/// or the rules are generic, W's rows when transformers keeps only some, and what the head adds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Choice {
    pub(crate) key: String,
    pub(crate) reason: String,
    pub(crate) warning: Option<String>,
    /// Only the first N rows of the stored tensor are W (transformers slices them on load).
    pub(crate) keep_rows: Option<u64>,
    pub(crate) head: Head,
}

/// Decides the key of `wanted` from the rules of the config's type and the checkpoint's key names.
pub(crate) fn choose(r: &Rules, keys: &[&str], wanted: Wanted) -> Result<Choice, String> {
    let mut c = match wanted.matrix {
        Matrix::Unembedding => choose_w(r, keys, wanted.explicit)?,
        Matrix::Embedding => choose_e(r, keys)?,
    };
    if c.warning.is_none() && wanted.explicit.is_none() {
        c.warning = r.unknown_type_warning();
    }
    Ok(c)
}

fn choose_w(r: &Rules, keys: &[&str], explicit: Option<&str>) -> Result<Choice, String> {
    let choice = |key: &str, reason: String, warning: Option<String>| Choice {
        key: key.into(),
        reason,
        warning,
        keep_rows: if explicit.is_some() { None } else { r.keep_rows.as_ref().map(|k| k.1) },
        head: r.head.clone(),
    };
    // The table's value ops are the head's (a head kept in f32, say): a tied W read from the embedding is not
    // affected, so only a chosen head key is refused.
    let head_chosen = |keys: &[&str]| r.head_keys.iter().any(|h| keys.contains(&h.as_str()));
    if let Some(v) = &r.value_op
        && explicit.is_none()
        && (!r.tied || head_chosen(keys))
    {
        return Err(format!(
            "transformers changes W's values on load for {} ({v}); gamma-run does not reproduce that, so it \
                 writes nothing rather than bytes transformers would not give; name a stored tensor with `tensor:` \
                 to copy it as is",
            r.model_type
        ));
    }
    if let Some(key) = explicit {
        if keys.contains(&key) {
            return Ok(choice(key, "named explicitly by the job's `tensor:`".into(), None));
        }
        return Err(format!(
            "the job names tensor {key:?}, which the checkpoint does not hold; {}",
            nearest(keys, &[key])
        ));
    }
    let head = r.head_keys.iter().find(|k| keys.contains(&k.as_str()));
    let embed = r.embed_keys.iter().find(|k| keys.contains(&k.as_str()));
    let sliced = |reason: String| match &r.keep_rows {
        Some((n, rows)) => format!("{reason}; its first {rows} rows ({n}), as transformers keeps on load"),
        None => reason,
    };
    match (head, embed, r.tied) {
        // One key holds both (a class whose head is its embedding module).
        (Some(h), Some(e), _) if h == e => Ok(choice(h, sliced(format!("{h}, the head and embedding in one")), None)),
        (Some(h), Some(e), true) => Ok(choice(
            h,
            sliced(format!("{}, but {h} is stored beside {e}: transformers 5.x keeps the stored head", r.tied_from)),
            Some(format!(
                "tied config but both {h} and {e} are stored; using the head as transformers 5.x does \
                 (4.x used the embedding); name `tensor:` to choose"
            )),
        )),
        (Some(h), _, false) => Ok(choice(h, sliced(format!("untied head ({})", r.tied_from)), None)),
        (Some(h), None, true) => Ok(choice(h, sliced(format!("{}; only the head {h} is stored", r.tied_from)), None)),
        (None, Some(e), true) => Ok(choice(e, sliced(format!("tied embedding ({})", r.tied_from)), None)),
        (None, Some(e), false) => Err(format!(
            "{} but no head is stored (tried {}): transformers would initialise the head randomly, so W is not \
             reproducible; if the head is really the embedding, set `tensor: {e}` in the job",
            r.tied_from,
            r.head_keys.join(", ")
        )),
        (None, None, _) => Err(format!(
            "cannot find W: tried {}{}; {}; name it with `tensor:` in the job",
            [r.head_keys.clone(), r.embed_keys.clone()].concat().join(", "),
            r.unknown_type_warning()
                .map(|_| format!(" (the generic rules: model_type {:?} is not in the table)", r.model_type))
                .unwrap_or_default(),
            nearest(keys, &["lm_head.weight", "embed_tokens.weight"])
        )),
    }
}

/// The input embedding: its own key, or — tied, with only the head stored — the head, which transformers
/// ties it to.
fn choose_e(r: &Rules, keys: &[&str]) -> Result<Choice, String> {
    let choice = |key: &str, reason: String| Choice {
        key: key.into(),
        reason,
        warning: None,
        keep_rows: None,
        head: Head::default(),
    };
    if let Some(e) = r.embed_keys.iter().find(|k| keys.contains(&k.as_str())) {
        return Ok(choice(
            e,
            format!(
                "the input embedding ({})",
                r.entry.map_or("generic rules".into(), |e| format!("{}.get_input_embeddings()", e.class))
            ),
        ));
    }
    let head = r.head_keys.iter().find(|k| keys.contains(&k.as_str()));
    match (head, r.tied) {
        (Some(h), true) => Ok(choice(
            h,
            format!("{}; the embedding is not stored, and transformers ties it to the head {h}", r.tied_from),
        )),
        _ => Err(format!(
            "cannot find the input embedding: tried {}; {}",
            r.embed_keys.join(", "),
            nearest(keys, &["embed_tokens.weight", "wte.weight"])
        )),
    }
}

/// W must be a bf16/f16/f32 matrix of the shape the config says (as far as it says).
pub(crate) fn check(r: &Rules, w: &TensorInfo, explicit: bool) -> Result<(), String> {
    if !matches!(w.dtype, Dtype::Bf16 | Dtype::F16 | Dtype::F32) {
        return Err(format!(
            "{} is stored as {}, not BF16, F16 or F32 (a quantized or integer tensor)",
            w.name,
            w.dtype.name()
        ));
    }
    if w.shape.len() != 2 || w.shape.contains(&0) {
        return Err(format!("{} has shape {:?}, not a (non-empty) matrix", w.name, w.shape));
    }
    // A job's `tensor:` is read as stored: the config's sizes need not be known (nor under known names).
    if explicit {
        return Ok(());
    }
    let [rows, cols] = r.w_shape;
    let Some(rows) = rows else {
        return Err(format!(
            "config.json has no {} (and the class has no default); add it, or name the tensor with `tensor:`",
            r.w_shape_names[0]
        ));
    };
    if cols.is_none() && r.entry.is_none() {
        return Err(format!("config.json has no {}; add it, or name the tensor with `tensor:`", r.w_shape_names[1]));
    }
    let rows_ok = if r.keep_rows.is_some() { rows >= 1 && rows <= w.shape[0] } else { rows == w.shape[0] };
    if !rows_ok || cols.is_some_and(|c| c != w.shape[1]) {
        let cols = cols.map_or("?".to_string(), |c| c.to_string());
        return Err(format!(
            "{} has shape {:?} but config.json says {} × {} = [{rows}, {cols}]",
            w.name, w.shape, r.w_shape_names[0], r.w_shape_names[1]
        ));
    }
    Ok(())
}

/// A quantized checkpoint: W is extracted only when its head is stored as plain floats — no other tensor of the
/// head module (`qweight`, `scales`, `weight_scale`, …), and a float dtype (checked by `check`).
pub(crate) fn check_quantized(r: &Rules, keys: &[&str], key: &str) -> Result<(), String> {
    let module = key.strip_suffix(".weight").unwrap_or(key);
    let packed: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| {
            k.strip_prefix(module).is_some_and(|rest| rest.starts_with('.') && rest != ".weight" && rest != ".bias")
        })
        .collect();
    let head_packed: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| {
            k.strip_prefix(r.head_module.as_str())
                .is_some_and(|rest| [".qweight", ".qzeros", ".scales", ".g_idx"].contains(&rest))
        })
        .collect();
    if !packed.is_empty() || !head_packed.is_empty() {
        let all = [packed, head_packed].concat();
        return Err(format!(
            "the checkpoint is quantized (config.json has quantization_config) and W is stored packed or scaled \
             ({}), not as a float matrix; use an unquantized revision of the model",
            all.join(", ")
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
    use crate::checkpoint::config::ModelConfig;

    fn rules_of(json: &str) -> Rules {
        rules(&ModelConfig::parse(json.as_bytes()).unwrap()).unwrap()
    }

    fn w(name: &str, shape: [u64; 2]) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dtype: Dtype::Bf16,
            shape: shape.to_vec(),
            begin: 0,
            end: shape[0] * shape[1] * 2,
        }
    }

    #[test]
    fn sizes_under_the_classs_own_names_and_defaults() {
        // GPT-2 says n_embd; its head is tied to transformer.wte by the class default.
        let r = rules_of(r#"{"model_type":"gpt2","vocab_size":640,"n_embd":64}"#);
        assert_eq!(r.w_shape, [Some(640), Some(64)]);
        let c = choose(&r, &["transformer.wte.weight", "transformer.h.0.attn.c_attn.weight"], Wanted::w(None)).unwrap();
        assert_eq!(c.key, "transformer.wte.weight");
        assert!(c.reason.contains("class default is true"), "{}", c.reason);
        assert!(check(&r, &w("transformer.wte.weight", [640, 64]), false).is_ok());
        // OPT-350m projects: W is [V, word_embed_proj_dim].
        let r = rules_of(r#"{"model_type":"opt","vocab_size":50,"hidden_size":64,"word_embed_proj_dim":32}"#);
        assert!(check(&r, &w("lm_head.weight", [50, 32]), false).is_ok());
        let err = check(&r, &w("lm_head.weight", [50, 64]), false).unwrap_err();
        assert!(err.contains("vocab_size × word_embed_proj_dim = [50, 32]"), "{err}");
        // Multimodal: the text config's names, with the class default for an absent vocab.
        let r = rules_of(r#"{"model_type":"gemma3","text_config":{"model_type":"gemma3_text","hidden_size":64}}"#);
        assert_eq!(r.w_shape, [Some(262208), Some(64)]);
    }

    #[test]
    fn renamed_keys_and_tie_defaults_by_class() {
        let r = rules_of(r#"{"model_type":"gpt_neox","vocab_size":6,"hidden_size":4}"#);
        assert_eq!(
            choose(&r, &["embed_out.weight", "gpt_neox.embed_in.weight"], Wanted::w(None)).unwrap().key,
            "embed_out.weight"
        );
        assert_eq!(
            choose(&r, &["embed_out.weight", "gpt_neox.embed_in.weight"], Wanted::e()).unwrap().key,
            "gpt_neox.embed_in.weight"
        );
        // Mistral's class default is untied: no misleading "tied but both stored" warning, and no head → refused.
        let r = rules_of(r#"{"model_type":"mistral","vocab_size":6,"hidden_size":4}"#);
        let c = choose(&r, &["lm_head.weight", "model.embed_tokens.weight"], Wanted::w(None)).unwrap();
        assert_eq!((c.key.as_str(), c.warning.is_none()), ("lm_head.weight", true));
        assert!(choose(&r, &["model.embed_tokens.weight"], Wanted::w(None)).unwrap_err().contains("randomly"));
        // EXAONE: on disk the embedding is transformer.wte.weight (renamed to model.embed_tokens on load).
        let r = rules_of(r#"{"model_type":"exaone","vocab_size":6,"hidden_size":4,"tie_word_embeddings":true}"#);
        assert_eq!(choose(&r, &["transformer.wte.weight"], Wanted::w(None)).unwrap().key, "transformer.wte.weight");
        // Tied with only the head stored: E is the head, which transformers ties it to.
        let r = rules_of(r#"{"model_type":"llama","vocab_size":6,"hidden_size":4,"tie_word_embeddings":true}"#);
        assert_eq!(choose(&r, &["lm_head.weight"], Wanted::e()).unwrap().key, "lm_head.weight");
    }

    #[test]
    fn value_operations_are_done_exactly_or_refused() {
        // Row slicing: the first unpadded_vocab_size rows of the stored head.
        let r = rules_of(r#"{"model_type":"inkling2_text","vocab_size":8,"unpadded_vocab_size":6,"hidden_size":4}"#);
        let c = choose(&r, &["model.llm.unembed.weight", "model.llm.embed.weight"], Wanted::w(None)).unwrap();
        assert_eq!((c.key.as_str(), c.keep_rows), ("model.llm.unembed.weight", Some(6)));
        assert!(c.reason.contains("first 6 rows"), "{}", c.reason);
        assert!(check(&r, &w("model.llm.unembed.weight", [8, 4]), false).is_ok());
        // A value change gamma-run does not reproduce: refused, unless the job names a tensor to copy as is.
        let r = rules_of(r#"{"model_type":"hy_v4","vocab_size":6,"hidden_size":4}"#);
        assert!(choose(&r, &["lm_head.weight"], Wanted::w(None)).unwrap_err().contains("does not reproduce"));
        assert!(choose(&r, &["lm_head.weight"], Wanted::w(Some("lm_head.weight"))).is_ok());
        // The head kept in f32 does not touch a tied W read from the embedding.
        let r = rules_of(r#"{"model_type":"hy_v4","vocab_size":6,"hidden_size":4,"tie_word_embeddings":true}"#);
        assert_eq!(
            choose(&r, &["model.embed_tokens.weight"], Wanted::w(None)).unwrap().key,
            "model.embed_tokens.weight"
        );
    }

    #[test]
    fn an_unknown_type_gets_the_generic_rules_with_a_warning_and_tensor_works_whatever_the_names() {
        let r = rules_of(r#"{"model_type":"my_custom_lm","vocab_size":6,"hidden_size":4}"#);
        let c = choose(&r, &["model.embed_tokens.weight"], Wanted::w(None)).unwrap();
        let warning = c.warning.unwrap();
        assert!(
            warning.contains("\"my_custom_lm\" is not in gamma-run's table (generated from transformers 5.")
                && warning.contains("`tensor:`"),
            "{warning}"
        );
        // Sizes under names the generic rules do not know (d_model): refused without `tensor:`, read as stored with it.
        let r = rules_of(r#"{"model_type":"my_custom_lm","vocab_size":6,"d_model":4}"#);
        assert!(check(&r, &w("model.embed_tokens.weight", [6, 4]), false).unwrap_err().contains("hidden_size"));
        let c = choose(&r, &["wte.weight"], Wanted::w(Some("wte.weight"))).unwrap();
        assert!(c.warning.is_none() && check(&r, &w("wte.weight", [6, 4]), true).is_ok());
    }

    #[test]
    fn the_head_is_recorded_with_its_values() {
        let r = rules_of(r#"{"model_type":"cohere","vocab_size":6,"hidden_size":4,"logit_scale":0.125}"#);
        let c = choose(&r, &["model.embed_tokens.weight"], Wanted::w(None)).unwrap();
        assert_eq!(c.head.logits[0].op, "multiply");
        assert_eq!(c.head.logits[0].value, Some(serde_json::json!(0.125)));
        assert_eq!(c.head.logits[0].from, "config.json");
        let r = rules_of(r#"{"model_type":"granite","vocab_size":6,"hidden_size":4}"#);
        let l = &r.head.logits[0];
        assert_eq!(
            (l.op.as_str(), l.config.as_deref(), l.from.as_str()),
            ("divide", Some("logits_scaling"), "class default")
        );
        let r = rules_of(r#"{"model_type":"gptj","vocab_size":6,"n_embd":4}"#);
        assert_eq!(r.head.bias.as_deref(), Some("lm_head.bias"));
        assert!(rules_of(r#"{"model_type":"llama","vocab_size":6,"hidden_size":4}"#).head.is_empty());
    }

    #[test]
    fn a_quantized_head_is_refused_only_when_packed() {
        let r = rules_of(r#"{"model_type":"llama","vocab_size":6,"hidden_size":4}"#);
        assert!(check_quantized(&r, &["lm_head.weight", "model.layers.0.q_proj.qweight"], "lm_head.weight").is_ok());
        let err = check_quantized(&r, &["lm_head.weight", "lm_head.weight_scale"], "lm_head.weight").unwrap_err();
        assert!(err.contains("lm_head.weight_scale"), "{err}");
        assert!(
            check_quantized(&r, &["model.embed_tokens.weight", "lm_head.qweight"], "model.embed_tokens.weight")
                .is_err()
        );
    }
}
