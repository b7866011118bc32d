//! The allocator's one setting gamma-run makes: with glibc, buffers of 256 KiB and more are mapped for each use
//! and unmapped when freed. glibc's default raises that threshold as large blocks are freed, so a grid's many
//! workers, each allocating and freeing MiB-sized stream and hash buffers on its own thread (arena), keep
//! freed blocks resident: peak RSS of the 154-revision grid went from 24 to 53–73 MiB. Owns only that setting.

/// Fixes the mmap threshold. Call first thing in `main`, before any thread starts.
pub fn bound_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt changes a malloc parameter; it is called once, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}
