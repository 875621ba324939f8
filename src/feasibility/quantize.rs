//! Weights as a chip with N-bit weights stores them: symmetric per-block quantisation,
//! `scale = max|w| / (2^(N−1) − 1)`, `w ← round(w / scale) · scale` (round half away from zero).
//! Constants (the drive c) are neuron state, not weights, and stay as they are.

use crate::snn::{Constants, Matrix, Network, Operand, Scale, SynapseBlock};

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

/// What quantisation on a chip's grid did to a network.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GridStats {
    /// Operands (one grid each).
    pub operands: usize,
    /// Weights, factors and constants rounded.
    pub values: usize,
    /// Blocks whose per-element factors (per-element ReLU normalisation) could not be folded
    /// into their shared kernel: their kernels were rounded on the operand's grid at the
    /// factors' largest value, the factors kept.
    pub unfolded_blocks: usize,
}

/// `values` as one factor per channel, when each of `channels` runs of `run` elements (repeated
/// `outer` times, the runs innermost-but-`inner`) holds one value: `index(o, c, i)` is the
/// element of channel `c` at outer `o` and inner `i`.
fn per_channel(scale: &Scale, outer: usize, channels: usize, inner: usize) -> Option<Vec<f64>> {
    match scale {
        Scale::One => Some(vec![1.0; channels]),
        Scale::Uniform(w) => Some(vec![*w; channels]),
        Scale::Each(values) => {
            let at = |o: usize, c: usize, i: usize| values[(o * channels + c) * inner + i];
            let factors: Vec<f64> = (0..channels).map(|c| at(0, c, 0)).collect();
            let uniform = (0..outer).all(|o| (0..channels).all(|c| (0..inner).all(|i| at(o, c, i) == factors[c])));
            uniform.then_some(factors)
        }
    }
}

/// Folds per-channel factors into the shared weights of a convolution or dense block (the
/// weights a chip stores), leaving the factors 1; false when a factor varies within a channel.
fn fold_factors(block: &mut SynapseBlock) -> bool {
    match block {
        SynapseBlock::Conv(conv) => {
            let [c_in, in_h, in_w] = conv.in_shape;
            let [c_out, out_h, out_w] = conv.out_shape;
            let (Some(t), Some(s)) = (
                per_channel(&conv.target_scale, 1, c_out, out_h * out_w),
                per_channel(&conv.source_scale, 1, c_in, in_h * in_w),
            ) else {
                return false;
            };
            let per_group = c_in / conv.groups.max(1);
            let out_per_group = c_out / conv.groups.max(1);
            let taps = conv.kernel_size[0] * conv.kernel_size[1];
            for (i, w) in conv.kernel.iter_mut().enumerate() {
                let co = i / (per_group * taps);
                let ci = co / out_per_group.max(1) * per_group + i / taps % per_group;
                *w *= t[co] * s[ci];
            }
            conv.target_scale = Scale::One;
            conv.source_scale = Scale::One;
            true
        }
        SynapseBlock::Dense(dense) => {
            let (Some(t), Some(s)) = (
                per_channel(&dense.target_scale, dense.outer, dense.outputs, dense.inner),
                per_channel(&dense.source_scale, dense.outer, dense.inputs, dense.inner),
            ) else {
                return false;
            };
            let mut rows = dense.matrix.to_rows(dense.outputs, dense.inputs);
            for (i, w) in rows.iter_mut().enumerate() {
                *w *= t[i / dense.inputs] * s[i % dense.inputs];
            }
            dense.matrix = Matrix::owned(dense.outputs, dense.inputs, rows);
            dense.target_scale = Scale::One;
            dense.source_scale = Scale::One;
            true
        }
        _ => true,
    }
}

/// The largest factor of a scale (1 for none).
fn largest(scale: &Scale) -> f64 {
    match scale {
        Scale::One => 1.0,
        Scale::Uniform(w) => w.abs(),
        Scale::Each(values) => values.iter().fold(0.0f64, |m, v| m.max(v.abs())),
    }
}

/// Calls `visit(values, factor)` with the stored values of a block (kernel, matrix or factors)
/// and the largest factor they are applied at, writing a dense block's matrix back after.
fn with_values(block: &mut SynapseBlock, mut visit: impl FnMut(&mut [f64], f64)) {
    match block {
        SynapseBlock::Sparse { matrix } => visit(matrix.data_mut(), 1.0),
        SynapseBlock::Conv(conv) => {
            let f = largest(&conv.target_scale) * largest(&conv.source_scale);
            visit(&mut conv.kernel, f)
        }
        SynapseBlock::Dense(dense) => {
            let f = largest(&dense.target_scale) * largest(&dense.source_scale);
            let mut rows = dense.matrix.to_rows(dense.outputs, dense.inputs);
            visit(&mut rows, f);
            dense.matrix = Matrix::owned(dense.outputs, dense.inputs, rows);
        }
        SynapseBlock::Select(select) => visit(select.scale.values_mut(), 1.0),
        SynapseBlock::Diagonal { scale } => visit(scale, 1.0),
    }
}

/// A copy of `network` in a chip's integer arithmetic with `bits`-bit signed weights and
/// `state_bits`-bit neuron state: per operand (a layer's input to its neurons) one grid step `g`,
/// every weight (per-channel factors folded into the shared kernels first) and factor a whole
/// multiple of `g` within `2^(bits−1) − 1` steps, every constant (bias, neuron state) a whole
/// multiple of `g` within `2^(state_bits−1) − 1` steps, and the neurons' unit threshold 1 a whole
/// number of steps too (`g = 1 / ⌊1 / s⌋` for the smallest step `s` that holds the largest
/// weight).
pub fn quantize_network_on_grid(network: &Network, bits: u32, state_bits: u32) -> (Network, GridStats) {
    assert!((2..=32).contains(&bits), "weight bits must be 2..=32");
    let levels = ((1u64 << (bits - 1)) - 1) as f64;
    let state_levels = ((1u64 << (state_bits.clamp(2, 63) - 1)) - 1) as f64;
    let mut out = network.clone();
    let mut stats = GridStats::default();
    let operands =
        out.populations.iter_mut().flat_map(|p| p.operands.iter_mut()).chain(std::iter::once(&mut out.readout));
    for operand in operands {
        let mut largest_value = 0.0f64;
        for projection in &mut operand.projections {
            if !fold_factors(&mut projection.block) {
                stats.unfolded_blocks += 1;
            }
            if matches!(&projection.block, SynapseBlock::Select(select) if select.scale.is_one()) {
                largest_value = largest_value.max(1.0);
            }
            with_values(&mut projection.block, |values, factor| {
                largest_value = values.iter().fold(largest_value, |m, w| m.max(w.abs() * factor));
            });
        }
        let step = largest_value / levels;
        let grid = if step == 0.0 {
            1.0
        } else if step <= 1.0 {
            1.0 / (1.0 / step).floor()
        } else {
            step
        };
        let on_grid = |v: f64| (v / grid).round() * grid;
        for projection in &mut operand.projections {
            // Unfolded factors multiply the kernel: round the kernel on the grid at its largest
            // factor (the factors themselves stay).
            with_values(&mut projection.block, |values, factor| {
                let g = grid / factor.max(f64::MIN_POSITIVE);
                for w in values.iter_mut() {
                    *w = if factor == 1.0 { on_grid(*w) } else { (*w / g).round() * g };
                }
                stats.values += values.len();
            });
        }
        let state_max = state_levels * grid;
        let constants: Vec<f64> =
            operand.bias.to_vec().into_iter().map(|c| on_grid(c.clamp(-state_max, state_max))).collect();
        stats.values += constants.len();
        operand.bias = Constants::compact(constants);
        stats.operands += 1;
    }
    (out, stats)
}
