//! A nonlinearity that cannot be converted stops the conversion with an error naming the node,
//! its operator and what to do; the converter never leaves it silently in the graph.

use ndarray::{ArrayD, IxDyn};
use signgd::convert::{convert, ConvertOptions};
use signgd::model::onnx::builder::{encode, graph, model, node, tensor_f32, value_info_fixed};
use signgd::model::read_onnx_bytes;
use signgd::snn::NeuronKind;

/// A model `x [1,4] → Gemm → <op> → output` with the op's extra initializers.
fn model_with(op: &str, extra_inputs: &[&str], initializers: Vec<signgd::model::onnx::TensorProto>) -> Vec<u8> {
    let w: Vec<f32> = (0..16).map(|i| (i as f32 - 7.5) * 0.1).collect();
    let mut inputs = vec!["h"];
    inputs.extend_from_slice(extra_inputs);
    let mut inits = vec![tensor_f32("w", &[4, 4], &w), tensor_f32("b", &[4], &[0.1, -0.2, 0.3, 0.0])];
    inits.extend(initializers);
    let g = graph(
        vec![node("Gemm", &["x", "w", "b"], &["h"], vec![]), node(op, &inputs, &["y"], vec![])],
        vec![value_info_fixed("x", &[1, 4])],
        vec![value_info_fixed("y", &[1, 4])],
        inits,
    );
    encode(&model(g, 17))
}

fn try_convert(bytes: &[u8]) -> Result<signgd::convert::Conversion, String> {
    let graph = read_onnx_bytes(bytes, None, "test.onnx").map_err(|e| e.to_string())?;
    let options =
        ConvertOptions { calibration: vec![ArrayD::from_elem(IxDyn(&[1, 4]), 0.5)].into(), ..Default::default() };
    convert(&graph, &options).map_err(|e| e.to_string())
}

#[test]
fn lone_sqrt_erf_and_odd_powers_are_refused_by_name() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("Sqrt", model_with("Sqrt", &[], vec![]), "Sqrt converts only as the divisor of a Div"),
        ("Erf", model_with("Erf", &[], vec![]), "Erf converts only inside GELU"),
        ("Pow", model_with("Pow", &["p"], vec![tensor_f32("p", &[], &[3.0])]), "Pow converts only with exponent 2"),
    ];
    for (op, bytes, expected) in cases {
        let error = try_convert(&bytes).err().unwrap_or_else(|| panic!("{op} should be refused"));
        assert!(error.contains(expected), "{op}: {error}");
        assert!(error.contains(&format!("/{op}_y")), "{op}: the message names the node: {error}");
        assert!(error.contains(&format!("({op})")), "{op}: the message names the operator: {error}");
    }
}

#[test]
fn convertible_nonlinearities_become_populations() {
    let cases = [
        ("Relu", NeuronKind::Relu),
        ("Exp", NeuronKind::Exp),
        ("Abs", NeuronKind::Abs),
        ("Sigmoid", NeuronKind::Elementwise { function: signgd::snn::Elementwise::Sigmoid }),
        ("Tanh", NeuronKind::Elementwise { function: signgd::snn::Elementwise::Tanh }),
    ];
    for (op, kind) in cases {
        let conversion = try_convert(&model_with(op, &[], vec![])).unwrap_or_else(|e| panic!("{op}: {e}"));
        let kinds: Vec<NeuronKind> = conversion.network.populations.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, vec![kind], "{op}");
    }
    // x · x of two activations is a product neuron; x / sqrt(v) a two-operand neuron.
    let square = try_convert(&model_with("Mul", &["h"], vec![])).unwrap();
    assert_eq!(square.network.populations[0].kind, NeuronKind::Product);
    let g = graph(
        vec![
            node("Gemm", &["x", "w", "b"], &["h"], vec![]),
            node("Abs", &["h"], &["a"], vec![]),
            node("Sqrt", &["a"], &["s"], vec![]),
            node("Div", &["h", "s"], &["y"], vec![]),
        ],
        vec![value_info_fixed("x", &[1, 4])],
        vec![value_info_fixed("y", &[1, 4])],
        vec![tensor_f32("w", &[4, 4], &[0.1; 16]), tensor_f32("b", &[4], &[0.5; 4])],
    );
    let fused = try_convert(&encode(&model(g, 17))).unwrap();
    let kinds: Vec<NeuronKind> = fused.network.populations.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, vec![NeuronKind::Abs, NeuronKind::DivSqrt]);
}

#[test]
fn relu_networks_need_calibration() {
    let graph = read_onnx_bytes(&model_with("Relu", &[], vec![]), None, "test.onnx").unwrap();
    let error = convert(&graph, &ConvertOptions::default()).err().unwrap().to_string();
    assert!(error.contains("calibration"), "{error}");
}
