//! Pass 2: max pooling as chains of two-operand max neurons. Pad with the constant −200, then
//! along H take rows 0::s and fold in rows i::s for i = 1..k−1 (one max population each), then
//! the same along W: a k×k pool becomes 2(k−1) chained max populations.

use super::{finish_pass, ConvertError};
use crate::model::{Graph, Op, ValueId};

/// The constant that pads a pooled map (the reference's value).
pub const PAD_VALUE: f64 = -200.0;

/// Replaces every MaxPool node; notes how many.
pub fn decompose(graph: &mut Graph, notes: &mut Vec<String>) -> Result<(), ConvertError> {
    let mut replaced = Vec::new();
    for index in 0..graph.nodes.len() {
        let Op::MaxPool { kernel, strides, pads, dilations, ceil_mode } = graph.nodes[index].op.clone() else {
            continue;
        };
        let node = graph.nodes[index].clone();
        let fail = |problem: &str| ConvertError::node(&node, problem, "use a plain MaxPool2d (dilation 1, floor mode)");
        if dilations != [1, 1] {
            return Err(fail("dilated max pooling does not convert"));
        }
        let in_shape = graph.values[node.inputs[0]].shape.clone();
        if in_shape.len() != 4 {
            return Err(fail("only 2-D max pooling converts"));
        }
        let out_shape = graph.values[node.output].shape.clone();
        let floor_size =
            |axis: usize| (in_shape[axis] + pads[axis - 2] + pads[axis] - kernel[axis - 2]) / strides[axis - 2] + 1;
        if ceil_mode && (floor_size(2) != out_shape[2] || floor_size(3) != out_shape[3]) {
            return Err(fail("ceil_mode changes the output size"));
        }
        let mut x = node.inputs[0];
        if pads.iter().any(|&p| p > 0) {
            let op = Op::Pad { pads: vec![(0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])], value: PAD_VALUE };
            x = graph.add_node_inferred(format!("{}.pad", node.name), op, vec![x], None)?;
        }
        for (axis, k) in [(2usize, kernel[0]), (3, kernel[1])] {
            let is_last_axis = axis == 3;
            x = chain(
                graph,
                &node.name,
                x,
                axis,
                k,
                strides[axis - 2],
                out_shape[axis],
                is_last_axis.then_some(node.output),
            )?;
        }
        replaced.push(index);
    }
    if replaced.is_empty() {
        return Ok(());
    }
    notes.push(format!("decomposed {} MaxPool node(s) into chains of two-operand max neurons", replaced.len()));
    finish_pass(graph, &replaced)
}

/// Max over `k` strided slices along `axis`; the last max writes `output` when given.
#[allow(clippy::too_many_arguments)]
fn chain(
    graph: &mut Graph,
    name: &str,
    x: ValueId,
    axis: usize,
    k: usize,
    stride: usize,
    size: usize,
    output: Option<ValueId>,
) -> Result<ValueId, ConvertError> {
    let slice = |graph: &mut Graph, i: usize| {
        let op = Op::Slice {
            starts: vec![i],
            ends: vec![i + stride * (size - 1) + 1],
            axes: vec![axis],
            steps: vec![stride],
        };
        graph.add_node_inferred(format!("{name}.axis{axis}.slice{i}"), op, vec![x], None)
    };
    let mut acc = slice(graph, 0)?;
    for i in 1..k {
        let next = slice(graph, i)?;
        let node_name = format!("{name}.axis{axis}.max{i}");
        acc = match output {
            Some(out) if i == k - 1 => {
                graph.add_node(node_name, Op::Max, vec![acc, next], out);
                out
            }
            _ => graph.add_node_inferred(node_name, Op::Max, vec![acc, next], None)?,
        };
    }
    if k == 1 {
        if let Some(out) = output {
            graph.add_node(format!("{name}.axis{axis}.identity"), Op::Reshape, vec![acc], out);
            return Ok(out);
        }
    }
    Ok(acc)
}
