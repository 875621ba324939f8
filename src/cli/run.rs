//! `signgd run`: convert a model, simulate a data set, and print accuracy against timesteps.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ndarray::{Array2, Array3, ArrayD, IxDyn};
use ndarray_npy::{ReadableElement, WritableElement, WriteNpyExt};
use serde_json::json;
use signgd::convert::{convert, CalibrationSet, ConvertOptions, Progress, ReluNorm};
use signgd::data::{
    fit_shape, open_inputs, read_labels, scale_warning, split_array_name, DataError, First, ImageFolder, InputSource,
    LoadLimits, Preprocess, Tapped,
};
use signgd::engine::{Counters, SimConfig, Simulator};
use signgd::model::reader::read_onnx_with_limits;
use signgd::model::Op;
use signgd::provenance::{digest, digest_tree, VERSION};

use super::model_limits;
use signgd::real::Real;
use signgd::report::{self, ReportData};
use signgd::runner;
use signgd::shard::Shard;
use signgd::snn::{EncoderKind, GeluTarget, Network, Schedule};
use signgd::stats::energy::{
    Addressing, AnnMemory, Conventions, EncoderCharge, EnergyModel, MemoryPricing, SharedCharge,
};
use signgd::stats::observe::Recorder;
use signgd::stats::significance::{mcnemar, wilson, Interval, McNemar};

const DEFAULT_MODEL: &str = "fixtures/models/convnext.onnx";
const DEFAULT_DATA: &str = "fixtures/data/fashion-mnist-test-1000-images-idx3-ubyte.gz";
const DEFAULT_LABELS: &str = "fixtures/data/fashion-mnist-test-1000-labels-idx1-ubyte.gz";
/// Inputs of --data used for ReLU normalisation when no --calibration file is given.
pub(super) const CALIBRATION_FROM_DATA: usize = 256;
/// Largest number of timesteps accepted.
const MAX_TIMESTEPS: usize = 1_000_000;
/// Largest number of decoded output values (checkpoints × inputs × outputs) kept in memory.
const MAX_OUTPUT_VALUES: usize = 1 << 30;

/// Options of `signgd run`.
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// The ONNX model (default: the bundled ConvNeXt fixture, fixtures/models/convnext.onnx).
    #[arg(long, value_name = "FILE.onnx")]
    pub(super) model: Option<PathBuf>,
    /// Input samples (.npy, .npz, IDX or gzip-compressed IDX/.npy; `FILE.npz:NAME` picks an
    /// array of an archive; or an image folder DIR/CLASS/IMAGE.jpg, see --preprocess); uint8
    /// data are scaled to [0,1]. Default: the bundled Fashion-MNIST test subset.
    #[arg(long, value_name = "FILE")]
    pub(super) data: Option<PathBuf>,
    /// Preprocessing of an image folder given as --data or --calibration: `none` (pixels / 255,
    /// images of the model's size), `imagenet` (torchvision's evaluation transform: resize to
    /// crop/0.875, i.e. 256 for 224, centre crop, ImageNet mean and std).
    #[arg(long, value_enum, default_value_t = PreprocessArg::None)]
    preprocess: PreprocessArg,
    /// Per-channel mean for image folders, replacing the preset's (`0.5` or `0.5,0.5,0.5`).
    #[arg(long, value_name = "LIST")]
    mean: Option<String>,
    /// Per-channel standard deviation for image folders, replacing the preset's.
    #[arg(long, value_name = "LIST")]
    std: Option<String>,
    /// Class labels, one per sample (default: the Fashion-MNIST labels when --data is defaulted;
    /// the class sub-folders of an image folder).
    #[arg(long, value_name = "FILE")]
    pub(super) labels: Option<PathBuf>,
    /// Use only the first N samples of --data (and --labels).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Checkpoints: a comma list of timesteps and ranges, e.g. `32,64,128,256`, `1-256`, `1-4,32`.
    #[arg(long, value_name = "LIST", default_value = "32,64,128,256")]
    timesteps: String,
    /// Inputs for ReLU normalisation (default: the first 256 inputs of --data).
    #[arg(long, value_name = "FILE")]
    pub(super) calibration: Option<PathBuf>,
    /// Step sizes: exp:ETA0:GAMMA, inverse:ETA0 or constant:ETA0.
    #[arg(long, value_name = "SCHEDULE", default_value = "exp:0.15:0.95")]
    schedule: String,
    /// Input encoder.
    #[arg(long, value_enum, default_value_t = EncoderArg::Float)]
    encoder: EncoderArg,
    /// Target function of GELU neurons.
    #[arg(long, value_enum, default_value_t = GeluArg::Sigmoid)]
    gelu: GeluArg,
    /// ReLU normalisation's maxima: per element, per channel (kernels stay shared over
    /// positions) or per layer (one threshold per layer).
    #[arg(long, value_enum, default_value_t = ReluNormArg::Element)]
    relu_norm: ReluNormArg,
    /// Neuronal dynamics: signGD, or rate-coded IF neurons (ReLU networks only; their own step
    /// 1/(t+1) and the input fed unchanged, so --schedule and --encoder do not apply).
    #[arg(long, value_enum, default_value_t = NeuronArg::Signgd)]
    neuron: NeuronArg,
    /// Floating-point precision of the simulation and the ANN evaluation.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    precision: PrecisionArg,
    /// Worker threads (default: the available parallelism).
    #[arg(long, value_name = "N")]
    pub(super) threads: Option<usize>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub(super) json: bool,
    /// Largest number of tensor elements the model may hold, per tensor and in total (refused
    /// before anything is allocated).
    #[arg(long, value_name = "N", default_value_t = signgd::model::reader::MAX_TOTAL_ELEMENTS)]
    max_model_elements: usize,
    /// Write the decoded SNN outputs, shape [checkpoints, inputs, outputs], to this .npy file.
    #[arg(long, value_name = "FILE.npy")]
    pub(super) dump_outputs: Option<PathBuf>,
    /// Write the ANN outputs, shape [inputs, outputs], to this .npy file.
    #[arg(long, value_name = "FILE.npy")]
    pub(super) dump_ann: Option<PathBuf>,
    /// Write a report directory: report.json, populations.csv, accuracy.csv, report.md and a
    /// self-contained report.html with charts (written atomically; see also --force).
    #[arg(long, value_name = "DIR")]
    pub(super) report: Option<PathBuf>,
    /// Replace an existing --report directory.
    #[arg(long, requires = "report")]
    pub(super) force: bool,
    /// Simulate only shard K of N (numbered from 1): the K-th of N contiguous slices of the
    /// inputs (after --limit), sizes differing by at most one. `auto` takes K and N from a Slurm
    /// job array (SLURM_ARRAY_TASK_ID, _MIN, _MAX, _COUNT; --array=0-(N-1) or 1-N); `auto/N`
    /// takes K from a Kubernetes Indexed Job (JOB_COMPLETION_INDEX + 1) and N from the flag. The
    /// --report directory then also holds the per-input outputs and counters that `signgd merge`
    /// combines into the report of the whole run.
    #[arg(long, value_name = "K/N|auto|auto/N", requires = "report")]
    pub(super) shard: Option<String>,
    /// The shards a merged run takes its outputs from instead of simulating.
    #[arg(skip)]
    pub(super) merge: Option<Arc<super::merge::Plan>>,
    /// Energy cost model of the report: a preset (45nm-fp32, 45nm-fp16, 45nm-int8, loihi,
    /// loihi-routing, spinnaker, spinnaker2, spinnaker2-2021) or a JSON file in the format of the
    /// repository's energy/ folder.
    #[arg(long, value_name = "FILE|PRESET", default_value = signgd::stats::energy::DEFAULT_PRESET)]
    pub(super) energy_model: String,
    /// Energy convention: charge the encoder layer's synapses once per input (A·x, as the engine
    /// computes it) or as dense MACs at every step.
    #[arg(long, value_enum, default_value_t = EncoderChargeArg::Once)]
    energy_encoder: EncoderChargeArg,
    /// Energy convention: a product several operands receive (same block, same source) charged
    /// to each receiver (two synapse sets) or once per step (a shared dendrite).
    #[arg(long, value_enum, default_value_t = SharedChargeArg::PerReceiver)]
    energy_shared: SharedChargeArg,
    /// Energy convention: one address computation per synaptic event (the cost model's `address`).
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    energy_addressing: OnOff,
    /// Energy convention: the ANN reads each weight and input activation once per layer (reuse, a
    /// lower bound) or one weight and one activation per MAC (no-reuse, an upper bound).
    #[arg(long, value_enum, default_value_t = AnnMemoryArg::Reuse)]
    energy_ann_memory: AnnMemoryArg,
    /// Energy convention: memory priced by level (smallest SRAM holding each population's or
    /// layer's weights and state, per bit of the word) or flat (the model's memory_read per word).
    #[arg(long, value_enum, default_value_t = MemoryPricingArg::Levels)]
    energy_memory: MemoryPricingArg,
    /// Population whose spikes the report's raster shows, by name or index (default: the first
    /// population with neurons).
    #[arg(long, value_name = "NAME|INDEX", requires = "report")]
    raster_population: Option<String>,
    /// Input (index into the data after --limit) whose raster and error traces the report shows.
    #[arg(long, value_name = "I", default_value_t = 0)]
    raster_input: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum EncoderChargeArg {
    Once,
    EveryStep,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SharedChargeArg {
    PerReceiver,
    Once,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum AnnMemoryArg {
    Reuse,
    NoReuse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum MemoryPricingArg {
    Levels,
    Flat,
}

impl RunArgs {
    /// The energy conventions the flags choose.
    fn conventions(&self) -> Conventions {
        Conventions {
            encoder: match self.energy_encoder {
                EncoderChargeArg::Once => EncoderCharge::Once,
                EncoderChargeArg::EveryStep => EncoderCharge::EveryStep,
            },
            shared: match self.energy_shared {
                SharedChargeArg::PerReceiver => SharedCharge::PerReceiver,
                SharedChargeArg::Once => SharedCharge::Once,
            },
            addressing: match self.energy_addressing {
                OnOff::On => Addressing::On,
                OnOff::Off => Addressing::Off,
            },
            ann_memory: match self.energy_ann_memory {
                AnnMemoryArg::Reuse => AnnMemory::Reuse,
                AnnMemoryArg::NoReuse => AnnMemory::NoReuse,
            },
            memory: match self.energy_memory {
                MemoryPricingArg::Levels => MemoryPricing::Levels,
                MemoryPricingArg::Flat => MemoryPricing::Flat,
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PreprocessArg {
    None,
    Imagenet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum EncoderArg {
    Float,
    Spike,
    Exact,
}

/// `--relu-norm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReluNormArg {
    Element,
    Channel,
    Layer,
}

impl From<ReluNormArg> for ReluNorm {
    fn from(arg: ReluNormArg) -> Self {
        match arg {
            ReluNormArg::Element => ReluNorm::Element,
            ReluNormArg::Channel => ReluNorm::Channel,
            ReluNormArg::Layer => ReluNorm::Layer,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum GeluArg {
    Sigmoid,
    Erf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum NeuronArg {
    Signgd,
    If,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PrecisionArg {
    F32,
    F64,
}

impl EncoderArg {
    fn kind(self) -> EncoderKind {
        match self {
            EncoderArg::Float => EncoderKind::Float,
            EncoderArg::Spike => EncoderKind::Spike,
            EncoderArg::Exact => EncoderKind::Exact,
        }
    }
}

fn value_name<T: ValueEnum>(value: &T) -> String {
    value.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default()
}

/// Everything checked before any file is read.
struct Settings {
    checkpoints: Vec<usize>,
    config: SimConfig,
    schedule_text: String,
    encoder_text: String,
    threads: usize,
    energy_model: EnergyModel,
    shard: Option<Shard>,
}

/// Runs the command.
pub fn run(args: RunArgs) -> Result<ExitCode> {
    let settings = settings(&args)?;
    match args.precision {
        PrecisionArg::F32 => run_in::<f32>(&args, &settings),
        PrecisionArg::F64 => run_in::<f64>(&args, &settings),
    }
}

fn settings(args: &RunArgs) -> Result<Settings> {
    let threads = match args.threads {
        Some(0) => bail!("--threads 0: give at least 1 worker thread"),
        Some(n) => n,
        None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    };
    if args.limit == Some(0) {
        bail!("--limit 0: give at least 1 input");
    }
    let checkpoints = parse_timesteps(&args.timesteps).with_context(|| format!("--timesteps `{}`", args.timesteps))?;
    let (config, schedule_text, encoder_text) = match args.neuron {
        NeuronArg::Signgd => {
            let schedule =
                Schedule::parse(&args.schedule).with_context(|| format!("--schedule `{}`", args.schedule))?;
            let config =
                SimConfig { schedule, encoder: args.encoder.kind(), ..SimConfig::reference(checkpoints.clone()) };
            (config, args.schedule.clone(), value_name(&args.encoder))
        }
        NeuronArg::If => {
            (SimConfig::integrate_and_fire(checkpoints.clone()), "if (η_t = 1/(t+1))".to_string(), "direct".to_string())
        }
    };
    check_schedule_steps(&config.schedule, &schedule_text, &checkpoints, args.precision)?;
    for path in [&args.dump_outputs, &args.dump_ann].into_iter().flatten() {
        check_output_path(path)?;
    }
    if let Some(dir) = &args.report {
        report::check_target(dir, args.force).context("--report")?;
    }
    let energy_model = EnergyModel::load(&args.energy_model).map_err(flat).context("--energy-model")?;
    let shard = args.shard.as_deref().map(|t| Shard::from_arg(t, |v| std::env::var(v).ok())).transpose()?;
    Ok(Settings { checkpoints, config, schedule_text, encoder_text, threads, energy_model, shard })
}

/// Parses `32,64,128`, `1-256` or `1-4,32` into sorted, distinct timesteps.
fn parse_timesteps(text: &str) -> Result<Vec<usize>> {
    let number = |s: &str| -> Result<usize> {
        let s = s.trim();
        let n: usize = s.parse().map_err(|_| anyhow::anyhow!("`{s}` is not a whole number of timesteps"))?;
        ensure!(n >= 1, "timesteps count from 1; `{s}` is not a checkpoint");
        ensure!(n <= MAX_TIMESTEPS, "{n} timesteps is more than the {MAX_TIMESTEPS} supported");
        Ok(n)
    };
    let mut steps = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        ensure!(!part.is_empty(), "empty entry; write a comma list such as 32,64,128 or a range such as 1-256");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                ensure!(a <= b, "range `{part}` ends before it starts; write START-END with START <= END");
                steps.extend(a..=b);
            }
            None => steps.push(number(part)?),
        }
    }
    steps.sort_unstable();
    steps.dedup();
    Ok(steps)
}

/// Refuses checkpoints beyond the steps a schedule defines, including steps whose size rounds
/// to zero in the chosen precision (the simulation would stand still from there on).
fn check_schedule_steps(schedule: &Schedule, text: &str, checkpoints: &[usize], precision: PrecisionArg) -> Result<()> {
    let last = *checkpoints.last().unwrap_or(&1);
    if let Some(max) = schedule.max_steps() {
        ensure!(
            last <= max,
            "checkpoint {last} lies beyond the {max} steps schedule `{text}` defines; use --timesteps up to {max}"
        );
    }
    let etas = schedule.steps(last).with_context(|| format!("schedule `{text}`"))?;
    let vanishes = |eta: f64| match precision {
        PrecisionArg::F32 => !((eta as f32).is_finite() && eta as f32 > 0.0),
        PrecisionArg::F64 => !(eta.is_finite() && eta > 0.0),
    };
    if let Some(t) = etas.iter().position(|&eta| vanishes(eta)) {
        let name = value_name(&precision);
        bail!(
            "checkpoint {last} lies beyond what schedule `{text}` supports in {name}: its step size underflows to 0 at step {} (the simulation would stand still); use --timesteps up to {t}, a slower-decaying schedule or --precision f64",
            t + 1
        );
    }
    Ok(())
}

/// Fails early (before any work) when an output file could not be created later.
fn check_output_path(path: &Path) -> Result<()> {
    if path.is_dir() {
        bail!("{} is a directory; give a file name for the .npy output", path.display());
    }
    let dir = parent_dir(path);
    ensure!(dir.is_dir(), "cannot write {}: directory {} does not exist", path.display(), dir.display());
    Ok(())
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The calibration inputs and where they came from.
struct Calibration {
    inputs: Arc<Tapped>,
    source: String,
}

fn run_in<F: Real + WritableElement + ReadableElement>(args: &RunArgs, settings: &Settings) -> Result<ExitCode> {
    let model_path = match &args.model {
        Some(path) => path.clone(),
        None => super::bundled(DEFAULT_MODEL, "--model FILE.onnx")?,
    };
    let data_path = match &args.data {
        Some(path) => path.clone(),
        None => super::bundled(DEFAULT_DATA, "--data FILE")?,
    };
    let labels_path = match (&args.labels, &args.data) {
        (Some(path), _) => Some(path.clone()),
        (None, None) => Some(super::bundled(DEFAULT_LABELS, "--labels FILE")?),
        (None, Some(_)) => None,
    };

    // Model.
    let started = Instant::now();
    let graph = read_onnx_with_limits(&model_path, None, model_limits(args.max_model_elements)).map_err(flat)?;
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        nodes = graph.nodes.len(),
        "read {}",
        model_path.display()
    );
    let full_input_shape = graph.values[graph.input].shape.clone();
    let sample_shape = full_input_shape.get(1..).unwrap_or(&[]).to_vec();
    let output_size: usize = graph.values[graph.output].shape.iter().product();

    // Data and labels.
    let limits = LoadLimits { max_samples: args.limit, ..LoadLimits::default() };
    let started = Instant::now();
    let folder = data_path.is_dir().then(|| ImageFolder::scan(&data_path)).transpose().map_err(flat)?;
    let opened = load_inputs(args, &data_path, folder.as_ref(), limits, &sample_shape)?;
    let samples = opened.len();
    let scaled_from_u8 = opened.scaled_from_u8();
    let data = Arc::new(Tapped::new(Arc::from(opened)));
    ensure!(samples > 0, "{}: the data set holds no samples", data_path.display());
    tracing::info!(seconds = started.elapsed().as_secs_f64(), inputs = samples, "opened {}", data_path.display());
    if let Some(limit) = args.limit.filter(|&l| l > samples) {
        tracing::warn!("--limit {limit}: {} holds only {samples} inputs; all {samples} are used", data_path.display());
    }
    let labels_path = labels_path.or_else(|| folder.is_some().then(|| data_path.clone()));
    let labels = match &labels_path {
        Some(path) if path == &data_path && folder.is_some() => {
            Some(folder.as_ref().map(|f| f.labels(limits)).unwrap_or_default())
        }
        Some(path) => {
            let labels = read_labels(path, limits).map_err(flat)?;
            ensure!(
                labels.len() == samples,
                "{} holds {} labels but {} holds {} inputs{}; give one label per input",
                path.display(),
                labels.len(),
                data_path.display(),
                samples,
                if args.limit.is_some() { " (after --limit)" } else { "" }
            );
            if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l >= output_size) {
                bail!(
                    "{}: label {l} at index {i} is not a class of the model, which has {output_size} outputs",
                    path.display()
                );
            }
            Some(labels)
        }
        None => None,
    };

    if args.report.is_some() {
        ensure!(
            args.raster_input < samples,
            "--raster-input {}: the data holds {samples} inputs{}; give an index below {samples}",
            args.raster_input,
            if args.limit.is_some() { " (after --limit)" } else { "" },
        );
    }

    // This shard's slice of the inputs (all of them unless --shard).
    let range = match settings.shard {
        Some(shard) => shard.range(samples).with_context(|| format!("--shard {shard}"))?,
        None => 0..samples,
    };
    let labels = labels.map(|l| l[range.clone()].to_vec());
    let count = range.len();

    // Calibration inputs.
    let calibration = calibration(args, &data, &data_path, folder.as_ref(), &sample_shape)?;
    let has_relu = graph.nodes.iter().any(|n| matches!(n.op, Op::Relu));
    if has_relu && args.calibration.is_none() {
        tracing::warn!(
            "the ReLU scales are calibrated on the first {} inputs of --data, the inputs being evaluated: the test set leaks into the normalisation; give --calibration FILE with training inputs (the reference implementation calibrates on training data)",
            calibration.inputs.len()
        );
    }
    let provenance = provenance(&model_path, &data_path, labels_path.as_deref(), args.calibration.as_deref())?;

    // Conversion.
    let started = Instant::now();
    let options = ConvertOptions {
        gelu: match args.gelu {
            GeluArg::Sigmoid => GeluTarget::Sigmoid,
            GeluArg::Erf => GeluTarget::Erf,
        },
        calibration: CalibrationSet::new(calibration.inputs.clone()),
        threads: settings.threads,
        progress: None,
        relu_norm: args.relu_norm.into(),
    };
    let bar = LateBar::new(options.calibration.len(), "calibration", args.json);
    let progress = bar.clone();
    let options = ConvertOptions { progress: Some(Progress(Arc::new(move |n| progress.inc(n)))), ..options };
    let conversion = convert(&graph, &options).with_context(|| format!("cannot convert {}", model_path.display()));
    bar.finish();
    drop(options);
    let conversion = conversion?;
    let network = conversion.network;
    signgd::memory::release_free_memory();
    let conversion_time = started.elapsed();
    let raster_population = match &args.report {
        Some(_) => Some(raster_population(&network, args.raster_population.as_deref())?),
        None => None,
    };
    ensure!(
        network.output_size() == output_size,
        "internal: the converted network has {} outputs, the model {output_size}",
        network.output_size()
    );
    // Refuse unusable settings (IF neurons on a non-ReLU network, …) before any long work.
    let simulator = Simulator::<F>::new(&network, &settings.config).with_context(|| match args.neuron {
        NeuronArg::If => "--neuron if".to_string(),
        NeuronArg::Signgd => "cannot simulate".to_string(),
    })?;
    signgd::memory::release_free_memory();
    let checkpoints = settings.checkpoints.len();
    let total_outputs = checkpoints.saturating_mul(count).saturating_mul(output_size);
    ensure!(
        total_outputs <= MAX_OUTPUT_VALUES,
        "{checkpoints} checkpoints × {count} inputs × {output_size} outputs is too many values to keep; use fewer --timesteps or a smaller --limit"
    );

    let load_global = |i: usize, buffer: &mut [F]| -> Result<(), DataError> {
        let mut values = vec![0.0; buffer.len()];
        data.read(i, &mut values)?;
        for (b, v) in buffer.iter_mut().zip(values) {
            *b = F::of(v);
        }
        Ok(())
    };
    let load = |j: usize, buffer: &mut [F]| load_global(range.start + j, buffer);
    let merged = match &args.merge {
        Some(plan) => {
            plan.check_provenance(&provenance)?;
            Some(plan.results::<F>(count, labels.as_deref(), output_size, &settings.checkpoints)?)
        }
        None => None,
    };
    let (merged_ann, merged_snn) =
        merged.map_or((None, None), |m| (Some((m.ann, m.ann_time)), Some((m.result, m.snn_time))));

    // ANN reference.
    let started = Instant::now();
    let (ann, ann_time) = match merged_ann {
        Some(merged) => merged,
        None => {
            let bar = LateBar::new(count, "ANN", args.json);
            let ann = runner::evaluate_ann::<F, _>(&graph, count, load, settings.threads, &|n| bar.inc(n));
            bar.finish();
            (ann.context("evaluating the ANN")?, started.elapsed())
        }
    };
    tracing::info!(seconds = ann_time.as_secs_f64(), inputs = count, "ANN evaluation");
    let calibration_max = match (&args.calibration, calibration.inputs.stats()) {
        (None, _) => None,
        (Some(_), Some(stats)) => Some(stats.max_abs),
        // Not read by the conversion (a model without ReLUs): read it once for its range.
        (Some(path), None) => Some(
            signgd::data::scan(&*calibration.inputs)
                .map_err(flat)
                .with_context(|| format!("reading {}", path.display()))?
                .max_abs,
        ),
    };
    if let Some(stats) = data.stats() {
        if let Some(warning) = scale_warning(&stats, scaled_from_u8, calibration_max) {
            tracing::warn!("{}: {warning}", data_path.display());
        }
    }

    // SNN, once to the largest checkpoint.
    let started = Instant::now();
    let (result, snn_time) = match merged_snn {
        Some(merged) => merged,
        None => {
            let bar = progress_bar(count, "SNN", args.json);
            let result = runner::simulate_prepared(&simulator, count, load, settings.threads, &|n| bar.inc(n as u64))
                .context("simulating the SNN")?;
            bar.finish_and_clear();
            (result, started.elapsed())
        }
    };
    drop(simulator);
    tracing::info!(
        seconds = snn_time.as_secs_f64(),
        inputs = count,
        steps = settings.checkpoints.last().copied().unwrap_or(0),
        "SNN simulation"
    );

    // Outputs, only now that everything succeeded.
    let mut dumps: Vec<Dump<'_>> = Vec::new();
    if let Some(path) = &args.dump_outputs {
        let array =
            Array3::from_shape_vec((result.checkpoints.len(), result.inputs, output_size), result.outputs.clone())?;
        dumps.push((path.clone(), Box::new(move |w| Ok(array.write_npy(w)?))));
    }
    if let Some(path) = &args.dump_ann {
        let array = Array2::from_shape_vec((count, output_size), ann.clone())?;
        dumps.push((path.clone(), Box::new(move |w| Ok(array.write_npy(w)?))));
    }
    write_all_atomically(dumps)?;

    // One input up close, for the report.
    let observation = match raster_population {
        Some(population) if range.contains(&args.raster_input) => {
            let mut input = vec![F::zero(); network.input_size()];
            load_global(args.raster_input, &mut input)?;
            Some(observe::<F>(&network, &conversion.graph, &settings.config, population, args.raster_input, &input)?)
        }
        _ => None,
    };

    let report = Report {
        args,
        settings,
        model_path: &model_path,
        provenance: &provenance,
        data_path: &data_path,
        labels_path: labels_path.as_deref(),
        scaled_from_u8,
        inputs: count,
        labels: labels.as_deref(),
        calibration_source: &calibration.source,
        network: &network,
        notes: &conversion.notes,
        ann: &ann,
        result: &result,
        output_size,
        times: [conversion_time, ann_time, snn_time],
        precision: F::NAME,
    };
    let mut json = report.json();
    let mut text = report.text();
    if let Some(folder) = &folder {
        json["data"]["classes"] = json!(folder.classes);
        json["data"]["preprocess"] = json!(value_name(&args.preprocess));
        let names = folder.classes.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
        let more = if folder.classes.len() > 8 { ", …" } else { "" };
        text = text.replacen(
            "\nlabels ",
            &format!(
                "\nclasses      {} ({names}{more}); preprocess {}\nlabels ",
                folder.classes.len(),
                value_name(&args.preprocess)
            ),
            1,
        );
    }
    let slice = settings.shard.map(|shard| super::shard::Slice::new(shard, &range, samples));
    if let Some(slice) = &slice {
        json["shard"] = json!(slice);
        let _ = writeln!(text, "shard        {slice}");
    }
    if let Some(plan) = &args.merge {
        json["merged_from"] = json!(plan.directories());
        let _ = writeln!(text, "merged       {}", plan.describe());
    }
    if let Some(dir) = &args.report {
        let rows = report.rows();
        let report_data = ReportData::build(report::Sources {
            run: json.clone(),
            network: &network,
            counters: &result.counters,
            checkpoints: &result.checkpoints,
            inputs: count as u64,
            ann_graph: &graph,
            accuracy: report::Accuracy {
                ann: report.ann_accuracy(),
                ann_ci95: report.ann_accuracy_ci95(),
                checkpoints: rows
                    .iter()
                    .map(|r| report::AccuracyRow {
                        timesteps: r.timesteps,
                        snn_accuracy: r.accuracy,
                        snn_accuracy_ci95: r.accuracy_ci95,
                        mcnemar_vs_ann: r.mcnemar_vs_ann,
                        agreement: r.agreement,
                        mean_abs_diff: r.mean_abs_diff.is_finite().then_some(r.mean_abs_diff),
                    })
                    .collect(),
            },
            energy_model: settings.energy_model.clone(),
            conventions: args.conventions(),
            observation,
        });
        let mut files: Vec<(&str, Vec<u8>)> =
            report_data.render()?.into_iter().map(|(name, text)| (name, text.into_bytes())).collect();
        if let Some(slice) = slice {
            let record =
                super::shard::Record::new(slice, &provenance, labels.as_deref(), &result, [ann_time, snn_time])?;
            files.extend(record.files(&ann, &result)?);
        }
        report::write_dir(dir, &files, args.force)?;
        let _ = writeln!(text, "report       {} (open {})", dir.display(), dir.join("report.html").display());
        json["report"] = json!(dir.display().to_string());
    }
    let text = if args.json { serde_json::to_string_pretty(&json)? + "\n" } else { text };
    print_out(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// The inputs of `path`, read as they are needed: an image folder (`folder`, when already
/// scanned), preprocessed as asked, or an array file, checked to fit the model's input.
fn load_inputs(
    args: &RunArgs,
    path: &Path,
    folder: Option<&ImageFolder>,
    limits: LoadLimits,
    sample_shape: &[usize],
) -> Result<Box<dyn InputSource>> {
    if folder.is_none() && !path.is_dir() {
        let inputs = open_inputs(path, limits).map_err(flat)?;
        fit_shape(inputs.shape(), sample_shape, path).map_err(flat)?;
        return Ok(inputs);
    }
    let crop = sample_shape.iter().copied().filter(|&d| d > 3).max().unwrap_or(1);
    let mut preprocess = match args.preprocess {
        PreprocessArg::None => Preprocess::none(),
        PreprocessArg::Imagenet => Preprocess::imagenet(crop),
    };
    let list = |text: &str, flag: &str| -> Result<Vec<f64>> {
        text.split(',')
            .map(|v| v.trim().parse::<f64>().ok().filter(|v| v.is_finite()))
            .collect::<Option<Vec<f64>>>()
            .with_context(|| format!("{flag} `{text}`: give numbers separated by commas"))
    };
    if let Some(mean) = &args.mean {
        preprocess.mean = list(mean, "--mean")?;
    }
    if let Some(std) = &args.std {
        preprocess.std = list(std, "--std")?;
        ensure!(preprocess.std.iter().all(|&s| s > 0.0), "--std `{std}`: standard deviations must be positive");
    }
    let scanned;
    let folder = match folder {
        Some(folder) => folder,
        None => {
            scanned = ImageFolder::scan(path).map_err(flat)?;
            &scanned
        }
    };
    Ok(Box::new(folder.inputs(limits, sample_shape, &preprocess).map_err(flat)?))
}

/// The calibration inputs: the --calibration file, or the first inputs of --data (read again
/// past --limit when the limit keeps fewer).
fn calibration(
    args: &RunArgs,
    data: &Arc<Tapped>,
    data_path: &Path,
    data_folder: Option<&ImageFolder>,
    sample_shape: &[usize],
) -> Result<Calibration> {
    let (inputs, source): (Arc<dyn InputSource>, String) = match &args.calibration {
        Some(path) => {
            let set = load_inputs(args, path, None, LoadLimits::default(), sample_shape)?;
            ensure!(!set.is_empty(), "{}: the calibration file holds no samples", path.display());
            let source = format!("{} ({} inputs)", path.display(), set.len());
            (Arc::from(set), source)
        }
        None => {
            let set: Arc<dyn InputSource> = if data.len() >= CALIBRATION_FROM_DATA || args.limit.is_none() {
                data.clone()
            } else {
                let limits = LoadLimits { max_samples: Some(CALIBRATION_FROM_DATA), ..LoadLimits::default() };
                Arc::from(load_inputs(args, data_path, data_folder, limits, sample_shape)?)
            };
            let first = First::new(set, CALIBRATION_FROM_DATA);
            let source =
                format!("first {} inputs of --data {} (no --calibration given)", first.len(), data_path.display());
            (Arc::new(first), source)
        }
    };
    Ok(Calibration { inputs: Arc::new(Tapped::new(inputs)), source })
}

/// The tool's version and the size and SHA-256 of every input file, by role.
fn provenance(
    model: &Path,
    data: &Path,
    labels: Option<&Path>,
    calibration: Option<&Path>,
) -> Result<serde_json::Value> {
    let mut files = serde_json::Map::new();
    for (role, path) in [("model", Some(model)), ("data", Some(data)), ("labels", labels), ("calibration", calibration)]
    {
        let Some(path) = path else { continue };
        if role == "labels" && path == data {
            continue; // the class folders of an image folder
        }
        let (file, array) = split_array_name(path);
        let digest = if file.is_dir() { digest_tree(&file) } else { digest(&file) }
            .with_context(|| format!("cannot read {} to record its digest", file.display()))?;
        let mut entry = serde_json::to_value(digest)?;
        if let Some(array) = array {
            entry["array"] = json!(array);
        }
        files.insert(role.to_string(), entry);
    }
    Ok(json!({ "signgd_version": VERSION, "files": files }))
}

/// A progress bar with rate and ETA on stderr when it is a terminal; hidden otherwise and with
/// `--json` (`json`).
fn progress_bar(len: usize, what: &str, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    let style = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} inputs, {per_sec}, ETA {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

/// A progress bar for work that is often quick: drawn (on a terminal) only once the work has
/// taken a second.
#[derive(Clone)]
struct LateBar {
    bar: ProgressBar,
    terminal: bool,
}

impl LateBar {
    fn new(len: usize, what: &str, json: bool) -> Self {
        let bar = progress_bar(len, what, json);
        let terminal = !bar.is_hidden();
        bar.set_draw_target(ProgressDrawTarget::hidden());
        LateBar { bar, terminal }
    }

    /// Counts `n` more inputs done; draws the bar from the first second on.
    fn inc(&self, n: usize) {
        self.bar.inc(n as u64);
        if self.terminal && self.bar.is_hidden() && self.bar.elapsed() >= Duration::from_secs(1) {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

type Dump<'a> = (PathBuf, Box<dyn FnOnce(&mut BufWriter<File>) -> Result<()> + 'a>);

/// Writes every file to a temporary file in its own directory, then renames them all into place;
/// on any failure the temporary files are removed and no target file is touched.
fn write_all_atomically(dumps: Vec<Dump<'_>>) -> Result<()> {
    let mut written: Vec<(PathBuf, PathBuf)> = Vec::new();
    let cleanup = |written: &[(PathBuf, PathBuf)]| {
        for (tmp, _) in written {
            let _ = fs::remove_file(tmp);
        }
    };
    for (path, write) in dumps {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "output".into());
        let tmp = parent_dir(&path).join(format!(".{name}.tmp-{}", std::process::id()));
        let result = (|| -> Result<()> {
            let file = File::create(&tmp)?;
            let mut writer = BufWriter::new(file);
            write(&mut writer)?;
            writer.flush()?;
            writer.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            Ok(())
        })();
        written.push((tmp, path.clone()));
        if let Err(e) = result {
            cleanup(&written);
            return Err(e.context(format!("cannot write {}", path.display())));
        }
    }
    for (i, (tmp, path)) in written.iter().enumerate() {
        if let Err(e) = fs::rename(tmp, path) {
            cleanup(&written[i..]);
            return Err(anyhow::Error::new(e).context(format!("cannot write {}", path.display())));
        }
    }
    Ok(())
}

/// Everything the report shows.
struct Report<'a, F> {
    args: &'a RunArgs,
    settings: &'a Settings,
    data_path: &'a Path,
    labels_path: Option<&'a Path>,
    scaled_from_u8: bool,
    /// The inputs simulated: this shard's, or all of --data (after --limit).
    inputs: usize,
    labels: Option<&'a [usize]>,
    calibration_source: &'a str,
    model_path: &'a Path,
    provenance: &'a serde_json::Value,
    network: &'a Network,
    notes: &'a [String],
    ann: &'a [F],
    result: &'a runner::SimulationResult<F>,
    output_size: usize,
    times: [Duration; 3],
    precision: &'static str,
}

/// One row of the table.
struct Row {
    timesteps: usize,
    accuracy: Option<f64>,
    accuracy_ci95: Option<Interval>,
    mcnemar_vs_ann: Option<McNemar>,
    agreement: f64,
    mean_abs_diff: f64,
    spikes: u64,
    synaptic_events: u64,
}

impl<F: Real> Report<'_, F> {
    fn ann_accuracy(&self) -> Option<f64> {
        self.labels.map(|l| runner::accuracy(self.ann, self.output_size, l))
    }

    /// Whether each input's predicted class is its label (None without labels).
    fn correct(&self, outputs: &[F]) -> Option<Vec<bool>> {
        let labels = self.labels?;
        Some(runner::classes(outputs, self.output_size).iter().zip(labels).map(|(c, l)| c == l).collect())
    }

    fn ann_accuracy_ci95(&self) -> Option<Interval> {
        self.correct(self.ann).and_then(|c| accuracy_ci95(&c))
    }

    fn rows(&self) -> Vec<Row> {
        let r = self.result;
        let ann_correct = self.correct(self.ann);
        r.checkpoints
            .iter()
            .enumerate()
            .map(|(k, &timesteps)| {
                let outputs = r.at_checkpoint(k);
                let (spikes, synaptic_events) = totals(&r.counters, k);
                let snn_correct = self.correct(outputs);
                Row {
                    timesteps,
                    accuracy: self.labels.map(|l| runner::accuracy(outputs, self.output_size, l)),
                    accuracy_ci95: snn_correct.as_deref().and_then(accuracy_ci95),
                    mcnemar_vs_ann: snn_correct.as_ref().zip(ann_correct.as_ref()).map(|(s, a)| mcnemar(s, a)),
                    agreement: runner::agreement(outputs, self.ann, self.output_size),
                    mean_abs_diff: runner::mean_abs_diff(outputs, self.ann),
                    spikes,
                    synaptic_events,
                }
            })
            .collect()
    }

    fn images_per_second(&self) -> f64 {
        let secs = self.times[2].as_secs_f64();
        if secs > 0.0 {
            self.inputs as f64 / secs
        } else {
            f64::INFINITY
        }
    }

    fn neuron_text(&self) -> String {
        value_name(&self.args.neuron)
    }

    fn text(&self) -> String {
        let mut out = String::new();
        let s = self.settings;
        let graph_in = &self.network.input_shape;
        let _ = writeln!(
            out,
            "model        {} (input {:?}, {} outputs)",
            self.model_path.display(),
            graph_in,
            self.output_size
        );
        let _ = writeln!(
            out,
            "data         {}: {} inputs{}",
            self.data_path.display(),
            self.inputs,
            if self.scaled_from_u8 { ", uint8 scaled to [0,1]" } else { "" }
        );
        let _ = match self.labels_path {
            Some(path) => writeln!(out, "labels       {}", path.display()),
            None => writeln!(out, "labels       none (no --labels given): accuracy not computed"),
        };
        let _ = writeln!(
            out,
            "settings     schedule {}, encoder {}, gelu {}, neuron {}, precision {}, threads {}, relu norm {}",
            s.schedule_text,
            s.encoder_text,
            value_name(&self.args.gelu),
            self.neuron_text(),
            self.precision,
            s.threads,
            value_name(&self.args.relu_norm)
        );
        let _ = writeln!(out, "calibration  {}", self.calibration_source);
        if let Some(files) = self.provenance["files"].as_object() {
            let digests: Vec<String> = files
                .iter()
                .map(|(role, f)| format!("{role} {}", f["sha256"].as_str().map_or("?", |h| &h[..h.len().min(16)])))
                .collect();
            let _ = writeln!(
                out,
                "provenance   signgd {VERSION}; sha256 {} (in full in --json and report.json)",
                digests.join(", ")
            );
        }
        let populations = self.network.populations.len() - self.network.relays();
        let _ = writeln!(
            out,
            "network      {populations} neuron populations, {} neurons, {} relays",
            self.network.neurons(),
            self.network.relays()
        );
        let _ = match self.ann_accuracy() {
            Some(a) => writeln!(out, "ANN accuracy {}{}", percent(a), report::interval_text(self.ann_accuracy_ci95())),
            None => writeln!(out, "ANN accuracy -"),
        };
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:>7} | {:>8} | {:>13} | {:>12} | {:>10} | {:>10}",
            "T", "SNN acc", "95% CI", "agree w/ ANN", "McNemar p", "mean |Δ|"
        );
        let _ = writeln!(out, "{:->7}-+-{:->8}-+-{:->13}-+-{:->12}-+-{:->10}-+-{:->10}", "", "", "", "", "", "");
        for row in self.rows() {
            let _ = writeln!(
                out,
                "{:>7} | {:>8} | {:>13} | {:>12} | {:>10} | {:>10.3e}",
                row.timesteps,
                row.accuracy.map_or("-".to_string(), percent),
                report::interval_range(row.accuracy_ci95),
                percent(row.agreement),
                row.mcnemar_vs_ann.map_or("-".to_string(), |t| report::p_value_text(t.p_value)),
                row.mean_abs_diff
            );
        }
        if self.labels.is_some() {
            let _ = writeln!(
                out,
                "             (95% Wilson intervals over {} inputs; McNemar's exact test of SNN against ANN accuracy)",
                self.inputs
            );
        }
        let _ = writeln!(out);
        let [conversion, ann, snn] = self.times;
        let _ = writeln!(
            out,
            "time         conversion {:.2} s, ANN {:.2} s, SNN {:.2} s ({:.1} images/s)",
            conversion.as_secs_f64(),
            ann.as_secs_f64(),
            snn.as_secs_f64(),
            self.images_per_second()
        );
        out
    }

    fn json(&self) -> serde_json::Value {
        let s = self.settings;
        let [conversion, ann, snn] = self.times;
        let finite = |x: f64| if x.is_finite() { json!(x) } else { serde_json::Value::Null };
        json!({
            "schema_version": 1,
            "model": self.model_path.display().to_string(),
            "provenance": self.provenance,
            "data": {
                "path": self.data_path.display().to_string(),
                "inputs": self.inputs,
                "input_shape": self.network.input_shape,
                "scaled_from_u8": self.scaled_from_u8,
                "labels": self.labels_path.map(|p| p.display().to_string()),
            },
            "settings": {
                "timesteps": s.checkpoints,
                "schedule": s.schedule_text,
                "encoder": s.encoder_text,
                "gelu": value_name(&self.args.gelu),
                "neuron": self.neuron_text(),
                "precision": self.precision,
                "threads": s.threads,
                "relu_norm": value_name(&self.args.relu_norm),
            },
            "calibration": self.calibration_source,
            "network": {
                "populations": self.network.populations.len() - self.network.relays(),
                "neurons": self.network.neurons(),
                "relays": self.network.relays(),
                "outputs": self.output_size,
            },
            "conversion_notes": self.notes,
            "ann_accuracy": self.ann_accuracy(),
            "ann_accuracy_ci95": self.ann_accuracy_ci95(),
            "checkpoints": self.rows().iter().map(|r| json!({
                "timesteps": r.timesteps,
                "snn_accuracy": r.accuracy,
                "snn_accuracy_ci95": r.accuracy_ci95,
                "mcnemar_vs_ann": r.mcnemar_vs_ann,
                "agreement": r.agreement,
                "mean_abs_diff": finite(r.mean_abs_diff),
                "spikes": r.spikes,
                "synaptic_events": r.synaptic_events,
            })).collect::<Vec<_>>(),
            "time_s": {
                "conversion": conversion.as_secs_f64(),
                "ann": ann.as_secs_f64(),
                "snn": snn.as_secs_f64(),
            },
            "images_per_s": finite(self.images_per_second()),
        })
    }
}

/// The 95 % Wilson interval of the fraction of `correct` inputs.
fn accuracy_ci95(correct: &[bool]) -> Option<Interval> {
    wilson(correct.iter().filter(|&&ok| ok).count(), correct.len())
}

/// Total spikes and synaptic events over all populations and the readout up to checkpoint `k`.
fn totals(counters: &Counters, k: usize) -> (u64, u64) {
    counters
        .at_checkpoints
        .get(k)
        .map_or((0, 0), |c| (c.iter().map(|a| a.spikes).sum(), c.iter().map(|a| a.synaptic_events).sum()))
}

/// The population a report's raster shows: `choice` by name or index, else the first with
/// neurons.
fn raster_population(network: &Network, choice: Option<&str>) -> Result<usize> {
    let pops = &network.populations;
    let index = match choice {
        None => {
            return pops
                .iter()
                .position(|p| !p.kind.is_relay())
                .ok_or_else(|| anyhow::anyhow!("the network has no population with neurons to draw a raster of"))
        }
        Some(text) => match pops.iter().position(|p| p.name == text) {
            Some(i) => i,
            None => match text.parse::<usize>() {
                Ok(i) if i < pops.len() => i,
                Ok(i) => bail!(
                    "--raster-population {i}: the network has {} populations (0 to {})",
                    pops.len(),
                    pops.len().saturating_sub(1)
                ),
                Err(_) => bail!(
                    "--raster-population `{text}`: no population has this name; `signgd inspect --model …` lists them"
                ),
            },
        },
    };
    ensure!(
        !pops[index].kind.is_relay(),
        "--raster-population: population {index} `{}` is a relay (real values, no neurons, no spikes); choose a population with neurons",
        pops[index].name
    );
    Ok(index)
}

/// Simulates one input with a recorder: the raster of `population` and, for every population with
/// neurons, the mean |v − ANN value| per step against the converted graph's values.
fn observe<F: Real>(
    network: &Network,
    graph: &signgd::model::Graph,
    config: &SimConfig,
    population: usize,
    input_index: usize,
    input: &[F],
) -> Result<report::Observation> {
    let shape = graph.values[graph.input].shape.clone();
    let x = ArrayD::from_shape_vec(IxDyn(&shape), input.iter().map(|v| v.to_f64_lossless()).collect())
        .context("the observed input does not fit the converted graph")?;
    let values = graph.evaluate_all::<f64>(&x).map_err(flat).context("evaluating the converted graph")?;
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
    let simulator = Simulator::<F>::new(network, config)?;
    let mut workspace = simulator.workspace();
    let mut outputs = vec![F::zero(); simulator.checkpoints().len() * simulator.output_size()];
    simulator.run(&mut workspace, input, &mut outputs, &mut recorder)?;
    let (raster, errors) = recorder.finish();
    Ok(report::Observation { input: input_index, raster, errors })
}

/// Writes the report to stdout; a closed pipe (`signgd run | head`) is not an error.
pub(crate) fn print_out(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write to stdout"))
        }
        _ => Ok(()),
    }
}

/// An error whose message already includes its sources, as one line (without the chain that
/// `{:#}` would append again).
fn flat(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{error}")
}

fn percent(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timesteps() {
        assert_eq!(parse_timesteps("32,64,128,256").unwrap(), vec![32, 64, 128, 256]);
        assert_eq!(parse_timesteps("1-4,32").unwrap(), vec![1, 2, 3, 4, 32]);
        assert_eq!(parse_timesteps(" 4 , 2-3,3").unwrap(), vec![2, 3, 4]);
        assert_eq!(parse_timesteps("1-256").unwrap().len(), 256);
        for bad in ["0", "5-2", "abc", "", "1,,2", "-3", "1-", "2000000"] {
            assert!(parse_timesteps(bad).is_err(), "{bad}");
        }
    }
}
