//! The linear part of each affine op, per activation input, as a structured synapse block from
//! the input's elements to the output's elements (both row-major): a selection through an index
//! map for data movement and elementwise factors, a convolution, a matrix applied along an axis
//! for MatMul, Gemm and reductions. An explicit sparse matrix only where none of these fits.

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use sprs::CsMat;

use super::affine::{broadcast_index, strides};
use super::lower::conv_block;
use crate::model::eval::eval_op;
use crate::model::{Graph, Node, Op, Tensor};
use crate::snn::synapse::NONE;
use crate::snn::{ConvBlock, DenseBlock, Index, Matrix, Scale, SelectBlock, SynapseBlock, Weights};

/// Linear parts of `node` with respect to each of its non-constant inputs, as
/// `(input position, block)`. `Err` names what makes the node not affine.
pub fn linear_parts(graph: &Graph, node: &Node) -> Result<Vec<(usize, SynapseBlock)>, String> {
    let shape = |i: usize| graph.values[node.inputs[i]].shape.clone();
    let constant = |i: usize| node.inputs.get(i).and_then(|&v| graph.constant(v));
    let is_activation = |i: usize| !graph.is_constant(node.inputs[i]);
    let out_shape = graph.values[node.output].shape.clone();
    let out_size: usize = out_shape.iter().product();
    let activations: Vec<usize> = (0..node.inputs.len()).filter(|&i| is_activation(i)).collect();
    let broadcast_const = |c: &Tensor| -> Vec<f64> {
        let flat: Vec<f64> = c.iter_f64().collect();
        let index = broadcast_index(c.shape(), &out_shape);
        (0..out_size).map(|i| flat[index.get(i).expect("a broadcast has no holes")]).collect()
    };
    let select = |i: usize, scale: Scale| -> SynapseBlock {
        let sources = shape(i).iter().product();
        SynapseBlock::Select(SelectBlock {
            targets: out_size,
            sources,
            source: broadcast_index(&shape(i), &out_shape),
            scale,
        })
    };
    let parts = match &node.op {
        Op::Add | Op::Sub => activations
            .iter()
            .map(|&i| {
                let sign = if matches!(node.op, Op::Sub) && i == 1 { -1.0 } else { 1.0 };
                (i, select(i, Scale::uniform(sign)))
            })
            .collect(),
        Op::Neg => vec![(0, select(0, Scale::Uniform(-1.0)))],
        Op::Mul => {
            let (act, other) = single_activation(&activations, "a product of two activations is a neuron")?;
            let scale = broadcast_const(constant(other).ok_or("missing constant factor")?);
            vec![(act, select(act, Scale::fit(scale)))]
        }
        Op::Div => {
            if activations != [0] {
                return Err("only division by a constant is affine".into());
            }
            let scale = broadcast_const(constant(1).ok_or("missing constant divisor")?);
            vec![(0, select(0, Scale::fit(scale.iter().map(|d| 1.0 / d).collect())))]
        }
        Op::MatMul => {
            let (act, other) = single_activation(&activations, "a product of two activations is a neuron")?;
            let weights = constant(other).ok_or("missing constant matrix")?;
            vec![(act, matmul(&shape(act), weights, act == 0, &out_shape)?)]
        }
        Op::Gemm { alpha, trans_a, trans_b, .. } => {
            if activations != [0] {
                return Err("Gemm converts only with a constant B and C".into());
            }
            let b = constant(1).ok_or("missing constant B")?;
            vec![(0, gemm(&shape(0), b, *alpha, *trans_a, *trans_b, &out_shape)?)]
        }
        Op::ReduceMean { axes, .. } => vec![(0, reduce(&shape(0), axes, true))],
        Op::ReduceSum { axes, .. } => vec![(0, reduce(&shape(0), axes, false))],
        Op::GlobalAveragePool => {
            let axes: Vec<usize> = (2..shape(0).len()).collect();
            vec![(0, reduce(&shape(0), &axes, true))]
        }
        Op::AveragePool { kernel, strides, pads, count_include_pad, .. } => {
            vec![(0, average_pool(&shape(0), *kernel, *strides, *pads, *count_include_pad, &out_shape)?)]
        }
        Op::BatchNorm { epsilon } => {
            let get = |i: usize| {
                constant(i).map(|c| c.iter_f64().collect::<Vec<f64>>()).ok_or("BatchNorm parameters must be constants")
            };
            let (gamma, var) = (get(1)?, get(4)?);
            let s = shape(0);
            let inner: usize = s[2..].iter().product();
            let channels = s[1];
            let factor = |r: usize| gamma[(r / inner) % channels] / (var[(r / inner) % channels] + epsilon).sqrt();
            vec![(0, select(0, Scale::fit((0..out_size).map(factor).collect())))]
        }
        Op::Conv { .. } => vec![(0, SynapseBlock::Conv(conv_block(graph, node)?))],
        Op::Transpose { .. }
        | Op::Slice { .. }
        | Op::Gather { .. }
        | Op::Pad { .. }
        | Op::Expand
        | Op::Concat { .. }
        | Op::Reshape => movement_parts(graph, node)?,
        other => return Err(format!("{} is not affine", other.name())),
    };
    Ok(parts)
}

fn single_activation(activations: &[usize], why: &str) -> Result<(usize, usize), String> {
    match activations {
        [0] => Ok((0, 1)),
        [1] => Ok((1, 0)),
        _ => Err(why.to_string()),
    }
}

/// Data movement as selections: strided maps computed directly for transposes, slices and
/// broadcasts; for the other ops, each activation input is fed its own element numbers and the
/// output tells where each element went.
fn movement_parts(graph: &Graph, node: &Node) -> Result<Vec<(usize, SynapseBlock)>, String> {
    let in_shape = &graph.values[node.inputs[0]].shape;
    let out_shape = &graph.values[node.output].shape;
    let out_size: usize = out_shape.iter().product();
    let sources: usize = in_shape.iter().product();
    let direct = match &node.op {
        Op::Reshape => Some(Index::Identity),
        Op::Expand => Some(broadcast_index(in_shape, out_shape)),
        Op::Transpose { perm } => {
            let in_strides = strides(in_shape);
            Some(Index::strided(out_shape.clone(), perm.iter().map(|&a| in_strides[a]).collect(), 0))
        }
        Op::Slice { starts, axes, steps, .. } => {
            let mut step_strides = strides(in_shape);
            let mut offset = 0;
            for ((&axis, &start), &step) in axes.iter().zip(starts).zip(steps) {
                offset += start * step_strides[axis];
                step_strides[axis] *= step;
            }
            Some(Index::strided(out_shape.clone(), step_strides, offset))
        }
        Op::Gather { axis, indices } if indices.ndim() == 0 => {
            let in_strides = strides(in_shape);
            let offset = indices.iter().next().map_or(0, |&i| i as usize) * in_strides[*axis];
            let kept = in_strides.iter().enumerate().filter(|&(a, _)| a != *axis).map(|(_, &s)| s).collect();
            Some(Index::strided(out_shape.clone(), kept, offset))
        }
        _ => None,
    };
    if let Some(index) = direct {
        let block = SynapseBlock::Select(SelectBlock { targets: out_size, sources, source: index, scale: Scale::One });
        return Ok(vec![(0, block)]);
    }
    numbered_parts(graph, node)
}

/// Feeds each activation input its own element numbers and reads where they land.
fn numbered_parts(graph: &Graph, node: &Node) -> Result<Vec<(usize, SynapseBlock)>, String> {
    let op = match &node.op {
        Op::Pad { pads, .. } => Op::Pad { pads: pads.clone(), value: 0.0 },
        other => other.clone(),
    };
    let is_data = |i: usize| matches!(node.op, Op::Concat { .. }) || i == 0;
    let mut bases = Vec::new();
    let mut next = 1.0;
    let inputs: Vec<ArrayD<f64>> = node
        .inputs
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let value = &graph.values[v];
            match (&value.constant, is_data(i)) {
                (Some(c), false) => c.to_f64().into_owned(),
                (Some(c), true) => ArrayD::zeros(IxDyn(c.shape())),
                (None, _) => {
                    let n: usize = value.shape.iter().product();
                    bases.push((i, next, n));
                    let mut numbers = ArrayD::zeros(ndarray::IxDyn(&value.shape));
                    numbers.iter_mut().enumerate().for_each(|(k, x)| *x = next + k as f64);
                    next += n as f64;
                    numbers
                }
            }
        })
        .collect();
    let views: Vec<ArrayViewD<f64>> = inputs.iter().map(|a| a.view()).collect();
    let out_shape = &graph.values[node.output].shape;
    let numbered = eval_op::<f64>(&op, &views, out_shape)?;
    let mut entries: Vec<Vec<u32>> = bases.iter().map(|_| vec![NONE; numbered.len()]).collect();
    for (row, &number) in numbered.iter().enumerate() {
        if number < 0.5 {
            continue;
        }
        let number = number.round();
        let Some(slot) = bases.iter().position(|&(_, base, n)| number >= base && number < base + n as f64) else {
            return Err(format!("{} moved an element to an unexpected place", node.op.name()));
        };
        entries[slot][row] = (number - bases[slot].1) as u32;
    }
    Ok(bases
        .iter()
        .zip(entries)
        .map(|(&(i, _, n), entries)| {
            let targets = entries.len();
            let source = Index::from_entries(out_shape, entries);
            (i, SynapseBlock::Select(SelectBlock { targets, sources: n, source, scale: Scale::One }))
        })
        .collect())
}

/// `x @ W` (`activation_first`) or `W @ x` with numpy batch broadcasting: a matrix applied along
/// an axis when `W` is one matrix, an explicit sparse matrix when it is a batch of them.
fn matmul(x_shape: &[usize], w: &Tensor, activation_first: bool, out_shape: &[usize]) -> Result<SynapseBlock, String> {
    let out_size: usize = out_shape.iter().product();
    let w_batch: usize = w.shape().iter().rev().skip(2).product();
    if w_batch == 1 && w.ndim() >= 1 {
        let matrix_shape: Vec<usize> = w.shape().iter().copied().skip(w.ndim().saturating_sub(2)).collect();
        let weights = shared_weights(w);
        let x_size: usize = x_shape.iter().product();
        let (outer, inputs, outputs, inner, matrix) = if activation_first {
            // x [..., K] @ W [K, N] (W 1-D: [K], N = 1).
            let k = *x_shape.last().ok_or("MatMul of a scalar")?;
            let n = if w.ndim() == 1 { 1 } else { matrix_shape[1] };
            if matrix_shape[0] != k {
                return Err(format!("MatMul shapes {x_shape:?} and {:?} do not fit", w.shape()));
            }
            (x_size / k, k, n, 1, Matrix { weights, offset: 0, output_stride: 1, input_stride: n })
        } else {
            // W [M, K] @ x [..., K, I] (x 1-D: [K], I = 1).
            let (k, i) = match x_shape {
                [k] => (*k, 1),
                [.., k, i] => (*k, *i),
                [] => return Err("MatMul of a scalar".into()),
            };
            let (m, wk) = if w.ndim() == 1 { (1, matrix_shape[0]) } else { (matrix_shape[0], matrix_shape[1]) };
            if wk != k {
                return Err(format!("MatMul shapes {:?} and {x_shape:?} do not fit", w.shape()));
            }
            (x_size / (k * i), k, m, i, Matrix { weights, offset: 0, output_stride: k, input_stride: 1 })
        };
        if outer * outputs * inner != out_size {
            return Err(format!("MatMul output {out_shape:?} does not fit {x_shape:?} and {:?}", w.shape()));
        }
        return Ok(SynapseBlock::Dense(DenseBlock::new(outer, inputs, outputs, inner, matrix)));
    }
    super::compose::batched_matmul(x_shape, &w.to_f64().view(), activation_first, out_shape)
        .map(|matrix: CsMat<f64>| SynapseBlock::Sparse { matrix: matrix.to_csc() })
}

fn gemm(
    a_shape: &[usize],
    b: &Tensor,
    alpha: f64,
    trans_a: bool,
    trans_b: bool,
    out_shape: &[usize],
) -> Result<SynapseBlock, String> {
    if a_shape.len() != 2 || b.ndim() != 2 || out_shape.len() != 2 {
        return Err("Gemm needs 2-D operands".into());
    }
    let (m, k) = if trans_a { (a_shape[1], a_shape[0]) } else { (a_shape[0], a_shape[1]) };
    let n = out_shape[1];
    let (b0, b1) = (b.shape()[0], b.shape()[1]);
    if (trans_b && (b0 != n || b1 != k)) || (!trans_b && (b0 != k || b1 != n)) {
        return Err(format!("Gemm shapes {a_shape:?} and {:?} do not fit", b.shape()));
    }
    let weights = shared_weights(b);
    let matrix = match trans_b {
        true => Matrix { weights, offset: 0, output_stride: k, input_stride: 1 },
        false => Matrix { weights, offset: 0, output_stride: 1, input_stride: n },
    };
    let mut dense = DenseBlock::new(m, k, n, 1, matrix);
    if trans_a {
        dense.source = Index::strided(vec![m, k], vec![1, m], 0);
    }
    dense.target_scale = Scale::uniform(alpha);
    Ok(SynapseBlock::Dense(dense))
}

/// The weights of a constant tensor, shared with the graph (no copy), in their stored precision.
fn shared_weights(tensor: &Tensor) -> Weights {
    match tensor {
        Tensor::F32(a) => Weights::F32(a.clone()),
        Tensor::F64(a) => Weights::F64(a.clone()),
    }
}

/// A mean (or sum) over `axes`: a one-row matrix with one shared weight, applied along the
/// reduced axes (read through a strided map when they are not adjacent).
fn reduce(in_shape: &[usize], axes: &[usize], mean: bool) -> SynapseBlock {
    let count: usize = axes.iter().map(|&a| in_shape[a]).product();
    let weight = if mean { 1.0 / count as f64 } else { 1.0 };
    let matrix = Matrix { weights: Weights::from_f64(vec![weight]), offset: 0, output_stride: 0, input_stride: 0 };
    let adjacent = axes.windows(2).all(|w| w[1] == w[0] + 1);
    if adjacent && !axes.is_empty() {
        let (first, last) = (axes[0], axes[axes.len() - 1]);
        let outer = in_shape[..first].iter().product();
        let inner = in_shape[last + 1..].iter().product();
        return SynapseBlock::Dense(DenseBlock::new(outer, count, 1, inner, matrix));
    }
    let kept: Vec<usize> = (0..in_shape.len()).filter(|a| !axes.contains(a)).collect();
    let in_strides = strides(in_shape);
    let order: Vec<usize> = kept.iter().chain(axes).copied().collect();
    let outer: usize = kept.iter().map(|&a| in_shape[a]).product();
    let mut dense = DenseBlock::new(outer, count, 1, 1, matrix);
    dense.source =
        Index::strided(order.iter().map(|&a| in_shape[a]).collect(), order.iter().map(|&a| in_strides[a]).collect(), 0);
    SynapseBlock::Dense(dense)
}

/// Average pooling as a depthwise convolution with a kernel of ones and the divisor of each
/// output as its target factor.
fn average_pool(
    in_shape: &[usize],
    kernel: [usize; 2],
    stride: [usize; 2],
    pads: [usize; 4],
    count_include_pad: bool,
    out_shape: &[usize],
) -> Result<SynapseBlock, String> {
    let [n, c, h, w] = in_shape else { return Err("only 2-D average pooling converts".into()) };
    if kernel == [1, 1] && stride == [1, 1] && pads == [0; 4] {
        // Each output is its input divided by one (an adaptive pooling to the map's own size,
        // as in VGG at 224×224): no synapses, so that readers compose with its source directly.
        return Ok(super::affine::identity(n * c * h * w));
    }
    let (oh, ow) = (out_shape[2], out_shape[3]);
    let channels = n * c;
    let mut conv = ConvBlock::new(
        vec![1.0; channels * kernel[0] * kernel[1]],
        [channels, *h, *w],
        [channels, oh, ow],
        kernel,
        stride,
        [pads[0], pads[1]],
        [1, 1],
        channels,
    );
    let divisor = |o: usize, axis: usize, size: usize, pad_end: usize| -> (usize, usize) {
        // (taps inside the input, taps inside the padding) along one axis.
        let (mut inside, mut padded) = (0, 0);
        for k in 0..kernel[axis] {
            let p = (o * stride[axis] + k) as isize - pads[axis] as isize;
            if p >= 0 && (p as usize) < size {
                inside += 1;
            } else if p < (size + pad_end) as isize {
                padded += 1;
            }
        }
        (inside, padded)
    };
    let rows: Vec<(usize, usize)> = (0..oh).map(|oy| divisor(oy, 0, *h, pads[2])).collect();
    let cols: Vec<(usize, usize)> = (0..ow).map(|ox| divisor(ox, 1, *w, pads[3])).collect();
    let mut factors = Vec::with_capacity(channels * oh * ow);
    for _ in 0..channels {
        for &(ri, rp) in &rows {
            for &(ci, cp) in &cols {
                let inside = ri * ci;
                let count = if count_include_pad { (ri + rp) * (ci + cp) } else { inside };
                factors.push(1.0 / count.max(1) as f64);
            }
        }
    }
    conv.target_scale = Scale::fit(factors);
    Ok(SynapseBlock::Conv(conv))
}
