//! Pass 4b: a matrix product of two activations (attention's q·kᵀ and p·v) as one product
//! neuron per term, `A[…, i, k, 1] · B[…, 1, k, j]`, and an affine sum over k.

use super::{finish_pass, ConvertError};
use crate::model::{Graph, Op};

/// Replaces every MatMul between two activations; notes how many.
pub fn decompose(graph: &mut Graph, notes: &mut Vec<String>) -> Result<(), ConvertError> {
    let mut replaced = Vec::new();
    for index in 0..graph.nodes.len() {
        let node = graph.nodes[index].clone();
        if !matches!(node.op, Op::MatMul) || node.inputs.iter().any(|&v| graph.is_constant(v)) {
            continue;
        }
        let (a, b) = (node.inputs[0], node.inputs[1]);
        let (sa, sb) = (graph.values[a].shape.clone(), graph.values[b].shape.clone());
        if sa.len() < 2 || sb.len() < 2 {
            return Err(ConvertError::node(
                &node,
                "a product of 1-D activations does not convert",
                "reshape the operands to matrices",
            ));
        }
        let rank = sa.len().max(sb.len());
        let widen = |s: &[usize], insert_at_end: bool| {
            let mut w = vec![1; rank - s.len()];
            w.extend_from_slice(s);
            if insert_at_end {
                w.push(1);
            } else {
                w.insert(w.len() - 2, 1);
            }
            w
        };
        let a_shape = widen(&sa, true);
        let b_shape = widen(&sb, false);
        let ar = graph.add_node_inferred(format!("{}.a", node.name), Op::Reshape, vec![a], Some(a_shape))?;
        let br = graph.add_node_inferred(format!("{}.b", node.name), Op::Reshape, vec![b], Some(b_shape))?;
        let terms = graph.add_node_inferred(format!("{}.terms", node.name), Op::Mul, vec![ar, br], None)?;
        graph.add_node(
            format!("{}.sum", node.name),
            Op::ReduceSum { axes: vec![rank - 1], keepdims: false },
            vec![terms],
            node.output,
        );
        replaced.push(index);
    }
    if replaced.is_empty() {
        return Ok(());
    }
    notes.push(format!("decomposed {} activation-by-activation MatMul node(s) into product neurons", replaced.len()));
    finish_pass(graph, &replaced)
}
