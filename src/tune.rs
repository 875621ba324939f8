//! Choosing the dynamics for a target number of timesteps: the step-size schedule (and, where
//! the network has GELU neurons, their target function) that makes the spiking network agree best
//! with its ANN at the requested checkpoints, judged on calibration inputs the conversion did not
//! see.
//!
//! The calibration set is split: its first inputs calibrate the conversion (ReLU maxima, or every
//! population's range with [`Preset::Calibrated`]), its last [`TuneOptions::held_out`] inputs are
//! simulated under every candidate. The conversion does not depend on the schedule, so it is done
//! once per GELU target and each candidate costs one simulation of the held-out inputs. Candidates
//! are ranked by their mean agreement with the ANN's class over the checkpoints; agreements within
//! one standard error of the best count as tied, and among those the smallest mean absolute
//! difference of the outputs from the ANN's wins (see [`rank`]). The ranking, like every
//! simulation, does not depend on the number of threads.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::convert::{convert, CalibrationSet, ConvertOptions, Preset, ReluNorm};
use crate::data::{DataError, InputSource, Span};
use crate::engine::SimConfig;
use crate::model::{Graph, Op};
use crate::pipeline::{gelu_name, Neuron, Precision, Settings};
use crate::provenance::FileDigest;
use crate::real::Real;
use crate::runner::{agreement, evaluate_ann, mean_abs_diff, simulate, RunError};
use crate::snn::{EncoderKind, GeluTarget, Schedule};

/// Step sizes η0 of the default candidates.
pub const DEFAULT_ETA0: [f64; 11] = [0.1, 0.15, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0];

/// Decay factors γ of the default candidates.
pub const DEFAULT_GAMMA: [f64; 7] = [0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98];

/// The default candidate schedules: every `exp:η0:γ` of [`DEFAULT_ETA0`] × [`DEFAULT_GAMMA`].
pub fn default_schedules() -> Vec<String> {
    DEFAULT_ETA0.iter().flat_map(|eta0| DEFAULT_GAMMA.iter().map(move |gamma| format!("exp:{eta0}:{gamma}"))).collect()
}

/// What to tune and on what.
#[derive(Clone, Debug)]
pub struct TuneOptions {
    /// The checkpoints whose agreement is maximised.
    pub checkpoints: Vec<usize>,
    /// The conversion's preset.
    pub preset: Preset,
    /// ReLU normalisation's maxima.
    pub relu_norm: ReluNorm,
    /// The input encoder of every candidate.
    pub encoder: EncoderKind,
    /// The candidate schedules, as `--schedule` spells them.
    pub schedules: Vec<String>,
    /// The GELU targets tried (only the first when the network has no GELU).
    pub gelu: Vec<GeluTarget>,
    /// Number of calibration inputs held out (the last ones) to judge the candidates.
    pub held_out: usize,
    /// Worker threads (the result does not depend on it).
    pub threads: usize,
}

/// One candidate's result on the held-out inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// The schedule, as `--schedule` spells it.
    pub schedule: String,
    /// The GELU target (`sigmoid` or `erf`).
    pub gelu: String,
    /// Agreement with the ANN's class at each checkpoint.
    pub agreement: Vec<f64>,
    /// Mean absolute difference of the outputs from the ANN's at each checkpoint.
    pub mean_abs_diff: Vec<f64>,
}

impl Trial {
    /// Mean agreement over the checkpoints (the first key of the ranking).
    pub fn score(&self) -> f64 {
        mean(&self.agreement)
    }

    /// Mean of the mean absolute differences over the checkpoints (the second key).
    pub fn error(&self) -> f64 {
        mean(&self.mean_abs_diff)
    }
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// The outcome of tuning: every candidate, best first.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// The trials, ranked.
    pub trials: Vec<Trial>,
    /// Calibration inputs the conversion was calibrated on.
    pub fitted: usize,
    /// Calibration inputs the candidates were judged on.
    pub held_out: usize,
}

/// Why tuning stopped.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    /// The options cannot be used.
    #[error("{0}")]
    Options(String),
    /// The model does not convert.
    #[error("cannot convert: {0}")]
    Convert(#[from] crate::convert::ConvertError),
    /// A simulation or the ANN evaluation failed.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Tunes the dynamics of `graph` on `calibration` (see the module documentation); `progress(n)`
/// hears of simulated inputs (the total is [`TuneOptions::held_out`] per candidate).
pub fn tune<F: Real>(
    graph: &Graph,
    calibration: Arc<dyn InputSource>,
    options: &TuneOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Tuning, TuneError> {
    let total = calibration.len();
    if options.held_out == 0 || options.held_out >= total {
        return Err(TuneError::Options(format!(
            "{} held-out input(s) out of {total} calibration input(s): hold out at least 1 and keep at least 1 to calibrate on (give more calibration inputs)",
            options.held_out
        )));
    }
    if options.checkpoints.is_empty() || options.schedules.is_empty() || options.gelu.is_empty() {
        return Err(TuneError::Options("give at least one checkpoint, schedule and GELU target".into()));
    }
    let precision = if F::NAME == "f64" { Precision::F64 } else { Precision::F32 };
    let schedules = options
        .schedules
        .iter()
        .map(|text| {
            let schedule = Schedule::parse(text).map_err(|e| TuneError::Options(format!("schedule `{text}`: {e}")))?;
            let settings = Settings {
                checkpoints: options.checkpoints.clone(),
                neuron: Neuron::SignGd {
                    schedule: schedule.clone(),
                    schedule_text: text.clone(),
                    encoder: options.encoder,
                },
                precision,
                ..Settings::default()
            };
            settings.check().map_err(|e| TuneError::Options(e.to_string()))?;
            Ok((text.clone(), schedule))
        })
        .collect::<Result<Vec<_>, TuneError>>()?;
    let fitted = total - options.held_out;
    let fit: Arc<dyn InputSource> = Arc::new(Span::first(calibration.clone(), fitted));
    let held = Span::new(calibration, fitted..total);
    let load = |i: usize, buffer: &mut [F]| -> Result<(), DataError> {
        let mut values = vec![0.0; buffer.len()];
        held.read(i, &mut values)?;
        for (b, v) in buffer.iter_mut().zip(values) {
            *b = F::of(v);
        }
        Ok(())
    };
    let threads = options.threads.max(1);
    let ann = evaluate_ann::<F, _>(graph, held.len(), load, threads, &|_| {})?;
    let has_gelu = graph.nodes.iter().any(|n| matches!(n.op, Op::Gelu { .. }));
    let gelus = if has_gelu { &options.gelu[..] } else { &options.gelu[..1] };
    let mut trials = Vec::new();
    for &gelu in gelus {
        let conversion = convert(
            graph,
            &ConvertOptions {
                gelu,
                calibration: CalibrationSet::new(fit.clone()),
                threads,
                progress: None,
                relu_norm: options.relu_norm,
                preset: options.preset,
            },
        )?;
        let output_size = conversion.network.output_size();
        for (text, schedule) in &schedules {
            let config = SimConfig {
                schedule: schedule.clone(),
                encoder: options.encoder,
                ..SimConfig::reference(options.checkpoints.clone())
            };
            let result = simulate::<F, _>(&conversion.network, &config, held.len(), load, threads, progress)?;
            let (agreement, mean_abs_diff) = (0..result.checkpoints.len())
                .map(|k| {
                    let outputs = result.at_checkpoint(k);
                    (agreement(outputs, &ann, output_size), mean_abs_diff(outputs, &ann))
                })
                .unzip();
            trials.push(Trial { schedule: text.clone(), gelu: gelu_name(gelu).into(), agreement, mean_abs_diff });
        }
    }
    rank(&mut trials, held.len());
    Ok(Tuning { trials, fitted, held_out: held.len() })
}

/// Sorts `trials`, judged on `inputs` held-out inputs, best first. Agreements within one
/// standard error of the best (at least one input's worth, 1/`inputs`) are differences the
/// held-out inputs cannot resolve: those candidates count as tied and the smallest mean output
/// error ranks first among them (the one-standard-error rule of model selection). The others
/// follow by mean agreement, then error. Ties keep the order given; NaN errors rank last.
pub fn rank(trials: &mut [Trial], inputs: usize) {
    let best = trials.iter().map(Trial::score).fold(0.0f64, f64::max);
    let n = inputs.max(1) as f64;
    let tolerance = (best * (1.0 - best) / n).sqrt().max(1.0 / n);
    // A hair below the bound, so that an agreement one input below the best counts as tied
    // despite rounding.
    let tied = |t: &Trial| t.score() >= best - tolerance * (1.0 + 1e-9);
    let error = |t: &Trial| if t.error().is_nan() { f64::INFINITY } else { t.error() };
    trials.sort_by(|a, b| {
        tied(b).cmp(&tied(a)).then_with(|| {
            if tied(a) && tied(b) {
                error(a).total_cmp(&error(b))
            } else {
                b.score().total_cmp(&a.score()).then_with(|| error(a).total_cmp(&error(b)))
            }
        })
    });
}

/// The settings `signgd tune` writes and `signgd run --tuned` reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TunedSettings {
    /// Always [`TunedSettings::KIND`]: tells the file from other JSON files.
    pub kind: String,
    /// The layout's version.
    pub version: u32,
    /// `reference` or `calibrated`.
    pub preset: String,
    /// The chosen schedule, as `--schedule` spells it.
    pub schedule: String,
    /// The encoder, as `--encoder` spells it.
    pub encoder: String,
    /// The GELU target, as `--gelu` spells it.
    pub gelu: String,
    /// The checkpoints tuned for.
    pub timesteps: Vec<usize>,
    /// The model's path, size and SHA-256.
    pub model: FileDigest,
    /// Where the calibration inputs came from, in words.
    pub calibration: String,
    /// Calibration inputs the conversion was calibrated on while tuning.
    pub fitted: usize,
    /// Calibration inputs the candidates were judged on.
    pub held_out: usize,
    /// Every candidate, best first.
    pub trials: Vec<Trial>,
}

impl TunedSettings {
    /// The value of [`TunedSettings::kind`].
    pub const KIND: &'static str = "signgd-tuned-settings";

    /// The current layout version.
    pub const VERSION: u32 = 1;

    /// Reads and checks a settings file written by `signgd tune`.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let settings: TunedSettings = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is not a settings file written by `signgd tune` ({e}); run `signgd tune` to make one",
                path.display()
            )
        })?;
        if settings.kind != Self::KIND || settings.version != Self::VERSION {
            return Err(format!(
                "{} holds `{}` version {}, not `{}` version {}; run `signgd tune` again",
                path.display(),
                settings.kind,
                settings.version,
                Self::KIND,
                Self::VERSION
            ));
        }
        Schedule::parse(&settings.schedule)
            .map_err(|e| format!("{}: schedule `{}`: {e}", path.display(), settings.schedule))?;
        Ok(settings)
    }
}

impl fmt::Display for Trial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let agreement: Vec<String> = self.agreement.iter().map(|a| format!("{:.1}", 100.0 * a)).collect();
        write!(
            f,
            "{} gelu {}: agreement {} %, mean |Δ| {:.3e}",
            self.schedule,
            self.gelu,
            agreement.join(" / "),
            self.error()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(schedule: &str, agreement: &[f64], error: f64) -> Trial {
        Trial {
            schedule: schedule.into(),
            gelu: "sigmoid".into(),
            agreement: agreement.to_vec(),
            mean_abs_diff: vec![error; agreement.len()],
        }
    }

    #[test]
    fn agreements_the_held_out_inputs_cannot_tell_apart_are_ranked_by_error() {
        // 100 inputs: one standard error at 97 % is 1.7 points.
        let mut trials = vec![
            trial("a", &[0.90, 0.90], 0.1),
            trial("b", &[0.95, 0.97], 0.5),
            trial("c", &[0.97, 0.97], 0.4),
            trial("d", &[0.96, 0.96], 0.3),
            trial("e", &[0.95, 0.95], 0.05),
            trial("f", &[0.97, 0.97], f64::NAN),
            trial("g", &[0.96, 0.96], 0.3),
        ];
        rank(&mut trials, 100);
        let order: Vec<&str> = trials.iter().map(|t| t.schedule.as_str()).collect();
        // c, d, g and f lie within 1.7 points of 97 %; b (96 %) too; a and e do not.
        assert_eq!(order, ["d", "g", "c", "b", "f", "e", "a"]);
    }

    #[test]
    fn one_input_is_the_smallest_difference_that_counts() {
        let mut trials = vec![trial("a", &[1.0], 0.9), trial("b", &[0.99], 0.1), trial("c", &[0.98], 0.01)];
        rank(&mut trials, 100);
        let order: Vec<&str> = trials.iter().map(|t| t.schedule.as_str()).collect();
        assert_eq!(order, ["b", "a", "c"]);
    }

    #[test]
    fn default_candidates_parse_and_cover_the_grid() {
        let schedules = default_schedules();
        assert_eq!(schedules.len(), DEFAULT_ETA0.len() * DEFAULT_GAMMA.len());
        for s in &schedules {
            Schedule::parse(s).unwrap();
        }
        assert!(schedules.contains(&"exp:0.3:0.9".to_string()));
    }
}
