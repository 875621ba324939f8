//! The instruction set the kernels run with, detected once when a network is prepared (asking the
//! CPU on every call costs a shared memory access that slows parallel workers down).
//!
//! An [`Isa`] is a proof that the CPU has its instructions: only [`Isa::detect`] makes one above
//! the baseline, so a kernel that dispatches on [`Isa::level`] may call code compiled for that
//! level.

/// The instruction set this CPU was found to have; every level gives the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Isa(Level);

/// The levels kernels are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    /// Whatever the build targets.
    Baseline,
    /// AVX2 with fused multiply-add (FMA3), as every AVX2 CPU of Intel and AMD has.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 (foundation).
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// The widest instruction set this CPU has.
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return Isa(Level::Avx512);
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Isa(Level::Avx2);
            }
        }
        Isa(Level::Baseline)
    }

    /// What the build targets, valid on any CPU the program runs on.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn baseline() -> Self {
        Isa(Level::Baseline)
    }

    /// The level to dispatch on.
    pub(crate) fn level(self) -> Level {
        self.0
    }

    /// Calls `f` from code compiled for this instruction set, so that the loops it inlines
    /// vectorise with its vectors. For element-wise arithmetic only: Rust never fuses a multiply
    /// and an add, so the bits are those of the baseline build.
    #[inline(always)]
    pub(crate) fn vectorised<R>(self, f: impl FnOnce() -> R) -> R {
        match self.0 {
            // SAFETY: `Isa::detect` found the features on this CPU.
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { with_avx512(f) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => unsafe { with_avx2(f) },
            Level::Baseline => f(),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// The instruction set the engine's kernels use on this CPU, by name.
pub fn instruction_set() -> &'static str {
    match Isa::detect().level() {
        Level::Baseline => "portable",
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => "AVX2+FMA",
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => "AVX-512",
    }
}

/// Float32 lanes of the vectors the engine's kernels use on this CPU.
pub fn float32_lanes() -> usize {
    match Isa::detect().level() {
        Level::Baseline => 1,
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => 8,
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => 16,
    }
}

/// Reinterprets a slice of `F` as one of `T`, for a kernel written for one element type that a
/// generic caller has found `F` to be.
///
/// # Safety
/// `F` and `T` must be the same type.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn cast_mut<F, T>(values: &mut [F]) -> &mut [T] {
    std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<T>(), values.len())
}
