//! Weights as a chip with N-bit weights stores them: symmetric per-block quantisation,
//! `scale = max|w| / (2^(N−1) − 1)`, `w ← round(w / scale) · scale` (round half away from zero).
//! Constants (the drive c) are neuron state, not weights, and stay as they are.

use crate::snn::{Matrix, Network, Operand, SynapseBlock};

/// What quantisation did to a network.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuantizeStats {
    /// Blocks quantised.
    pub blocks: usize,
    /// Weights quantised.
    pub weights: usize,
    /// Weights that became 0 (were nonzero before).
    pub zeroed: usize,
    /// Largest |w − q(w)| relative to its block's max |w|.
    pub max_relative_error: f64,
}

/// Quantises one value with `scale` (0 leaves it 0).
pub fn quantize_value(w: f64, scale: f64) -> f64 {
    if scale == 0.0 {
        0.0
    } else {
        (w / scale).round() * scale
    }
}

/// The scale of a block of weights for `bits`-bit symmetric quantisation.
pub fn scale_for(weights: &[f64], bits: u32) -> f64 {
    let max = weights.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    let levels = ((1u64 << (bits - 1)) - 1) as f64;
    max / levels
}

/// Quantises a block in place to `bits` bits (2 ≤ bits ≤ 32): the sparse matrix, the kernel,
/// the dense matrix, or the selection's factors. The per-element factors of convolutions and
/// dense blocks (ReLU normalisation, LayerNorm's γ) are per-neuron gains, like the drive c, and
/// stay as they are.
pub fn quantize_block(block: &mut SynapseBlock, bits: u32, stats: &mut QuantizeStats) {
    assert!((2..=32).contains(&bits), "weight bits must be 2..=32");
    let mut dense_rows = Vec::new();
    let weights: &mut [f64] = match block {
        SynapseBlock::Sparse { matrix } => matrix.data_mut(),
        SynapseBlock::Conv(conv) => &mut conv.kernel,
        SynapseBlock::Dense(dense) => {
            dense_rows = dense.matrix.to_rows(dense.outputs, dense.inputs);
            &mut dense_rows
        }
        SynapseBlock::Select(select) => select.scale.values_mut(),
        SynapseBlock::Diagonal { scale } => scale,
    };
    quantize_weights(weights, bits, stats);
    if let SynapseBlock::Dense(dense) = block {
        dense.matrix = Matrix::owned(dense.outputs, dense.inputs, dense_rows);
    }
}

fn quantize_weights(weights: &mut [f64], bits: u32, stats: &mut QuantizeStats) {
    let scale = scale_for(weights, bits);
    let max = scale * ((1u64 << (bits - 1)) - 1) as f64;
    for w in weights.iter_mut() {
        let q = quantize_value(*w, scale);
        if max > 0.0 {
            stats.max_relative_error = stats.max_relative_error.max((q - *w).abs() / max);
        }
        if q == 0.0 && *w != 0.0 {
            stats.zeroed += 1;
        }
        *w = q;
    }
    stats.blocks += 1;
    stats.weights += weights.len();
}

/// A copy of `network` with every synapse block (the readout's too) quantised to `bits` bits.
pub fn quantize_network(network: &Network, bits: u32) -> (Network, QuantizeStats) {
    let mut out = network.clone();
    let mut stats = QuantizeStats::default();
    let operands =
        out.populations.iter_mut().flat_map(|p| p.operands.iter_mut()).chain(std::iter::once(&mut out.readout));
    for operand in operands {
        quantize_operand(operand, bits, &mut stats);
    }
    (out, stats)
}

fn quantize_operand(operand: &mut Operand, bits: u32, stats: &mut QuantizeStats) {
    for projection in &mut operand.projections {
        quantize_block(&mut projection.block, bits, stats);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_levels() {
        let w = [1.0, -0.5, 0.26, 0.1];
        let s = scale_for(&w, 3); // 3 levels each side: scale 1/3
        assert!((s - 1.0 / 3.0).abs() < 1e-15);
        let q: Vec<f64> = w.iter().map(|&x| quantize_value(x, s)).collect();
        assert_eq!(q, vec![1.0, -2.0 / 3.0, 1.0 / 3.0, 0.0]);
    }
}
