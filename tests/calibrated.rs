//! Calibrated dynamics: each population is scaled by its range on the calibration inputs (its
//! largest output, or a few times its mean magnitude for heavy-tailed kinds), so its neurons
//! reach values the reference preset's bound Σ η_t cuts off, and the reference preset stays the
//! default.

use ndarray::{ArrayD, IxDyn};
use signgd::convert::{convert, Conversion, ConvertOptions, Preset};
use signgd::engine::SimConfig;
use signgd::model::onnx::builder::*;
use signgd::model::{read_onnx_bytes, Graph};
use signgd::real::Real;
use signgd::runner::simulate_inputs;
use signgd::snn::{EncoderKind, Schedule};

/// `x [1,4] → <op>(x[, x]) → y`.
fn model_of(op: &str, inputs: &[&str]) -> Graph {
    let g = graph(
        vec![node(op, inputs, &["y"], vec![])],
        vec![value_info_fixed("x", &[1, 4])],
        vec![value_info_fixed("y", &[1, 4])],
        vec![],
    );
    read_onnx_bytes(&encode(&model(g, 17)), None, "calibrated.onnx").unwrap_or_else(|e| panic!("{e}"))
}

fn conversion(g: &Graph, x: [f64; 4], preset: Preset) -> Conversion {
    calibrated_on(g, &[x], preset, 1)
}

fn calibrated_on(g: &Graph, inputs: &[[f64; 4]], preset: Preset, threads: usize) -> Conversion {
    let calibration: Vec<_> =
        inputs.iter().map(|x| ArrayD::from_shape_vec(IxDyn(&[1, 4]), x.to_vec()).unwrap()).collect();
    convert(g, &ConvertOptions { calibration: calibration.into(), preset, threads, ..Default::default() })
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The readout's weights: what the last population's unit output is multiplied by.
fn readout_weights(c: &Conversion) -> Vec<f64> {
    let mut readout = vec![0.0; 4];
    c.network.readout.projections[0].block.multiply_add(&[1.0; 4], &mut readout);
    readout
}

/// The SNN's output at step 64 with the exact encoder and exp:0.3:0.9 (Σ η_t < 3).
fn snn(c: &Conversion, x: [f64; 4]) -> Vec<f64> {
    let config = SimConfig {
        encoder: EncoderKind::Exact,
        schedule: Schedule::parse("exp:0.3:0.9").unwrap(),
        ..SimConfig::reference(vec![64])
    };
    simulate_inputs::<f64>(&c.network, &config, &[x.to_vec()], 1, &|_| {}).unwrap().outputs
}

#[test]
fn exp_is_shifted_by_the_log_of_its_range_and_reaches_values_beyond_the_bound() {
    let g = model_of("Exp", &["x"]);
    let x = [0.0, 1.0, 2.0, -20.0];
    let calibrated = conversion(&g, x, Preset::Calibrated);
    let e = std::f64::consts::E;
    // The neuron computes exp(x − ln m) with m = [1, e, e², 1] (e⁻²⁰ is below the floor 1e−5).
    let exp = &calibrated.network.populations[0];
    assert_eq!(exp.kind, signgd::snn::NeuronKind::Exp);
    let bias = exp.operands[0].bias.to_vec();
    for (b, want) in bias.iter().zip([0.0, -1.0, -2.0, 0.0]) {
        assert!((b - want).abs() < 1e-12, "{bias:?}");
    }
    // Readers multiply its output by m again.
    let mut readout = vec![0.0; 4];
    calibrated.network.readout.projections[0].block.multiply_add(&[1.0; 4], &mut readout);
    for (r, want) in readout.iter().zip([1.0, e, e * e, 1.0]) {
        assert!((r - want).abs() < 1e-12, "{readout:?}");
    }
    let range = &calibrated.ranges[0];
    assert!(range.scaled);
    assert!((range.scale.0 - 1.0).abs() < 1e-12 && (range.scale.1 - e * e).abs() < 1e-12, "{:?}", range.scale);
    assert_eq!(range.saturated(0.5), 0.75);
    assert_eq!(range.saturated(1.0 + 1e-6), 0.0);

    // e² = 7.39 lies beyond Σ η_t = 3: the reference estimate stops below 3, the calibrated
    // one (steps of e²·η_t) reaches it.
    let want: Vec<f64> = x.iter().map(|v| v.exp()).collect();
    let reference = snn(&conversion(&g, x, Preset::Reference), x);
    assert!(reference[2] < 3.0, "{reference:?}");
    let ours = snn(&calibrated, x);
    for (i, (o, w)) in ours.iter().zip(&want).enumerate() {
        assert!((o - w).abs() < 0.01 * w.max(1.0), "element {i}: {o} vs {w} ({ours:?})");
    }
}

#[test]
fn a_product_is_scaled_by_its_range_and_converges() {
    let g = model_of("Mul", &["x", "x"]);
    let x = [3.0, -2.0, 0.5, 0.0];
    let calibrated = conversion(&g, x, Preset::Calibrated);
    // m = x² = [9, 4, 0.25, floor → 1]: one operand is divided by m, the readout multiplies by it.
    let mut readout = vec![0.0; 4];
    calibrated.network.readout.projections[0].block.multiply_add(&[1.0; 4], &mut readout);
    assert_eq!(readout, vec![9.0, 4.0, 0.25, 1.0]);
    let ours = snn(&calibrated, x);
    for (i, (o, w)) in ours.iter().zip([9.0, 4.0, 0.25, 0.0]).enumerate() {
        assert!((o - w).abs() < 0.05, "element {i}: {o} vs {w} ({ours:?})");
    }
    let reference = snn(&conversion(&g, x, Preset::Reference), x);
    assert!(reference[0] < 3.0, "{reference:?}");
}

#[test]
fn the_reference_preset_is_the_default_and_records_no_ranges() {
    assert_eq!(ConvertOptions::default().preset, Preset::Reference);
    let g = model_of("Exp", &["x"]);
    let x = [0.0, 1.0, 2.0, -20.0];
    let reference = conversion(&g, x, Preset::Reference);
    assert!(reference.ranges.is_empty());
    // No scaling: the operand is x itself, the readout the identity.
    assert_eq!(reference.network.populations[0].operands[0].bias.to_vec(), vec![0.0; 4]);
    let mut readout = vec![0.0; 4];
    reference.network.readout.projections[0].block.multiply_add(&[1.0; 4], &mut readout);
    assert_eq!(readout, vec![1.0; 4]);
}

#[test]
fn gelu_is_scaled_by_its_range_and_reaches_values_beyond_the_bound() {
    let g = graph(
        vec![node("Gelu", &["x"], &["y"], vec![])],
        vec![value_info_fixed("x", &[1, 4])],
        vec![value_info_fixed("y", &[1, 4])],
        vec![],
    );
    let g = read_onnx_bytes(&encode(&model(g, 20)), None, "gelu.onnx").unwrap_or_else(|e| panic!("{e}"));
    let x = [6.0, -1.0, 0.5, 2.0];
    let gelu = |v: f64| v / (1.0 + (-1.702 * v).exp());
    let calibrated = conversion(&g, x, Preset::Calibrated);
    // One neuron computing gelu(x) / m, its second operand the constant m = |gelu(x)|.
    let population = &calibrated.network.populations[0];
    assert_eq!(population.kind, signgd::snn::NeuronKind::ScaledGelu { target: signgd::snn::GeluTarget::Sigmoid });
    let exact = |v: f64| 0.5 * v * (1.0 + Real::erf(v / std::f64::consts::SQRT_2));
    let m: Vec<f64> = x.iter().map(|&v| exact(v).abs()).collect();
    assert!(population.operands[1].projections.is_empty());
    for (b, want) in population.operands[1].bias.to_vec().iter().zip(&m) {
        assert!((b - want).abs() < 1e-12, "divisor {b} vs {want}");
    }
    for (r, want) in readout_weights(&calibrated).iter().zip(&m) {
        assert!((r - want).abs() < 1e-12, "readout {r} vs {want}");
    }
    // gelu(6) = 6 lies beyond Σ η_t < 3: the reference estimate stops below 3, the calibrated one
    // reaches it (to the sigmoid target's precision).
    let reference = snn(&conversion(&g, x, Preset::Reference), x);
    assert!(reference[0] < 3.0, "{reference:?}");
    let ours = snn(&calibrated, x);
    for (i, (o, &v)) in ours.iter().zip(&x).enumerate() {
        assert!((o - gelu(v)).abs() < 0.02 * gelu(v).abs().max(1.0), "element {i}: {o} vs {} ({ours:?})", gelu(v));
    }
}

#[test]
fn a_heavy_tailed_population_is_scaled_by_a_few_times_its_mean_and_relu_by_its_peak() {
    // Eight calibration inputs; element 0 is an outlier on the first.
    let mut inputs = vec![[0.0, 1.0, 1.0, 1.0]; 8];
    inputs[0][0] = 8.0;
    let e = std::f64::consts::E;
    let exp = calibrated_on(&model_of("Exp", &["x"]), &inputs, Preset::Calibrated, 1);
    // exp: peaks [e⁸, e, e, e], mean magnitudes [(e⁸ + 7) / 8, e, e, e]: element 0 takes
    // 4 × its mean, (e⁸ + 7) / 2, below its peak; the others their peak, below 4 × their mean.
    let want = [(e.powi(8) + 7.0) / 2.0, e, e, e];
    for (r, w) in readout_weights(&exp).iter().zip(want) {
        assert!((r - w).abs() < 1e-9 * w, "exp scale {r} vs {w}");
    }
    // ReLU keeps ReLU normalisation's peak, whatever its mean.
    let relu = calibrated_on(&model_of("Relu", &["x"]), &inputs, Preset::Calibrated, 1);
    assert_eq!(readout_weights(&relu), vec![8.0, 1.0, 1.0, 1.0]);
    // The means are exact sums: the same scales on any number of workers.
    let two = calibrated_on(&model_of("Exp", &["x"]), &inputs, Preset::Calibrated, 2);
    assert_eq!(readout_weights(&two), readout_weights(&exp));
}

#[test]
fn softmax_exponents_are_centred_so_a_shifted_input_needs_no_other_scale() {
    let g = model_of("Softmax", &["x"]);
    let x = [0.5, 1.0, -1.0, 2.0];
    let calibrated = conversion(&g, x, Preset::Calibrated);
    assert!(calibrated.graph.nodes.iter().any(|n| n.name.ends_with(".centre")), "no centring node");
    let reference = conversion(&g, x, Preset::Reference);
    assert!(!reference.graph.nodes.iter().any(|n| n.name.ends_with(".centre")));
    // Every exponent 6 higher than on the calibration input: exp(x + 6) is 403 times the scale
    // calibrated for it, far beyond Σ η_t, but x + 6 − mean(x + 6) is what the neurons see.
    let shifted = x.map(|v| v + 6.0);
    let total: f64 = x.iter().map(|v| v.exp()).sum();
    let ours = snn(&calibrated, shifted);
    for (i, (o, v)) in ours.iter().zip(x).enumerate() {
        let want = v.exp() / total;
        assert!((o - want).abs() < 0.01, "element {i}: {o} vs {want} ({ours:?})");
    }
}
