//! Encoders of the real-valued input and the decoder's settings.

use serde::{Deserialize, Serialize};

use crate::real::Real;

/// How the input is presented to the first populations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncoderKind {
    /// The reference default: real-valued gradient descent on `(e − x)²/2`, emitting
    /// `(1 + g_t)/2` with `g_t = e_{t−1} − x`. Gain `1 − Π(1 − η_i)`, below 1.
    Float,
    /// A binary signGD encoder: `s_t = [e_{t−1} − x > 0]`, `e_t = e_{t−1} − η_t (2 s_t − 1)`.
    Spike,
    /// A real-valued encoder whose estimate equals the input from the first step (gain 1):
    /// it emits `(1 − x/η_1)/2` at t = 1 and 1/2 afterwards.
    Exact,
    /// The input itself every step: the rate-coded baseline's current injection.
    Direct,
}

impl EncoderKind {
    /// Whether the encoder emits binary events (delivered sparsely) rather than real values.
    pub fn is_binary(self) -> bool {
        matches!(self, EncoderKind::Spike)
    }

    /// The coefficients `(a, b)` of this step's emitted values `u = a + b x`, for the encoders
    /// that have that form (all but the binary one). `gain` holds the float encoder's
    /// `1 − Π(1 − η_i)` of the previous step and is advanced.
    pub fn affine_coefficients<F: Real>(self, t: usize, eta: F, gain: &mut F) -> Option<(F, F)> {
        let half = F::of(0.5);
        match self {
            EncoderKind::Float => {
                // u = (1 + g)/2 with g = e − x = x (gain − 1).
                let b = (*gain - F::one()) * half;
                *gain += eta * (F::one() - *gain);
                Some((half, b))
            }
            EncoderKind::Exact if t == 1 => Some((half, -half / eta)),
            EncoderKind::Exact => Some((half, F::zero())),
            EncoderKind::Direct => Some((F::zero(), F::one())),
            EncoderKind::Spike => None,
        }
    }

    /// One encoder step for every input element: updates the estimate `e` and writes the
    /// emitted values `u`. `first` tells whether this is step 1.
    pub fn step<F: Real>(self, input: &[F], eta: F, first: bool, e: &mut [F], u: &mut [F]) {
        let half = F::of(0.5);
        let two = F::of(2.0);
        for ((&x, e), u) in input.iter().zip(e.iter_mut()).zip(u.iter_mut()) {
            match self {
                EncoderKind::Float => {
                    let g = *e - x;
                    *e -= eta * g;
                    *u = (F::one() + g) * half;
                }
                EncoderKind::Spike => {
                    let s = if *e - x > F::zero() { F::one() } else { F::zero() };
                    *e -= eta * (two * s - F::one());
                    *u = s;
                }
                EncoderKind::Exact => {
                    *u = if first { (F::one() - x / eta) * half } else { half };
                    *e = x;
                }
                EncoderKind::Direct => {
                    *u = x;
                    *e = x;
                }
            }
        }
    }
}
