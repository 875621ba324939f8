//! Simulation and reference evaluation of a whole data set, in parallel, with results that do
//! not depend on the number of threads; plus the accuracy helpers of `signgd run`.
//!
//! Work is split over inputs with an atomic counter: every worker owns its own state (a
//! [`Workspace`] for the simulator), takes the next unclaimed input, and its result is stored at
//! that input's index. Activity counters are integer sums. So outputs and counters are identical
//! for any thread count. Nothing here prints.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use ndarray::{ArrayD, IxDyn};

use crate::data::DataError;
use crate::engine::{Counters, KernelWork, SimConfig, Simulator, Workspace};
use crate::model::{Evaluator, Graph, ModelError};
use crate::real::Real;
use crate::snn::{Network, NetworkError};

/// Why a pass over a data set stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An input could not be read.
    #[error(transparent)]
    Input(#[from] DataError),
    /// The network cannot be simulated with these settings.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// The ANN cannot be evaluated.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// The decoded outputs of a simulated data set.
#[derive(Clone, Debug, PartialEq)]
pub struct SimulationResult<F> {
    /// The sorted, deduplicated checkpoints (steps, 1-based).
    pub checkpoints: Vec<usize>,
    /// Decoded outputs, `[checkpoint][input][output]`, row-major.
    pub outputs: Vec<F>,
    /// Activity counters summed over every input (snapshots per checkpoint).
    pub counters: Counters,
    /// Number of inputs simulated.
    pub inputs: usize,
    /// Number of output elements per input.
    pub output_size: usize,
    /// The accumulates the kernels performed (zero for results merged from shards).
    pub work: KernelWork,
}

impl<F> SimulationResult<F> {
    /// The outputs at checkpoint number `k` (an index into [`SimulationResult::checkpoints`]),
    /// `[input][output]`, row-major.
    pub fn at_checkpoint(&self, k: usize) -> &[F] {
        let n = self.inputs * self.output_size;
        &self.outputs[k * n..(k + 1) * n]
    }
}

/// Simulates `count` inputs with `network` under `config` on `threads` worker threads.
///
/// `load(i, buffer)` writes input `i` (the network's input size, row-major) into `buffer`; it is
/// called from the workers, so inputs need not all be read up front, and the first input it
/// cannot read stops the run. `progress(n)` is called
/// from the workers with the number of inputs just finished (a batch at a time).
///
/// The result is identical for every `threads >= 1`; `threads == 0` is refused.
///
/// ```
/// use std::path::Path;
/// use signgd::convert::{convert, ConvertOptions};
/// use signgd::data::{open_inputs, InputSource, LoadLimits};
/// use signgd::engine::SimConfig;
/// use signgd::model::read_onnx;
/// use signgd::runner::simulate;
///
/// let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
/// let network = convert(&read_onnx(&root.join("models/mlp.onnx"), None)?, &ConvertOptions::default())?.network;
/// let limit = LoadLimits { max_samples: Some(4), ..LoadLimits::default() };
/// let images = open_inputs(&root.join("data/fashion-mnist-test-1000-images-idx3-ubyte.gz"), limit)?;
/// let load = |i: usize, buffer: &mut [f64]| images.read(i, buffer);
/// let result = simulate(&network, &SimConfig::reference(vec![32, 64]), images.len(), load, 2, &|_| {})?;
/// assert_eq!(result.at_checkpoint(1).len(), 4 * 10); // 4 inputs × 10 outputs at T = 64
/// let at_64 = &result.counters.at_checkpoints[1]; // per population, summed over the inputs
/// assert!(at_64.iter().map(|c| c.spikes).sum::<u64>() > 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn simulate<F, L>(
    network: &Network,
    config: &SimConfig,
    count: usize,
    load: L,
    threads: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<SimulationResult<F>, RunError>
where
    F: Real,
    L: Fn(usize, &mut [F]) -> Result<(), DataError> + Sync,
{
    let simulator = Simulator::<F>::new(network, config)?;
    simulate_prepared(&simulator, count, load, threads, progress)
}

/// [`simulate`] with a simulator already prepared (so that a caller can time preparation and
/// simulation apart).
pub fn simulate_prepared<F, L>(
    simulator: &Simulator<F>,
    count: usize,
    load: L,
    threads: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<SimulationResult<F>, RunError>
where
    F: Real,
    L: Fn(usize, &mut [F]) -> Result<(), DataError> + Sync,
{
    if threads == 0 {
        return Err(NetworkError::Setting("the number of threads must be at least 1".into()).into());
    }
    let checkpoints = simulator.checkpoints().to_vec();
    let output_size = simulator.output_size();
    let input_size = simulator.input_size();
    let per_input = checkpoints.len() * output_size;

    // Each worker simulates a batch of inputs together; the results do not depend on how the
    // inputs are batched.
    let lanes = simulator.batch_lanes(count, threads);
    let batch_of = |c: usize| c * lanes..count.min((c + 1) * lanes);
    struct State<F: Real> {
        workspaces: Vec<Workspace<F>>,
        inputs: Vec<F>,
    }
    let (batches, states) = parallel_map(
        count.div_ceil(lanes),
        threads,
        || State {
            workspaces: (0..lanes).map(|_| simulator.workspace()).collect(),
            inputs: vec![F::zero(); lanes * input_size],
        },
        |state: &mut State<F>, c| {
            let batch = batch_of(c);
            let inputs = &mut state.inputs[..batch.len() * input_size];
            for (i, buffer) in batch.clone().zip(inputs.chunks_exact_mut(input_size.max(1))) {
                load(i, buffer)?;
            }
            let mut rows = vec![F::zero(); batch.len() * per_input];
            let mut row_refs: Vec<&mut [F]> = rows.chunks_exact_mut(per_input.max(1)).collect();
            let input_refs: Vec<&[F]> = inputs.chunks_exact(input_size.max(1)).collect();
            simulator.run_batch(&mut state.workspaces, &input_refs, &mut row_refs)?;
            Ok::<_, RunError>(rows)
        },
        &|c| batch_of(c).len(),
        progress,
    )?;
    let rows: Vec<&[F]> = batches.iter().flat_map(|rows| rows.chunks_exact(per_input.max(1))).collect();

    let mut outputs = vec![F::zero(); per_input * count];
    for (i, row) in rows.iter().enumerate() {
        for (k, values) in row.chunks_exact(output_size.max(1)).enumerate().take(checkpoints.len()) {
            let at = (k * count + i) * output_size;
            outputs[at..at + output_size].copy_from_slice(values);
        }
    }
    let mut counters = Counters::new(simulator.populations(), checkpoints.len());
    let mut work = KernelWork::default();
    for workspace in states.iter().flat_map(|s| &s.workspaces) {
        counters.merge(&workspace.counters);
        work.accumulate(&workspace.kernel_work());
    }
    Ok(SimulationResult { checkpoints, outputs, counters, inputs: count, output_size, work })
}

/// Convenience form of [`simulate`] for inputs already held in memory.
pub fn simulate_inputs<F: Real>(
    network: &Network,
    config: &SimConfig,
    inputs: &[Vec<F>],
    threads: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<SimulationResult<F>, RunError> {
    let expected = network.input_size();
    if let Some(i) = inputs.iter().position(|x| x.len() != expected) {
        return Err(NetworkError::Setting(format!(
            "input {i} has {} elements, the network takes {expected}",
            inputs[i].len()
        ))
        .into());
    }
    let load = |i: usize, buffer: &mut [F]| {
        buffer.copy_from_slice(&inputs[i]);
        Ok(())
    };
    simulate(network, config, inputs.len(), load, threads, progress)
}

/// Evaluates the ANN `graph` with the dense reference evaluator on `count` inputs, in parallel.
///
/// `load(i, buffer)` writes input `i` (the graph input's element count, row-major, without
/// regard to the batch dimension of 1) into `buffer`. Returns the outputs `[input][output]`,
/// row-major (each output flattened in row-major order). `threads == 0` is refused.
pub fn evaluate_ann<F, L>(
    graph: &Graph,
    count: usize,
    load: L,
    threads: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Vec<F>, RunError>
where
    F: Real,
    L: Fn(usize, &mut [F]) -> Result<(), DataError> + Sync,
{
    evaluate_ann_prepared(&Evaluator::new(graph), count, load, threads, progress)
}

/// [`evaluate_ann`] with an [`Evaluator`] prepared beforehand (to time the evaluations alone).
pub fn evaluate_ann_prepared<F, L>(
    evaluator: &Evaluator<'_, F>,
    count: usize,
    load: L,
    threads: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Vec<F>, RunError>
where
    F: Real,
    L: Fn(usize, &mut [F]) -> Result<(), DataError> + Sync,
{
    let graph = evaluator.graph();
    let invalid = |detail: String| ModelError::Invalid { origin: "reference evaluator".into(), detail };
    if threads == 0 {
        return Err(invalid("the number of threads must be at least 1".into()).into());
    }
    let input_value = graph
        .values
        .get(graph.input)
        .ok_or_else(|| invalid(format!("the graph input {} is not a value of the graph", graph.input)))?;
    let shape = input_value.shape.clone();
    let input_size: usize = shape.iter().product();
    let output_size: usize = graph
        .values
        .get(graph.output)
        .map(|v| v.shape.iter().product())
        .ok_or_else(|| invalid(format!("the graph output {} is not a value of the graph", graph.output)))?;
    // Inputs go to the workers a group at a time (as many as the evaluator gains from, no more
    // than keep every worker busy); outputs do not depend on the grouping.
    let group = evaluator.group_size(count, threads);
    let members = |g: usize| g * group..((g + 1) * group).min(count);
    let (rows, _) = parallel_map(
        count.div_ceil(group),
        threads,
        || (),
        |_: &mut (), g| {
            let mut inputs = Vec::with_capacity(group);
            for i in members(g) {
                let mut buffer = vec![F::zero(); input_size];
                load(i, &mut buffer)?;
                let input = ArrayD::from_shape_vec(IxDyn(&shape), buffer)
                    .map_err(|e| invalid(format!("input {i} does not fit shape {shape:?}: {e}")))?;
                inputs.push(input);
            }
            let outputs = evaluator.evaluate_many_visit(&inputs, |_, _, _| {})?;
            let mut rows = Vec::with_capacity(outputs.len() * output_size);
            for (i, output) in members(g).zip(&outputs) {
                if output.len() != output_size {
                    return Err(invalid(format!(
                        "the output of input {i} has {} elements, the graph declares {output_size}",
                        output.len()
                    ))
                    .into());
                }
                rows.extend(output.iter().copied());
            }
            Ok::<_, RunError>(rows)
        },
        &|g| members(g).len(),
        progress,
    )?;
    Ok(rows.concat())
}

/// Convenience form of [`evaluate_ann`] for inputs already held in memory.
pub fn evaluate_ann_inputs<F: Real>(graph: &Graph, inputs: &[Vec<F>], threads: usize) -> Result<Vec<F>, RunError> {
    let expected: usize = graph.values.get(graph.input).map(|v| v.shape.iter().product()).unwrap_or(0);
    if let Some(i) = inputs.iter().position(|x| x.len() != expected) {
        return Err(ModelError::Invalid {
            origin: "reference evaluator".into(),
            detail: format!("input {i} has {} elements, the graph takes {expected}", inputs[i].len()),
        }
        .into());
    }
    let load = |i: usize, buffer: &mut [F]| {
        buffer.copy_from_slice(&inputs[i]);
        Ok(())
    };
    evaluate_ann(graph, inputs.len(), load, threads, &|_| {})
}

/// What one worker of [`parallel_map`] hands back: its state, its results by input index, and
/// the error that stopped it, if any.
type WorkerResult<S, T, E> = (S, Vec<(usize, T)>, Option<(usize, E)>);

/// Runs `work(state, i)` for every `i < count` on `threads` workers, each with its own state from
/// `init`, calling `progress(inputs(i))` after each. Returns the results in index order and the
/// workers' final states (in worker order).
/// The first error stops the remaining work and is returned (the one of the lowest index among
/// those that failed before the workers stopped).
fn parallel_map<S, T, E, I, W>(
    count: usize,
    threads: usize,
    init: I,
    work: W,
    inputs: &(dyn Fn(usize) -> usize + Sync),
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(Vec<T>, Vec<S>), E>
where
    S: Send,
    T: Send,
    E: Send,
    I: Fn() -> S + Sync,
    W: Fn(&mut S, usize) -> Result<T, E> + Sync,
{
    let workers = threads.clamp(1, count.max(1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let worker = || {
        let mut state = init();
        let mut done: Vec<(usize, T)> = Vec::new();
        let mut error: Option<(usize, E)> = None;
        while !failed.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= count {
                break;
            }
            match work(&mut state, i) {
                Ok(value) => {
                    done.push((i, value));
                    progress(inputs(i));
                }
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    error = Some((i, e));
                    break;
                }
            }
        }
        (state, done, error)
    };
    let results: Vec<WorkerResult<S, T, E>> = if workers == 1 {
        vec![worker()]
    } else {
        let joined = crossbeam::scope(|scope| {
            let handles: Vec<_> = (0..workers).map(|_| scope.spawn(|_| worker())).collect();
            handles.into_iter().map(|h| h.join()).collect::<Vec<_>>()
        });
        match joined {
            Ok(per_worker) => {
                per_worker.into_iter().map(|r| r.unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
            }
            Err(panic) => std::panic::resume_unwind(panic),
        }
    };
    let mut slots: Vec<Option<T>> = (0..count).map(|_| None).collect();
    let mut states = Vec::with_capacity(results.len());
    let mut first_error: Option<(usize, E)> = None;
    for (state, done, error) in results {
        states.push(state);
        for (i, value) in done {
            slots[i] = Some(value);
        }
        if let Some((i, e)) = error {
            if first_error.as_ref().is_none_or(|(j, _)| i < *j) {
                first_error = Some((i, e));
            }
        }
    }
    if let Some((_, e)) = first_error {
        return Err(e);
    }
    let values = slots.into_iter().map(|v| v.expect("every input was processed")).collect();
    Ok((values, states))
}

/// Index of the largest value, the first one on ties; NaN is never the largest (0 when every
/// value is NaN or the row is empty).
pub fn argmax<F: Real>(row: &[F]) -> usize {
    let mut best: Option<(usize, F)> = None;
    for (i, &v) in row.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        match best {
            Some((_, b)) if v <= b => {}
            _ => best = Some((i, v)),
        }
    }
    best.map_or(0, |(i, _)| i)
}

/// The predicted class ([`argmax`]) of every row of `outputs` (`[input][output]`, row-major).
pub fn classes<F: Real>(outputs: &[F], output_size: usize) -> Vec<usize> {
    if output_size == 0 {
        return Vec::new();
    }
    outputs.chunks_exact(output_size).map(argmax).collect()
}

/// Fraction of rows of `outputs` whose [`argmax`] equals the label (0 when there are none).
pub fn accuracy<F: Real>(outputs: &[F], output_size: usize, labels: &[usize]) -> f64 {
    let predicted = classes(outputs, output_size);
    fraction(predicted.iter().zip(labels).filter(|(p, l)| p == l).count(), predicted.len().min(labels.len()))
}

/// Fraction of rows whose predicted class is the same in `a` and `b` (both `[input][output]`).
pub fn agreement<F: Real>(a: &[F], b: &[F], output_size: usize) -> f64 {
    let (ca, cb) = (classes(a, output_size), classes(b, output_size));
    fraction(ca.iter().zip(&cb).filter(|(x, y)| x == y).count(), ca.len().min(cb.len()))
}

/// Mean of `|a − b|` over all elements, in `f64` (0 when empty; NaN if any difference is NaN).
pub fn mean_abs_diff<F: Real>(a: &[F], b: &[F]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0.0;
    }
    a.iter().zip(b).map(|(x, y)| (x.to_f64_lossless() - y.to_f64_lossless()).abs()).sum::<f64>() / n as f64
}

fn fraction(hits: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        hits as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::SimConfig;
    use crate::snn::{NeuronKind, Operand, Population, Schedule, Source, SynapseBlock};
    use sprs::TriMat;

    fn dense(rows: usize, cols: usize, f: impl Fn(usize, usize) -> f64) -> SynapseBlock {
        let mut m = TriMat::new((rows, cols));
        for r in 0..rows {
            for c in 0..cols {
                m.add_triplet(r, c, f(r, c));
            }
        }
        SynapseBlock::Sparse { matrix: m.to_csc() }
    }

    /// 6 inputs → 5 ReLU → 4 GELU → 3 outputs.
    fn network() -> Network {
        let w1 = dense(5, 6, |r, c| ((r * 7 + c * 3) % 5) as f64 * 0.2 - 0.4);
        let w2 = dense(4, 5, |r, c| ((r * 5 + c * 2) % 7) as f64 * 0.15 - 0.45);
        let w3 = dense(3, 4, |r, c| ((r + 3 * c) % 4) as f64 * 0.3 - 0.5);
        Network {
            input_shape: vec![6],
            populations: vec![
                Population {
                    name: "relu".into(),
                    kind: NeuronKind::Relu,
                    shape: vec![5],
                    operands: vec![Operand::new(vec![0.1, -0.1, 0.05, 0.0, 0.2]).with(Source::Input, w1)],
                },
                Population {
                    name: "gelu".into(),
                    kind: NeuronKind::Gelu { target: crate::snn::GeluTarget::Sigmoid },
                    shape: vec![4],
                    operands: vec![Operand::new(vec![0.0, 0.1, -0.2, 0.3]).with(Source::Population(0), w2)],
                },
            ],
            readout: Operand::new(vec![0.01, 0.02, 0.03]).with(Source::Population(1), w3),
            output_shape: vec![3],
        }
    }

    fn inputs() -> Vec<Vec<f64>> {
        (0..11).map(|i| (0..6).map(|j| ((i * 13 + j * 7) % 17) as f64 / 17.0).collect()).collect()
    }

    #[test]
    fn identical_for_any_thread_count() {
        let net = network();
        for encoder in [crate::snn::EncoderKind::Float, crate::snn::EncoderKind::Spike] {
            let config = SimConfig { encoder, ..SimConfig::reference(vec![3, 10, 25]) };
            let xs = inputs();
            let xs32: Vec<Vec<f32>> = xs.iter().map(|x| x.iter().map(|&v| v as f32).collect()).collect();
            let one = simulate_inputs(&net, &config, &xs, 1, &|_| {}).unwrap();
            assert_eq!(one.outputs.len(), 3 * 11 * 3);
            assert!(one.counters.at_checkpoints[2].iter().any(|c| c.spikes > 0));
            for threads in [2, 3, 16] {
                let other = simulate_inputs(&net, &config, &xs, threads, &|_| {}).unwrap();
                assert_eq!(one, other, "{threads} threads");
                let a = simulate_inputs(&net, &config, &xs32, 1, &|_| {}).unwrap();
                let b = simulate_inputs(&net, &config, &xs32, threads, &|_| {}).unwrap();
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn outputs_are_stored_per_checkpoint_and_input() {
        let net = network();
        let xs = inputs();
        let config = SimConfig::reference(vec![5, 20]);
        let all = simulate_inputs(&net, &config, &xs, 2, &|_| {}).unwrap();
        for (i, x) in xs.iter().enumerate() {
            let single = simulate_inputs(&net, &config, std::slice::from_ref(x), 1, &|_| {}).unwrap();
            for k in 0..2 {
                assert_eq!(&all.at_checkpoint(k)[i * 3..(i + 1) * 3], single.at_checkpoint(k));
            }
        }
    }

    #[test]
    fn progress_counts_every_input() {
        let done = AtomicUsize::new(0);
        let progress = |n: usize| {
            done.fetch_add(n, Ordering::Relaxed);
        };
        simulate_inputs(&network(), &SimConfig::reference(vec![4]), &inputs(), 3, &progress).unwrap();
        assert_eq!(done.load(Ordering::Relaxed), 11);
    }

    #[test]
    fn refuses_zero_threads_and_bad_checkpoints() {
        let net = network();
        let err = simulate_inputs(&net, &SimConfig::reference(vec![4]), &inputs(), 0, &|_| {}).unwrap_err();
        assert!(err.to_string().contains("threads"));
        let table =
            SimConfig { schedule: Schedule::Table { values: vec![0.1; 8] }, ..SimConfig::reference(vec![4, 9]) };
        let err = simulate_inputs(&net, &table, &inputs(), 2, &|_| {}).unwrap_err();
        assert!(err.to_string().contains("beyond"), "{err}");
        let err = simulate_inputs(&net, &SimConfig::reference(vec![4]), &[vec![0.0; 5]], 2, &|_| {}).unwrap_err();
        assert!(err.to_string().contains("5 elements"), "{err}");
    }

    #[test]
    fn empty_data_set() {
        let r = simulate_inputs::<f64>(&network(), &SimConfig::reference(vec![4]), &[], 4, &|_| {}).unwrap();
        assert!(r.outputs.is_empty());
        assert_eq!(r.inputs, 0);
    }

    #[test]
    fn helpers() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f64::NAN, -1.0, -2.0]), 1);
        assert_eq!(argmax::<f32>(&[]), 0);
        let a = [0.0, 1.0, 1.0, 0.0, 0.5, 0.5];
        let b = [0.0, 1.0, 0.0, 1.0, 0.2, 0.1];
        assert_eq!(classes(&a, 2), vec![1, 0, 0]);
        assert_eq!(accuracy(&a, 2, &[1, 1, 0]), 2.0 / 3.0);
        assert_eq!(agreement(&a, &b, 2), 2.0 / 3.0);
        assert!((mean_abs_diff(&a, &b) - (1.0 + 1.0 + 0.3 + 0.4) / 6.0).abs() < 1e-12);
    }
}
