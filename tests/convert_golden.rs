//! The golden cases exported to ONNX convert and reproduce the reference traces end to end
//! (reader → passes → lowering → engine), within 1e-12 in float64.

mod common;

use common::golden::{replay, GoldenCase};
use ndarray::{ArrayD, IxDyn};
use signgd::convert::{convert, ConvertOptions};
use signgd::model::read_onnx;
use signgd::snn::GeluTarget;

fn convert_case(name: &str) -> (GoldenCase, signgd::snn::Network) {
    let case = GoldenCase::load(name);
    let path = format!("{}/fixtures/golden_onnx/{name}.onnx", env!("CARGO_MANIFEST_DIR"));
    let graph = read_onnx(std::path::Path::new(&path), None).unwrap();
    let shape: Vec<usize> =
        case.json["input_shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    // The reference calibrates ReLU normalisation on one batch equal to the case's own input.
    let calibration = vec![ArrayD::from_shape_vec(IxDyn(&shape), case.input()).unwrap()];
    let options =
        ConvertOptions { gelu: GeluTarget::Sigmoid, calibration: calibration.into(), ..ConvertOptions::default() };
    let conversion = convert(&graph, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
    (case, conversion.network)
}

macro_rules! golden_case {
    ($($name:ident),*) => {$(
        #[test]
        fn $name() {
            let (case, network) = convert_case(stringify!($name));
            replay(&case, &network);
        }
    )*};
}

golden_case!(
    gelu_pipeline,
    gelu_const,
    relu_pipeline,
    max4_pipeline,
    max4_const,
    layernorm8_pipeline,
    layernorm8_const
);
