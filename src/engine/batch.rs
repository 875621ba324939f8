//! Kernels that compute a projection's product from a spiking population for a batch of inputs
//! at once, reading the weights once per step for all of them, and the choice among them.

use super::batch_conv::{self, BatchConv};
use super::batch_dense::{self, BatchDense};
use super::batch_depthwise::{self, BatchDepthwise};
use super::isa::Isa;
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

/// Writes `[target][input]` values as `[input][target]`, a block of targets at a time.
pub(super) fn deinterleave<F: Real>(interleaved: &[F], lanes: usize, out: &mut [F]) {
    const BLOCK: usize = 64;
    let targets = interleaved.len() / lanes;
    for first in (0..targets).step_by(BLOCK) {
        let last = (first + BLOCK).min(targets);
        for (lane, row) in out.chunks_exact_mut(targets).enumerate() {
            for (t, value) in row[first..last].iter_mut().enumerate() {
                *value = interleaved[(first + t) * lanes + lane];
            }
        }
    }
}
