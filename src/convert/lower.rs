//! The last pass: nonlinear nodes become populations of signGD neurons, everything between
//! them is lowered into synapse blocks and constants (SPEC.md §4, steps 6 and 7).

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use super::affine::{broadcast_index, to_operand, AffineForm, Term};
use super::compose::{compose, merge_term, Composed, SPARSE_BUDGET};
use super::linear::linear_parts;
use super::{ConvertError, ConvertOptions};
use crate::model::eval::eval_op;
use crate::model::{Graph, Node, Op};
use crate::snn::{
    Constants, ConvBlock, Elementwise, Network, NeuronKind, Operand, Population, Scale, SelectBlock, Source,
    SynapseBlock,
};

/// Builds the spiking network of a graph whose nonlinearities are all neuron kinds.
///
/// A value becomes a relay when some reader finds composing it too costly; readers lowered
/// before that one have already composed it. So the walk runs twice when relays were made, the
/// second time making each of them a relay at its first reader.
pub fn lower(graph: &Graph, options: &ConvertOptions) -> Result<Network, ConvertError> {
    let first = lower_with(graph, options, &[])?;
    if first.relayed.is_empty() {
        return Ok(first.network);
    }
    Ok(lower_with(graph, options, &first.relayed)?.network)
}

/// A lowered network and the values that became relays.
struct Lowered {
    network: Network,
    relayed: Vec<usize>,
}

fn lower_with(graph: &Graph, options: &ConvertOptions, relay_early: &[usize]) -> Result<Lowered, ConvertError> {
    let input_shape = graph.values[graph.input].shape.clone();
    let mut lowering = Lowering {
        graph,
        forms: vec![None; graph.values.len()],
        populations: Vec::new(),
        input_shape,
        relay_early,
        relayed: Vec::new(),
    };
    lowering.forms[graph.input] = Some(AffineForm::source(Source::Input, &lowering.input_shape));
    let mut last_use = vec![0; graph.values.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        node.inputs.iter().for_each(|&v| last_use[v] = i);
    }
    for (i, node) in graph.nodes.iter().enumerate() {
        let out_shape = graph.values[node.output].shape.clone();
        let form = match neuron_kind(graph, node, options)? {
            Some(kind) => {
                let mut operands = Vec::new();
                for position in 0..kind.arity() {
                    operands.push(lowering.operand(node, position, &out_shape)?);
                }
                lowering.populations.push(Population {
                    name: node.name.clone(),
                    kind,
                    shape: out_shape.clone(),
                    operands,
                });
                AffineForm::source(Source::Population(lowering.populations.len() - 1), &out_shape)
            }
            None => lowering.affine(node)?,
        };
        lowering.forms[node.output] = Some(form);
        // A form no later node reads is dropped: forms hold index maps and factors per element.
        for &v in &node.inputs {
            if last_use[v] == i && v != graph.output {
                lowering.forms[v] = None;
            }
        }
    }
    let output = lowering.forms[graph.output]
        .clone()
        .ok_or_else(|| ConvertError::Graph("the graph's output is not computed by any node".into()))?;
    let readout = to_operand(&output);
    let strip_batch =
        |shape: &[usize]| if shape.len() > 1 && shape[0] == 1 { shape[1..].to_vec() } else { shape.to_vec() };
    let network = Network {
        input_shape: strip_batch(&lowering.input_shape),
        output_shape: strip_batch(&graph.values[graph.output].shape),
        populations: lowering.populations,
        readout,
    };
    Ok(Lowered { network, relayed: lowering.relayed })
}

/// State of the lowering walk: the affine form of every value computed so far, and the
/// populations made.
struct Lowering<'g> {
    graph: &'g Graph,
    forms: Vec<Option<AffineForm>>,
    populations: Vec<Population>,
    input_shape: Vec<usize>,
    /// Values to make relays at their first reader.
    relay_early: &'g [usize],
    /// Values made relays so far.
    relayed: Vec<usize>,
}

impl Lowering<'_> {
    /// The form of input `position` of `node`.
    fn input_form(&self, node: &Node, position: usize) -> Result<AffineForm, ConvertError> {
        let v = node.inputs[position];
        match (&self.forms[v], self.graph.constant(v)) {
            (Some(form), _) => Ok(form.clone()),
            (None, Some(c)) => Ok(AffineForm::constant(c.to_f64().into_owned())),
            (None, None) => {
                Err(ConvertError::node(node, "reads a value that no earlier node produced", "re-export the model"))
            }
        }
    }

    /// Applies `op` (a block from input `position` of `node` to its output) to that input's form.
    /// Where composing would hold more synapses than the two maps apart, or has no structure and
    /// exceeds the sparse budget, the input becomes a relay first, and later readers of the same
    /// value reuse that relay.
    fn compose(&mut self, node: &Node, position: usize, op: &SynapseBlock) -> Result<Vec<Term>, ConvertError> {
        let form = self.input_form(node, position)?;
        let v = node.inputs[position];
        let readers = self.graph.nodes.iter().filter(|n| n.inputs.contains(&v)).count();
        // A form read from the input alone is cheap to compose: the float encoder's closed form
        // computes it once per input.
        let from_input = form.terms.iter().all(|t| t.source == Source::Input);
        let early = self.relay_early.contains(&v) && !form.is_direct() && !from_input;
        if !early {
            if let Some(composed) = compose_form(&form, op) {
                let sizes = Composition::of(&form, &composed, op);
                if sizes.pays(from_input) && !sizes.relay_serves(readers) {
                    return Ok(composed);
                }
            }
        }
        let relay = self.relay(v, &form);
        Ok(apply_to_direct(&relay, op))
    }

    /// Makes the value `v` (of form `form`) a relay population and returns its new form.
    fn relay(&mut self, v: usize, form: &AffineForm) -> AffineForm {
        let shape = form.bias.shape().to_vec();
        let linear = AffineForm { bias: ArrayD::zeros(IxDyn(&shape)), terms: form.terms.clone() };
        self.populations.push(Population {
            name: format!("{}.relay", self.graph.values[v].name),
            kind: NeuronKind::Relay,
            shape: shape.clone(),
            operands: vec![to_operand(&linear)],
        });
        let relayed = AffineForm {
            bias: form.bias.clone(),
            terms: vec![Term {
                source: Source::Population(self.populations.len() - 1),
                block: super::affine::identity(form.size()),
                overlap: false,
            }],
        };
        self.forms[v] = Some(relayed.clone());
        self.relayed.push(v);
        relayed
    }

    /// Input `position` of `node` broadcast to `shape`: an operand of an elementwise neuron. A
    /// broadcast keeps the constants of the input once, read through the broadcast's map.
    fn operand(&mut self, node: &Node, position: usize, shape: &[usize]) -> Result<Operand, ConvertError> {
        let form = self.input_form(node, position)?;
        if form.bias.shape() == shape {
            return Ok(to_operand(&form));
        }
        let index = broadcast_index(form.bias.shape(), shape);
        let targets: usize = shape.iter().product();
        let bias = Constants::broadcast(form.bias.iter().copied().collect(), index.clone(), targets);
        let op = SynapseBlock::Select(SelectBlock { targets, sources: form.size(), source: index, scale: Scale::One });
        let terms = self.compose(node, position, &op)?;
        let operand = to_operand(&AffineForm { bias: ArrayD::zeros(IxDyn(&[0])), terms });
        Ok(Operand { bias, projections: operand.projections })
    }

    /// The form of an affine node's output from its inputs' forms.
    fn affine(&mut self, node: &Node) -> Result<AffineForm, ConvertError> {
        let graph = self.graph;
        let out_shape = &graph.values[node.output].shape;
        let shape_error = |e: String| ConvertError::node(node, &e, "check the model's shapes");
        if matches!(node.op, Op::Reshape) {
            let form = self.input_form(node, 0)?;
            let bias = eval_op::<f64>(&node.op, &[form.bias.view()], out_shape).map_err(shape_error)?;
            return Ok(AffineForm { bias, terms: form.terms });
        }
        let parts = match node.op {
            Op::Conv { .. } => vec![(
                0,
                SynapseBlock::Conv(
                    conv_block(graph, node)
                        .map_err(|e| ConvertError::node(node, &e, "check the convolution's attributes"))?,
                ),
            )],
            _ => linear_parts(graph, node).map_err(|e| {
                ConvertError::node(
                    node,
                    &format!("cannot be converted: {e}"),
                    "only affine maps may connect two nonlinearities",
                )
            })?,
        };
        // A convolution's or a matrix product's weights are not read as forms (they are large).
        let bias = match (&node.op, parts.as_slice()) {
            (Op::Conv { .. } | Op::MatMul | Op::Gemm { .. }, [(position, block)]) => {
                let input = self.input_form(node, *position)?;
                weighted_bias(graph, node, block, &input.bias).map_err(shape_error)?
            }
            _ => {
                let inputs: Vec<AffineForm> =
                    (0..node.inputs.len()).map(|i| self.input_form(node, i)).collect::<Result<_, _>>()?;
                let biases: Vec<ArrayViewD<f64>> = inputs.iter().map(|f| f.bias.view()).collect();
                eval_op::<f64>(&node.op, &biases, out_shape).map_err(shape_error)?
            }
        };
        if let (Op::Conv { .. }, [(_, op)]) = (&node.op, parts.as_slice()) {
            let mut form = self.input_form(node, 0)?;
            if !form.is_direct() {
                if !self.relay_early.contains(&node.inputs[0]) {
                    if let Some(composed) = compose_form(&form, op) {
                        let from_input = form.terms.iter().all(|t| t.source == Source::Input);
                        if Composition::of(&form, &composed, op).pays(from_input) {
                            return Ok(AffineForm { bias, terms: composed });
                        }
                    }
                }
                form = self.relay(node.inputs[0], &form);
            }
            return Ok(AffineForm { bias, terms: apply_to_direct(&form, op) });
        }
        let mut terms: Vec<Term> = Vec::new();
        for (position, op) in parts {
            for term in self.compose(node, position, &op)? {
                merge_term(&mut terms, term);
            }
        }
        if let Some(term) = terms.iter().find(|t| t.block.stored_indices() as u64 > 2 * SPARSE_BUDGET) {
            return Err(ConvertError::node(
                node,
                &format!(
                    "its {} block would hold {} index entries",
                    term.block.kind_name(),
                    term.block.stored_indices()
                ),
                "simplify the model around this node",
            ));
        }
        Ok(AffineForm { bias, terms })
    }
}

/// The constant part of a convolution's or a matrix product's output, from its block (which
/// reads the weights where the model stores them) and its own bias: `A c_in + b`.
fn weighted_bias(graph: &Graph, node: &Node, block: &SynapseBlock, input: &ArrayD<f64>) -> Result<ArrayD<f64>, String> {
    let out_shape = &graph.values[node.output].shape;
    let size: usize = out_shape.iter().product();
    let constant = |i: usize| node.inputs.get(i).and_then(|&v| graph.constant(v));
    let mut out = match (&node.op, constant(2)) {
        (Op::Conv { .. }, Some(b)) => {
            let plane = size / b.len().max(1);
            b.iter_f64().flat_map(|b| std::iter::repeat_n(b, plane)).collect()
        }
        (Op::Gemm { beta, .. }, Some(c)) => {
            let index = broadcast_index(c.shape(), out_shape);
            let flat: Vec<f64> = c.iter_f64().collect();
            (0..size).map(|i| beta * flat[index.get(i).expect("a broadcast has no holes")]).collect()
        }
        _ => vec![0.0; size],
    };
    let input: Vec<f64> = input.iter().copied().collect();
    if input.iter().any(|&c| c != 0.0) {
        block.multiply_add(&input, &mut out);
    }
    ArrayD::from_shape_vec(IxDyn(out_shape), out).map_err(|e| e.to_string())
}

/// `op` applied to every term of `form`, or `None` when a term's composition has no structure
/// and exceeds the sparse budget.
fn compose_form(form: &AffineForm, op: &SynapseBlock) -> Option<Vec<Term>> {
    form.terms
        .iter()
        .map(|term| {
            compose(op, &term.block).block().map(|block| Term { source: term.source, block, overlap: term.overlap })
        })
        .collect()
}

/// `op` applied to a form that is its one source unchanged (or a constant).
fn apply_to_direct(form: &AffineForm, op: &SynapseBlock) -> Vec<Term> {
    form.terms
        .iter()
        .map(|term| {
            let block = match compose(op, &term.block) {
                Composed::Structured(block) | Composed::Sparse(block) => block,
                Composed::TooLarge { .. } => op.clone(),
            };
            Term { source: term.source, block, overlap: term.overlap }
        })
        .collect()
}

/// Synapses and shared weights (parameters, not per-element factors) of applying an op to a
/// form: the form's blocks, the composed blocks, the op.
struct Composition {
    before: u64,
    after: u64,
    matrix: u64,
    stored_before: u64,
    stored_after: u64,
    stored_matrix: u64,
}

impl Composition {
    /// The counts of `composed` (= `op` applied to `form`).
    fn of(form: &AffineForm, composed: &[Term], op: &SynapseBlock) -> Self {
        let stored = |terms: &[Term]| terms.iter().map(|t| t.block.parameters() as u64).sum();
        Composition {
            before: form.synapses(),
            after: composed.iter().filter(|t| !t.overlap).map(|t| t.block.synapses()).sum(),
            matrix: op.synapses(),
            stored_before: stored(&form.terms),
            stored_after: stored(composed),
            stored_matrix: op.parameters() as u64,
        }
    }

    /// Whether the composed maps hold no more synapses (work per step) and no more shared
    /// weights than the two maps apart; otherwise the form is better kept as a relay. Weights
    /// composed onto the input cost nothing per step (the float encoder's closed form computes
    /// them once per input), so there only the synapses count.
    fn pays(&self, from_input: bool) -> bool {
        self.after <= self.matrix + self.before
            && (from_input || self.stored_after <= self.stored_matrix + self.stored_before)
    }

    /// Whether a value read by `readers` nodes is better kept as one relay than composed into
    /// each: when a reduction (few synapses, such as LayerNorm's mean) composed with the value's
    /// form holds almost as many synapses as the form itself, every reader would repeat the
    /// form's synapses, while a relay holds them once and each reader adds only its own map.
    fn relay_serves(&self, readers: usize) -> bool {
        let readers = readers as u64;
        readers > 1 && self.after > 4 * self.matrix && self.before / readers + self.matrix < self.after
    }
}

/// The neuron kind a node becomes, `None` for an affine node, or an error for a nonlinearity
/// that cannot be converted.
pub(super) fn neuron_kind(
    graph: &Graph,
    node: &Node,
    options: &ConvertOptions,
) -> Result<Option<NeuronKind>, ConvertError> {
    let activation = |i: usize| node.inputs.get(i).is_some_and(|&v| !graph.is_constant(v));
    let kind = match &node.op {
        Op::Relu => NeuronKind::Relu,
        Op::LeakyRelu { alpha } => NeuronKind::LeakyRelu { slope: *alpha },
        Op::Gelu { .. } => NeuronKind::Gelu { target: options.gelu },
        Op::ScaledGelu { .. } => NeuronKind::ScaledGelu { target: options.gelu },
        Op::Sigmoid => NeuronKind::Elementwise { function: Elementwise::Sigmoid },
        Op::Tanh => NeuronKind::Elementwise { function: Elementwise::Tanh },
        Op::HardSigmoid { alpha, beta } => {
            NeuronKind::Elementwise { function: Elementwise::HardSigmoid { alpha: *alpha, beta: *beta } }
        }
        Op::HardSwish => NeuronKind::Elementwise { function: Elementwise::Hardswish },
        Op::Softplus => NeuronKind::Elementwise { function: Elementwise::Softplus },
        Op::Exp => NeuronKind::Exp,
        Op::Abs => NeuronKind::Abs,
        Op::Square => NeuronKind::Square,
        Op::DivSqrt => NeuronKind::DivSqrt,
        Op::Max => NeuronKind::Max,
        Op::Mul if activation(0) && activation(1) => NeuronKind::Product,
        Op::Div if activation(1) => NeuronKind::Division,
        Op::Pow => {
            return Err(ConvertError::node(
                node,
                "Pow converts only with exponent 2 (a square neuron)",
                "rewrite the power as products of the input",
            ))
        }
        Op::Sqrt => {
            return Err(ConvertError::node(
                node,
                "Sqrt converts only as the divisor of a Div, x1 / sqrt(x2) (LayerNorm's normalisation)",
                "divide by the square root directly after taking it",
            ))
        }
        Op::Erf => {
            return Err(ConvertError::node(
                node,
                "Erf converts only inside GELU's 0.5·x·(1 + erf(x/√2)) pattern",
                "use torch.nn.GELU or export at opset 20 so the exporter writes a Gelu node",
            ))
        }
        Op::MaxPool { .. } | Op::LayerNorm { .. } | Op::Softmax { .. } => {
            return Err(ConvertError::node(
                node,
                "was left undecomposed by the conversion passes",
                "check the warnings above",
            ))
        }
        _ => return Ok(None),
    };
    Ok(Some(kind))
}

/// The kernel and geometry of a Conv node (without its bias).
pub fn conv_block(graph: &Graph, node: &Node) -> Result<ConvBlock, String> {
    let Op::Conv { strides, pads, dilations, groups } = &node.op else {
        return Err("not a convolution".into());
    };
    let x = &graph.values[node.inputs[0]].shape;
    let y = &graph.values[node.output].shape;
    let weight =
        node.inputs.get(1).and_then(|&w| graph.constant(w)).ok_or("the convolution's weights must be constant")?;
    if x.len() != 4 || y.len() != 4 || weight.ndim() != 4 {
        return Err(format!("only 2-D convolutions convert (input {x:?})"));
    }
    if x[0] != 1 {
        return Err(format!("only a batch of one converts (input {x:?})"));
    }
    Ok(ConvBlock::new(
        weight.iter_f64().collect(),
        [x[1], x[2], x[3]],
        [y[1], y[2], y[3]],
        [weight.shape()[2], weight.shape()[3]],
        *strides,
        [pads[0], pads[1]],
        *dilations,
        *groups,
    ))
}
