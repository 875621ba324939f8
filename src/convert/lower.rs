//! The last pass: nonlinear nodes become populations of signGD neurons, everything between
//! them is lowered into synapse blocks and constants (SPEC.md §4, steps 6 and 7).

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use sprs::CsMat;

use super::affine::{
    broadcast_indices, broadcast_matrix, conv_matrix, merge_term, to_operand, AffineForm, LinearMap, Term,
};
use super::linear::linear_parts;
use super::{ConvertError, ConvertOptions};
use crate::model::eval::eval_op;
use crate::model::{Graph, Node, Op};
use crate::snn::{ConvBlock, Elementwise, Network, NeuronKind, Population, Source};

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
    for node in &graph.nodes {
        let out_shape = graph.values[node.output].shape.clone();
        let form = match neuron_kind(graph, node, options)? {
            Some(kind) => {
                let mut operands = Vec::new();
                for position in 0..kind.arity() {
                    let form = lowering.broadcast_input(node, position, &out_shape)?;
                    operands.push(to_operand(&form));
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

    /// Applies `matrix` to input `position` of `node`. Where composing the maps would hold more
    /// synapses than the two maps apart, the input becomes a relay first, and later readers of
    /// the same value reuse that relay.
    fn compose(&mut self, node: &Node, position: usize, matrix: &CsMat<f64>) -> Result<Vec<Term>, ConvertError> {
        let form = self.input_form(node, position)?;
        let composed = form.transform(matrix);
        let v = node.inputs[position];
        let readers = self.graph.nodes.iter().filter(|n| n.inputs.contains(&v)).count();
        // A form read from the input alone is cheap to compose: the float encoder's closed form
        // computes it once per input.
        let from_input = form.terms.iter().all(|t| t.source == Source::Input);
        let early = self.relay_early.contains(&v) && !is_direct(&form) && !from_input;
        let sizes = Composition::of(&form, &composed, matrix);
        if !early && sizes.pays() && !sizes.relay_serves(readers) {
            return Ok(composed);
        }
        let relay = self.relay(v, &form);
        Ok(relay.transform(matrix))
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
            terms: vec![Term { source: Source::Population(self.populations.len() - 1), map: LinearMap::Identity }],
        };
        self.forms[v] = Some(relayed.clone());
        self.relayed.push(v);
        relayed
    }

    /// Input `position` of `node` broadcast to `shape` (an operand of an elementwise neuron).
    fn broadcast_input(&mut self, node: &Node, position: usize, shape: &[usize]) -> Result<AffineForm, ConvertError> {
        let form = self.input_form(node, position)?;
        if form.bias.shape() == shape {
            return Ok(form);
        }
        let bias_flat: Vec<f64> = form.bias.iter().copied().collect();
        let bias = broadcast_indices(form.bias.shape(), shape).into_iter().map(|i| bias_flat[i]).collect();
        let matrix = broadcast_matrix(form.bias.shape(), shape, |_| 1.0);
        Ok(AffineForm {
            bias: ArrayD::from_shape_vec(IxDyn(shape), bias).expect("broadcast size"),
            terms: self.compose(node, position, &matrix)?,
        })
    }

    /// The form of an affine node's output from its inputs' forms.
    fn affine(&mut self, node: &Node) -> Result<AffineForm, ConvertError> {
        let graph = self.graph;
        let out_shape = &graph.values[node.output].shape;
        let inputs: Vec<AffineForm> =
            (0..node.inputs.len()).map(|i| self.input_form(node, i)).collect::<Result<_, _>>()?;
        let biases: Vec<ArrayViewD<f64>> = inputs.iter().map(|f| f.bias.view()).collect();
        let bias = eval_op::<f64>(&node.op, &biases, out_shape)
            .map_err(|e| ConvertError::node(node, &e, "check the model's shapes"))?;
        if matches!(node.op, Op::Reshape) {
            return Ok(AffineForm { bias, terms: inputs[0].terms.clone() });
        }
        if let Op::Conv { .. } = node.op {
            let conv = conv_block(graph, node)
                .map_err(|e| ConvertError::node(node, &e, "check the convolution's attributes"))?;
            let matrix = conv_matrix(&conv);
            let mut form = inputs[0].clone();
            if !is_direct(&form) {
                let composed = form.transform(&matrix);
                let pays = Composition::of(&form, &composed, &matrix).pays();
                if !self.relay_early.contains(&node.inputs[0]) && pays {
                    return Ok(AffineForm { bias, terms: composed });
                }
                form = self.relay(node.inputs[0], &form);
            }
            let terms =
                form.terms.iter().map(|t| Term { source: t.source, map: LinearMap::Conv(conv.clone()) }).collect();
            return Ok(AffineForm { bias, terms });
        }
        let parts = linear_parts(graph, node).map_err(|e| {
            ConvertError::node(
                node,
                &format!("cannot be converted: {e}"),
                "only affine maps may connect two nonlinearities",
            )
        })?;
        let size: usize = out_shape.iter().product();
        let mut terms: Vec<Term> = Vec::new();
        for (position, matrix) in parts {
            for term in self.compose(node, position, &matrix)? {
                merge_term(&mut terms, term, size);
            }
        }
        Ok(AffineForm { bias, terms })
    }
}

/// Whether a form is its one source unchanged, or a constant: nothing to compose or relay.
fn is_direct(form: &AffineForm) -> bool {
    matches!(form.terms.as_slice(), [] | [Term { map: LinearMap::Identity, .. }])
}

/// Synapse counts of applying a matrix to a form: the form's maps, the composed maps, the matrix.
struct Composition {
    before: usize,
    after: usize,
    matrix: usize,
}

impl Composition {
    /// The counts of `composed` (= `matrix` applied to `form`).
    fn of(form: &AffineForm, composed: &[Term], matrix: &CsMat<f64>) -> Self {
        Composition {
            before: form.terms.iter().map(|t| map_size(&t.map, form.size())).sum(),
            after: composed.iter().map(|t| map_size(&t.map, matrix.rows())).sum(),
            matrix: matrix.nnz(),
        }
    }

    /// Whether the composed maps hold no more synapses than the two maps apart; otherwise the
    /// form is better kept as a relay.
    fn pays(&self) -> bool {
        self.after <= self.matrix + self.before
    }

    /// Whether a value read by `readers` nodes is better kept as one relay than composed into
    /// each: when a reduction (few synapses, such as LayerNorm's mean) composed with the value's
    /// form holds almost as many synapses as the form itself, every reader would repeat the
    /// form's synapses, while a relay holds them once and each reader adds only its own map.
    fn relay_serves(&self, readers: usize) -> bool {
        readers > 1 && self.after > 4 * self.matrix && self.before / readers + self.matrix < self.after
    }
}

/// Number of synapses a map holds.
fn map_size(map: &LinearMap, rows: usize) -> usize {
    match map {
        LinearMap::Identity => rows,
        LinearMap::Conv(conv) => {
            let block = crate::snn::SynapseBlock::Conv(conv.clone());
            block.fan_out().iter().map(|&f| f as usize).sum()
        }
        LinearMap::Sparse(m) => m.nnz(),
    }
}

/// The neuron kind a node becomes, `None` for an affine node, or an error for a nonlinearity
/// that cannot be converted.
fn neuron_kind(graph: &Graph, node: &Node, options: &ConvertOptions) -> Result<Option<NeuronKind>, ConvertError> {
    let activation = |i: usize| node.inputs.get(i).is_some_and(|&v| !graph.is_constant(v));
    let kind = match &node.op {
        Op::Relu => NeuronKind::Relu,
        Op::LeakyRelu { alpha } => NeuronKind::LeakyRelu { slope: *alpha },
        Op::Gelu { .. } => NeuronKind::Gelu { target: options.gelu },
        Op::Sigmoid => NeuronKind::Elementwise { function: Elementwise::Sigmoid },
        Op::Tanh => NeuronKind::Elementwise { function: Elementwise::Tanh },
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
    Ok(ConvBlock {
        kernel: weight.iter_f64().collect(),
        in_shape: [x[1], x[2], x[3]],
        out_shape: [y[1], y[2], y[3]],
        kernel_size: [weight.shape()[2], weight.shape()[3]],
        strides: *strides,
        pads: [pads[0], pads[1]],
        dilations: *dilations,
        groups: *groups,
        target_scale: Vec::new(),
    })
}
