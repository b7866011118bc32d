//! The allocator's one setting gamma-run makes: with glibc, buffers of 256 KiB and more are mapped for each use
//! and unmapped when freed. glibc's default raises that threshold as large blocks are freed, so a grid's many
//! workers, each allocating and freeing MiB-sized stream and hash buffers on its own thread (arena), keep
//! freed blocks resident: peak RSS of the 154-revision grid went from 24 to 53–73 MiB. Owns that setting, and
//! reading the process's peak resident memory for `-v`.

/// This process's peak resident memory in bytes (`VmHWM`: this program's own, from its exec on — unlike
/// `ru_maxrss`, which also counts the parent's memory at the fork), where the platform says.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
    Some(kib * 1024)
}

/// Fixes the mmap threshold. Call first thing in `main`, before any thread starts.
pub fn bound_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt changes a malloc parameter; it is called once, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}
