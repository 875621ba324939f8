//! The result of a run as one typed, serialisable record: what `signgd run --json` prints, the
//! `run` section of `report.json`, and what the Python package returns.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::real::Real;
use crate::report;
use crate::runner::{self, SimulationResult};
use crate::snn::Network;
use crate::stats::significance::{mcnemar, wilson, Interval, McNemar};

use super::plan::{gelu_name, preset_name, relu_norm_name, Settings};

/// Version of the [`Outcome`] schema; raised when a field changes meaning or is removed.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything a run found, in the order `signgd run --json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The ONNX model's path.
    pub model: String,
    /// The tool's version and the digest of every input file, by role.
    pub provenance: serde_json::Value,
    /// The inputs evaluated.
    pub data: DataSummary,
    /// The settings.
    pub settings: SettingsSummary,
    /// Where the calibration inputs came from.
    pub calibration: String,
    /// The converted network's size.
    pub network: NetworkSize,
    /// What each conversion pass did.
    pub conversion_notes: Vec<String>,
    /// The ANN's accuracy (None without labels).
    pub ann_accuracy: Option<f64>,
    /// Its 95 % Wilson interval.
    pub ann_accuracy_ci95: Option<Interval>,
    /// The SNN at every checkpoint.
    pub checkpoints: Vec<Checkpoint>,
    /// Seconds spent per phase.
    pub time_s: Times,
    /// Inputs simulated per second (None when too fast to time).
    pub images_per_s: Option<f64>,
    /// The slice of the inputs this run evaluated, when it is one shard of several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<serde_json::Value>,
    /// The shard report directories a merged run took its results from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_from: Option<Vec<String>>,
    /// The report directory written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
}

/// The inputs evaluated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataSummary {
    /// The data file or image folder.
    pub path: String,
    /// Inputs evaluated (this shard's, or all after the limit).
    pub inputs: usize,
    /// The network's input shape.
    pub input_shape: Vec<usize>,
    /// Whether uint8 values were scaled to [0, 1].
    pub scaled_from_u8: bool,
    /// The label file (or the image folder whose classes are the labels).
    pub labels: Option<String>,
    /// The classes of an image folder, in label order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    /// The preprocessing of an image folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<String>,
}

/// The settings as reports name them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SettingsSummary {
    /// Checkpoints.
    pub timesteps: Vec<usize>,
    /// Step-size schedule.
    pub schedule: String,
    /// Input encoder.
    pub encoder: String,
    /// GELU target.
    pub gelu: String,
    /// `signgd` or `if`.
    pub neuron: String,
    /// `f32` or `f64`.
    pub precision: String,
    /// Worker threads.
    pub threads: usize,
    /// ReLU normalisation.
    pub relu_norm: String,
    /// `reference` or `calibrated` dynamics.
    #[serde(default = "reference_preset")]
    pub preset: String,
    /// The `signgd tune` file the dynamics came from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuned: Option<String>,
}

fn reference_preset() -> String {
    "reference".into()
}

impl SettingsSummary {
    /// The names of `settings`, simulated in `precision`.
    pub fn of(settings: &Settings, precision: &str) -> Self {
        SettingsSummary {
            timesteps: settings.checkpoints.clone(),
            schedule: settings.schedule_text(),
            encoder: settings.encoder_text().into(),
            gelu: gelu_name(settings.gelu).into(),
            neuron: settings.neuron_text().into(),
            precision: precision.into(),
            threads: settings.threads,
            relu_norm: relu_norm_name(settings.relu_norm).into(),
            preset: preset_name(settings.preset).into(),
            tuned: settings.tuned.clone(),
        }
    }
}

/// The converted network's size, relays apart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSize {
    /// Populations with neurons.
    pub populations: usize,
    /// Neurons (relays excluded).
    pub neurons: usize,
    /// Relay populations (real values, no neurons).
    pub relays: usize,
    /// Output values per input.
    pub outputs: usize,
    /// SHA-256 of every constant of the network ([`fingerprint`]): equal exactly when two
    /// conversions made the same network. Computed only when asked for (it serialises every
    /// weight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

impl NetworkSize {
    /// The size of `network`.
    pub fn of(network: &Network) -> Self {
        NetworkSize {
            populations: network.populations.len() - network.relays(),
            neurons: network.neurons(),
            relays: network.relays(),
            outputs: network.output_size(),
            fingerprint: None,
        }
    }
}

/// The SNN at one checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Steps simulated.
    pub timesteps: usize,
    /// Fraction of inputs classified correctly (None without labels).
    pub snn_accuracy: Option<f64>,
    /// Its 95 % Wilson interval.
    pub snn_accuracy_ci95: Option<Interval>,
    /// McNemar's exact test of the SNN against the ANN on the same inputs.
    pub mcnemar_vs_ann: Option<McNemar>,
    /// Fraction of inputs where SNN and ANN predict the same class.
    pub agreement: f64,
    /// Mean |SNN output − ANN output| (None when not finite).
    pub mean_abs_diff: Option<f64>,
    /// Spikes of every population, summed over the inputs.
    pub spikes: u64,
    /// Synaptic events of every population, summed over the inputs.
    pub synaptic_events: u64,
}

/// Seconds per phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Times {
    /// Conversion, calibration included.
    pub conversion: f64,
    /// ANN evaluation.
    pub ann: f64,
    /// SNN simulation.
    pub snn: f64,
}

/// What an [`Outcome`] is assembled from.
pub struct Results<'a, F> {
    /// The model's path.
    pub model: &'a Path,
    /// Version and digests.
    pub provenance: serde_json::Value,
    /// The inputs evaluated.
    pub data: DataSummary,
    /// Where the calibration inputs came from.
    pub calibration: String,
    /// The settings.
    pub settings: &'a Settings,
    /// The converted network.
    pub network: &'a Network,
    /// What the conversion passes did.
    pub notes: &'a [String],
    /// Labels of the inputs evaluated.
    pub labels: Option<&'a [usize]>,
    /// ANN outputs `[input][output]`.
    pub ann: &'a [F],
    /// SNN outputs and counters.
    pub result: &'a SimulationResult<F>,
    /// Conversion, ANN and SNN time.
    pub times: [Duration; 3],
}

impl Outcome {
    /// Derives accuracies, intervals, tests and totals from the outputs.
    pub fn assemble<F: Real>(r: Results<'_, F>) -> Self {
        let output_size = r.network.output_size();
        let correct = |outputs: &[F]| -> Option<Vec<bool>> {
            let labels = r.labels?;
            Some(runner::classes(outputs, output_size).iter().zip(labels).map(|(c, l)| c == l).collect())
        };
        let ann_correct = correct(r.ann);
        let checkpoints =
            r.result
                .checkpoints
                .iter()
                .enumerate()
                .map(|(k, &timesteps)| {
                    let outputs = r.result.at_checkpoint(k);
                    let (spikes, synaptic_events) = r.result.counters.at_checkpoints.get(k).map_or((0, 0), |c| {
                        (c.iter().map(|a| a.spikes).sum(), c.iter().map(|a| a.synaptic_events).sum())
                    });
                    let snn_correct = correct(outputs);
                    let mean_abs_diff = runner::mean_abs_diff(outputs, r.ann);
                    Checkpoint {
                        timesteps,
                        snn_accuracy: r.labels.map(|l| runner::accuracy(outputs, output_size, l)),
                        snn_accuracy_ci95: snn_correct.as_deref().and_then(accuracy_ci95),
                        mcnemar_vs_ann: snn_correct.as_ref().zip(ann_correct.as_ref()).map(|(s, a)| mcnemar(s, a)),
                        agreement: runner::agreement(outputs, r.ann, output_size),
                        mean_abs_diff: mean_abs_diff.is_finite().then_some(mean_abs_diff),
                        spikes,
                        synaptic_events,
                    }
                })
                .collect();
        let [conversion, ann, snn] = r.times.map(|t| t.as_secs_f64());
        let images_per_s = if snn > 0.0 { r.data.inputs as f64 / snn } else { f64::INFINITY };
        Outcome {
            schema_version: SCHEMA_VERSION,
            model: r.model.display().to_string(),
            provenance: r.provenance,
            settings: SettingsSummary::of(r.settings, F::NAME),
            data: r.data,
            calibration: r.calibration,
            network: NetworkSize::of(r.network),
            conversion_notes: r.notes.to_vec(),
            ann_accuracy: r.labels.map(|l| runner::accuracy(r.ann, output_size, l)),
            ann_accuracy_ci95: ann_correct.as_deref().and_then(accuracy_ci95),
            checkpoints,
            time_s: Times { conversion, ann, snn },
            images_per_s: images_per_s.is_finite().then_some(images_per_s),
            shard: None,
            merged_from: None,
            report: None,
        }
    }

    /// The accuracy section of a report.
    pub fn accuracy(&self) -> report::Accuracy {
        report::Accuracy {
            ann: self.ann_accuracy,
            ann_ci95: self.ann_accuracy_ci95,
            checkpoints: self
                .checkpoints
                .iter()
                .map(|c| report::AccuracyRow {
                    timesteps: c.timesteps,
                    snn_accuracy: c.snn_accuracy,
                    snn_accuracy_ci95: c.snn_accuracy_ci95,
                    mcnemar_vs_ann: c.mcnemar_vs_ann,
                    agreement: c.agreement,
                    mean_abs_diff: c.mean_abs_diff,
                })
                .collect(),
        }
    }

    /// The outcome as a JSON value (the `run` section of `report.json`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// The 95 % Wilson interval of the fraction of `correct` inputs.
fn accuracy_ci95(correct: &[bool]) -> Option<Interval> {
    wilson(correct.iter().filter(|&&ok| ok).count(), correct.len())
}

/// SHA-256 (lowercase hexadecimal) of the network's every population, operand, weight and
/// constant, as its serialised form spells them (floats exactly, in their shortest round-trip
/// form): two networks have the same fingerprint exactly when they are the same network. It
/// takes time and memory in proportion to the weights (each synapse block is copied as `f64`
/// while it is hashed).
pub fn fingerprint(network: &Network) -> String {
    /// Feeds what is written into the hash, so the serialised form is never held in memory.
    struct Hashing(Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.update(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut hashing = Hashing(Sha256::new());
    // Serialising plain data into a writer that cannot fail does not fail; were it to, the
    // fingerprint would say so rather than pass for a network's.
    match serde_json::to_writer(&mut hashing, network) {
        Ok(()) => hashing.0.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        Err(e) => format!("unavailable: {e}"),
    }
}
