//! `signgd tune`: choose the schedule (and GELU target) for a target number of timesteps on
//! held-out calibration inputs, and write the settings `signgd run --tuned` reads.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use signgd::data::{InputSource, Span};
use signgd::pipeline::{encoder_name, model_and_calibration, parse_timesteps, preset_name};
use signgd::provenance::digest;
use signgd::tune::{default_schedules, tune, TuneOptions, TunedSettings, Tuning, DEFAULT_ETA0, DEFAULT_GAMMA};

use super::plan::{Labels, Sources};
use super::run::{check_output_path, progress_bar, write_all_atomically, EncoderArg, GeluArg, PresetArg, ReluNormArg};

/// Options of `signgd tune`.
#[derive(Args, Clone, Debug)]
pub struct TuneArgs {
    /// The ONNX model (default: the bundled ConvNeXt fixture).
    #[arg(long, value_name = "FILE.onnx")]
    model: Option<PathBuf>,
    /// Calibration inputs: the first ones calibrate the conversion, the last --held-out ones judge
    /// the candidates (default: the first 256 inputs of --data). Give the file `run` will get as
    /// --calibration.
    #[arg(long, value_name = "FILE")]
    calibration: Option<PathBuf>,
    /// The data whose first 256 inputs calibrate when --calibration is not given (default: the
    /// bundled Fashion-MNIST test subset), as `run --data` reads it.
    #[arg(long, value_name = "FILE")]
    data: Option<PathBuf>,
    /// Use only the first N calibration inputs.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Preprocessing of an image folder (as `run --preprocess`).
    #[arg(long, value_enum, default_value_t = super::run::PreprocessArg::None)]
    preprocess: super::run::PreprocessArg,
    /// The checkpoints to tune for: their mean agreement with the ANN is maximised (e.g. `32`
    /// or `32,64`).
    #[arg(long, value_name = "LIST")]
    timesteps: String,
    /// The dynamics tuned (as `run --preset`).
    #[arg(long, value_enum, default_value_t = PresetArg::Calibrated)]
    preset: PresetArg,
    /// Input encoder of every candidate (default: the preset's).
    #[arg(long, value_enum)]
    encoder: Option<EncoderArg>,
    /// ReLU normalisation's maxima (as `run --relu-norm`).
    #[arg(long, value_enum, default_value_t = ReluNormArg::Element)]
    relu_norm: ReluNormArg,
    /// Candidate schedules, comma-separated (`exp:0.3:0.9,exp:0.6:0.95`; default: every
    /// exp:η0:γ with η0 in 0.1 … 3 and γ in 0.8 … 0.98, 77 candidates).
    #[arg(long, value_name = "LIST")]
    schedules: Option<String>,
    /// GELU targets tried when the network has GELU neurons (comma-separated).
    #[arg(long, value_name = "LIST", value_enum, value_delimiter = ',', default_values_t = [GeluArg::Sigmoid, GeluArg::Erf])]
    gelu: Vec<GeluArg>,
    /// Calibration inputs held out to judge the candidates (default: a quarter of them).
    #[arg(long, value_name = "N")]
    held_out: Option<usize>,
    /// Where to write the chosen settings (JSON; read by `signgd run --tuned FILE`).
    #[arg(long, value_name = "FILE.json")]
    out: PathBuf,
    /// Worker threads (default: the available parallelism; the choice does not depend on it).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Print every candidate's figures as JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Largest number of tensor elements the model may hold (as `run`).
    #[arg(long, value_name = "N", default_value_t = signgd::model::reader::MAX_TOTAL_ELEMENTS)]
    max_model_elements: usize,
}

/// Candidates shown in the table.
const SHOWN: usize = 10;

/// Runs the command.
pub fn run(args: TuneArgs) -> Result<ExitCode> {
    let threads = super::worker_threads(args.threads)?;
    let checkpoints = parse_timesteps(&args.timesteps)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("--timesteps `{}`", args.timesteps))?;
    if args.limit == Some(0) {
        bail!("--limit 0: give at least 2 calibration inputs");
    }
    let gelu = args.gelu.iter().map(|&g| g.into()).collect();
    let schedules = match &args.schedules {
        Some(list) => list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        None => default_schedules(),
    };
    check_output_path(&args.out).context("--out")?;
    let (preset, _, preset_encoder) = args.preset.defaults();
    let encoder = args.encoder.unwrap_or(preset_encoder).kind();

    let sources = Sources {
        model: args.model.as_deref(),
        max_model_elements: Some(args.max_model_elements),
        data: args.data.as_deref(),
        calibration: args.calibration.as_deref(),
        preprocess: args.preprocess.into(),
        ..Sources::default()
    };
    let plan = sources.plan(Labels::Unused, signgd::pipeline::Settings { threads, ..Default::default() })?;
    let (graph, calibration, calibration_source) = model_and_calibration(&plan).map_err(|e| anyhow::anyhow!("{e}"))?;
    let calibration: Arc<dyn InputSource> = match args.limit {
        Some(limit) => Arc::new(Span::first(calibration, limit)),
        None => calibration,
    };
    let calibration_source = match args.limit {
        Some(_) => format!("first {} of {calibration_source}", calibration.len()),
        None => calibration_source,
    };
    let held_out = args.held_out.unwrap_or(calibration.len() / 4);
    let options = TuneOptions {
        checkpoints: checkpoints.clone(),
        preset,
        relu_norm: args.relu_norm.into(),
        encoder,
        schedules,
        gelu,
        held_out,
        threads,
    };
    let candidates = options.schedules.len() * options.gelu.len();
    let bar = progress_bar(candidates * held_out, "tuning", args.json);
    let tuning = tune::<f32>(&graph, calibration, &options, &|n| bar.inc(n as u64))
        .with_context(|| format!("tuning {}", plan.model.path.display()))?;
    bar.finish_and_clear();
    let Some(best) = tuning.trials.first() else { bail!("no candidate was simulated") };

    let model = digest(&plan.model.path).with_context(|| format!("reading {}", plan.model.path.display()))?;
    let settings = TunedSettings {
        kind: TunedSettings::KIND.into(),
        version: TunedSettings::VERSION,
        preset: preset_name(preset).into(),
        schedule: best.schedule.clone(),
        encoder: encoder_name(encoder).into(),
        gelu: best.gelu.clone(),
        timesteps: checkpoints,
        model,
        calibration: calibration_source,
        fitted: tuning.fitted,
        held_out: tuning.held_out,
        trials: tuning.trials.clone(),
    };
    let json = serde_json::to_string_pretty(&settings)? + "\n";
    let file = json.clone();
    write_all_atomically(vec![(args.out.clone(), Box::new(move |w| Ok(w.write_all(file.as_bytes())?)))])?;
    let text = if args.json { json } else { table(&settings, &tuning, &args) };
    super::run::print_out(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// The summary `signgd tune` prints: the best candidates and the file written.
fn table(settings: &TunedSettings, tuning: &Tuning, args: &TuneArgs) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "model        {}", settings.model.path);
    let _ = writeln!(out, "calibration  {}", settings.calibration);
    let _ = writeln!(
        out,
        "split        {} inputs calibrate the conversion, the last {} judge {} candidate(s) (preset {}, encoder {}){}",
        tuning.fitted,
        tuning.held_out,
        tuning.trials.len(),
        settings.preset,
        settings.encoder,
        if args.schedules.is_none() {
            format!("; schedules exp:η0:γ, η0 in {DEFAULT_ETA0:?}, γ in {DEFAULT_GAMMA:?}")
        } else {
            String::new()
        }
    );
    let steps: Vec<String> = settings.timesteps.iter().map(|t| format!("T={t}")).collect();
    let _ = writeln!(out, "\n rank | schedule         | gelu    | agreement % at {} | mean |Δ|", steps.join(" / "));
    for (i, t) in tuning.trials.iter().take(SHOWN).enumerate() {
        let agreement: Vec<String> = t.agreement.iter().map(|a| format!("{:.1}", 100.0 * a)).collect();
        let _ = writeln!(
            out,
            " {:>4} | {:<16} | {:<7} | {:<w$} | {:.3e}",
            i + 1,
            t.schedule,
            t.gelu,
            agreement.join(" / "),
            t.error(),
            w = 15 + steps.join(" / ").len()
        );
    }
    let _ = writeln!(
        out,
        "\nchosen       --preset {} --schedule {} --encoder {} --gelu {}",
        settings.preset, settings.schedule, settings.encoder, settings.gelu
    );
    let _ = writeln!(out, "written      {} (use: signgd run --tuned {} …)", args.out.display(), args.out.display());
    out
}

/// A tuned settings file, shared by the commands that read one.
pub(super) fn read_tuned(path: &std::path::Path) -> Result<TunedSettings> {
    TunedSettings::read(path).map_err(|e| anyhow::anyhow!("{e}")).context("--tuned")
}
