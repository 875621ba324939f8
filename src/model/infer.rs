//! Static shape inference for canonical ops.

use super::graph::Op;

/// numpy broadcasting of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
        let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(format!("shapes {a:?} and {b:?} do not broadcast"));
        };
    }
    Ok(out)
}

/// Output size of a pooling / convolution window along one axis, with PyTorch's ceil-mode rule
/// (the last window must start inside the input or the leading padding).
pub fn window_out(
    input: usize,
    kernel: usize,
    stride: usize,
    pad_begin: usize,
    pad_end: usize,
    dilation: usize,
    ceil: bool,
) -> Result<usize, String> {
    if stride == 0 || kernel == 0 || dilation == 0 {
        return Err("kernel, stride and dilation must be positive".into());
    }
    let eff = dilation.checked_mul(kernel - 1).and_then(|x| x.checked_add(1)).ok_or("kernel too large")?;
    let padded = input + pad_begin + pad_end;
    if padded < eff {
        return Err(format!("window of size {eff} does not fit in padded input of size {padded}"));
    }
    let span = padded - eff;
    let mut out = if ceil { span.div_ceil(stride) + 1 } else { span / stride + 1 };
    if ceil && (out - 1) * stride >= input + pad_begin {
        out -= 1;
    }
    Ok(out)
}

fn want(inputs: &[&[usize]], lo: usize, hi: usize) -> Result<(), String> {
    if inputs.len() < lo || inputs.len() > hi {
        return Err(format!("expected {lo}..={hi} inputs, got {}", inputs.len()));
    }
    Ok(())
}

fn product(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b))
}

/// numpy matmul output shape.
pub fn matmul_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    if a.is_empty() || b.is_empty() {
        return Err("matmul operands must have rank >= 1".into());
    }
    let a2: Vec<usize> = if a.len() == 1 { vec![1, a[0]] } else { a.to_vec() };
    let b2: Vec<usize> = if b.len() == 1 { vec![b[0], 1] } else { b.to_vec() };
    let (m, k1) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k1 != k2 {
        return Err(format!("matmul inner dimensions differ: {a:?} @ {b:?}"));
    }
    let mut out = broadcast(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    Ok(out)
}

fn pool2d(
    x: &[usize],
    kernel: [usize; 2],
    strides: [usize; 2],
    pads: [usize; 4],
    dil: [usize; 2],
    ceil: bool,
) -> Result<Vec<usize>, String> {
    if x.len() != 4 {
        return Err(format!("expected a 4-D input [N,C,H,W], got {x:?}"));
    }
    let h = window_out(x[2], kernel[0], strides[0], pads[0], pads[2], dil[0], ceil)?;
    let w = window_out(x[3], kernel[1], strides[1], pads[1], pads[3], dil[1], ceil)?;
    Ok(vec![x[0], x[1], h, w])
}

fn reduce(x: &[usize], axes: &[usize], keepdims: bool) -> Result<Vec<usize>, String> {
    if axes.iter().any(|&a| a >= x.len()) {
        return Err(format!("reduction axes {axes:?} out of range for rank {}", x.len()));
    }
    Ok(x.iter()
        .enumerate()
        .filter_map(|(i, &d)| if axes.contains(&i) { keepdims.then_some(1) } else { Some(d) })
        .collect())
}

/// Output shape of `op` applied to inputs of the given shapes. `hint` is the required target
/// for `Reshape` and `Expand` (ignored otherwise).
pub fn output_shape(op: &Op, inputs: &[&[usize]], hint: Option<&[usize]>) -> Result<Vec<usize>, String> {
    match op {
        Op::Conv { strides, pads, dilations, groups } => {
            want(inputs, 2, 3)?;
            let (x, w) = (inputs[0], inputs[1]);
            if x.len() != 4 || w.len() != 4 {
                return Err(format!("Conv expects 4-D input and weight, got {x:?} and {w:?}"));
            }
            let g = *groups;
            if g == 0 || x[1] != w[1] * g || w[0] % g != 0 {
                return Err(format!("Conv channels mismatch: input {x:?}, weight {w:?}, groups {g}"));
            }
            if inputs.len() == 3 && inputs[2] != [w[0]] {
                return Err(format!("Conv bias shape {:?} should be [{}]", inputs[2], w[0]));
            }
            let h = window_out(x[2], w[2], strides[0], pads[0], pads[2], dilations[0], false)?;
            let ww = window_out(x[3], w[3], strides[1], pads[1], pads[3], dilations[1], false)?;
            Ok(vec![x[0], w[0], h, ww])
        }
        Op::MatMul => {
            want(inputs, 2, 2)?;
            matmul_shape(inputs[0], inputs[1])
        }
        Op::Gemm { trans_a, trans_b, .. } => {
            want(inputs, 2, 3)?;
            let (a, b) = (inputs[0], inputs[1]);
            if a.len() != 2 || b.len() != 2 {
                return Err(format!("Gemm expects 2-D operands, got {a:?} and {b:?}"));
            }
            let (m, k1) = if *trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
            let (k2, n) = if *trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
            if k1 != k2 {
                return Err(format!("Gemm inner dimensions differ: {a:?}, {b:?}"));
            }
            if inputs.len() == 3 {
                let c = broadcast(&[m, n], inputs[2])?;
                if c != [m, n] {
                    return Err(format!("Gemm C of shape {:?} does not broadcast to [{m}, {n}]", inputs[2]));
                }
            }
            Ok(vec![m, n])
        }
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Pow | Op::Max | Op::DivSqrt | Op::ScaledGelu { .. } => {
            want(inputs, 2, 2)?;
            broadcast(inputs[0], inputs[1])
        }
        Op::Neg
        | Op::Relu
        | Op::LeakyRelu { .. }
        | Op::Gelu { .. }
        | Op::Sigmoid
        | Op::Tanh
        | Op::HardSigmoid { .. }
        | Op::HardSwish
        | Op::Softplus
        | Op::Exp
        | Op::Abs
        | Op::Sqrt
        | Op::Erf
        | Op::Square => {
            want(inputs, 1, 1)?;
            Ok(inputs[0].to_vec())
        }
        Op::Softmax { axis } => {
            want(inputs, 1, 1)?;
            if *axis >= inputs[0].len() {
                return Err(format!("softmax axis {axis} out of range for {:?}", inputs[0]));
            }
            Ok(inputs[0].to_vec())
        }
        Op::ReduceMean { axes, keepdims } | Op::ReduceSum { axes, keepdims } => {
            want(inputs, 1, 1)?;
            reduce(inputs[0], axes, *keepdims)
        }
        Op::LayerNorm { axis, .. } => {
            want(inputs, 2, 3)?;
            let x = inputs[0];
            if *axis >= x.len() {
                return Err(format!("LayerNorm axis {axis} out of range for {x:?}"));
            }
            let norm = &x[*axis..];
            for p in &inputs[1..] {
                if broadcast(norm, p)? != norm {
                    return Err(format!("LayerNorm parameter shape {p:?} does not fit normalised shape {norm:?}"));
                }
            }
            Ok(x.to_vec())
        }
        Op::BatchNorm { .. } => {
            want(inputs, 5, 5)?;
            let x = inputs[0];
            if x.len() < 2 {
                return Err(format!("BatchNorm expects rank >= 2, got {x:?}"));
            }
            for p in &inputs[1..] {
                if product(p) != Some(x[1]) {
                    return Err(format!("BatchNorm parameter of shape {p:?} should have {} elements", x[1]));
                }
            }
            Ok(x.to_vec())
        }
        Op::MaxPool { kernel, strides, pads, dilations, ceil_mode } => {
            want(inputs, 1, 1)?;
            pool2d(inputs[0], *kernel, *strides, *pads, *dilations, *ceil_mode)
        }
        Op::AveragePool { kernel, strides, pads, ceil_mode, .. } => {
            want(inputs, 1, 1)?;
            pool2d(inputs[0], *kernel, *strides, *pads, [1, 1], *ceil_mode)
        }
        Op::GlobalAveragePool => {
            want(inputs, 1, 1)?;
            let x = inputs[0];
            if x.len() < 3 {
                return Err(format!("GlobalAveragePool expects rank >= 3, got {x:?}"));
            }
            let mut out = x.to_vec();
            out[2..].iter_mut().for_each(|d| *d = 1);
            Ok(out)
        }
        Op::Reshape => {
            want(inputs, 1, 1)?;
            let target = hint.ok_or("Reshape needs a target shape")?;
            if product(target) != product(inputs[0]) {
                return Err(format!("cannot reshape {:?} to {target:?}", inputs[0]));
            }
            Ok(target.to_vec())
        }
        Op::Expand => {
            want(inputs, 1, 1)?;
            let target = hint.ok_or("Expand needs a target shape")?;
            let b = broadcast(inputs[0], target)?;
            if b != target {
                return Err(format!("cannot expand {:?} to {target:?}", inputs[0]));
            }
            Ok(b)
        }
        Op::Transpose { perm } => {
            want(inputs, 1, 1)?;
            let x = inputs[0];
            let mut seen = vec![false; x.len()];
            if perm.len() != x.len() || perm.iter().any(|&p| p >= x.len() || std::mem::replace(&mut seen[p], true)) {
                return Err(format!("invalid permutation {perm:?} for rank {}", x.len()));
            }
            Ok(perm.iter().map(|&p| x[p]).collect())
        }
        Op::Concat { axis } => {
            if inputs.is_empty() {
                return Err("Concat needs at least one input".into());
            }
            let first = inputs[0];
            if *axis >= first.len() {
                return Err(format!("Concat axis {axis} out of range for {first:?}"));
            }
            let mut out = first.to_vec();
            out[*axis] = 0;
            for s in inputs {
                if s.len() != first.len() || s.iter().zip(first).enumerate().any(|(i, (a, b))| i != *axis && a != b) {
                    return Err(format!("Concat inputs {first:?} and {s:?} disagree off axis {axis}"));
                }
                out[*axis] += s[*axis];
            }
            Ok(out)
        }
        Op::Slice { starts, ends, axes, steps } => {
            want(inputs, 1, 1)?;
            let mut out = inputs[0].to_vec();
            if starts.len() != axes.len() || ends.len() != axes.len() || steps.len() != axes.len() {
                return Err("Slice lists have different lengths".into());
            }
            for i in 0..axes.len() {
                let a = axes[i];
                if a >= out.len() || steps[i] == 0 || starts[i] > inputs[0][a] || ends[i] > inputs[0][a] {
                    return Err(format!("Slice parameters out of range for {:?}", inputs[0]));
                }
                out[a] = if ends[i] > starts[i] { (ends[i] - starts[i]).div_ceil(steps[i]) } else { 0 };
            }
            Ok(out)
        }
        Op::Gather { axis, indices } => {
            want(inputs, 1, 1)?;
            let x = inputs[0];
            if *axis >= x.len() {
                return Err(format!("Gather axis {axis} out of range for {x:?}"));
            }
            if indices.iter().any(|&i| i < 0 || i as u64 >= x[*axis] as u64) {
                return Err(format!("Gather indices out of range for axis {axis} of {x:?}"));
            }
            let mut out = x[..*axis].to_vec();
            out.extend_from_slice(indices.shape());
            out.extend_from_slice(&x[axis + 1..]);
            Ok(out)
        }
        Op::Pad { pads, .. } => {
            want(inputs, 1, 1)?;
            if pads.len() != inputs[0].len() {
                return Err(format!("Pad has {} axis pairs for rank {}", pads.len(), inputs[0].len()));
            }
            Ok(inputs[0].iter().zip(pads).map(|(&d, &(b, a))| d + b + a).collect())
        }
    }
}
