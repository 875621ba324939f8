//! One run from files to figures: a typed [`Plan`] (model, data, calibration, settings) is
//! [prepared](prepare()) into a converted network and opened data, then [executed](execute())
//! into an [`Outcome`]: ANN and SNN accuracy per checkpoint, spike and synaptic-event totals,
//! timings. `signgd run`, `bench` and `feasibility` all convert through [`prepare()`], so the
//! same arguments give them the same network.
//!
//! ```
//! use std::path::Path;
//! use std::sync::Arc;
//! use signgd::pipeline::{execute, DataSpec, ModelSpec, NoProgress, Plan, Progress, Settings};
//!
//! let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
//! let plan = Plan {
//!     model: ModelSpec::new(root.join("models/mlp.onnx")),
//!     data: DataSpec {
//!         labels: Some(root.join("data/fashion-mnist-test-1000-labels-idx1-ubyte.gz")),
//!         limit: Some(8),
//!         ..DataSpec::new(root.join("data/fashion-mnist-test-1000-images-idx3-ubyte.gz"))
//!     },
//!     calibration: Default::default(),
//!     settings: Settings { checkpoints: vec![16, 32], threads: 2, ..Settings::default() },
//! };
//! let progress: Arc<dyn Progress> = Arc::new(NoProgress);
//! let outcome = execute::<f32>(&plan, &progress, &mut ())?;
//! assert_eq!(outcome.data.inputs, 8);
//! assert_eq!(outcome.checkpoints[1].timesteps, 32);
//! assert!(outcome.checkpoints[1].snn_accuracy.is_some() && outcome.checkpoints[1].spikes > 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod outcome;
mod plan;
mod prepare;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ndarray::{ArrayD, IxDyn};

pub use outcome::{
    fingerprint, Checkpoint, DataSummary, NetworkSize, Outcome, Results, SettingsSummary, Times, SCHEMA_VERSION,
};
pub use plan::{
    encoder_name, gelu_name, parse_timesteps, preset_name, relu_norm_name, CalibrationSpec, DataSpec, ImagePreprocess,
    ModelSpec, Neuron, Plan, Precision, PreprocessPreset, Settings, CALIBRATION_FROM_DATA, MAX_TIMESTEPS,
};
pub use prepare::{model_and_calibration, prepare, provenance, Prepared};

use crate::data::{scale_warning, scan, DataError, InputSource};
use crate::engine::{SimConfig, Simulator};
use crate::model::{Graph, ModelError};
use crate::real::Real;
use crate::report::Observation;
use crate::runner::{self, RunError, SimulationResult};
use crate::snn::{Network, NetworkError};
use crate::stats::observe::Recorder;

/// Largest number of decoded output values (checkpoints × inputs × outputs) kept in memory.
pub const MAX_OUTPUT_VALUES: usize = 1 << 30;

/// An error of a run; every message says what is wrong and with which file or setting.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A setting no run can use.
    #[error("{0}")]
    Settings(String),
    /// The model cannot be read.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A data, label or calibration file cannot be read.
    #[error(transparent)]
    DataFile(#[from] DataError),
    /// The data do not suit the model or each other.
    #[error("{0}")]
    Data(String),
    /// The model cannot be converted.
    #[error("{0}")]
    Convert(String),
    /// The network cannot be simulated with these settings.
    #[error(transparent)]
    Simulator(NetworkError),
    /// The ANN evaluation stopped.
    #[error("evaluating the ANN: {0}")]
    Ann(RunError),
    /// The simulation stopped.
    #[error("simulating the SNN: {0}")]
    Snn(RunError),
    /// The caller's [`Observer`] stopped the run.
    #[error(transparent)]
    Observer(Box<dyn std::error::Error + Send + Sync>),
}

/// The phases a run reports progress of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Calibration inputs evaluated by the conversion.
    Calibration,
    /// Inputs evaluated by the ANN.
    Ann,
    /// Inputs simulated.
    Snn,
}

/// Told how far a run is (to drive progress bars); called from worker threads.
pub trait Progress: Send + Sync {
    /// `phase` starts with `total` inputs to do.
    fn start(&self, _phase: Phase, _total: usize) {}
    /// `done` more inputs of `phase` are done.
    fn advance(&self, _phase: Phase, _done: usize) {}
    /// `phase` is over (finished or stopped).
    fn finish(&self, _phase: Phase) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}

/// Results a run takes instead of evaluating the ANN and simulating (a merged run replays those
/// of its shards).
pub struct Replay<F> {
    /// ANN outputs `[input][output]`.
    pub ann: Vec<F>,
    /// Time the ANN took.
    pub ann_time: Duration,
    /// SNN outputs and counters.
    pub result: SimulationResult<F>,
    /// Time the SNN took.
    pub snn_time: Duration,
}

/// Everything a finished run computed, for callers writing outputs beyond the [`Outcome`].
pub struct Finished<'a, F> {
    /// The converted network and opened data.
    pub prepared: &'a Prepared,
    /// The simulator's settings.
    pub config: &'a SimConfig,
    /// ANN outputs `[input][output]` of the evaluated inputs.
    pub ann: &'a [F],
    /// SNN outputs and counters.
    pub result: &'a SimulationResult<F>,
    /// Conversion, ANN and SNN time.
    pub times: [Duration; 3],
}

/// Sees a run's stages as they end; each method may stop the run with an error. Every method
/// has a default that does nothing; `()` observes nothing.
pub trait Observer<F: Real> {
    /// The model is converted and the data opened; nothing evaluated yet.
    fn prepared(&mut self, _prepared: &Prepared) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
    /// Results to take instead of evaluating the ANN and simulating; `None` computes them.
    fn replay(&mut self, _prepared: &Prepared) -> Result<Option<Replay<F>>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(None)
    }
    /// Everything is computed; `outcome` may still be completed (the files written, say).
    fn finished(
        &mut self,
        _run: &Finished<'_, F>,
        _outcome: &mut Outcome,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
}

impl<F: Real> Observer<F> for () {}

impl ModelSpec {
    /// `path` with the reader's default limits.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ModelSpec { path: path.into(), limits: Default::default() }
    }
}

impl DataSpec {
    /// Every input of `path`, no labels (an image folder's classes are its labels).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DataSpec { path: path.into(), labels: None, limit: None, preprocess: Default::default(), shard: None }
    }
}

/// Converts the plan's model, evaluates its ANN and simulates its SNN on the plan's inputs in
/// precision `F`, and returns what was found. Results do not depend on the number of threads.
pub fn execute<F: Real>(
    plan: &Plan,
    progress: &Arc<dyn Progress>,
    observer: &mut dyn Observer<F>,
) -> Result<Outcome, PipelineError> {
    plan.settings.check()?;
    let mut prepared = prepare(plan, progress)?;
    prepared.record_provenance(plan)?;
    observer.prepared(&prepared).map_err(PipelineError::Observer)?;
    let settings = &plan.settings;
    let config = settings.sim_config();
    // Unusable settings (IF neurons on a non-ReLU network, …) are refused before any long work.
    let simulator = Simulator::<F>::new(prepared.network(), &config).map_err(PipelineError::Simulator)?;
    crate::memory::release_free_memory();
    let range = prepared.range.clone();
    let count = range.len();
    let output_size = prepared.output_size();
    let checkpoints = settings.checkpoints.len();
    if checkpoints.saturating_mul(count).saturating_mul(output_size) > MAX_OUTPUT_VALUES {
        return Err(PipelineError::Settings(format!(
            "{checkpoints} checkpoints × {count} inputs × {output_size} outputs is too many values to keep; use fewer timesteps or fewer inputs"
        )));
    }
    let data = &prepared.data;
    let load = |j: usize, buffer: &mut [F]| -> Result<(), DataError> {
        let mut values = vec![0.0; buffer.len()];
        data.read(range.start + j, &mut values)?;
        for (b, v) in buffer.iter_mut().zip(values) {
            *b = F::of(v);
        }
        Ok(())
    };
    let replay = observer.replay(&prepared).map_err(PipelineError::Observer)?;
    let (replayed_ann, replayed_snn) =
        replay.map_or((None, None), |r| (Some((r.ann, r.ann_time)), Some((r.result, r.snn_time))));

    let started = Instant::now();
    let (ann, ann_time) = match replayed_ann {
        Some(replayed) => replayed,
        None => {
            progress.start(Phase::Ann, count);
            let ann = runner::evaluate_ann::<F, _>(&prepared.graph, count, load, settings.threads, &|n| {
                progress.advance(Phase::Ann, n)
            });
            progress.finish(Phase::Ann);
            (ann.map_err(PipelineError::Ann)?, started.elapsed())
        }
    };
    tracing::info!(seconds = ann_time.as_secs_f64(), inputs = count, "ANN evaluation");
    warn_of_scale(&prepared, plan)?;

    let started = Instant::now();
    let (result, snn_time) = match replayed_snn {
        Some(replayed) => replayed,
        None => {
            progress.start(Phase::Snn, count);
            let result = runner::simulate_prepared(&simulator, count, load, settings.threads, &|n| {
                progress.advance(Phase::Snn, n)
            });
            progress.finish(Phase::Snn);
            (result.map_err(PipelineError::Snn)?, started.elapsed())
        }
    };
    drop(simulator);
    tracing::info!(
        seconds = snn_time.as_secs_f64(),
        inputs = count,
        steps = settings.checkpoints.last().copied().unwrap_or(0),
        "SNN simulation"
    );

    let times = [prepared.conversion_time, ann_time, snn_time];
    let mut outcome = Outcome::assemble(Results {
        model: &prepared.model_path,
        provenance: prepared.provenance.clone(),
        data: DataSummary {
            path: prepared.data_path.display().to_string(),
            inputs: count,
            input_shape: prepared.network().input_shape.clone(),
            scaled_from_u8: prepared.scaled_from_u8,
            labels: prepared.labels_path.as_ref().map(|p| p.display().to_string()),
            classes: prepared.classes.clone(),
            preprocess: prepared.classes.as_ref().map(|_| plan.data.preprocess.preset.name().to_string()),
        },
        calibration: prepared.calibration_source.clone(),
        settings,
        network: prepared.network(),
        notes: &prepared.conversion.notes,
        labels: prepared.labels.as_deref(),
        ann: &ann,
        result: &result,
        times,
    });
    let finished = Finished { prepared: &prepared, config: &config, ann: &ann, result: &result, times };
    observer.finished(&finished, &mut outcome).map_err(PipelineError::Observer)?;
    Ok(outcome)
}

/// Warns when the data's values look scaled differently from what the model (or the
/// calibration inputs) expect.
fn warn_of_scale(prepared: &Prepared, plan: &Plan) -> Result<(), PipelineError> {
    let calibration_max = match (&plan.calibration, prepared.calibration.stats()) {
        (CalibrationSpec::FirstOfData(_), _) => None,
        (CalibrationSpec::File(_), Some(stats)) => Some(stats.max_abs),
        // Not read by the conversion (a model without ReLUs): read it once for its range.
        (CalibrationSpec::File(path), None) => Some(
            scan(&*prepared.calibration)
                .map_err(|e| PipelineError::Data(format!("reading {}: {e}", path.display())))?
                .max_abs,
        ),
    };
    if let Some(stats) = prepared.data.stats() {
        if let Some(warning) = scale_warning(&stats, prepared.scaled_from_u8, calibration_max) {
            tracing::warn!("{}: {warning}", prepared.data_path.display());
        }
    }
    Ok(())
}

/// Events per neuron per step of every population over a whole simulation (the spike rates a
/// chip's event budget is checked against): spikes for signGD neurons, one value per step for
/// relays (graded events).
pub fn event_rates<F>(network: &Network, result: &SimulationResult<F>) -> Vec<f64> {
    let steps = result.checkpoints.last().copied().unwrap_or(1).max(1) as f64;
    let totals = result.counters.at_checkpoints.last();
    network
        .populations
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if p.kind.is_relay() {
                return 1.0;
            }
            let spikes = totals.and_then(|t| t.get(i)).map_or(0, |c| c.spikes) as f64;
            spikes / (p.size().max(1) as f64 * steps * result.inputs.max(1) as f64)
        })
        .collect()
}

/// Simulates one input with a recorder: the raster of `population` and, for every population
/// with neurons, the mean |v − ANN value| per step against the converted graph's values.
pub fn observe_input<F: Real>(
    network: &Network,
    graph: &Graph,
    config: &SimConfig,
    population: usize,
    input_index: usize,
    input: &[F],
) -> Result<Observation, PipelineError> {
    let shape = graph.values[graph.input].shape.clone();
    let x = ArrayD::from_shape_vec(IxDyn(&shape), input.iter().map(|v| v.to_f64_lossless()).collect())
        .map_err(|e| PipelineError::Data(format!("the observed input does not fit the converted graph: {e}")))?;
    let values = graph
        .evaluate_all::<f64>(&x)
        .map_err(|e| PipelineError::Data(format!("evaluating the converted graph: {e}")))?;
    let reference = network
        .populations
        .iter()
        .map(|p| {
            if p.kind.is_relay() {
                return None;
            }
            let node = graph.nodes.iter().find(|n| n.name == p.name)?;
            let value = values.get(node.output)?.as_ref()?;
            (value.len() == p.size()).then(|| value.iter().copied().collect::<Vec<f64>>())
        })
        .collect();
    let names = network.populations.iter().map(|p| p.name.clone()).collect();
    let mut recorder = Recorder::new(names, population, network.populations[population].size(), reference);
    let simulator = Simulator::<F>::new(network, config).map_err(PipelineError::Simulator)?;
    let mut workspace = simulator.workspace();
    let mut outputs = vec![F::zero(); simulator.checkpoints().len() * simulator.output_size()];
    simulator.run(&mut workspace, input, &mut outputs, &mut recorder).map_err(PipelineError::Simulator)?;
    let (raster, errors) = recorder.finish();
    Ok(Observation { input: input_index, raster, errors })
}
