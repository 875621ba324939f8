//! Returning memory to the operating system between phases: the conversion of a real-size model
//! frees hundreds of megabytes of intermediate forms, which the C allocator would otherwise keep
//! (and count as resident) while the simulation allocates its own state.

/// Hands the allocator's free memory back to the operating system where it can (glibc); a no-op
/// elsewhere.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns unused pages of the allocator's own heap.
    unsafe {
        libc::malloc_trim(0);
    }
}
