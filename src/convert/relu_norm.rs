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
/// precision, by `threads` workers each taking the next input not yet taken. Each worker keeps
/// its own maxima and one evaluation's live values; the maxima are merged at the end (maxima do
/// not depend on the order).
pub(super) fn maxima(
    graph: &Graph,
    relus: &[usize],
    calibration: &CalibrationSet,
    threads: usize,
    progress: Option<&Progress>,
    measure: fn(f64) -> f64,
) -> Result<Vec<Option<ArrayD<f64>>>, ConvertError> {
    let Some(source) = calibration.source() else { return Ok(vec![None; relus.len()]) };
    let count = source.len();
    let threads = threads.min(count).max(1);
    let slots: Vec<Option<usize>> = (0..graph.nodes.len()).map(|i| relus.iter().position(|&r| r == i)).collect();
    let evaluator = Evaluator::<f64>::new(graph);
    let evaluator = &evaluator;
    let shape = graph.values[graph.input].shape.clone();
    // Inputs are taken a group at a time (as many as the evaluator gains from, no more than
    // keep every worker busy); maxima do not depend on the grouping.
    let group = evaluator.group_size(count, threads);
    let read = |i: usize| -> Result<ArrayD<f64>, ConvertError> {
        let mut buffer = vec![0.0; shape.iter().product()];
        source.read(i, &mut buffer)?;
        ArrayD::from_shape_vec(IxDyn(&shape), buffer)
            .map_err(|e| ConvertError::Graph(format!("calibration input {i}: {e}")))
    };
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let worker = || -> Result<Vec<Option<ArrayD<f64>>>, ConvertError> {
        let mut maxima: Vec<Option<ArrayD<f64>>> = vec![None; relus.len()];
        while !failed.load(Ordering::Relaxed) {
            let first = next.fetch_add(group, Ordering::Relaxed);
            if first >= count {
                break;
            }
            let members = first..(first + group).min(count);
            let evaluated = members.clone().map(read).collect::<Result<Vec<_>, _>>().and_then(|inputs| {
                evaluator.evaluate_many_visit(&inputs, |_, node, out| {
                    if let Some(slot) = slots[node] {
                        match &mut maxima[slot] {
                            None => maxima[slot] = Some(out.mapv(measure)),
                            Some(m) => m.zip_mut_with(out, |a, &b| *a = a.max(measure(b))),
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
        Ok(maxima)
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
    let mut merged: Vec<Option<ArrayD<f64>>> = vec![None; relus.len()];
    for result in results {
        for (slot, m) in merged.iter_mut().zip(result?) {
            match (slot.as_mut(), m) {
                (_, None) => {}
                (None, Some(m)) => *slot = Some(m),
                (Some(s), Some(m)) => s.zip_mut_with(&m, |a, &b| *a = a.max(b)),
            }
        }
    }
    Ok(merged)
}
