//! Pass 4c: `x1 / Sqrt(x2)` as one two-operand neuron (the form LayerNorm takes when exported
//! decomposed and not recognised as a whole).

use super::{finish_pass, ConvertError};
use crate::model::{Graph, Op};

/// Fuses every Div whose divisor is a Sqrt read only by Divs; notes how many.
pub fn fuse(graph: &mut Graph, notes: &mut Vec<String>) -> Result<(), ConvertError> {
    let mut fused = 0;
    for index in 0..graph.nodes.len() {
        if !matches!(graph.nodes[index].op, Op::Div) {
            continue;
        }
        let divisor = graph.nodes[index].inputs[1];
        let Some(sqrt) = graph.producer(divisor) else { continue };
        if !matches!(graph.nodes[sqrt].op, Op::Sqrt) || divisor == graph.output {
            continue;
        }
        let only_divs = graph
            .consumers(divisor)
            .iter()
            .all(|&c| matches!(graph.nodes[c].op, Op::Div) && graph.nodes[c].inputs[1] == divisor);
        if !only_divs {
            continue;
        }
        let radicand = graph.nodes[sqrt].inputs[0];
        let node = &mut graph.nodes[index];
        node.op = Op::DivSqrt;
        node.inputs[1] = radicand;
        fused += 1;
    }
    if fused == 0 {
        return Ok(());
    }
    notes.push(format!("fused {fused} Div-by-Sqrt node(s) into x1/sqrt(x2) neurons"));
    finish_pass(graph, &[])
}
