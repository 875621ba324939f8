//! Pass 1: fold each BatchNorm into the convolution before it when it is that convolution's
//! only consumer. Other BatchNorms stay: they are affine and lower into synapse blocks.

use ndarray::{ArrayD, Axis, IxDyn};

use super::{finish_pass, ConvertError};
use crate::model::{Graph, Op};

/// Folds every foldable BatchNorm; notes how many.
pub fn fold(graph: &mut Graph, notes: &mut Vec<String>) -> Result<(), ConvertError> {
    let mut removed = Vec::new();
    for index in 0..graph.nodes.len() {
        let Op::BatchNorm { epsilon } = graph.nodes[index].op else { continue };
        let bn = graph.nodes[index].clone();
        let x = bn.inputs[0];
        let Some(conv_index) = graph.producer(x) else { continue };
        if !matches!(graph.nodes[conv_index].op, Op::Conv { .. }) || graph.consumers(x).len() != 1 || x == graph.output
        {
            continue;
        }
        let params: Option<Vec<Vec<f64>>> =
            bn.inputs[1..5].iter().map(|&v| graph.constant(v).map(|c| c.iter_f64().collect())).collect();
        let Some(params) = params else { continue };
        let (gamma, beta, mean, var) = (&params[0], &params[1], &params[2], &params[3]);
        let conv = graph.nodes[conv_index].clone();
        let Some(weight) = graph.constant(conv.inputs[1]).map(|w| w.to_f64().into_owned()) else { continue };
        let channels = weight.shape()[0];
        if gamma.len() != channels {
            continue;
        }
        let scale: Vec<f64> = (0..channels).map(|c| gamma[c] / (var[c] + epsilon).sqrt()).collect();
        let mut folded = weight.clone();
        for (c, mut slice) in folded.axis_iter_mut(Axis(0)).enumerate() {
            slice.mapv_inplace(|w| w * scale[c]);
        }
        let bias: Vec<f64> = match conv.inputs.get(2).and_then(|&b| graph.constant(b)) {
            Some(b) => b.iter_f64().collect(),
            None => vec![0.0; channels],
        };
        let folded_bias: Vec<f64> = (0..channels).map(|c| (bias[c] - mean[c]) * scale[c] + beta[c]).collect();
        let w_id = graph.add_constant(format!("{}.folded_weight", conv.name), folded);
        let b_id = graph.add_constant(
            format!("{}.folded_bias", conv.name),
            ArrayD::from_shape_vec(IxDyn(&[channels]), folded_bias).expect("bias length"),
        );
        let node = &mut graph.nodes[conv_index];
        node.inputs = vec![conv.inputs[0], w_id, b_id];
        node.output = bn.output;
        removed.push(index);
    }
    if removed.is_empty() {
        return Ok(());
    }
    notes.push(format!("folded {} BatchNorm node(s) into the convolutions before them", removed.len()));
    finish_pass(graph, &removed)
}
