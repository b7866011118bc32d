//! Any bytes as a `data.pkl` (and as the start of a legacy torch.save file): a state dict or an error, never a
//! panic, never code run, in bounded time and memory (the reader's caps on size, memo, values and nesting).
#![no_main]
use gamma_run::checkpoint::pickle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tensors) = pickle::state_dict(data) {
        for (_, t) in &tensors {
            // Whatever the stream claims, these are answered without overflow.
            let _ = (t.numel(), t.is_contiguous());
        }
    }
    let _ = pickle::legacy(data);
});
