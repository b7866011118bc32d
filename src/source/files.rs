//! Finding W in a checkpoint, whatever holds its files: `config.json`, then `model.safetensors.index.json` or
//! `model.safetensors`, then the header of the one shard that holds W. A `Files` is a directory (local checkout,
//! HF cache snapshot) or the Hub at a commit; `find_w` reads only small files and one header through it.

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
}

impl Found {
    pub(crate) fn w(&self) -> &header::TensorInfo {
        self.header.get(&self.choice.key).expect("checked by find_w")
    }
}

pub(crate) fn find_w(files: &dyn Files, explicit: Option<&str>) -> Result<Found> {
    let missing = |name: &str| Error::MissingFile { path: files.describe(name) };
    let config_bytes = files.small("config.json")?.ok_or_else(|| missing("config.json"))?;
    let config = ModelConfig::parse(&config_bytes).map_err(|m| Error::checkpoint(files.describe("config.json"), m))?;
    let index_name = "model.safetensors.index.json";
    let (index_bytes, choice, shard, header) = match files.small(index_name)? {
        Some(bytes) => {
            let index = Index::parse(&bytes).map_err(|m| Error::checkpoint(files.describe(index_name), m))?;
            let keys: Vec<&str> = index.weight_map.keys().map(String::as_str).collect();
            let choice =
                unembedding::choose(&config, &keys, explicit).map_err(|m| Error::checkpoint(files.describe(""), m))?;
            let shard = index.shard_of(&choice.key).expect("chosen from the index").to_string();
            let header = files.header(&shard)?.ok_or_else(|| missing(&shard))?;
            (Some(bytes), choice, shard, header)
        }
        None => {
            let shard = "model.safetensors".to_string();
            // Neither weights file: missing (a cache snapshot may hold only config and tokenizer files).
            let header = files.header(&shard)?.ok_or_else(|| missing(&shard))?;
            let keys: Vec<&str> = header.0.tensors.iter().map(|t| t.name.as_str()).collect();
            let choice =
                unembedding::choose(&config, &keys, explicit).map_err(|m| Error::checkpoint(files.describe(""), m))?;
            (None, choice, shard, header)
        }
    };
    let (header, shard_len) = header;
    let Some(w) = header.get(&choice.key) else {
        let message = format!("the index says this shard holds {} but its header does not list it", choice.key);
        return Err(Error::checkpoint(files.describe(&shard), message));
    };
    unembedding::check(&config, w).map_err(|m| Error::checkpoint(files.describe(&shard), m))?;
    tracing::debug!(
        "W is {} in {} ({}, {:?}, {} bytes at data offset {}): {}",
        choice.key,
        files.describe(&shard).display(),
        w.dtype.name(),
        w.shape,
        w.end - w.begin,
        w.begin,
        choice.reason
    );
    Ok(Found { config_bytes, index_bytes, choice, header, shard, shard_len })
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
