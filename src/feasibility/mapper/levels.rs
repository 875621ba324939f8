//! The distinct weights one neuron applies, as a chip with N-bit weights stores them: TrueNorth
//! gives a neuron 4 (one per axon type, the type shared by every neuron of the core).

use super::super::quantize::{quantize_value, scale_for};
use crate::snn::{Operand, SynapseBlock};

/// Distinct nonzero values of `weights` quantised with `scale`.
fn distinct(weights: impl Iterator<Item = f64>, scale: f64) -> u64 {
    let mut levels: Vec<i64> =
        weights.map(|w| (quantize_value(w, scale) / scale).round() as i64).filter(|&l| l != 0).collect();
    levels.sort_unstable();
    levels.dedup();
    levels.len() as u64
}

/// The most distinct nonzero weights any one neuron reads through a single block of `operands`,
/// after symmetric quantisation of each block to `bits` bits: a lower bound of what the neuron
/// needs (per-element factors and other blocks only add levels).
pub(super) fn max_distinct_weights(operands: &[Operand], bits: u32) -> u64 {
    let mut most = 0;
    for projection in operands.iter().flat_map(|o| &o.projections) {
        let per_neuron = match &projection.block {
            SynapseBlock::Conv(conv) => {
                let scale = scale_for(&conv.kernel, bits);
                let per_out = conv.kernel.len() / conv.out_shape[0].max(1);
                if scale == 0.0 || per_out == 0 {
                    0
                } else {
                    conv.kernel.chunks(per_out).map(|k| distinct(k.iter().copied(), scale)).max().unwrap_or(0)
                }
            }
            SynapseBlock::Dense(dense) => {
                let rows = dense.matrix.to_rows(dense.outputs, dense.inputs);
                let scale = scale_for(&rows, bits);
                if scale == 0.0 || dense.inputs == 0 {
                    0
                } else {
                    rows.chunks(dense.inputs).map(|r| distinct(r.iter().copied(), scale)).max().unwrap_or(0)
                }
            }
            SynapseBlock::Sparse { matrix } => {
                let scale = scale_for(matrix.data(), bits);
                if scale == 0.0 {
                    0
                } else {
                    let rows = matrix.to_csr();
                    rows.outer_iterator().map(|row| distinct(row.data().iter().copied(), scale)).max().unwrap_or(0)
                }
            }
            SynapseBlock::Select(_) | SynapseBlock::Diagonal { .. } => 1,
        };
        most = most.max(per_neuron);
    }
    most
}
