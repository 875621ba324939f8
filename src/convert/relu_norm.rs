//! Pass 5: ReLU normalisation from calibration inputs. m = per-element maximum of the ReLU's
//! output over the calibration set (m := 1 where m ≤ 1e−5); ReLU(x) becomes m ⊙ ReLU(x / m),
//! and the scalings are absorbed into the synapse blocks, so the neurons work on [0, 1].

use ndarray::ArrayD;

use super::layernorm::add_binary;
use super::{finish_pass, ConvertError};
use crate::model::{Graph, Op};

/// Below this a calibration maximum is treated as zero and the scale set to 1.
pub const MIN_SCALE: f64 = 1e-5;

/// Normalises every ReLU node; notes how many and from how many inputs.
pub fn normalise(graph: &mut Graph, calibration: &[ArrayD<f64>], notes: &mut Vec<String>) -> Result<(), ConvertError> {
    let relus: Vec<usize> = (0..graph.nodes.len()).filter(|&i| matches!(graph.nodes[i].op, Op::Relu)).collect();
    if relus.is_empty() {
        return Ok(());
    }
    if calibration.is_empty() {
        return Err(ConvertError::Graph(
            "the model has ReLU nodes, which need calibration inputs for normalisation; give at least one".into(),
        ));
    }
    let mut maxima: Vec<Option<ArrayD<f64>>> = vec![None; relus.len()];
    for input in calibration {
        let values = graph.evaluate_all::<f64>(input)?;
        for (slot, &r) in maxima.iter_mut().zip(&relus) {
            let out = values[graph.nodes[r].output]
                .as_ref()
                .ok_or_else(|| ConvertError::Graph("calibration did not reach a ReLU".into()))?;
            match slot {
                None => *slot = Some(out.clone()),
                Some(m) => m.zip_mut_with(out, |a, &b| *a = a.max(b)),
            }
        }
    }
    for (&r, m) in relus.iter().zip(maxima) {
        let mut m = m.expect("one calibration input at least");
        m.mapv_inplace(|v| if v <= MIN_SCALE { 1.0 } else { v });
        let node = graph.nodes[r].clone();
        let scale = graph.add_constant(format!("{}.calibration_max", node.name), m);
        let scaled = add_binary(graph, format!("{}.normalise", node.name), Op::Div, node.inputs[0], scale, None)?;
        let relu = graph.add_node_inferred(format!("{}.unit", node.name), Op::Relu, vec![scaled], None)?;
        let n = &mut graph.nodes[r];
        n.op = Op::Mul;
        n.inputs = vec![relu, scale];
    }
    notes.push(format!(
        "normalised {} ReLU node(s) by their maxima over {} calibration input(s)",
        relus.len(),
        calibration.len()
    ));
    finish_pass(graph, &[])
}
