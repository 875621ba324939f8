//! Exact activity counters filled by the engine as it simulates.

use serde::{Deserialize, Serialize};

/// What one population (or the readout) did, summed over steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityCounts {
    /// Spikes emitted (s = 1).
    pub spikes: u64,
    /// Binary synaptic events delivered into this population: each arriving spike times its
    /// fan-out into the population.
    pub synaptic_events: u64,
    /// Real-valued multiply-accumulates received from a real-valued encoder or a relay.
    pub dense_macs: u64,
    /// Neuron state updates (every neuron of a signGD population updates every step).
    pub neuron_updates: u64,
    /// The part of `dense_macs` that reads the real-valued encoder (its synapses, every step).
    #[serde(default)]
    pub encoder_macs: u64,
    /// The part of `synaptic_events` that a product shared with an operand updated earlier in the
    /// same step already holds (the engine computes a shared product once per step).
    #[serde(default)]
    pub shared_events: u64,
    /// The part of `dense_macs` that a product shared with an operand updated earlier in the same
    /// step already holds.
    #[serde(default)]
    pub shared_macs: u64,
}

impl ActivityCounts {
    /// Adds another set of counts to this one.
    pub fn accumulate(&mut self, other: &ActivityCounts) {
        self.spikes += other.spikes;
        self.synaptic_events += other.synaptic_events;
        self.dense_macs += other.dense_macs;
        self.neuron_updates += other.neuron_updates;
        self.encoder_macs += other.encoder_macs;
        self.shared_events += other.shared_events;
        self.shared_macs += other.shared_macs;
    }
}

/// Counts for every population and the readout, with a snapshot at every checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// Running counts per population, in network order.
    pub populations: Vec<ActivityCounts>,
    /// Running counts of the readout (its synaptic events and dense MACs).
    pub readout: ActivityCounts,
    /// Snapshots per checkpoint: `[checkpoint][population]`, the readout last.
    pub at_checkpoints: Vec<Vec<ActivityCounts>>,
}

impl Counters {
    /// Zeroed counters for `populations` populations and `checkpoints` checkpoints.
    pub fn new(populations: usize, checkpoints: usize) -> Self {
        Counters {
            populations: vec![ActivityCounts::default(); populations],
            readout: ActivityCounts::default(),
            at_checkpoints: vec![vec![ActivityCounts::default(); populations + 1]; checkpoints],
        }
    }

    /// Clears the running counts (not the snapshots).
    pub fn reset_running(&mut self) {
        self.populations.iter_mut().for_each(|c| *c = ActivityCounts::default());
        self.readout = ActivityCounts::default();
    }

    /// Adds the running counts to the snapshot of checkpoint `k`.
    pub fn snapshot(&mut self, k: usize) {
        let snapshot = &mut self.at_checkpoints[k];
        for (slot, counts) in snapshot.iter_mut().zip(self.populations.iter().chain([&self.readout])) {
            slot.accumulate(counts);
        }
    }

    /// Adds all snapshots of `other` (from another worker or input) to these.
    pub fn merge(&mut self, other: &Counters) {
        for (mine, theirs) in self.at_checkpoints.iter_mut().zip(&other.at_checkpoints) {
            for (a, b) in mine.iter_mut().zip(theirs) {
                a.accumulate(b);
            }
        }
    }
}

/// The accumulates the kernels performed, for speed figures (not part of the network's counts,
/// which do not depend on the kernels).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelWork {
    /// Multiply-accumulates of the batched 0/1 products: every synapse of a batched convolution
    /// whose source is not padding, every step, whether the source fired or not.
    pub product_macs: u64,
    /// Synaptic events delivered by the event-driven kernels.
    pub delivered_events: u64,
    /// Multiply-accumulates of the real-valued products computed (relays' values and an encoder
    /// that is not in closed form): a multiply and an add each, which run on separate pipes.
    pub real_macs: u64,
}

impl KernelWork {
    /// Adds another worker's work to this one.
    pub fn accumulate(&mut self, other: &KernelWork) {
        self.product_macs += other.product_macs;
        self.delivered_events += other.delivered_events;
        self.real_macs += other.real_macs;
    }
}
