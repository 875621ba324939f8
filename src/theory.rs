//! The paper's first result, checkable: an IF neuron with reset by subtraction is the
//! subgradient method with step 1/(t+1) on `max(0, x/θ − y) + y²/2` (SPEC.md §1).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::snn::neuron::IfNeuron;

/// Settings of an equivalence check.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct TheoryConfig {
    /// Number of random neurons (threshold, initial membrane and input current sequence).
    pub trials: usize,
    /// Steps per trial.
    pub steps: usize,
    /// Seed of the random inputs.
    pub seed: u64,
}

/// Outcome of an equivalence check.
#[derive(Clone, Debug, Serialize)]
pub struct TheoryReport {
    /// The settings.
    pub config: TheoryConfig,
    /// Trials whose two spike trains agree at every step.
    pub identical_trials: usize,
    /// Spikes emitted by the IF neurons, over all trials.
    pub if_spikes: u64,
    /// Spikes emitted by the subgradient method, over all trials.
    pub subgradient_spikes: u64,
    /// The first disagreement as (trial, step), if any.
    pub first_mismatch: Option<(usize, usize)>,
}

impl TheoryReport {
    /// Whether every trial gave identical spike trains.
    pub fn all_identical(&self) -> bool {
        self.identical_trials == self.config.trials
    }
}

/// The subgradient method of SPEC.md §1 written as a neuron: running input mean `x~`,
/// estimate `f~`, step `1/(t+1)`.
#[derive(Clone, Copy, Debug)]
pub struct SubgradientNeuron {
    threshold: f64,
    input_sum: f64,
    estimate: f64,
    t: usize,
}

impl SubgradientNeuron {
    /// Starts with `f~_0 = 1 − u0/θ`, the value that matches an IF neuron with membrane `u0`.
    pub fn new(threshold: f64, u0: f64) -> Self {
        SubgradientNeuron { threshold, input_sum: 0.0, estimate: 1.0 - u0 / threshold, t: 0 }
    }

    /// One step: `s_t = [x~_t/θ ≥ f~_{t−1}]`, then `f~_t = f~_{t−1} − (f~_{t−1} − s_t)/(t+1)`.
    pub fn step(&mut self, current: f64) -> bool {
        self.t += 1;
        self.input_sum += current;
        let t = self.t as f64;
        let mean = self.input_sum / t;
        let spike = mean / self.threshold >= self.estimate;
        let s = if spike { 1.0 } else { 0.0 };
        self.estimate -= (self.estimate - s) / (t + 1.0);
        spike
    }
}

/// Runs IF neurons and the subgradient method side by side on random inputs.
pub fn check_if_equivalence(config: TheoryConfig) -> TheoryReport {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut report =
        TheoryReport { config, identical_trials: 0, if_spikes: 0, subgradient_spikes: 0, first_mismatch: None };
    for trial in 0..config.trials {
        let threshold = rng.gen_range(0.25..4.0);
        let u0 = rng.gen_range(0.0..threshold);
        let bias = rng.gen_range(-0.5..1.5) * threshold;
        let noise = rng.gen_range(0.0..2.0) * threshold;
        let mut if_neuron = IfNeuron::new(threshold, u0);
        let mut subgradient = SubgradientNeuron::new(threshold, u0);
        let mut identical = true;
        for step in 1..=config.steps {
            let current = bias + noise * rng.gen_range(-1.0..1.0);
            let a = if_neuron.step(current);
            let b = subgradient.step(current);
            report.if_spikes += a as u64;
            report.subgradient_spikes += b as u64;
            if a != b && identical {
                identical = false;
                report.first_mismatch.get_or_insert((trial, step));
            }
        }
        report.identical_trials += identical as usize;
    }
    report
}
