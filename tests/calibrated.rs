//! Calibrated dynamics: each population is scaled by its largest output on the calibration
//! inputs, so its neurons reach values the reference preset's bound Σ η_t cuts off, and the
//! reference preset stays the default.

use ndarray::{ArrayD, IxDyn};
use signgd::convert::{convert, Conversion, ConvertOptions, Preset};
use signgd::engine::SimConfig;
use signgd::model::onnx::builder::*;
use signgd::model::{read_onnx_bytes, Graph};
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
    let calibration = vec![ArrayD::from_shape_vec(IxDyn(&[1, 4]), x.to_vec()).unwrap()];
    convert(g, &ConvertOptions { calibration: calibration.into(), preset, ..Default::default() })
        .unwrap_or_else(|e| panic!("{e}"))
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
