//! Pass 4a: softmax as exp neurons, an affine sum, and division neurons x1/x2.

use super::layernorm::add_binary;
use super::{finish_pass, ConvertError};
use crate::model::{Graph, Op};

/// Replaces every Softmax node; notes how many.
pub fn decompose(graph: &mut Graph, notes: &mut Vec<String>) -> Result<(), ConvertError> {
    let mut replaced = Vec::new();
    for index in 0..graph.nodes.len() {
        let Op::Softmax { axis } = graph.nodes[index].op else { continue };
        let node = graph.nodes[index].clone();
        let exp = graph.add_node_inferred(format!("{}.exp", node.name), Op::Exp, vec![node.inputs[0]], None)?;
        let sum = graph.add_node_inferred(
            format!("{}.sum", node.name),
            Op::ReduceSum { axes: vec![axis], keepdims: true },
            vec![exp],
            None,
        )?;
        add_binary(graph, format!("{}.divide", node.name), Op::Div, exp, sum, Some(node.output))?;
        replaced.push(index);
    }
    if replaced.is_empty() {
        return Ok(());
    }
    notes.push(format!("decomposed {} Softmax node(s) into exp and division neurons", replaced.len()));
    finish_pass(graph, &replaced)
}
