//! Every counter of a small hand-built network, computed by hand from its recorded spike trace,
//! against what the engine counted and `stats` derived; identical counts for 1, 2 and 3 threads;
//! energy as counts × costs.

use signgd::engine::{Observer, SimConfig, Simulator};
use signgd::runner::simulate_inputs;
use signgd::snn::{Network, NeuronKind, Operand, Population, Source, SynapseBlock};
use signgd::stats::energy::EnergyModel;
use signgd::stats::{self, Counts, Role};
use sprs::TriMat;

fn sparse(rows: usize, cols: usize, entries: &[(usize, usize, f64)]) -> SynapseBlock {
    let mut tri = TriMat::new((rows, cols));
    for &(r, c, w) in entries {
        tri.add_triplet(r, c, w);
    }
    SynapseBlock::Sparse { matrix: tri.to_csc() }
}

/// input (3, real-valued float encoder) → `a` (2 ReLU, 5 synapses) → relay `r` (1 value, the sum
/// of `a`'s spikes) → `b` (2 ReLU, reads `a` through 3 synapses and `r` through 2) → readout (1
/// output, 2 synapses from `b`).
fn network() -> Network {
    let relu = |name: &str, operand: Operand| Population {
        name: name.into(),
        kind: NeuronKind::Relu,
        shape: vec![2],
        operands: vec![operand],
    };
    Network {
        input_shape: vec![3],
        populations: vec![
            relu(
                "a",
                Operand::new(vec![0.1, -0.05]).with(
                    Source::Input,
                    sparse(2, 3, &[(0, 0, 0.8), (0, 1, -0.3), (0, 2, 0.5), (1, 1, 0.9), (1, 2, 0.4)]),
                ),
            ),
            Population {
                name: "r".into(),
                kind: NeuronKind::Relay,
                shape: vec![1],
                operands: vec![
                    Operand::new(vec![0.0]).with(Source::Population(0), sparse(1, 2, &[(0, 0, 0.5), (0, 1, 0.5)]))
                ],
            },
            relu(
                "b",
                Operand::new(vec![0.0, 0.05])
                    .with(Source::Population(0), sparse(2, 2, &[(0, 0, 0.7), (1, 0, -0.2), (1, 1, 0.6)]))
                    .with(Source::Population(1), sparse(2, 1, &[(0, 0, 0.3), (1, 0, -0.1)])),
            ),
        ],
        readout: Operand::new(vec![0.02]).with(Source::Population(2), sparse(1, 2, &[(0, 0, 1.0), (0, 1, -0.5)])),
        output_shape: vec![1],
    }
}

fn inputs() -> Vec<Vec<f64>> {
    (0..7).map(|i| (0..3).map(|j| ((i * 5 + j * 3) % 7) as f64 / 7.0).collect()).collect()
}

const CHECKPOINTS: [usize; 2] = [3, 9];

/// The counts computed by hand: `[checkpoint][a, r, b, readout]`, summed over the inputs.
fn by_hand(net: &Network) -> Vec<[Counts; 4]> {
    let config = SimConfig::reference(CHECKPOINTS.to_vec());
    let simulator = Simulator::<f64>::new(net, &config).unwrap();
    let mut ws = simulator.workspace();
    let mut out = vec![0.0; CHECKPOINTS.len()];
    // Fan-outs: a → r: 1 each; a → b: neuron 0 reaches 2, neuron 1 reaches 1; b → readout: 1 each.
    let fan_ab = [2u64, 1];
    let mut result = vec![[Counts::default(); 4]; CHECKPOINTS.len()];
    let mut any_spike = false;
    for x in inputs() {
        // The known trace: which neurons fired, per step and population.
        let mut rec = PerStep::default();
        simulator.run(&mut ws, &x, &mut out, &mut rec).unwrap();
        assert_eq!(rec.steps.len(), 9);
        for (k, &t_k) in CHECKPOINTS.iter().enumerate() {
            let t = t_k as u64;
            let [a, r, b, readout] = &mut result[k];
            for step in &rec.steps[..t_k] {
                let (fa, fb) = (&step[0], &step[2]);
                assert!(step[1].is_empty(), "a relay never spikes");
                any_spike |= !fa.is_empty() || !fb.is_empty();
                a.spikes += fa.len() as u64;
                b.spikes += fb.len() as u64;
                // Events: each spike times its fan-out into the target.
                r.synaptic_events += fa.len() as u64;
                b.synaptic_events += fa.iter().map(|&j| fan_ab[j as usize]).sum::<u64>();
                readout.synaptic_events += fb.len() as u64;
            }
            // Dense MACs: a reads the real-valued encoder through 5 synapses, b reads the relay
            // through 2, every step.
            a.dense_macs += 5 * t;
            a.encoder_macs += 5 * t;
            b.dense_macs += 2 * t;
            for p in [&mut *a, &mut *b] {
                p.neuron_updates += 2 * t;
                p.drive_additions += 2 * t; // 2 neurons × 1 operand
                p.nonlinearity_evaluations += 2 * t;
                p.state_reads += 2 * t * 2; // x and v of 2 neurons
                p.state_writes += 2 * t * 2;
                p.constant_reads += 2 * t * 2; // c and o of 2 neurons' one operand
            }
            r.state_writes += t; // the relay's one value
            readout.drive_additions += t;
            readout.state_reads += t;
            readout.state_writes += t;
            readout.constant_reads += 2 * t;
        }
    }
    assert!(any_spike, "the test network must spike");
    for row in &mut result {
        for c in row.iter_mut() {
            c.state_reads += c.dense_macs; // the real value each dense MAC reads
            c.weight_reads = c.synaptic_events + c.dense_macs;
        }
    }
    result
}

#[derive(Default)]
struct PerStep {
    steps: Vec<Vec<Vec<u32>>>,
}

impl Observer<f64> for PerStep {
    fn population(&mut self, t: usize, index: usize, _operands: &[Vec<f64>], fired: &[u32], _v: &[f64]) {
        if self.steps.len() < t {
            self.steps.push(Vec::new());
        }
        let step = &mut self.steps[t - 1];
        step.resize(index + 1, Vec::new());
        step[index] = fired.to_vec();
    }
}

fn derived(net: &Network, threads: usize) -> Vec<Vec<Counts>> {
    let config = SimConfig::reference(CHECKPOINTS.to_vec());
    let result = simulate_inputs(net, &config, &inputs(), threads, &|_| {}).unwrap();
    let infos = stats::population_infos(net);
    stats::derive_all(&infos, &result.counters, &result.checkpoints, inputs().len() as u64)
}

#[test]
fn every_counter_matches_the_hand_count() {
    let net = network();
    let infos = stats::population_infos(&net);
    let roles: Vec<Role> = infos.iter().map(|i| i.role).collect();
    assert_eq!(roles, [Role::Neurons, Role::Relay, Role::Neurons, Role::Readout]);
    assert_eq!(infos.iter().map(|i| i.neurons).collect::<Vec<_>>(), [2, 0, 2, 0]);
    assert_eq!(infos.iter().map(|i| i.synapses).collect::<Vec<_>>(), [5, 2, 5, 2]);
    let expected = by_hand(&net);
    let got = derived(&net, 1);
    for (k, (want, have)) in expected.iter().zip(&got).enumerate() {
        for (p, (w, h)) in want.iter().zip(have).enumerate() {
            assert_eq!(w, h, "checkpoint {k}, population {p}");
        }
    }
    // Firing rate: spikes per neuron per step.
    let a = &got[1][0];
    let rate = stats::firing_rate(&infos[0], a, 9, 7).unwrap();
    assert!((rate - a.spikes as f64 / (2.0 * 9.0 * 7.0)).abs() < 1e-15);
    assert_eq!(stats::firing_rate(&infos[1], &got[1][1], 9, 7), None);
    // Per-input averages.
    let per = a.per_input(7);
    assert!((per.spikes - a.spikes as f64 / 7.0).abs() < 1e-12);
}

#[test]
fn counts_do_not_depend_on_the_thread_count() {
    let net = network();
    let one = derived(&net, 1);
    assert_eq!(one, derived(&net, 2));
    assert_eq!(one, derived(&net, 3));
}

#[test]
fn energy_is_counts_times_costs() {
    let model = EnergyModel::preset("45nm-fp32").unwrap();
    let c = Counts {
        spikes: 10,
        synaptic_events: 100,
        dense_macs: 20,
        drive_additions: 8,
        neuron_updates: 8,
        nonlinearity_evaluations: 8,
        state_reads: 36,
        state_writes: 16,
        weight_reads: 120,
        ..Counts::default()
    };
    let e = model.snn(&c);
    assert!((e.convention_pj - (4.6 * 20.0 + 0.9 * 100.0)).abs() < 1e-9);
    assert!((e.compute_pj - (e.convention_pj + 6.4 * 8.0 + 5.5 * 8.0)).abs() < 1e-9);
    assert!((e.memory_inclusive_pj - (e.compute_pj + 20.0 * (36.0 + 120.0) + 20.0 * 16.0)).abs() < 1e-9);
    let loihi = EnergyModel::preset("loihi").unwrap();
    let e = loihi.snn(&c);
    assert!((e.compute_pj - (4.6 * 20.0 + 23.6 * 100.0 + 81.0 * 8.0)).abs() < 1e-9);
    assert_eq!(e.memory_pj, 0.0);
}
