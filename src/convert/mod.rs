//! ANN-to-SNN conversion: a sequence of graph passes (SPEC.md §4), each its own module, ending
//! in the lowering that builds the spiking network.

pub mod affine;
pub mod batchnorm;
pub mod calibrate;
pub mod compose;
pub mod divsqrt;
pub mod layernorm;
pub mod linear;
pub mod lower;
pub mod matmul;
pub mod maxpool;
pub mod relu_norm;
pub mod softmax;
pub mod verify;

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use ndarray::ArrayD;
use thiserror::Error;

use crate::data::{Arrays, DataError, InputSource};
use crate::model::{Graph, ModelError, Node};
use crate::snn::{GeluTarget, Network};

/// Why a graph cannot be converted.
#[derive(Debug, Error)]
pub enum ConvertError {
    /// A node that cannot become neurons or synapses.
    #[error("node `{node}` ({op}): {problem}; {hint}")]
    Node {
        /// Node name.
        node: String,
        /// Its operator.
        op: String,
        /// What is wrong.
        problem: String,
        /// What to do.
        hint: String,
    },
    /// A problem with the graph as a whole.
    #[error("{0}")]
    Graph(String),
    /// The model evaluator failed (calibration).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A calibration input could not be read.
    #[error("calibration input: {0}")]
    Calibration(#[from] DataError),
}

impl ConvertError {
    /// An error about `node`.
    pub fn node(node: &Node, problem: &str, hint: &str) -> Self {
        ConvertError::Node {
            node: node.name.clone(),
            op: node.op.name().to_string(),
            problem: problem.to_string(),
            hint: hint.to_string(),
        }
    }
}

/// Settings of a conversion.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// Target function of GELU neurons.
    pub gelu: GeluTarget,
    /// Calibration inputs for ReLU normalisation, read one at a time as the maxima are taken.
    pub calibration: CalibrationSet,
    /// Worker threads evaluating the calibration inputs (the maxima do not depend on it).
    pub threads: usize,
    /// Told of calibration inputs as they are evaluated.
    pub progress: Option<Progress>,
    /// Over what the ReLU maxima of normalisation are taken (with [`Preset::Calibrated`], every
    /// population's maxima).
    pub relu_norm: ReluNorm,
    /// The method's dynamics or calibrated ones.
    pub preset: Preset,
}

/// Which dynamics the conversion sets up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Preset {
    /// The method as published: only ReLU outputs normalised (SPEC.md §4).
    #[default]
    Reference,
    /// Every population scaled by its own operating range on the calibration inputs
    /// (see [`calibrate`]).
    Calibrated,
}

/// Over what ReLU normalisation takes its calibration maxima.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReluNorm {
    /// One maximum per element (the method's normalisation).
    #[default]
    Element,
    /// One maximum per channel (axis 1 of a map `[N, C, H, W]`, the last axis of tokens
    /// `[N, T, F]`, per element of a vector): a convolution's kernel stays shared over positions.
    Channel,
    /// One maximum per ReLU node: one threshold per layer.
    Layer,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            gelu: GeluTarget::Sigmoid,
            calibration: CalibrationSet::default(),
            threads: 1,
            progress: None,
            relu_norm: ReluNorm::Element,
            preset: Preset::Reference,
        }
    }
}

/// The calibration inputs of a conversion: any [`InputSource`] whose samples hold the model
/// input's values (row-major), read as the maxima are taken, so memory does not grow with their
/// number.
#[derive(Clone, Default)]
pub struct CalibrationSet(Option<Arc<dyn InputSource>>);

impl CalibrationSet {
    /// The samples of `source`.
    pub fn new(source: Arc<dyn InputSource>) -> Self {
        CalibrationSet(Some(source))
    }

    /// Number of calibration inputs.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |s| s.len())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The inputs, if any.
    pub fn source(&self) -> Option<&dyn InputSource> {
        self.0.as_deref()
    }
}

impl From<Vec<ArrayD<f64>>> for CalibrationSet {
    /// Inputs held as arrays of the model's input shape (batch axis included).
    fn from(arrays: Vec<ArrayD<f64>>) -> Self {
        CalibrationSet::new(Arc::new(Arrays::new(arrays)))
    }
}

impl fmt::Debug for CalibrationSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CalibrationSet({} inputs)", self.len())
    }
}

/// A callback given the number of inputs done since its last call (to drive a progress bar).
#[derive(Clone)]
pub struct Progress(pub Arc<dyn Fn(usize) + Send + Sync>);

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Progress(..)")
    }
}

/// The result of a conversion.
#[derive(Clone, Debug)]
pub struct Conversion {
    /// The spiking network.
    pub network: Network,
    /// The graph after all passes, just before lowering (the ANN the network reproduces).
    pub graph: Graph,
    /// What the passes did, one line each.
    pub notes: Vec<String>,
    /// Per population, the operating range calibrated dynamics gave it (empty with
    /// [`Preset::Reference`]).
    pub ranges: Vec<calibrate::PopulationRange>,
}

/// Runs every pass in the order of SPEC.md §4 and lowers the result into a spiking network.
///
/// ```
/// use std::path::Path;
/// use signgd::convert::{convert, ConvertOptions};
/// use signgd::model::read_onnx;
///
/// let graph = read_onnx(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models/mlp.onnx"), None)?;
/// let conversion = convert(&graph, &ConvertOptions::default())?;
/// assert_eq!(conversion.network.input_size(), 28 * 28);
/// assert_eq!(conversion.network.output_size(), 10);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn convert(graph: &Graph, options: &ConvertOptions) -> Result<Conversion, ConvertError> {
    check_finite(graph)?;
    let started = Instant::now();
    let mut notes = Vec::new();
    let mut graph = graph.clone();
    type Pass<'a> = &'a dyn Fn(&mut Graph, &mut Vec<String>) -> Result<(), ConvertError>;
    let centred = options.preset == Preset::Calibrated;
    let softmax = |g: &mut Graph, n: &mut Vec<String>| softmax::decompose(g, centred, n);
    let passes: [(&str, Pass); 6] = [
        ("batchnorm folding", &batchnorm::fold),
        ("max pooling", &maxpool::decompose),
        ("layer normalisation", &layernorm::decompose),
        ("softmax", &softmax),
        ("matmul", &matmul::decompose),
        ("division by square roots", &divsqrt::fuse),
    ];
    for (name, pass) in passes {
        traced_pass(name, &mut graph, &mut notes, pass)?;
    }
    let mut ranges = Vec::new();
    match options.preset {
        Preset::Reference => {
            traced_pass("ReLU normalisation", &mut graph, &mut notes, |g, n| relu_norm::normalise(g, options, n))?
        }
        Preset::Calibrated => traced_pass("calibrated ranges", &mut graph, &mut notes, |g, n| {
            ranges = calibrate::normalise(g, options, n)?;
            Ok(())
        })?,
    }
    let lowering = Instant::now();
    let network = lower::lower(&graph, options)?;
    network
        .validate()
        .map_err(|e| ConvertError::Graph(format!("internal: the converted network is malformed: {e}")))?;
    tracing::debug!(seconds = lowering.elapsed().as_secs_f64(), populations = network.populations.len(), "lowering");
    for (i, p) in network.populations.iter().enumerate() {
        let synapses: u64 = p.operands.iter().flat_map(|o| &o.projections).map(|s| s.block.synapses()).sum();
        tracing::debug!(index = i, name = %p.name, kind = %p.kind.name(), neurons = p.size(), synapses, "population");
    }
    tracing::info!(seconds = started.elapsed().as_secs_f64(), populations = network.populations.len(), "conversion");
    Ok(Conversion { network, graph, notes, ranges })
}

/// Runs one pass, with a debug event of its duration and what it did.
fn traced_pass(
    name: &str,
    graph: &mut Graph,
    notes: &mut Vec<String>,
    pass: impl FnOnce(&mut Graph, &mut Vec<String>) -> Result<(), ConvertError>,
) -> Result<(), ConvertError> {
    let started = Instant::now();
    let before = notes.len();
    pass(graph, notes)?;
    let did = if notes.len() > before { notes[before..].join("; ") } else { "nothing to do".to_string() };
    tracing::debug!(seconds = started.elapsed().as_secs_f64(), nodes = graph.nodes.len(), "pass {name}: {did}");
    Ok(())
}

/// Refuses a graph whose weights (any constant that feeds the output) hold a NaN or an infinity,
/// naming the tensor, the first bad element and a node that reads it: such a network cannot be
/// simulated, and the problem lies in the model, not in the conversion.
fn check_finite(graph: &Graph) -> Result<(), ConvertError> {
    for (id, value) in graph.values.iter().enumerate() {
        let Some(data) = &value.constant else { continue };
        let Some((flat, bad)) = data.iter_f64().enumerate().find(|(_, v)| !v.is_finite()) else { continue };
        let index = unravel(flat, data.shape());
        let reader = graph
            .nodes
            .iter()
            .find(|n| n.inputs.contains(&id))
            .map_or(String::new(), |n| format!(", read by node `{}` ({})", n.name, n.op.name()));
        return Err(ConvertError::Graph(format!(
            "weight tensor '{}' holds {bad} at index {:?}{reader}; a spiking network needs finite weights: check the trained model for NaN/infinite parameters and export it again",
            value.name,
            index
        )));
    }
    Ok(())
}

/// The multi-index of the `flat`-th element (row-major) of an array of `shape`.
fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (i, &d) in index.iter_mut().zip(shape).rev() {
        *i = flat % d;
        flat /= d;
    }
    index
}

/// Ends a pass: removes the nodes it replaced (by index), re-sorts the graph after the nodes it
/// appended, and drops what no longer feeds the output.
fn finish_pass(graph: &mut Graph, replaced: &[usize]) -> Result<(), ConvertError> {
    let mut index = 0;
    graph.nodes.retain(|_| {
        index += 1;
        !replaced.contains(&(index - 1))
    });
    graph.toposort()?;
    graph.retain_live();
    Ok(())
}
