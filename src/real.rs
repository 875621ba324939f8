//! The floating-point element type shared by the engine and the reference evaluator.

use std::fmt::{Debug, Display};
use std::iter::Sum;

use ndarray::{ArrayViewD, CowArray, IxDyn};
use num_traits::{Float, FromPrimitive, NumAssign};

use crate::snn::Weights;

/// A floating-point type the engine and the evaluator run in: `f32` for speed, `f64` for parity
/// with the reference implementation. One generic code path serves both.
pub trait Real: Float + FromPrimitive + NumAssign + Sum + Default + Debug + Display + Send + Sync + 'static {
    /// Name of the precision as users write it (`f32` or `f64`).
    const NAME: &'static str;

    /// Converts from `f64`, rounding to nearest.
    fn of(value: f64) -> Self;

    /// Widens to `f64`.
    fn to_f64_lossless(self) -> f64;

    /// The error function.
    fn erf(self) -> Self;

    /// Single-precision values in this precision: borrowed when `Self` is `f32`, widened otherwise.
    fn from_f32_view(values: ArrayViewD<'_, f32>) -> CowArray<'_, Self, IxDyn>;

    /// Double-precision values in this precision: borrowed when `Self` is `f64`, rounded to
    /// nearest otherwise (as [`Real::of`]).
    fn from_f64_view(values: ArrayViewD<'_, f64>) -> CowArray<'_, Self, IxDyn>;

    /// The stored weights, in memory order, when they are stored in this precision.
    fn stored_slice(weights: &Weights) -> Option<&[Self]>;

    /// Replaces every element by its exponential (inlined, so it vectorises for its caller's CPU
    /// features). `f64` calls the correctly rounded library
    /// function; `f32` evaluates a polynomial the compiler vectorises, within 2 ulp of it on
    /// `[−87, 88]` (arguments outside are clamped to that range).
    #[inline(always)]
    fn exp_in_place(values: &mut [Self]) {
        values.iter_mut().for_each(|v| *v = v.exp());
    }

    /// Runs `f` on a buffer of `len` values that the calling thread keeps from call to call (so
    /// a large work matrix is not allocated and page-faulted anew each time); its contents on
    /// entry are unspecified. Calls must not nest.
    fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;
}

thread_local! {
    static SCRATCH_F32: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    static SCRATCH_F64: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`Real::with_scratch`] on one thread-local buffer.
fn scratch<T: Copy + Default, R>(
    key: &'static std::thread::LocalKey<std::cell::RefCell<Vec<T>>>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    key.with(|cell| {
        let mut buffer = cell.borrow_mut();
        if buffer.len() < len {
            buffer.resize(len, T::default());
        }
        f(&mut buffer[..len])
    })
}

impl Real for f32 {
    const NAME: &'static str = "f32";

    fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
        scratch(&SCRATCH_F32, len, f)
    }
    fn of(value: f64) -> Self {
        value as f32
    }
    fn to_f64_lossless(self) -> f64 {
        self as f64
    }
    fn erf(self) -> Self {
        libm_erf(self as f64) as f32
    }
    fn from_f32_view(values: ArrayViewD<'_, f32>) -> CowArray<'_, Self, IxDyn> {
        values.into()
    }
    fn from_f64_view(values: ArrayViewD<'_, f64>) -> CowArray<'_, Self, IxDyn> {
        values.mapv(|v| v as f32).into()
    }
    fn stored_slice(weights: &Weights) -> Option<&[Self]> {
        weights.as_f32()
    }
    #[inline(always)]
    fn exp_in_place(values: &mut [Self]) {
        values.iter_mut().for_each(|v| *v = exp_f32(*v));
    }
}

/// `e^x` in single precision: `x = n ln 2 + r` with a two-part `ln 2`, a degree-6 polynomial
/// for `e^r` on `|r| ≤ ln 2 / 2` (the Cephes `expf` coefficients) and `2^n` built in the exponent.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding and subtracting it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    // The integer n sits in the low mantissa bits of `shifted`.
    let exponent = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((exponent + 127) as u32) << 23)
}

impl Real for f64 {
    const NAME: &'static str = "f64";

    fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
        scratch(&SCRATCH_F64, len, f)
    }
    fn of(value: f64) -> Self {
        value
    }
    fn to_f64_lossless(self) -> f64 {
        self
    }
    fn erf(self) -> Self {
        libm_erf(self)
    }
    fn from_f32_view(values: ArrayViewD<'_, f32>) -> CowArray<'_, Self, IxDyn> {
        values.mapv(|v| v as f64).into()
    }
    fn from_f64_view(values: ArrayViewD<'_, f64>) -> CowArray<'_, Self, IxDyn> {
        values.into()
    }
    fn stored_slice(weights: &Weights) -> Option<&[Self]> {
        weights.as_f64()
    }
}

fn libm_erf(x: f64) -> f64 {
    libm::erf(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_precision_exponential_is_within_two_ulp() {
        let mut worst = 0i64;
        for i in -870_000..880_000 {
            let x = i as f32 * 1e-4;
            let mut got = [x];
            f32::exp_in_place(&mut got);
            let expected = (x as f64).exp() as f32;
            worst = worst.max((got[0].to_bits() as i64 - expected.to_bits() as i64).abs());
        }
        assert!(worst <= 2, "{worst} ulp");
    }
}
