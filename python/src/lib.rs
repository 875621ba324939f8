//! The `signgd` Python module: convert an ONNX model into a spiking network and simulate it on
//! numpy arrays. Everything is the library's own code; this module only moves arrays and errors
//! across, and releases the GIL while converting and simulating.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use numpy::ndarray::Array2;
use numpy::{Element, IntoPyArray, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use signgd::convert::{convert as convert_graph, CalibrationSet, ConvertOptions, ReluNorm};
use signgd::data::{fit_shape, Dataset, InputSource};
use signgd::engine::{ActivityCounts, Counters, SimConfig};
use signgd::feasibility::{MapOptions, Mapper, Profile};
use signgd::model::{read_onnx, Graph, ModelError};
use signgd::pipeline::{self, DataSummary, Outcome, Results, Settings};
use signgd::provenance::{digest, VERSION};
use signgd::real::Real;
use signgd::report::{self, ReportData};
use signgd::runner::{self, RunError};
use signgd::snn::summary::NetworkSummary;
use signgd::snn::{EncoderKind, GeluTarget};
use signgd::stats::energy::{Conventions, EnergyModel, DEFAULT_PRESET};

create_exception!(
    _signgd,
    SigngdError,
    PyException,
    "A model signgd cannot read or convert, data that do not fit it, or a setting it cannot use."
);

/// `FileNotFoundError` for a missing model file, [`SigngdError`] with the library's message for
/// everything else.
fn model_error(error: ModelError) -> PyErr {
    let missing = matches!(&error, ModelError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound);
    if missing {
        PyFileNotFoundError::new_err(error.to_string())
    } else {
        SigngdError::new_err(error.to_string())
    }
}

fn signgd_error(error: impl std::fmt::Display) -> PyErr {
    SigngdError::new_err(error.to_string())
}

/// The samples of `x` (`[N, ...]`, the model's input without its batch axis after the first
/// axis) as a data set; `what` names the argument in errors.
fn samples(x: &PyReadonlyArrayDyn<'_, f64>, sample_shape: &[usize], what: &str) -> PyResult<Dataset> {
    let shape = x.shape();
    if shape.is_empty() {
        return Err(PyValueError::new_err(format!("{what}: give an array of samples along the first axis")));
    }
    fit_shape(&shape[1..], sample_shape, Path::new(what)).map_err(signgd_error)?;
    let values: Vec<f64> = x.as_array().iter().copied().collect();
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(PyValueError::new_err(format!("{what}: value {} at flat index {i} is not finite", values[i])));
    }
    Ok(Dataset { shape: sample_shape.to_vec(), samples: shape[0], values, scaled_from_u8: false })
}

/// A spiking network converted from an ONNX model.
#[pyclass(module = "signgd", frozen)]
struct Network {
    network: signgd::snn::Network,
    sample_shape: Vec<usize>,
    notes: Vec<String>,
    /// The model as read: the ANN a report compares against.
    graph: Graph,
    /// The graph after the conversion passes (the values a report's error traces follow).
    converted: Graph,
    onnx_path: PathBuf,
    /// Calibration inputs given to `convert`.
    calibration_inputs: usize,
    gelu: GeluTarget,
    relu_norm: ReluNorm,
}

/// Reads the ONNX model at `onnx_path` and converts it into a spiking network.
///
/// `calibration` (float64, `[N, ...]` of the model's input shape without the batch axis) gives
/// the inputs whose per-element maxima normalise the ReLUs; models with ReLUs need it.
#[pyfunction]
#[pyo3(signature = (onnx_path, calibration=None, *, gelu="sigmoid", relu_norm="element", threads=1))]
fn convert(
    py: Python<'_>,
    onnx_path: PathBuf,
    calibration: Option<PyReadonlyArrayDyn<'_, f64>>,
    gelu: &str,
    relu_norm: &str,
    threads: usize,
) -> PyResult<Network> {
    let gelu = match gelu {
        "sigmoid" => GeluTarget::Sigmoid,
        "erf" => GeluTarget::Erf,
        other => return Err(PyValueError::new_err(format!("gelu={other:?}: give \"sigmoid\" or \"erf\""))),
    };
    let relu_norm = match relu_norm {
        "element" => ReluNorm::Element,
        "channel" => ReluNorm::Channel,
        "layer" => ReluNorm::Layer,
        other => {
            return Err(PyValueError::new_err(format!(
                "relu_norm={other:?}: give \"element\", \"channel\" or \"layer\""
            )))
        }
    };
    let graph = py.detach(|| read_onnx(&onnx_path, None)).map_err(model_error)?;
    let input_shape = graph.values[graph.input].shape.clone();
    let sample_shape = input_shape.get(1..).unwrap_or(&[]).to_vec();
    let calibration = match calibration {
        Some(x) => CalibrationSet::new(Arc::new(samples(&x, &sample_shape, "calibration")?)),
        None => CalibrationSet::default(),
    };
    let calibration_inputs = calibration.len();
    let options = ConvertOptions { gelu, calibration, threads: threads.max(1), relu_norm, ..ConvertOptions::default() };
    let conversion = py
        .detach(|| convert_graph(&graph, &options))
        .map_err(|e| SigngdError::new_err(format!("cannot convert {}: {e}", onnx_path.display())))?;
    Ok(Network {
        network: conversion.network,
        sample_shape,
        notes: conversion.notes,
        graph,
        converted: conversion.graph,
        onnx_path,
        calibration_inputs,
        gelu,
        relu_norm,
    })
}

#[pymethods]
impl Network {
    /// The structure as `signgd inspect --json` reports it: populations with their neurons,
    /// operands and synapse blocks, and the totals.
    fn summary<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = serde_json::to_string(&NetworkSummary::of(&self.network)).map_err(signgd_error)?;
        py.import("json")?.call_method1("loads", (text,))
    }

    /// Simulates every sample of `x` (float64, `[N, ...]`) to the largest of `timesteps` and
    /// returns `{"timesteps": [...], "outputs": {T: ndarray [N, outputs]}, "counters": {T:
    /// {population: {"spikes": ..., "synaptic_events": ..., ...}}}}` (counters summed over the
    /// inputs, up to step T). Results do not depend on `threads`.
    #[pyo3(signature = (x, timesteps=vec![32, 64, 128, 256], *, threads=1, precision="f32"))]
    fn simulate<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArrayDyn<'py, f64>,
        timesteps: Vec<usize>,
        threads: usize,
        precision: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        if timesteps.is_empty() || timesteps.contains(&0) {
            return Err(PyValueError::new_err(format!("timesteps={timesteps:?}: give one or more positive steps")));
        }
        let data = samples(&x, &self.sample_shape, "x")?;
        let config = SimConfig::reference(timesteps);
        match precision {
            "f32" => self.simulate_in::<f32>(py, &data, &config, threads),
            "f64" => self.simulate_in::<f64>(py, &data, &config, threads),
            other => Err(PyValueError::new_err(format!("precision={other:?}: give \"f32\" or \"f64\""))),
        }
    }

    /// Evaluates the ANN and simulates the SNN on every sample of `x` (float64, `[N, ...]`) and
    /// writes the report directory `signgd run --report` writes (report.json, populations.csv,
    /// accuracy.csv, report.md, report.html; atomically, replacing an earlier report only with
    /// `force`). `labels` (integers, one per sample) give the accuracies. Returns the run's
    /// outcome, as `signgd run --json` prints it.
    #[pyo3(signature = (dir, x, labels=None, *, timesteps=vec![32, 64, 128, 256], threads=1, precision="f32", energy_model=DEFAULT_PRESET, force=false))]
    #[allow(clippy::too_many_arguments)]
    fn report<'py>(
        &self,
        py: Python<'py>,
        dir: PathBuf,
        x: PyReadonlyArrayDyn<'py, f64>,
        labels: Option<Vec<i64>>,
        timesteps: Vec<usize>,
        threads: usize,
        precision: &str,
        energy_model: &str,
        force: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut checkpoints = timesteps.clone();
        checkpoints.sort_unstable();
        checkpoints.dedup();
        let settings = Settings {
            checkpoints,
            gelu: self.gelu,
            relu_norm: self.relu_norm,
            threads: threads.max(1),
            ..Settings::default()
        };
        settings.check().map_err(|e| PyValueError::new_err(format!("timesteps={timesteps:?}: {e}")))?;
        report::check_target(&dir, force).map_err(|e| signgd_error(format!("{e:#}")))?;
        let energy = EnergyModel::load(energy_model).map_err(|e| signgd_error(format!("energy_model: {e}")))?;
        let data = samples(&x, &self.sample_shape, "x")?;
        let labels = match labels {
            None => None,
            Some(labels) => Some(self.checked_labels(&labels, data.samples)?),
        };
        let outcome = match precision {
            "f32" => self.report_in::<f32>(py, &dir, &data, labels.as_deref(), &settings, energy, force),
            "f64" => self.report_in::<f64>(py, &dir, &data, labels.as_deref(), &settings, energy, force),
            other => Err(PyValueError::new_err(format!("precision={other:?}: give \"f32\" or \"f64\""))),
        }?;
        let text = serde_json::to_string(&outcome).map_err(signgd_error)?;
        py.import("json")?.call_method1("loads", (text,))
    }

    /// Places the network on the cores of `target` (`loihi`, `loihi2`, `truenorth`,
    /// `spinnaker`, `spinnaker2`, `speck`, or `all`) as `signgd feasibility` does and returns one
    /// report per chip: cores and chips used, per-population placement, the limits no split
    /// cures and the method's needs each chip meets or not. Chips with an event budget per core
    /// are checked against spike rates simulated on `x` (float64, `[N, ...]`) when given.
    #[pyo3(signature = (target="all", x=None, *, encoder="float", threads=1))]
    fn feasibility<'py>(
        &self,
        py: Python<'py>,
        target: &str,
        x: Option<PyReadonlyArrayDyn<'py, f64>>,
        encoder: &str,
        threads: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let encoder = match encoder {
            "float" => EncoderKind::Float,
            "spike" => EncoderKind::Spike,
            other => return Err(PyValueError::new_err(format!("encoder={other:?}: give \"float\" or \"spike\""))),
        };
        let profiles = if target.eq_ignore_ascii_case("all") {
            Profile::all_bundled()
        } else {
            Profile::bundled(target).map(|p| vec![p])
        }
        .map_err(signgd_error)?;
        let needs_rates = profiles.iter().any(|p| p.synaptic_events_per_ms_per_core.is_some());
        let rates = match x {
            Some(x) if needs_rates => {
                let data = samples(&x, &self.sample_shape, "x")?;
                let config = SimConfig { encoder, ..SimConfig::reference(vec![32, 64, 128, 256]) };
                let load = |i: usize, buffer: &mut [f32]| {
                    let mut values = vec![0.0; buffer.len()];
                    data.read(i, &mut values)?;
                    buffer.iter_mut().zip(values).for_each(|(b, v)| *b = v as f32);
                    Ok(())
                };
                let result = py
                    .detach(|| {
                        runner::simulate::<f32, _>(&self.network, &config, data.samples, load, threads.max(1), &|_| {})
                    })
                    .map_err(|e: RunError| signgd_error(e))?;
                Some(pipeline::event_rates(&self.network, &result))
            }
            _ => None,
        };
        let options = MapOptions { real_valued_input: encoder == EncoderKind::Float, rates };
        let mapper = Mapper::new(&self.network);
        let reports: Vec<_> = profiles.iter().map(|p| mapper.map(p, &options)).collect();
        let text = serde_json::to_string(&reports).map_err(signgd_error)?;
        py.import("json")?.call_method1("loads", (text,))
    }

    /// SHA-256 of every weight and constant of the network, as `signgd run --fingerprint` gives
    /// it: equal exactly when two conversions made the same network.
    fn fingerprint(&self, py: Python<'_>) -> String {
        py.detach(|| pipeline::fingerprint(&self.network))
    }

    /// Elements of one input (without the batch axis).
    #[getter]
    fn input_shape(&self) -> Vec<usize> {
        self.sample_shape.clone()
    }

    /// Number of output values per input.
    #[getter]
    fn output_size(&self) -> usize {
        self.network.output_size()
    }

    /// Neurons, relays excluded (as `signgd run` counts them).
    #[getter]
    fn neurons(&self) -> usize {
        self.network.neurons()
    }

    /// What each conversion pass did.
    #[getter]
    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "signgd.Network({} populations, {} neurons, {} relays, input {:?}, {} outputs)",
            self.network.populations.len(),
            self.network.neurons(),
            self.network.relays(),
            self.sample_shape,
            self.network.output_size()
        )
    }
}

impl Network {
    /// `labels` as classes, one per sample, each a class of the model.
    fn checked_labels(&self, labels: &[i64], samples: usize) -> PyResult<Vec<usize>> {
        if labels.len() != samples {
            return Err(PyValueError::new_err(format!(
                "labels: {} labels for {samples} samples; give one label per sample",
                labels.len()
            )));
        }
        let classes = self.network.output_size();
        labels
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                usize::try_from(l).ok().filter(|&c| c < classes).ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "labels: label {l} at index {i} is not a class of the model, which has {classes} outputs"
                    ))
                })
            })
            .collect()
    }

    /// Evaluates, simulates, assembles the outcome and writes the report directory.
    #[allow(clippy::too_many_arguments)]
    fn report_in<F: Real>(
        &self,
        py: Python<'_>,
        dir: &Path,
        data: &Dataset,
        labels: Option<&[usize]>,
        settings: &Settings,
        energy: EnergyModel,
        force: bool,
    ) -> PyResult<Outcome> {
        let load = |i: usize, buffer: &mut [F]| {
            let mut values = vec![0.0; buffer.len()];
            data.read(i, &mut values)?;
            buffer.iter_mut().zip(values).for_each(|(b, v)| *b = F::of(v));
            Ok(())
        };
        let config = settings.sim_config();
        let threads = settings.threads;
        let (ann, result, times) = py
            .detach(|| {
                let started = std::time::Instant::now();
                let ann = runner::evaluate_ann::<F, _>(&self.graph, data.samples, load, threads, &|_| {})?;
                let ann_time = started.elapsed();
                let started = std::time::Instant::now();
                let result = runner::simulate::<F, _>(&self.network, &config, data.samples, load, threads, &|_| {})?;
                Ok::<_, RunError>((ann, result, [std::time::Duration::ZERO, ann_time, started.elapsed()]))
            })
            .map_err(signgd_error)?;
        let model = digest(&self.onnx_path)
            .map_err(|e| signgd_error(format!("cannot read {}: {e}", self.onnx_path.display())))?;
        let provenance = serde_json::json!({ "signgd_version": VERSION, "files": { "model": model } });
        let mut outcome = Outcome::assemble(Results {
            model: &self.onnx_path,
            provenance,
            data: DataSummary {
                path: "numpy array".into(),
                inputs: data.samples,
                input_shape: self.network.input_shape.clone(),
                scaled_from_u8: false,
                labels: labels.map(|_| "numpy array".into()),
                classes: None,
                preprocess: None,
            },
            calibration: format!("{} inputs given to convert()", self.calibration_inputs),
            settings,
            network: &self.network,
            notes: &self.notes,
            labels,
            ann: &ann,
            result: &result,
            times,
        });
        // The first input up close: the raster of the first population with neurons.
        let observation = match self.network.populations.iter().position(|p| !p.kind.is_relay()) {
            Some(population) if data.samples > 0 => {
                let input: Vec<F> = data.sample(0).iter().map(|&v| F::of(v)).collect();
                Some(
                    pipeline::observe_input::<F>(&self.network, &self.converted, &config, population, 0, &input)
                        .map_err(signgd_error)?,
                )
            }
            _ => None,
        };
        let report = ReportData::build(report::Sources {
            run: outcome.to_json(),
            network: &self.network,
            counters: &result.counters,
            checkpoints: &result.checkpoints,
            inputs: data.samples as u64,
            ann_graph: &self.graph,
            accuracy: outcome.accuracy(),
            energy_model: energy,
            conventions: Conventions::default(),
            observation,
        });
        let files = report.render().map_err(|e| signgd_error(format!("{e:#}")))?;
        report::write_dir(dir, &files, force).map_err(|e| signgd_error(format!("{e:#}")))?;
        outcome.report = Some(dir.display().to_string());
        Ok(outcome)
    }

    fn simulate_in<'py, F: Real + Element>(
        &self,
        py: Python<'py>,
        data: &Dataset,
        config: &SimConfig,
        threads: usize,
    ) -> PyResult<Bound<'py, PyDict>> {
        let load = |i: usize, buffer: &mut [F]| {
            let mut values = vec![0.0; buffer.len()];
            data.read(i, &mut values)?;
            buffer.iter_mut().zip(values).for_each(|(b, v)| *b = F::of(v));
            Ok(())
        };
        let result = py
            .detach(|| runner::simulate::<F, _>(&self.network, config, data.samples, load, threads.max(1), &|_| {}))
            .map_err(|e: RunError| signgd_error(e))?;
        let outputs = PyDict::new(py);
        let counters = PyDict::new(py);
        for (k, &t) in result.checkpoints.iter().enumerate() {
            let array = Array2::from_shape_vec((result.inputs, result.output_size), result.at_checkpoint(k).to_vec())
                .map_err(signgd_error)?;
            outputs.set_item(t, array.into_pyarray(py))?;
            counters.set_item(t, self.counters_at(py, &result.counters, k)?)?;
        }
        let out = PyDict::new(py);
        out.set_item("timesteps", result.checkpoints.clone())?;
        out.set_item("outputs", outputs)?;
        out.set_item("counters", counters)?;
        Ok(out)
    }

    /// Counters per population (and the readout) up to checkpoint `k`.
    fn counters_at<'py>(&self, py: Python<'py>, counters: &Counters, k: usize) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        let at = &counters.at_checkpoints[k];
        for (population, counts) in self.network.populations.iter().zip(at) {
            dict.set_item(&population.name, counts_dict(py, counts)?)?;
        }
        if let Some(readout) = at.get(self.network.populations.len()) {
            dict.set_item("readout", counts_dict(py, readout)?)?;
        }
        Ok(dict)
    }
}

fn counts_dict<'py>(py: Python<'py>, counts: &ActivityCounts) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    let value = serde_json::to_value(counts).map_err(signgd_error)?;
    for (key, v) in value.as_object().into_iter().flatten() {
        dict.set_item(key, v.as_u64())?;
    }
    Ok(dict)
}

#[pymodule]
fn _signgd(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", signgd::provenance::VERSION)?;
    m.add("SigngdError", m.py().get_type::<SigngdError>())?;
    m.add_class::<Network>()?;
    m.add_function(wrap_pyfunction!(convert, m)?)?;
    Ok(())
}
