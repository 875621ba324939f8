//! Neuromorphic feasibility: will a converted network fit Loihi, Loihi 2, TrueNorth, SpiNNaker
//! or Speck?
//!
//! [`profile`] loads a chip's limits (bundled from `hardware/*.json`, or a user's file);
//! [`mapper`] places every population on cores within those limits, counts cores and chips,
//! lists each limit no split can cure, and says which of the method's needs (real-valued input,
//! two-operand neurons, the per-step drive, relays) the chip does not give; [`quantize`] rounds
//! the weights as a chip with N-bit weights would store them.

pub mod mapper;
pub mod profile;
pub mod quantize;

use std::fmt;

use serde::Serialize;

pub use mapper::{kernel_memory, map, neuron_memory, LayerMemory, MapOptions, Mapper};
pub use profile::{Profile, ProfileError};

/// A limit that no split of a population over cores can cure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Violation {
    /// The population (or `readout`, or `(whole network)`).
    pub population: String,
    /// Which limit.
    pub limit: String,
    /// The chip's value of that limit.
    pub limit_value: u64,
    /// The largest value the population needs.
    pub value: u64,
    /// How many neurons break it (the population's size for whole-population limits).
    pub neurons: usize,
    /// What would make it fit.
    pub suggestion: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "population `{}`: {} is {}, needs {} ({} neuron(s)); {}",
            self.population, self.limit, self.limit_value, self.value, self.neurons, self.suggestion
        )
    }
}

/// Something the method needs from a chip.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Requirement {
    /// What is needed.
    pub need: String,
    /// The populations that need it.
    pub populations: Vec<String>,
    /// Whether the chip gives it.
    pub met: bool,
    /// How the chip gives it, or what to do instead.
    pub how: String,
}

/// Where one population went.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PopulationPlacement {
    /// Name.
    pub name: String,
    /// Neuron kind (`decoder` for the readout).
    pub kind: String,
    /// Neurons.
    pub neurons: usize,
    /// Compartments one neuron takes.
    pub compartments_per_neuron: u64,
    /// Cores it occupies.
    pub cores: usize,
    /// Cores of splitter neurons that copy its spikes to more destination cores than one neuron
    /// may reach (TrueNorth); counted in the target's cores.
    pub splitter_cores: usize,
    /// Synaptic events per 1 ms step of its busiest core, from the simulated rates (chips with
    /// an events limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_per_ms_per_core: Option<f64>,
    /// Largest number of distinct source neurons of one neuron.
    pub max_fan_in: u32,
    /// Largest number of synapses reaching one neuron.
    pub max_synapses_per_neuron: u64,
    /// Synapses reaching the population.
    pub synapses: u64,
    /// Synaptic memory the population takes under the chip's memory rule, in bytes, over all
    /// its cores.
    pub memory_bytes: u64,
    /// The fullest of its cores: memory used over the core's memory (0 when it has no core).
    pub memory_utilisation: f64,
    /// The core of its chip it is assigned to (chips that hold one layer per core).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core: Option<usize>,
    /// sinabs's kernel, neuron and bias memory (DYNAP-CNN chips, Speck), in entries.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub layer_memory: Option<LayerMemory>,
}

/// The feasibility of one network on one chip.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TargetReport {
    /// Profile name.
    pub target: String,
    /// Chip name.
    pub chip: String,
    /// Where the limits come from.
    pub source: String,
    /// Whether every population fits (no violation).
    pub fits: bool,
    /// Whether the chip gives everything the method needs.
    pub method_supported: bool,
    /// Cores used.
    pub cores: u64,
    /// Chips used.
    pub chips: u64,
    /// Cores per chip.
    pub cores_per_chip: u64,
    /// Per population.
    pub populations: Vec<PopulationPlacement>,
    /// Limits no split cures.
    pub violations: Vec<Violation>,
    /// The method's needs.
    pub requirements: Vec<Requirement>,
}

impl TargetReport {
    /// The violation to name first: the one that breaks its limit by the largest factor.
    pub fn main_violation(&self) -> Option<&Violation> {
        self.violations.iter().max_by(|a, b| {
            let ra = a.value as f64 / a.limit_value.max(1) as f64;
            let rb = b.value as f64 / b.limit_value.max(1) as f64;
            ra.total_cmp(&rb)
        })
    }
}
