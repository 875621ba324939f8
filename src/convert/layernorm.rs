//! Pass 3: LayerNorm as m = mean(x), u = x − m (affine), q = square(u) (neurons),
//! d = mean(q) + ε (affine), n = u / sqrt(d) (two-operand neurons), γ n + β (affine).

use ndarray::{ArrayD, IxDyn};

use super::{finish_pass, ConvertError};
use crate::model::{Graph, Op};

/// Replaces every LayerNorm node; notes how many.
pub fn decompose(graph: &mut Graph, notes: &mut Vec<String>) -> Result<(), ConvertError> {
    let mut replaced = Vec::new();
    for index in 0..graph.nodes.len() {
        let Op::LayerNorm { axis, epsilon } = graph.nodes[index].op else { continue };
        let node = graph.nodes[index].clone();
        let name = &node.name;
        let x = node.inputs[0];
        let rank = graph.values[x].shape.len();
        let axes: Vec<usize> = (axis..rank).collect();
        let reduce = Op::ReduceMean { axes: axes.clone(), keepdims: true };
        let mean = graph.add_node_inferred(format!("{name}.mean"), reduce.clone(), vec![x], None)?;
        let centred = graph.add_node_inferred(format!("{name}.centre"), Op::Sub, vec![x, mean], None)?;
        let square = graph.add_node_inferred(format!("{name}.square"), Op::Square, vec![centred], None)?;
        let variance = graph.add_node_inferred(format!("{name}.variance"), reduce, vec![square], None)?;
        let eps = graph.add_constant(format!("{name}.epsilon"), ArrayD::from_elem(IxDyn(&[1]), epsilon));
        let denominator = graph.add_node_inferred(format!("{name}.add_epsilon"), Op::Add, vec![variance, eps], None)?;
        let has_scale = node.inputs.len() > 1;
        let has_bias = node.inputs.len() > 2;
        let normalise_out = if has_scale || has_bias { None } else { Some(node.output) };
        let mut y = match normalise_out {
            Some(out) => {
                graph.add_node(format!("{name}.normalise"), Op::DivSqrt, vec![centred, denominator], out);
                out
            }
            None => {
                graph.add_node_inferred(format!("{name}.normalise"), Op::DivSqrt, vec![centred, denominator], None)?
            }
        };
        if has_scale {
            let out = (!has_bias).then_some(node.output);
            y = add_binary(graph, format!("{name}.scale"), Op::Mul, y, node.inputs[1], out)?;
        }
        if has_bias {
            add_binary(graph, format!("{name}.shift"), Op::Add, y, node.inputs[2], Some(node.output))?;
        }
        replaced.push(index);
    }
    if replaced.is_empty() {
        return Ok(());
    }
    notes.push(format!("decomposed {} LayerNorm node(s) into square and x1/sqrt(x2) neurons", replaced.len()));
    finish_pass(graph, &replaced)
}

/// Adds a binary node, writing `output` when given.
pub(super) fn add_binary(
    graph: &mut Graph,
    name: String,
    op: Op,
    a: usize,
    b: usize,
    output: Option<usize>,
) -> Result<usize, ConvertError> {
    Ok(match output {
        Some(out) => {
            graph.add_node(name, op, vec![a, b], out);
            out
        }
        None => graph.add_node_inferred(name, op, vec![a, b], None)?,
    })
}
