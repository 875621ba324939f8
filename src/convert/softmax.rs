//! Pass 4a: softmax as exp neurons, an affine sum, and division neurons x1/x2. Under calibrated
//! dynamics the exponent is first centred on its mean along the softmax axis (affine, and softmax
//! does not change when every exponent moves by the same amount): exp(x − mean x) varies far less
//! from input to input than exp(x), so one scale per neuron fits every input.

use super::layernorm::add_binary;
use super::{finish_pass, ConvertError};
use crate::model::{Graph, Op};

/// Replaces every Softmax node, centring its exponents when `centred`; notes how many.
pub fn decompose(graph: &mut Graph, centred: bool, notes: &mut Vec<String>) -> Result<(), ConvertError> {
    let mut replaced = Vec::new();
    for index in 0..graph.nodes.len() {
        let Op::Softmax { axis } = graph.nodes[index].op else { continue };
        let node = graph.nodes[index].clone();
        let mut exponent = node.inputs[0];
        if centred {
            let reduce = Op::ReduceMean { axes: vec![axis], keepdims: true };
            let mean = graph.add_node_inferred(format!("{}.mean", node.name), reduce, vec![exponent], None)?;
            exponent = add_binary(graph, format!("{}.centre", node.name), Op::Sub, exponent, mean, None)?;
        }
        let exp = graph.add_node_inferred(format!("{}.exp", node.name), Op::Exp, vec![exponent], None)?;
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
