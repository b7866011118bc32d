//! The closed vocabularies a manifest records about its source — what held W, how its bytes were read, how the
//! file stores tensors — as types, with the exact strings the JSON has always held (serde renames), so code
//! compares values, never strings. Owned here, below `source`, which produces them.

use serde::{Deserialize, Serialize};

/// What holds a located W.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SourceKind {
    Local,
    HfCache,
    Hub,
}

/// How W's bytes were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FetchMode {
    /// From a local checkpoint directory.
    Local,
    /// From a snapshot in the HF cache.
    Cache,
    /// Only W's byte range, from the Hub.
    Range,
    /// The shard downloaded into the HF cache, then read there.
    Full,
    /// Not read at all: another output of the grid holds the same W (same shard SHA-256, same range), and its
    /// stored file, checked against its manifest, was copied.
    Shared,
}

/// How the file holding the matrix stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Format {
    Safetensors,
    /// `torch.save`'s zip (`pytorch_model.bin`), read through the restricted pickle reader.
    PytorchZip,
    /// The legacy (pre-1.6) `torch.save` format: pickles, then the storages.
    PytorchLegacy,
}

impl SourceKind {
    /// As the manifest records it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SourceKind::Local => "local",
            SourceKind::HfCache => "hf_cache",
            SourceKind::Hub => "hub",
        }
    }
    /// Read from the Hub or its cache (a `hub` fingerprint).
    pub(crate) fn is_hub(self) -> bool {
        matches!(self, SourceKind::Hub | SourceKind::HfCache)
    }
}

impl FetchMode {
    /// As the manifest records it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FetchMode::Local => "local",
            FetchMode::Cache => "cache",
            FetchMode::Range => "range",
            FetchMode::Full => "full",
            FetchMode::Shared => "shared",
        }
    }
}

impl Format {
    /// As the manifest records it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Format::Safetensors => "safetensors",
            Format::PytorchZip => "pytorch-zip",
            Format::PytorchLegacy => "pytorch-legacy",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_strings_are_the_ones_manifests_have_always_held() {
        for k in [SourceKind::Local, SourceKind::HfCache, SourceKind::Hub] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for f in [FetchMode::Local, FetchMode::Cache, FetchMode::Range, FetchMode::Full, FetchMode::Shared] {
            assert_eq!(serde_json::to_value(f).unwrap(), f.as_str());
        }
        for f in [Format::Safetensors, Format::PytorchZip, Format::PytorchLegacy] {
            assert_eq!(serde_json::to_value(f).unwrap(), f.as_str());
            assert_eq!(serde_json::from_value::<Format>(f.as_str().into()).unwrap(), f);
        }
    }
}
