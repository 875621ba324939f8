//! The reconstruction identity of SPEC.md §2, checked on a converted network: with every source
//! carrying its ANN value (and every relay its linear response to those), each operand's synapse
//! blocks plus constants reproduce the ANN's value at that node's input, and the readout
//! reproduces the ANN's output. Computed with the blocks' own products in precision `F`.

use ndarray::ArrayD;
use serde::Serialize;

use super::affine::broadcast_index;
use super::{Conversion, ConvertError};
use crate::model::ModelError;
use crate::real::Real;
use crate::snn::{Operand, Source};

/// How far one operand (or the readout) is from the ANN.
#[derive(Clone, Debug, Serialize)]
pub struct OperandCheck {
    /// Population name (`readout` for the readout).
    pub population: String,
    /// Operand, from 1.
    pub operand: usize,
    /// Largest |network − ANN| over the operand's elements.
    pub max_error: f64,
    /// Largest |ANN| over the operand's elements.
    pub max_value: f64,
    /// Largest error of an element relative to the magnitude of what it sums,
    /// `|network − ANN| / (|c| + Σ |A| |u|)`: the measure rounding bounds (a sum of n terms in
    /// precision ε is within about n ε of it), whatever cancellation or normalisation (a ReLU
    /// divided by a small calibration maximum) does to the value itself.
    pub relative_error: f64,
}

/// Every operand's check, in network order, the readout last.
#[derive(Clone, Debug, Serialize)]
pub struct Reconstruction {
    /// Precision the products were computed in.
    pub precision: &'static str,
    /// One entry per operand of every neuron population, then the readout.
    pub operands: Vec<OperandCheck>,
}

impl Reconstruction {
    /// The operand with the largest relative error.
    pub fn worst(&self) -> Option<&OperandCheck> {
        self.operands.iter().max_by(|a, b| a.relative_error.total_cmp(&b.relative_error))
    }
}

/// Checks the identity on one input (of the model's input shape, batch included), the ANN
/// evaluated in double precision, the network's products in `F`.
pub fn reconstruction<F: Real>(conversion: &Conversion, input: &ArrayD<f64>) -> Result<Reconstruction, ConvertError> {
    let graph = &conversion.graph;
    let network = &conversion.network;
    let values = graph.evaluate_all::<f64>(input)?;
    let value = |v: usize| -> Result<Vec<f64>, ConvertError> {
        match (&values[v], graph.constant(v)) {
            (Some(a), _) => Ok(a.iter().copied().collect()),
            (None, Some(c)) => Ok(c.iter_f64().collect()),
            _ => Err(ModelError::Eval {
                node: graph.values[v].name.clone(),
                op: "-".into(),
                detail: "the value was not computed".into(),
            }
            .into()),
        }
    };
    let node_of = |name: &str| {
        graph.nodes.iter().find(|n| n.name == name).ok_or_else(|| {
            ConvertError::Graph(format!("population `{name}` has no node of that name in the converted graph"))
        })
    };
    let flat_input: Vec<F> = input.iter().map(|&x| F::of(x)).collect();
    let abs_input: Vec<f64> = input.iter().map(|x| x.abs()).collect();
    // Every source's value in F, and its magnitude in f64 (for the rounding bound).
    let mut outputs: Vec<Vec<F>> = Vec::with_capacity(network.populations.len());
    let mut magnitudes: Vec<Vec<f64>> = Vec::with_capacity(network.populations.len());
    let mut operands = Vec::new();
    for population in &network.populations {
        let check = |operand: &Operand, outputs: &[Vec<F>], magnitudes: &[Vec<f64>]| {
            (affine(operand, &flat_input, outputs), magnitude(operand, &abs_input, magnitudes))
        };
        if population.kind.is_relay() {
            let (linear, size) = check(&population.operands[0], &outputs, &magnitudes);
            outputs.push(linear);
            magnitudes.push(size);
            continue;
        }
        let node = node_of(&population.name)?;
        for (j, operand) in population.operands.iter().enumerate() {
            let input = node.inputs[j];
            let raw = value(input)?;
            let index = broadcast_index(&graph.values[input].shape, &population.shape);
            let expected = (0..population.size()).map(|t| raw[index.get(t).expect("a broadcast has no holes")]);
            let (ours, size) = check(operand, &outputs, &magnitudes);
            operands.push(compare(&population.name, j + 1, &ours, &size, expected));
        }
        let output = value(node.output)?;
        magnitudes.push(output.iter().map(|v| v.abs()).collect());
        outputs.push(output.into_iter().map(F::of).collect());
    }
    let logits = value(graph.output)?;
    let (readout, size) =
        (affine(&network.readout, &flat_input, &outputs), magnitude(&network.readout, &abs_input, &magnitudes));
    operands.push(compare("readout", 1, &readout, &size, logits.into_iter()));
    Ok(Reconstruction { precision: F::NAME, operands })
}

/// `|c| + Σ |A| |u|` of an operand, in f64.
fn magnitude(operand: &Operand, input: &[f64], magnitudes: &[Vec<f64>]) -> Vec<f64> {
    let mut z: Vec<f64> = operand.bias.to_vec().into_iter().map(f64::abs).collect();
    for projection in &operand.projections {
        let source = match projection.source {
            Source::Input => input,
            Source::Population(p) => &magnitudes[p],
        };
        projection.block.absolute().multiply_add(source, &mut z);
    }
    z
}

/// `Σ A u + c` of an operand, every source carrying `outputs` (the input `input`).
fn affine<F: Real>(operand: &Operand, input: &[F], outputs: &[Vec<F>]) -> Vec<F> {
    let mut z: Vec<F> = operand.bias.to_vec().into_iter().map(F::of).collect();
    for projection in &operand.projections {
        let source = match projection.source {
            Source::Input => input,
            Source::Population(p) => &outputs[p],
        };
        projection.block.cast::<F>().multiply_add(source, &mut z);
    }
    z
}

fn compare<F: Real>(
    population: &str,
    operand: usize,
    ours: &[F],
    magnitude: &[f64],
    expected: impl Iterator<Item = f64>,
) -> OperandCheck {
    let (mut max_error, mut max_value, mut relative_error) = (0.0f64, 0.0f64, 0.0f64);
    for ((&z, &size), e) in ours.iter().zip(magnitude).zip(expected) {
        let error = (z.to_f64_lossless() - e).abs();
        max_error = max_error.max(error);
        max_value = max_value.max(e.abs());
        if error > 0.0 {
            relative_error = relative_error.max(error / size.max(f64::MIN_POSITIVE));
        }
    }
    OperandCheck { population: population.to_string(), operand, max_error, max_value, relative_error }
}
