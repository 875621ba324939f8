//! The IF neuron is the subgradient method (SPEC.md §1): identical spike trains on random inputs.

use signgd::snn::neuron::IfNeuron;
use signgd::theory::{check_if_equivalence, SubgradientNeuron, TheoryConfig};

#[test]
fn if_equals_subgradient_over_2000_trials_of_200_steps() {
    for seed in [0, 1, 2] {
        let report = check_if_equivalence(TheoryConfig { trials: 2000, steps: 200, seed });
        assert!(report.all_identical(), "seed {seed}: first mismatch {:?}", report.first_mismatch);
        assert_eq!(report.identical_trials, 2000);
        assert_eq!(report.if_spikes, report.subgradient_spikes);
        // Inputs are drawn so that neurons both fire and stay silent.
        assert!(report.if_spikes > 2000 * 200 / 10 && report.if_spikes < 2000 * 200 * 9 / 10, "{}", report.if_spikes);
    }
}

#[test]
fn a_different_initial_estimate_breaks_the_equivalence() {
    // The check can fail: the subgradient method started from the wrong f~_0 disagrees.
    let mut if_neuron = IfNeuron::new(1.0, 0.9);
    let mut wrong = SubgradientNeuron::new(1.0, 0.0);
    let differ = (0..50).map(|i| 0.3 + 0.01 * i as f64).any(|c| if_neuron.step(c) != wrong.step(c));
    assert!(differ);
}
