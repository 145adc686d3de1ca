//! How the function's memory allocator hands large buffers back to the system.
//!
//! glibc's malloc serves a request of at least `M_MMAP_THRESHOLD` bytes with a mapping of its
//! own, returned to the system when freed. By default that threshold is dynamic: each time
//! such a buffer is freed it rises to the buffer's size (up to 32 MiB), so from then on
//! buffers of that size come from the heaps of the thread arenas, which keep the pages after
//! they are freed. A batch invocation holds a few such buffers (its JSON text, its rows, its
//! answer), each on whichever thread runs it: with the dynamic threshold they stay resident
//! in several arenas after every batch. Measured with the 3000-tree model, a cold start and
//! three 45,000-row batches, four runs each: peak RSS 22.7-24.8 MB with glibc's default,
//! 20.6-21.2 MB with the threshold fixed at its initial 128 KiB. Small allocations, every
//! single-row invocation included, are not affected.
//!
//! All `unsafe` of the model function is here.

/// The threshold glibc starts with; fixing it turns off the dynamic adjustment.
pub const MMAP_THRESHOLD_BYTES: i32 = 128 << 10;

/// Fixes glibc's mmap threshold at [`MMAP_THRESHOLD_BYTES`]. Answers whether the allocator
/// took the setting; elsewhere than on glibc it is a no-op that answers `false`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn fix_mmap_threshold() -> bool {
    // SAFETY: `mallopt` takes only integers, changes allocator parameters under the
    // allocator's own lock (it may be called from any thread at any time), and leaves every
    // existing allocation valid: the threshold only decides how later requests are served.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 }
}

/// Fixes glibc's mmap threshold; elsewhere than on glibc a no-op that answers `false`.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn fix_mmap_threshold() -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn glibc_takes_the_fixed_threshold() {
        assert!(fix_mmap_threshold());
    }
}
