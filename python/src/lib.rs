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
use signgd::model::{read_onnx, ModelError};
use signgd::real::Real;
use signgd::runner::{self, RunError};
use signgd::snn::summary::NetworkSummary;
use signgd::snn::GeluTarget;

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
    let options = ConvertOptions { gelu, calibration, threads: threads.max(1), progress: None, relu_norm };
    let conversion = py
        .detach(|| convert_graph(&graph, &options))
        .map_err(|e| SigngdError::new_err(format!("cannot convert {}: {e}", onnx_path.display())))?;
    Ok(Network { network: conversion.network, sample_shape, notes: conversion.notes })
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
