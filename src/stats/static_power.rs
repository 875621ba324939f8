//! Static (leakage) energy: the cores a network occupies on a chip, from the feasibility mapping,
//! leaking for as long as the steps take. A term of its own, beside the dynamic figures.

use serde::{Deserialize, Serialize};

use super::energy::{EnergyModel, StaticPower};
use crate::feasibility::{map, MapOptions, Profile};
use crate::snn::Network;

/// Static energy per input at one checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StaticRow {
    /// Timesteps.
    pub timesteps: usize,
    /// Picojoules leaked per input over those steps.
    pub static_pj: f64,
}

/// The static term of a cost model for one network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StaticEnergy {
    /// The figures and their sources.
    pub power: StaticPower,
    /// The chip the mapping placed the network on.
    pub chip: String,
    /// Cores the mapping uses (over all chips).
    pub cores: u64,
    /// Chips the mapping uses.
    pub chips: u64,
    /// Whether every population fits the chip's limits (the cores are counted either way).
    pub fits: bool,
    /// Per checkpoint.
    pub checkpoints: Vec<StaticRow>,
}

/// The static term of `model` for `network` at each of `checkpoints` (None: the model gives no
/// static figure). The network is mapped as `signgd feasibility --target` maps it, with a
/// real-valued encoder and no measured rates.
pub fn static_energy(model: &EnergyModel, network: &Network, checkpoints: &[usize]) -> Option<StaticEnergy> {
    let power = model.static_power.clone()?;
    let profile = Profile::bundled(&power.target).ok()?;
    let placed = map(network, &profile, &MapOptions::default());
    Some(StaticEnergy {
        chip: placed.chip,
        cores: placed.cores,
        chips: placed.chips,
        fits: placed.fits,
        checkpoints: checkpoints
            .iter()
            .map(|&t| StaticRow { timesteps: t, static_pj: power.pj(placed.cores, t as u64) })
            .collect(),
        power,
    })
}
