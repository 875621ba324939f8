//! `signgd run` end to end on the golden cases: data and calibration files in, `--precision f64
//! --timesteps 1-128 --dump-outputs` out, every decoded output of every step equal to the
//! reference implementation's within 1e-12.

mod common;

use std::process::Command;

use common::golden::{floats, GoldenCase, TOLERANCE};
use ndarray::{Array2, Array3};
use ndarray_npy::{read_npy, write_npy};

fn run_case(name: &str) {
    let case = GoldenCase::load(name);
    let dir = tempfile::tempdir().unwrap();
    let input = case.input();
    let data = dir.path().join("input.npy");
    write_npy(&data, &Array2::from_shape_vec((1, input.len()), input).unwrap()).unwrap();
    let dump = dir.path().join("outputs.npy");
    let model = format!("{}/fixtures/golden_onnx/{name}.onnx", env!("CARGO_MANIFEST_DIR"));
    let steps = case.steps();
    let output = Command::new(env!("CARGO_BIN_EXE_signgd"))
        .args(["run", "--model", &model, "--precision", "f64", "--threads", "1"])
        .arg("--data")
        .arg(&data)
        .arg("--calibration")
        .arg(&data)
        .args(["--timesteps", &format!("1-{steps}")])
        .arg("--dump-outputs")
        .arg(&dump)
        .output()
        .unwrap();
    assert!(output.status.success(), "{name}: {}", String::from_utf8_lossy(&output.stderr));
    let outputs: Array3<f64> = read_npy(&dump).unwrap();
    assert_eq!(outputs.shape()[..2], [steps, 1], "{name}: [checkpoints, inputs, outputs]");
    let golden = case.json["snn_output_per_t"].as_array().unwrap();
    for (t, expected) in golden.iter().enumerate() {
        for (k, want) in floats(expected).iter().enumerate() {
            let got = outputs[[t, 0, k]];
            assert!((got - want).abs() <= TOLERANCE, "{name} t={} output {k}: {got} vs {want}", t + 1);
        }
    }
}

#[test]
fn run_reproduces_every_golden_trace() {
    for name in [
        "gelu_pipeline",
        "gelu_const",
        "relu_pipeline",
        "max4_pipeline",
        "max4_const",
        "layernorm8_pipeline",
        "layernorm8_const",
    ] {
        run_case(name);
    }
}
