//! What a run is made of: the model, the data, the calibration inputs and the settings, typed
//! and checked, independent of how they were asked for (command line, Python, a program).

use std::path::PathBuf;

use crate::convert::{Preset, ReluNorm};
use crate::engine::SimConfig;
use crate::model::reader::ReadLimits;
use crate::shard::Shard;
use crate::snn::{EncoderKind, GeluTarget, Schedule};

use super::PipelineError;

/// Largest number of timesteps accepted.
pub const MAX_TIMESTEPS: usize = 1_000_000;
/// Inputs of the data used for ReLU normalisation when no calibration file is given.
pub const CALIBRATION_FROM_DATA: usize = 256;

/// One run: which network is converted from what, and how it is simulated.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The ONNX model.
    pub model: ModelSpec,
    /// The inputs evaluated (and their labels).
    pub data: DataSpec,
    /// The inputs of ReLU normalisation.
    pub calibration: CalibrationSpec,
    /// Conversion and simulation settings.
    pub settings: Settings,
}

/// The ONNX model and the reader's limits.
#[derive(Clone, Debug)]
pub struct ModelSpec {
    /// The ONNX file.
    pub path: PathBuf,
    /// Largest tensors the reader accepts.
    pub limits: ReadLimits,
}

/// The inputs and their labels.
#[derive(Clone, Debug)]
pub struct DataSpec {
    /// An array file (.npy, .npz, IDX, gzip-compressed) or an image folder `DIR/CLASS/IMAGE`.
    pub path: PathBuf,
    /// A label file; `None` for an image folder takes its classes, for an array file gives no
    /// labels (no accuracy).
    pub labels: Option<PathBuf>,
    /// Only the first `limit` inputs (and labels).
    pub limit: Option<usize>,
    /// How the images of a folder become inputs.
    pub preprocess: ImagePreprocess,
    /// Only this slice of the inputs is evaluated.
    pub shard: Option<Shard>,
}

/// How images of a folder become inputs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImagePreprocess {
    /// The preset.
    pub preset: PreprocessPreset,
    /// Per-channel mean replacing the preset's.
    pub mean: Option<Vec<f64>>,
    /// Per-channel standard deviation replacing the preset's.
    pub std: Option<Vec<f64>>,
}

/// The preprocessing presets of image folders.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PreprocessPreset {
    /// Pixel values / 255; images must have the model's size.
    #[default]
    None,
    /// torchvision's ImageNet evaluation transform (resize, centre crop, mean and std).
    Imagenet,
}

impl PreprocessPreset {
    /// The preset's name (`none`, `imagenet`).
    pub fn name(self) -> &'static str {
        match self {
            PreprocessPreset::None => "none",
            PreprocessPreset::Imagenet => "imagenet",
        }
    }
}

/// Where the calibration inputs come from.
#[derive(Clone, Debug, PartialEq)]
pub enum CalibrationSpec {
    /// Every input of this file (preprocessed as the data are).
    File(PathBuf),
    /// The first inputs of the data, up to this many, however few are evaluated.
    FirstOfData(usize),
}

impl Default for CalibrationSpec {
    fn default() -> Self {
        CalibrationSpec::FirstOfData(CALIBRATION_FROM_DATA)
    }
}

/// The neuronal dynamics simulated.
#[derive(Clone, Debug, PartialEq)]
pub enum Neuron {
    /// signGD neurons with this step-size schedule (`text` as the user wrote it) and encoder.
    SignGd {
        /// Step sizes.
        schedule: Schedule,
        /// The schedule as written (`exp:0.15:0.95`), for reports.
        schedule_text: String,
        /// Input encoder.
        encoder: EncoderKind,
    },
    /// Rate-coded IF neurons (ReLU networks only): step 1/(t+1), the input fed unchanged.
    IntegrateAndFire,
}

impl Default for Neuron {
    fn default() -> Self {
        Neuron::SignGd {
            schedule: Schedule::default(),
            schedule_text: "exp:0.15:0.95".into(),
            encoder: EncoderKind::Float,
        }
    }
}

/// Floating-point precision of the simulation and the ANN evaluation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// 32-bit floats.
    #[default]
    F32,
    /// 64-bit floats.
    F64,
}

impl Precision {
    /// `f32` or `f64`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        }
    }
}

/// Conversion and simulation settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Steps (1-based, sorted, distinct) at which the outputs are read.
    pub checkpoints: Vec<usize>,
    /// The dynamics.
    pub neuron: Neuron,
    /// Target function of GELU neurons.
    pub gelu: GeluTarget,
    /// Over what ReLU normalisation takes its maxima.
    pub relu_norm: ReluNorm,
    /// Precision of the simulation and the ANN evaluation.
    pub precision: Precision,
    /// Worker threads (results do not depend on it).
    pub threads: usize,
    /// The method's dynamics or calibrated ones (the conversion's part of a preset: the
    /// schedule and encoder are in `neuron`).
    pub preset: Preset,
    /// The `signgd tune` file the preset, schedule, encoder and GELU target came from, if any.
    pub tuned: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            checkpoints: vec![32, 64, 128, 256],
            neuron: Neuron::default(),
            gelu: GeluTarget::Sigmoid,
            relu_norm: ReluNorm::Element,
            precision: Precision::F32,
            threads: 1,
            preset: Preset::Reference,
            tuned: None,
        }
    }
}

impl Settings {
    /// The simulator's configuration.
    pub fn sim_config(&self) -> SimConfig {
        match &self.neuron {
            Neuron::SignGd { schedule, encoder, .. } => SimConfig {
                schedule: schedule.clone(),
                encoder: *encoder,
                ..SimConfig::reference(self.checkpoints.clone())
            },
            Neuron::IntegrateAndFire => SimConfig::integrate_and_fire(self.checkpoints.clone()),
        }
    }

    /// The schedule as reports show it.
    pub fn schedule_text(&self) -> String {
        match &self.neuron {
            Neuron::SignGd { schedule_text, .. } => schedule_text.clone(),
            Neuron::IntegrateAndFire => "if (η_t = 1/(t+1))".into(),
        }
    }

    /// The encoder as reports show it.
    pub fn encoder_text(&self) -> &'static str {
        match &self.neuron {
            Neuron::SignGd { encoder, .. } => encoder_name(*encoder),
            Neuron::IntegrateAndFire => "direct",
        }
    }

    /// `signgd` or `if`.
    pub fn neuron_text(&self) -> &'static str {
        match self.neuron {
            Neuron::SignGd { .. } => "signgd",
            Neuron::IntegrateAndFire => "if",
        }
    }

    /// Refuses what no file needs to be read for: no checkpoint, no thread, checkpoints beyond
    /// the steps the schedule defines or where its step size rounds to zero in the chosen
    /// precision (the simulation would stand still from there on).
    pub fn check(&self) -> Result<(), PipelineError> {
        let invalid = |message: String| Err(PipelineError::Settings(message));
        if self.threads == 0 {
            return invalid("give at least 1 worker thread".into());
        }
        let Some(&last) = self.checkpoints.last() else {
            return invalid("give at least one checkpoint".into());
        };
        if self.checkpoints.first() == Some(&0) {
            return invalid("timesteps count from 1; 0 is not a checkpoint".into());
        }
        if !self.checkpoints.windows(2).all(|w| w[0] < w[1]) {
            return invalid(format!("checkpoints {:?} are not sorted and distinct", self.checkpoints));
        }
        let config = self.sim_config();
        let text = self.schedule_text();
        if let Some(max) = config.schedule.max_steps() {
            if last > max {
                return invalid(format!(
                    "checkpoint {last} lies beyond the {max} steps schedule `{text}` defines; use timesteps up to {max}"
                ));
            }
        }
        let etas =
            config.schedule.steps(last).map_err(|e| PipelineError::Settings(format!("schedule `{text}`: {e}")))?;
        let vanishes = |eta: f64| match self.precision {
            Precision::F32 => !((eta as f32).is_finite() && eta as f32 > 0.0),
            Precision::F64 => !(eta.is_finite() && eta > 0.0),
        };
        if let Some(t) = etas.iter().position(|&eta| vanishes(eta)) {
            return invalid(format!(
                "checkpoint {last} lies beyond what schedule `{text}` supports in {}: its step size underflows to 0 at step {} (the simulation would stand still); use timesteps up to {t}, a slower-decaying schedule or precision f64",
                self.precision.name(),
                t + 1
            ));
        }
        Ok(())
    }
}

/// The name of an encoder (`float`, `spike`, `exact`, `direct`).
pub fn encoder_name(encoder: EncoderKind) -> &'static str {
    match encoder {
        EncoderKind::Float => "float",
        EncoderKind::Spike => "spike",
        EncoderKind::Exact => "exact",
        EncoderKind::Direct => "direct",
    }
}

/// The name of a preset (`reference`, `calibrated`).
pub fn preset_name(preset: Preset) -> &'static str {
    match preset {
        Preset::Reference => "reference",
        Preset::Calibrated => "calibrated",
    }
}

/// The name of a GELU target (`sigmoid`, `erf`).
pub fn gelu_name(gelu: GeluTarget) -> &'static str {
    match gelu {
        GeluTarget::Sigmoid => "sigmoid",
        GeluTarget::Erf => "erf",
    }
}

/// The name of a ReLU normalisation (`element`, `channel`, `layer`).
pub fn relu_norm_name(norm: ReluNorm) -> &'static str {
    match norm {
        ReluNorm::Element => "element",
        ReluNorm::Channel => "channel",
        ReluNorm::Layer => "layer",
    }
}

/// Parses `32,64,128`, `1-256` or `1-4,32` into sorted, distinct timesteps.
pub fn parse_timesteps(text: &str) -> Result<Vec<usize>, PipelineError> {
    let invalid = |message: String| PipelineError::Settings(message);
    let number = |s: &str| -> Result<usize, PipelineError> {
        let s = s.trim();
        let n: usize = s.parse().map_err(|_| invalid(format!("`{s}` is not a whole number of timesteps")))?;
        if n < 1 {
            return Err(invalid(format!("timesteps count from 1; `{s}` is not a checkpoint")));
        }
        if n > MAX_TIMESTEPS {
            return Err(invalid(format!("{n} timesteps is more than the {MAX_TIMESTEPS} supported")));
        }
        Ok(n)
    };
    let mut steps = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(invalid("empty entry; write a comma list such as 32,64,128 or a range such as 1-256".into()));
        }
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(invalid(format!(
                        "range `{part}` ends before it starts; write START-END with START <= END"
                    )));
                }
                steps.extend(a..=b);
            }
            None => steps.push(number(part)?),
        }
    }
    steps.sort_unstable();
    steps.dedup();
    Ok(steps)
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

    #[test]
    fn a_schedule_whose_step_underflows_is_refused_in_f32_only() {
        let neuron = Neuron::SignGd {
            schedule: Schedule::parse("exp:0.15:0.5").unwrap(),
            schedule_text: "exp:0.15:0.5".into(),
            encoder: EncoderKind::Float,
        };
        // 0.15 · 0.5^t falls below f32's smallest subnormal (1.4e-45) near t = 146.
        let settings = Settings { checkpoints: vec![256], neuron, ..Settings::default() };
        let error = settings.check().unwrap_err().to_string();
        assert!(error.contains("underflows to 0") && error.contains("in f32"), "{error}");
        assert!(Settings { precision: Precision::F64, ..settings }.check().is_ok());
    }
}
