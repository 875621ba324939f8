//! The one place where command-line arguments become a [`Plan`]: the bundled defaults, the
//! labels that go with the default data, image preprocessing, the calibration source. `run`,
//! `bench` and `feasibility` all build their plans here, so the same arguments convert the same
//! network.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use signgd::pipeline::{
    CalibrationSpec, DataSpec, ImagePreprocess, ModelSpec, Plan, PreprocessPreset, Settings, CALIBRATION_FROM_DATA,
};
use signgd::shard::Shard;

pub(super) const DEFAULT_MODEL: &str = "fixtures/models/convnext.onnx";
pub(super) const DEFAULT_DATA: &str = "fixtures/data/fashion-mnist-test-1000-images-idx3-ubyte.gz";
pub(super) const DEFAULT_LABELS: &str = "fixtures/data/fashion-mnist-test-1000-labels-idx1-ubyte.gz";

/// Whether a command reads labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Labels {
    /// `--labels`, else the bundled labels when the data are the bundled data.
    Wanted,
    /// None (the command measures no accuracy).
    Unused,
}

/// The arguments a plan is built from, as the commands spell them.
#[derive(Clone, Debug, Default)]
pub(super) struct Sources<'a> {
    pub model: Option<&'a Path>,
    pub max_model_elements: Option<usize>,
    pub data: Option<&'a Path>,
    pub labels: Option<&'a Path>,
    pub limit: Option<usize>,
    pub calibration: Option<&'a Path>,
    pub preprocess: PreprocessPreset,
    pub mean: Option<&'a str>,
    pub std: Option<&'a str>,
    pub shard: Option<Shard>,
}

impl Sources<'_> {
    /// The plan of these sources with `settings`: absent files replaced by the bundled fixtures.
    pub fn plan(&self, labels: Labels, settings: Settings) -> Result<Plan> {
        let model = match self.model {
            Some(path) => path.to_path_buf(),
            None => super::bundled(DEFAULT_MODEL, "--model FILE.onnx")?,
        };
        let data = match self.data {
            Some(path) => path.to_path_buf(),
            None => super::bundled(DEFAULT_DATA, "--data FILE")?,
        };
        let labels = match (labels, self.labels, self.data) {
            (Labels::Unused, _, _) => None,
            (Labels::Wanted, Some(path), _) => Some(path.to_path_buf()),
            (Labels::Wanted, None, None) => Some(super::bundled(DEFAULT_LABELS, "--labels FILE")?),
            (Labels::Wanted, None, Some(_)) => None,
        };
        let preprocess = ImagePreprocess {
            preset: self.preprocess,
            mean: self.mean.map(|text| numbers(text, "--mean")).transpose()?,
            std: self.std.map(|text| numbers(text, "--std")).transpose()?,
        };
        if let (Some(std), Some(text)) = (&preprocess.std, self.std) {
            ensure!(std.iter().all(|&s| s > 0.0), "--std `{text}`: standard deviations must be positive");
        }
        let mut limits = ModelSpec::new(&model).limits;
        if let Some(elements) = self.max_model_elements {
            limits = super::model_limits(elements);
        }
        Ok(Plan {
            model: ModelSpec { path: model, limits },
            data: DataSpec { path: data, labels, limit: self.limit, preprocess, shard: self.shard },
            calibration: match self.calibration {
                Some(path) => CalibrationSpec::File(PathBuf::from(path)),
                None => CalibrationSpec::FirstOfData(CALIBRATION_FROM_DATA),
            },
            settings,
        })
    }
}

/// `0.5` or `0.5,0.5,0.5` as numbers.
fn numbers(text: &str, flag: &str) -> Result<Vec<f64>> {
    text.split(',')
        .map(|v| v.trim().parse::<f64>().ok().filter(|v| v.is_finite()))
        .collect::<Option<Vec<f64>>>()
        .with_context(|| format!("{flag} `{text}`: give numbers separated by commas"))
}
