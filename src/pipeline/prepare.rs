//! From a [`Plan`] to a converted network: the model read, the data opened, the labels checked,
//! the calibration inputs chosen and the conversion run, the same way for every caller.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::convert::{convert, CalibrationSet, Conversion, ConvertOptions, Progress as ConvertProgress};
use crate::data::{
    fit_shape, open_inputs, read_labels, split_array_name, ImageFolder, InputSource, LoadLimits, Preprocess, Span,
    Tapped,
};
use crate::model::reader::read_onnx_with_limits;
use crate::model::{Graph, Op};
use crate::provenance::{digest, digest_tree, VERSION};
use crate::snn::Network;

use super::plan::{CalibrationSpec, DataSpec, Plan, PreprocessPreset};
use super::{Phase, PipelineError, Progress};

/// A plan's model converted and its data opened: everything evaluated afterwards.
pub struct Prepared {
    /// The ONNX model's path.
    pub model_path: PathBuf,
    /// The model as read (the ANN evaluated).
    pub graph: Graph,
    /// The converted network and the graph it reproduces.
    pub conversion: Conversion,
    /// Wall time of the conversion, calibration included.
    pub conversion_time: Duration,
    /// The data file or image folder.
    pub data_path: PathBuf,
    /// The inputs (after the limit), read as they are needed, with their value range recorded.
    pub data: Arc<Tapped>,
    /// Whether uint8 data were scaled to [0, 1].
    pub scaled_from_u8: bool,
    /// The classes of an image folder.
    pub classes: Option<Vec<String>>,
    /// The label file (the image folder itself for its classes).
    pub labels_path: Option<PathBuf>,
    /// The labels of the evaluated inputs (`range`).
    pub labels: Option<Vec<usize>>,
    /// The inputs evaluated: this shard's, or all of them.
    pub range: Range<usize>,
    /// The calibration inputs, with their value range recorded as the conversion read them.
    pub calibration: Arc<Tapped>,
    /// Where the calibration inputs came from, in words.
    pub calibration_source: String,
    /// Whether the model has ReLUs (whose normalisation the calibration inputs set).
    pub has_relu: bool,
    /// The tool's version and the digest of every input file, by role ([`Prepared::record_provenance`];
    /// `null` until then).
    pub provenance: serde_json::Value,
}

impl Prepared {
    /// The converted network.
    pub fn network(&self) -> &Network {
        &self.conversion.network
    }

    /// Number of inputs after the limit (all shards).
    pub fn samples(&self) -> usize {
        self.data.len()
    }

    /// Records the tool's version and the digest of every file of `plan` in
    /// [`Prepared::provenance`].
    pub fn record_provenance(&mut self, plan: &Plan) -> Result<(), PipelineError> {
        let calibration = match &plan.calibration {
            CalibrationSpec::File(path) => Some(path.as_path()),
            CalibrationSpec::FirstOfData(_) => None,
        };
        self.provenance = provenance(&self.model_path, &self.data_path, self.labels_path.as_deref(), calibration)?;
        Ok(())
    }

    /// Output values per input.
    pub fn output_size(&self) -> usize {
        self.graph.values[self.graph.output].shape.iter().product()
    }
}

/// Reads the model, opens the data and labels, chooses the calibration inputs, records the
/// files' digests and converts; tells `progress` of calibration inputs as they are evaluated.
pub fn prepare(plan: &Plan, progress: &Arc<dyn Progress>) -> Result<Prepared, PipelineError> {
    let (model_path, graph, sample_shape) = read_model(plan)?;
    let output_size: usize = graph.values[graph.output].shape.iter().product();

    // Data and labels.
    let spec = &plan.data;
    let data_path = spec.path.clone();
    let limits = LoadLimits { max_samples: spec.limit, ..LoadLimits::default() };
    let (folder, data) = open_data(spec, &sample_shape)?;
    let samples = data.len();
    let scaled_from_u8 = data.scaled_from_u8();
    let labels_path = spec.labels.clone().or_else(|| folder.is_some().then(|| data_path.clone()));
    let labels = match &labels_path {
        Some(path) if path == &data_path && folder.is_some() => {
            Some(folder.as_ref().map(|f| f.labels(limits)).unwrap_or_default())
        }
        Some(path) => Some(checked_labels(path, limits, &data_path, samples, spec.limit.is_some(), output_size)?),
        None => None,
    };

    // This shard's slice of the inputs (all of them without a shard).
    let range = match spec.shard {
        Some(shard) => shard.range(samples).map_err(|e| PipelineError::Data(format!("shard {shard}: {e}")))?,
        None => 0..samples,
    };
    let labels = labels.map(|l| l[range.clone()].to_vec());

    let (calibration, calibration_source) =
        calibration(&plan.calibration, spec, &data, &data_path, folder.as_ref(), &sample_shape)?;

    // Conversion.
    let started = Instant::now();
    let settings = &plan.settings;
    let told = progress.clone();
    let options = ConvertOptions {
        gelu: settings.gelu,
        calibration: CalibrationSet::new(calibration.clone()),
        threads: settings.threads,
        progress: Some(ConvertProgress(Arc::new(move |n| told.advance(Phase::Calibration, n)))),
        relu_norm: settings.relu_norm,
        preset: settings.preset,
    };
    progress.start(Phase::Calibration, options.calibration.len());
    let conversion = convert(&graph, &options);
    progress.finish(Phase::Calibration);
    drop(options);
    let conversion =
        conversion.map_err(|e| PipelineError::Convert(format!("cannot convert {}: {e}", model_path.display())))?;
    crate::memory::release_free_memory();
    let conversion_time = started.elapsed();
    if conversion.network.output_size() != output_size {
        return Err(PipelineError::Data(format!(
            "internal: the converted network has {} outputs, the model {output_size}",
            conversion.network.output_size()
        )));
    }
    let has_relu = graph.nodes.iter().any(|n| matches!(n.op, Op::Relu));
    Ok(Prepared {
        model_path,
        graph,
        conversion,
        conversion_time,
        data_path,
        data,
        scaled_from_u8,
        classes: folder.map(|f| f.classes),
        labels_path,
        labels,
        range,
        calibration,
        calibration_source,
        has_relu,
        provenance: serde_json::Value::Null,
    })
}

/// The model of `plan` and the calibration inputs a run of the same plan converts with (the
/// calibration file, or the first inputs of the data), with their source in words: what
/// tuning reads.
pub fn model_and_calibration(plan: &Plan) -> Result<(Graph, Arc<dyn InputSource>, String), PipelineError> {
    let (_, graph, sample_shape) = read_model(plan)?;
    let (calibration, source) = match &plan.calibration {
        CalibrationSpec::File(path) => calibration_file(&plan.data, path, &sample_shape)?,
        CalibrationSpec::FirstOfData(_) => {
            let (folder, data) = open_data(&plan.data, &sample_shape)?;
            calibration(&plan.calibration, &plan.data, &data, &plan.data.path, folder.as_ref(), &sample_shape)?
        }
    };
    Ok((graph, calibration, source))
}

/// The plan's model, its path and the shape of one input (without the batch axis).
fn read_model(plan: &Plan) -> Result<(PathBuf, Graph, Vec<usize>), PipelineError> {
    let started = Instant::now();
    let model_path = plan.model.path.clone();
    let graph = read_onnx_with_limits(&model_path, None, plan.model.limits)?;
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        nodes = graph.nodes.len(),
        "read {}",
        model_path.display()
    );
    let sample_shape = graph.values[graph.input].shape.get(1..).unwrap_or(&[]).to_vec();
    Ok((model_path, graph, sample_shape))
}

/// The plan's inputs (after the limit), and the image folder they come from, if any.
fn open_data(spec: &DataSpec, sample_shape: &[usize]) -> Result<(Option<ImageFolder>, Arc<Tapped>), PipelineError> {
    let data_path = &spec.path;
    let limits = LoadLimits { max_samples: spec.limit, ..LoadLimits::default() };
    let started = Instant::now();
    let folder = data_path.is_dir().then(|| ImageFolder::scan(data_path)).transpose()?;
    let opened = load_inputs(spec, data_path, folder.as_ref(), limits, sample_shape)?;
    if opened.is_empty() {
        return Err(PipelineError::Data(format!("{}: the data set holds no samples", data_path.display())));
    }
    tracing::info!(seconds = started.elapsed().as_secs_f64(), inputs = opened.len(), "opened {}", data_path.display());
    Ok((folder, Arc::new(Tapped::new(Arc::from(opened)))))
}

/// The labels in `path`, one per input of the data and each a class of the model.
fn checked_labels(
    path: &Path,
    limits: LoadLimits,
    data_path: &Path,
    samples: usize,
    limited: bool,
    output_size: usize,
) -> Result<Vec<usize>, PipelineError> {
    let labels = read_labels(path, limits)?;
    if labels.len() != samples {
        return Err(PipelineError::Data(format!(
            "{} holds {} labels but {} holds {} inputs{}; give one label per input",
            path.display(),
            labels.len(),
            data_path.display(),
            samples,
            if limited { " (after --limit)" } else { "" }
        )));
    }
    if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l >= output_size) {
        return Err(PipelineError::Data(format!(
            "{}: label {l} at index {i} is not a class of the model, which has {output_size} outputs",
            path.display()
        )));
    }
    Ok(labels)
}

/// The inputs of `path`, read as they are needed: an image folder (`folder`, when already
/// scanned), preprocessed as asked, or an array file, checked to fit the model's input.
fn load_inputs(
    spec: &DataSpec,
    path: &Path,
    folder: Option<&ImageFolder>,
    limits: LoadLimits,
    sample_shape: &[usize],
) -> Result<Box<dyn InputSource>, PipelineError> {
    if folder.is_none() && !path.is_dir() {
        let inputs = open_inputs(path, limits)?;
        fit_shape(inputs.shape(), sample_shape, path)?;
        return Ok(inputs);
    }
    let crop = sample_shape.iter().copied().filter(|&d| d > 3).max().unwrap_or(1);
    let mut preprocess = match spec.preprocess.preset {
        PreprocessPreset::None => Preprocess::none(),
        PreprocessPreset::Imagenet => Preprocess::imagenet(crop),
    };
    if let Some(mean) = &spec.preprocess.mean {
        preprocess.mean = mean.clone();
    }
    if let Some(std) = &spec.preprocess.std {
        preprocess.std = std.clone();
    }
    let scanned;
    let folder = match folder {
        Some(folder) => folder,
        None => {
            scanned = ImageFolder::scan(path)?;
            &scanned
        }
    };
    Ok(Box::new(folder.inputs(limits, sample_shape, &preprocess)?))
}

/// The calibration inputs and their source in words: the calibration file, or the first inputs
/// of the data (read again past the limit when the limit keeps fewer).
fn calibration(
    spec: &CalibrationSpec,
    data_spec: &DataSpec,
    data: &Arc<Tapped>,
    data_path: &Path,
    data_folder: Option<&ImageFolder>,
    sample_shape: &[usize],
) -> Result<(Arc<Tapped>, String), PipelineError> {
    let (inputs, source): (Arc<dyn InputSource>, String) = match spec {
        CalibrationSpec::File(path) => {
            let (set, source) = calibration_file(data_spec, path, sample_shape)?;
            return Ok((set, source));
        }
        &CalibrationSpec::FirstOfData(count) => {
            let set: Arc<dyn InputSource> = if data.len() >= count || data_spec.limit.is_none() {
                data.clone()
            } else {
                let limits = LoadLimits { max_samples: Some(count), ..LoadLimits::default() };
                Arc::from(load_inputs(data_spec, data_path, data_folder, limits, sample_shape)?)
            };
            let first = Span::first(set, count);
            let source =
                format!("first {} inputs of --data {} (no --calibration given)", first.len(), data_path.display());
            (Arc::new(first), source)
        }
    };
    Ok((Arc::new(Tapped::new(inputs)), source))
}

/// The calibration inputs of a file (read as the data would be), with their source in words.
fn calibration_file(
    data_spec: &DataSpec,
    path: &Path,
    sample_shape: &[usize],
) -> Result<(Arc<Tapped>, String), PipelineError> {
    let set = load_inputs(data_spec, path, None, LoadLimits::default(), sample_shape)?;
    if set.is_empty() {
        return Err(PipelineError::Data(format!("{}: the calibration file holds no samples", path.display())));
    }
    let source = format!("{} ({} inputs)", path.display(), set.len());
    Ok((Arc::new(Tapped::new(Arc::from(set))), source))
}

/// The tool's version and the size and SHA-256 of every input file, by role.
pub fn provenance(
    model: &Path,
    data: &Path,
    labels: Option<&Path>,
    calibration: Option<&Path>,
) -> Result<serde_json::Value, PipelineError> {
    let mut files = serde_json::Map::new();
    for (role, path) in [("model", Some(model)), ("data", Some(data)), ("labels", labels), ("calibration", calibration)]
    {
        let Some(path) = path else { continue };
        if role == "labels" && path == data {
            continue; // the class folders of an image folder
        }
        let (file, array) = split_array_name(path);
        let digest = if file.is_dir() { digest_tree(&file) } else { digest(&file) }
            .map_err(|e| PipelineError::Data(format!("cannot read {} to record its digest: {e}", file.display())))?;
        let mut entry = serde_json::to_value(digest).map_err(|e| PipelineError::Data(e.to_string()))?;
        if let Some(array) = array {
            entry["array"] = serde_json::json!(array);
        }
        files.insert(role.to_string(), entry);
    }
    Ok(serde_json::json!({ "signgd_version": VERSION, "files": files }))
}
