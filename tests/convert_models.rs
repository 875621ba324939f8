//! Every fixture model converts, and the conversion is exact: with every source carrying its
//! ANN value, each operand's affine map reproduces the ANN's value at that node's input, and the
//! readout reproduces the logits (the reconstruction identity x = A e + c of SPEC.md §2).

use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};
use signgd::convert::affine::broadcast_indices;
use signgd::convert::{convert, ConvertOptions, Preset};
use signgd::data::{read_inputs, LoadLimits};
use signgd::model::read_onnx;
use signgd::snn::{GeluTarget, Operand, Source};

fn fixture_models() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models");
    let mut models: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
                .collect()
        })
        .unwrap_or_default();
    models.sort();
    models
}

fn images(count: usize) -> Vec<Vec<f64>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/data/fashion-mnist-test-1000-images-idx3-ubyte.gz");
    let data = read_inputs(&path, LoadLimits { max_samples: Some(count), ..LoadLimits::default() }).unwrap();
    (0..data.samples).map(|i| data.sample(i).to_vec()).collect()
}

fn evaluate(operand: &Operand, sources: &dyn Fn(Source) -> Vec<f64>) -> Vec<f64> {
    let mut z = operand.bias.to_vec();
    for projection in &operand.projections {
        projection.block.multiply_add(&sources(projection.source), &mut z);
    }
    z
}

fn assert_close(what: &str, ours: &[f64], ann: &[f64]) {
    assert_eq!(ours.len(), ann.len(), "{what}");
    let scale = ann.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (a, b)) in ours.iter().zip(ann).enumerate() {
        assert!((a - b).abs() <= 1e-9 * scale, "{what}[{i}]: network {a}, ANN {b}");
    }
}

#[test]
fn every_fixture_converts_and_reconstructs_the_ann_exactly() {
    reconstructs_every_fixture(Preset::Reference);
}

/// Calibrated dynamics rescale every population; the identity must hold all the same.
#[test]
fn calibrated_dynamics_keep_the_reconstruction_identity() {
    reconstructs_every_fixture(Preset::Calibrated);
}

fn reconstructs_every_fixture(preset: Preset) {
    let models = fixture_models();
    assert!(!models.is_empty(), "no fixture models found");
    let inputs = images(4);
    for path in models {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let graph = read_onnx(&path, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        let shape = graph.values[graph.input].shape.clone();
        let as_input = |x: &Vec<f64>| ArrayD::from_shape_vec(IxDyn(&shape), x.clone()).unwrap();
        let options = ConvertOptions {
            gelu: GeluTarget::Sigmoid,
            calibration: inputs.iter().map(as_input).collect::<Vec<_>>().into(),
            preset,
            ..ConvertOptions::default()
        };
        let conversion = convert(&graph, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        let network = &conversion.network;
        assert!(!network.populations.is_empty(), "{name}: no neurons");
        let converted = &conversion.graph;
        for x in &inputs {
            let values = converted.evaluate_all::<f64>(&as_input(x)).unwrap();
            let value = |v: usize| -> Vec<f64> {
                match (&values[v], converted.constant(v)) {
                    (Some(a), _) => a.iter().copied().collect(),
                    (None, Some(c)) => c.iter_f64().collect(),
                    _ => panic!("{name}: value {v} not computed"),
                }
            };
            let node_of = |p: usize| {
                converted
                    .nodes
                    .iter()
                    .find(|n| n.name == network.populations[p].name)
                    .unwrap_or_else(|| panic!("{name}: population {p} has no node"))
            };
            // A relay holds the linear part of its value: its operand applied to its sources.
            let mut outputs: Vec<Vec<f64>> = Vec::new();
            for (p, population) in network.populations.iter().enumerate() {
                let output = if population.kind.is_relay() {
                    evaluate(&population.operands[0], &|s| match s {
                        Source::Input => x.clone(),
                        Source::Population(q) => outputs[q].clone(),
                    })
                } else {
                    value(node_of(p).output)
                };
                outputs.push(output);
            }
            let sources = |s: Source| match s {
                Source::Input => x.clone(),
                Source::Population(p) => outputs[p].clone(),
            };
            for (p, population) in network.populations.iter().enumerate() {
                if population.kind.is_relay() {
                    continue;
                }
                let node = node_of(p);
                for (j, operand) in population.operands.iter().enumerate() {
                    let input = node.inputs[j];
                    let raw = value(input);
                    let expected: Vec<f64> = broadcast_indices(&converted.values[input].shape, &population.shape)
                        .into_iter()
                        .map(|i| raw[i])
                        .collect();
                    assert_close(
                        &format!("{name}: {} operand {j}", population.name),
                        &evaluate(operand, &sources),
                        &expected,
                    );
                }
            }
            let logits = converted.evaluate::<f64>(&as_input(x)).unwrap();
            let original = graph.evaluate::<f64>(&as_input(x)).unwrap();
            let logits: Vec<f64> = logits.iter().copied().collect();
            assert_close(
                &format!("{name}: passes keep the ANN"),
                &logits,
                &original.iter().copied().collect::<Vec<_>>(),
            );
            assert_close(&format!("{name}: readout"), &evaluate(&network.readout, &sources), &logits);
        }
    }
}
