//! Every counter of a small hand-built network, computed by hand from its recorded spike trace,
//! against what the engine counted and `stats` derived; identical counts for 1, 2 and 3 threads;
//! energy as counts × costs.

use signgd::engine::{Observer, SimConfig, Simulator};
use signgd::runner::simulate_inputs;
use signgd::snn::{Network, NeuronKind, Operand, Population, Source, SynapseBlock};
use signgd::stats::energy::{
    Addressing, AnnMemory, Conventions, EncoderCharge, Energy, EnergyModel, MemoryPricing, SharedCharge,
};
use signgd::stats::{self, Counts, Role};
use std::path::Path;

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

/// input (2, float encoder) → relay `r` (2 values, 4 synapses from the encoder) → `a` and `b` (2
/// ReLU neurons each, both receiving the same 2×2 block from `r`: one product, shared) → readout
/// (1 output, 2 synapses from `a`).
fn shared_network() -> Network {
    let block = || sparse(2, 2, &[(0, 0, 0.5), (0, 1, -0.25), (1, 0, 0.75), (1, 1, 0.5)]);
    let relu = |name: &str| Population {
        name: name.into(),
        kind: NeuronKind::Relu,
        shape: vec![2],
        operands: vec![Operand::new(vec![0.1, 0.2]).with(Source::Population(0), block())],
    };
    Network {
        input_shape: vec![2],
        populations: vec![
            Population {
                name: "r".into(),
                kind: NeuronKind::Relay,
                shape: vec![2],
                operands: vec![Operand::new(vec![0.0, 0.0])
                    .with(Source::Input, sparse(2, 2, &[(0, 0, 0.6), (0, 1, 0.4), (1, 0, -0.3), (1, 1, 0.9)]))],
            },
            relu("a"),
            relu("b"),
        ],
        readout: Operand::new(vec![0.0]).with(Source::Population(1), sparse(1, 2, &[(0, 0, 1.0), (0, 1, 1.0)])),
        output_shape: vec![1],
    }
}

/// Energy per input under `conventions` of the shared network after `t` steps of one input,
/// and the spikes of `a` (the readout's synaptic events).
fn shared_energy(model: &EnergyModel, conventions: &Conventions, t: usize) -> (Energy, f64) {
    let net = shared_network();
    let config = SimConfig::reference(vec![t]);
    let result = simulate_inputs(&net, &config, &[vec![0.7, 0.2]], 1, &|_| {}).unwrap();
    let infos = stats::population_infos(&net);
    let counts = stats::derive_all(&infos, &result.counters, &result.checkpoints, 1);
    let energy = infos
        .iter()
        .zip(&counts[0])
        .fold(Energy::default(), |acc, (info, c)| acc.add(&model.snn_with(info, c, t as u64, conventions)));
    (energy, counts[0][1].spikes as f64)
}

/// Every convention against energy computed by hand from the network's structure. At T = 4 with
/// one input, per population: `r` 4 encoder MACs per step (each reading a weight and the input
/// value) and 2 values written per step; `a` and `b` 4 dense MACs per step from the relay (a
/// weight and a value read each), 2 neurons × 1 operand: 8 updates, each reading and writing x
/// and v (2 + 2 words) and reading c and o (2 words), 8 drive additions and 8 nonlinearity
/// evaluations; `b`'s product is the one `a` computed (shared); the readout: S synaptic events
/// (S = spikes of `a`, fan-out 1), each reading a weight, and per step a drive addition, y read
/// and written and c and o read. 45 nm fp32: MAC 4.6, AC 0.9, drive 6.4, nonlinearity 5.5,
/// address 0.1 pJ; every weight set and state fits 8 KB, whose 64-bit read is 10 pJ, so a 32-bit
/// word costs 5 pJ; flat pricing costs 20 pJ a word.
#[test]
fn energy_conventions_by_hand() {
    let model = EnergyModel::preset("45nm-fp32").unwrap();
    let default = Conventions::default();
    let (e, s) = shared_energy(&model, &default, 4);
    assert!(s > 0.0, "the test network must spike");
    let close = |got: f64, want: f64, what: &str| {
        assert!((got - want).abs() < 1e-9 * want.max(1.0), "{what}: {got} against {want} (S = {s})")
    };
    // Default: encoder once (4 MACs), shared per receiver (16 + 16 MACs), addressing on.
    // MACs 4 + 16 + 16 = 36: 165.6 pJ; events S × (0.9 + 0.1); drive (8 + 8 + 4) × 6.4 = 128;
    // nonlinearity 16 × 5.5 = 88.
    close(e.convention_pj, 165.6 + 0.9 * s, "default convention figure");
    close(e.compute_pj, 165.6 + s + 128.0 + 88.0, "default compute");
    // Words read: r 4 weights + 4 values; a 16 weights + 16 values + 16 state + 16 constants; b
    // the same; readout S weights + 4 y + 8 constants: 148 + S. Written: r 8, a 16, b 16, y 4: 44.
    close(e.memory_pj, 5.0 * (148.0 + s + 44.0), "default memory");

    // Encoder every step: 12 more MACs, each reading a weight and a value.
    let (e, _) = shared_energy(&model, &Conventions { encoder: EncoderCharge::EveryStep, ..default }, 4);
    close(e.compute_pj, 381.6 + 4.6 * 12.0 + s, "encoder every step, compute");
    close(e.memory_pj, 5.0 * (192.0 + 24.0 + s), "encoder every step, memory");

    // Shared once: b's 16 MACs and their 16 weight and 16 value reads are not charged again.
    let (e, _) = shared_energy(&model, &Conventions { shared: SharedCharge::Once, ..default }, 4);
    close(e.compute_pj, 381.6 - 4.6 * 16.0 + s, "shared once, compute");
    close(e.memory_pj, 5.0 * (192.0 - 32.0 + s), "shared once, memory");

    // Addressing off: S × 0.1 pJ less.
    let (e, _) = shared_energy(&model, &Conventions { addressing: Addressing::Off, ..default }, 4);
    close(e.compute_pj, 381.6 + 0.9 * s, "addressing off, compute");

    // Flat memory: 20 pJ a word read or written.
    let (e, _) = shared_energy(&model, &Conventions { memory: MemoryPricing::Flat, ..default }, 4);
    close(e.memory_pj, 20.0 * (192.0 + s), "flat memory");
    close(e.compute_pj, 381.6 + s, "flat memory, compute unchanged");

    // Every count as counted (the figures before conventions): encoder every step, per receiver,
    // no addressing, flat memory.
    let (e, _) = shared_energy(&model, &Conventions::AS_COUNTED, 4);
    close(e.compute_pj, 381.6 + 4.6 * 12.0 + 0.9 * s, "as counted, compute");
    close(e.memory_pj, 20.0 * (216.0 + s), "as counted, memory");
}

/// The ANN side by hand: a Gemm (1×3 by 3×2, bias) and a 3×3 convolution with padding 1 on a
/// 3×3 image, with and without per-layer reuse, priced by level and flat.
#[test]
fn ann_energy_by_hand() {
    use ndarray::{ArrayD, IxDyn};
    use signgd::model::{Graph, Op};
    let mut g = Graph::new();
    let x = g.add_value("x", vec![1, 3]);
    let w = g.add_constant("w", ArrayD::from_elem(IxDyn(&[2, 3]), 0.5f64));
    let b = g.add_constant("b", ArrayD::from_elem(IxDyn(&[2]), 0.1f64));
    let y = g.add_value("y", vec![1, 2]);
    g.add_node("gemm", Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: true }, vec![x, w, b], y);
    g.input = x;
    g.output = y;
    let layers = stats::ann_layers(&g);
    let l = &layers[0];
    // 2 outputs × 3 inputs = 6 MACs, 2 bias additions; without reuse 6 + 2 weight reads and 6
    // activation reads; with reuse the 8 parameters and the 3 inputs once; 2 outputs written.
    assert_eq!((l.macs, l.elementwise_ops, l.weight_reads, l.activation_reads), (6, 2, 8, 6));
    assert_eq!((l.reuse_weight_reads, l.reuse_activation_reads, l.activation_writes), (8, 3, 2));
    assert_eq!((l.weights, l.activations), (8, 5));
    let model = EnergyModel::preset("45nm-fp32").unwrap();
    let conv = |ann_memory, memory| Conventions { ann_memory, memory, ..Conventions::default() };
    let e = model.ann_with(l, &conv(AnnMemory::Reuse, MemoryPricing::Levels));
    assert!((e.compute_pj - (4.6 * 6.0 + 0.9 * 2.0)).abs() < 1e-9);
    // 8 KB level, 5 pJ a 32-bit word: 8 weights + 3 activations read + 2 written.
    assert!((e.memory_pj - 5.0 * 13.0).abs() < 1e-9, "{e:?}");
    let e = model.ann_with(l, &conv(AnnMemory::NoReuse, MemoryPricing::Levels));
    assert!((e.memory_pj - 5.0 * (8.0 + 6.0 + 2.0)).abs() < 1e-9, "{e:?}");
    let e = model.ann_with(l, &conv(AnnMemory::Reuse, MemoryPricing::Flat));
    assert!((e.memory_pj - 20.0 * 13.0).abs() < 1e-9, "{e:?}");
    let e = model.ann_with(l, &conv(AnnMemory::NoReuse, MemoryPricing::Flat));
    assert!((e.memory_pj - 20.0 * 16.0).abs() < 1e-9, "{e:?}");
    // int8 words: a quarter of the 64-bit read.
    let int8 = EnergyModel::preset("45nm-int8").unwrap();
    let e = int8.ann_with(l, &conv(AnnMemory::Reuse, MemoryPricing::Levels));
    assert!((e.memory_pj - 10.0 * 8.0 / 64.0 * 13.0).abs() < 1e-9, "{e:?}");

    // Convolution, 3×3 kernel, padding 1, on 3×3: per axis the outputs see 2, 3 and 2 taps
    // inside the image, so 7 × 7 = 49 of the 81 products are not on padding.
    let mut g = Graph::new();
    let x = g.add_value("x", vec![1, 1, 3, 3]);
    let w = g.add_constant("w", ArrayD::from_elem(IxDyn(&[1, 1, 3, 3]), 0.5f64));
    let y = g.add_value("y", vec![1, 1, 3, 3]);
    let op = Op::Conv { strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], groups: 1 };
    g.add_node("conv", op, vec![x, w], y);
    g.input = x;
    g.output = y;
    let l = &stats::ann_layers(&g)[0];
    assert_eq!((l.macs, l.padding_macs, l.weight_reads, l.activation_reads), (49, 32, 49, 49));
    assert_eq!((l.reuse_weight_reads, l.reuse_activation_reads, l.activation_writes), (9, 9, 9));
}

/// Placement by size: the smallest level that holds the bytes, DRAM past 1 MB.
#[test]
fn memory_levels_by_size() {
    let fp16 = EnergyModel::preset("45nm-fp16").unwrap();
    let m = fp16.memory.as_ref().unwrap();
    assert_eq!(m.word_bits, 16);
    let level = |bytes: u64| m.level_for(bytes).name.clone();
    assert_eq!(level(8192), "8 KB SRAM");
    assert_eq!(level(8193), "32 KB SRAM");
    assert_eq!(level(32769), "1 MB SRAM");
    assert_eq!(level((1 << 20) + 1), "DRAM");
    // fp16: 16/64 of the 64-bit figure: 32 KB 5 pJ, DRAM 325 pJ a word.
    assert!((m.word_pj(m.level_for(20_000)) - 5.0).abs() < 1e-12);
    assert!((m.word_pj(m.level_for(1 << 30)) - 325.0).abs() < 1e-12);
    // 4,096 fp16 words are 8 KB; one more moves to 32 KB.
    assert_eq!(fp16.placement(4096, 4097).unwrap(), ("8 KB SRAM".to_string(), "32 KB SRAM".to_string()));
}

/// Whether a cost's source either is a modelling choice or names where in its reference the
/// figure stands and says how that was confirmed, or that it could not be.
fn source_is_located(source: &str) -> bool {
    let choice = source.starts_with("assumption") || source.starts_with("derived");
    let location = ["Fig. 1.1.9", "Table 1", "Table 2", "Table 3", "§5.1", "devices[\"", "Eq. 17.2"]
        .iter()
        .any(|l| source.contains(l));
    choice || source.contains("unverified") || (location && source.contains("confirmed"))
}

/// Every figure of every preset has a source that says where in its reference the figure stands
/// and how that was confirmed, and stands in energy/README.md's tables with the same value and
/// the same source text; no preset claims what its figures cannot support.
#[test]
fn every_preset_figure_is_documented() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/energy/README.md")).unwrap();
    for (name, _) in signgd::stats::energy::PRESETS {
        let model = EnergyModel::preset(name).unwrap();
        assert!(model.notes.iter().all(|n| !n.contains("not given")), "{name} relies on a default: {:?}", model.notes);
        for (entry, cost) in model.costs.entries() {
            assert!(cost.source.len() > 20, "{name}.{entry} has no real source: {:?}", cost.source);
            assert!(source_is_located(&cost.source), "{name}.{entry} does not say where: {:?}", cost.source);
            assert!(!cost.source.contains("re-checked"), "{name}.{entry}: {:?}", cost.source);
            let row = format!("| `{name}` | `{entry}` | {} | {} |", cost.pj, cost.source);
            assert!(readme.contains(&row), "energy/README.md lacks `{row}`");
        }
        let memory = model.memory.as_ref().unwrap_or_else(|| panic!("{name} has no memory levels"));
        assert!(!memory.word_bits_source.is_empty());
        let row = format!("| `{name}` | {} | ", memory.word_bits);
        assert!(readme.contains(&row), "energy/README.md lacks `{row}`");
        for level in &memory.levels {
            assert!(source_is_located(&level.source), "{name} level {} does not say where", level.name);
            let bytes = level.max_bytes.map_or("unbounded".to_string(), |b| b.to_string());
            let row = format!("| {} | {bytes} | {} | {} |", level.name, level.pj_per_64_bits, level.source);
            assert!(readme.contains(&row), "energy/README.md lacks `{row}`");
        }
        for note in &model.notes {
            assert!(!note.contains("include leakage and memory"), "{name}: {note}");
        }
        if let Some(p) = &model.static_power {
            for (what, value, source) in [
                ("mW per core", p.mw_per_core, &p.mw_per_core_source),
                ("µs per step", p.us_per_step, &p.us_per_step_source),
            ] {
                assert!(source_is_located(source), "{name} static {what} does not say where: {source:?}");
                let row = format!("| `{name}` | {what} | {value} | {source} |");
                assert!(readme.contains(&row), "energy/README.md lacks `{row}`");
            }
        }
    }
    // Static power only where a source gives it: Loihi's leakage measured on Pohoiki Springs.
    let with_static: Vec<&str> = signgd::stats::energy::PRESETS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| EnergyModel::preset(n).unwrap().static_power.is_some())
        .collect();
    assert_eq!(with_static, ["loihi", "loihi-routing"]);
    for (name, pj) in [("loihi", 23.6), ("loihi-routing", 27.1), ("spinnaker2-2021", 10.0)] {
        assert_eq!(EnergyModel::preset(name).unwrap().costs.ac.pj, pj, "{name}");
    }
}

/// The static term by hand: the test network maps onto Loihi as 4 cores (a, r, b and the readout
/// each fit one core: 2, 1, 2 and 1 neurons, a few synapses), so a table of 2 mW per core and
/// 10 µs per step leaks 4 × 2 mW × 10 µs = 80 nJ per step: 240,000 pJ per input at T = 3 and
/// 720,000 pJ at T = 9; the Loihi preset (0.8154 mW, 5.8 µs) 4 × 0.8154 × 5.8 × 9 nJ =
/// 170,255.52 pJ at T = 9. A table without static figures has no static term.
#[test]
fn static_energy_by_hand() {
    use signgd::stats::static_power::static_energy;
    let table = |extra: &str| {
        format!(
            r#"{{"name": "leaky", "costs": {{"mac": {{"pj": 1, "source": "x"}}, "ac": {{"pj": 1, "source": "y"}}}}{extra}}}"#
        )
    };
    let leaky = EnergyModel::parse(
        &table(
            r#", "static_power": {"target": "loihi", "mw_per_core": 2, "mw_per_core_source": "a", "us_per_step": 10, "us_per_step_source": "b"}"#,
        ),
        "leaky",
        "test",
    )
    .unwrap();
    let net = network();
    let s = static_energy(&leaky, &net, &CHECKPOINTS).unwrap();
    assert_eq!((s.cores, s.chips, s.fits), (4, 1, true));
    assert_eq!(s.checkpoints.len(), 2);
    assert_eq!(s.checkpoints[0].timesteps, 3);
    assert!((s.checkpoints[0].static_pj - 240_000.0).abs() < 1e-6, "{s:?}");
    assert!((s.checkpoints[1].static_pj - 720_000.0).abs() < 1e-6, "{s:?}");
    assert!(leaky
        .assumptions(&Conventions::default())
        .iter()
        .any(|a| a.contains("static (leakage) power is a separate term")));

    let loihi = EnergyModel::preset("loihi").unwrap();
    let s = static_energy(&loihi, &net, &[9]).unwrap();
    assert!((s.checkpoints[0].static_pj - 170_255.52).abs() < 1e-6, "{s:?}");

    let fp32 = EnergyModel::preset("45nm-fp32").unwrap();
    assert!(static_energy(&fp32, &net, &CHECKPOINTS).is_none());
    assert!(fp32.assumptions(&Conventions::default()).iter().any(|a| a.contains("no static (leakage) power")));

    // Bad static figures are refused, naming the field.
    let bad = |fields: &str| {
        EnergyModel::parse(&table(&format!(r#", "static_power": {{{fields}}}"#)), "bad", "bad.json")
            .unwrap_err()
            .to_string()
    };
    let e = bad(
        r#""target": "tpu", "mw_per_core": 1, "mw_per_core_source": "a", "us_per_step": 1, "us_per_step_source": "b""#,
    );
    assert!(e.contains("bad.json") && e.contains("static_power.target") && e.contains("tpu"), "{e}");
    let e = bad(
        r#""target": "loihi", "mw_per_core": 0, "mw_per_core_source": "a", "us_per_step": 1, "us_per_step_source": "b""#,
    );
    assert!(e.contains("static_power.mw_per_core"), "{e}");
    let e = bad(
        r#""target": "loihi", "mw_per_core": 1, "mw_per_core_source": " ", "us_per_step": 1, "us_per_step_source": "b""#,
    );
    assert!(e.contains("static_power.mw_per_core_source"), "{e}");
}

/// The static term end to end: `signgd run --report --energy-model loihi` on the MLP fixture
/// puts in report.json the cores `signgd feasibility --target loihi` counts, and per input
/// cores × 0.8154 mW × 5.8 µs × T; the summary states it as a separate term; the default model,
/// with no cited static figure, has none.
#[test]
fn static_energy_in_the_report() {
    use std::process::Command;
    let signgd = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_signgd"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let common = ["--model", "fixtures/models/mlp.onnx", "--limit", "4"];
    let feasibility: serde_json::Value =
        serde_json::from_str(&signgd(&[&["feasibility", "--target", "loihi", "--json"], &common[..]].concat()))
            .unwrap();
    let cores = feasibility["targets"][0]["cores"].as_u64().unwrap();
    assert!(cores > 0);
    let scratch = tempfile::tempdir().unwrap();
    let report = |model: &str| {
        let dir = scratch.path().join(model);
        let dir = dir.to_str().unwrap();
        let args = [&["run", "--timesteps", "4,8", "--energy-model", model, "--report", dir], &common[..]].concat();
        signgd(&args);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(Path::new(dir).join("report.json")).unwrap()).unwrap();
        (json, signgd(&["report", dir]))
    };
    let (json, summary) = report("loihi");
    let st = &json["energy"]["static_power"];
    assert_eq!(st["cores"].as_u64(), Some(cores));
    for (row, t) in st["checkpoints"].as_array().unwrap().iter().zip([4.0, 8.0]) {
        let want = cores as f64 * 0.8154 * 5.8 * t * 1000.0;
        assert!((row["static_pj"].as_f64().unwrap() - want).abs() < 1e-6 * want, "{row} against {want}");
    }
    assert!(summary.contains("static (leakage) energy, a separate term"), "{summary}");
    let (json, summary) = report("45nm-fp32");
    assert!(json["energy"]["static_power"].is_null());
    assert!(summary.contains("no static (leakage) power is modelled"), "{summary}");
}
