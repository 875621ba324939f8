//! `signgd run`: convert a model, simulate a data set, and print accuracy against timesteps.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ndarray::{Array2, Array3};
use ndarray_npy::{ReadableElement, WritableElement, WriteNpyExt};
use serde_json::json;
use signgd::convert::ReluNorm;
use signgd::data::InputSource;
use signgd::pipeline::{
    execute, fingerprint, observe_input, parse_timesteps, Finished, Neuron, Observer, Outcome, Phase, PipelineError,
    Plan, Precision, Prepared, PreprocessPreset, Progress, Replay,
};
use signgd::provenance::VERSION;

use super::plan::{Labels, Sources};
use signgd::real::Real;
use signgd::report::{self, ReportData};
use signgd::shard::Shard;
use signgd::snn::{EncoderKind, GeluTarget, Network, Schedule};
use signgd::stats::energy::{
    Addressing, AnnMemory, Conventions, EncoderCharge, EnergyModel, MemoryPricing, SharedCharge,
};
use signgd::tune::TunedSettings;

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
    /// Dynamics: `reference` (the method as published: only ReLU outputs normalised, schedule
    /// exp:0.15:0.95, float encoder) or `calibrated` (every population scaled by its own range on
    /// the calibration inputs, schedule exp:0.3:0.9, exact encoder). --schedule and --encoder
    /// replace the preset's.
    #[arg(long, value_enum, default_value_t = PresetArg::Reference)]
    preset: PresetArg,
    /// Settings written by `signgd tune`: their preset, schedule, encoder and GELU target
    /// (instead of --preset, --schedule, --encoder and --gelu).
    #[arg(long, value_name = "FILE.json", conflicts_with_all = ["preset", "schedule", "encoder", "gelu"])]
    tuned: Option<PathBuf>,
    /// Step sizes: exp:ETA0:GAMMA, inverse:ETA0 or constant:ETA0 (default: the preset's).
    #[arg(long, value_name = "SCHEDULE")]
    schedule: Option<String>,
    /// Input encoder (default: the preset's).
    #[arg(long, value_enum)]
    encoder: Option<EncoderArg>,
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
    /// Also give the SHA-256 fingerprint of the converted network (equal exactly when two
    /// conversions made the same network; hashing takes time and memory in proportion to the
    /// weights).
    #[arg(long)]
    pub(super) fingerprint: bool,
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
pub(super) enum PreprocessArg {
    None,
    Imagenet,
}

impl From<PreprocessArg> for PreprocessPreset {
    fn from(arg: PreprocessArg) -> Self {
        match arg {
            PreprocessArg::None => PreprocessPreset::None,
            PreprocessArg::Imagenet => PreprocessPreset::Imagenet,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum PresetArg {
    Reference,
    Calibrated,
}

impl PresetArg {
    /// The conversion's preset, and the schedule and encoder it takes unless given.
    pub(super) fn defaults(self) -> (signgd::convert::Preset, &'static str, EncoderArg) {
        match self {
            PresetArg::Reference => (signgd::convert::Preset::Reference, "exp:0.15:0.95", EncoderArg::Float),
            PresetArg::Calibrated => (signgd::convert::Preset::Calibrated, CALIBRATED_SCHEDULE, EncoderArg::Exact),
        }
    }
}

/// The schedule of `--preset calibrated`.
const CALIBRATED_SCHEDULE: &str = "exp:0.3:0.9";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum EncoderArg {
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
pub(super) enum GeluArg {
    Sigmoid,
    Erf,
}

impl From<GeluArg> for GeluTarget {
    fn from(arg: GeluArg) -> Self {
        match arg {
            GeluArg::Sigmoid => GeluTarget::Sigmoid,
            GeluArg::Erf => GeluTarget::Erf,
        }
    }
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
    pub(super) fn kind(self) -> EncoderKind {
        match self {
            EncoderArg::Float => EncoderKind::Float,
            EncoderArg::Spike => EncoderKind::Spike,
            EncoderArg::Exact => EncoderKind::Exact,
        }
    }
}

/// The run's plan, and what the command line adds to it.
struct Settings {
    plan: Plan,
    energy_model: EnergyModel,
}

/// Runs the command.
pub fn run(args: RunArgs) -> Result<ExitCode> {
    let settings = settings(&args)?;
    match settings.plan.settings.precision {
        Precision::F32 => run_in::<f32>(&args, &settings),
        Precision::F64 => run_in::<f64>(&args, &settings),
    }
}

/// Everything checked before any file is read, and the plan.
fn settings(args: &RunArgs) -> Result<Settings> {
    let threads = super::worker_threads(args.threads)?;
    if args.limit == Some(0) {
        bail!("--limit 0: give at least 1 input");
    }
    let checkpoints =
        parse_timesteps(&args.timesteps).map_err(flat).with_context(|| format!("--timesteps `{}`", args.timesteps))?;
    let tuned = args.tuned.as_deref().map(super::tune::read_tuned).transpose()?;
    let dynamics = match &tuned {
        Some(tuned) => Dynamics::tuned(tuned)?,
        None => Dynamics::of(args),
    };
    let schedule = dynamics.schedule.as_str();
    let neuron = match args.neuron {
        NeuronArg::Signgd => Neuron::SignGd {
            schedule: Schedule::parse(schedule).map_err(flat).with_context(|| format!("--schedule `{schedule}`"))?,
            schedule_text: schedule.to_string(),
            encoder: dynamics.encoder.kind(),
        },
        NeuronArg::If => Neuron::IntegrateAndFire,
    };
    let preset = dynamics.preset;
    let run_settings = signgd::pipeline::Settings {
        checkpoints,
        neuron,
        gelu: dynamics.gelu.into(),
        relu_norm: args.relu_norm.into(),
        precision: match args.precision {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::F64 => Precision::F64,
        },
        threads,
        preset,
        tuned: args.tuned.as_ref().map(|p| p.display().to_string()),
    };
    run_settings.check().map_err(flat).with_context(|| format!("--timesteps `{}`", args.timesteps))?;
    for path in [&args.dump_outputs, &args.dump_ann].into_iter().flatten() {
        check_output_path(path)?;
    }
    if let Some(dir) = &args.report {
        report::check_target(dir, args.force).context("--report")?;
    }
    let energy_model = EnergyModel::load(&args.energy_model).map_err(flat).context("--energy-model")?;
    let shard = args.shard.as_deref().map(|t| Shard::from_arg(t, |v| std::env::var(v).ok())).transpose()?;
    let sources = Sources {
        model: args.model.as_deref(),
        max_model_elements: Some(args.max_model_elements),
        data: args.data.as_deref(),
        labels: args.labels.as_deref(),
        limit: args.limit,
        calibration: args.calibration.as_deref(),
        preprocess: args.preprocess.into(),
        mean: args.mean.as_deref(),
        std: args.std.as_deref(),
        shard,
    };
    let plan = sources.plan(Labels::Wanted, run_settings)?;
    if let Some(tuned) = &tuned {
        warn_if_tuned_elsewhere(tuned, &plan.model.path);
    }
    Ok(Settings { plan, energy_model })
}

/// The preset, schedule, encoder and GELU target of a run: from the command line, or from a
/// file of `signgd tune`.
struct Dynamics {
    preset: signgd::convert::Preset,
    schedule: String,
    encoder: EncoderArg,
    gelu: GeluArg,
}

impl Dynamics {
    /// As the command line gives them (the preset's schedule and encoder unless given).
    fn of(args: &RunArgs) -> Self {
        let (preset, schedule, encoder) = args.preset.defaults();
        Dynamics {
            preset,
            schedule: args.schedule.clone().unwrap_or_else(|| schedule.to_string()),
            encoder: args.encoder.unwrap_or(encoder),
            gelu: args.gelu,
        }
    }

    /// As a tuned settings file gives them.
    fn tuned(tuned: &TunedSettings) -> Result<Self> {
        let preset = PresetArg::from_str(&tuned.preset, true)
            .map_err(|_| anyhow::anyhow!("--tuned: unknown preset `{}`", tuned.preset))?;
        let encoder = EncoderArg::from_str(&tuned.encoder, true)
            .map_err(|_| anyhow::anyhow!("--tuned: unknown encoder `{}`", tuned.encoder))?;
        let gelu = GeluArg::from_str(&tuned.gelu, true)
            .map_err(|_| anyhow::anyhow!("--tuned: unknown GELU target `{}`", tuned.gelu))?;
        Ok(Dynamics { preset: preset.defaults().0, schedule: tuned.schedule.clone(), encoder, gelu })
    }
}

/// Warns when a tuned settings file was made for another model than the one run.
fn warn_if_tuned_elsewhere(tuned: &TunedSettings, model: &Path) {
    let Ok(digest) = signgd::provenance::digest(model) else { return };
    if digest.sha256 != tuned.model.sha256 {
        tracing::warn!(
            "--tuned: the settings were tuned for {} (sha256 {}), not for {}; tune again for this model",
            tuned.model.path,
            &tuned.model.sha256[..tuned.model.sha256.len().min(16)],
            model.display()
        );
    }
}

/// Fails early (before any work) when an output file could not be created later.
pub(super) fn check_output_path(path: &Path) -> Result<()> {
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

fn run_in<F: Real + WritableElement + ReadableElement>(args: &RunArgs, settings: &Settings) -> Result<ExitCode> {
    let progress: Arc<dyn Progress> = Arc::new(Bars::new(args.json));
    let mut hooks = Hooks { args, settings, raster_population: None, error: None };
    let outcome = match execute::<F>(&settings.plan, &progress, &mut hooks) {
        Ok(outcome) => outcome,
        Err(PipelineError::Observer(_)) if hooks.error.is_some() => {
            return Err(hooks.error.take().unwrap_or_else(|| anyhow::anyhow!("stopped")))
        }
        Err(PipelineError::Simulator(e)) => {
            return Err(flat(e).context(match args.neuron {
                NeuronArg::If => "--neuron if",
                NeuronArg::Signgd => "cannot simulate",
            }))
        }
        Err(e) => return Err(flat(e)),
    };
    let text = if args.json { serde_json::to_string_pretty(&outcome)? + "\n" } else { text(&outcome) };
    print_out(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// What `signgd run` does between the pipeline's stages: warnings, the raster's checks, a merged
/// run's results, the output files and the report directory.
struct Hooks<'a> {
    args: &'a RunArgs,
    settings: &'a Settings,
    raster_population: Option<usize>,
    /// The error that stopped the run, with its context.
    error: Option<anyhow::Error>,
}

impl Hooks<'_> {
    /// Keeps the error of `step` (its context intact) and stops the pipeline.
    fn guard<T>(&mut self, step: impl FnOnce(&mut Self) -> Result<T>) -> Result<T, BoxError> {
        step(self).map_err(|e| {
            let message = e.to_string();
            self.error = Some(e);
            message.into()
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<F: Real + WritableElement + ReadableElement> Observer<F> for Hooks<'_> {
    fn prepared(&mut self, prepared: &Prepared) -> Result<(), BoxError> {
        self.guard(|hooks| {
            let args = hooks.args;
            let samples = prepared.samples();
            if let Some(limit) = args.limit.filter(|&l| l > samples) {
                tracing::warn!(
                    "--limit {limit}: {} holds only {samples} inputs; all {samples} are used",
                    prepared.data_path.display()
                );
            }
            if prepared.has_relu && args.calibration.is_none() {
                tracing::warn!(
                    "the ReLU scales are calibrated on the first {} inputs of --data, the inputs being evaluated: the test set leaks into the normalisation; give --calibration FILE with training inputs (the reference implementation calibrates on training data)",
                    prepared.calibration.len()
                );
            }
            if args.report.is_some() {
                ensure!(
                    args.raster_input < samples,
                    "--raster-input {}: the data holds {samples} inputs{}; give an index below {samples}",
                    args.raster_input,
                    if args.limit.is_some() { " (after --limit)" } else { "" },
                );
                hooks.raster_population =
                    Some(raster_population(prepared.network(), args.raster_population.as_deref())?);
            }
            Ok(())
        })
    }

    fn replay(&mut self, prepared: &Prepared) -> Result<Option<Replay<F>>, BoxError> {
        self.guard(|hooks| {
            let Some(plan) = &hooks.args.merge else { return Ok(None) };
            plan.check_provenance(&prepared.provenance)?;
            let checkpoints = &hooks.settings.plan.settings.checkpoints;
            let merged = plan.results::<F>(
                prepared.range.len(),
                prepared.labels.as_deref(),
                prepared.output_size(),
                checkpoints,
            )?;
            Ok(Some(Replay {
                ann: merged.ann,
                ann_time: merged.ann_time,
                result: merged.result,
                snn_time: merged.snn_time,
            }))
        })
    }

    fn finished(&mut self, run: &Finished<'_, F>, outcome: &mut Outcome) -> Result<(), BoxError> {
        self.guard(|hooks| hooks.write(run, outcome))
    }
}

impl Hooks<'_> {
    /// Writes the dumps and the report directory, and records them in `outcome`.
    fn write<F: Real + WritableElement>(&self, run: &Finished<'_, F>, outcome: &mut Outcome) -> Result<()> {
        let args = self.args;
        let (prepared, result, ann) = (run.prepared, run.result, run.ann);
        let output_size = prepared.output_size();
        let count = prepared.range.len();
        let mut dumps: Vec<Dump<'_>> = Vec::new();
        if let Some(path) = &args.dump_outputs {
            let array =
                Array3::from_shape_vec((result.checkpoints.len(), result.inputs, output_size), result.outputs.clone())?;
            dumps.push((path.clone(), Box::new(move |w| Ok(array.write_npy(w)?))));
        }
        if let Some(path) = &args.dump_ann {
            let array = Array2::from_shape_vec((count, output_size), ann.to_vec())?;
            dumps.push((path.clone(), Box::new(move |w| Ok(array.write_npy(w)?))));
        }
        write_all_atomically(dumps)?;

        // One input up close, for the report.
        let observation = match self.raster_population {
            Some(population) if prepared.range.contains(&args.raster_input) => {
                let network = prepared.network();
                let mut values = vec![0.0; network.input_size()];
                prepared.data.read(args.raster_input, &mut values).map_err(flat)?;
                let input: Vec<F> = values.into_iter().map(F::of).collect();
                let graph = &prepared.conversion.graph;
                Some(
                    observe_input::<F>(network, graph, run.config, population, args.raster_input, &input)
                        .map_err(flat)?,
                )
            }
            _ => None,
        };

        if args.fingerprint {
            outcome.network.fingerprint = Some(fingerprint(prepared.network()));
        }
        let slice = prepared.data.len();
        let slice = self.settings.plan.data.shard.map(|shard| super::shard::Slice::new(shard, &prepared.range, slice));
        if let Some(slice) = &slice {
            outcome.shard = Some(json!(slice));
        }
        if let Some(plan) = &args.merge {
            outcome.merged_from = Some(plan.directories());
        }
        if let Some(dir) = &args.report {
            let mut run_json = outcome.to_json();
            if let Some(ranges) = ranges_json(prepared, &self.settings.plan.settings, &result.checkpoints) {
                run_json["ranges"] = ranges;
            }
            let report_data = ReportData::build(report::Sources {
                run: run_json,
                network: prepared.network(),
                counters: &result.counters,
                checkpoints: &result.checkpoints,
                inputs: count as u64,
                ann_graph: &prepared.graph,
                accuracy: outcome.accuracy(),
                energy_model: self.settings.energy_model.clone(),
                conventions: args.conventions(),
                observation,
            });
            let mut files: Vec<(&str, Vec<u8>)> =
                report_data.render()?.into_iter().map(|(name, text)| (name, text.into_bytes())).collect();
            if let Some(slice) = slice {
                let [_, ann_time, snn_time] = run.times;
                let labels = prepared.labels.as_deref();
                let record =
                    super::shard::Record::new(slice, &prepared.provenance, labels, result, [ann_time, snn_time])?;
                files.extend(record.files(ann, result)?);
            }
            report::write_dir(dir, &files, args.force)?;
            outcome.report = Some(dir.display().to_string());
        }
        Ok(())
    }
}

/// Progress bars of the phases: calibration and ANN drawn once they have taken a second, the
/// SNN at once (on a terminal, without `--json`).
struct Bars {
    json: bool,
    bars: Mutex<Vec<(Phase, LateBar)>>,
}

impl Bars {
    fn new(json: bool) -> Self {
        Bars { json, bars: Mutex::new(Vec::new()) }
    }

    fn bar(&self, phase: Phase) -> Option<LateBar> {
        let bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        bars.iter().find(|(p, _)| *p == phase).map(|(_, bar)| bar.clone())
    }
}

impl Progress for Bars {
    fn start(&self, phase: Phase, total: usize) {
        let bar = match phase {
            Phase::Calibration => LateBar::new(total, "calibration", self.json),
            Phase::Ann => LateBar::new(total, "ANN", self.json),
            Phase::Snn => LateBar::at_once(total, "SNN", self.json),
        };
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        bars.retain(|(p, _)| *p != phase);
        bars.push((phase, bar));
    }

    fn advance(&self, phase: Phase, done: usize) {
        if let Some(bar) = self.bar(phase) {
            bar.inc(done);
        }
    }

    fn finish(&self, phase: Phase) {
        if let Some(bar) = self.bar(phase) {
            bar.finish();
        }
    }
}

/// A progress bar with rate and ETA on stderr when it is a terminal; hidden otherwise and with
/// `--json` (`json`).
pub(super) fn progress_bar(len: usize, what: &str, json: bool) -> ProgressBar {
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

    /// A bar drawn from the start.
    fn at_once(len: usize, what: &str, json: bool) -> Self {
        LateBar { bar: progress_bar(len, what, json), terminal: false }
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

pub(super) type Dump<'a> = (PathBuf, Box<dyn FnOnce(&mut BufWriter<File>) -> Result<()> + 'a>);

/// Writes every file to a temporary file in its own directory, then renames them all into place;
/// on any failure the temporary files are removed and no target file is touched.
pub(super) fn write_all_atomically(dumps: Vec<Dump<'_>>) -> Result<()> {
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

/// The table `signgd run` prints: a renderer of the outcome.
fn text(o: &Outcome) -> String {
    let mut out = String::new();
    let s = &o.settings;
    let _ = writeln!(out, "model        {} (input {:?}, {} outputs)", o.model, o.data.input_shape, o.network.outputs);
    let _ = writeln!(
        out,
        "data         {}: {} inputs{}",
        o.data.path,
        o.data.inputs,
        if o.data.scaled_from_u8 { ", uint8 scaled to [0,1]" } else { "" }
    );
    if let Some(classes) = &o.data.classes {
        let names = classes.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
        let more = if classes.len() > 8 { ", …" } else { "" };
        let preprocess = o.data.preprocess.as_deref().unwrap_or("none");
        let _ = writeln!(out, "classes      {} ({names}{more}); preprocess {preprocess}", classes.len());
    }
    let _ = match &o.data.labels {
        Some(path) => writeln!(out, "labels       {path}"),
        None => writeln!(out, "labels       none (no --labels given): accuracy not computed"),
    };
    let _ = writeln!(
        out,
        "settings     preset {}, schedule {}, encoder {}, gelu {}, neuron {}, precision {}, threads {}, relu norm {}",
        s.preset, s.schedule, s.encoder, s.gelu, s.neuron, s.precision, s.threads, s.relu_norm
    );
    if let Some(tuned) = &s.tuned {
        let _ = writeln!(out, "tuned        preset, schedule, encoder and gelu from {tuned} (signgd tune)");
    }
    let _ = writeln!(out, "calibration  {}", o.calibration);
    if let Some(files) = o.provenance["files"].as_object() {
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
    let n = &o.network;
    let _ =
        writeln!(out, "network      {} neuron populations, {} neurons, {} relays", n.populations, n.neurons, n.relays);
    if let Some(fingerprint) = &n.fingerprint {
        let _ = writeln!(out, "fingerprint  sha256 {fingerprint}");
    }
    let _ = match o.ann_accuracy {
        Some(a) => writeln!(out, "ANN accuracy {}{}", percent(a), report::interval_text(o.ann_accuracy_ci95)),
        None => writeln!(out, "ANN accuracy -"),
    };
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:>7} | {:>8} | {:>13} | {:>12} | {:>10} | {:>10}",
        "T", "SNN acc", "95% CI", "agree w/ ANN", "McNemar p", "mean |Δ|"
    );
    let _ = writeln!(out, "{:->7}-+-{:->8}-+-{:->13}-+-{:->12}-+-{:->10}-+-{:->10}", "", "", "", "", "", "");
    for row in &o.checkpoints {
        let _ = writeln!(
            out,
            "{:>7} | {:>8} | {:>13} | {:>12} | {:>10} | {:>10.3e}",
            row.timesteps,
            row.snn_accuracy.map_or("-".to_string(), percent),
            report::interval_range(row.snn_accuracy_ci95),
            percent(row.agreement),
            row.mcnemar_vs_ann.map_or("-".to_string(), |t| report::p_value_text(t.p_value)),
            row.mean_abs_diff.unwrap_or(f64::NAN)
        );
    }
    if o.ann_accuracy.is_some() {
        let _ = writeln!(
            out,
            "             (95% Wilson intervals over {} inputs; McNemar's exact test of SNN against ANN accuracy)",
            o.data.inputs
        );
    }
    let _ = writeln!(out);
    let t = &o.time_s;
    let _ = writeln!(
        out,
        "time         conversion {:.2} s, ANN {:.2} s, SNN {:.2} s ({:.1} images/s)",
        t.conversion,
        t.ann,
        t.snn,
        o.images_per_s.unwrap_or(f64::INFINITY)
    );
    if let Some(shard) = &o.shard {
        if let Ok(slice) = serde_json::from_value::<super::shard::Slice>(shard.clone()) {
            let _ = writeln!(out, "shard        {slice}");
        }
    }
    if let Some(dirs) = &o.merged_from {
        let _ = writeln!(out, "merged       {} shards: {}", dirs.len(), dirs.join(", "));
    }
    if let Some(dir) = &o.report {
        let dir = Path::new(dir);
        let _ = writeln!(out, "report       {} (open {})", dir.display(), dir.join("report.html").display());
    }
    out
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

/// Per population of calibrated dynamics, its scale and the fraction of its neurons whose target
/// on some calibration input lies beyond the bound Σ η_t of the last checkpoint (saturation);
/// `None` for the reference preset, which records no ranges.
fn ranges_json(
    prepared: &Prepared,
    settings: &signgd::pipeline::Settings,
    checkpoints: &[usize],
) -> Option<serde_json::Value> {
    let ranges = &prepared.conversion.ranges;
    let (Some(&last), Neuron::SignGd { schedule, .. }) = (checkpoints.last(), &settings.neuron) else { return None };
    if ranges.is_empty() {
        return None;
    }
    let bound: f64 = schedule.steps(last).ok()?.iter().sum();
    let rows: Vec<serde_json::Value> = ranges
        .iter()
        .map(|r| {
            json!({
                "population": r.name,
                "scaled": r.scaled,
                "scale_min": r.scale.0,
                "scale_max": r.scale.1,
                "saturated_fraction": r.saturated(bound),
            })
        })
        .collect();
    Some(json!({ "bound": bound, "timesteps": last, "populations": rows }))
}
