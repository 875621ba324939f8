//! Fire and update: every neuron of a population compares its estimate with its function of the
//! operands, emits a spike or not, and moves its estimate. One loop per neuron kind, so the spike
//! function is inlined and the loop vectorises; the tie rules are those of [`NeuronKind::fires`].

use std::mem::MaybeUninit;

use crate::real::Real;
use crate::snn::{GeluTarget, NeuronKind};

use super::isa::{Isa, Level};
use super::Dynamics;

/// Neurons whose GELU values are computed together, so the exponentials vectorise.
const GELU_CHUNK: usize = 64;

/// How a population fires this step.
#[derive(Clone, Copy)]
pub(super) struct Firing<F> {
    /// The instruction set of the loop.
    pub isa: Isa,
    /// signGD or the subgradient method.
    pub dynamics: Dynamics,
    /// The spike function.
    pub kind: NeuronKind,
    /// The step size.
    pub eta: F,
    /// The index of the first neuron of the slice being fired (spikes are listed from it).
    pub first: u32,
}

/// Where a slice's spikes go: `fired`, if there is a list (a reader or an observer needs one),
/// receives, appended in ascending order, the indices (from `Firing::first`) of the neurons that
/// emitted 1; `bits`, unless empty, is the population's spike bit vector, whose words covering the
/// slice are overwritten (`first` must then be a multiple of 64).
pub(super) struct Spikes<'a> {
    pub fired: Option<&'a mut Vec<u32>>,
    pub bits: &'a mut [u64],
}

/// Fires and updates every neuron of a slice, writing its spikes to `out`; returns how many
/// emitted 1.
pub(super) fn fire_and_update<F: Real>(how: Firing<F>, x1: &[F], x2: &[F], v: &mut [F], out: Spikes) -> usize {
    assert!(out.bits.is_empty() || how.first.is_multiple_of(64), "a slice with spike bits starts on a word");
    match how.isa.level() {
        // SAFETY: `Scalar` needs no instruction beyond the build's target.
        Level::Baseline => unsafe { fire::<F, Scalar>(how, x1, x2, v, out) },
        // SAFETY: `Isa::detect` found the feature on this CPU.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { fire_avx512(how, x1, x2, v, out) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { fire_avx2(how, x1, x2, v, out) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fire_avx512<F: Real>(how: Firing<F>, x1: &[F], x2: &[F], v: &mut [F], out: Spikes) -> usize {
    fire::<F, Compress>(how, x1, x2, v, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fire_avx2<F: Real>(how: Firing<F>, x1: &[F], x2: &[F], v: &mut [F], out: Spikes) -> usize {
    fire::<F, Scalar>(how, x1, x2, v, out)
}

/// # Safety
///
/// The CPU must have the instructions `L` uses (see [`ListSpikes::list`]).
#[inline(always)]
unsafe fn fire<F: Real, L: ListSpikes>(how: Firing<F>, x1: &[F], x2: &[F], v: &mut [F], out: Spikes) -> usize {
    let Firing { dynamics, kind, eta, first, .. } = how;
    let x2 = &x2[..v.len()];
    let x1 = &x1[..v.len()];
    if dynamics == Dynamics::Subgradient {
        return update::<F, L>(v, x1, x2, first, out, |v, x1, _| {
            let spike = x1 - v > F::zero();
            let target = if spike { F::one() } else { F::zero() };
            (spike, v - eta * (v - target))
        });
    }
    let step = |spike: bool, v: F| if spike { v - eta } else { v + eta };
    macro_rules! sign_gd {
        ($kind:expr) => {
            update::<F, L>(v, x1, x2, first, out, |v, x1, x2| {
                let spike = $kind.fires(v, x1, x2);
                (spike, step(spike, v))
            })
        };
    }
    match kind {
        NeuronKind::Relu => sign_gd!(NeuronKind::Relu),
        NeuronKind::LeakyRelu { slope } => sign_gd!(NeuronKind::LeakyRelu { slope }),
        NeuronKind::Gelu { target: GeluTarget::Sigmoid } => {
            let mut values = [F::zero(); GELU_CHUNK];
            let Spikes { mut fired, bits } = out;
            let mut count = 0;
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
                let out = Spikes { fired: fired.as_deref_mut(), bits: &mut *bits };
                count += update::<F, L>(v, values, values, first + (c * GELU_CHUNK) as u32, out, |v, gelu, _| {
                    let spike = v > gelu;
                    (spike, step(spike, v))
                });
            }
            count
        }
        NeuronKind::Gelu { target: GeluTarget::Erf } => sign_gd!(NeuronKind::Gelu { target: GeluTarget::Erf }),
        NeuronKind::ScaledGelu { target: GeluTarget::Sigmoid } => {
            sign_gd!(NeuronKind::ScaledGelu { target: GeluTarget::Sigmoid })
        }
        NeuronKind::ScaledGelu { target: GeluTarget::Erf } => {
            sign_gd!(NeuronKind::ScaledGelu { target: GeluTarget::Erf })
        }
        NeuronKind::Abs => sign_gd!(NeuronKind::Abs),
        NeuronKind::Square => sign_gd!(NeuronKind::Square),
        NeuronKind::Exp => sign_gd!(NeuronKind::Exp),
        NeuronKind::Max => sign_gd!(NeuronKind::Max),
        NeuronKind::Product => sign_gd!(NeuronKind::Product),
        NeuronKind::Division => sign_gd!(NeuronKind::Division),
        NeuronKind::DivSqrt => sign_gd!(NeuronKind::DivSqrt),
        NeuronKind::Elementwise { function } => sign_gd!(NeuronKind::Elementwise { function }),
        NeuronKind::Relay => 0,
    }
}

/// Runs `rule(v_i, x1_i, x2_i) → (spike, new v_i)` over the neurons `first..first + v.len()`,
/// writes the spikes to `out` and returns their count: a vectorisable pass per chunk of 64
/// neurons, then a branch-free pass listing its spikes (where there is a list) and making its
/// word of bits.
///
/// # Safety
///
/// The CPU must have the instructions `L` uses (see [`ListSpikes::list`]).
#[inline(always)]
unsafe fn update<F: Real, L: ListSpikes>(
    v: &mut [F],
    x1: &[F],
    x2: &[F],
    first: u32,
    out: Spikes,
    rule: impl Fn(F, F, F) -> (bool, F),
) -> usize {
    const CHUNK: usize = 64;
    let Spikes { mut fired, bits } = out;
    let first_word = first as usize / 64;
    let mut spikes = [false; CHUNK];
    let mut count = 0;
    if let Some(fired) = fired.as_deref_mut() {
        // Room for a whole vector of indices past the last spike: the compressing kernel stores 16.
        fired.reserve(v.len() + 16);
    }
    let chunks = v.chunks_mut(CHUNK).zip(x1.chunks(CHUNK)).zip(x2.chunks(CHUNK));
    for (c, ((v, x1), x2)) in chunks.enumerate() {
        for (((v, spike), &x1), &x2) in v.iter_mut().zip(spikes.iter_mut()).zip(x1).zip(x2) {
            let (s, next) = rule(*v, x1, x2);
            *v = next;
            *spike = s;
        }
        let spikes = &spikes[..v.len()];
        let word = match fired.as_deref_mut() {
            Some(fired) => {
                let at = first + (c * CHUNK) as u32;
                // SAFETY: the caller guarantees the instructions of `L`.
                let (listed, word) = unsafe { L::list(spikes, at, fired.spare_capacity_mut()) };
                // SAFETY: `list` initialised the first `listed` elements past the old length, and
                // the capacity reserved above holds them.
                unsafe { fired.set_len(fired.len() + listed) };
                word
            }
            None => spike_word(spikes),
        };
        if !bits.is_empty() {
            bits[first_word + c] = word;
        }
        count += word.count_ones() as usize;
    }
    count
}

/// The flags (at most 64) as the bits of a word.
#[inline(always)]
fn spike_word(spikes: &[bool]) -> u64 {
    spikes.chunks(16).enumerate().fold(0, |word, (c, chunk)| word | (flag_mask(chunk) as u64) << (16 * c))
}

/// Up to 16 flags as the bits of a mask.
#[inline(always)]
fn flag_mask(chunk: &[bool]) -> u16 {
    match <&[bool; 16]>::try_from(chunk) {
        // SAFETY: 16 bytes are read from a 16-element bool slice (bools are 0 or 1; shifting each
        // byte's low bit to its top bit lets movemask collect them); SSE2 is part of x86-64.
        #[cfg(target_arch = "x86_64")]
        Ok(flags) => unsafe {
            use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_movemask_epi8, _mm_slli_epi16};
            let bytes = _mm_loadu_si128(flags.as_ptr() as *const __m128i);
            _mm_movemask_epi8(_mm_slli_epi16(bytes, 7)) as u16
        },
        _ => chunk.iter().enumerate().fold(0u16, |m, (i, &s)| m | (s as u16) << i),
    }
}

/// Writes the indices `first + i` of the set flags (at most 64) to the front of `out` (which has
/// room for all of them and 16 more) and returns how many there are (that many elements of `out`
/// are initialised) and the flags as the bits of a word.
trait ListSpikes {
    /// # Safety
    ///
    /// The CPU must have the instructions the implementation uses (AVX-512F for [`Compress`]).
    unsafe fn list(spikes: &[bool], first: u32, out: &mut [MaybeUninit<u32>]) -> (usize, u64);
}

/// One index at a time, without a branch.
struct Scalar;

impl ListSpikes for Scalar {
    #[inline(always)]
    unsafe fn list(spikes: &[bool], first: u32, out: &mut [MaybeUninit<u32>]) -> (usize, u64) {
        let (mut count, mut word) = (0, 0);
        for (i, &spike) in spikes.iter().enumerate() {
            out[count] = MaybeUninit::new(first + i as u32);
            count += spike as usize;
            word |= (spike as u64) << i;
        }
        (count, word)
    }
}

/// Sixteen indices at a time, compressed in a register with AVX-512 and stored whole (the
/// compressing store to memory is microcoded and slow on AMD Zen 4); only reached from code
/// compiled for AVX-512.
struct Compress;

impl ListSpikes for Compress {
    #[inline(always)]
    unsafe fn list(spikes: &[bool], first: u32, out: &mut [MaybeUninit<u32>]) -> (usize, u64) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::_mm512_setr_epi32;
            use std::arch::x86_64::{__m512i, _mm512_storeu_si512};
            use std::arch::x86_64::{_mm512_add_epi32, _mm512_maskz_compress_epi32, _mm512_set1_epi32};
            assert!(out.len() >= spikes.len() + 16 && spikes.len() <= 64);
            let (mut count, mut word) = (0, 0);
            for (c, chunk) in spikes.chunks(16).enumerate() {
                let mask = flag_mask(chunk);
                // SAFETY: the caller guarantees AVX-512F (`list`'s contract); the store writes 16
                // indices at `count`, at most the number of flags before this chunk, so within
                // `out` (asserted), and the first `mask.count_ones()` of them are the listed ones.
                unsafe {
                    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
                    let indices = _mm512_add_epi32(_mm512_set1_epi32((first as usize + c * 16) as i32), lanes);
                    let listed = _mm512_maskz_compress_epi32(mask, indices);
                    _mm512_storeu_si512(out.as_mut_ptr().add(count).cast::<__m512i>(), listed);
                }
                count += mask.count_ones() as usize;
                word |= (mask as u64) << (16 * c);
            }
            (count, word)
        }
        // SAFETY: `Scalar` needs no instruction beyond the build's target.
        #[cfg(not(target_arch = "x86_64"))]
        unsafe {
            Scalar::list(spikes, first, out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snn::Elementwise;

    #[test]
    fn every_instruction_set_fires_the_same_neurons() {
        let kinds = [
            NeuronKind::Relu,
            NeuronKind::Gelu { target: GeluTarget::Sigmoid },
            NeuronKind::ScaledGelu { target: GeluTarget::Erf },
            NeuronKind::DivSqrt,
            NeuronKind::Max,
            NeuronKind::Elementwise { function: Elementwise::Tanh },
        ];
        for kind in kinds {
            for dynamics in [Dynamics::SignGd, Dynamics::Subgradient] {
                let n: usize = 203;
                let x1: Vec<f32> = (0..n).map(|i| (i as f32 * 0.71).sin() * 2.0).collect();
                let x2: Vec<f32> = (0..n).map(|i| (i as f32 * 0.43).cos() + 1.2).collect();
                let start: Vec<f32> = (0..n).map(|i| (i as f32 * 0.29).sin()).collect();
                let (mut v_dispatched, mut v_portable) = (start.clone(), start.clone());
                let start_counted = start;
                let (mut fired_dispatched, mut fired_portable) = (Vec::new(), Vec::new());
                let (mut bits_dispatched, mut bits_portable) =
                    (vec![!0u64; n.div_ceil(64)], vec![0u64; n.div_ceil(64)]);
                let how = Firing { isa: Isa::detect(), dynamics, kind, eta: 0.1, first: 0 };
                let out = Spikes { fired: Some(&mut fired_dispatched), bits: &mut bits_dispatched };
                fire_and_update(how, &x1, &x2, &mut v_dispatched, out);
                let out = Spikes { fired: Some(&mut fired_portable), bits: &mut bits_portable };
                // SAFETY: `Scalar` needs no instruction beyond the build's target.
                unsafe { fire::<f32, Scalar>(Firing { isa: Isa::baseline(), ..how }, &x1, &x2, &mut v_portable, out) };
                assert_eq!(fired_dispatched, fired_portable, "{kind:?}");
                assert_eq!(bits_dispatched, bits_portable, "{kind:?}");
                let listed: Vec<u32> =
                    (0..n as u32).filter(|&i| bits_portable[i as usize / 64] >> (i % 64) & 1 == 1).collect();
                assert_eq!(listed, fired_portable, "{kind:?}: the bits are the listed spikes");
                let mut v_counted = start_counted.clone();
                let mut bits_counted = vec![!0u64; n.div_ceil(64)];
                let out = Spikes { fired: None, bits: &mut bits_counted };
                let count = fire_and_update(how, &x1, &x2, &mut v_counted, out);
                assert_eq!(count, fired_portable.len(), "{kind:?}: unlisted spikes are counted");
                assert_eq!(bits_counted, bits_portable, "{kind:?}: unlisted spikes have their bits");
                assert_eq!(v_counted, v_portable, "{kind:?}");
                assert!(!fired_portable.is_empty() && fired_portable.len() < n, "{kind:?}");
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&v_dispatched), bits(&v_portable), "{kind:?}");
                let expected: Vec<u32> = (0..n as u32)
                    .filter(|&i| match dynamics {
                        Dynamics::SignGd => kind.fires(
                            (i as f32 * 0.29).sin(),
                            x1[i as usize],
                            if kind.arity() == 2 { x2[i as usize] } else { x1[i as usize] },
                        ),
                        Dynamics::Subgradient => x1[i as usize] - (i as f32 * 0.29).sin() > 0.0,
                    })
                    .collect();
                if kind != (NeuronKind::Gelu { target: GeluTarget::Sigmoid }) {
                    assert_eq!(fired_portable, expected, "{kind:?}");
                }
            }
        }
    }
}
