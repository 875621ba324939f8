//! The floating-point element type shared by the engine and the reference evaluator.

use std::fmt::{Debug, Display};
use std::iter::Sum;

use num_traits::{Float, FromPrimitive, NumAssign};

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
}

impl Real for f32 {
    const NAME: &'static str = "f32";
    fn of(value: f64) -> Self {
        value as f32
    }
    fn to_f64_lossless(self) -> f64 {
        self as f64
    }
    fn erf(self) -> Self {
        libm_erf(self as f64) as f32
    }
}

impl Real for f64 {
    const NAME: &'static str = "f64";
    fn of(value: f64) -> Self {
        value
    }
    fn to_f64_lossless(self) -> f64 {
        self
    }
    fn erf(self) -> Self {
        libm_erf(self)
    }
}

fn libm_erf(x: f64) -> f64 {
    libm::erf(x)
}
