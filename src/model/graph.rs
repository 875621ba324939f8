//! The canonical intermediate representation: a single-input, single-output dataflow graph of
//! canonical ops with fully static shapes, produced by the reader and consumed by the conversion.

use std::fmt;

use ndarray::ArrayD;

use super::error::ModelError;
use super::infer;
use super::tensor::Tensor;

/// Index of a [`Value`] in [`Graph::values`].
pub type ValueId = usize;

/// A tensor value: the graph input, a node output, or a constant.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// Name (the ONNX name, or a derived name for values created by passes).
    pub name: String,
    /// Static shape.
    pub shape: Vec<usize>,
    /// The data, for constants (initializers, `Constant` nodes, folded subgraphs).
    pub constant: Option<Tensor>,
}

/// A node: one canonical op, its inputs and its single output.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Node name (the ONNX name, or a derived name).
    pub name: String,
    /// The operation.
    pub op: Op,
    /// Input values (order as documented per [`Op`] variant).
    pub inputs: Vec<ValueId>,
    /// Output value.
    pub output: ValueId,
}

/// Canonical operations, with attributes resolved and after constant folding.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// 2-D convolution. Inputs: x `[N,C,H,W]`, weight (const) `[M,C/groups,kh,kw]`, optional bias (const) `[M]`.
    Conv {
        /// Strides (h, w).
        strides: [usize; 2],
        /// Padding (top, left, bottom, right).
        pads: [usize; 4],
        /// Dilations (h, w).
        dilations: [usize; 2],
        /// Number of groups.
        groups: usize,
    },
    /// numpy `matmul` with broadcasting; either operand may be constant, or both activations.
    MatMul,
    /// `alpha * op(A) @ op(B) + beta * C` on 2-D operands; inputs A, B, optional C.
    Gemm {
        /// Scale of the product.
        alpha: f64,
        /// Scale of C.
        beta: f64,
        /// Transpose A.
        trans_a: bool,
        /// Transpose B.
        trans_b: bool,
    },
    /// Elementwise sum with numpy broadcasting.
    Add,
    /// Elementwise difference with numpy broadcasting.
    Sub,
    /// Elementwise product with numpy broadcasting.
    Mul,
    /// Elementwise quotient with numpy broadcasting.
    Div,
    /// Negation.
    Neg,
    /// `max(x, 0)`.
    Relu,
    /// `x` if `x >= 0` else `alpha * x`.
    LeakyRelu {
        /// Negative slope.
        alpha: f64,
    },
    /// GELU: exact `0.5 x (1 + erf(x/√2))`, or the tanh approximation.
    Gelu {
        /// Use the tanh approximation.
        tanh: bool,
    },
    /// GELU divided by a positive per-element scale, `gelu(x1) / x2` (x2 a constant): a GELU
    /// population working on its own range under calibrated dynamics. Never read from a model.
    ScaledGelu {
        /// Use the tanh approximation.
        tanh: bool,
    },
    /// Logistic sigmoid.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// `max(0, min(1, alpha·x + beta))`.
    HardSigmoid {
        /// Slope.
        alpha: f64,
        /// Offset.
        beta: f64,
    },
    /// `x · min(max(x + 3, 0), 6) / 6`.
    HardSwish,
    /// `ln(1 + eˣ)`.
    Softplus,
    /// Exponential.
    Exp,
    /// Absolute value.
    Abs,
    /// Square root (NaN for negative inputs).
    Sqrt,
    /// Error function.
    Erf,
    /// `x ^ e`, with broadcasting; the second input is a constant exponent.
    Pow,
    /// Elementwise maximum of two inputs, with broadcasting.
    Max,
    /// Softmax along `axis`.
    Softmax {
        /// Axis (non-negative).
        axis: usize,
    },
    /// Mean over `axes`.
    ReduceMean {
        /// Reduced axes (non-negative, sorted, non-empty).
        axes: Vec<usize>,
        /// Keep reduced axes with size 1.
        keepdims: bool,
    },
    /// Sum over `axes`.
    ReduceSum {
        /// Reduced axes (non-negative, sorted, non-empty).
        axes: Vec<usize>,
        /// Keep reduced axes with size 1.
        keepdims: bool,
    },
    /// Layer normalisation over axes `axis..rank`; inputs x, scale (const), optional bias (const).
    /// Population variance, epsilon inside the square root.
    LayerNorm {
        /// First normalised axis.
        axis: usize,
        /// Epsilon.
        epsilon: f64,
    },
    /// Inference batch normalisation over channel axis 1; inputs x, scale, bias, mean, var (all const).
    BatchNorm {
        /// Epsilon.
        epsilon: f64,
    },
    /// 2-D max pooling (padding counts as -inf).
    MaxPool {
        /// Kernel (h, w).
        kernel: [usize; 2],
        /// Strides (h, w).
        strides: [usize; 2],
        /// Padding (top, left, bottom, right).
        pads: [usize; 4],
        /// Dilations (h, w).
        dilations: [usize; 2],
        /// Ceil mode for the output size.
        ceil_mode: bool,
    },
    /// 2-D average pooling.
    AveragePool {
        /// Kernel (h, w).
        kernel: [usize; 2],
        /// Strides (h, w).
        strides: [usize; 2],
        /// Padding (top, left, bottom, right).
        pads: [usize; 4],
        /// Whether padded positions count in the divisor.
        count_include_pad: bool,
        /// Ceil mode for the output size.
        ceil_mode: bool,
    },
    /// Mean over all spatial axes (2..rank), keeping them with size 1.
    GlobalAveragePool,
    /// Reshape (also Flatten, Squeeze, Unsqueeze); the output shape is the output value's shape.
    Reshape,
    /// Axis permutation.
    Transpose {
        /// `output axis i = input axis perm[i]`.
        perm: Vec<usize>,
    },
    /// Concatenation of all inputs along `axis`.
    Concat {
        /// Axis (non-negative).
        axis: usize,
    },
    /// Strided slice; all lists have the same length; `0 <= starts <= ends <= dim`, steps >= 1.
    Slice {
        /// Start per listed axis.
        starts: Vec<usize>,
        /// End (exclusive) per listed axis.
        ends: Vec<usize>,
        /// Sliced axes.
        axes: Vec<usize>,
        /// Steps (positive).
        steps: Vec<usize>,
    },
    /// Gather along `axis` with constant non-negative indices.
    Gather {
        /// Axis (non-negative).
        axis: usize,
        /// Indices (normalised, in range).
        indices: ArrayD<i64>,
    },
    /// Constant padding.
    Pad {
        /// Per axis (before, after).
        pads: Vec<(usize, usize)>,
        /// Fill value.
        value: f64,
    },
    /// Broadcast to the output value's shape.
    Expand,
    /// `x1 / sqrt(x2)` with broadcasting (NaN where `x2 < 0`). Inserted by conversion passes.
    DivSqrt,
    /// `x * x`. The reader maps `Pow(x, 2)` to it.
    Square,
}

impl Op {
    /// Whether every output element depends only on the same element of the (broadcast)
    /// inputs: the arithmetic, comparison-free elementwise ops and the neuron functions.
    pub fn is_elementwise(&self) -> bool {
        matches!(
            self,
            Op::Add
                | Op::Sub
                | Op::Mul
                | Op::Div
                | Op::Neg
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
                | Op::Pow
                | Op::Max
                | Op::DivSqrt
                | Op::ScaledGelu { .. }
                | Op::Square
        )
    }

    /// Short name of the op (the variant name).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv { .. } => "Conv",
            Op::MatMul => "MatMul",
            Op::Gemm { .. } => "Gemm",
            Op::Add => "Add",
            Op::Sub => "Sub",
            Op::Mul => "Mul",
            Op::Div => "Div",
            Op::Neg => "Neg",
            Op::Relu => "Relu",
            Op::LeakyRelu { .. } => "LeakyRelu",
            Op::Gelu { .. } => "Gelu",
            Op::Sigmoid => "Sigmoid",
            Op::Tanh => "Tanh",
            Op::HardSigmoid { .. } => "HardSigmoid",
            Op::HardSwish => "HardSwish",
            Op::Softplus => "Softplus",
            Op::Exp => "Exp",
            Op::Abs => "Abs",
            Op::Sqrt => "Sqrt",
            Op::Erf => "Erf",
            Op::Pow => "Pow",
            Op::Max => "Max",
            Op::Softmax { .. } => "Softmax",
            Op::ReduceMean { .. } => "ReduceMean",
            Op::ReduceSum { .. } => "ReduceSum",
            Op::LayerNorm { .. } => "LayerNorm",
            Op::BatchNorm { .. } => "BatchNorm",
            Op::MaxPool { .. } => "MaxPool",
            Op::AveragePool { .. } => "AveragePool",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::Reshape => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Concat { .. } => "Concat",
            Op::Slice { .. } => "Slice",
            Op::Gather { .. } => "Gather",
            Op::Pad { .. } => "Pad",
            Op::Expand => "Expand",
            Op::DivSqrt => "DivSqrt",
            Op::ScaledGelu { .. } => "ScaledGelu",
            Op::Square => "Square",
        }
    }

    /// A compact rendering of the op with its attributes (for summaries).
    pub fn describe(&self) -> String {
        match self {
            Op::Gather { axis, indices } => {
                format!("Gather {{ axis: {axis}, indices: shape {:?} }}", indices.shape())
            }
            Op::Reshape | Op::Expand | Op::MatMul | Op::GlobalAveragePool => self.name().to_string(),
            other => format!("{other:?}"),
        }
    }
}

/// A dataflow graph with one activation input and one output.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    /// All values, indexed by [`ValueId`].
    pub values: Vec<Value>,
    /// Nodes in topological order.
    pub nodes: Vec<Node>,
    /// The activation input.
    pub input: ValueId,
    /// The output.
    pub output: ValueId,
}

impl Graph {
    /// An empty graph (input and output 0 until set).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a non-constant value and returns its id.
    pub fn add_value(&mut self, name: impl Into<String>, shape: Vec<usize>) -> ValueId {
        self.values.push(Value { name: name.into(), shape, constant: None });
        self.values.len() - 1
    }

    /// Adds a constant value (its shape is the data's shape) and returns its id.
    pub fn add_constant(&mut self, name: impl Into<String>, data: impl Into<Tensor>) -> ValueId {
        let data = data.into();
        let shape = data.shape().to_vec();
        self.values.push(Value { name: name.into(), shape, constant: Some(data) });
        self.values.len() - 1
    }

    /// Appends a node and returns its index. The caller keeps [`Graph::nodes`] topologically
    /// ordered (append after the producers of `inputs`) or calls [`Graph::toposort`] afterwards.
    pub fn add_node(&mut self, name: impl Into<String>, op: Op, inputs: Vec<ValueId>, output: ValueId) -> usize {
        self.nodes.push(Node { name: name.into(), op, inputs, output });
        self.nodes.len() - 1
    }

    /// Adds a node together with a fresh output value whose shape is inferred from the op and
    /// the input shapes (for `Reshape`/`Expand`, pass the target in `shape_hint`). Returns the
    /// new output value.
    pub fn add_node_inferred(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: Vec<ValueId>,
        shape_hint: Option<Vec<usize>>,
    ) -> Result<ValueId, ModelError> {
        let name = name.into();
        let shapes: Vec<&[usize]> = inputs.iter().map(|&i| self.values[i].shape.as_slice()).collect();
        let shape = infer::output_shape(&op, &shapes, shape_hint.as_deref()).map_err(|detail| ModelError::Eval {
            node: name.clone(),
            op: op.name().into(),
            detail,
        })?;
        let out = self.add_value(name.clone(), shape);
        self.add_node(name, op, inputs, out);
        Ok(out)
    }

    /// Whether a value is a constant.
    pub fn is_constant(&self, v: ValueId) -> bool {
        self.values.get(v).is_some_and(|x| x.constant.is_some())
    }

    /// The constant data of a value, if it is a constant.
    pub fn constant(&self, v: ValueId) -> Option<&Tensor> {
        self.values.get(v).and_then(|x| x.constant.as_ref())
    }

    /// Indices of the nodes that read `v`.
    pub fn consumers(&self, v: ValueId) -> Vec<usize> {
        self.nodes.iter().enumerate().filter(|(_, n)| n.inputs.contains(&v)).map(|(i, _)| i).collect()
    }

    /// Index of the node that produces `v` (None for the input and constants).
    pub fn producer(&self, v: ValueId) -> Option<usize> {
        self.nodes.iter().position(|n| n.output == v)
    }

    /// The value with the given name (the first one, if names repeat).
    pub fn value_by_name(&self, name: &str) -> Option<ValueId> {
        self.values.iter().position(|v| v.name == name)
    }

    /// Sorts nodes topologically (stable with respect to the current order). Fails on cycles,
    /// on values produced twice, and on node inputs that are neither the input, a constant nor
    /// produced by a node.
    pub fn toposort(&mut self) -> Result<(), ModelError> {
        let nv = self.values.len();
        let mut producer = vec![usize::MAX; nv];
        for (i, n) in self.nodes.iter().enumerate() {
            if n.output >= nv || n.inputs.iter().any(|&x| x >= nv) {
                return Err(self.invalid(format!("node '{}' refers to a value id out of range", n.name)));
            }
            if producer[n.output] != usize::MAX {
                return Err(self.invalid(format!("value '{}' is produced twice", self.values[n.output].name)));
            }
            producer[n.output] = i;
        }
        let mut ready = vec![false; nv];
        for (v, val) in self.values.iter().enumerate() {
            if val.constant.is_some() || v == self.input {
                ready[v] = true;
            }
        }
        for n in &self.nodes {
            for &x in &n.inputs {
                if !ready[x] && producer[x] == usize::MAX {
                    return Err(self.invalid(format!(
                        "node '{}' reads value '{}' that nothing produces",
                        n.name, self.values[x].name
                    )));
                }
            }
        }
        let mut done = vec![false; self.nodes.len()];
        let mut order = Vec::with_capacity(self.nodes.len());
        loop {
            let mut progressed = false;
            for (i, n) in self.nodes.iter().enumerate() {
                if !done[i] && n.inputs.iter().all(|&x| ready[x]) {
                    done[i] = true;
                    ready[n.output] = true;
                    order.push(i);
                    progressed = true;
                }
            }
            if order.len() == self.nodes.len() {
                break;
            }
            if !progressed {
                return Err(self.invalid("the graph has a cycle".into()));
            }
        }
        let mut old: Vec<Option<Node>> = std::mem::take(&mut self.nodes).into_iter().map(Some).collect();
        self.nodes = order.into_iter().map(|i| old[i].take().expect("each node once")).collect();
        Ok(())
    }

    /// Removes nodes that do not contribute to the output, then values that no remaining node
    /// reads or writes (keeping the input and output), renumbering value ids.
    pub fn retain_live(&mut self) {
        let nv = self.values.len();
        let mut live = vec![false; nv];
        if self.output < nv {
            live[self.output] = true;
        }
        let mut keep = vec![false; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate().rev() {
            if n.output < nv && live[n.output] {
                keep[i] = true;
                for &x in &n.inputs {
                    if x < nv {
                        live[x] = true;
                    }
                }
            }
        }
        let mut k = keep.iter();
        self.nodes.retain(|_| *k.next().unwrap_or(&false));
        if self.input < nv {
            live[self.input] = true;
        }
        let mut remap = vec![usize::MAX; nv];
        let mut values = Vec::new();
        for (i, v) in std::mem::take(&mut self.values).into_iter().enumerate() {
            if live[i] {
                remap[i] = values.len();
                values.push(v);
            }
        }
        self.values = values;
        for n in &mut self.nodes {
            n.output = remap[n.output];
            for x in &mut n.inputs {
                *x = remap[*x];
            }
        }
        self.input = remap[self.input];
        self.output = remap[self.output];
    }

    /// Checks that ids are in range, nodes are topologically ordered and every node's output
    /// shape agrees with shape inference.
    pub fn validate(&self) -> Result<(), ModelError> {
        let nv = self.values.len();
        if self.input >= nv || self.output >= nv {
            return Err(self.invalid("input or output id out of range".into()));
        }
        let mut ready: Vec<bool> = self.values.iter().map(|v| v.constant.is_some()).collect();
        ready[self.input] = true;
        for n in &self.nodes {
            if n.output >= nv || n.inputs.iter().any(|&x| x >= nv) {
                return Err(self.invalid(format!("node '{}' refers to a value id out of range", n.name)));
            }
            if let Some(&x) = n.inputs.iter().find(|&&x| !ready[x]) {
                return Err(
                    self.invalid(format!("node '{}' reads '{}' before it is produced", n.name, self.values[x].name))
                );
            }
            let shapes: Vec<&[usize]> = n.inputs.iter().map(|&i| self.values[i].shape.as_slice()).collect();
            let out = &self.values[n.output].shape;
            let inferred = infer::output_shape(&n.op, &shapes, Some(out)).map_err(|detail| ModelError::Eval {
                node: n.name.clone(),
                op: n.op.name().into(),
                detail,
            })?;
            if &inferred != out {
                return Err(ModelError::Eval {
                    node: n.name.clone(),
                    op: n.op.name().into(),
                    detail: format!("output shape {out:?} disagrees with inferred shape {inferred:?}"),
                });
            }
            ready[n.output] = true;
        }
        Ok(())
    }

    /// One line per node: name, op, input shapes (constants marked `c`), output shape.
    pub fn summary(&self) -> String {
        self.to_string()
    }

    fn invalid(&self, detail: String) -> ModelError {
        ModelError::Invalid { origin: "graph".into(), detail }
    }
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nconst = self.values.iter().filter(|v| v.constant.is_some()).count();
        let params: usize = self.values.iter().filter_map(|v| v.constant.as_ref()).map(|c| c.len()).sum();
        let inp = self.values.get(self.input);
        let out = self.values.get(self.output);
        writeln!(
            f,
            "graph: input '{}' {:?} -> output '{}' {:?}; {} nodes, {} constants ({} parameters)",
            inp.map_or("?", |v| v.name.as_str()),
            inp.map(|v| &v.shape),
            out.map_or("?", |v| v.name.as_str()),
            out.map(|v| &v.shape),
            self.nodes.len(),
            nconst,
            params
        )?;
        for (i, n) in self.nodes.iter().enumerate() {
            let ins: Vec<String> = n
                .inputs
                .iter()
                .map(|&x| match self.values.get(x) {
                    Some(v) if v.constant.is_some() => format!("c{:?}", v.shape),
                    Some(v) => format!("{:?}", v.shape),
                    None => "?".into(),
                })
                .collect();
            let out = self.values.get(n.output).map(|v| format!("{:?}", v.shape)).unwrap_or_default();
            writeln!(f, "{i:4} {:<32} {:<48} {} -> {}", n.name, n.op.describe(), ins.join(", "), out)?;
        }
        Ok(())
    }
}
