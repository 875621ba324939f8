//! Dense reference evaluator over `ndarray` arrays, generic over the element type. Constants
//! are read in place through [`Tensor::view`](super::tensor::Tensor::view), converted only for
//! the op that reads them when the evaluation precision differs from the stored one.
//!
//! Convolutions and matrix products run on an optimised GEMM ([`gemm`], one thread per
//! evaluation): callers parallelise over inputs, so results do not depend on the thread count.

mod conv;
mod gemm;
mod matmul;
mod pool;

use ndarray::{concatenate, ArrayD, ArrayViewD, Axis, CowArray, IxDyn, Slice, Zip};

use conv::conv2d;
use matmul::{gemm_op, matmul};
use pool::{pool, PoolKind};

use super::error::ModelError;
use super::graph::{Graph, Node, Op, ValueId};
use super::infer::broadcast;
use super::tensor::Tensor;
use crate::real::Real;

/// A graph made ready for many evaluations in precision `F`: constants stored in the other
/// precision are converted once (up to [`CONVERTED_BYTES`]), not at every evaluation, and the
/// weights of convolutions on small feature maps, where some kernel taps only ever see padding,
/// are laid out once tap by tap so that those taps' weights are never read. Results equal
/// [`Graph::evaluate`]'s up to the order of summation.
pub struct Evaluator<'g, F> {
    graph: &'g Graph,
    prepared: Prepared<F>,
}

/// What an [`Evaluator`] prepares once for every evaluation.
struct Prepared<F> {
    /// The weights of the taps that reach the input, by node index (empty, or `None`, where not
    /// prepared).
    taps: Vec<Option<Vec<F>>>,
    /// Constants converted to `F`, by value id (empty, or `None`, where read as stored).
    constants: Vec<Option<ArrayD<F>>>,
}

impl<F> Prepared<F> {
    fn none() -> Self {
        Prepared { taps: Vec::new(), constants: Vec::new() }
    }
}

/// Most bytes of constants an [`Evaluator`] keeps converted to its precision; the rest are
/// converted at each evaluation.
const CONVERTED_BYTES: usize = 1 << 30;

impl<'g, F: Real> Evaluator<'g, F> {
    /// Prepares `graph`'s constants and convolutions.
    pub fn new(graph: &'g Graph) -> Self {
        let taps = graph.nodes.iter().map(|n| prepared_taps::<F>(graph, n)).collect();
        let mut constants = vec![None; graph.values.len()];
        let mut budget = CONVERTED_BYTES / std::mem::size_of::<F>();
        for n in &graph.nodes {
            for &x in &n.inputs {
                let Some(c) = graph.constant(x) else { continue };
                let converted = matches!((c, F::NAME), (Tensor::F32(_), "f64") | (Tensor::F64(_), "f32"));
                if converted && c.len() <= BLOCKED_WEIGHTS && c.len() <= budget && constants[x].is_none() {
                    budget -= c.len();
                    constants[x] = Some(c.view::<F>().into_owned());
                }
            }
        }
        Evaluator { graph, prepared: Prepared { taps, constants } }
    }

    /// The graph evaluated.
    pub fn graph(&self) -> &'g Graph {
        self.graph
    }

    /// As [`Graph::evaluate`].
    pub fn evaluate(&self, input: &ArrayD<F>) -> Result<ArrayD<F>, ModelError> {
        self.evaluate_visit(input, |_, _| {})
    }

    /// As [`Graph::evaluate_visit`].
    pub fn evaluate_visit(
        &self,
        input: &ArrayD<F>,
        mut visit: impl FnMut(usize, &ArrayD<F>),
    ) -> Result<ArrayD<F>, ModelError> {
        let mut outputs = self.evaluate_many_visit(std::slice::from_ref(input), |_, node, value| visit(node, value))?;
        outputs.pop().ok_or_else(|| self.graph.eval_err("output", "graph output was never computed"))
    }

    /// Evaluates several inputs together, node by node, and returns their outputs in order:
    /// convolutions on small maps read their weights once for all the inputs, and every input's
    /// output has the bits it has alone. `visit(input, node, value)` receives every node's
    /// output for every input as it is computed; memory is that of one evaluation per input.
    pub fn evaluate_many_visit(
        &self,
        inputs: &[ArrayD<F>],
        mut visit: impl FnMut(usize, usize, &ArrayD<F>),
    ) -> Result<Vec<ArrayD<F>>, ModelError> {
        let graph = self.graph;
        let mut last_use = vec![usize::MAX; graph.values.len()];
        for (i, n) in graph.nodes.iter().enumerate() {
            for &x in &n.inputs {
                if let Some(l) = last_use.get_mut(x) {
                    *l = i;
                }
            }
        }
        let values = graph.run_many(inputs, &self.prepared, |values, b, i| {
            if let Some(value) = values.get(graph.nodes[i].output).and_then(Option::as_ref) {
                visit(b, i, value);
            }
            for &x in &graph.nodes[i].inputs {
                if last_use[x] == i && x != graph.output {
                    values[x] = None;
                }
            }
        })?;
        let mut outputs = Vec::with_capacity(values.len());
        for mut own in values {
            outputs.push(match (own.get_mut(graph.output).and_then(Option::take), graph.constant(graph.output)) {
                (Some(out), _) => out,
                (None, Some(c)) => c.view::<F>().into_owned(),
                (None, None) => return Err(graph.eval_err("output", "graph output was never computed")),
            });
        }
        Ok(outputs)
    }

    /// How many inputs to hand [`Evaluator::evaluate_many_visit`] at once: 8 when some
    /// convolution's output map is small enough for its products to gain from reading their
    /// weights once for several inputs, else 1.
    pub fn preferred_batch(&self) -> usize {
        let stacked = |n: &Node| {
            let shape = self.graph.values.get(n.output).map_or(&[][..], |v| &v.shape[..]);
            matches!(n.op, Op::Conv { .. }) && stacks(shape)
        };
        if self.graph.nodes.iter().any(stacked) {
            PREFERRED_BATCH
        } else {
            1
        }
    }

    /// Inputs per group when `count` inputs are shared by `threads` workers: the
    /// [`Evaluator::preferred_batch`], no more than keep every worker busy.
    pub fn group_size(&self, count: usize, threads: usize) -> usize {
        self.preferred_batch().min(count.div_ceil(threads.max(1))).max(1)
    }
}

/// Inputs evaluated together where convolutions on small maps gain from it.
const PREFERRED_BATCH: usize = 8;

/// Whether a convolution with output shape `shape` (`[1, channels, height, width]`) computes
/// several inputs in one product: maps of at most [`gemm::SKINNY`] positions.
fn stacks(shape: &[usize]) -> bool {
    shape.len() == 4 && shape[0] == 1 && shape[2] * shape[3] <= gemm::SKINNY
}

/// The weights of the taps that reach the input ([`conv::reaching_weights`]) for node `n` when it
/// is a convolution (not depthwise) with a constant kernel some of whose taps only ever see
/// padding.
fn prepared_taps<F: Real>(graph: &Graph, n: &Node) -> Option<Vec<F>> {
    let Op::Conv { strides, pads, dilations, groups } = n.op else { return None };
    let x = &graph.values.get(*n.inputs.first()?)?.shape;
    let w = graph.constant(*n.inputs.get(1)?)?;
    let out = &graph.values.get(n.output)?.shape;
    if x.len() != 4 || w.ndim() != 4 || out.len() != 4 || (w.shape()[1] == 1 && groups > 1) {
        return None;
    }
    let window = conv::Window {
        input: [x[2], x[3]],
        output: [out[2], out[3]],
        kernel: [w.shape()[2], w.shape()[3]],
        strides,
        pads: [pads[0], pads[1]],
        dilations,
    };
    if strides.contains(&0) || dilations.contains(&0) {
        return None;
    }
    conv::reaching_weights(&w.view::<F>().view(), &window)
}

impl Graph {
    /// Evaluates the graph on `input` (whose shape must equal the input value's shape) and
    /// returns the output. Intermediate values are dropped after their last use.
    pub fn evaluate<F: Real>(&self, input: &ArrayD<F>) -> Result<ArrayD<F>, ModelError> {
        self.evaluate_visit(input, |_, _| {})
    }

    /// [`Graph::evaluate`] that also hands every node's output, as it is computed, to
    /// `visit(node index, value)`: a caller keeps what it needs of each value (a running maximum,
    /// say) while memory stays that of one evaluation.
    pub fn evaluate_visit<F: Real>(
        &self,
        input: &ArrayD<F>,
        visit: impl FnMut(usize, &ArrayD<F>),
    ) -> Result<ArrayD<F>, ModelError> {
        Evaluator { graph: self, prepared: Prepared::none() }.evaluate_visit(input, visit)
    }

    /// Evaluates the graph and returns every computed value, indexed by
    /// [`crate::model::ValueId`]: the input and every node output. Constants are `None` (read
    /// them with [`Graph::constant`]), as are values no node computes.
    pub fn evaluate_all<F: Real>(&self, input: &ArrayD<F>) -> Result<Vec<Option<ArrayD<F>>>, ModelError> {
        self.run(input, &Prepared::none(), |_, _| {})
    }

    fn eval_err(&self, node: &str, detail: &str) -> ModelError {
        ModelError::Eval { node: node.into(), op: "-".into(), detail: detail.into() }
    }

    /// A computed value, or a constant in precision `F` (converted beforehand where `converted`
    /// holds it).
    fn operand<'a, F: Real>(
        &'a self,
        values: &'a [Option<ArrayD<F>>],
        converted: &'a [Option<ArrayD<F>>],
        x: ValueId,
    ) -> Option<CowArray<'a, F, IxDyn>> {
        match values.get(x).and_then(Option::as_ref).or_else(|| converted.get(x).and_then(Option::as_ref)) {
            Some(a) => Some(a.view().into()),
            None => self.constant(x).map(|c| c.view::<F>()),
        }
    }

    fn run<F: Real>(
        &self,
        input: &ArrayD<F>,
        prepared: &Prepared<F>,
        mut after: impl FnMut(&mut Vec<Option<ArrayD<F>>>, usize),
    ) -> Result<Vec<Option<ArrayD<F>>>, ModelError> {
        let mut values = self.run_many(std::slice::from_ref(input), prepared, |values, _, i| after(values, i))?;
        Ok(values.pop().unwrap_or_default())
    }

    /// Evaluates every node for every input in turn, node by node: the values of input `b`
    /// are `values[b]`, and `after(values[b], b, node)` runs once each node's output for `b`
    /// is in place. Convolutions on small maps take every input's map in one product (see
    /// [`Graph::stacked_conv`]); every other node is evaluated input by input. Each input's
    /// outputs are those it would have alone.
    fn run_many<F: Real>(
        &self,
        inputs: &[ArrayD<F>],
        prepared: &Prepared<F>,
        mut after: impl FnMut(&mut Vec<Option<ArrayD<F>>>, usize, usize),
    ) -> Result<Vec<Vec<Option<ArrayD<F>>>>, ModelError> {
        let inp = self.values.get(self.input).ok_or_else(|| self.eval_err("input", "graph input id out of range"))?;
        let mut values = Vec::with_capacity(inputs.len());
        for input in inputs {
            if input.shape() != inp.shape.as_slice() {
                return Err(self.eval_err(
                    &inp.name,
                    &format!("input has shape {:?}, the model expects {:?}", input.shape(), inp.shape),
                ));
            }
            let mut own: Vec<Option<ArrayD<F>>> = vec![None; self.values.len()];
            own[self.input] = Some(input.clone());
            values.push(own);
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let err = |detail: String| ModelError::Eval { node: n.name.clone(), op: n.op.name().into(), detail };
            let out_shape = &self.values.get(n.output).ok_or_else(|| err("output id out of range".into()))?.shape;
            let stacked = match values.len() {
                0 | 1 => None,
                _ => self.stacked_conv(n, &values, prepared.taps.get(i).and_then(Option::as_ref)),
            };
            let mut stacked = stacked.transpose().map_err(err)?.map(Vec::into_iter);
            for (b, own) in values.iter_mut().enumerate() {
                let out = match stacked.as_mut().and_then(Iterator::next) {
                    Some(out) => out,
                    None => self.eval_node(i, n, own, prepared)?,
                };
                if out.shape() != out_shape.as_slice() {
                    return Err(err(format!(
                        "computed shape {:?} but the graph declares {:?}",
                        out.shape(),
                        out_shape
                    )));
                }
                own[n.output] = Some(out);
                after(own, b, i);
            }
        }
        Ok(values)
    }

    /// Node `i`'s output for the input whose values are `values`.
    fn eval_node<F: Real>(
        &self,
        i: usize,
        n: &Node,
        values: &[Option<ArrayD<F>>],
        prepared: &Prepared<F>,
    ) -> Result<ArrayD<F>, ModelError> {
        let err = |detail: String| ModelError::Eval { node: n.name.clone(), op: n.op.name().into(), detail };
        if let Some(out) = self.blocked_product(n, values, &prepared.constants) {
            return out.map_err(err);
        }
        let mut ins = Vec::with_capacity(n.inputs.len());
        for &x in &n.inputs {
            match self.operand(values, &prepared.constants, x) {
                Some(a) => ins.push(a),
                None => return Err(err(format!("input value {x} is not available (graph not topologically sorted?)"))),
            }
        }
        let views: Vec<ArrayViewD<F>> = ins.iter().map(|a| a.view()).collect();
        let out_shape = &self.values.get(n.output).ok_or_else(|| err("output id out of range".into()))?.shape;
        match (&n.op, prepared.taps.get(i)) {
            (Op::Conv { strides, pads, dilations, groups }, Some(Some(taps))) if views.len() >= 2 => {
                conv::conv2d_taps(&views[0], &views[1], taps, views.get(2), *strides, *pads, *dilations, *groups)
            }
            _ => eval_op(&n.op, &views, out_shape),
        }
        .map_err(err)
    }

    /// A convolution with constant weights whose output map has at most [`gemm::SKINNY`]
    /// positions, computed for every input's map at once (the inputs stacked along the batch
    /// axis: its weights are read once for all of them); `None` for any other node.
    fn stacked_conv<F: Real>(
        &self,
        n: &Node,
        values: &[Vec<Option<ArrayD<F>>>],
        taps: Option<&Vec<F>>,
    ) -> Option<Result<Vec<ArrayD<F>>, String>> {
        let Op::Conv { strides, pads, dilations, groups } = n.op else { return None };
        let out_shape = &self.values.get(n.output)?.shape;
        if !stacks(out_shape) {
            return None;
        }
        let weights = self.constant(*n.inputs.get(1)?)?.view::<F>();
        let bias = match n.inputs.get(2) {
            Some(&b) => Some(self.constant(b)?.view::<F>()),
            None => None,
        };
        let x = *n.inputs.first()?;
        let maps: Vec<ArrayViewD<F>> =
            values.iter().map(|own| own.get(x)?.as_ref().map(|a| a.view())).collect::<Option<_>>()?;
        if maps.iter().any(|m| m.ndim() != 4 || m.shape()[0] != 1) {
            return None;
        }
        let stacked = match concatenate(Axis(0), &maps) {
            Ok(stacked) => stacked,
            Err(e) => return Some(Err(e.to_string())),
        };
        let (x, w, b) = (stacked.view(), weights.view(), bias.as_ref().map(|b| b.view()));
        let out = match taps {
            Some(taps) => conv::conv2d_taps(&x, &w, taps, b.as_ref(), strides, pads, dilations, groups),
            None => conv2d(&x, &w, b.as_ref(), strides, pads, dilations, groups),
        };
        Some(out.map(|out| out.outer_iter().map(|one| one.insert_axis(Axis(0)).to_owned()).collect()))
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
    fn blocked_product<F: Real>(
        &self,
        n: &Node,
        values: &[Option<ArrayD<F>>],
        prepared: &[Option<ArrayD<F>>],
    ) -> Option<Result<ArrayD<F>, String>> {
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
            Some(&c) => match self.operand(values, prepared, c) {
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
    if let (Some(x), Some(y)) = (a.as_slice(), b.as_slice()) {
        // Contiguous operands of which one repeats along the other's leading axes (a bias, a
        // scale) or both have the full shape.
        let total: usize = shape.iter().product();
        if x.len() == total && !y.is_empty() && total.is_multiple_of(y.len()) && trails(b.shape(), &shape) {
            let mut out = Vec::with_capacity(total);
            for chunk in x.chunks_exact(y.len()) {
                out.extend(chunk.iter().zip(y).map(|(&p, &q)| f(p, q)));
            }
            return shaped(&shape, out);
        }
        if y.len() == total && !x.is_empty() && total.is_multiple_of(x.len()) && trails(a.shape(), &shape) {
            let mut out = Vec::with_capacity(total);
            for chunk in y.chunks_exact(x.len()) {
                out.extend(x.iter().zip(chunk).map(|(&p, &q)| f(p, q)));
            }
            return shaped(&shape, out);
        }
    }
    let av = a.broadcast(IxDyn(&shape)).ok_or("broadcast failed")?;
    let bv = b.broadcast(IxDyn(&shape)).ok_or("broadcast failed")?;
    Ok(Zip::from(&av).and(&bv).map_collect(|&x, &y| f(x, y)).as_standard_layout().into_owned())
}

/// Whether `small`, without its leading 1s, equals the trailing axes of `shape` (so that a
/// contiguous `small` repeats along the leading axes of `shape`).
fn trails(small: &[usize], shape: &[usize]) -> bool {
    let lead = small.iter().take_while(|&&d| d == 1).count();
    let small = &small[lead..];
    small.len() <= shape.len() && shape[shape.len() - small.len()..] == *small
}

/// The elements of `a` in logical (row-major) order.
fn std_vec<F: Real>(a: &ArrayViewD<F>) -> Vec<F> {
    match a.as_slice() {
        Some(values) => values.to_vec(),
        None => standard(a).into_raw_vec_and_offset().0,
    }
}

/// A standard-layout copy of `a`.
fn standard<F: Real>(a: &ArrayViewD<F>) -> ArrayD<F> {
    if a.is_standard_layout() {
        return a.to_owned();
    }
    let mut out = ArrayD::zeros(a.raw_dim());
    out.assign(a);
    out
}

fn unary<F: Real>(inputs: &[ArrayViewD<F>], f: impl Fn(F) -> F) -> Result<ArrayD<F>, String> {
    arity(inputs, 1, 1)?;
    Ok(inputs[0].mapv(f))
}

fn binary<F: Real>(inputs: &[ArrayViewD<F>], f: impl Fn(F, F) -> F) -> Result<ArrayD<F>, String> {
    arity(inputs, 2, 2)?;
    zip2(&inputs[0], &inputs[1], f)
}

fn shaped<F: Real>(shape: &[usize], data: Vec<F>) -> Result<ArrayD<F>, String> {
    ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|e| format!("cannot build array of shape {shape:?}: {e}"))
}

/// The model's GELU: exact `0.5 x (1 + erf(x/√2))`, or the tanh approximation.
fn model_gelu<F: Real>(tanh: bool, x: F) -> F {
    let (half, one) = (F::of(0.5), F::one());
    if tanh {
        let c = F::of((2.0 / std::f64::consts::PI).sqrt());
        let k = F::of(0.044715);
        half * x * (one + (c * (x + k * x * x * x)).tanh())
    } else {
        half * x * (one + (x * F::of(std::f64::consts::FRAC_1_SQRT_2)).erf())
    }
}

/// Applies one op to evaluated inputs. `out_shape` is the declared output shape (used by
/// `Reshape` and `Expand`).
pub fn eval_op<F: Real>(op: &Op, inputs: &[ArrayViewD<F>], out_shape: &[usize]) -> Result<ArrayD<F>, String> {
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
            gemm_op(inputs, *alpha, *beta, *trans_a, *trans_b)
        }
        Op::Add => binary(inputs, |a, b| a + b),
        Op::Sub => binary(inputs, |a, b| a - b),
        Op::Mul => binary(inputs, |a, b| a * b),
        Op::Div => binary(inputs, |a, b| a / b),
        Op::Pow => binary(inputs, |a, b| a.powf(b)),
        Op::Max => binary(inputs, |a, b| if a.is_nan() || a >= b { a } else { b }),
        Op::DivSqrt => binary(inputs, |a, b| a / b.sqrt()),
        Op::Neg => unary(inputs, |x| -x),
        Op::Relu => unary(inputs, |x| if x > F::zero() { x } else { F::zero() }),
        Op::LeakyRelu { alpha } => {
            let al = F::of(*alpha);
            unary(inputs, |x| if x >= F::zero() { x } else { al * x })
        }
        Op::Gelu { tanh } => unary(inputs, |x| model_gelu(*tanh, x)),
        Op::ScaledGelu { tanh } => binary(inputs, |x, scale| model_gelu(*tanh, x) / scale),
        Op::Sigmoid => unary(inputs, |x| one / (one + (-x).exp())),
        Op::Tanh => unary(inputs, |x| x.tanh()),
        Op::HardSigmoid { alpha, beta } => {
            let (alpha, beta) = (F::of(*alpha), F::of(*beta));
            unary(inputs, |x| (alpha * x + beta).min(one).max(F::zero()))
        }
        Op::HardSwish => {
            let (three, six) = (F::of(3.0), F::of(6.0));
            unary(inputs, |x| x * (x + three).max(F::zero()).min(six) / six)
        }
        Op::Softplus => unary(inputs, |x| x.max(F::zero()) + (-x.abs()).exp().ln_1p()),
        Op::Exp => unary(inputs, |x| x.exp()),
        Op::Abs => unary(inputs, |x| x.abs()),
        Op::Sqrt => unary(inputs, |x| x.sqrt()),
        Op::Erf => unary(inputs, |x| x.erf()),
        Op::Square => unary(inputs, |x| x * x),
        Op::Softmax { axis } => {
            arity(inputs, 1, 1)?;
            if *axis >= inputs[0].ndim() {
                return Err(format!("softmax axis {axis} out of range"));
            }
            let mut y = inputs[0].as_standard_layout().into_owned();
            if *axis + 1 == y.ndim() {
                if let Some(values) = y.as_slice_mut() {
                    let len = inputs[0].shape()[*axis].max(1);
                    values.chunks_exact_mut(len).for_each(softmax_lane);
                    return Ok(y);
                }
            }
            for mut lane in y.lanes_mut(Axis(*axis)) {
                let mut values = lane.to_vec();
                softmax_lane(&mut values);
                lane.iter_mut().zip(values).for_each(|(l, v)| *l = v);
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
            let eps = F::of(*epsilon);
            let n = F::of(inner as f64);
            let mut y = std_vec(x);
            for row in y.chunks_exact_mut(inner.max(1)) {
                let mean = row.iter().copied().sum::<F>() / n;
                let var = row.iter().map(|&v| (v - mean) * (v - mean)).sum::<F>() / n;
                let d = (var + eps).sqrt();
                row.iter_mut().for_each(|v| *v = (*v - mean) / d);
            }
            let y = shaped(x.shape(), y)?;
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
            Ok(standard(&v))
        }
        Op::Transpose { perm } => {
            arity(inputs, 1, 1)?;
            let x = &inputs[0];
            let mut seen = vec![false; x.ndim()];
            if perm.len() != x.ndim() || perm.iter().any(|&p| p >= x.ndim() || std::mem::replace(&mut seen[p], true)) {
                return Err(format!("invalid permutation {perm:?}"));
            }
            Ok(standard(&x.view().permuted_axes(IxDyn(perm))))
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
            Ok(standard(&v))
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

/// Softmax of one lane in place: `exp(v - max) / sum`.
fn softmax_lane<F: Real>(values: &mut [F]) {
    let m = values.iter().copied().fold(F::neg_infinity(), F::max);
    values.iter_mut().for_each(|v| *v -= m);
    F::exp_in_place(values);
    let s: F = values.iter().copied().sum();
    values.iter_mut().for_each(|v| *v /= s);
}
