//! Any bytes as a job file: an error or a valid job file, never a panic, in bounded time.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = gamma_run::job::from_text(Path::new("/fuzz/jobs/fuzz.yaml"), text, Path::new("/fuzz/jobs"));
    }
});
