//! Fire and update: every neuron of a population compares its estimate with its function of the
//! operands, emits a spike or not, and moves its estimate. One loop per neuron kind, so the spike
//! function is inlined and the loop vectorises; the tie rules are those of [`NeuronKind::fires`].

use crate::real::Real;
use crate::snn::{GeluTarget, NeuronKind};

use super::Dynamics;

/// Neurons whose GELU values are computed together, so the exponentials vectorise.
const GELU_CHUNK: usize = 64;

/// Fires and updates every neuron; `fired` receives the indices of those that emitted 1, in
/// ascending order.
pub(super) fn fire_and_update<F: Real>(
    dynamics: Dynamics,
    kind: NeuronKind,
    eta: F,
    x1: &[F],
    x2: &[F],
    v: &mut [F],
    fired: &mut Vec<u32>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { fire_avx512(dynamics, kind, eta, x1, x2, v, fired) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { fire_avx2(dynamics, kind, eta, x1, x2, v, fired) };
        }
    }
    fire(dynamics, kind, eta, x1, x2, v, fired)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fire_avx512<F: Real>(
    dynamics: Dynamics,
    kind: NeuronKind,
    eta: F,
    x1: &[F],
    x2: &[F],
    v: &mut [F],
    fired: &mut Vec<u32>,
) {
    fire(dynamics, kind, eta, x1, x2, v, fired)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fire_avx2<F: Real>(
    dynamics: Dynamics,
    kind: NeuronKind,
    eta: F,
    x1: &[F],
    x2: &[F],
    v: &mut [F],
    fired: &mut Vec<u32>,
) {
    fire(dynamics, kind, eta, x1, x2, v, fired)
}

#[inline(always)]
fn fire<F: Real>(dynamics: Dynamics, kind: NeuronKind, eta: F, x1: &[F], x2: &[F], v: &mut [F], fired: &mut Vec<u32>) {
    fired.clear();
    let x2 = &x2[..v.len()];
    let x1 = &x1[..v.len()];
    if dynamics == Dynamics::Subgradient {
        return update(v, 0, fired, |i, v| {
            let spike = x1[i] - v > F::zero();
            let target = if spike { F::one() } else { F::zero() };
            (spike, v - eta * (v - target))
        });
    }
    let step = |spike: bool, v: F| if spike { v - eta } else { v + eta };
    macro_rules! sign_gd {
        ($kind:expr) => {
            update(v, 0, fired, |i, v| {
                let spike = $kind.fires(v, x1[i], x2[i]);
                (spike, step(spike, v))
            })
        };
    }
    match kind {
        NeuronKind::Relu => sign_gd!(NeuronKind::Relu),
        NeuronKind::LeakyRelu { slope } => sign_gd!(NeuronKind::LeakyRelu { slope }),
        NeuronKind::Gelu { target: GeluTarget::Sigmoid } => {
            let mut values = [F::zero(); GELU_CHUNK];
            for (c, v) in v.chunks_mut(GELU_CHUNK).enumerate() {
                let x = &x1[c * GELU_CHUNK..c * GELU_CHUNK + v.len()];
                let values = &mut values[..v.len()];
                for (e, &x) in values.iter_mut().zip(x) {
                    *e = -(F::of(1.702) * x);
                }
                F::exp_in_place(values);
                for (e, &x) in values.iter_mut().zip(x) {
                    *e = x * (F::one() / (F::one() + *e));
                }
                update(v, (c * GELU_CHUNK) as u32, fired, |i, v| {
                    let spike = v > values[i];
                    (spike, step(spike, v))
                });
            }
        }
        NeuronKind::Gelu { target: GeluTarget::Erf } => sign_gd!(NeuronKind::Gelu { target: GeluTarget::Erf }),
        NeuronKind::Abs => sign_gd!(NeuronKind::Abs),
        NeuronKind::Square => sign_gd!(NeuronKind::Square),
        NeuronKind::Exp => sign_gd!(NeuronKind::Exp),
        NeuronKind::Max => sign_gd!(NeuronKind::Max),
        NeuronKind::Product => sign_gd!(NeuronKind::Product),
        NeuronKind::Division => sign_gd!(NeuronKind::Division),
        NeuronKind::DivSqrt => sign_gd!(NeuronKind::DivSqrt),
        NeuronKind::Elementwise { function } => sign_gd!(NeuronKind::Elementwise { function }),
        NeuronKind::Relay => {}
    }
}

/// Runs `rule(i, v_i) → (spike, new v_i)` over the neurons `first..first + v.len()` and appends
/// the spiking ones to `fired`: a vectorisable pass per chunk of neurons, then a branch-free pass
/// listing its spikes.
#[inline(always)]
fn update<F: Real>(v: &mut [F], first: u32, fired: &mut Vec<u32>, rule: impl Fn(usize, F) -> (bool, F)) {
    const CHUNK: usize = 64;
    let mut spikes = [false; CHUNK];
    let mut count = fired.len();
    fired.resize(count + v.len(), 0);
    for (c, v) in v.chunks_mut(CHUNK).enumerate() {
        for (i, (v, spike)) in v.iter_mut().zip(spikes.iter_mut()).enumerate() {
            let (s, next) = rule(c * CHUNK + i, *v);
            *v = next;
            *spike = s;
        }
        for (i, &spike) in spikes[..v.len()].iter().enumerate() {
            fired[count] = first + (c * CHUNK + i) as u32;
            count += spike as usize;
        }
    }
    fired.truncate(count);
}
