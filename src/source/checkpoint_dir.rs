//! A checkpoint directory on disk (a local checkout or an HF cache snapshot): `config.json` plus
//! `model.safetensors` or `model.safetensors.index.json` and its shards. Finds W reading only small files and
//! the header of the one shard that holds it.

use crate::checkpoint::{config::ModelConfig, header, index::Index};
use crate::error::{Error, IoContext, Result};
use crate::unembedding;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Small JSON files larger than this are refused.
const MAX_SMALL_FILE: u64 = 64 * 1024 * 1024;

pub struct Found {
    pub config: ModelConfig,
    pub config_bytes: Vec<u8>,
    pub index_bytes: Option<Vec<u8>>,
    pub choice: unembedding::Choice,
    pub header: header::Header,
    pub shard: String,
    pub shard_path: PathBuf,
    pub shard_len: u64,
}

pub fn find_w(root: &Path, explicit: Option<&str>) -> Result<Found> {
    let config_path = root.join("config.json");
    let config_bytes = read_small(&config_path)?;
    let config = ModelConfig::parse(&config_bytes).map_err(|m| Error::checkpoint(&config_path, m))?;
    let index_path = root.join("model.safetensors.index.json");
    let single_path = root.join("model.safetensors");
    let (index_bytes, choice, shard) = if index_path.exists() {
        let bytes = read_small(&index_path)?;
        let index = Index::parse(&bytes).map_err(|m| Error::checkpoint(&index_path, m))?;
        let keys: Vec<&str> = index.weight_map.keys().map(String::as_str).collect();
        let choice = unembedding::choose(&config, &keys, explicit).map_err(|m| Error::checkpoint(root, m))?;
        let shard = index.shard_of(&choice.key).expect("chosen from the index").to_string();
        (Some(bytes), choice, shard)
    } else if single_path.exists() {
        let (h, _) = read_header(&single_path)?;
        let keys: Vec<&str> = h.tensors.iter().map(|t| t.name.as_str()).collect();
        let choice = unembedding::choose(&config, &keys, explicit).map_err(|m| Error::checkpoint(root, m))?;
        (None, choice, "model.safetensors".to_string())
    } else {
        return Err(Error::checkpoint(
            root,
            "no model.safetensors or model.safetensors.index.json: not a safetensors checkpoint",
        ));
    };
    let shard_path = root.join(&shard);
    if !shard_path.exists() {
        return Err(Error::checkpoint(&shard_path, format!("shard holding {} is missing", choice.key)));
    }
    let (header, shard_len) = read_header(&shard_path)?;
    let Some(w) = header.get(&choice.key) else {
        return Err(Error::checkpoint(
            &shard_path,
            format!("the index says this shard holds {} but its header does not list it", choice.key),
        ));
    };
    unembedding::check(&config, w).map_err(|m| Error::checkpoint(&shard_path, m))?;
    Ok(Found { config, config_bytes, index_bytes, choice, header, shard, shard_path, shard_len })
}

fn read_small(path: &Path) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).at(path)?;
    let len = f.metadata().at(path)?.len();
    if len > MAX_SMALL_FILE {
        return Err(Error::checkpoint(
            path,
            format!("{len} bytes is too large for this JSON file (limit {MAX_SMALL_FILE})"),
        ));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    f.take(MAX_SMALL_FILE).read_to_end(&mut bytes).at(path)?;
    Ok(bytes)
}

/// Reads and validates a shard's header: the prefix, then exactly the header bytes. Returns it and the file length.
pub fn read_header(path: &Path) -> Result<(header::Header, u64)> {
    let mut f = std::fs::File::open(path).at(path)?;
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
