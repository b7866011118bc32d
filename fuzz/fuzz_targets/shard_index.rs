//! Any bytes as `model.safetensors.index.json`: accepted shard names are always safe relative paths.
#![no_main]
use gamma_run::checkpoint::index::Index;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = Index::parse(data) {
        for shard in index.weight_map.values() {
            assert!(!shard.is_empty() && !shard.starts_with('/') && !shard.contains(".."));
            assert!(!shard.contains('\\') && !shard.contains('\0'));
        }
    }
});
