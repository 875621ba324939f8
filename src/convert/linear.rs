//! The linear part of each affine op, as a sparse matrix per activation input
//! (rows: output elements, columns: that input's elements, both row-major).

use ndarray::{ArrayD, ArrayViewD, CowArray, IxDyn};
use sprs::CsMat;

use super::affine::{broadcast_indices, broadcast_matrix, matrix, strides};
use crate::model::eval::eval_op;
use crate::model::{Graph, Node, Op};

/// Linear parts of `node` with respect to each of its non-constant inputs, as
/// `(input position, matrix)`. `Err` names what makes the node not affine.
pub fn linear_parts(graph: &Graph, node: &Node) -> Result<Vec<(usize, CsMat<f64>)>, String> {
    let shape = |i: usize| graph.values[node.inputs[i]].shape.clone();
    let constant = |i: usize| node.inputs.get(i).and_then(|&v| graph.constant(v)).map(|c| c.to_f64());
    let is_activation = |i: usize| !graph.is_constant(node.inputs[i]);
    let out_shape = graph.values[node.output].shape.clone();
    let activations: Vec<usize> = (0..node.inputs.len()).filter(|&i| is_activation(i)).collect();
    let broadcast_const = |c: &CowArray<f64, IxDyn>| -> Vec<f64> {
        let flat: Vec<f64> = c.iter().copied().collect();
        broadcast_indices(c.shape(), &out_shape).into_iter().map(|i| flat[i]).collect()
    };
    let parts = match &node.op {
        Op::Add | Op::Sub => activations
            .iter()
            .map(|&i| {
                let sign = if matches!(node.op, Op::Sub) && i == 1 { -1.0 } else { 1.0 };
                (i, broadcast_matrix(&shape(i), &out_shape, |_| sign))
            })
            .collect(),
        Op::Neg => vec![(0, broadcast_matrix(&shape(0), &out_shape, |_| -1.0))],
        Op::Mul => {
            let (act, other) = single_activation(&activations, "a product of two activations is a neuron")?;
            let scale = broadcast_const(&constant(other).ok_or("missing constant factor")?);
            vec![(act, broadcast_matrix(&shape(act), &out_shape, |r| scale[r]))]
        }
        Op::Div => {
            if activations != [0] {
                return Err("only division by a constant is affine".into());
            }
            let scale = broadcast_const(&constant(1).ok_or("missing constant divisor")?);
            vec![(0, broadcast_matrix(&shape(0), &out_shape, |r| 1.0 / scale[r]))]
        }
        Op::MatMul => {
            let (act, other) = single_activation(&activations, "a product of two activations is a neuron")?;
            let weights = constant(other).ok_or("missing constant matrix")?;
            vec![(act, matmul(&shape(act), &weights, act == 0, &out_shape)?)]
        }
        Op::Gemm { alpha, trans_a, trans_b, .. } => {
            if activations != [0] {
                return Err("Gemm converts only with a constant B and C".into());
            }
            let b = constant(1).ok_or("missing constant B")?;
            vec![(0, gemm(&shape(0), &b, *alpha, *trans_a, *trans_b, &out_shape)?)]
        }
        Op::ReduceMean { axes, .. } => vec![(0, reduce(&shape(0), axes, true))],
        Op::ReduceSum { axes, .. } => vec![(0, reduce(&shape(0), axes, false))],
        Op::GlobalAveragePool => {
            let axes: Vec<usize> = (2..shape(0).len()).collect();
            vec![(0, reduce(&shape(0), &axes, true))]
        }
        Op::AveragePool { kernel, strides, pads, count_include_pad, .. } => {
            vec![(0, average_pool(&shape(0), *kernel, *strides, *pads, *count_include_pad, &out_shape))]
        }
        Op::BatchNorm { epsilon } => {
            let get = |i: usize| {
                constant(i)
                    .map(|c| c.iter().copied().collect::<Vec<f64>>())
                    .ok_or("BatchNorm parameters must be constants")
            };
            let (gamma, var) = (get(1)?, get(4)?);
            let s = shape(0);
            let inner: usize = s[2..].iter().product();
            let channels = s[1];
            vec![(
                0,
                broadcast_matrix(&s, &out_shape, |r| {
                    gamma[(r / inner) % channels] / (var[(r / inner) % channels] + epsilon).sqrt()
                }),
            )]
        }
        Op::Conv { .. } => {
            let conv = super::lower::conv_block(graph, node)?;
            vec![(0, super::affine::conv_matrix(&conv))]
        }
        Op::Transpose { .. }
        | Op::Slice { .. }
        | Op::Gather { .. }
        | Op::Pad { .. }
        | Op::Expand
        | Op::Concat { .. }
        | Op::Reshape => gather_parts(graph, node)?,
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

/// Data movement: feed each activation input its own element numbers, see where they land.
fn gather_parts(graph: &Graph, node: &Node) -> Result<Vec<(usize, CsMat<f64>)>, String> {
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
                    let numbers = ArrayD::from_shape_fn(ndarray::IxDyn(&value.shape), |_| 0.0);
                    let mut numbers = numbers;
                    numbers.iter_mut().enumerate().for_each(|(k, x)| *x = next + k as f64);
                    next += n as f64;
                    numbers
                }
            }
        })
        .collect();
    let refs: Vec<ArrayViewD<f64>> = inputs.iter().map(|a| a.view()).collect();
    let out_shape = &graph.values[node.output].shape;
    let numbered = eval_op::<f64>(&op, &refs, out_shape)?;
    let rows = numbered.len();
    let mut entries: Vec<Vec<(usize, usize, f64)>> = vec![Vec::new(); bases.len()];
    for (row, &number) in numbered.iter().enumerate() {
        if number < 0.5 {
            continue;
        }
        let number = number.round();
        let Some(slot) = bases.iter().position(|&(_, base, n)| number >= base && number < base + n as f64) else {
            return Err(format!("{} moved an element to an unexpected place", node.op.name()));
        };
        entries[slot].push((row, (number - bases[slot].1) as usize, 1.0));
    }
    Ok(bases.iter().zip(entries).map(|(&(i, _, n), e)| (i, matrix(rows, n, e))).collect())
}

/// `x @ W` (`activation_first`) or `W @ x` with numpy batch broadcasting.
fn matmul(
    x_shape: &[usize],
    w: &CowArray<f64, IxDyn>,
    activation_first: bool,
    out_shape: &[usize],
) -> Result<CsMat<f64>, String> {
    let promote = |s: &[usize], first: bool| -> Vec<usize> {
        match s.len() {
            0 => vec![1, 1],
            1 if first => vec![1, s[0]],
            1 => vec![s[0], 1],
            _ => s.to_vec(),
        }
    };
    let (a_shape, b_shape) = if activation_first {
        (promote(x_shape, true), promote(w.shape(), false))
    } else {
        (promote(w.shape(), true), promote(x_shape, false))
    };
    let (m, k, n) = (a_shape[a_shape.len() - 2], a_shape[a_shape.len() - 1], b_shape[b_shape.len() - 1]);
    if b_shape[b_shape.len() - 2] != k {
        return Err(format!("MatMul shapes {a_shape:?} and {b_shape:?} do not fit"));
    }
    let batch_a = &a_shape[..a_shape.len() - 2];
    let batch_b = &b_shape[..b_shape.len() - 2];
    let rank = batch_a.len().max(batch_b.len());
    let mut batch_out = vec![1; rank];
    for (i, d) in batch_a.iter().rev().enumerate() {
        batch_out[rank - 1 - i] = *d;
    }
    for (i, d) in batch_b.iter().rev().enumerate() {
        let slot = &mut batch_out[rank - 1 - i];
        *slot = (*slot).max(*d);
    }
    let batches: usize = batch_out.iter().product();
    let a_index = broadcast_indices(batch_a, &batch_out);
    let b_index = broadcast_indices(batch_b, &batch_out);
    let rows: usize = out_shape.iter().product();
    if rows != batches * m * n {
        return Err(format!("MatMul output {out_shape:?} does not fit {a_shape:?} @ {b_shape:?}"));
    }
    let wf: Vec<f64> = w.iter().copied().collect();
    let x_size: usize = x_shape.iter().product();
    let mut entries = Vec::with_capacity(batches * m * n * k);
    for b in 0..batches {
        for i in 0..m {
            for j in 0..n {
                let row = (b * m + i) * n + j;
                for kk in 0..k {
                    if activation_first {
                        let col = a_index[b] * m * k + i * k + kk;
                        entries.push((row, col, wf[b_index[b] * k * n + kk * n + j]));
                    } else {
                        let col = b_index[b] * k * n + kk * n + j;
                        entries.push((row, col, wf[a_index[b] * m * k + i * k + kk]));
                    }
                }
            }
        }
    }
    Ok(matrix(rows, x_size, entries))
}

fn gemm(
    a_shape: &[usize],
    b: &CowArray<f64, IxDyn>,
    alpha: f64,
    trans_a: bool,
    trans_b: bool,
    out_shape: &[usize],
) -> Result<CsMat<f64>, String> {
    if a_shape.len() != 2 || b.ndim() != 2 || out_shape.len() != 2 {
        return Err("Gemm needs 2-D operands".into());
    }
    let (m, k) = if trans_a { (a_shape[1], a_shape[0]) } else { (a_shape[0], a_shape[1]) };
    let n = out_shape[1];
    let bf: Vec<f64> = b.iter().copied().collect();
    let (b0, b1) = (b.shape()[0], b.shape()[1]);
    let b_at = |kk: usize, j: usize| if trans_b { bf[j * b1 + kk] } else { bf[kk * b1 + j] };
    if (trans_b && (b0 != n || b1 != k)) || (!trans_b && (b0 != k || b1 != n)) {
        return Err(format!("Gemm shapes {a_shape:?} and {:?} do not fit", b.shape()));
    }
    let mut entries = Vec::with_capacity(m * n * k);
    for i in 0..m {
        for j in 0..n {
            for kk in 0..k {
                let col = if trans_a { kk * m + i } else { i * k + kk };
                entries.push((i * n + j, col, alpha * b_at(kk, j)));
            }
        }
    }
    Ok(matrix(m * n, m * k, entries))
}

fn reduce(in_shape: &[usize], axes: &[usize], mean: bool) -> CsMat<f64> {
    let count: usize = axes.iter().map(|&a| in_shape[a]).product();
    let kept: Vec<usize> = in_shape.iter().enumerate().map(|(a, &d)| if axes.contains(&a) { 1 } else { d }).collect();
    let kept_strides = strides(&kept);
    let in_strides = strides(in_shape);
    let total: usize = in_shape.iter().product();
    let weight = if mean { 1.0 / count as f64 } else { 1.0 };
    let entries = (0..total).map(|flat| {
        let mut row = 0;
        for axis in 0..in_shape.len() {
            if !axes.contains(&axis) {
                row += (flat / in_strides[axis]) % in_shape[axis] * kept_strides[axis];
            }
        }
        (row, flat, weight)
    });
    matrix(kept.iter().product(), total, entries)
}

fn average_pool(
    in_shape: &[usize],
    kernel: [usize; 2],
    stride: [usize; 2],
    pads: [usize; 4],
    count_include_pad: bool,
    out_shape: &[usize],
) -> CsMat<f64> {
    let (channels, h, w) = (in_shape[0] * in_shape[1], in_shape[2], in_shape[3]);
    let (oh, ow) = (out_shape[2], out_shape[3]);
    let mut entries = Vec::new();
    for c in 0..channels {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut window = Vec::new();
                let mut padded = 0;
                for ky in 0..kernel[0] {
                    for kx in 0..kernel[1] {
                        let y = (oy * stride[0] + ky) as isize - pads[0] as isize;
                        let x = (ox * stride[1] + kx) as isize - pads[1] as isize;
                        let inside_pads = y < (h + pads[2]) as isize && x < (w + pads[3]) as isize;
                        if y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < w {
                            window.push((c * h + y as usize) * w + x as usize);
                        } else if inside_pads {
                            padded += 1;
                        }
                    }
                }
                let divisor = if count_include_pad { window.len() + padded } else { window.len() };
                let row = (c * oh + oy) * ow + ox;
                entries.extend(window.into_iter().map(|col| (row, col, 1.0 / divisor.max(1) as f64)));
            }
        }
    }
    matrix(channels * oh * ow, channels * h * w, entries)
}
