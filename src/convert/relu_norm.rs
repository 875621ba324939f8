//! Pass 5: ReLU normalisation from calibration inputs. m = per-element maximum of the ReLU's
//! output over the calibration set (m := 1 where m ≤ 1e−5); ReLU(x) becomes m ⊙ ReLU(x / m),
//! and the scalings are absorbed into the synapse blocks, so the neurons work on [0, 1]. With
//! [`ReluNorm::Channel`] or [`ReluNorm::Layer`], m is the maximum over each channel or the whole
//! output instead, so that a convolution's weights stay the same at every position.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use ndarray::{ArrayD, Axis, IxDyn};

use super::{CalibrationSet, ReluNorm};

use super::layernorm::add_binary;
use super::{finish_pass, ConvertError, ConvertOptions, Progress};
use crate::model::{Evaluator, Graph, Op};

/// Below this a calibration maximum is treated as zero and the scale set to 1.
pub const MIN_SCALE: f64 = 1e-5;

/// Normalises every ReLU node; notes how many and from how many inputs.
pub fn normalise(graph: &mut Graph, options: &ConvertOptions, notes: &mut Vec<String>) -> Result<(), ConvertError> {
    let relus: Vec<usize> = (0..graph.nodes.len()).filter(|&i| matches!(graph.nodes[i].op, Op::Relu)).collect();
    if relus.is_empty() {
        return Ok(());
    }
    let calibration = &options.calibration;
    if calibration.is_empty() {
        return Err(ConvertError::Graph(
            "the model has ReLU nodes, which need calibration inputs for normalisation; give at least one".into(),
        ));
    }
    let maxima = maxima(graph, &relus, calibration, options.threads.max(1), options.progress.as_ref(), |v| v)?;
    for (&r, m) in relus.iter().zip(maxima) {
        let Some(mut m) = m else {
            return Err(ConvertError::Graph(format!("calibration did not reach ReLU node `{}`", graph.nodes[r].name)));
        };
        pool(&mut m, options.relu_norm);
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
        "normalised {} ReLU node(s) by their maxima{} over {} calibration input(s)",
        relus.len(),
        match options.relu_norm {
            ReluNorm::Element => "",
            ReluNorm::Channel => " per channel",
            ReluNorm::Layer => " per layer",
        },
        calibration.len()
    ));
    finish_pass(graph, &[])
}

/// Replaces per-element maxima by the maximum of their channel or of the whole output. The
/// channel is axis 1 of a map `[N, C, H, W, …]`, the feature (last) axis of tokens `[N, T, F]`; a
/// vector's elements are its channels.
pub(super) fn pool(m: &mut ArrayD<f64>, norm: ReluNorm) {
    match norm {
        ReluNorm::Element => {}
        ReluNorm::Layer => {
            let max = m.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            m.fill(max);
        }
        ReluNorm::Channel if m.ndim() >= 3 => {
            let axis = if m.ndim() == 3 { 2 } else { 1 };
            for mut channel in m.axis_iter_mut(Axis(axis)) {
                let max = channel.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                channel.fill(max);
            }
        }
        ReluNorm::Channel => {}
    }
}

/// Per-element maxima of `measure` of the outputs of the nodes `relus` over the calibration
/// inputs (`measure` is the identity for ReLU outputs, `abs` for a magnitude), in double
/// precision. Maxima do not depend on the order the inputs are taken in.
pub(super) fn maxima(
    graph: &Graph,
    relus: &[usize],
    calibration: &CalibrationSet,
    threads: usize,
    progress: Option<&Progress>,
    measure: fn(f64) -> f64,
) -> Result<Vec<Option<ArrayD<f64>>>, ConvertError> {
    let reduction = Reduction {
        first: &|out: &ArrayD<f64>| out.mapv(measure),
        add: &|m: &mut ArrayD<f64>, out: &ArrayD<f64>| m.zip_mut_with(out, |a, &b| *a = a.max(measure(b))),
        merge: &|m: &mut ArrayD<f64>, other: ArrayD<f64>| m.zip_mut_with(&other, |a, &b| *a = a.max(b)),
    };
    reduce_outputs(graph, relus, calibration, threads, progress, &reduction)
}

/// Binary digits after the point of the fixed-point sums behind [`peaks_and_mean_magnitudes`].
const MEAN_FRACTION_BITS: i32 = 40;

/// Per-element magnitudes of a node's output over the calibration inputs.
pub(super) struct Magnitudes {
    /// The largest.
    pub peak: ArrayD<f64>,
    /// The mean.
    pub mean: ArrayD<f64>,
}

/// Per-element largest and mean magnitudes of the outputs of the nodes `nodes` over the
/// calibration inputs, in one pass. The sums behind the means are kept in 128-bit fixed point
/// (resolution 2⁻⁴⁰), so they are exact: like the maxima, the means do not depend on the order
/// the inputs are taken in, nor on the number of workers.
pub(super) fn peaks_and_mean_magnitudes(
    graph: &Graph,
    nodes: &[usize],
    calibration: &CalibrationSet,
    threads: usize,
    progress: Option<&Progress>,
) -> Result<Vec<Option<Magnitudes>>, ConvertError> {
    let unit = f64::powi(2.0, MEAN_FRACTION_BITS);
    let fixed = move |v: f64| (v.abs() * unit).round() as i128;
    type Gathered = (ArrayD<f64>, ArrayD<i128>);
    let reduction = Reduction {
        first: &|out: &ArrayD<f64>| (out.mapv(f64::abs), out.mapv(fixed)),
        add: &|(peak, sum): &mut Gathered, out: &ArrayD<f64>| {
            peak.zip_mut_with(out, |a, &b| *a = a.max(b.abs()));
            sum.zip_mut_with(out, |a, &b| *a = a.saturating_add(fixed(b)));
        },
        merge: &|(peak, sum): &mut Gathered, (other_peak, other_sum): Gathered| {
            peak.zip_mut_with(&other_peak, |a, &b| *a = a.max(b));
            sum.zip_mut_with(&other_sum, |a, &b| *a = a.saturating_add(b));
        },
    };
    let count = calibration.len().max(1) as f64;
    let gathered = reduce_outputs(graph, nodes, calibration, threads, progress, &reduction)?;
    let magnitudes = |(peak, sum): Gathered| Magnitudes { peak, mean: sum.mapv(|v| v as f64 / unit / count) };
    Ok(gathered.into_iter().map(|g| g.map(magnitudes)).collect())
}

/// How a per-element statistic of a node's output is gathered: started from the first output a
/// worker sees, extended by each further one, and the workers' results merged (in any order).
struct Reduction<'a, A> {
    first: &'a (dyn Fn(&ArrayD<f64>) -> A + Sync),
    add: &'a (dyn Fn(&mut A, &ArrayD<f64>) + Sync),
    merge: &'a (dyn Fn(&mut A, A) + Sync),
}

/// Gathers `reduction` over the outputs of the nodes `nodes` for every calibration input, in
/// double precision, by `threads` workers each taking the next inputs not yet taken. Each worker
/// keeps its own statistics and one evaluation's live values; they are merged at the end.
fn reduce_outputs<A: Send>(
    graph: &Graph,
    nodes: &[usize],
    calibration: &CalibrationSet,
    threads: usize,
    progress: Option<&Progress>,
    reduction: &Reduction<'_, A>,
) -> Result<Vec<Option<A>>, ConvertError> {
    let none = || (0..nodes.len()).map(|_| None).collect::<Vec<Option<A>>>();
    let Some(source) = calibration.source() else { return Ok(none()) };
    let count = source.len();
    let threads = threads.min(count).max(1);
    let slots: Vec<Option<usize>> = (0..graph.nodes.len()).map(|i| nodes.iter().position(|&r| r == i)).collect();
    let evaluator = Evaluator::<f64>::new(graph);
    let evaluator = &evaluator;
    let shape = graph.values[graph.input].shape.clone();
    // Inputs are taken a group at a time (as many as the evaluator gains from, no more than
    // keep every worker busy); the statistics do not depend on the grouping.
    let group = evaluator.group_size(count, threads);
    let read = |i: usize| -> Result<ArrayD<f64>, ConvertError> {
        let mut buffer = vec![0.0; shape.iter().product()];
        source.read(i, &mut buffer)?;
        ArrayD::from_shape_vec(IxDyn(&shape), buffer)
            .map_err(|e| ConvertError::Graph(format!("calibration input {i}: {e}")))
    };
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let worker = || -> Result<Vec<Option<A>>, ConvertError> {
        let mut gathered = none();
        while !failed.load(Ordering::Relaxed) {
            let first = next.fetch_add(group, Ordering::Relaxed);
            if first >= count {
                break;
            }
            let members = first..(first + group).min(count);
            let evaluated = members.clone().map(read).collect::<Result<Vec<_>, _>>().and_then(|inputs| {
                evaluator.evaluate_many_visit(&inputs, |_, node, out| {
                    if let Some(slot) = slots[node] {
                        match &mut gathered[slot] {
                            None => gathered[slot] = Some((reduction.first)(out)),
                            Some(m) => (reduction.add)(m, out),
                        }
                    }
                })?;
                Ok(())
            });
            if let Err(e) = evaluated {
                failed.store(true, Ordering::Relaxed);
                return Err(e);
            }
            if let Some(progress) = progress {
                (progress.0)(members.len());
            }
        }
        Ok(gathered)
    };
    let results: Vec<_> = if threads == 1 {
        vec![worker()]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads).map(|_| scope.spawn(worker)).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(ConvertError::Graph("a calibration worker panicked".into()))))
                .collect()
        })
    };
    let mut merged = none();
    for result in results {
        for (slot, m) in merged.iter_mut().zip(result?) {
            match (slot.as_mut(), m) {
                (_, None) => {}
                (None, Some(m)) => *slot = Some(m),
                (Some(s), Some(m)) => (reduction.merge)(s, m),
            }
        }
    }
    Ok(merged)
}
