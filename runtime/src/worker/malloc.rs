//! glibc's allocator, tuned once per process for a streaming worker's pattern of allocations.
//!
//! A worker allocates and frees buffers of 0.1–2 MB all the time: a parsed block's trades, the
//! vectors handed between operators, a window's fired rows. With glibc's defaults, the thread
//! arenas give the free top of their heap back to the kernel (`madvise`) whenever it exceeds
//! 128 KiB (the trim threshold, which only grows with the mmap threshold, and only when a
//! directly mapped chunk is freed), and the next buffer faults fresh zeroed pages in again:
//! 25,000 page faults, about 7% of the CPU of a 2 M-trade replay (BENCHMARKS.md, "Page
//! faults"). Raising both thresholds keeps those pages in the heap for reuse. Peak memory is
//! not raised by it (what is kept was in use a moment before); at most [`TRIM`] of free memory
//! per arena stays mapped after a burst.

/// Chunks up to this size come from the heap (reused), not from their own mapping.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 16 << 20;

/// Free memory at the top of a heap beyond this goes back to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM: libc::c_int = 64 << 20;

/// Sets the thresholds, once, before the worker threads start. A `GLIBC_TUNABLES` that sets
/// any `glibc.malloc.*` value is the operator's choice and is left alone.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.")) {
                return;
            }
            // SAFETY: `mallopt` only sets allocator parameters; it is called before this
            // process's worker threads exist. A refused value (it returns 0) leaves the default.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
                libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM);
            }
        });
    }
}
