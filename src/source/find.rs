//! Finding W (or E) in a checkpoint as transformers does: `config.json`, then `model.safetensors` or
//! `model.safetensors.index.json` and its shards' headers; when there is neither, the legacy `pytorch_model.bin`
//! (`torch_bin.rs`). Reads only small files and headers, through `Files`.

use super::files::{Files, Found, checked, log_found};
use crate::checkpoint::{config::ModelConfig, index::Index};
use crate::error::{Error, Result};
use crate::unembedding;

pub(super) const SINGLE: &str = "model.safetensors";
/// An index naming more shards than this is refused (the largest public models have a few hundred).
const MAX_SHARDS: usize = 4096;
const INDEX: &str = "model.safetensors.index.json";

/// Finds the wanted matrix as transformers does: `model.safetensors` when there is one (it wins over an index
/// beside it), else every shard the index names — all their headers, since transformers loads every tensor of
/// every shard: the key is taken from the shard whose header holds it (the index's word is only a hint), and a
/// key stored in two shards is refused (which copy wins is an accident of load order).
pub(crate) fn find_w(files: &dyn Files, wanted: unembedding::Wanted) -> Result<Found> {
    let missing = |name: &str| Error::MissingFile { path: files.describe(name) };
    let config_bytes = files.small("config.json")?.ok_or_else(|| missing("config.json"))?;
    let bad_config = |m: String| Error::checkpoint(files.describe("config.json"), m);
    let config = ModelConfig::parse(&config_bytes).map_err(bad_config)?;
    let rules = unembedding::rules(&config).map_err(bad_config)?;
    let choose =
        |keys: &[&str]| unembedding::choose(&rules, keys, wanted).map_err(|m| Error::checkpoint(files.describe(""), m));
    let single = files.header(SINGLE)?;
    let index_bytes = if single.is_none() { files.small(INDEX)? } else { None };
    if single.is_none() && index_bytes.is_none() {
        // No safetensors: the legacy PyTorch files, which transformers reads only then.
        if files.size(super::torch_bin::BIN)?.is_some() || files.small(super::torch_bin::BIN_INDEX)?.is_some() {
            return super::torch_bin::find_in_bin(files, wanted, config_bytes, &config, &rules);
        }
    }
    let (index_bytes, choice, shard, (header, shard_len), keys) = match single {
        Some(single) => {
            let keys: Vec<String> = single.0.tensors.iter().map(|t| t.name.clone()).collect();
            let choice = choose(&keys.iter().map(String::as_str).collect::<Vec<_>>())?;
            (None, choice, SINGLE.to_string(), single, keys)
        }
        None => {
            // Neither weights file: missing (a cache snapshot may hold only config and tokenizer files).
            let bytes = index_bytes.ok_or_else(|| missing(SINGLE))?;
            let index = Index::parse(&bytes).map_err(|m| Error::checkpoint(files.describe(INDEX), m))?;
            let shards: std::collections::BTreeSet<&str> = index.weight_map.values().map(String::as_str).collect();
            if shards.len() > MAX_SHARDS {
                let m = format!("the index names {} shards, more than the {MAX_SHARDS} gamma-run reads", shards.len());
                return Err(Error::checkpoint(files.describe(INDEX), m));
            }
            // Every shard's header where it is at hand (a cache snapshot may hold only W's shard: `fetch: full`).
            let (mut headers, mut absent) = (Vec::new(), Vec::new());
            for name in shards {
                match files.header(name)? {
                    Some(h) => headers.push((name.to_string(), h)),
                    None => absent.push(name.to_string()),
                }
            }
            let mut keys: std::collections::BTreeSet<String> = index.weight_map.keys().cloned().collect();
            keys.extend(headers.iter().flat_map(|(_, h)| h.0.tensors.iter().map(|t| t.name.clone())));
            let keys: Vec<String> = keys.into_iter().collect();
            let choice = choose(&keys.iter().map(String::as_str).collect::<Vec<_>>())?;
            let holding: Vec<usize> =
                (0..headers.len()).filter(|&i| headers[i].1.0.get(&choice.key).is_some()).collect();
            let named = index.shard_of(&choice.key);
            let at = match holding.as_slice() {
                [one] => *one,
                [] => {
                    // Not in any header at hand: in a shard that is not (the named one first), else nowhere.
                    let missing_shard = absent.iter().find(|a| Some(a.as_str()) == named).or(absent.first());
                    if let Some(m) = missing_shard {
                        return Err(Error::MissingFile { path: files.describe(m) });
                    }
                    let message = format!(
                        "the index says this shard holds {} but its header does not list it (nor does any other shard's)",
                        choice.key
                    );
                    return Err(Error::checkpoint(files.describe(named.unwrap_or(INDEX)), message));
                }
                many => {
                    let names: Vec<&str> = many.iter().map(|&i| headers[i].0.as_str()).collect();
                    let message = format!(
                        "{} is stored in {} shards ({}): transformers loads them all and the last one loaded wins, an \
                         accident of load order; remove the extra copy or name the tensor you mean with `tensor:`",
                        choice.key,
                        names.len(),
                        names.join(", ")
                    );
                    return Err(Error::checkpoint(files.describe(""), message));
                }
            };
            let (name, h) = headers.swap_remove(at);
            if named != Some(name.as_str()) {
                tracing::warn!(
                    "the index says {} is in {}, but {name} holds it; reading it there, as transformers does",
                    choice.key,
                    named.unwrap_or("no shard")
                );
            }
            (Some(bytes), choice, name, h, keys)
        }
    };
    let w = header.get(&choice.key).expect("the chosen key is in its shard's header").clone();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let w = checked(&rules, config.quantized, &keys, &choice, wanted, w)
        .map_err(|m| Error::checkpoint(files.describe(&shard), m))?;
    log_found(files, &shard, wanted, &choice, &w, &format!("at data offset {}", w.begin));
    let index = index_bytes.map(|b| (INDEX.to_string(), b));
    let (data_start, described_by) = (header.data_start(), header.raw.clone());
    Ok(Found {
        config_bytes,
        index,
        choice,
        described_by,
        format: crate::manifest::Format::Safetensors,
        entry: None,
        shard,
        shard_len,
        w,
        data_start,
    })
}
