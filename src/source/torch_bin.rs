//! The legacy PyTorch checkpoint, `pytorch_model.bin` (or the shards its index names): the zip's central
//! directory from the file's end, the pickle (read, never executed) and the local header of the matrix's storage
//! entry — a few small reads; the storage itself is read later, as one byte range. The older non-zip format too.
//! Refuses what cannot be read as one byte range (compressed entries, non-contiguous views, big-endian storages).

use super::files::{Files, Found, checked, log_found};
use crate::checkpoint::{config::ModelConfig, header, index::Index};
use crate::error::{Error, Result};
use crate::unembedding;

pub(super) const BIN: &str = "pytorch_model.bin";
pub(super) const BIN_INDEX: &str = "pytorch_model.bin.index.json";

/// The matrix in a `pytorch_model.bin` (or the shard its index names): the zip's central directory from the
/// file's end, the pickle, and the local header of the matrix's storage entry — a few small reads; the storage
/// itself is not read here. Refuses what cannot be read as one byte range (compressed entries, non-contiguous
/// views, big-endian storages).
pub(super) fn find_in_bin(
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
        // No zip directory: a legacy torch.save file, if it starts as one.
        Err(torchzip::ZipError::NotZip(not_zip)) => {
            let head = files.read_at(&shard, 0, (pickle::LEGACY_MAGIC.len() as u64).min(len))?;
            if head != pickle::LEGACY_MAGIC {
                return Err(bad(not_zip));
            }
            Archive::Legacy(legacy_archive(files, &shard, len)?)
        }
        Err(damaged) => return Err(bad(damaged.to_string())),
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
    torchzip::data_offset(e, &local, len).map_err(|e| bad(e.to_string()))
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
    let entries = torchzip::entries(&cd, dir, len).map_err(|e| bad(e.to_string()))?;
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
            Err(e) if e.ran_out() && n < len && n < pickle::MAX_PICKLE => {
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
