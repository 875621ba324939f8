//! Dense reference evaluator over `ndarray` arrays, generic over the element type. Constants
//! are read in place through [`Tensor::view`](super::tensor::Tensor::view), converted only for
//! the op that reads them when the evaluation precision differs from the stored one.

use ndarray::{concatenate, s, Array2, Array3, ArrayD, ArrayViewD, Axis, CowArray, Ix4, IxDyn, Slice, Zip};

use super::error::ModelError;
use super::graph::{Graph, Node, Op, ValueId};
use super::infer::{broadcast, matmul_shape};
use super::tensor::Tensor;
use crate::real::Real;

impl Graph {
    /// Evaluates the graph on `input` (whose shape must equal the input value's shape) and
    /// returns the output. Intermediate values are dropped after their last use.
    pub fn evaluate<F: Real>(&self, input: &ArrayD<F>) -> Result<ArrayD<F>, ModelError> {
        let mut last_use = vec![usize::MAX; self.values.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for &x in &n.inputs {
                if let Some(l) = last_use.get_mut(x) {
                    *l = i;
                }
            }
        }
        let mut values = self.run(input, |values, i| {
            for &x in &self.nodes[i].inputs {
                if last_use[x] == i && x != self.output {
                    values[x] = None;
                }
            }
        })?;
        match (values.get_mut(self.output).and_then(Option::take), self.constant(self.output)) {
            (Some(out), _) => Ok(out),
            (None, Some(c)) => Ok(c.view::<F>().into_owned()),
            (None, None) => Err(self.eval_err("output", "graph output was never computed")),
        }
    }

    /// Evaluates the graph and returns every computed value, indexed by
    /// [`crate::model::ValueId`]: the input and every node output. Constants are `None` (read
    /// them with [`Graph::constant`]), as are values no node computes.
    pub fn evaluate_all<F: Real>(&self, input: &ArrayD<F>) -> Result<Vec<Option<ArrayD<F>>>, ModelError> {
        self.run(input, |_, _| {})
    }

    fn eval_err(&self, node: &str, detail: &str) -> ModelError {
        ModelError::Eval { node: node.into(), op: "-".into(), detail: detail.into() }
    }

    /// A computed value, or a constant in precision `F`.
    fn operand<'a, F: Real>(&'a self, values: &'a [Option<ArrayD<F>>], x: ValueId) -> Option<CowArray<'a, F, IxDyn>> {
        match values.get(x).and_then(Option::as_ref) {
            Some(a) => Some(a.view().into()),
            None => self.constant(x).map(|c| c.view::<F>()),
        }
    }

    fn run<F: Real>(
        &self,
        input: &ArrayD<F>,
        mut after: impl FnMut(&mut Vec<Option<ArrayD<F>>>, usize),
    ) -> Result<Vec<Option<ArrayD<F>>>, ModelError> {
        let mut values: Vec<Option<ArrayD<F>>> = vec![None; self.values.len()];
        let inp = self.values.get(self.input).ok_or_else(|| self.eval_err("input", "graph input id out of range"))?;
        if input.shape() != inp.shape.as_slice() {
            return Err(self.eval_err(
                &inp.name,
                &format!("input has shape {:?}, the model expects {:?}", input.shape(), inp.shape),
            ));
        }
        values[self.input] = Some(input.clone());
        for (i, n) in self.nodes.iter().enumerate() {
            let err = |detail: String| ModelError::Eval { node: n.name.clone(), op: n.op.name().into(), detail };
            if let Some(out) = self.blocked_product(n, &values) {
                values[n.output] = Some(out.map_err(err)?);
                after(&mut values, i);
                continue;
            }
            let mut ins = Vec::with_capacity(n.inputs.len());
            for &x in &n.inputs {
                match self.operand(&values, x) {
                    Some(a) => ins.push(a),
                    None => {
                        return Err(err(format!("input value {x} is not available (graph not topologically sorted?)")))
                    }
                }
            }
            let views: Vec<ArrayViewD<F>> = ins.iter().map(|a| a.view()).collect();
            let out_shape = &self.values.get(n.output).ok_or_else(|| err("output id out of range".into()))?.shape;
            let out = eval_op(&n.op, &views, out_shape).map_err(err)?;
            if out.shape() != out_shape.as_slice() {
                return Err(err(format!("computed shape {:?} but the graph declares {:?}", out.shape(), out_shape)));
            }
            values[n.output] = Some(out);
            after(&mut values, i);
        }
        Ok(values)
    }
}

/// Weights of more elements than this, stored in another precision than an evaluation's, are
/// converted a block of outputs at a time: a large float32 matrix evaluated in double precision
/// is never copied whole.
const BLOCKED_WEIGHTS: usize = 1 << 22;

/// Elements of converted weights per block.
const WEIGHT_BLOCK: usize = 1 << 20;

impl Graph {
    /// `x @ W` (MatMul) or `Gemm(x, W, C)` with a large constant `W` stored in another precision
    /// than `F`, evaluated a block of output columns at a time; `None` for any other node.
    fn blocked_product<F: Real>(&self, n: &Node, values: &[Option<ArrayD<F>>]) -> Option<Result<ArrayD<F>, String>> {
        let transposed = match n.op {
            Op::MatMul => false,
            Op::Gemm { trans_a: false, trans_b, .. } => trans_b,
            _ => return None,
        };
        let x = values.get(*n.inputs.first()?)?.as_ref()?;
        let w = self.constant(*n.inputs.get(1)?)?;
        let converted = matches!((w, F::NAME), (Tensor::F32(_), "f64") | (Tensor::F64(_), "f32"));
        if !converted || w.len() <= BLOCKED_WEIGHTS || w.ndim() != 2 {
            return None;
        }
        let out_shape = &self.values[n.output].shape;
        let (k, columns) = if transposed { (w.shape()[1], w.shape()[0]) } else { (w.shape()[0], w.shape()[1]) };
        if out_shape.last() != Some(&columns) {
            return None;
        }
        let c = match n.inputs.get(2) {
            Some(&c) => match self.operand(values, c) {
                Some(c) => Some(match c.broadcast(IxDyn(out_shape)) {
                    Some(b) => b.to_owned(),
                    None => return Some(Err(format!("Gemm's C of shape {:?} does not broadcast", c.shape()))),
                }),
                None => return None,
            },
            None => None,
        };
        let mut out = ArrayD::<F>::zeros(IxDyn(out_shape));
        let last = Axis(out_shape.len() - 1);
        let step = (WEIGHT_BLOCK / k.max(1)).max(1);
        for start in (0..columns).step_by(step) {
            let range = start..(start + step).min(columns);
            let weight_axis = Axis(if transposed { 0 } else { 1 });
            let block: ArrayD<F> = match w {
                Tensor::F32(a) => a.slice_axis(weight_axis, Slice::from(range.clone())).mapv(|v| F::of(v as f64)),
                Tensor::F64(a) => a.slice_axis(weight_axis, Slice::from(range.clone())).mapv(F::of),
            };
            let mut block_shape = out_shape.clone();
            *block_shape.last_mut().expect("a matrix product has axes") = range.len();
            let mut inputs = vec![x.view(), block.view()];
            let c_block = c.as_ref().map(|c| c.slice_axis(last, Slice::from(range.clone())).to_owned());
            if let Some(c_block) = &c_block {
                inputs.push(c_block.view());
            }
            let y = match eval_op(&n.op, &inputs, &block_shape) {
                Ok(y) => y,
                Err(e) => return Some(Err(e)),
            };
            out.slice_axis_mut(last, Slice::from(range)).assign(&y);
        }
        Some(Ok(out))
    }
}

fn arity<F>(inputs: &[ArrayViewD<F>], lo: usize, hi: usize) -> Result<(), String> {
    if inputs.len() < lo || inputs.len() > hi {
        return Err(format!("expected {lo}..={hi} inputs, got {}", inputs.len()));
    }
    Ok(())
}

fn zip2<F: Real>(a: &ArrayViewD<F>, b: &ArrayViewD<F>, f: impl Fn(F, F) -> F) -> Result<ArrayD<F>, String> {
    let shape = broadcast(a.shape(), b.shape())?;
    let av = a.broadcast(IxDyn(&shape)).ok_or("broadcast failed")?;
    let bv = b.broadcast(IxDyn(&shape)).ok_or("broadcast failed")?;
    Ok(Zip::from(&av).and(&bv).map_collect(|&x, &y| f(x, y)).as_standard_layout().into_owned())
}

fn std_vec<F: Real>(a: &ArrayViewD<F>) -> Vec<F> {
    a.iter().copied().collect()
}

fn shaped<F: Real>(shape: &[usize], data: Vec<F>) -> Result<ArrayD<F>, String> {
    ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|e| format!("cannot build array of shape {shape:?}: {e}"))
}

/// Applies one op to evaluated inputs. `out_shape` is the declared output shape (used by
/// `Reshape` and `Expand`).
pub fn eval_op<F: Real>(op: &Op, inputs: &[ArrayViewD<F>], out_shape: &[usize]) -> Result<ArrayD<F>, String> {
    let unary = |f: &dyn Fn(F) -> F| -> Result<ArrayD<F>, String> {
        arity(inputs, 1, 1)?;
        Ok(inputs[0].mapv(f))
    };
    let binary = |f: &dyn Fn(F, F) -> F| -> Result<ArrayD<F>, String> {
        arity(inputs, 2, 2)?;
        zip2(&inputs[0], &inputs[1], f)
    };
    let half = F::of(0.5);
    let one = F::one();
    match op {
        Op::Conv { strides, pads, dilations, groups } => {
            arity(inputs, 2, 3)?;
            conv2d(&inputs[0], &inputs[1], inputs.get(2), *strides, *pads, *dilations, *groups)
        }
        Op::MatMul => {
            arity(inputs, 2, 2)?;
            matmul(&inputs[0], &inputs[1])
        }
        Op::Gemm { alpha, beta, trans_a, trans_b } => {
            arity(inputs, 2, 3)?;
            let a = inputs[0].view().into_dimensionality::<ndarray::Ix2>().map_err(|e| e.to_string())?;
            let b = inputs[1].view().into_dimensionality::<ndarray::Ix2>().map_err(|e| e.to_string())?;
            let a = if *trans_a { a.reversed_axes() } else { a };
            let b = if *trans_b { b.reversed_axes() } else { b };
            if a.ncols() != b.nrows() {
                return Err(format!("Gemm inner dimensions differ: {:?} @ {:?}", a.shape(), b.shape()));
            }
            let mut y = a.dot(&b);
            if *alpha != 1.0 {
                let al = F::of(*alpha);
                y.mapv_inplace(|v| v * al);
            }
            let mut y = y.into_dyn();
            if let Some(c) = inputs.get(2) {
                let be = F::of(*beta);
                y = zip2(&y.view(), c, |p, q| p + be * q)?;
            }
            Ok(y)
        }
        Op::Add => binary(&|a, b| a + b),
        Op::Sub => binary(&|a, b| a - b),
        Op::Mul => binary(&|a, b| a * b),
        Op::Div => binary(&|a, b| a / b),
        Op::Pow => binary(&|a, b| a.powf(b)),
        Op::Max => binary(&|a, b| if a.is_nan() || a >= b { a } else { b }),
        Op::DivSqrt => binary(&|a, b| a / b.sqrt()),
        Op::Neg => unary(&|x| -x),
        Op::Relu => unary(&|x| if x > F::zero() { x } else { F::zero() }),
        Op::LeakyRelu { alpha } => {
            let al = F::of(*alpha);
            unary(&|x| if x >= F::zero() { x } else { al * x })
        }
        Op::Gelu { tanh: false } => {
            let r = F::of(std::f64::consts::FRAC_1_SQRT_2);
            unary(&|x| half * x * (one + (x * r).erf()))
        }
        Op::Gelu { tanh: true } => {
            let c = F::of((2.0 / std::f64::consts::PI).sqrt());
            let k = F::of(0.044715);
            unary(&|x| half * x * (one + (c * (x + k * x * x * x)).tanh()))
        }
        Op::Sigmoid => unary(&|x| one / (one + (-x).exp())),
        Op::Tanh => unary(&|x| x.tanh()),
        Op::Exp => unary(&|x| x.exp()),
        Op::Abs => unary(&|x| x.abs()),
        Op::Sqrt => unary(&|x| x.sqrt()),
        Op::Erf => unary(&|x| x.erf()),
        Op::Square => unary(&|x| x * x),
        Op::Softmax { axis } => {
            arity(inputs, 1, 1)?;
            if *axis >= inputs[0].ndim() {
                return Err(format!("softmax axis {axis} out of range"));
            }
            let mut y = inputs[0].as_standard_layout().into_owned();
            for mut lane in y.lanes_mut(Axis(*axis)) {
                let m = lane.iter().copied().fold(F::neg_infinity(), F::max);
                lane.mapv_inplace(|v| (v - m).exp());
                let s: F = lane.iter().copied().sum();
                lane.mapv_inplace(|v| v / s);
            }
            Ok(y)
        }
        Op::ReduceMean { axes, keepdims } | Op::ReduceSum { axes, keepdims } => {
            arity(inputs, 1, 1)?;
            let x = &inputs[0];
            if axes.iter().any(|&a| a >= x.ndim()) {
                return Err(format!("reduction axes {axes:?} out of range"));
            }
            let mut sorted = axes.clone();
            sorted.sort_unstable();
            sorted.dedup();
            let mut y: Option<ArrayD<F>> = None;
            let mut count = 1usize;
            for &a in sorted.iter().rev() {
                count *= x.shape()[a];
                let mut sum = match y {
                    Some(y) => y.sum_axis(Axis(a)),
                    None => x.sum_axis(Axis(a)),
                };
                if *keepdims {
                    sum = sum.insert_axis(Axis(a));
                }
                y = Some(sum);
            }
            let mut y = y.unwrap_or_else(|| x.to_owned());
            if matches!(op, Op::ReduceMean { .. }) {
                let c = F::of(count as f64);
                y.mapv_inplace(|v| v / c);
            }
            Ok(y)
        }
        Op::LayerNorm { axis, epsilon } => {
            arity(inputs, 2, 3)?;
            let x = &inputs[0];
            if *axis >= x.ndim() {
                return Err(format!("LayerNorm axis {axis} out of range"));
            }
            let inner: usize = x.shape()[*axis..].iter().product();
            let outer: usize = x.shape()[..*axis].iter().product();
            let mut y = Array2::from_shape_vec((outer, inner), std_vec(x)).map_err(|e| e.to_string())?;
            let eps = F::of(*epsilon);
            let n = F::of(inner as f64);
            for mut row in y.rows_mut() {
                let mean = row.iter().copied().sum::<F>() / n;
                let var = row.iter().map(|&v| (v - mean) * (v - mean)).sum::<F>() / n;
                let d = (var + eps).sqrt();
                row.mapv_inplace(|v| (v - mean) / d);
            }
            let y = shaped(x.shape(), y.into_raw_vec_and_offset().0)?;
            let y = zip2(&y.view(), &inputs[1], |a, b| a * b)?;
            match inputs.get(2) {
                Some(b) => zip2(&y.view(), b, |a, b| a + b),
                None => Ok(y),
            }
        }
        Op::BatchNorm { epsilon } => {
            arity(inputs, 5, 5)?;
            let x = &inputs[0];
            if x.ndim() < 2 {
                return Err("BatchNorm expects rank >= 2".into());
            }
            let c = x.shape()[1];
            let p: Vec<Vec<F>> = inputs[1..].iter().map(|a| a.iter().copied().collect()).collect();
            if p.iter().any(|v| v.len() != c) {
                return Err(format!("BatchNorm parameters must have {c} elements"));
            }
            let eps = F::of(*epsilon);
            let mut y = x.as_standard_layout().into_owned();
            for (ch, mut sub) in y.axis_iter_mut(Axis(1)).enumerate() {
                let (sc, bi, me, va) = (p[0][ch], p[1][ch], p[2][ch], p[3][ch]);
                let d = (va + eps).sqrt();
                sub.mapv_inplace(|v| (v - me) / d * sc + bi);
            }
            Ok(y)
        }
        Op::MaxPool { kernel, strides, pads, dilations, .. } => {
            arity(inputs, 1, 1)?;
            pool(&inputs[0], out_shape, *kernel, *strides, *pads, *dilations, PoolKind::Max)
        }
        Op::AveragePool { kernel, strides, pads, count_include_pad, .. } => {
            arity(inputs, 1, 1)?;
            pool(
                &inputs[0],
                out_shape,
                *kernel,
                *strides,
                *pads,
                [1, 1],
                PoolKind::Avg { include_pad: *count_include_pad },
            )
        }
        Op::GlobalAveragePool => {
            arity(inputs, 1, 1)?;
            let x = &inputs[0];
            if x.ndim() < 3 {
                return Err("GlobalAveragePool expects rank >= 3".into());
            }
            let axes: Vec<usize> = (2..x.ndim()).collect();
            eval_op(&Op::ReduceMean { axes, keepdims: true }, inputs, out_shape)
        }
        Op::Reshape => {
            arity(inputs, 1, 1)?;
            shaped(out_shape, std_vec(&inputs[0]))
        }
        Op::Expand => {
            arity(inputs, 1, 1)?;
            let v = inputs[0]
                .broadcast(IxDyn(out_shape))
                .ok_or_else(|| format!("cannot expand {:?} to {out_shape:?}", inputs[0].shape()))?;
            Ok(v.as_standard_layout().into_owned())
        }
        Op::Transpose { perm } => {
            arity(inputs, 1, 1)?;
            let x = &inputs[0];
            let mut seen = vec![false; x.ndim()];
            if perm.len() != x.ndim() || perm.iter().any(|&p| p >= x.ndim() || std::mem::replace(&mut seen[p], true)) {
                return Err(format!("invalid permutation {perm:?}"));
            }
            Ok(x.view().permuted_axes(IxDyn(perm)).as_standard_layout().into_owned())
        }
        Op::Concat { axis } => {
            if inputs.is_empty() {
                return Err("Concat needs inputs".into());
            }
            concatenate(Axis(*axis), inputs)
                .map(|a| a.as_standard_layout().into_owned())
                .map_err(|e| format!("cannot concatenate: {e}"))
        }
        Op::Slice { starts, ends, axes, steps } => {
            arity(inputs, 1, 1)?;
            let x = &inputs[0];
            if starts.len() != axes.len() || ends.len() != axes.len() || steps.len() != axes.len() {
                return Err("Slice lists have different lengths".into());
            }
            for i in 0..axes.len() {
                if axes[i] >= x.ndim()
                    || starts[i] > x.shape()[axes[i]]
                    || ends[i] > x.shape()[axes[i]]
                    || steps[i] == 0
                {
                    return Err("Slice parameters out of range".into());
                }
            }
            let v = x.slice_each_axis(|ad| match axes.iter().position(|&a| a == ad.axis.index()) {
                Some(i) => Slice::new(starts[i] as isize, Some(ends[i].max(starts[i]) as isize), steps[i] as isize),
                None => Slice::from(..),
            });
            Ok(v.as_standard_layout().into_owned())
        }
        Op::Gather { axis, indices } => {
            arity(inputs, 1, 1)?;
            let x = &inputs[0];
            if *axis >= x.ndim() {
                return Err(format!("Gather axis {axis} out of range"));
            }
            let dim = x.shape()[*axis];
            let mut idx = Vec::with_capacity(indices.len());
            for &i in indices.iter() {
                if i < 0 || i as u64 >= dim as u64 {
                    return Err(format!("Gather index {i} out of range for size {dim}"));
                }
                idx.push(i as usize);
            }
            let sel = x.select(Axis(*axis), &idx);
            let mut shape = x.shape()[..*axis].to_vec();
            shape.extend_from_slice(indices.shape());
            shape.extend_from_slice(&x.shape()[axis + 1..]);
            shaped(&shape, std_vec(&sel.view()))
        }
        Op::Pad { pads, value } => {
            arity(inputs, 1, 1)?;
            let x = &inputs[0];
            if pads.len() != x.ndim() {
                return Err("Pad rank mismatch".into());
            }
            let shape: Vec<usize> = x.shape().iter().zip(pads).map(|(&d, &(b, a))| d + b + a).collect();
            let mut y = ArrayD::from_elem(IxDyn(&shape), F::of(*value));
            y.slice_each_axis_mut(|ad| {
                let (b, _) = pads[ad.axis.index()];
                Slice::from(b..b + x.shape()[ad.axis.index()])
            })
            .assign(x);
            Ok(y)
        }
    }
}

fn matmul<F: Real>(a: &ArrayViewD<F>, b: &ArrayViewD<F>) -> Result<ArrayD<F>, String> {
    let out_shape = matmul_shape(a.shape(), b.shape())?;
    let a2 = if a.ndim() == 1 { a.view().insert_axis(Axis(0)) } else { a.view() };
    let b2 = if b.ndim() == 1 { b.view().insert_axis(Axis(1)) } else { b.view() };
    let (m, k) = (a2.shape()[a2.ndim() - 2], a2.shape()[a2.ndim() - 1]);
    let n = b2.shape()[b2.ndim() - 1];
    let batch = broadcast(&a2.shape()[..a2.ndim() - 2], &b2.shape()[..b2.ndim() - 2])?;
    let nb: usize = batch.iter().product();
    let mut ash = batch.clone();
    ash.extend([m, k]);
    let mut bsh = batch.clone();
    bsh.extend([k, n]);
    if b2.ndim() == 2 && nb > 1 && a2.shape()[..a2.ndim() - 2].iter().product::<usize>() == nb {
        // One matrix for every row of a batch: a single product.
        let am = a2.as_standard_layout();
        let am = am.view().into_shape_with_order((nb * m, k)).map_err(|e| e.to_string())?;
        let bm = b2.view().into_dimensionality::<ndarray::Ix2>().map_err(|e| e.to_string())?;
        return shaped(&out_shape, am.dot(&bm).into_raw_vec_and_offset().0);
    }
    let av = a2.broadcast(IxDyn(&ash)).ok_or("broadcast failed")?;
    let bv = b2.broadcast(IxDyn(&bsh)).ok_or("broadcast failed")?;
    let out = if nb == 1 {
        let (am, bm) = (av.as_standard_layout(), bv.as_standard_layout());
        let am = am.view().into_shape_with_order((m, k)).map_err(|e| e.to_string())?;
        let bm = bm.view().into_shape_with_order((k, n)).map_err(|e| e.to_string())?;
        am.dot(&bm).into_raw_vec_and_offset().0
    } else {
        let a3 = Array3::from_shape_vec((nb, m, k), std_vec(&av)).map_err(|e| e.to_string())?;
        let b3 = Array3::from_shape_vec((nb, k, n), std_vec(&bv)).map_err(|e| e.to_string())?;
        let mut o = Vec::with_capacity(nb * m * n);
        for i in 0..nb {
            let r = a3.slice(s![i, .., ..]).dot(&b3.slice(s![i, .., ..]));
            o.extend(r.iter().copied());
        }
        o
    };
    shaped(&out_shape, out)
}

#[allow(clippy::too_many_arguments)]
fn conv2d<F: Real>(
    x: &ArrayViewD<F>,
    w: &ArrayViewD<F>,
    bias: Option<&ArrayViewD<F>>,
    strides: [usize; 2],
    pads: [usize; 4],
    dil: [usize; 2],
    groups: usize,
) -> Result<ArrayD<F>, String> {
    let shape =
        super::infer::output_shape(&Op::Conv { strides, pads, dilations: dil, groups }, &[x.shape(), w.shape()], None)?;
    let x4 = x.view().into_dimensionality::<Ix4>().map_err(|e| e.to_string())?;
    let (nbatch, _, h, wd) = x4.dim();
    let (m, cg, kh, kw) = (w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]);
    let (oh, ow) = (shape[2], shape[3]);
    let mg = m / groups;
    let kk = cg * kh * kw;
    let w = w.as_standard_layout();
    let wmat = w.view().into_shape_with_order((m, kk)).map_err(|e| e.to_string())?;
    let bias: Option<Vec<F>> = bias.map(|b| b.iter().copied().collect());
    if bias.as_ref().is_some_and(|b| b.len() != m) {
        return Err("Conv bias length differs from output channels".into());
    }
    let mut out = vec![F::zero(); nbatch * m * oh * ow];
    let mut cols = Array2::<F>::zeros((kk, oh * ow));
    for nb in 0..nbatch {
        for g in 0..groups {
            cols.fill(F::zero());
            for c in 0..cg {
                let xc = x4.slice(s![nb, g * cg + c, .., ..]);
                for ki in 0..kh {
                    for kj in 0..kw {
                        let row = (c * kh + ki) * kw + kj;
                        let mut r = cols.row_mut(row);
                        for oy in 0..oh {
                            let iy = (oy * strides[0] + ki * dil[0]) as isize - pads[0] as isize;
                            if iy < 0 || iy as usize >= h {
                                continue;
                            }
                            for ox in 0..ow {
                                let ix = (ox * strides[1] + kj * dil[1]) as isize - pads[1] as isize;
                                if ix >= 0 && (ix as usize) < wd {
                                    r[oy * ow + ox] = xc[[iy as usize, ix as usize]];
                                }
                            }
                        }
                    }
                }
            }
            let wg = wmat.slice(s![g * mg..(g + 1) * mg, ..]);
            let y = wg.dot(&cols);
            for (oc, row) in y.rows().into_iter().enumerate() {
                let ch = g * mg + oc;
                let b = bias.as_ref().map_or(F::zero(), |b| b[ch]);
                let base = (nb * m + ch) * oh * ow;
                for (o, &v) in out[base..base + oh * ow].iter_mut().zip(row.iter()) {
                    *o = v + b;
                }
            }
        }
    }
    shaped(&shape, out)
}

enum PoolKind {
    Max,
    Avg { include_pad: bool },
}

fn pool<F: Real>(
    x: &ArrayViewD<F>,
    out_shape: &[usize],
    kernel: [usize; 2],
    strides: [usize; 2],
    pads: [usize; 4],
    dil: [usize; 2],
    kind: PoolKind,
) -> Result<ArrayD<F>, String> {
    let x4 = x.view().into_dimensionality::<Ix4>().map_err(|e| e.to_string())?;
    let (n, c, h, w) = x4.dim();
    if out_shape.len() != 4 || out_shape[0] != n || out_shape[1] != c {
        return Err(format!("bad pool output shape {out_shape:?} for input {:?}", x.shape()));
    }
    let (oh, ow) = (out_shape[2], out_shape[3]);
    let mut out = Vec::with_capacity(n * c * oh * ow);
    for b in 0..n {
        for ch in 0..c {
            let xc = x4.slice(s![b, ch, .., ..]);
            for oy in 0..oh {
                for ox in 0..ow {
                    let y0 = (oy * strides[0]) as isize - pads[0] as isize;
                    let x0 = (ox * strides[1]) as isize - pads[1] as isize;
                    let mut acc = match kind {
                        PoolKind::Max => F::neg_infinity(),
                        PoolKind::Avg { .. } => F::zero(),
                    };
                    let mut valid = 0usize;
                    for ki in 0..kernel[0] {
                        let iy = y0 + (ki * dil[0]) as isize;
                        if iy < 0 || iy as usize >= h {
                            continue;
                        }
                        for kj in 0..kernel[1] {
                            let ix = x0 + (kj * dil[1]) as isize;
                            if ix < 0 || ix as usize >= w {
                                continue;
                            }
                            let v = xc[[iy as usize, ix as usize]];
                            match kind {
                                PoolKind::Max => {
                                    if v > acc || v.is_nan() {
                                        acc = v
                                    }
                                }
                                PoolKind::Avg { .. } => acc += v,
                            }
                            valid += 1;
                        }
                    }
                    if let PoolKind::Avg { include_pad } = kind {
                        let div = if include_pad {
                            // window clipped to the padded extent (PyTorch semantics)
                            let y1 = (y0 + kernel[0] as isize).min((h + pads[2]) as isize);
                            let x1 = (x0 + kernel[1] as isize).min((w + pads[3]) as isize);
                            ((y1 - y0) * (x1 - x0)).max(1) as usize
                        } else {
                            valid.max(1)
                        };
                        acc /= F::of(div as f64);
                    }
                    out.push(acc);
                }
            }
        }
    }
    shaped(out_shape, out)
}
