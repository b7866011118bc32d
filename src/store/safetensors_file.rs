//! The bytes of a safetensors header exactly as `safetensors.torch.save_file` writes them: tensors in the given
//! order, compact JSON, no `__metadata__`, padded with spaces to a multiple of 8. Deterministic by construction.

/// The dtypes gamma-run writes (F16 only in synthetic checkpoints; F64 and the integers in statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub(crate) enum OutDtype {
    Bf16,
    F16,
    F32,
    F64,
    I32,
    I64,
}

impl OutDtype {
    /// The name in safetensors headers and manifests.
    pub(crate) fn name(self) -> &'static str {
        match self {
            OutDtype::Bf16 => "BF16",
            OutDtype::F16 => "F16",
            OutDtype::F32 => "F32",
            OutDtype::F64 => "F64",
            OutDtype::I32 => "I32",
            OutDtype::I64 => "I64",
        }
    }
    /// Bytes per element.
    pub(crate) fn width(self) -> u64 {
        match self {
            OutDtype::Bf16 | OutDtype::F16 => 2,
            OutDtype::F32 | OutDtype::I32 => 4,
            OutDtype::F64 | OutDtype::I64 => 8,
        }
    }
}

/// One tensor of an output file, in file order.
pub(crate) struct Entry<'a> {
    pub(crate) name: &'a str,
    pub(crate) dtype: OutDtype,
    pub(crate) shape: &'a [u64],
}

impl Entry<'_> {
    pub(crate) fn byte_len(&self) -> u64 {
        self.shape.iter().product::<u64>() * self.dtype.width()
    }
}

/// The 8-byte length prefix and padded JSON header for `entries`, laid out back to back.
pub(crate) fn header(entries: &[Entry]) -> Vec<u8> {
    let mut json = String::from("{");
    let mut offset = 0u64;
    for (i, e) in entries.iter().enumerate() {
        let end = offset + e.byte_len();
        let shape: Vec<String> = e.shape.iter().map(u64::to_string).collect();
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!(
            "{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{offset},{end}]}}",
            serde_json::to_string(e.name).expect("names serialise"),
            e.dtype.name(),
            shape.join(",")
        ));
        offset = end;
    }
    json.push('}');
    while json.len() % 8 != 0 {
        json.push(' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_header_byte_for_byte() {
        // From ../shared/fixtures/expected.json (qwen3-tied): the notebook's save_file output.
        let h = header(&[Entry { name: "W", dtype: OutDtype::Bf16, shape: &[1031, 64] }]);
        let expected = "{\"W\":{\"dtype\":\"BF16\",\"shape\":[1031,64],\"data_offsets\":[0,131968]}}      ";
        assert_eq!(&h[8..], expected.as_bytes());
        assert_eq!(u64::from_le_bytes(h[..8].try_into().unwrap()), expected.len() as u64);
    }

    #[test]
    fn lays_out_several_tensors_back_to_back() {
        let h = header(&[
            Entry { name: "W_prime", dtype: OutDtype::F32, shape: &[3, 2] },
            Entry { name: "centroid", dtype: OutDtype::F32, shape: &[2] },
        ]);
        let text = std::str::from_utf8(&h[8..]).unwrap();
        assert!(text.contains("\"data_offsets\":[0,24]") && text.contains("\"data_offsets\":[24,32]"), "{text}");
        assert_eq!(text.len() % 8, 0);
    }
}
