//! Finding W (or E) in a checkpoint, whatever holds its files: `config.json`, then `model.safetensors` or
//! `model.safetensors.index.json` and its shards' headers. A `Files` is a directory (local checkout, HF cache
//! snapshot) or the Hub at a commit; `find_w` reads only small files and headers through it.

use crate::checkpoint::{config::ModelConfig, header, index::Index};
use crate::error::{Error, IoContext, Result};
use crate::unembedding;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Small JSON files larger than this are refused.
pub(crate) const MAX_SMALL_FILE: u64 = 64 * 1024 * 1024;

/// Where a checkpoint's files come from. `Ok(None)`: the file does not exist there.
pub(crate) trait Files {
    fn small(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// A shard's validated header and the shard's length.
    fn header(&self, name: &str) -> Result<Option<(header::Header, u64)>>;
    /// How to name `name` in messages (a path, or repo@commit/name).
    fn describe(&self, name: &str) -> PathBuf;
}

pub(crate) struct Found {
    pub(crate) config_bytes: Vec<u8>,
    pub(crate) index_bytes: Option<Vec<u8>>,
    pub(crate) choice: unembedding::Choice,
    pub(crate) header: header::Header,
    pub(crate) shard: String,
    pub(crate) shard_len: u64,
    /// The tensor read: the chosen key's entry, cut to its first rows where transformers keeps only those.
    w: header::TensorInfo,
}

impl Found {
    pub(crate) fn w(&self) -> &header::TensorInfo {
        &self.w
    }
}

const SINGLE: &str = "model.safetensors";
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
    let (index_bytes, choice, shard, (header, shard_len), keys) = match files.header(SINGLE)? {
        Some(single) => {
            let keys: Vec<String> = single.0.tensors.iter().map(|t| t.name.clone()).collect();
            let choice = choose(&keys.iter().map(String::as_str).collect::<Vec<_>>())?;
            (None, choice, SINGLE.to_string(), single, keys)
        }
        None => {
            // Neither weights file: missing (a cache snapshot may hold only config and tokenizer files).
            let bytes = files.small(INDEX)?.ok_or_else(|| missing(SINGLE))?;
            let index = Index::parse(&bytes).map_err(|m| Error::checkpoint(files.describe(INDEX), m))?;
            let shards: std::collections::BTreeSet<&str> = index.weight_map.values().map(String::as_str).collect();
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
    let explicit = wanted.explicit.is_some();
    unembedding::check(&rules, &w, explicit).map_err(|m| Error::checkpoint(files.describe(&shard), m))?;
    if config.quantized {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        unembedding::check_quantized(&rules, &keys, &choice.key)
            .map_err(|m| Error::checkpoint(files.describe(&shard), m))?;
    }
    let w = match choice.keep_rows {
        Some(rows) if rows < w.shape[0] => {
            let row_bytes = (w.end - w.begin) / w.shape[0];
            header::TensorInfo { end: w.begin + rows * row_bytes, shape: vec![rows, w.shape[1]], ..w }
        }
        _ => w,
    };
    tracing::debug!(
        "{} is {} in {} ({}, {:?}, {} bytes at data offset {}): {}",
        if wanted.matrix == unembedding::Matrix::Embedding { "E" } else { "W" },
        choice.key,
        files.describe(&shard).display(),
        w.dtype.name(),
        w.shape,
        w.end - w.begin,
        w.begin,
        choice.reason
    );
    Ok(Found { config_bytes, index_bytes, choice, header, shard, shard_len, w })
}

/// A checkpoint directory on disk.
pub(crate) struct Dir<'a>(pub &'a Path);

impl Files for Dir<'_> {
    fn small(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.0.join(name);
        if !path.exists() {
            return Ok(None);
        }
        read_small(&path).map(Some)
    }
    fn header(&self, name: &str) -> Result<Option<(header::Header, u64)>> {
        let path = self.0.join(name);
        if !path.exists() {
            return Ok(None);
        }
        read_header(&path).map(Some)
    }
    fn describe(&self, name: &str) -> PathBuf {
        if name.is_empty() { self.0.to_owned() } else { self.0.join(name) }
    }
}

fn read_small(path: &Path) -> Result<Vec<u8>> {
    crate::fsread::read_small(path, MAX_SMALL_FILE)
}

/// Reads and validates a shard's header: the prefix, then exactly the header bytes. Returns it and the file length.
pub(crate) fn read_header(path: &Path) -> Result<(header::Header, u64)> {
    let mut f = crate::fsread::open_regular(path)?;
    let len = f.metadata().at(path)?.len();
    let mut prefix = [0u8; 8];
    if len < 8 {
        return Err(Error::checkpoint(path, format!("{len} bytes is too short for a safetensors file")));
    }
    f.read_exact(&mut prefix).at(path)?;
    let n = header::header_len(prefix, len).map_err(|m| Error::checkpoint(path, m))?;
    let mut json = vec![0u8; n as usize];
    f.read_exact(&mut json).at(path)?;
    let h = header::parse(prefix, &json, len).map_err(|m| Error::checkpoint(path, m))?;
    Ok((h, len))
}
