//! Kernels that compute a projection's product from a spiking population for a batch of inputs
//! at once, reading the weights once per step for all of them, and the choice among them.

use super::batch_conv::{self, BatchConv};
use super::batch_dense::{self, BatchDense};
use super::batch_depthwise::{self, BatchDepthwise};
use std::any::TypeId;

use super::isa::{Isa, Level};
use crate::real::Real;
use crate::snn::{Scale, SynapseBlock};

/// A projection's product `A s` from binary spikes, computed for several inputs together.
///
/// Exact: each target's sum is taken in an order fixed by the network, never by the batch size,
/// the lane an input occupies, the thread count or the instruction set.
pub trait BatchKernel<F>: Send + Sync {
    /// Elements of the spread layout for `lanes` inputs.
    fn spread_len(&self, lanes: usize) -> usize;

    /// Writes the spikes of the batch into `spread` (of [`BatchKernel::spread_len`] elements):
    /// `fired[b]` lists the sources input `b` fired, ascending.
    fn spread_spikes(&self, fired: &[&[u32]], spread: &mut [F]);

    /// Writes the product of every input, `products[b × targets + t]` (the target factors not
    /// applied), from the spread spikes of `lanes` inputs; `scratch` is the kernel's working
    /// space. Returns the multiply-accumulates performed.
    fn products(&self, lanes: usize, spread: &[F], scratch: &mut Vec<F>, products: &mut [F]) -> u64;

    /// Factors per target, applied when the product is read.
    fn target_scale(&self) -> &Scale<F>;

    /// Bytes of the prepared weights and tables.
    fn bytes(&self) -> usize;
}

/// Whether some batched kernel computes `block` (read from a population's spikes).
pub(super) fn batchable(block: &SynapseBlock) -> bool {
    match block {
        SynapseBlock::Conv(conv) => batch_conv::handles(conv) || batch_depthwise::handles(conv),
        SynapseBlock::Dense(dense) => batch_dense::handles(dense),
        _ => false,
    }
}

/// Batched kernels are used only when the blocks they compute hold at least this share of the
/// network's synapses: simulating inputs in lockstep multiplies the state a worker holds and
/// gains nothing for the blocks that stay per input.
pub(super) const BATCHED_SHARE: f64 = 0.25;

/// The batched kernel for `block` read from a population's spikes, if one computes it.
pub(super) fn kernel_for<F: Real>(block: &SynapseBlock, isa: Isa) -> Option<Box<dyn BatchKernel<F>>> {
    match block {
        SynapseBlock::Conv(conv) if batch_conv::handles(conv) => Some(Box::new(BatchConv::new(&conv.cast::<F>(), isa))),
        SynapseBlock::Conv(conv) if batch_depthwise::handles(conv) => {
            Some(Box::new(BatchDepthwise::new(&conv.cast::<F>(), isa)))
        }
        SynapseBlock::Dense(dense) if batch_dense::handles(dense) => Some(Box::new(BatchDense::<F>::new(dense, isa))),
        _ => None,
    }
}

/// Calls `$rows::<R>($tile, $product)` with the row count `$count` (1 to 14) as the constant
/// `R`, so a register tile's accumulators are an array of known length.
#[cfg(target_arch = "x86_64")]
macro_rules! dispatch_rows {
    ($count:expr, $rows:ident, $tile:expr, $product:expr) => {
        match $count {
            14 => $rows::<14>($tile, $product),
            13 => $rows::<13>($tile, $product),
            12 => $rows::<12>($tile, $product),
            11 => $rows::<11>($tile, $product),
            10 => $rows::<10>($tile, $product),
            9 => $rows::<9>($tile, $product),
            8 => $rows::<8>($tile, $product),
            7 => $rows::<7>($tile, $product),
            6 => $rows::<6>($tile, $product),
            5 => $rows::<5>($tile, $product),
            4 => $rows::<4>($tile, $product),
            3 => $rows::<3>($tile, $product),
            2 => $rows::<2>($tile, $product),
            1 => $rows::<1>($tile, $product),
            n => unreachable!("a tile of {n} rows"),
        }
    };
}
#[cfg(target_arch = "x86_64")]
pub(super) use dispatch_rows;

/// Writes `[target][input]` values as `[input][target]`: float32 in blocks of 16 × 16 transposed
/// in registers where the CPU has AVX-512 and the inputs are a multiple of 16, otherwise a block
/// of targets at a time.
pub(super) fn deinterleave<F: Real>(interleaved: &[F], lanes: usize, out: &mut [F], isa: Isa) {
    #[cfg(target_arch = "x86_64")]
    if isa.level() == Level::Avx512 && lanes.is_multiple_of(16) && TypeId::of::<F>() == TypeId::of::<f32>() {
        let targets = interleaved.len() / lanes;
        let whole = targets / 16 * 16;
        // SAFETY: `F` is f32 (same type, same layout); `Isa::detect` found AVX-512F.
        unsafe {
            let interleaved = std::slice::from_raw_parts(interleaved.as_ptr().cast::<f32>(), interleaved.len());
            let out_f32 = std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<f32>(), out.len());
            transpose16::deinterleave_f32(interleaved, lanes, whole, out_f32);
        }
        deinterleave_targets(interleaved, lanes, whole, out);
        return;
    }
    let _ = isa;
    deinterleave_targets(interleaved, lanes, 0, out);
}

/// [`deinterleave`] of the targets from `from` on, a block of targets at a time.
fn deinterleave_targets<F: Real>(interleaved: &[F], lanes: usize, from: usize, out: &mut [F]) {
    const BLOCK: usize = 64;
    let targets = interleaved.len() / lanes;
    for first in (from..targets).step_by(BLOCK) {
        let last = (first + BLOCK).min(targets);
        for (lane, row) in out.chunks_exact_mut(targets).enumerate() {
            for (t, value) in row[first..last].iter_mut().enumerate() {
                *value = interleaved[(first + t) * lanes + lane];
            }
        }
    }
}

/// The 16 × 16 transposition of float32 with AVX-512.
#[cfg(target_arch = "x86_64")]
mod transpose16 {
    use std::arch::x86_64::*;

    /// [`super::deinterleave`] of the first `whole` targets (a multiple of 16; `lanes` too).
    #[target_feature(enable = "avx512f")]
    pub(super) fn deinterleave_f32(interleaved: &[f32], lanes: usize, whole: usize, out: &mut [f32]) {
        let targets = interleaved.len() / lanes;
        assert!(lanes.is_multiple_of(16) && whole.is_multiple_of(16) && whole <= targets);
        assert!(out.len() >= targets * lanes);
        for first in (0..whole).step_by(16) {
            for lane in (0..lanes).step_by(16) {
                // SAFETY: rows `first..first + 16` of 16 lanes from `lane` lie within
                // `interleaved` and the 16 columns of 16 targets within `out` (asserted).
                unsafe {
                    let mut rows = [_mm512_setzero_ps(); 16];
                    for (i, row) in rows.iter_mut().enumerate() {
                        *row = _mm512_loadu_ps(interleaved.as_ptr().add((first + i) * lanes + lane));
                    }
                    let columns = transpose(rows);
                    for (j, column) in columns.iter().enumerate() {
                        _mm512_storeu_ps(out.as_mut_ptr().add((lane + j) * targets + first), *column);
                    }
                }
            }
        }
    }

    /// Row `i` of the result is column `i` of `r`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn transpose(r: [__m512; 16]) -> [__m512; 16] {
        let mut t = [_mm512_setzero_ps(); 16];
        for k in 0..8 {
            t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
            t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
        }
        let mut u = [_mm512_setzero_ps(); 16];
        for k in 0..4 {
            let (a, b, c, d) = (t[4 * k], t[4 * k + 1], t[4 * k + 2], t[4 * k + 3]);
            let pd = _mm512_castps_pd;
            u[4 * k] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(a), pd(c)));
            u[4 * k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(a), pd(c)));
            u[4 * k + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(b), pd(d)));
            u[4 * k + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(b), pd(d)));
        }
        for half in 0..2 {
            for k in 0..4 {
                let (a, b) = (u[8 * half + k], u[8 * half + 4 + k]);
                t[8 * half + k] = _mm512_shuffle_f32x4::<0x88>(a, b);
                t[8 * half + 4 + k] = _mm512_shuffle_f32x4::<0xdd>(a, b);
            }
        }
        let mut columns = [_mm512_setzero_ps(); 16];
        for k in 0..8 {
            columns[k] = _mm512_shuffle_f32x4::<0x88>(t[k], t[8 + k]);
            columns[8 + k] = _mm512_shuffle_f32x4::<0xdd>(t[k], t[8 + k]);
        }
        columns
    }
}

/// Masks of the first lanes of an AVX2 vector, for the partial tiles of the batched kernels.
#[cfg(target_arch = "x86_64")]
pub(super) mod lane_masks {
    use std::arch::x86_64::*;

    /// Lanes `0..n` of eight (sign bits set).
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(in crate::engine) fn mask_f32(n: usize) -> __m256i {
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
    }

    /// Lanes `0..n` of four (sign bits set).
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(in crate::engine) fn mask_f64(n: usize) -> __m256i {
        _mm256_cmpgt_epi64(_mm256_set1_epi64x(n.min(4) as i64), _mm256_setr_epi64x(0, 1, 2, 3))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deinterleaving_transposes_targets_and_inputs_on_every_instruction_set() {
        for lanes in [1, 3, 16, 32] {
            for targets in [1, 15, 16, 47, 64, 100] {
                let interleaved: Vec<f32> = (0..targets * lanes).map(|i| i as f32 * 0.5 - 7.0).collect();
                let expected: Vec<f32> =
                    (0..lanes).flat_map(|b| (0..targets).map(move |t| (t * lanes + b) as f32 * 0.5 - 7.0)).collect();
                for isa in [Isa::detect(), Isa::baseline()] {
                    let mut out = vec![f32::NAN; targets * lanes];
                    deinterleave(&interleaved, lanes, &mut out, isa);
                    assert_eq!(out, expected, "{lanes} lanes, {targets} targets, {isa:?}");
                }
            }
        }
    }
}
