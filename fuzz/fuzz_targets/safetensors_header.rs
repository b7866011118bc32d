//! Any bytes as a safetensors file's start: the header is accepted only if it is fully consistent with the
//! claimed file length; never a panic, never an allocation past the 100 MB cap.
#![no_main]
use gamma_run::checkpoint::header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let file_len = u64::from_le_bytes(data[..8].try_into().unwrap());
    let prefix: [u8; 8] = data[8..16].try_into().unwrap();
    let json = &data[16..];
    if let Ok(h) = header::parse(prefix, json, file_len) {
        // Accepted headers tile the data section exactly.
        let mut end = 0;
        for t in &h.tensors {
            assert_eq!(t.begin, end);
            end = t.end;
        }
        assert_eq!(end, file_len - 8 - json.len() as u64);
    }
});
