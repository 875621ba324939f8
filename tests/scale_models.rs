//! Small models of the paper's architectures, built from torchvision's and timm's own classes
//! (`fixtures/scale/`, made by `tools/scale/export.py --small`): the conversion keeps their
//! structure (no explicit sparse matrix where a convolution or a per-token layer was, weights
//! stored about once), reproduces the ANN exactly, and the engine's kernels for the structured
//! blocks agree with the same network written out as sparse matrices.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use signgd::convert::affine::to_csr;
use signgd::convert::verify::reconstruction;
use signgd::convert::{convert, Conversion, ConvertOptions, Preset};
use signgd::engine::SimConfig;
use signgd::model::{read_onnx, Evaluator};
use signgd::runner::simulate_inputs;
use signgd::snn::{GeluTarget, Network, Source, SynapseBlock};

const MODELS: [&str; 7] = ["resnet", "regnet", "vgg", "convnext", "mixer", "resmlp", "vit"];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scale")
}

fn npy(path: &Path) -> ArrayD<f32> {
    ndarray_npy::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The model, its input, PyTorch's logits and the conversion (calibrated on that input).
fn load(name: &str) -> (signgd::model::Graph, ArrayD<f64>, Vec<f64>, Conversion) {
    load_with(name, Preset::Reference)
}

fn load_with(name: &str, preset: Preset) -> (signgd::model::Graph, ArrayD<f64>, Vec<f64>, Conversion) {
    let graph = read_onnx(&dir().join(format!("{name}.onnx")), None).unwrap_or_else(|e| panic!("{name}: {e}"));
    let input = npy(&dir().join(format!("{name}.input.npy"))).mapv(f64::from);
    let logits = npy(&dir().join(format!("{name}.logits.npy"))).iter().map(|&v| v as f64).collect();
    let options = ConvertOptions {
        gelu: GeluTarget::Sigmoid,
        calibration: vec![input.clone()].into(),
        preset,
        ..ConvertOptions::default()
    };
    let conversion = convert(&graph, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
    (graph, input, logits, conversion)
}

#[test]
fn the_evaluator_reproduces_pytorch() {
    for name in MODELS {
        let (graph, input, logits, _) = load(name);
        let ours = graph.evaluate::<f64>(&input).unwrap();
        for (a, b) in ours.iter().zip(&logits) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{name}: {a} vs PyTorch {b}");
        }
    }
}

#[test]
fn inputs_evaluated_together_get_the_bits_they_get_alone() {
    for name in MODELS {
        let (graph, input, _, _) = load(name);
        let evaluator = Evaluator::<f32>::new(&graph);
        // Distinct inputs: the committed one, scaled and shifted.
        let inputs: Vec<ArrayD<f32>> =
            (0..5).map(|k| input.mapv(|v| (v * (1.0 - 0.1 * k as f64) + 0.05 * k as f64) as f32)).collect();
        let mut visited = vec![0usize; inputs.len()];
        let together = evaluator.evaluate_many_visit(&inputs, |b, _, _| visited[b] += 1).unwrap();
        assert!(visited.iter().all(|&v| v == graph.nodes.len()), "{name}: {visited:?}");
        for (k, (x, y)) in inputs.iter().zip(&together).enumerate() {
            let alone = evaluator.evaluate(x).unwrap();
            let bits = |a: &ArrayD<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(y), bits(&alone), "{name}: input {k}");
        }
    }
    // The ResNet and VGG models' last stages (maps of 1×1 to 4×4 at 32×32) are the case.
    let (graph, ..) = load("resnet");
    assert!(Evaluator::<f32>::new(&graph).preferred_batch() > 1);
}

/// Weights the network stores, a matrix shared by several blocks counted once.
fn stored_parameters(network: &Network) -> usize {
    let mut shared = HashSet::new();
    let operands = network.populations.iter().flat_map(|p| &p.operands).chain([&network.readout]);
    operands
        .flat_map(|o| &o.projections)
        .map(|p| match &p.block {
            SynapseBlock::Dense(dense) if !shared.insert(dense.matrix.weights.storage_id()) => 0,
            block => block.parameters(),
        })
        .sum()
}

#[test]
fn convolutions_and_per_token_layers_stay_structured() {
    for name in MODELS {
        let (graph, _, _, conversion) = load(name);
        let network = &conversion.network;
        let parameters: usize = graph.values.iter().filter_map(|v| v.constant.as_ref()).map(|c| c.len()).sum();
        let stored = stored_parameters(network);
        assert!(
            stored as f64 <= 1.5 * parameters as f64,
            "{name}: the network stores {stored} weights for a model of {parameters} parameters"
        );
        let operands = network.populations.iter().flat_map(|p| p.operands.iter().map(move |o| (&p.name, o)));
        for (population, operand) in operands.chain(std::iter::once((&"readout".to_string(), &network.readout))) {
            for projection in &operand.projections {
                // Explicit matrices only for compositions onto the input, which the float
                // encoder's closed form computes once per input.
                let sparse = matches!(projection.block, SynapseBlock::Sparse { .. });
                assert!(
                    !sparse || projection.source == Source::Input,
                    "{name}: `{population}` reads {:?} through an explicit sparse matrix",
                    projection.source
                );
            }
        }
    }
}

#[test]
fn the_network_reconstructs_the_ann() {
    reconstructs_every_model(Preset::Reference);
}

/// Calibrated dynamics rescale every population (per element, then sliced: ViT's class token)
/// and centre softmax's exponents; the identity holds all the same.
#[test]
fn the_calibrated_network_reconstructs_the_ann() {
    reconstructs_every_model(Preset::Calibrated);
}

fn reconstructs_every_model(preset: Preset) {
    for name in MODELS {
        let (_, input, _, conversion) = load_with(name, preset);
        for (check, bound) in [
            (reconstruction::<f64>(&conversion, &input).unwrap(), 1e-13),
            (reconstruction::<f32>(&conversion, &input).unwrap(), 1e-5),
        ] {
            let worst = check.worst().unwrap();
            assert!(
                worst.relative_error <= bound,
                "{name} ({}): `{}` operand {} is {:.2e} off (relative to the magnitude it sums)",
                check.precision,
                worst.population,
                worst.operand,
                worst.relative_error
            );
        }
    }
}

/// The same network with every block written out as an explicit sparse matrix.
fn as_sparse(network: &Network) -> Network {
    let mut out = network.clone();
    let operands = out.populations.iter_mut().flat_map(|p| p.operands.iter_mut()).chain([&mut out.readout]);
    for projection in operands.flat_map(|o| o.projections.iter_mut()) {
        projection.block = SynapseBlock::Sparse { matrix: to_csr(&projection.block).to_csc() };
    }
    out
}

#[test]
fn structured_kernels_agree_with_sparse_matrices() {
    for name in MODELS {
        let (_, input, _, conversion) = load(name);
        let config = SimConfig::reference(vec![4, 16]);
        let x: Vec<f64> = input.iter().copied().collect();
        let structured =
            simulate_inputs::<f64>(&conversion.network, &config, std::slice::from_ref(&x), 2, &|_| {}).unwrap();
        let sparse =
            simulate_inputs::<f64>(&as_sparse(&conversion.network), &config, std::slice::from_ref(&x), 1, &|_| {})
                .unwrap();
        for (a, b) in structured.outputs.iter().zip(&sparse.outputs) {
            assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()), "{name}: structured {a} vs sparse {b}");
        }
        assert_eq!(structured.counters, sparse.counters, "{name}: counts differ between layouts");
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let one =
            simulate_inputs::<f32>(&conversion.network, &config, &[x32.clone(), x32.clone()], 1, &|_| {}).unwrap();
        let two = simulate_inputs::<f32>(&conversion.network, &config, &[x32.clone(), x32], 2, &|_| {}).unwrap();
        assert_eq!(one.outputs, two.outputs, "{name}: results depend on the thread count");
    }
}

#[test]
fn every_model_is_committed_with_its_input_and_logits() {
    for name in MODELS {
        for suffix in ["onnx", "input.npy", "logits.npy"] {
            assert!(dir().join(format!("{name}.{suffix}")).is_file(), "fixtures/scale/{name}.{suffix} is missing");
        }
    }
}
