//! A structural summary of a spiking network: populations, operands, synapse blocks, fan-in and
//! fan-out. What `signgd inspect` prints and reports embed.

use serde::Serialize;

use super::{Network, Operand, Projection, Source};

/// One projection's structure.
#[derive(Clone, Debug, Serialize)]
pub struct ProjectionSummary {
    /// Source name (`input` or the population's name).
    pub source: String,
    /// Block kind: `sparse`, `conv` or `diagonal`.
    pub block: String,
    /// Synapses (connections), counting a convolution's kernel once per position it applies.
    pub synapses: u64,
    /// Weights stored in memory.
    pub stored_weights: usize,
    /// Largest number of synapses reaching one target neuron.
    pub max_fan_in: u32,
    /// Largest number of synapses leaving one source neuron.
    pub max_fan_out: u32,
}

/// One population's structure.
#[derive(Clone, Debug, Serialize)]
pub struct PopulationSummary {
    /// Name.
    pub name: String,
    /// Neuron kind.
    pub kind: String,
    /// Activation shape.
    pub shape: Vec<usize>,
    /// Number of neurons.
    pub neurons: usize,
    /// Per operand, its projections.
    pub operands: Vec<Vec<ProjectionSummary>>,
}

/// The whole network's structure.
#[derive(Clone, Debug, Serialize)]
pub struct NetworkSummary {
    /// Input shape.
    pub input_shape: Vec<usize>,
    /// Output shape.
    pub output_shape: Vec<usize>,
    /// Populations in simulation order.
    pub populations: Vec<PopulationSummary>,
    /// The readout's projections.
    pub readout: Vec<ProjectionSummary>,
    /// Total neurons (relays are not neurons and are not counted).
    pub neurons: usize,
    /// Relay populations (real-valued accumulators) among the populations.
    pub relays: usize,
    /// Total synapses.
    pub synapses: u64,
    /// Total stored weights.
    pub stored_weights: usize,
}

impl NetworkSummary {
    /// Summarises `network`.
    pub fn of(network: &Network) -> Self {
        let name = |s: Source| match s {
            Source::Input => "input".to_string(),
            Source::Population(p) => network.populations[p].name.clone(),
        };
        let operand = |o: &Operand| o.projections.iter().map(|p| projection(p, name(p.source))).collect::<Vec<_>>();
        let populations: Vec<PopulationSummary> = network
            .populations
            .iter()
            .map(|p| PopulationSummary {
                name: p.name.clone(),
                kind: p.kind.name(),
                shape: p.shape.clone(),
                neurons: p.size(),
                operands: p.operands.iter().map(operand).collect(),
            })
            .collect();
        let readout = operand(&network.readout);
        let all = populations.iter().flat_map(|p| p.operands.iter().flatten()).chain(&readout);
        let (synapses, stored_weights) = all.fold((0, 0), |(s, w), p| (s + p.synapses, w + p.stored_weights));
        NetworkSummary {
            input_shape: network.input_shape.clone(),
            output_shape: network.output_shape.clone(),
            neurons: populations.iter().filter(|p| p.kind != "relay").map(|p| p.neurons).sum(),
            relays: populations.iter().filter(|p| p.kind == "relay").count(),
            populations,
            readout,
            synapses,
            stored_weights,
        }
    }
}

fn projection(projection: &Projection, source: String) -> ProjectionSummary {
    let block = &projection.block;
    // An overlapping block's synapses are those of another block, counted there.
    let (fan_out, fan_in) = match projection.overlap {
        true => (Vec::new(), Vec::new()),
        false => (block.fan_out(), block.fan_in()),
    };
    ProjectionSummary {
        source,
        block: if projection.overlap { format!("{} (overlap)", block.kind_name()) } else { block.kind_name().into() },
        synapses: fan_out.iter().map(|&f| f as u64).sum(),
        stored_weights: block.stored_weights(),
        max_fan_in: fan_in.into_iter().max().unwrap_or(0),
        max_fan_out: fan_out.into_iter().max().unwrap_or(0),
    }
}
