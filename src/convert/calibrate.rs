//! Calibrated dynamics: every population works on its own operating range. The calibration
//! inputs give each neuron a scale m, its largest output magnitude over the set or, for kinds
//! whose values are heavy-tailed, a few times its mean magnitude if that is less (see
//! [`scale_of`]); the neuron then computes f/m of operands scaled to match, and its readers
//! multiply its output by m. Both scalings are
//! affine, so they are absorbed into the synapse blocks and the reconstruction identity stays
//! exact, as in ReLU normalisation (which this pass extends from ReLU to every population whose
//! function allows it):
//!
//! | neuron | rewritten as |
//! |---|---|
//! | ReLU, LeakyReLU, abs | m · f(x / m) |
//! | max of 2 | m · max(x1 / m, x2 / m) |
//! | square | m · (x / √m)² |
//! | product, division, x1 / √x2 | m · g(x1 / m, x2) |
//! | exp | m · exp(x − ln m) |
//! | GELU | m · (gelu(x) / m), a neuron of its own kind whose second operand is the constant m |
//!
//! The other elementwise functions (sigmoid, tanh, ...) keep their own scale: they are bounded or
//! nearly linear where they are not. A neuron's estimate then moves by m·η_t in the model's
//! units, and its targets lie within a few units on the calibration set, inside the bound ±Σ η_t
//! of a schedule summing to several units (4.3 for exp:0.3:0.93).

use ndarray::{ArrayD, Zip};

use super::layernorm::add_binary;
use super::lower::neuron_kind;
use super::relu_norm::{peaks_and_mean_magnitudes, pool, Magnitudes, MIN_SCALE};
use super::{finish_pass, ConvertError, ConvertOptions};
use crate::model::{Graph, Op, ValueId};
use crate::snn::NeuronKind;

/// What the pass did to one population, for the report.
#[derive(Clone, Debug, PartialEq)]
pub struct PopulationRange {
    /// The neuron node's name (the population's name).
    pub name: String,
    /// Whether the population was rescaled (false for sigmoid, tanh and the other elementwise
    /// functions).
    pub scaled: bool,
    /// Smallest and largest scale m over the population's neurons (1 where unscaled).
    pub scale: (f64, f64),
    /// Per neuron, the largest magnitude of its target (in the neuron's own units) over the
    /// calibration inputs: a neuron whose value exceeds the schedule's Σ η_t cannot reach it.
    pub peaks: Vec<f32>,
}

impl PopulationRange {
    /// Fraction of the population's neurons whose target exceeds `bound` on some calibration
    /// input, i.e. whose estimate, bounded by `bound` = Σ η_t, saturates there.
    pub fn saturated(&self, bound: f64) -> f64 {
        if self.peaks.is_empty() {
            return 0.0;
        }
        self.peaks.iter().filter(|&&p| f64::from(p) > bound).count() as f64 / self.peaks.len() as f64
    }
}

/// How many times its mean magnitude a population's scale may be, where its largest value is not
/// the scale (see [`scale_of`]).
pub const TYPICAL_SPAN: f64 = 4.0;

/// The scale m of each neuron of a population of `kind`, from its largest (`peak`) and mean
/// magnitudes over the calibration inputs. ReLU-like neurons and max pooling keep the largest
/// value (ReLU normalisation as published): their outputs are 0 on many inputs, so their means
/// say little about their range. Every other kind takes `min(peak, TYPICAL_SPAN · mean)`: softmax's
/// exponentials, squares and products are heavy-tailed, and a scale set by one outlying input
/// would make the steps of every other input coarse. Values beyond the scale are still reached
/// while they stay within Σ η_t times it; the report counts those that do not (saturation).
fn scale_of(kind: NeuronKind, peak: &ArrayD<f64>, mean: &ArrayD<f64>) -> ArrayD<f64> {
    match kind {
        NeuronKind::Relu | NeuronKind::LeakyRelu { .. } | NeuronKind::Abs | NeuronKind::Max => peak.clone(),
        _ => {
            let mut m = peak.clone();
            Zip::from(&mut m).and(mean).for_each(|m, &a| *m = m.min(TYPICAL_SPAN * a));
            m
        }
    }
}

/// Whether a neuron of `kind` can be rescaled exactly (its function is homogeneous, exp or GELU).
fn scalable(kind: NeuronKind) -> bool {
    matches!(
        kind,
        NeuronKind::Relu
            | NeuronKind::LeakyRelu { .. }
            | NeuronKind::Abs
            | NeuronKind::Max
            | NeuronKind::Square
            | NeuronKind::Product
            | NeuronKind::Division
            | NeuronKind::DivSqrt
            | NeuronKind::Exp
            | NeuronKind::Gelu { .. }
    )
}

/// Rescales every population by its calibration maximum (see the module documentation); returns
/// per population what was done.
pub fn normalise(
    graph: &mut Graph,
    options: &ConvertOptions,
    notes: &mut Vec<String>,
) -> Result<Vec<PopulationRange>, ConvertError> {
    let mut neurons = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        if let Some(kind) = neuron_kind(graph, node, options)? {
            if kind != NeuronKind::Relay {
                neurons.push((i, kind));
            }
        }
    }
    if neurons.is_empty() {
        return Ok(Vec::new());
    }
    let calibration = &options.calibration;
    if calibration.is_empty() {
        return Err(ConvertError::Graph(
            "calibrated dynamics take each population's range from calibration inputs; give at least one".into(),
        ));
    }
    let nodes: Vec<usize> = neurons.iter().map(|&(i, _)| i).collect();
    let threads = options.threads.max(1);
    let gathered = peaks_and_mean_magnitudes(graph, &nodes, calibration, threads, options.progress.as_ref())?;
    let mut ranges = Vec::new();
    let mut scaled = 0;
    for (&(r, kind), gathered) in neurons.iter().zip(gathered) {
        let name = graph.nodes[r].name.clone();
        let Some(Magnitudes { peak, mean }) = gathered else {
            return Err(ConvertError::Graph(format!("calibration did not reach node `{name}`")));
        };
        let largest = peak.iter().copied().fold(0.0f64, f64::max);
        tracing::debug!(population = %name, kind = %kind.name(), largest, "calibrated range");
        if !scalable(kind) {
            ranges.push(PopulationRange {
                name,
                scaled: false,
                scale: (1.0, 1.0),
                peaks: peak.iter().map(|&p| p as f32).collect(),
            });
            continue;
        }
        let mut m = scale_of(kind, &peak, &mean);
        pool(&mut m, options.relu_norm);
        m.mapv_inplace(|v| if v <= MIN_SCALE { 1.0 } else { v });
        let unit = rescale(graph, r, kind, &m)?;
        let mut normalised = peak;
        Zip::from(&mut normalised).and(&m).for_each(|p, &m| *p /= m);
        let (low, high) = m.iter().fold((f64::INFINITY, 0.0f64), |(l, h), &v| (l.min(v), h.max(v)));
        ranges.push(PopulationRange {
            name: graph.nodes[unit].name.clone(),
            scaled: true,
            scale: (low, high),
            peaks: normalised.iter().map(|&p| p as f32).collect(),
        });
        scaled += 1;
    }
    notes.push(format!(
        "calibrated dynamics: scaled {scaled} of {} population(s) by their output magnitudes over {} calibration input(s)",
        neurons.len(),
        calibration.len()
    ));
    finish_pass(graph, &[])?;
    Ok(ranges)
}

/// Rewrites node `r` (a neuron of `kind`) as `m · g(operands scaled)`, returning the index of the
/// new neuron node.
fn rescale(graph: &mut Graph, r: usize, kind: NeuronKind, m: &ArrayD<f64>) -> Result<usize, ConvertError> {
    let node = graph.nodes[r].clone();
    let scale = graph.add_constant(format!("{}.range", node.name), m.clone());
    let divide = |graph: &mut Graph, x: ValueId, by: ArrayD<f64>, tag: &str| -> Result<ValueId, ConvertError> {
        let by = graph.add_constant(format!("{}.{tag}", node.name), by);
        add_binary(graph, format!("{}.{tag}_scaled", node.name), Op::Div, x, by, None)
    };
    let inputs = match kind {
        NeuronKind::Relu | NeuronKind::LeakyRelu { .. } | NeuronKind::Abs => {
            vec![divide(graph, node.inputs[0], m.clone(), "in")?]
        }
        NeuronKind::Max => {
            vec![divide(graph, node.inputs[0], m.clone(), "in1")?, divide(graph, node.inputs[1], m.clone(), "in2")?]
        }
        NeuronKind::Square => vec![divide(graph, node.inputs[0], m.mapv(f64::sqrt), "in")?],
        NeuronKind::Product | NeuronKind::Division | NeuronKind::DivSqrt => {
            vec![divide(graph, node.inputs[0], m.clone(), "in1")?, node.inputs[1]]
        }
        NeuronKind::Exp => {
            let shift = graph.add_constant(format!("{}.log_range", node.name), m.mapv(f64::ln));
            vec![add_binary(graph, format!("{}.shifted", node.name), Op::Sub, node.inputs[0], shift, None)?]
        }
        NeuronKind::Gelu { .. } => {
            let divisor = graph.add_constant(format!("{}.divisor", node.name), m.clone());
            vec![node.inputs[0], divisor]
        }
        _ => return Err(ConvertError::Graph(format!("internal: node `{}` cannot be rescaled", node.name))),
    };
    let op = match node.op {
        Op::Gelu { tanh } => Op::ScaledGelu { tanh },
        ref op => op.clone(),
    };
    let unit = graph.add_node_inferred(format!("{}.unit", node.name), op, inputs, None)?;
    let n = &mut graph.nodes[r];
    n.op = Op::Mul;
    n.inputs = vec![unit, scale];
    Ok(graph.nodes.len() - 1)
}
