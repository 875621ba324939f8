//! The last pass: nonlinear nodes become populations of signGD neurons, everything between
//! them is lowered into synapse blocks and constants (SPEC.md §4, steps 6 and 7).

use ndarray::{ArrayD, IxDyn};

use super::affine::{broadcast_indices, broadcast_matrix, merge_term, to_operand, AffineForm, LinearMap, Term};
use super::linear::linear_parts;
use super::{ConvertError, ConvertOptions};
use crate::model::eval::eval_op;
use crate::model::{Graph, Node, Op};
use crate::snn::{ConvBlock, Elementwise, Network, NeuronKind, Population, Source};

/// Builds the spiking network of a graph whose nonlinearities are all neuron kinds.
pub fn lower(graph: &Graph, options: &ConvertOptions) -> Result<Network, ConvertError> {
    let mut forms: Vec<Option<AffineForm>> = vec![None; graph.values.len()];
    let input_shape = graph.values[graph.input].shape.clone();
    forms[graph.input] = Some(AffineForm::source(Source::Input, &input_shape));
    let mut populations: Vec<Population> = Vec::new();
    for node in &graph.nodes {
        let inputs: Vec<AffineForm> = node
            .inputs
            .iter()
            .map(|&v| match (&forms[v], graph.constant(v)) {
                (Some(form), _) => Ok(form.clone()),
                (None, Some(c)) => Ok(AffineForm::constant(c.clone())),
                (None, None) => {
                    Err(ConvertError::node(node, "reads a value that no earlier node produced", "re-export the model"))
                }
            })
            .collect::<Result<_, _>>()?;
        let out_shape = graph.values[node.output].shape.clone();
        let form = match neuron_kind(graph, node, options)? {
            Some(kind) => {
                let size = |s: Source| source_size(s, &input_shape, &populations);
                let operands = inputs
                    .iter()
                    .take(kind.arity())
                    .map(|form| to_operand(&broadcast(form, &out_shape), &size))
                    .collect();
                populations.push(Population { name: node.name.clone(), kind, shape: out_shape.clone(), operands });
                AffineForm::source(Source::Population(populations.len() - 1), &out_shape)
            }
            None => affine(graph, node, &inputs, &input_shape, &populations)?,
        };
        forms[node.output] = Some(form);
    }
    let output = forms[graph.output]
        .clone()
        .ok_or_else(|| ConvertError::Graph("the graph's output is not computed by any node".into()))?;
    let size = |s: Source| source_size(s, &input_shape, &populations);
    let readout = to_operand(&output, &size);
    let strip_batch =
        |shape: &[usize]| if shape.len() > 1 && shape[0] == 1 { shape[1..].to_vec() } else { shape.to_vec() };
    Ok(Network {
        input_shape: strip_batch(&input_shape),
        output_shape: strip_batch(&graph.values[graph.output].shape),
        populations,
        readout,
    })
}

fn source_size(source: Source, input_shape: &[usize], populations: &[Population]) -> usize {
    match source {
        Source::Input => input_shape.iter().product(),
        Source::Population(p) => populations[p].size(),
    }
}

/// The form broadcast to `shape` (an operand of an elementwise neuron).
fn broadcast(form: &AffineForm, shape: &[usize]) -> AffineForm {
    if form.bias.shape() == shape {
        return form.clone();
    }
    let bias_flat: Vec<f64> = form.bias.iter().copied().collect();
    let bias = broadcast_indices(form.bias.shape(), shape).into_iter().map(|i| bias_flat[i]).collect();
    let matrix = broadcast_matrix(form.bias.shape(), shape, |_| 1.0);
    AffineForm {
        bias: ArrayD::from_shape_vec(IxDyn(shape), bias).expect("broadcast size"),
        terms: form.transform(&matrix),
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

/// The form of an affine node's output from its inputs' forms.
fn affine(
    graph: &Graph,
    node: &Node,
    inputs: &[AffineForm],
    input_shape: &[usize],
    populations: &[Population],
) -> Result<AffineForm, ConvertError> {
    let out_shape = &graph.values[node.output].shape;
    let biases: Vec<&ArrayD<f64>> = inputs.iter().map(|f| &f.bias).collect();
    let bias = eval_op::<f64>(&node.op, &biases, out_shape)
        .map_err(|e| ConvertError::node(node, &e, "check the model's shapes"))?;
    if matches!(node.op, Op::Reshape) {
        return Ok(AffineForm { bias, terms: inputs[0].terms.clone() });
    }
    if let (Op::Conv { .. }, [term]) = (&node.op, inputs[0].terms.as_slice()) {
        if matches!(term.map, LinearMap::Identity) {
            let conv = conv_block(graph, node)
                .map_err(|e| ConvertError::node(node, &e, "check the convolution's attributes"))?;
            return Ok(AffineForm { bias, terms: vec![Term { source: term.source, map: LinearMap::Conv(conv) }] });
        }
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
        for term in inputs[position].transform(&matrix) {
            let source_elements = source_size(term.source, input_shape, populations);
            merge_term(&mut terms, term, size, source_elements);
        }
    }
    Ok(AffineForm { bias, terms })
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
        kernel: weight.iter().copied().collect(),
        in_shape: [x[1], x[2], x[3]],
        out_shape: [y[1], y[2], y[3]],
        kernel_size: [weight.shape()[2], weight.shape()[3]],
        strides: *strides,
        pads: [pads[0], pads[1]],
        dilations: *dilations,
        groups: *groups,
    })
}
