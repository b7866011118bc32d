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
    /// A file's length, `None` if it does not exist.
    fn size(&self, name: &str) -> Result<Option<u64>>;
    /// Exactly `len` bytes of `name` at `offset`.
    fn read_at(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
}

pub(crate) struct Found {
    pub(crate) config_bytes: Vec<u8>,
    /// The index's name and bytes, for a sharded checkpoint.
    pub(crate) index: Option<(String, Vec<u8>)>,
    pub(crate) choice: unembedding::Choice,
    /// What describes the shard's tensors (a safetensors header, a `.bin`'s pickle): part of a local source's
    /// identity.
    pub(crate) described_by: Vec<u8>,
    pub(crate) format: crate::manifest::Format,
    /// For a `.bin`: the zip entry holding the matrix's storage.
    pub(crate) entry: Option<String>,
    pub(crate) shard: String,
    pub(crate) shard_len: u64,
    /// The tensor read: the chosen key's entry, cut to its first rows where transformers keeps only those;
    /// `begin`/`end` relative to `data_start`.
    w: header::TensorInfo,
    data_start: u64,
}

impl Found {
    pub(crate) fn w(&self) -> &header::TensorInfo {
        &self.w
    }
    /// Where the matrix's first byte is in the shard file.
    pub(crate) fn w_offset(&self) -> u64 {
        self.data_start + self.w.begin
    }
}

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
        if files.size(BIN)?.is_some() || files.small(BIN_INDEX)?.is_some() {
            return find_in_bin(files, wanted, config_bytes, &config, &rules);
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

/// The chosen tensor checked — a float matrix of the config's shape, not packed when the checkpoint is
/// quantized — and cut to its first rows where transformers keeps only those.
fn checked(
    rules: &unembedding::Rules,
    quantized: bool,
    keys: &[&str],
    choice: &unembedding::Choice,
    wanted: unembedding::Wanted,
    w: header::TensorInfo,
) -> std::result::Result<header::TensorInfo, String> {
    // The config's sizes describe W; the input embedding may have other rows (image or audio tokens) or columns
    // (a factorised embedding), so it is checked only as a float matrix.
    let as_stored = wanted.explicit.is_some() || wanted.matrix == unembedding::Matrix::Embedding;
    unembedding::check(rules, &w, as_stored)?;
    if quantized {
        unembedding::check_quantized(rules, keys, &choice.key)?;
    }
    Ok(match choice.keep_rows {
        Some(rows) if rows < w.shape[0] => {
            let row_bytes = (w.end - w.begin) / w.shape[0];
            header::TensorInfo { end: w.begin + rows * row_bytes, shape: vec![rows, w.shape[1]], ..w }
        }
        _ => w,
    })
}

/// `-v`: which tensor was found, where, and why.
fn log_found(
    files: &dyn Files,
    shard: &str,
    wanted: unembedding::Wanted,
    choice: &unembedding::Choice,
    w: &header::TensorInfo,
    at: &str,
) {
    tracing::debug!(
        "{} is {} in {} ({}, {:?}, {} bytes {at}): {}",
        if wanted.matrix == unembedding::Matrix::Embedding { "E" } else { "W" },
        choice.key,
        files.describe(shard).display(),
        w.dtype.name(),
        w.shape,
        w.end - w.begin,
        choice.reason
    );
}

const BIN: &str = "pytorch_model.bin";
const BIN_INDEX: &str = "pytorch_model.bin.index.json";

/// The matrix in a `pytorch_model.bin` (or the shard its index names): the zip's central directory from the
/// file's end, the pickle, and the local header of the matrix's storage entry — a few small reads; the storage
/// itself is not read here. Refuses what cannot be read as one byte range (compressed entries, non-contiguous
/// views, big-endian storages).
fn find_in_bin(
    files: &dyn Files,
    wanted: unembedding::Wanted,
    config_bytes: Vec<u8>,
    config: &ModelConfig,
    rules: &unembedding::Rules,
) -> Result<Found> {
    use crate::checkpoint::{pickle, torchzip};
    let missing = |name: &str| Error::MissingFile { path: files.describe(name) };
    let choose =
        |keys: &[&str]| unembedding::choose(rules, keys, wanted).map_err(|m| Error::checkpoint(files.describe(""), m));
    let (index, shard, choice_from_index) = match files.small(BIN_INDEX)? {
        Some(bytes) if files.size(BIN)?.is_none() => {
            let index = Index::parse(&bytes).map_err(|m| Error::checkpoint(files.describe(BIN_INDEX), m))?;
            let keys: Vec<&str> = index.weight_map.keys().map(String::as_str).collect();
            let choice = choose(&keys)?;
            let shard = index.shard_of(&choice.key).expect("chosen from the index").to_string();
            (Some((BIN_INDEX.to_string(), bytes)), shard, Some(choice))
        }
        _ => (None, BIN.to_string(), None),
    };
    let bad = |m: String| Error::checkpoint(files.describe(&shard), m);
    let len = files.size(&shard)?.ok_or_else(|| missing(&shard))?;
    let tail_len = torchzip::TAIL.min(len);
    let tail = files.read_at(&shard, len - tail_len, tail_len)?;
    let archive = match torchzip::directory(&tail, len - tail_len, len) {
        Ok(dir) => Archive::Zip(zip_archive(files, &shard, len, &tail, &dir)?),
        Err(not_zip) => {
            let head = files.read_at(&shard, 0, (pickle::LEGACY_MAGIC.len() as u64).min(len))?;
            if head != pickle::LEGACY_MAGIC {
                return Err(bad(not_zip));
            }
            Archive::Legacy(legacy_archive(files, &shard, len)?)
        }
    };
    let (state, pickled) = match &archive {
        Archive::Zip(z) => (z.state.clone(), z.pickled.clone()),
        Archive::Legacy((l, bytes)) => (l.tensors.clone(), bytes.clone()),
    };
    let keys: Vec<&str> = state.iter().map(|(k, _)| k.as_str()).collect();
    let choice = match choice_from_index {
        Some(c) => c,
        None => choose(&keys)?,
    };
    let Some((_, t)) = state.iter().find(|(k, _)| *k == choice.key) else {
        return Err(bad(format!("the index says this shard holds {} but its pickle does not", choice.key)));
    };
    if !t.is_contiguous() {
        return Err(bad(format!(
            "{} is a non-contiguous view (size {:?}, stride {:?}) into its storage; gamma-run reads one byte range \
             and refuses to guess — re-save the checkpoint with contiguous tensors",
            choice.key, t.shape, t.stride
        )));
    }
    let width = (t.dtype.bits() / 8).max(1);
    // Where the storage's bytes are, and how many there are.
    let (storage_name, data_start, storage_size) = match &archive {
        Archive::Zip(z) => {
            let name = format!("{}data/{}", z.prefix, t.storage);
            let e = z.entries.iter().find(|e| e.name == name);
            let e = e.ok_or_else(|| bad(format!("no entry {name} for {}'s storage", choice.key)))?;
            (name, zip_data(files, &shard, len, e)?, e.size)
        }
        Archive::Legacy((l, _)) => {
            let (at, size) = legacy_storage(files, &shard, len, l, &state, &t.storage).map_err(bad)?;
            (format!("storage {}", t.storage), at, size)
        }
    };
    let too_big = || {
        bad(format!(
            "{} declares a size ({:?} at offset {}) larger than its storage ({storage_size} bytes)",
            choice.key, t.shape, t.offset
        ))
    };
    let numel = t.numel().ok_or_else(too_big)?;
    let begin = t.offset.checked_mul(width).ok_or_else(too_big)?;
    let end = numel.checked_mul(width).and_then(|n| n.checked_add(begin)).ok_or_else(too_big)?;
    if end > storage_size || t.storage_numel.checked_mul(width).is_none_or(|n| n != storage_size) {
        return Err(too_big());
    }
    let w = header::TensorInfo { name: choice.key.clone(), dtype: t.dtype, shape: t.shape.clone(), begin, end };
    let w = checked(rules, config.quantized, &keys, &choice, wanted, w).map_err(bad)?;
    log_found(
        files,
        &shard,
        wanted,
        &choice,
        &w,
        &format!("at offset {} (entry {storage_name})", data_start + w.begin),
    );
    Ok(Found {
        config_bytes,
        index,
        choice,
        described_by: pickled,
        format: if matches!(archive, Archive::Zip(_)) {
            crate::manifest::Format::PytorchZip
        } else {
            crate::manifest::Format::PytorchLegacy
        },
        entry: Some(storage_name),
        shard,
        shard_len: len,
        w,
        data_start,
    })
}

/// What a `.bin` holds: a zip (`torch.save` ≥ 1.6) or the legacy sequence of pickles and storages.
enum Archive {
    Zip(ZipArchive),
    Legacy((crate::checkpoint::pickle::Legacy, Vec<u8>)),
}

struct ZipArchive {
    entries: Vec<crate::checkpoint::torchzip::Entry>,
    prefix: String,
    pickled: Vec<u8>,
    state: Vec<(String, crate::checkpoint::pickle::TensorRef)>,
}

/// Where a stored zip entry's data starts (its local header read); compressed entries are refused.
fn zip_data(files: &dyn Files, shard: &str, len: u64, e: &crate::checkpoint::torchzip::Entry) -> Result<u64> {
    use crate::checkpoint::torchzip;
    let bad = |m: String| Error::checkpoint(files.describe(shard), m);
    if e.method != 0 || e.size != e.compressed {
        return Err(bad(format!(
            "entry {} is compressed (method {}); torch.save stores entries uncompressed",
            e.name, e.method
        )));
    }
    let local = files.read_at(shard, e.local_header, torchzip::LOCAL_HEADER.min(len - e.local_header))?;
    torchzip::data_offset(e, &local, len).map_err(bad)
}

/// The zip's entries, its byte order (little-endian only) and its pickle, read.
fn zip_archive(
    files: &dyn Files,
    shard: &str,
    len: u64,
    tail: &[u8],
    dir: &crate::checkpoint::torchzip::Directory,
) -> Result<ZipArchive> {
    use crate::checkpoint::{pickle, torchzip};
    let bad = |m: String| Error::checkpoint(files.describe(shard), m);
    let tail_start = len - tail.len() as u64;
    let cd = if dir.offset >= tail_start {
        let at = usize::try_from(dir.offset - tail_start).map_err(|_| bad("a central directory too large".into()))?;
        tail.get(at..at + dir.size as usize)
            .ok_or_else(|| bad("the central directory runs past the end".into()))?
            .to_vec()
    } else {
        files.read_at(shard, dir.offset, dir.size)?
    };
    let entries = torchzip::entries(&cd, dir, len).map_err(bad)?;
    let pkl: Vec<&torchzip::Entry> =
        entries.iter().filter(|e| e.name.ends_with("/data.pkl") && e.name.matches('/').count() == 1).collect();
    let [pkl] = pkl.as_slice() else {
        return Err(bad(format!("{} data.pkl entries, not one: not a torch.save archive", pkl.len())));
    };
    let prefix = pkl.name.trim_end_matches("data.pkl").to_string();
    if let Some(order) = entries.iter().find(|e| e.name == format!("{prefix}byteorder")) {
        let at = zip_data(files, shard, len, order)?;
        let b = files.read_at(shard, at, order.size.min(16))?;
        if b != b"little" {
            return Err(bad(format!(
                "the archive's byteorder is {:?}; only little-endian storages are read",
                String::from_utf8_lossy(&b)
            )));
        }
    }
    if pkl.size > pickle::MAX_PICKLE {
        return Err(bad(format!("its pickle is {} bytes, more than the {} allowed", pkl.size, pickle::MAX_PICKLE)));
    }
    let at = zip_data(files, shard, len, pkl)?;
    let pickled = files.read_at(shard, at, pkl.size)?;
    let state = pickle::state_dict(&pickled).map_err(|m| bad(format!("{}: {m}", pkl.name)))?;
    Ok(ZipArchive { entries: entries.clone(), prefix, pickled, state })
}

/// A legacy file's pickles, read from its start in growing pieces (1 MiB, doubling) until they parse.
fn legacy_archive(files: &dyn Files, shard: &str, len: u64) -> Result<(crate::checkpoint::pickle::Legacy, Vec<u8>)> {
    use crate::checkpoint::pickle;
    let bad = |m: String| Error::checkpoint(files.describe(shard), m);
    let mut n = (1u64 << 20).min(len);
    loop {
        let head = files.read_at(shard, 0, n)?;
        match pickle::legacy(&head) {
            Ok(l) => {
                let pickled = head[..l.data_start as usize].to_vec();
                return Ok((l, pickled));
            }
            Err(e) if e.ran_out && n < len && n < pickle::MAX_PICKLE => {
                n = (n * 2).min(len).min(pickle::MAX_PICKLE);
            }
            Err(e) => return Err(bad(format!("legacy (pre-1.6) torch.save file: {e}"))),
        }
    }
}

/// In a legacy file, where storage `key`'s elements start and how many bytes they are: the storages follow the
/// pickles in the order of the keys pickle, each an 8-byte element count then the elements. The count before
/// `key`'s elements is read and checked against the pickle.
fn legacy_storage(
    files: &dyn Files,
    shard: &str,
    len: u64,
    l: &crate::checkpoint::pickle::Legacy,
    tensors: &[(String, crate::checkpoint::pickle::TensorRef)],
    key: &str,
) -> std::result::Result<(u64, u64), String> {
    let mut at = l.data_start;
    for k in &l.storage_order {
        let t = tensors
            .iter()
            .map(|(_, t)| t)
            .find(|t| &t.storage == k)
            .ok_or_else(|| format!("storage {k} is not used by any tensor of the state dict"))?;
        let bytes = t.storage_numel.checked_mul((t.dtype.bits() / 8).max(1)).ok_or("a storage size overflows")?;
        let start = at.checked_add(8).ok_or("a storage offset overflows")?;
        if start.checked_add(bytes).is_none_or(|end| end > len) {
            return Err(format!("storage {k} ({bytes} bytes at {start}) runs past the end of the file"));
        }
        if k == key {
            let count = files.read_at(shard, at, 8).map_err(|e| e.to_string())?;
            let count = u64::from_le_bytes(count.try_into().expect("8 bytes"));
            if count != t.storage_numel {
                return Err(format!("storage {k} records {count} elements where the pickle says {}", t.storage_numel));
            }
            return Ok((start, bytes));
        }
        at = start + bytes;
    }
    Err(format!("storage {key} is not among the file's storages"))
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
    fn size(&self, name: &str) -> Result<Option<u64>> {
        let path = self.0.join(name);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Err(Error::checkpoint(&path, "not a regular file")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }
    fn read_at(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let path = self.0.join(name);
        let f = crate::fsread::open_regular(&path)?;
        let mut buf = vec![0u8; usize::try_from(len).map_err(|_| Error::checkpoint(&path, "a read too large"))?];
        crate::fsread::read_exact_at(&f, &mut buf, offset).map_err(|e| Error::io(&path, e))?;
        Ok(buf)
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
