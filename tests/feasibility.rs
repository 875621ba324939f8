//! Neuromorphic feasibility: hand-built networks just inside and just outside every limit of a
//! profile, the method's needs per chip, weight quantisation, the bundled profiles, and the
//! command's refusals (through the binary).

use std::path::Path;
use std::process::{Command, Output};

use ndarray::{Array1, Array2, ArrayD, IxDyn};
use ndarray_npy::write_npy;
use signgd::convert::{convert, ConvertOptions, ReluNorm};
use signgd::feasibility::profile::{MemoryModel, SpikeKind, TwoOperand};
use signgd::feasibility::quantize::{quantize_network, quantize_network_on_grid};
use signgd::feasibility::{map, MapOptions, PopulationPlacement, Profile, TargetReport, Violation};
use signgd::model::onnx::builder::{attr_i, encode, graph, model, node, tensor_f32, value_info_fixed};
use signgd::model::read_onnx;
use signgd::snn::{ConvBlock, Network, NeuronKind, Operand, Population, Source, SynapseBlock};
use sprs::CsMat;

/// A chip with generous limits; each test tightens one.
fn profile() -> Profile {
    Profile {
        name: "test".into(),
        chip: "Test chip".into(),
        source: "tests".into(),
        notes: String::new(),
        neurons_per_core: 1000,
        core_neurons: None,
        input_axons_per_core: None,
        output_axons_per_core: None,
        synaptic_memory_bytes_per_core: 1 << 20,
        core_synaptic_memory_bytes: None,
        bits_per_synapse: 8,
        memory_model: MemoryModel::PerSynapse,
        cores_per_chip: 100,
        max_chips: None,
        max_destination_cores_per_neuron: None,
        max_destination_cores_per_core: None,
        split_populations: true,
        weight_bits: 8,
        state_bits: 16,
        spikes: SpikeKind::Graded,
        two_operand_neurons: TwoOperand::Native,
        real_valued_input: true,
        per_step_drive: true,
        programmable_neurons: true,
        bias_entries_per_core: None,
        max_kernel_size: None,
        strides: None,
        max_channels: None,
        distinct_weights_per_neuron: None,
        synaptic_events_per_ms_per_core: None,
    }
}

/// A dense `[targets × sources]` block of weights 0.5.
fn dense(targets: usize, sources: usize) -> SynapseBlock {
    let indptr: Vec<usize> = (0..=sources).map(|j| j * targets).collect();
    let indices: Vec<usize> = (0..sources).flat_map(|_| 0..targets).collect();
    let data = vec![0.5; targets * sources];
    SynapseBlock::Sparse { matrix: CsMat::new_csc((targets, sources), indptr, indices, data) }
}

fn diagonal(n: usize) -> SynapseBlock {
    SynapseBlock::Diagonal { scale: vec![1.0; n] }
}

fn population(name: &str, kind: NeuronKind, n: usize, operands: Vec<Operand>) -> Population {
    Population { name: name.into(), kind, shape: vec![n], operands }
}

fn operand(n: usize, source: Source, block: SynapseBlock) -> Operand {
    Operand::new(vec![0.0; n]).with(source, block)
}

/// `input[inputs] → relu "hidden"[n] (dense) → readout[1] (dense)`.
fn one_layer(inputs: usize, n: usize) -> Network {
    let hidden = population("hidden", NeuronKind::Relu, n, vec![operand(n, Source::Input, dense(n, inputs))]);
    let network = Network {
        input_shape: vec![inputs],
        populations: vec![hidden],
        readout: operand(1, Source::Population(0), dense(1, n)),
        output_shape: vec![1],
    };
    network.validate().unwrap();
    network
}

fn run(network: &Network, profile: &Profile) -> TargetReport {
    map(network, profile, &MapOptions::default())
}

fn cores_of(report: &TargetReport, name: &str) -> usize {
    report.populations.iter().find(|p| p.name == name).unwrap().cores
}

/// The one violation of `population` against a limit whose name contains `limit`.
fn violation<'a>(report: &'a TargetReport, population: &str, limit: &str) -> &'a Violation {
    let found: Vec<&Violation> =
        report.violations.iter().filter(|v| v.population == population && v.limit.contains(limit)).collect();
    assert_eq!(found.len(), 1, "violations: {:#?}", report.violations);
    found[0]
}

#[test]
fn neurons_per_core_splits_a_population() {
    let p = Profile { neurons_per_core: 10, ..profile() };
    let inside = run(&one_layer(2, 10), &p);
    assert!(inside.fits, "{:?}", inside.violations);
    assert_eq!(cores_of(&inside, "hidden"), 1);
    let outside = run(&one_layer(2, 11), &p);
    assert!(outside.fits, "a split cures this: {:?}", outside.violations);
    assert_eq!(cores_of(&outside, "hidden"), 2);
    assert_eq!(outside.cores, 3); // hidden 2 + readout 1
}

#[test]
fn cores_per_chip_gives_the_chip_count_and_max_chips_a_violation() {
    let p = Profile { neurons_per_core: 10, cores_per_chip: 4, ..profile() };
    // hidden 30 → 3 cores, readout 1: 4 cores, one chip.
    let inside = run(&one_layer(2, 30), &p);
    assert_eq!((inside.cores, inside.chips), (4, 1));
    // hidden 31 → 4 cores, readout 1: 5 cores, two chips.
    let outside = run(&one_layer(2, 31), &p);
    assert_eq!((outside.cores, outside.chips), (5, 2));
    assert!(outside.fits);
    let single = Profile { max_chips: Some(1), ..p };
    assert!(run(&one_layer(2, 30), &single).fits);
    let report = run(&one_layer(2, 31), &single);
    let v = violation(&report, "(whole network)", "chips");
    assert_eq!((v.limit_value, v.value), (1, 2));
}

#[test]
fn fan_in_beyond_the_input_axons_is_a_violation() {
    let p = Profile { input_axons_per_core: Some(8), ..profile() };
    let inside = run(&one_layer(8, 3), &p);
    assert!(inside.fits, "{:?}", inside.violations);
    let outside = run(&one_layer(9, 3), &p);
    assert!(!outside.fits);
    let v = violation(&outside, "hidden", "input axons");
    assert_eq!((v.limit_value, v.value, v.neurons), (8, 9, 3));
    assert!(v.suggestion.contains("groups of ≤ 8"), "{}", v.suggestion);
    assert!(v.to_string().contains("`hidden`"));
}

#[test]
fn distinct_sources_per_core_split_a_population() {
    // Each of 4 neurons reads its own 4 inputs: 16 distinct sources in all.
    let n = 4;
    let indptr: Vec<usize> = (0..=16).collect();
    let indices: Vec<usize> = (0..16).map(|j| j / 4).collect();
    let block = SynapseBlock::Sparse { matrix: CsMat::new_csc((n, 16), indptr, indices, vec![1.0; 16]) };
    let hidden = population("hidden", NeuronKind::Relu, n, vec![operand(n, Source::Input, block)]);
    let network = Network {
        input_shape: vec![16],
        populations: vec![hidden],
        readout: operand(1, Source::Population(0), dense(1, n)),
        output_shape: vec![1],
    };
    network.validate().unwrap();
    let report = run(&network, &Profile { input_axons_per_core: Some(8), ..profile() });
    assert!(report.fits);
    assert_eq!(cores_of(&report, "hidden"), 2);
    let report = run(&network, &Profile { input_axons_per_core: Some(16), ..profile() });
    assert_eq!(cores_of(&report, "hidden"), 1);
}

#[test]
fn synaptic_memory_per_core() {
    // 8 synapses per neuron at 8 bits: 8 bytes each.
    let tight = Profile { synaptic_memory_bytes_per_core: 8, ..profile() };
    let inside = run(&one_layer(8, 1), &tight);
    assert!(inside.fits, "{:?}", inside.violations);
    let outside = run(&one_layer(8, 1), &Profile { synaptic_memory_bytes_per_core: 7, ..profile() });
    let v = violation(&outside, "hidden", "synaptic memory");
    assert_eq!((v.limit_value, v.value), (7, 8));
    // Three such neurons in 16 bytes: two cores.
    let split = run(&one_layer(8, 3), &Profile { synaptic_memory_bytes_per_core: 16, ..profile() });
    assert!(split.fits);
    assert_eq!(cores_of(&split, "hidden"), 2);
}

/// `input → a (relu, 4) → {b1, b2, …} (relu, 2 each)`, every consumer reading `a` densely, and
/// the readout reading the last consumer.
fn fan_out(consumers: usize) -> Network {
    let mut populations = vec![population("a", NeuronKind::Relu, 4, vec![operand(4, Source::Input, diagonal(4))])];
    for k in 0..consumers {
        populations.push(population(
            &format!("b{k}"),
            NeuronKind::Relu,
            2,
            vec![operand(2, Source::Population(0), dense(2, 4))],
        ));
    }
    let network = Network {
        input_shape: vec![4],
        populations,
        readout: operand(1, Source::Population(consumers), dense(1, 2)),
        output_shape: vec![1],
    };
    network.validate().unwrap();
    network
}

#[test]
fn speck_fan_out_to_at_most_two_cores() {
    let p = Profile { max_destination_cores_per_core: Some(2), split_populations: false, ..profile() };
    let inside = run(&fan_out(2), &p);
    assert!(inside.fits, "{:?}", inside.violations);
    let outside = run(&fan_out(3), &p);
    let v = violation(&outside, "a", "destination cores per core");
    assert_eq!((v.limit_value, v.value), (2, 3));
    assert!(v.suggestion.contains("`b0`"), "{}", v.suggestion);
}

#[test]
fn destination_cores_per_core_of_split_populations() {
    // One neuron per core: each of a's 4 cores feeds both cores of b0, each core of b0 the
    // readout's one core.
    let p = Profile { neurons_per_core: 1, max_destination_cores_per_core: Some(2), ..profile() };
    assert!(run(&fan_out(1), &p).fits, "{:?}", run(&fan_out(1), &p).violations);
    let report = run(&fan_out(1), &Profile { max_destination_cores_per_core: Some(1), ..p });
    let v = violation(&report, "a", "destination cores per core");
    assert_eq!((v.limit_value, v.value), (1, 2));
    assert_eq!(report.violations.len(), 1, "{:?}", report.violations);
}

#[test]
fn bundled_speck_places_one_population_per_core_best_fit() {
    let speck = Profile::bundled("speck").unwrap();
    // 9 populations fit 9 cores; the 10th needs a second chip, which Speck does not have.
    let report = run(&fan_out(1), &speck);
    assert!(report.fits, "{:?}", report.violations);
    assert_eq!(report.cores, 3);
    // A population beyond the largest core's neuron memory (64 Ki entries) cannot be split; it
    // still counts as a core.
    let report = run(&one_layer(1, 65537), &speck);
    let v = violation(&report, "hidden", "neuron memory");
    assert_eq!((v.limit_value, v.value), (65536, 65537));
    assert_eq!(report.cores, 2);
    let report = run(&one_layer(1, 65536), &speck);
    assert!(report.violations.iter().all(|v| !v.limit.contains("neuron")), "{:?}", report.violations);
}

#[test]
fn output_axons_per_core() {
    // `a`'s 4 neurons each reach the 3 cores of consumer b0 (6 neurons, 2 per core): 12 axons.
    let mut network = fan_out(1);
    network.populations[1] =
        population("b0", NeuronKind::Relu, 6, vec![operand(6, Source::Population(0), dense(6, 4))]);
    network.readout = operand(1, Source::Population(1), dense(1, 6));
    network.validate().unwrap();
    let base = Profile { neurons_per_core: 2, ..profile() };
    let p = |axons| Profile { output_axons_per_core: Some(axons), neurons_per_core: 4, ..base.clone() };
    // With 4 neurons per core b0 takes 2 cores: 8 axons from a.
    assert_eq!(cores_of(&run(&network, &p(8)), "a"), 1);
    assert_eq!(cores_of(&run(&network, &p(7)), "a"), 2);
    // One output axon per core: every neuron of b0 (sending to the readout) gets a core of its
    // own, so each neuron of a reaches 6 cores, beyond what any cut of a can cure.
    let outside = run(&network, &p(1));
    assert_eq!(cores_of(&outside, "b0"), 6);
    let v = violation(&outside, "a", "output axons");
    assert_eq!((v.limit_value, v.value, v.neurons), (1, 6, 4));
}

#[test]
fn destination_cores_per_neuron_are_served_by_splitter_cores() {
    let p = Profile { neurons_per_core: 1, max_destination_cores_per_neuron: Some(1), ..profile() };
    // b0 has 2 neurons → 2 cores: each of a's 4 neurons reaches 2 cores, so a splitter core
    // copies it twice: 8 splitter neurons, at 1 neuron per core 8 cores, counted in the total.
    let report = run(&fan_out(1), &p);
    assert!(report.fits, "{:#?}", report.violations);
    assert_eq!(placement(&report, "a").splitter_cores, 8);
    assert_eq!(report.cores, 4 + 8 + 2 + 1);
    // With 2 neurons per core b0 takes one core: no splitters.
    let report = run(&fan_out(1), &Profile { neurons_per_core: 2, ..p.clone() });
    assert_eq!(placement(&report, "a").splitter_cores, 0);
    // Two consumers of 2 cores each: every neuron of a reaches 4 cores, 16 copies.
    let report = run(&fan_out(2), &p);
    assert_eq!(placement(&report, "a").splitter_cores, 16);
}

/// `input [16, 10, 10] → conv 16→32, 3×3, no padding → [32, 8, 8] → readout`.
fn conv_layer() -> Network {
    let kernel: Vec<f64> = (0..32 * 16 * 9).map(|i| [0.5, -0.5, 0.25][i % 3]).collect();
    let conv = ConvBlock::new(kernel, [16, 10, 10], [32, 8, 8], [3, 3], [1, 1], [0, 0], [1, 1], 1);
    let hidden = Population {
        name: "conv".into(),
        kind: NeuronKind::Relu,
        shape: vec![32, 8, 8],
        operands: vec![Operand::new(vec![0.0; 2048]).with(Source::Input, SynapseBlock::Conv(conv))],
    };
    let network = Network {
        input_shape: vec![16, 10, 10],
        populations: vec![hidden],
        readout: operand(1, Source::Population(0), dense(1, 2048)),
        output_shape: vec![1],
    };
    network.validate().unwrap();
    network
}

#[test]
fn truenorth_places_a_convolution_in_tiles_of_pixels_with_all_channels() {
    let truenorth = Profile::bundled("truenorth").unwrap();
    let report = run(&conv_layer(), &truenorth);
    // By hand: a tile of 2×2 output pixels × 32 channels is 128 neurons reading 4×4 input
    // pixels × 16 channels = 256 axons, a core's worth; the next tile's first neuron needs 48
    // more axons, so each tile takes one core: (8/2)·(8/2) = 16 cores. In element order a core
    // of 256 neurons (8 rows of one channel) would read 10 rows × 10 columns × 16 channels.
    assert_eq!(cores_of(&report, "conv"), 16);
    // Its weights are 3 levels (0.5, −0.5, 0.25): within TrueNorth's 4 per neuron.
    assert!(report.violations.iter().all(|v| v.population != "conv"), "{:#?}", report.violations);
}

#[test]
fn truenorth_neurons_have_four_distinct_weights() {
    let truenorth = Profile::bundled("truenorth").unwrap();
    let mut network = conv_layer();
    if let SynapseBlock::Conv(conv) = &mut network.populations[0].operands[0].projections[0].block {
        // Output channel 0 gets 5 levels: 1, 0.5, −0.5, 0.25, −0.25, still 5 distinct levels on
        // the 9-bit grid (steps of 1/255).
        conv.kernel[0] = 1.0;
        conv.kernel[1] = -0.25;
    }
    let report = run(&network, &truenorth);
    let v = violation(&report, "conv", "distinct weights per neuron");
    assert_eq!((v.limit_value, v.value), (4, 5));
}

/// `input → a, b (relu) → m = max(a, b)` with a relay in front of the readout.
fn two_operand_network(n: usize) -> Network {
    let network = Network {
        input_shape: vec![n],
        populations: vec![
            population("a", NeuronKind::Relu, n, vec![operand(n, Source::Input, diagonal(n))]),
            population(
                "m",
                NeuronKind::Max,
                n,
                vec![operand(n, Source::Population(0), diagonal(n)), operand(n, Source::Input, diagonal(n))],
            ),
            population("r", NeuronKind::Relay, 1, vec![operand(1, Source::Population(1), dense(1, n))]),
        ],
        readout: operand(1, Source::Population(2), diagonal(1)),
        output_shape: vec![1],
    };
    network.validate().unwrap();
    network
}

#[test]
fn two_operand_neurons_on_a_chip_without_them() {
    let none = Profile { two_operand_neurons: TwoOperand::None, ..profile() };
    let report = run(&two_operand_network(3), &none);
    let need = report.requirements.iter().find(|r| r.need == "two-operand neurons").unwrap();
    assert!(!need.met);
    assert_eq!(need.populations, vec!["m".to_string()]);
    assert!(need.how.contains("a + relu(b − a)"), "{}", need.how);
    assert!(!report.method_supported);
    let native = run(&two_operand_network(3), &profile());
    assert!(native.requirements.iter().all(|r| r.met));
}

#[test]
fn multi_compartment_two_operand_neurons_take_two_compartments() {
    let p = Profile { two_operand_neurons: TwoOperand::MultiCompartment, neurons_per_core: 10, ..profile() };
    assert_eq!(cores_of(&run(&two_operand_network(5), &p), "m"), 1);
    assert_eq!(cores_of(&run(&two_operand_network(6), &p), "m"), 2);
    assert_eq!(cores_of(&run(&two_operand_network(6), &p), "a"), 1);
}

#[test]
fn real_valued_input_relays_and_drive_on_a_binary_chip() {
    let binary = Profile {
        spikes: SpikeKind::Binary,
        real_valued_input: false,
        per_step_drive: false,
        programmable_neurons: false,
        ..profile()
    };
    let report = run(&two_operand_network(2), &binary);
    let need = |name: &str| report.requirements.iter().find(|r| r.need.starts_with(name)).unwrap();
    let input = need("real-valued input");
    assert!(!input.met);
    assert_eq!(input.populations, vec!["a".to_string(), "m".to_string()]);
    assert!(input.how.contains("--encoder spike"));
    assert!(!need("relays").met);
    assert_eq!(need("relays").populations, vec!["r".to_string()]);
    assert!(!need("per-step constant drive").met);
    assert_eq!(need("per-step constant drive").populations.len(), 2);
    // A spike encoder sends binary spikes: no real-valued input needed.
    let spike = map(&two_operand_network(2), &binary, &MapOptions { real_valued_input: false, rates: None });
    assert!(spike.requirements.iter().all(|r| r.need != "real-valued input"));
    // The generous chip gives everything.
    assert!(run(&two_operand_network(2), &profile()).requirements.iter().all(|r| r.met));
}

#[test]
fn quantisation_is_symmetric_per_block() {
    let mut network = one_layer(3, 2);
    if let SynapseBlock::Sparse { matrix } = &mut network.populations[0].operands[0].projections[0].block {
        matrix.data_mut().copy_from_slice(&[1.0, -0.5, 0.26, 0.1, -0.9, 0.0]);
    }
    let (q, stats) = quantize_network(&network, 3);
    let SynapseBlock::Sparse { matrix } = &q.populations[0].operands[0].projections[0].block else { panic!() };
    let third = 1.0 / 3.0;
    let expected = [3.0, -2.0, 1.0, 0.0, -3.0, 0.0].map(|k: f64| k * third);
    for (a, b) in matrix.data().iter().zip(expected) {
        assert!((a - b).abs() < 1e-12, "{:?}", matrix.data());
    }
    assert_eq!(stats.blocks, 2);
    assert_eq!(stats.zeroed, 1);
    assert_eq!(q.populations[0].operands[0].bias, network.populations[0].operands[0].bias);
}

#[test]
fn bundled_profiles_carry_their_sources() {
    let all = Profile::all_bundled().unwrap();
    let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["loihi", "loihi2", "truenorth", "spinnaker", "spinnaker2", "speck"]);
    for (p, needle) in all.iter().zip(["Davies", "Loihi 2", "Merolla", "Furber", "Mayr", "sinabs"]) {
        assert!(p.source.contains(needle), "{}: {}", p.name, p.source);
    }
    assert_eq!(all[0].input_axons_per_core, Some(4096));
    assert_eq!(all[2].neurons_per_core, 256);
    assert_eq!(all[3].neurons_per_core, 255);
    assert_eq!(all[3].synaptic_events_per_ms_per_core, Some(10_000));
    assert_eq!(all[4].cores_per_chip, 152);
    assert_eq!(all[5].core_neurons.as_ref().unwrap().iter().sum::<u64>(), 1024 * (3 * 64 + 2 * 32 + 4 * 16));
    assert_eq!(all[5].bias_entries_per_core, Some(1024));
}

// ---- through the binary -------------------------------------------------------------------

fn signgd(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_signgd")).args(args).current_dir(dir).output().unwrap()
}

fn assert_refused(output: &Output, needles: &[&str]) {
    let message = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(!message.contains("panicked"), "{message}");
    for needle in needles {
        assert!(message.contains(needle), "`{needle}` not in: {message}");
    }
}

/// `x [1,4] → Gemm → ReLU → Gemm → y [1,3]`, or with `Sqrt` in place of the ReLU (refused by
/// the conversion), plus `data.npy` and `labels.npy`.
fn scratch(nonlinearity: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let w1: Vec<f32> = (0..20).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.15).collect();
    let w2: Vec<f32> = (0..15).map(|i| ((i * 5 % 7) as f32 - 3.0) * 0.2).collect();
    let g = graph(
        vec![
            node("Gemm", &["x", "w1", "b1"], &["h"], vec![attr_i("transB", 1)]),
            node(nonlinearity, &["h"], &["r"], vec![]),
            node("Gemm", &["r", "w2", "b2"], &["y"], vec![attr_i("transB", 1)]),
        ],
        vec![value_info_fixed("x", &[1, 4])],
        vec![value_info_fixed("y", &[1, 3])],
        vec![
            tensor_f32("w1", &[5, 4], &w1),
            tensor_f32("b1", &[5], &[0.1, -0.1, 0.0, 0.05, 0.2]),
            tensor_f32("w2", &[3, 5], &w2),
            tensor_f32("b2", &[3], &[0.1, -0.05, 0.0]),
        ],
    );
    std::fs::write(dir.path().join("model.onnx"), encode(&model(g, 13))).unwrap();
    let data = Array2::from_shape_fn((8, 4), |(i, j)| ((i * 3 + j * 5) % 9) as f64 / 9.0);
    write_npy(dir.path().join("data.npy"), &data).unwrap();
    write_npy(dir.path().join("labels.npy"), &Array1::from_shape_fn(8, |i| (i % 3) as i64)).unwrap();
    dir
}

const DATA: [&str; 4] = ["--data", "data.npy", "--labels", "labels.npy"];

fn with_data<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["feasibility", "--model", "model.onnx"];
    all.extend_from_slice(&DATA);
    all.extend_from_slice(args);
    all
}

#[test]
fn cli_reports_every_target_and_quantised_accuracy() {
    let dir = scratch("Relu");
    let output = signgd(&with_data(&["--weight-bits", "4", "--limit", "8", "--threads", "2"]), dir.path());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for chip in ["Intel Loihi (loihi)", "Loihi 2", "TrueNorth", "SpiNNaker", "Speck", "summary", "quantised to 4 bits"]
    {
        assert!(text.contains(chip), "`{chip}` not in:\n{text}");
    }
    let output = signgd(&with_data(&["--target", "loihi2", "--json"]), dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["targets"].as_array().unwrap().len(), 1);
    assert_eq!(json["targets"][0]["target"], "loihi2");
    assert_eq!(json["targets"][0]["fits"], true);
    assert!(json["weight_bits"].is_null());
}

#[test]
fn cli_refuses_an_unknown_target() {
    let dir = scratch("Relu");
    assert_refused(
        &signgd(&with_data(&["--target", "brainchip"]), dir.path()),
        &["unknown target `brainchip`", "loihi2"],
    );
}

#[test]
fn cli_refuses_malformed_profiles() {
    let dir = scratch("Relu");
    let good: serde_json::Value = serde_json::from_str(include_str!("../hardware/loihi.json")).unwrap();
    let write = |name: &str, text: String| {
        std::fs::write(dir.path().join(name), text).unwrap();
        name.to_string()
    };
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("input_axons_per_core");
    let mut zero = good.clone();
    zero["neurons_per_core"] = 0.into();
    let mut negative = good.clone();
    negative["synaptic_memory_bytes_per_core"] = (-128).into();
    let mut unknown = good.clone();
    unknown["neurons_per_cor"] = 5.into();
    let cases = [
        (write("bad.json", "{ \"name\": ".into()), vec!["bad.json", "not a valid hardware profile"]),
        (write("missing.json", missing.to_string()), vec!["`input_axons_per_core`", "missing"]),
        (write("zero.json", zero.to_string()), vec!["`neurons_per_core`", "is 0"]),
        (write("negative.json", negative.to_string()), vec!["`synaptic_memory_bytes_per_core`", "is -128"]),
        (write("unknown.json", unknown.to_string()), vec!["`neurons_per_cor`", "unknown field"]),
    ];
    for (file, needles) in cases {
        assert_refused(&signgd(&with_data(&["--profile", &file]), dir.path()), &needles);
    }
    assert_refused(&signgd(&with_data(&["--profile", "nowhere.json"]), dir.path()), &["cannot read profile"]);
    // The good one, from a file, works.
    let file = write("mine.json", good.to_string());
    let output = signgd(&with_data(&["--profile", &file]), dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn cli_refuses_a_model_that_does_not_convert_and_bad_settings() {
    let dir = scratch("Sqrt");
    assert_refused(&signgd(&with_data(&[]), dir.path()), &["cannot convert model.onnx", "Sqrt"]);
    let dir = scratch("Relu");
    assert_refused(&signgd(&with_data(&["--weight-bits", "1"]), dir.path()), &["--weight-bits 1"]);
    assert_refused(&signgd(&with_data(&["--limit", "0"]), dir.path()), &["--limit 0"]);
    assert_refused(&signgd(&with_data(&["--threads", "0"]), dir.path()), &["--threads 0"]);
    assert_refused(&signgd(&["feasibility", "--model", "absent.onnx"], dir.path()), &["absent.onnx"]);
}

/// sinabs's memory rule, as `DynapcnnLayer.memory_summary` in synsense/sinabs
/// (`sinabs/backend/dynapcnn/dynapcnn_layer.py`) computes it with numpy: kernel memory
/// `c · 2^(ceil(log2(h·w)) + ceil(log2 f))` for a kernel `f × c × h × w`, neuron memory
/// `f · 2^(ceil(log2 fy) + ceil(log2 fx))` for an `f × fy × fx` neuron map, bias memory `f`.
fn sinabs_kernel(c: usize, h: usize, w: usize, f: usize) -> u64 {
    let e = ((h * w) as f64).log2().ceil() + (f as f64).log2().ceil();
    (c as f64 * 2f64.powf(e)) as u64
}

fn sinabs_neuron(f: usize, fy: usize, fx: usize) -> u64 {
    let e = (fy as f64).log2().ceil() + (fx as f64).log2().ceil();
    (f as f64 * 2f64.powf(e)) as u64
}

/// A fixture model converted with one calibration input of 0.5 everywhere.
fn fixture(name: &str, norm: ReluNorm) -> Network {
    let graph = read_onnx(Path::new(&format!("fixtures/models/{name}.onnx")), None).unwrap();
    let shape = graph.values[graph.input].shape.clone();
    let calibration = vec![ArrayD::from_elem(IxDyn(&shape), 0.5)];
    let options = ConvertOptions { calibration: calibration.into(), relu_norm: norm, ..ConvertOptions::default() };
    convert(&graph, &options).unwrap().network
}

fn placement<'a>(report: &'a TargetReport, name: &str) -> &'a PopulationPlacement {
    report.populations.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no population `{name}`"))
}

/// Checks sinabs's three memories of each named layer: (population, kernel f×c×h×w, neuron map
/// f×fy×fx), every layer with a bias of f entries.
fn assert_sinabs(report: &TargetReport, layers: &[(&str, [usize; 4], [usize; 3])]) {
    for &(name, [f, c, h, w], [nf, fy, fx]) in layers {
        let memory = placement(report, name).layer_memory.unwrap_or_else(|| panic!("`{name}` has no layer memory"));
        assert_eq!(memory.kernel_memory, sinabs_kernel(c, h, w, f), "kernel memory of `{name}`");
        assert_eq!(memory.neuron_memory, sinabs_neuron(nf, fy, fx), "neuron memory of `{name}`");
        assert_eq!(memory.bias_memory, f as u64, "bias memory of `{name}`");
    }
}

#[test]
fn speck_memory_of_the_vgg_fixture_follows_sinabs() {
    let speck = Profile::bundled("speck").unwrap();
    let report = run(&fixture("vgg", ReluNorm::Channel), &speck);
    // Conv 1→16 3×3 on 28×28, conv 16→32 3×3 on 14×14, Gemm 1568→64 reading [32, 7, 7] (sinabs
    // makes a linear layer a convolution whose kernel covers its input map: 64×32×7×7), Gemm
    // 64→10.
    assert_sinabs(
        &report,
        &[
            ("node_relu.unit", [16, 1, 3, 3], [16, 28, 28]),
            ("node_relu_1.unit", [32, 16, 3, 3], [32, 14, 14]),
            ("node_relu_2.unit", [64, 32, 7, 7], [64, 1, 1]),
            ("readout", [10, 64, 1, 1], [10, 1, 1]),
        ],
    );
    // 32 · 2^(6 + 6) = 131,072 kernel entries: more than Speck's largest kernel memory (64 Ki).
    let v = violation(&report, "node_relu_2.unit", "kernel memory");
    assert_eq!((v.limit_value, v.value), (65536, 131072));
    assert!(v.suggestion.contains("at most 16 input channels"), "{}", v.suggestion);
    // Max pooling takes no core and is reported; the failed layer still counts as a core.
    for pool in ["node_max_pool2d.axis2.max1", "node_max_pool2d_1.axis3.max1"] {
        assert_eq!(placement(&report, pool).cores, 0);
        let v = violation(&report, pool, "max pooling");
        assert!(v.suggestion.contains("AveragePool"), "{}", v.suggestion);
    }
    assert_eq!(report.cores, 4);
    assert_eq!(placement(&report, "node_relu_2.unit").core, None);
    // The rest sit on distinct cores whose memories hold them.
    let mut cores: Vec<usize> = report.populations.iter().filter_map(|p| p.core).collect();
    cores.sort_unstable();
    cores.dedup();
    assert_eq!(cores.len(), 3);
}

#[test]
fn speck_memory_of_the_resnet_fixture_follows_sinabs() {
    let speck = Profile::bundled("speck").unwrap();
    let report = run(&fixture("resnet", ReluNorm::Channel), &speck);
    assert_sinabs(
        &report,
        &[
            ("node_relu.unit", [16, 1, 3, 3], [16, 28, 28]),
            ("node_relu_1.unit", [16, 16, 3, 3], [16, 14, 14]),
            ("node_relu_2.unit", [16, 16, 3, 3], [16, 14, 14]),
            ("node_relu_3.unit", [32, 16, 3, 3], [32, 7, 7]),
            ("readout", [10, 32, 1, 1], [10, 1, 1]),
        ],
    );
    // `relu_4` adds two kernels: conv 32→32 3×3 and the shortcut's conv 16→32 1×1.
    let relu_4 = placement(&report, "node_relu_4.unit").layer_memory.unwrap();
    assert_eq!(relu_4.kernel_memory, sinabs_kernel(32, 3, 3, 32) + sinabs_kernel(16, 1, 1, 32));
    assert_eq!(relu_4.kernel_memory, 16896);
    assert_eq!(relu_4.neuron_memory, sinabs_neuron(32, 7, 7));
    // `relu_2` (the residual sum) needs 4,096 kernel entries, not its 412,736 synapses.
    assert_eq!(placement(&report, "node_relu_2.unit").layer_memory.unwrap().kernel_memory, 4096);
    // With per-channel normalisation only max pooling stands in the way.
    assert!(report.violations.iter().all(|v| v.limit.contains("max pooling")), "{:#?}", report.violations);
    assert_eq!(report.violations.len(), 4);
}

#[test]
fn per_element_relu_normalisation_is_refused_where_kernels_are_shared() {
    let speck = Profile::bundled("speck").unwrap();
    let element = run(&fixture("resnet", ReluNorm::Element), &speck);
    // One calibration input of 0.5: the maxima differ by position, so weights do too.
    let v = violation(&element, "node_relu_1.unit", "factors per output channel");
    assert!(v.value > 1);
    assert!(v.suggestion.contains("--relu-norm channel"), "{}", v.suggestion);
    for norm in [ReluNorm::Channel, ReluNorm::Layer] {
        let report = run(&fixture("resnet", norm), &speck);
        assert!(report.violations.iter().all(|v| !v.limit.contains("factors")), "{norm:?}: {:#?}", report.violations);
    }
}

#[test]
fn speck_checks_kernel_size_strides_channels_and_bias_memory() {
    let speck = Profile::bundled("speck").unwrap();
    // input [2, 20, 20] → conv 2→c, kernel k×k, stride s → readout.
    let conv_net = |c_out: usize, k: usize, s: usize, bias: f64| {
        let out = (20 - k) / s + 1;
        let conv = ConvBlock::new(
            vec![0.1; c_out * 2 * k * k],
            [2, 20, 20],
            [c_out, out, out],
            [k, k],
            [s, s],
            [0, 0],
            [1, 1],
            1,
        );
        let n = c_out * out * out;
        let hidden = Population {
            name: "conv".into(),
            kind: NeuronKind::Relu,
            shape: vec![c_out, out, out],
            operands: vec![Operand::new(vec![bias; n]).with(Source::Input, SynapseBlock::Conv(conv))],
        };
        let network = Network {
            input_shape: vec![2, 20, 20],
            populations: vec![hidden],
            readout: operand(1, Source::Population(0), dense(1, n)),
            output_shape: vec![1],
        };
        network.validate().unwrap();
        run(&network, &speck)
    };
    let fine = conv_net(4, 16, 4, 0.0);
    assert!(fine.violations.is_empty(), "{:#?}", fine.violations);
    assert_eq!(placement(&fine, "conv").layer_memory.unwrap().bias_memory, 0);
    let big = conv_net(4, 17, 1, 0.0);
    let v = violation(&big, "conv", "kernel size");
    assert_eq!((v.limit_value, v.value), (16, 17));
    let strided = conv_net(4, 3, 3, 0.0);
    assert_eq!(violation(&strided, "conv", "stride").value, 3);
    // 1,025 output channels with a bias: more channels and bias entries than a core holds.
    let wide = conv_net(1025, 20, 1, 0.5);
    assert_eq!(violation(&wide, "conv", "output channels").value, 1025);
    let v = violation(&wide, "conv", "bias memory");
    assert_eq!((v.limit_value, v.value), (1024, 1025));
}

#[test]
fn loihi_synapse_bits_of_a_sparse_block_follow_nengo_loihi() {
    let loihi = Profile::bundled("loihi").unwrap();
    // nengo-loihi (nengo_loihi/block.py, SynapseConfig.bits_per_axon): each input axon's weights
    // in groups of 64, each weight 8 bits + 10 index bits (1,024 compartments per core), each
    // group a 10-bit header, rounded up to 64-bit words.
    // 8 inputs, each reaching the 3 neurons of one core: 3·18 + 10 = 64 bits, one word each.
    let report = run(&one_layer(8, 3), &loihi);
    assert_eq!(placement(&report, "hidden").memory_bytes, 8 * 64 / 8);
    // Utilisation: 512 of the core's 1,048,576 bits.
    assert_eq!(placement(&report, "hidden").memory_utilisation, 512.0 / 1_048_576.0);
    // 1 input reaching 70 neurons: 64·18 + 10 = 1,162 bits → 19 words, 6·18 + 10 = 118 → 2 words.
    let report = run(&one_layer(1, 70), &loihi);
    assert_eq!(placement(&report, "hidden").memory_bytes, (19 + 2) * 64 / 8);
    // About 19 bits per synapse (1,344 bits over 70 synapses), not 8.
    assert!(placement(&report, "hidden").memory_bytes * 8 > 70 * 18);
}

#[test]
fn loihi_convolution_bits_share_the_kernel_per_input_pattern() {
    let loihi = Profile::bundled("loihi").unwrap();
    // input [2, 4, 4] → conv 2→3, 3×3, pad 1 → [3, 4, 4] → readout.
    let conv = ConvBlock::new(vec![0.1; 3 * 2 * 9], [2, 4, 4], [3, 4, 4], [3, 3], [1, 1], [1, 1], [1, 1], 1);
    let hidden = Population {
        name: "conv".into(),
        kind: NeuronKind::Relu,
        shape: vec![3, 4, 4],
        operands: vec![Operand::new(vec![0.0; 48]).with(Source::Input, SynapseBlock::Conv(conv))],
    };
    let network = Network {
        input_shape: vec![2, 4, 4],
        populations: vec![hidden],
        readout: operand(1, Source::Population(0), dense(1, 48)),
        output_shape: vec![1],
    };
    network.validate().unwrap();
    let report = run(&network, &loihi);
    // nengo-loihi (nengo_loihi/conv.py, conv2d_loihi_weights) stores one weight entry per
    // distinct pattern of taps of an input pixel: rows 0 and 3 reach 2 taps, rows 1 and 2 all 3,
    // likewise columns: 4 corner patterns of 2×2 taps, 4 edge patterns of 2×3, 1 inside of 3×3.
    // An entry holds c_in · taps · c_out = 6 · taps weights of 8 + 6 index bits (48
    // compartments), in groups of 64 with a 10-bit header, in 64-bit words:
    // 24 weights: 24·14 + 10 = 346 → 6 words; 36: 514 → 9 words; 54: 766 → 12 words.
    let bits = 4 * 6 * 64 + 4 * 9 * 64 + 12 * 64;
    assert_eq!(bits, 4608);
    assert_eq!(placement(&report, "conv").memory_bytes, bits / 8);
    assert!(report.fits, "{:#?}", report.violations);
}

#[test]
fn loihi2_synapses_and_neuron_state_share_one_memory() {
    let loihi2 = Profile::bundled("loihi2").unwrap();
    // 8 inputs × 3 neurons at 8 bits, plus 3 neurons of 24-bit state: 192 + 72 = 264 bits.
    let report = run(&one_layer(8, 3), &loihi2);
    assert_eq!(placement(&report, "hidden").memory_bytes, 264 / 8);
    // 128 KB hold 1,048,576 bits: 4,096 neurons reading 31 inputs each need 4,096·(31·8 + 24)
    // = 1,114,112 bits, more than one core, though each half fits.
    let report = run(&one_layer(31, 4096), &loihi2);
    assert_eq!(cores_of(&report, "hidden"), 2);
    // 3,855 · 272 = 1,048,560 bits fit one core; 3,856 · 272 = 1,048,832 do not.
    assert_eq!(cores_of(&run(&one_layer(31, 3855), &loihi2), "hidden"), 1);
    assert_eq!(cores_of(&run(&one_layer(31, 3856), &loihi2), "hidden"), 2);
}

#[test]
fn synaptic_events_per_step_split_a_population_when_rates_are_known() {
    let p = Profile { synaptic_events_per_ms_per_core: Some(20), ..profile() };
    // 5 neurons each reading 8 encoder elements (1 event per step each): 8 events per neuron, so
    // 2 neurons (16 events) per core: 3 cores. The readout reads 5 neurons firing 0.25 per step.
    let rated = MapOptions { rates: Some(vec![0.25]), ..MapOptions::default() };
    let report = map(&one_layer(8, 5), &p, &rated);
    assert_eq!(cores_of(&report, "hidden"), 3);
    assert_eq!(placement(&report, "hidden").events_per_ms_per_core, Some(16.0));
    assert_eq!(placement(&report, "readout").events_per_ms_per_core, Some(1.25));
    // Without rates, or without the limit, one core.
    assert_eq!(cores_of(&run(&one_layer(8, 5), &p), "hidden"), 1);
    assert_eq!(cores_of(&map(&one_layer(8, 5), &profile(), &rated), "hidden"), 1);
    assert_eq!(placement(&map(&one_layer(8, 5), &profile(), &rated), "hidden").events_per_ms_per_core, None);
}

/// Whether `v` is a whole multiple of `grid` within `levels` steps.
fn on_grid(v: f64, grid: f64, levels: f64) -> bool {
    let steps = v / grid;
    (steps - steps.round()).abs() < 1e-9 && steps.abs() <= levels + 1e-9
}

#[test]
fn quantised_on_the_chip_grid_every_weight_bias_and_threshold_lies_on_it() {
    // The VGG fixture with per-channel normalisation: its factors fold into the kernels.
    let network = fixture("vgg", ReluNorm::Channel);
    let bits = 8;
    let levels = 127.0;
    let (q, stats) = quantize_network_on_grid(&network, bits, 16);
    assert_eq!(stats.unfolded_blocks, 0);
    assert_eq!(stats.operands, network.populations.iter().map(|p| p.operands.len()).sum::<usize>() + 1);
    // Every effective synapse weight of an operand, factors included.
    let weights = |operand: &Operand| {
        let mut values = Vec::new();
        for projection in &operand.projections {
            projection.block.for_each_synapse(|_, _, w| values.push(w));
        }
        values
    };
    let operands = |n: &Network| -> Vec<Operand> {
        n.populations.iter().flat_map(|p| p.operands.clone()).chain(std::iter::once(n.readout.clone())).collect()
    };
    for (before, after) in operands(&network).iter().zip(operands(&q)) {
        // The operand's grid: its largest weight over the levels, the step rounded so that 1 is a
        // whole number of steps; constants on the same grid within 16-bit state.
        let largest = weights(before).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let grid = 1.0 / (levels / largest).floor();
        for v in weights(&after) {
            assert!(on_grid(v, grid, levels), "weight {v} is not on the grid {grid}");
        }
        for c in after.bias.to_vec() {
            assert!(on_grid(c, grid, 32767.0), "constant {c} is not on the grid {grid}");
        }
        // The neurons' unit threshold is a whole number of steps.
        assert!(on_grid(1.0, grid, f64::INFINITY));
    }
    // Per-element factors cannot be folded into a shared kernel: reported.
    let (_, stats) = quantize_network_on_grid(&fixture("vgg", ReluNorm::Element), bits, 16);
    assert!(stats.unfolded_blocks > 0);
}

#[test]
fn speck_pooling_sends_from_the_core_of_the_layer_before_it() {
    let speck = Profile::bundled("speck").unwrap();
    // ResNet: `relu` feeds both max populations of its pooling (which take no core) and nothing
    // else, `relu_2` feeds `relu_3` and `relu_4`: no core feeds more than 2 cores.
    let report = run(&fixture("resnet", ReluNorm::Channel), &speck);
    assert!(report.violations.iter().all(|v| !v.limit.contains("destination cores")), "{:#?}", report.violations);
    // The pooled output of VGG's first layer reaches `relu_1` from `relu`'s core.
    let mut network = fixture("vgg", ReluNorm::Channel);
    // A second consumer of the pooled map and a third: `relu`'s core would feed 3 cores.
    let extra = network.populations[3].clone();
    for k in 0..2 {
        let mut copy = extra.clone();
        copy.name = format!("copy{k}");
        network.populations.push(copy);
    }
    // The copies (appended, reading the pooled map) are read by nothing.
    network.validate().unwrap();
    let report = run(&network, &speck);
    let v = violation(&report, "node_relu.unit", "destination cores per core");
    assert_eq!((v.limit_value, v.value), (2, 3));
}
