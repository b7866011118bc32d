//! The zip container of `torch.save` (≥ 1.6): entries stored uncompressed, so each one is a byte range of the
//! file. Parses the end-of-central-directory record (zip64 too), the central directory and local headers —
//! from bytes the caller read, so the same code serves files on disk and ranges from the Hub. Nothing here reads.

/// The end records are within this many bytes of the end (a 64 KiB comment, the zip64 locator and record).
pub(crate) const TAIL: u64 = 65_535 + 22 + 20 + 56;
/// A central directory larger than this is refused (a state dict's has one entry per storage).
pub(crate) const MAX_CENTRAL_DIRECTORY: u64 = 64 << 20;
/// A local header: 30 bytes, then the name and the extra field.
pub(crate) const LOCAL_HEADER: u64 = 30;

/// Where the central directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Directory {
    pub(crate) offset: u64,
    pub(crate) size: u64,
    pub(crate) entries: u64,
}

/// One entry of the central directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) name: String,
    /// 0: stored.
    pub(crate) method: u16,
    pub(crate) size: u64,
    pub(crate) compressed: u64,
    pub(crate) local_header: u64,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Finds the central directory from the file's last bytes (`tail`, which starts at `tail_start`; `len` the
/// file's length).
pub(crate) fn directory(tail: &[u8], tail_start: u64, len: u64) -> Result<Directory, ZipError> {
    let short = || {
        ZipError::NotZip(
            "not a zip archive (no end-of-central-directory record), and it does not start as a legacy (pre-1.6) \
             torch.save file either: a truncated or damaged file — download it again, or convert it to safetensors"
                .to_string(),
        )
    };
    if tail.len() < 22 {
        return Err(short());
    }
    let eocd = (0..=tail.len() - 22).rev().find(|&i| tail[i..i + 4] == *b"PK\x05\x06").ok_or_else(short)?;
    let mut d = Directory {
        entries: u64::from(u16_at(tail, eocd + 10).ok_or_else(short)?),
        size: u64::from(u32_at(tail, eocd + 12).ok_or_else(short)?),
        offset: u64::from(u32_at(tail, eocd + 16).ok_or_else(short)?),
    };
    // zip64: the locator sits just before the record and points at the zip64 end record.
    if eocd >= 20 && tail[eocd - 20..eocd - 16] == *b"PK\x06\x07" {
        let at = u64_at(tail, eocd - 20 + 8).ok_or_else(short)?;
        let rel = at.checked_sub(tail_start).and_then(|r| usize::try_from(r).ok());
        // The record's 56 bytes as an array: its fields are then read at fixed places, nothing left to check.
        let rec: &[u8; 56] = rel
            .and_then(|r| tail.get(r..r.checked_add(56)?))
            .and_then(|r| r.try_into().ok())
            .ok_or("the zip64 end record is not where its locator says")?;
        if rec[..4] != *b"PK\x06\x06" {
            return Err("the zip64 end record is not where its locator says".into());
        }
        let field = |at: usize| u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7].map(|i| rec[at + i]));
        d = Directory { entries: field(32), size: field(40), offset: field(48) };
    }
    let end = d.offset.checked_add(d.size).ok_or("the central directory's place overflows")?;
    if end > len {
        return Err(format!(
            "the central directory ({} bytes at {}) lies past the end of the {len}-byte file",
            d.size, d.offset
        )
        .into());
    }
    if d.size > MAX_CENTRAL_DIRECTORY {
        return Err(
            format!("a central directory of {} bytes, more than the {MAX_CENTRAL_DIRECTORY} allowed", d.size).into()
        );
    }
    Ok(d)
}

/// The central directory's entries, checked against the file's length.
pub(crate) fn entries(cd: &[u8], d: &Directory, len: u64) -> Result<Vec<Entry>, ZipError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let bad = |what: &str| ZipError::Damaged(format!("the central directory is damaged ({what})"));
    while at < cd.len() {
        if cd.get(at..at + 4) != Some(b"PK\x01\x02") {
            return Err(bad("an entry without its signature"));
        }
        let field16 = |o: usize| u16_at(cd, at + o).ok_or_else(|| bad("an entry cut short"));
        let field32 = |o: usize| u32_at(cd, at + o).ok_or_else(|| bad("an entry cut short"));
        let method = field16(10)?;
        let mut compressed = u64::from(field32(20)?);
        let mut size = u64::from(field32(24)?);
        let (n, m, k) = (usize::from(field16(28)?), usize::from(field16(30)?), usize::from(field16(32)?));
        let mut local_header = u64::from(field32(42)?);
        let name = cd.get(at + 46..at + 46 + n).ok_or_else(|| bad("a name cut short"))?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| bad("a name that is not UTF-8"))?;
        let extra = cd.get(at + 46 + n..at + 46 + n + m).ok_or_else(|| bad("an extra field cut short"))?;
        // zip64 extended information: the 8-byte values of the fields that are 0xFFFFFFFF, in order.
        let mut e = 0usize;
        while e + 4 <= extra.len() {
            let (id, len) = (u16_at(extra, e).expect("4 bytes"), usize::from(u16_at(extra, e + 2).expect("4 bytes")));
            let body = extra.get(e + 4..e + 4 + len).ok_or_else(|| bad("an extra field cut short"))?;
            if id == 1 {
                let mut vals = body.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")));
                if size == 0xFFFF_FFFF {
                    size = vals.next().ok_or_else(|| bad("zip64 sizes missing"))?;
                }
                if compressed == 0xFFFF_FFFF {
                    compressed = vals.next().ok_or_else(|| bad("zip64 sizes missing"))?;
                }
                if local_header == 0xFFFF_FFFF {
                    local_header = vals.next().ok_or_else(|| bad("zip64 offset missing"))?;
                }
            }
            e += 4 + len;
        }
        if compressed.checked_add(LOCAL_HEADER).and_then(|n| local_header.checked_add(n)).is_none_or(|end| end > len) {
            return Err(format!(
                "entry {name} points past the end of the file (at {local_header}, {compressed} bytes)"
            )
            .into());
        }
        out.push(Entry { name, method, size, compressed, local_header });
        at += 46 + n + m + k;
        if out.len() as u64 > d.entries.max(1) * 2 + 16 {
            return Err(bad("more entries than it declares"));
        }
    }
    Ok(out)
}

/// Where an entry's data starts, from its local header's first 30 bytes.
pub(crate) fn data_offset(e: &Entry, local: &[u8], len: u64) -> Result<u64, ZipError> {
    if local.get(..4) != Some(b"PK\x03\x04") {
        return Err(format!("entry {}: no local header at {}", e.name, e.local_header).into());
    }
    let n = u64::from(u16_at(local, 26).ok_or("a local header cut short")?);
    let m = u64::from(u16_at(local, 28).ok_or("a local header cut short")?);
    let start = e.local_header + LOCAL_HEADER + n + m;
    if start.checked_add(e.compressed).is_none_or(|end| end > len) {
        return Err(format!("entry {}'s data runs past the end of the file", e.name).into());
    }
    Ok(start)
}

/// Why the zip container could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ZipError {
    /// No end-of-central-directory record: not a zip archive (perhaps a legacy torch.save file).
    NotZip(String),
    /// A zip archive whose records are damaged, or disagree with the file's length.
    Damaged(String),
}

impl std::fmt::Display for ZipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ZipError::NotZip(m) | ZipError::Damaged(m) => f.write_str(m),
        }
    }
}

impl From<String> for ZipError {
    fn from(m: String) -> Self {
        ZipError::Damaged(m)
    }
}

impl From<&str> for ZipError {
    fn from(m: &str) -> Self {
        ZipError::Damaged(m.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-entry stored zip, built by hand: "a/x" = "hello", "a/y" = "wor".
    fn zip() -> Vec<u8> {
        let mut f = Vec::new();
        let mut cd = Vec::new();
        for (name, data) in [("a/x", &b"hello"[..]), ("a/y", &b"wor"[..])] {
            let off = f.len() as u32;
            f.extend_from_slice(b"PK\x03\x04");
            f.extend_from_slice(&[0; 22]);
            f.extend_from_slice(&(name.len() as u16).to_le_bytes());
            f.extend_from_slice(&2u16.to_le_bytes());
            f.extend_from_slice(name.as_bytes());
            f.extend_from_slice(b"FB");
            f.extend_from_slice(data);
            cd.extend_from_slice(b"PK\x01\x02");
            cd.extend_from_slice(&[0; 6]);
            cd.extend_from_slice(&0u16.to_le_bytes());
            cd.extend_from_slice(&[0; 8]);
            cd.extend_from_slice(&(data.len() as u32).to_le_bytes());
            cd.extend_from_slice(&(data.len() as u32).to_le_bytes());
            cd.extend_from_slice(&(name.len() as u16).to_le_bytes());
            cd.extend_from_slice(&[0; 12]);
            cd.extend_from_slice(&off.to_le_bytes());
            cd.extend_from_slice(name.as_bytes());
        }
        let cd_off = f.len() as u32;
        f.extend_from_slice(&cd);
        f.extend_from_slice(b"PK\x05\x06");
        f.extend_from_slice(&[0; 4]);
        f.extend_from_slice(&2u16.to_le_bytes());
        f.extend_from_slice(&2u16.to_le_bytes());
        f.extend_from_slice(&(cd.len() as u32).to_le_bytes());
        f.extend_from_slice(&cd_off.to_le_bytes());
        f.extend_from_slice(&0u16.to_le_bytes());
        f
    }

    #[test]
    fn finds_entries_and_their_data() {
        let f = zip();
        let len = f.len() as u64;
        let d = directory(&f, 0, len).unwrap();
        let es = entries(&f[d.offset as usize..(d.offset + d.size) as usize], &d, len).unwrap();
        assert_eq!(es.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["a/x", "a/y"]);
        let y = &es[1];
        let at = data_offset(y, &f[y.local_header as usize..], len).unwrap() as usize;
        assert_eq!(&f[at..at + 3], b"wor");
    }

    #[test]
    fn refuses_damaged_archives() {
        let f = zip();
        let len = f.len() as u64;
        let cut = directory(&f[..f.len() - 30], 0, len - 30).unwrap_err();
        assert!(matches!(&cut, ZipError::NotZip(m) if m.contains("not a zip")), "{cut}");
        assert!(matches!(directory(b"\x80\x02legacy", 0, 8), Err(ZipError::NotZip(m)) if m.contains("legacy")));
        // An entry's local header past the end.
        let mut g = f.clone();
        let d = directory(&g, 0, len).unwrap();
        let at = d.offset as usize + 42;
        g[at..at + 4].copy_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
        let cd = &g[d.offset as usize..(d.offset + d.size) as usize];
        assert!(matches!(entries(cd, &d, len), Err(ZipError::Damaged(m)) if m.contains("past the end")));
    }
}
