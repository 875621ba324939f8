//! A population seen as one DYNAP-CNN layer (SynSense Speck): a convolution, integrate-and-fire
//! neurons and an optional sum pooling in one core, with the memory sinabs gives it.
//!
//! sinabs (`sinabs/backend/dynapcnn`, `DynapcnnLayer.memory_summary`) sizes a layer from its
//! structure alone: kernel memory `c_in · 2^(⌈log2(kx·ky)⌉ + ⌈log2 c_out⌉)` entries, neuron
//! memory `c_out · 2^(⌈log2 H⌉ + ⌈log2 W⌉)` entries over the convolution's output map, and one
//! bias entry per output channel when the layer has a bias. A linear layer is a convolution whose
//! kernel covers its input map.

use serde::Serialize;

use super::super::profile::Profile;
use crate::snn::{Constants, Network, Operand, Scale, Source, SynapseBlock};

/// sinabs's memory of one layer, in entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LayerMemory {
    /// Kernel memory entries.
    pub kernel_memory: u64,
    /// Neuron memory entries.
    pub neuron_memory: u64,
    /// Bias memory entries.
    pub bias_memory: u64,
}

/// `2^⌈log2 n⌉` (1 for `n ≤ 1`).
fn pow2_ceil(n: usize) -> u64 {
    (n.max(1) as u64).next_power_of_two()
}

/// sinabs's kernel memory of a `c_out × c_in × kh × kw` kernel:
/// `c_in · 2^(⌈log2(kh·kw)⌉ + ⌈log2 c_out⌉)` entries.
pub fn kernel_memory(c_in: usize, kh: usize, kw: usize, c_out: usize) -> u64 {
    c_in as u64 * pow2_ceil(kh * kw) * pow2_ceil(c_out)
}

/// sinabs's neuron memory of a `c_out × h × w` map: `c_out · 2^(⌈log2 h⌉ + ⌈log2 w⌉)` entries.
pub fn neuron_memory(c_out: usize, h: usize, w: usize) -> u64 {
    c_out as u64 * pow2_ceil(h) * pow2_ceil(w)
}

/// A limit of the DYNAP-CNN layer model that a population breaks.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Problem {
    pub limit: String,
    pub limit_value: u64,
    pub value: u64,
    pub suggestion: String,
}

/// A population as a DYNAP-CNN layer.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct LayerView {
    pub memory: LayerMemory,
    /// A max pooling (two-operand max neurons reading selections): no layer of its own on the
    /// chip, and not a DYNAP-CNN operation.
    pub max_pooling: bool,
    /// The neuron map `[c_out, H, W]` (the convolution's output, before any pooling).
    pub map: [usize; 3],
    /// Input channels (per group) of its largest kernel.
    pub c_in: usize,
    pub problems: Vec<Problem>,
}

/// `[C, H, W]` of an activation shape: with three axes or more, the last two are the map and the
/// rest the channels; a vector (or a `[1, n]` row) is `n` channels on a 1×1 map.
fn chw(shape: &[usize]) -> [usize; 3] {
    match shape.len() {
        0..=2 => [shape.iter().product(), 1, 1],
        n => [shape[..n - 2].iter().product(), shape[n - 2], shape[n - 1]],
    }
}

/// The largest number of distinct factors within one channel of a per-element scale over a
/// `channels × per_channel` layout (1 when the scale is uniform or per channel).
fn factors_per_channel<W: Copy + PartialOrd>(values: &[W], per_channel: usize) -> u64 {
    if per_channel <= 1 {
        return 1;
    }
    values
        .chunks(per_channel)
        .map(|channel| {
            if channel.iter().all(|&v| v == channel[0]) {
                return 1;
            }
            let mut sorted = channel.to_vec();
            sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
            sorted.dedup_by(|a, b| a == b);
            sorted.len() as u64
        })
        .max()
        .unwrap_or(1)
}

fn scale_factors(scale: &Scale, per_channel: usize) -> u64 {
    match scale {
        Scale::Each(values) => factors_per_channel(values, per_channel),
        _ => 1,
    }
}

fn bias_factors(bias: &Constants, per_channel: usize) -> u64 {
    factors_per_channel(&bias.to_vec(), per_channel)
}

/// The DYNAP-CNN layer that population (or readout) `name`, of activation `shape` and kind
/// `kind`, makes on `profile`.
pub(super) fn layer_view(
    network: &Network,
    name: &str,
    kind: &str,
    shape: &[usize],
    operands: &[Operand],
    profile: &Profile,
) -> LayerView {
    let source_shape = |source: Source| match source {
        Source::Input => network.input_shape.clone(),
        Source::Population(p) => network.populations[p].shape.clone(),
    };
    let projections: Vec<_> = operands.iter().flat_map(|o| &o.projections).filter(|p| !p.overlap).collect();
    let max_pooling = kind == "max"
        && !projections.is_empty()
        && projections.iter().all(|p| matches!(p.block, SynapseBlock::Select(_)));
    let mut memory = LayerMemory::default();
    let mut problems = Vec::new();
    let mut neuron_map = chw(shape);
    let mut position_dependent = 1u64;
    // (kernel entries, input channels) of the largest kernel.
    let mut c_in_of_largest = (0u64, 0usize);
    let check_channels = |c: usize, what: &str, problems: &mut Vec<Problem>| {
        if let Some(max) = profile.max_channels.filter(|&max| c as u64 > max) {
            problems.push(Problem {
                limit: format!("{what} channels per layer"),
                limit_value: max,
                value: c as u64,
                suggestion: format!("use at most {max} {what} channels (split the layer into channel groups)"),
            });
        }
    };
    for projection in &projections {
        match &projection.block {
            SynapseBlock::Conv(conv) => {
                let [c_in, in_h, in_w] = conv.in_shape;
                let [c_out, out_h, out_w] = conv.out_shape;
                let [kh, kw] = conv.kernel_size;
                let entries = kernel_memory(c_in / conv.groups.max(1), kh, kw, c_out);
                memory.kernel_memory += entries;
                c_in_of_largest = c_in_of_largest.max((entries, c_in / conv.groups.max(1)));
                neuron_map = conv.out_shape;
                if let Some(max) = profile.max_kernel_size.filter(|&max| kh.max(kw) as u64 > max) {
                    problems.push(Problem {
                        limit: "kernel size".into(),
                        limit_value: max,
                        value: kh.max(kw) as u64,
                        suggestion: format!("use kernels of at most {max}×{max}"),
                    });
                }
                if let Some(allowed) = &profile.strides {
                    if let Some(&bad) = conv.strides.iter().find(|&&s| !allowed.contains(&(s as u64))) {
                        problems.push(Problem {
                            limit: format!("convolution stride (one of {allowed:?})"),
                            limit_value: *allowed.iter().max().unwrap_or(&1),
                            value: bad as u64,
                            suggestion: format!("use a stride of {allowed:?}"),
                        });
                    }
                }
                check_channels(c_in, "input", &mut problems);
                check_channels(c_out, "output", &mut problems);
                position_dependent = position_dependent
                    .max(scale_factors(&conv.target_scale, out_h * out_w))
                    .max(scale_factors(&conv.source_scale, in_h * in_w));
            }
            SynapseBlock::Dense(dense) => {
                let (c, h, w) = match chw(&source_shape(projection.source)) {
                    [c, h, w] if dense.outer * dense.inner == 1 && c * h * w == dense.inputs => (c, h, w),
                    _ => (dense.inputs, 1, 1),
                };
                let entries = kernel_memory(c, h, w, dense.outputs);
                memory.kernel_memory += entries;
                c_in_of_largest = c_in_of_largest.max((entries, c));
                if dense.outer * dense.inner == 1 {
                    neuron_map = [dense.outputs, 1, 1];
                }
                if let Some(max) = profile.max_kernel_size.filter(|&max| h.max(w) as u64 > max) {
                    problems.push(Problem {
                        limit: "kernel size (a linear layer's kernel covers its input map)".into(),
                        limit_value: max,
                        value: h.max(w) as u64,
                        suggestion: format!("pool the input map to at most {max}×{max} before the linear layer"),
                    });
                }
                check_channels(c, "input", &mut problems);
                check_channels(dense.outputs, "output", &mut problems);
                position_dependent = position_dependent
                    .max(scale_factors(&dense.target_scale, dense.inner))
                    .max(scale_factors(&dense.source_scale, dense.inner));
            }
            SynapseBlock::Sparse { matrix } => {
                let entries = kernel_memory(matrix.cols(), 1, 1, matrix.rows());
                memory.kernel_memory += entries;
                c_in_of_largest = c_in_of_largest.max((entries, matrix.cols()));
            }
            SynapseBlock::Select(_) | SynapseBlock::Diagonal { .. } => {}
        }
    }
    let [c_out, h, w] = neuron_map;
    memory.neuron_memory = if max_pooling { 0 } else { neuron_memory(c_out, h, w) };
    let has_bias = operands.iter().any(|o| o.bias.to_vec().iter().any(|&b| b != 0.0));
    if has_bias && !max_pooling {
        memory.bias_memory = c_out as u64;
        if c_out * h * w == operands[0].bias.len() {
            for operand in operands {
                position_dependent = position_dependent.max(bias_factors(&operand.bias, h * w));
            }
        }
    }
    if position_dependent > 1 {
        problems.push(Problem {
            limit: "factors per output channel (kernels shared over positions, one threshold per layer)".into(),
            limit_value: 1,
            value: position_dependent,
            suggestion: format!(
                "`{name}` scales its weights or biases per position (per-element ReLU normalisation): convert with --relu-norm channel or --relu-norm layer"
            ),
        });
    }
    if max_pooling {
        let node = name.split('.').next().unwrap_or(name);
        problems.push(Problem {
            limit: "max pooling (not a DYNAP-CNN operation)".into(),
            limit_value: 0,
            value: 1,
            suggestion: format!(
                "replace MaxPool `{node}` by AveragePool of the same window: the chip sums pooling windows inside the core of the convolution before it (no core of its own)"
            ),
        });
    }
    LayerView { memory, max_pooling, map: neuron_map, c_in: c_in_of_largest.1, problems }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_of_two_round_up() {
        assert_eq!(kernel_memory(16, 3, 3, 32), 16 * 16 * 32);
        assert_eq!(kernel_memory(3, 1, 1, 1), 3);
        assert_eq!(neuron_memory(16, 28, 28), 16 * 32 * 32);
        assert_eq!(neuron_memory(10, 1, 1), 10);
    }

    #[test]
    fn per_channel_factors() {
        assert_eq!(factors_per_channel(&[1.0, 1.0, 2.0, 2.0], 2), 1);
        assert_eq!(factors_per_channel(&[1.0, 3.0, 2.0, 2.0], 2), 2);
    }
}
