//! Statistics a user expects from a simulation (DESIGN.md, "Statistics a user expects"): the
//! engine's exact counters per population and checkpoint, the counts derived from the network's
//! structure (drive additions, nonlinearity evaluations, memory traffic), the ANN's
//! multiply-accumulates per layer, and energy estimates from cost tables ([`energy`]), with a
//! chip's static (leakage) energy as a term of its own ([`static_power`]).
//!
//! What the engine counts as it runs (integer sums, identical for any thread count): spikes,
//! synaptic events delivered into a population (each arriving spike times its fan-out into that
//! population), dense multiply-accumulates (real values read from the encoder or from a relay)
//! and neuron updates. Everything else follows from the structure, so it costs nothing while the
//! simulation runs:
//!
//! - drive additions: every neuron of a neuron population charges every operand every step
//!   (`x ← x − η_t (2 (A u + c) − o)`): neurons × operands × steps; the readout charges its
//!   decoded output the same way: outputs × steps;
//! - nonlinearity evaluations: every neuron evaluates its spike function every step: neurons ×
//!   steps;
//! - state memory: a neuron update reads and writes the neuron's state, one word per operand
//!   estimate and one for v (operands + 1 words each way); a dense MAC also reads the real value
//!   it multiplies; a relay writes its value every step; the readout reads and writes y;
//! - constants: a neuron update reads the constants c and o of each operand estimate it charges
//!   (2 words per operand), the readout those of each output every step;
//! - weight memory: every synaptic event and every dense MAC reads one weight.
//!
//! The engine also tells apart the dense MACs that read the real-valued encoder (`encoder_macs`,
//! charged every step as counted, or once per input under the encoder-once convention) and the
//! events and MACs of a product that another operand receiving the same block from the same
//! source already computed in that step (`shared_events`, `shared_macs`: charged per receiver as
//! counted, or once under the shared-once convention); see [`energy::Conventions`].
//!
//! Accumulators are registers: adding into them is not a memory access. Relays and the readout
//! have no neurons; they appear in event, MAC, memory and energy figures but not in firing rates.

pub mod energy;
pub mod observe;
pub mod significance;
pub mod static_power;

use serde::{Deserialize, Serialize};

use crate::engine::{ActivityCounts, Counters};
use crate::model::{Graph, Op};
use crate::snn::Network;

/// What a row of the statistics stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A population of signGD (or IF) neurons.
    Neurons,
    /// A relay: a real-valued linear combination of sources, no neurons.
    Relay,
    /// The decoder of the network's final affine map.
    Readout,
}

/// Structure of one population (or the readout), as the statistics need it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PopulationInfo {
    /// Index in the network (`None` for the readout).
    pub index: Option<usize>,
    /// Name (the ANN node it replaces, `….relay`, or `readout`).
    pub name: String,
    /// Neuron kind (`relay` and `readout` for those).
    pub kind: String,
    /// What the row stands for.
    pub role: Role,
    /// Number of neurons (0 for relays and the readout).
    pub neurons: u64,
    /// Number of elements (neurons, relay values or decoded outputs).
    pub size: u64,
    /// Operands per neuron.
    pub operands: u64,
    /// Synapses reaching this population.
    pub synapses: u64,
    /// Weights stored for the synapses reaching this population.
    pub stored_weights: u64,
    /// Words of state the population keeps: per neuron one per operand estimate, one for v and
    /// the two constants c and o of each operand; one per relay value; y, c and o per output of
    /// the readout. Sizes the memory it is placed in.
    #[serde(default)]
    pub state_words: u64,
}

impl PopulationInfo {
    /// Whether the row has neurons (firing rates, rasters and error plots apply).
    pub fn has_neurons(&self) -> bool {
        self.role == Role::Neurons
    }
}

/// The structure of every population in network order, the readout last.
pub fn population_infos(network: &Network) -> Vec<PopulationInfo> {
    let weights = |operands: &[&crate::snn::Operand]| -> (u64, u64) {
        let mut synapses = 0u64;
        let mut stored = 0u64;
        for projection in operands.iter().flat_map(|o| &o.projections) {
            if !projection.overlap {
                synapses += projection.block.synapses();
            }
            stored += projection.block.stored_weights() as u64;
        }
        (synapses, stored)
    };
    let mut rows: Vec<PopulationInfo> = network
        .populations
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let relay = p.kind.is_relay();
            let (synapses, stored_weights) = weights(&p.operands.iter().collect::<Vec<_>>());
            PopulationInfo {
                index: Some(index),
                name: p.name.clone(),
                kind: p.kind.name(),
                role: if relay { Role::Relay } else { Role::Neurons },
                neurons: if relay { 0 } else { p.size() as u64 },
                size: p.size() as u64,
                operands: if relay { 0 } else { p.kind.arity() as u64 },
                synapses,
                stored_weights,
                state_words: if relay { p.size() as u64 } else { p.size() as u64 * (3 * p.kind.arity() as u64 + 1) },
            }
        })
        .collect();
    let (synapses, stored_weights) = weights(&[&network.readout]);
    rows.push(PopulationInfo {
        index: None,
        name: "readout".into(),
        kind: "readout".into(),
        role: Role::Readout,
        neurons: 0,
        size: network.output_size() as u64,
        operands: 1,
        synapses,
        stored_weights,
        state_words: 3 * network.output_size() as u64,
    });
    rows
}

/// Every count of one population (or the readout) up to a checkpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Spikes emitted (s = 1).
    pub spikes: u64,
    /// Binary synaptic events delivered into the population (spikes × fan-out).
    pub synaptic_events: u64,
    /// Real-valued multiply-accumulates (inputs from a real-valued encoder or a relay).
    pub dense_macs: u64,
    /// Per-step charges of operand estimates by their constant drive and accumulated input.
    pub drive_additions: u64,
    /// Neuron updates (counted by the engine).
    pub neuron_updates: u64,
    /// Evaluations of the neurons' spike functions.
    pub nonlinearity_evaluations: u64,
    /// Words of neuron state (and real values read by dense MACs) read.
    pub state_reads: u64,
    /// Words of neuron state written.
    pub state_writes: u64,
    /// Weights read (one per synaptic event and per dense MAC).
    pub weight_reads: u64,
    /// Constant words (c and o of each operand estimate) read by neuron updates and the readout.
    #[serde(default)]
    pub constant_reads: u64,
    /// The part of `dense_macs` that reads the real-valued encoder.
    #[serde(default)]
    pub encoder_macs: u64,
    /// The part of `synaptic_events` whose product another receiver computed in the same step.
    #[serde(default)]
    pub shared_events: u64,
    /// The part of `dense_macs` whose product another receiver computed in the same step.
    #[serde(default)]
    pub shared_macs: u64,
}

/// The same counts divided by the number of inputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CountsPerInput {
    /// Spikes emitted.
    pub spikes: f64,
    /// Synaptic events delivered.
    pub synaptic_events: f64,
    /// Dense multiply-accumulates.
    pub dense_macs: f64,
    /// Drive additions.
    pub drive_additions: f64,
    /// Neuron updates.
    pub neuron_updates: f64,
    /// Nonlinearity evaluations.
    pub nonlinearity_evaluations: f64,
    /// State words read.
    pub state_reads: f64,
    /// State words written.
    pub state_writes: f64,
    /// Weights read.
    pub weight_reads: f64,
    /// Constant words read.
    #[serde(default)]
    pub constant_reads: f64,
    /// Dense MACs reading the encoder.
    #[serde(default)]
    pub encoder_macs: f64,
    /// Synaptic events of a product another receiver computed in the same step.
    #[serde(default)]
    pub shared_events: f64,
    /// Dense MACs of a product another receiver computed in the same step.
    #[serde(default)]
    pub shared_macs: f64,
}

impl Counts {
    /// Adds another set of counts.
    pub fn accumulate(&mut self, o: &Counts) {
        self.spikes += o.spikes;
        self.synaptic_events += o.synaptic_events;
        self.dense_macs += o.dense_macs;
        self.drive_additions += o.drive_additions;
        self.neuron_updates += o.neuron_updates;
        self.nonlinearity_evaluations += o.nonlinearity_evaluations;
        self.state_reads += o.state_reads;
        self.state_writes += o.state_writes;
        self.weight_reads += o.weight_reads;
        self.constant_reads += o.constant_reads;
        self.encoder_macs += o.encoder_macs;
        self.shared_events += o.shared_events;
        self.shared_macs += o.shared_macs;
    }

    /// Averages over `inputs` inputs.
    pub fn per_input(&self, inputs: u64) -> CountsPerInput {
        let n = inputs.max(1) as f64;
        CountsPerInput {
            spikes: self.spikes as f64 / n,
            synaptic_events: self.synaptic_events as f64 / n,
            dense_macs: self.dense_macs as f64 / n,
            drive_additions: self.drive_additions as f64 / n,
            neuron_updates: self.neuron_updates as f64 / n,
            nonlinearity_evaluations: self.nonlinearity_evaluations as f64 / n,
            state_reads: self.state_reads as f64 / n,
            state_writes: self.state_writes as f64 / n,
            weight_reads: self.weight_reads as f64 / n,
            constant_reads: self.constant_reads as f64 / n,
            encoder_macs: self.encoder_macs as f64 / n,
            shared_events: self.shared_events as f64 / n,
            shared_macs: self.shared_macs as f64 / n,
        }
    }

    /// Memory reads of every kind.
    pub fn memory_reads(&self) -> u64 {
        self.state_reads + self.weight_reads + self.constant_reads
    }
}

/// Derives every count of `info` from the engine's counts `activity`, after `steps` steps of
/// `inputs` inputs.
pub fn derive(info: &PopulationInfo, activity: &ActivityCounts, steps: u64, inputs: u64) -> Counts {
    let (elements, operands) = (info.size, info.operands);
    let repetitions = steps * inputs;
    let mut counts = Counts {
        spikes: activity.spikes,
        synaptic_events: activity.synaptic_events,
        dense_macs: activity.dense_macs,
        neuron_updates: activity.neuron_updates,
        weight_reads: activity.synaptic_events + activity.dense_macs,
        state_reads: activity.dense_macs,
        encoder_macs: activity.encoder_macs,
        shared_events: activity.shared_events,
        shared_macs: activity.shared_macs,
        ..Counts::default()
    };
    match info.role {
        Role::Neurons => {
            counts.drive_additions = elements * operands * repetitions;
            counts.nonlinearity_evaluations = elements * repetitions;
            counts.state_reads += activity.neuron_updates * (operands + 1);
            counts.state_writes = activity.neuron_updates * (operands + 1);
            counts.constant_reads = activity.neuron_updates * operands * 2;
        }
        Role::Relay => {
            counts.state_writes = elements * repetitions;
        }
        Role::Readout => {
            counts.drive_additions = elements * repetitions;
            counts.state_reads += elements * repetitions;
            counts.state_writes = elements * repetitions;
            counts.constant_reads = elements * repetitions * 2;
        }
    }
    counts
}

/// Every count per checkpoint and population: `[checkpoint][population]`, the readout last (as
/// [`population_infos`] lists them).
pub fn derive_all(
    infos: &[PopulationInfo],
    counters: &Counters,
    checkpoints: &[usize],
    inputs: u64,
) -> Vec<Vec<Counts>> {
    counters
        .at_checkpoints
        .iter()
        .zip(checkpoints)
        .map(|(row, &steps)| infos.iter().zip(row).map(|(info, a)| derive(info, a, steps as u64, inputs)).collect())
        .collect()
}

/// Spikes per neuron per step (`None` for rows without neurons).
pub fn firing_rate(info: &PopulationInfo, counts: &Counts, steps: u64, inputs: u64) -> Option<f64> {
    let slots = info.neurons * steps * inputs;
    (info.has_neurons() && slots > 0).then(|| counts.spikes as f64 / slots as f64)
}

/// Sum over populations (and the readout).
pub fn total(row: &[Counts]) -> Counts {
    let mut t = Counts::default();
    row.iter().for_each(|c| t.accumulate(c));
    t
}

/// One ANN layer's arithmetic and memory traffic for one inference.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AnnLayer {
    /// Node name.
    pub name: String,
    /// Operator.
    pub op: String,
    /// Output elements.
    pub outputs: u64,
    /// Multiply-accumulates (Conv, Gemm, MatMul).
    pub macs: u64,
    /// Other arithmetic operations (elementwise ops, bias additions, reductions, normalisation).
    pub elementwise_ops: u64,
    /// Weights read (one per MAC; constant operands of elementwise ops one per op).
    pub weight_reads: u64,
    /// Activation values read (one per MAC, one per operand of an elementwise op).
    pub activation_reads: u64,
    /// Activation values written (the output elements of every computing layer).
    pub activation_writes: u64,
    /// Parameters the layer holds (elements of its constant inputs).
    #[serde(default)]
    pub weights: u64,
    /// Activation elements the layer reads or writes (its non-constant inputs and its output).
    #[serde(default)]
    pub activations: u64,
    /// Weights read when each is read once per layer (per-layer reuse): the layer's parameters.
    #[serde(default)]
    pub reuse_weight_reads: u64,
    /// Activations read when each is read once per layer: the elements of its non-constant inputs.
    #[serde(default)]
    pub reuse_activation_reads: u64,
    /// Multiply-accumulates a convolution's kernel would do on zero padding; not in `macs`.
    #[serde(default)]
    pub padding_macs: u64,
}

/// The ANN's layers with their cost per inference. Data movement (reshape, transpose, slice,
/// gather, concat, pad, expand) is free: a view or an address computation.
///
/// Conv: out elements × in_channels/groups × kh × kw MACs (+ out elements bias additions);
/// Gemm / MatMul: out elements × K MACs (+ bias additions for Gemm's C); elementwise ops one op per
/// output element; Softmax 3 (exp, sum, division), LayerNorm 5 (mean, centring, square-sum,
/// scaling, affine), BatchNorm 2 per element; reductions and pooling one op per element read.
pub fn ann_layers(graph: &Graph) -> Vec<AnnLayer> {
    let elements = |v: usize| graph.values.get(v).map_or(0, |v| v.shape.iter().product::<usize>() as u64);
    let constant = |v: usize| graph.is_constant(v);
    let mut layers = Vec::new();
    for node in &graph.nodes {
        let out = elements(node.output);
        let shape = |i: usize| node.inputs.get(i).and_then(|&v| graph.values.get(v)).map(|v| v.shape.clone());
        let mut layer =
            AnnLayer { name: node.name.clone(), op: node.op.name().to_string(), outputs: out, ..Default::default() };
        let elementwise = |layer: &mut AnnLayer, per_element: u64| {
            layer.elementwise_ops += out * per_element;
            for &v in &node.inputs {
                if constant(v) {
                    layer.weight_reads += out;
                } else {
                    layer.activation_reads += out;
                }
            }
            layer.activation_writes += out;
        };
        match &node.op {
            Op::Conv { strides, pads, dilations, .. } => {
                // weight [M, C/groups, kh, kw]: each output reads C/groups × kh × kw inputs, of
                // which those on zero padding are not multiplied.
                let w = shape(1).unwrap_or_default();
                let per_output = w.iter().skip(1).product::<usize>() as u64;
                weighted_layer(&mut layer, out, per_output, node.inputs.len() > 2);
                let x = shape(0).unwrap_or_default();
                let y = graph.values.get(node.output).map(|v| v.shape.clone()).unwrap_or_default();
                if let (4, 4, 4) = (x.len(), w.len(), y.len()) {
                    let taps = |axis: usize| {
                        valid_taps(x[2 + axis], w[2 + axis], y[2 + axis], strides[axis], pads[axis], dilations[axis])
                    };
                    let (valid, full) = (taps(0).0 * taps(1).0, taps(0).1 * taps(1).1);
                    if full > 0 {
                        let positions = (y[2] * y[3]) as u64;
                        let macs = out / positions.max(1) * w[1] as u64 * valid;
                        layer.padding_macs = layer.macs - macs;
                        layer.macs = macs;
                        layer.weight_reads -= layer.padding_macs;
                        layer.activation_reads -= layer.padding_macs;
                    }
                }
            }
            Op::Gemm { trans_a, .. } => {
                let a = shape(0).unwrap_or_default();
                let k = if *trans_a { a.first() } else { a.get(1) }.copied().unwrap_or(1) as u64;
                weighted_layer(&mut layer, out, k, node.inputs.len() > 2);
            }
            Op::MatMul => {
                let a = shape(0).unwrap_or_default();
                let k = a.last().copied().unwrap_or(1) as u64;
                layer.macs = out * k;
                let both_activations = node.inputs.iter().all(|&v| !constant(v));
                if both_activations {
                    layer.activation_reads = 2 * layer.macs;
                } else {
                    layer.weight_reads = layer.macs;
                    layer.activation_reads = layer.macs;
                }
                layer.activation_writes = out;
            }
            op if op.is_elementwise() => elementwise(&mut layer, 1),
            Op::Softmax { .. } => elementwise(&mut layer, 3),
            Op::LayerNorm { .. } => elementwise(&mut layer, 5),
            Op::BatchNorm { .. } => elementwise(&mut layer, 2),
            Op::ReduceMean { .. } | Op::ReduceSum { .. } | Op::GlobalAveragePool => {
                let read = node.inputs.first().map_or(0, |&v| elements(v));
                layer.elementwise_ops = read;
                layer.activation_reads = read;
                layer.activation_writes = out;
            }
            Op::AveragePool { kernel, .. } | Op::MaxPool { kernel, .. } => {
                let window = (kernel[0] * kernel[1]) as u64;
                layer.elementwise_ops = out * window;
                layer.activation_reads = out * window;
                layer.activation_writes = out;
            }
            // Data movement (reshape, transpose, slice, gather, pad, concat, expand): no arithmetic.
            _ => {}
        }
        if layer.macs + layer.elementwise_ops > 0 {
            for &v in &node.inputs {
                if constant(v) {
                    layer.weights += elements(v);
                } else {
                    layer.activations += elements(v);
                    layer.reuse_activation_reads += elements(v);
                }
            }
            layer.activations += out;
            layer.reuse_weight_reads = layer.weights;
        }
        layers.push(layer);
    }
    layers
}

/// Costs of a layer with constant weights: `inputs_per_output` MACs per output, each reading a
/// weight and an activation, plus one bias addition per output when there is a bias.
fn weighted_layer(layer: &mut AnnLayer, outputs: u64, inputs_per_output: u64, bias: bool) {
    layer.macs = outputs * inputs_per_output;
    layer.weight_reads = layer.macs;
    layer.activation_reads = layer.macs;
    if bias {
        layer.elementwise_ops = outputs;
        layer.weight_reads += outputs;
    }
    layer.activation_writes = outputs;
}

/// For one spatial axis of a convolution: (kernel taps that fall inside the input, all taps),
/// summed over the output positions.
fn valid_taps(input: usize, kernel: usize, output: usize, stride: usize, pad: usize, dilation: usize) -> (u64, u64) {
    let mut valid = 0u64;
    for o in 0..output {
        for k in 0..kernel {
            let at = (o * stride + k * dilation) as i64 - pad as i64;
            if at >= 0 && (at as usize) < input {
                valid += 1;
            }
        }
    }
    (valid, (output * kernel) as u64)
}

/// Sum of the ANN layers.
pub fn ann_total(layers: &[AnnLayer]) -> AnnLayer {
    let mut t = AnnLayer { name: "total".into(), op: "-".into(), ..Default::default() };
    for l in layers {
        t.outputs += l.outputs;
        t.macs += l.macs;
        t.elementwise_ops += l.elementwise_ops;
        t.weight_reads += l.weight_reads;
        t.activation_reads += l.activation_reads;
        t.activation_writes += l.activation_writes;
        t.weights += l.weights;
        t.activations += l.activations;
        t.reuse_weight_reads += l.reuse_weight_reads;
        t.reuse_activation_reads += l.reuse_activation_reads;
        t.padding_macs += l.padding_macs;
    }
    t
}
