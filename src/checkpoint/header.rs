//! The safetensors header of one file, validated against the file's length: known dtypes, shapes whose byte size
//! matches their offsets, offsets that tile the data section exactly (no gaps, overlaps or trailing bytes), no
//! duplicate names, no leading whitespace. The safetensors crate accepts some of these; a provenance tool must not.

use super::StrictObject;
use serde::Deserialize;

/// Headers larger than this are refused (the Python client caps at 25 MB; real ones are well under 1 MB).
pub(crate) const MAX_HEADER_LEN: u64 = 100 * 1024 * 1024;

/// Element types that may appear in a checkpoint; W must be one of the float ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dtype {
    Bf16,
    F16,
    F32,
    Other { name: &'static str, bits: u64 },
}

const OTHERS: &[(&str, u64)] = &[
    ("BOOL", 8),
    ("U8", 8),
    ("I8", 8),
    ("I16", 16),
    ("U16", 16),
    ("I32", 32),
    ("U32", 32),
    ("F64", 64),
    ("I64", 64),
    ("U64", 64),
    ("F8_E5M2", 8),
    ("F8_E4M3", 8),
    ("F8_E8M0", 8),
    ("F4", 4),
    ("F6_E2M3", 6),
    ("F6_E3M2", 6),
    ("C64", 64),
];

impl Dtype {
    pub(crate) fn parse(s: &str) -> Option<Dtype> {
        match s {
            "BF16" => Some(Dtype::Bf16),
            "F16" => Some(Dtype::F16),
            "F32" => Some(Dtype::F32),
            _ => OTHERS.iter().find(|(n, _)| *n == s).map(|&(name, bits)| Dtype::Other { name, bits }),
        }
    }
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Dtype::Bf16 => "BF16",
            Dtype::F16 => "F16",
            Dtype::F32 => "F32",
            Dtype::Other { name, .. } => name,
        }
    }
    pub(crate) fn bits(&self) -> u64 {
        match self {
            Dtype::Bf16 | Dtype::F16 => 16,
            Dtype::F32 => 32,
            Dtype::Other { bits, .. } => *bits,
        }
    }
}

/// One tensor's entry: where its bytes are, relative to the start of the data section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub(crate) name: String,
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<u64>,
    pub begin: u64,
    pub end: u64,
}

/// A validated header: the raw bytes (for identity hashing) and the tensors in offset order.
#[derive(Debug, Clone)]
pub struct Header {
    /// The 8-byte length prefix plus the JSON, exactly as stored.
    pub(crate) raw: Vec<u8>,
    pub tensors: Vec<TensorInfo>,
}

impl Header {
    /// Offset of the data section from the start of the file.
    pub(crate) fn data_start(&self) -> u64 {
        self.raw.len() as u64
    }
    pub(crate) fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Reads the length prefix; `Err` explains why it cannot be a header of a file of `file_len` bytes.
pub(crate) fn header_len(prefix: [u8; 8], file_len: u64) -> Result<u64, String> {
    let n = u64::from_le_bytes(prefix);
    if n > MAX_HEADER_LEN {
        return Err(format!("header length {n} exceeds the {MAX_HEADER_LEN}-byte limit"));
    }
    if n.checked_add(8).is_none_or(|end| end > file_len) {
        return Err(format!("header length {n} runs past the end of the file ({file_len} bytes)"));
    }
    if n < 2 {
        return Err(format!("header length {n} is too short for a JSON object"));
    }
    Ok(n)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

/// Parses and validates `json` (the bytes after the length prefix) for a file of `file_len` bytes.
pub fn parse(prefix: [u8; 8], json: &[u8], file_len: u64) -> Result<Header, String> {
    let n = header_len(prefix, file_len)?;
    if json.len() as u64 != n {
        return Err(format!("header is {} bytes, the prefix says {n}", json.len()));
    }
    let text = std::str::from_utf8(json).map_err(|e| format!("header is not UTF-8: {e}"))?;
    if !text.starts_with('{') {
        return Err("header does not start with '{' (leading whitespace or garbage)".into());
    }
    let obj = StrictObject::parse(text.as_bytes()).map_err(|e| format!("header is not valid JSON: {e}"))?;
    let mut tensors = Vec::with_capacity(obj.0.len());
    for (name, value) in obj.0 {
        if name == "__metadata__" {
            continue;
        }
        let raw: RawEntry =
            serde_json::from_value(value).map_err(|e| format!("tensor {name:?}: malformed entry: {e}"))?;
        let dtype =
            Dtype::parse(&raw.dtype).ok_or_else(|| format!("tensor {name:?}: unknown dtype {:?}", raw.dtype))?;
        let (begin, end) = raw.data_offsets;
        let bits = raw
            .shape
            .iter()
            .try_fold(dtype.bits(), |acc, &dim| acc.checked_mul(dim))
            .ok_or_else(|| format!("tensor {name:?}: shape {:?} overflows", raw.shape))?;
        if end < begin || bits % 8 != 0 || end - begin != bits / 8 {
            return Err(format!(
                "tensor {name:?}: data_offsets [{begin}, {end}] do not match shape {:?} × {}",
                raw.shape, raw.dtype
            ));
        }
        tensors.push(TensorInfo { name, dtype, shape: raw.shape, begin, end });
    }
    tensors.sort_by_key(|t| (t.begin, t.end));
    let data_len = file_len - 8 - n;
    let mut cursor = 0u64;
    for t in &tensors {
        if t.begin != cursor {
            let what = if t.begin < cursor { "overlaps the previous tensor" } else { "leaves a gap before it" };
            return Err(format!("tensor {:?} at offset {} {what}", t.name, t.begin));
        }
        cursor = t.end;
    }
    if cursor != data_len {
        return Err(format!("tensors cover {cursor} bytes but the data section holds {data_len}"));
    }
    let mut raw = Vec::with_capacity(8 + json.len());
    raw.extend_from_slice(&prefix);
    raw.extend_from_slice(json);
    Ok(Header { raw, tensors })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(json: &str, data: usize) -> (u64, [u8; 8], Vec<u8>) {
        let prefix = (json.len() as u64).to_le_bytes();
        ((8 + json.len() + data) as u64, prefix, json.as_bytes().to_vec())
    }

    #[test]
    fn accepts_a_well_formed_header() {
        let (len, p, j) =
            file(r#"{"a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},"__metadata__":{"x":"y"}}"#, 12);
        let h = parse(p, &j, len).unwrap();
        assert_eq!(h.tensors.len(), 1);
        assert_eq!(h.get("a").unwrap().shape, vec![2, 3]);
    }

    #[test]
    fn refuses_what_the_safetensors_crate_lets_through() {
        let cases = [
            (r#" {"a":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}}"#, 2, "leading"),
            (
                r#"{"a":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]},"a":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}}"#,
                2,
                "duplicate",
            ),
            (r#"{"a":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}}"#, 4, "data section"),
            (r#"{"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,2]}}"#, 2, "do not match"),
            (r#"{"a":{"dtype":"Q9","shape":[1],"data_offsets":[0,2]}}"#, 2, "unknown dtype"),
            (r#"{"a":{"dtype":"BF16","shape":[4294967296,4294967296],"data_offsets":[0,2]}}"#, 2, "overflows"),
            (r#"{"a":{"dtype":"BF16","shape":[1],"data_offsets":[2,4]}}"#, 4, "gap"),
            (
                r#"{"a":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}"#,
                4,
                "overlaps",
            ),
            (r#"{"a":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]"#, 2, "valid JSON"),
        ];
        for (json, data, why) in cases {
            let (len, p, j) = file(json, data);
            let err = parse(p, &j, len).unwrap_err();
            assert!(err.contains(why), "{json}: {err}");
        }
    }

    #[test]
    fn refuses_bad_length_prefixes() {
        assert!(header_len((200u64).to_le_bytes(), 100).unwrap_err().contains("past the end"));
        assert!(header_len((MAX_HEADER_LEN + 1).to_le_bytes(), u64::MAX).unwrap_err().contains("limit"));
        assert!(header_len(u64::MAX.to_le_bytes(), u64::MAX).is_err());
        let (len, p, _) = file("{}", 0);
        assert!(parse(p, &[0xff, 0xfe], len).unwrap_err().contains("UTF-8"));
    }
}
