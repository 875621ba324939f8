//! What a shard's report directory holds besides its report: `shard.json` (the shard's identity,
//! the command that ran it, the digests of its files, its labels and exact counters) and the
//! per-input outputs, `ann.npy` `[inputs, outputs]` and `snn.npy` `[checkpoints, inputs,
//! outputs]`, stored exactly.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use ndarray::{Array2, Array3};
use ndarray_npy::{ReadNpyExt, ReadableElement, WritableElement, WriteNpyExt};
use serde::{Deserialize, Serialize};
use signgd::engine::Counters;
use signgd::real::Real;
use signgd::runner::SimulationResult;
use signgd::shard::Shard;

/// The record of a shard.
pub(super) const RECORD: &str = "shard.json";
/// The ANN outputs of a shard.
pub(super) const ANN: &str = "ann.npy";
/// The SNN outputs of a shard.
pub(super) const SNN: &str = "snn.npy";
/// `format` of a shard record.
const FORMAT: &str = "signgd shard";
/// Version of the layout of a shard record.
const VERSION: u32 = 1;

/// Shard K of N and the inputs it simulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Slice {
    /// K, from 1.
    pub index: usize,
    /// N.
    pub count: usize,
    /// First global input index.
    pub start: usize,
    /// One past the last global input index.
    pub end: usize,
    /// Inputs of the whole run (after --limit).
    pub inputs: usize,
}

impl Slice {
    /// `shard` covering `range` of `inputs`.
    pub fn new(shard: Shard, range: &Range<usize>, inputs: usize) -> Self {
        Slice { index: shard.index, count: shard.count, start: range.start, end: range.end, inputs }
    }

    /// The number of inputs it holds.
    pub fn len(&self) -> usize {
        self.end - self.start
    }
}

impl fmt::Display for Slice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}: inputs {} to {} of {} (`signgd merge` combines the shards' report directories)",
            self.index,
            self.count,
            self.start,
            self.end.saturating_sub(1),
            self.inputs
        )
    }
}

/// Seconds a shard spent on the ANN and the SNN.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Times {
    /// ANN evaluation.
    pub ann: f64,
    /// SNN simulation.
    pub snn: f64,
}

/// `shard.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Record {
    /// [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// Which shard.
    pub shard: Slice,
    /// The options of `signgd run` that ran it, as given.
    pub arguments: Vec<String>,
    /// The working directory they were given in (relative paths start there).
    pub working_directory: PathBuf,
    /// The tool's version and the size and SHA-256 of the model, data, labels and calibration.
    pub provenance: serde_json::Value,
    /// `f32` or `f64`.
    pub precision: String,
    /// Checkpoints (timesteps).
    pub checkpoints: Vec<usize>,
    /// Output elements per input.
    pub output_size: usize,
    /// The labels of its inputs (None without labels).
    pub labels: Option<Vec<usize>>,
    /// Timings.
    pub time_s: Times,
    /// The engine's counters summed over its inputs.
    pub counters: Counters,
}

impl Record {
    /// The record of a shard run by this process.
    pub fn new<F: Real>(
        shard: Slice,
        provenance: &serde_json::Value,
        labels: Option<&[usize]>,
        result: &SimulationResult<F>,
        [ann, snn]: [Duration; 2],
    ) -> Result<Self> {
        let mut arguments = std::env::args_os()
            .skip(1)
            .map(|a| {
                a.into_string().map_err(|a| {
                    anyhow::anyhow!(
                        "--shard: the option {} is not UTF-8 text, which the shard's record cannot hold; rename the file",
                        a.to_string_lossy()
                    )
                })
            })
            .collect::<Result<Vec<String>>>()?;
        if arguments.first().is_some_and(|a| a == "run") {
            arguments.remove(0);
        }
        Ok(Record {
            format: FORMAT.into(),
            version: VERSION,
            shard,
            arguments,
            working_directory: std::env::current_dir().unwrap_or_default(),
            provenance: provenance.clone(),
            precision: F::NAME.into(),
            checkpoints: result.checkpoints.clone(),
            output_size: result.output_size,
            labels: labels.map(<[usize]>::to_vec),
            time_s: Times { ann: ann.as_secs_f64(), snn: snn.as_secs_f64() },
            counters: result.counters.clone(),
        })
    }

    /// The shard's files: the record and both outputs.
    pub fn files<F: Real + WritableElement>(
        &self,
        ann: &[F],
        result: &SimulationResult<F>,
    ) -> Result<Vec<(&'static str, Vec<u8>)>> {
        let mut ann_npy = Vec::new();
        Array2::from_shape_vec((result.inputs, result.output_size), ann.to_vec())?.write_npy(&mut ann_npy)?;
        let mut snn_npy = Vec::new();
        Array3::from_shape_vec((result.checkpoints.len(), result.inputs, result.output_size), result.outputs.clone())?
            .write_npy(&mut snn_npy)?;
        Ok(vec![(RECORD, (serde_json::to_string_pretty(self)? + "\n").into_bytes()), (ANN, ann_npy), (SNN, snn_npy)])
    }

    /// Reads the record of the shard report `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        ensure!(dir.is_dir(), "{} is not a directory; give the --report directories of the shards", dir.display());
        let path = dir.join(RECORD);
        if !path.exists() {
            bail!(
                "{} is not a shard's report: it holds no {RECORD}; write shards with `signgd run --shard K/N --report DIR`",
                dir.display()
            );
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let record: Record = serde_json::from_str(&text)
            .with_context(|| format!("{} is not the record of a signgd shard", path.display()))?;
        ensure!(
            record.format == FORMAT && record.version == VERSION,
            "{} is a `{}` record of version {}; this signgd reads `{FORMAT}` version {VERSION}",
            path.display(),
            record.format,
            record.version
        );
        Ok(record)
    }

    /// Reads the shard's outputs from `dir`, checking their shapes: the ANN's `[inputs × outputs]`
    /// and the SNN's `[checkpoints × inputs × outputs]`, both row-major.
    pub fn outputs<F: ReadableElement + Clone>(&self, dir: &Path) -> Result<(Vec<F>, Vec<F>)> {
        let open = |name: &str| {
            let path = dir.join(name);
            std::fs::File::open(&path).with_context(|| format!("cannot read {}", path.display())).map(|f| (f, path))
        };
        let wrong = |path: &Path, found: &[usize], expected: &[usize]| {
            anyhow::anyhow!(
                "{} has shape {found:?} but the shard holds {expected:?} (inputs {} to {}); the shard's files do not belong together, run it again",
                path.display(),
                self.shard.start,
                self.shard.end.saturating_sub(1)
            )
        };
        let (file, path) = open(ANN)?;
        let ann = Array2::<F>::read_npy(file).with_context(|| format!("cannot read {}", path.display()))?;
        let expected = [self.shard.len(), self.output_size];
        ensure!(ann.shape() == expected, wrong(&path, ann.shape(), &expected));
        let (file, path) = open(SNN)?;
        let snn = Array3::<F>::read_npy(file).with_context(|| format!("cannot read {}", path.display()))?;
        let expected = [self.checkpoints.len(), self.shard.len(), self.output_size];
        ensure!(snn.shape() == expected, wrong(&path, snn.shape(), &expected));
        Ok((ann.iter().cloned().collect(), snn.iter().cloned().collect()))
    }
}
