//! What a checkpoint is made of, parsed strictly: a safetensors file's header (`header`), the shard index
//! (`index`), `config.json` (`config`), and for `pytorch_model.bin` the zip container (`torchzip`) and the
//! restricted pickle reader (`pickle`, never executed). Parsing only: nothing here opens files or decides which
//! tensor is W.

pub(crate) mod config;
pub mod header;
pub mod index;
pub mod pickle;
pub(crate) mod torchzip;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;
use std::fmt;

/// A JSON object as an ordered list of entries; a key that appears twice is an error, not "last wins".
pub(crate) struct StrictObject(pub Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictObject, A::Error> {
                let mut seen = std::collections::HashSet::new();
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key.clone()) {
                        return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
                    }
                    out.push((key, map.next_value::<Value>()?));
                }
                Ok(StrictObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl StrictObject {
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}
