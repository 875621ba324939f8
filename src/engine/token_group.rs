//! Real-valued tokens through a source-major matrix, several at a time: for a group of tokens
//! every input of which is non-zero, each token's outputs are the sums the one-token kernel makes
//! (inputs in ascending order, even positions in one bank and odd ones in the other, a multiply
//! and an add per term, the banks added last), and each vector of weights is loaded once for the
//! whole group. A relay's values are real and almost never exactly zero, so ResMLP's and
//! MLP-Mixer's per-token layers run here.

#[cfg(target_arch = "x86_64")]
use std::any::TypeId;

#[cfg(target_arch = "x86_64")]
use super::isa::cast_mut;
use super::isa::{Isa, Level};
use crate::real::Real;

/// Tokens in a group.
pub(super) const GROUP: usize = 6;

/// A source-major matrix: input `k`'s weights for the outputs start at `rows[k * row_len]`.
#[derive(Clone, Copy)]
pub(super) struct SourceMajor<'a, F> {
    pub rows: &'a [F],
    pub row_len: usize,
    pub inputs: usize,
    pub outputs: usize,
}

/// Computes the outputs `y` (`GROUP` tokens of `outputs`) of the inputs `x` (`GROUP` tokens of
/// `inputs`, none zero) if this CPU has a kernel for `F`; returns whether it did.
pub(super) fn group<F: Real>(isa: Isa, matrix: SourceMajor<F>, x: &[F], y: &mut [F]) -> bool {
    assert!(x.len() == GROUP * matrix.inputs && y.len() == GROUP * matrix.outputs, "a group of {GROUP} tokens");
    assert!(
        matrix.inputs == 0 || (matrix.inputs - 1) * matrix.row_len + matrix.outputs <= matrix.rows.len(),
        "the matrix holds every input's row"
    );
    #[cfg(target_arch = "x86_64")]
    if isa.level() == Level::Avx512 {
        if TypeId::of::<F>() == TypeId::of::<f32>() {
            // SAFETY: `F` is `f32` (same type, same layout); `Isa::detect` found AVX-512F; the
            // bounds were checked above.
            unsafe { avx512::group_f32(cast(matrix), cast(x), cast_mut(y)) };
            return true;
        }
        if TypeId::of::<F>() == TypeId::of::<f64>() {
            // SAFETY: as above, for `f64`.
            unsafe { avx512::group_f64(cast(matrix), cast(x), cast_mut(y)) };
            return true;
        }
    }
    let _ = isa;
    false
}

/// Reinterprets a value generic over `F` as the same value over `T`.
///
/// # Safety
/// `F` and `T` must be the same type.
#[cfg(target_arch = "x86_64")]
unsafe fn cast<V: Copy, W: Copy>(value: V) -> W {
    assert_eq!(std::mem::size_of::<V>(), std::mem::size_of::<W>());
    std::mem::transmute_copy(&value)
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{SourceMajor, GROUP};

    macro_rules! group_kernel {
        ($name:ident, $t:ty, $lanes:expr, $zero:ident, $set1:ident, $mul:ident, $add:ident,
         $mask_loadu:ident, $mask_storeu:ident, $mask:ty) => {
            /// # Safety
            ///
            /// The CPU must have AVX-512F; `x` and `y` hold [`GROUP`] tokens and `matrix.rows`
            /// every input's row (checked by the caller).
            #[target_feature(enable = "avx512f")]
            pub(super) unsafe fn $name(matrix: SourceMajor<$t>, x: &[$t], y: &mut [$t]) {
                let SourceMajor { rows, row_len, inputs, outputs } = matrix;
                let full = |n: usize| -> $mask {
                    if n >= $lanes {
                        !0
                    } else {
                        ((1u32 << n) - 1) as $mask
                    }
                };
                let x = x.as_ptr();
                let token = |r: usize, k: usize| $set1(*x.add(r * inputs + k));
                for c0 in (0..outputs).step_by(2 * $lanes) {
                    let (low, high) = (full(outputs - c0), full((outputs - c0).saturating_sub($lanes)));
                    let weights = |k: usize| {
                        let row = rows.as_ptr().add(k * row_len + c0);
                        [$mask_loadu($zero(), low, row), $mask_loadu($zero(), high, row.add($lanes))]
                    };
                    let mut even = [[$zero(); 2]; GROUP];
                    let mut odd = [[$zero(); 2]; GROUP];
                    let mut k = 0;
                    while k + 2 <= inputs {
                        let w = weights(k);
                        for (r, sums) in even.iter_mut().enumerate() {
                            let v = token(r, k);
                            sums[0] = $add(sums[0], $mul(v, w[0]));
                            sums[1] = $add(sums[1], $mul(v, w[1]));
                        }
                        let w = weights(k + 1);
                        for (r, sums) in odd.iter_mut().enumerate() {
                            let v = token(r, k + 1);
                            sums[0] = $add(sums[0], $mul(v, w[0]));
                            sums[1] = $add(sums[1], $mul(v, w[1]));
                        }
                        k += 2;
                    }
                    if k < inputs {
                        let w = weights(k);
                        for (r, sums) in even.iter_mut().enumerate() {
                            let v = token(r, k);
                            sums[0] = $add(sums[0], $mul(v, w[0]));
                            sums[1] = $add(sums[1], $mul(v, w[1]));
                        }
                    }
                    for (r, (even, odd)) in even.iter().zip(&odd).enumerate() {
                        let out = y.as_mut_ptr().add(r * outputs + c0);
                        $mask_storeu(out, low, $add(even[0], odd[0]));
                        $mask_storeu(out.add($lanes), high, $add(even[1], odd[1]));
                    }
                }
            }
        };
    }

    group_kernel!(
        group_f32,
        f32,
        16,
        _mm512_setzero_ps,
        _mm512_set1_ps,
        _mm512_mul_ps,
        _mm512_add_ps,
        _mm512_mask_loadu_ps,
        _mm512_mask_storeu_ps,
        __mmask16
    );
    group_kernel!(
        group_f64,
        f64,
        8,
        _mm512_setzero_pd,
        _mm512_set1_pd,
        _mm512_mul_pd,
        _mm512_add_pd,
        _mm512_mask_loadu_pd,
        _mm512_mask_storeu_pd,
        __mmask8
    );
}
