//! Numerical hazards: non-finite weights in a model and non-finite values in a data set are
//! refused with an error that says what is wrong, never converted or simulated silently.

use ndarray::{ArrayD, IxDyn};
use signgd::convert::{convert, ConvertOptions};
use signgd::data::{read_inputs, LoadLimits};
use signgd::model::onnx::builder::*;
use signgd::model::read_onnx_bytes;

/// x[1,4] → Gemm(w[3,4], b[3], transB) → Relu → y[1,3], with `w[0]` and `b[0]` as given.
fn gemm_model(w0: f32, b0: f32) -> Vec<u8> {
    let mut w: Vec<f32> = (0..12).map(|i| i as f32 * 0.1 - 0.5).collect();
    w[0] = w0;
    let b = [b0, 0.1, -0.2];
    let g = graph(
        vec![node("Gemm", &["x", "w", "b"], &["h"], vec![attr_i("transB", 1)]), node("Relu", &["h"], &["y"], vec![])],
        vec![value_info_fixed("x", &[1, 4])],
        vec![value_info_fixed("y", &[1, 3])],
        vec![tensor_f32("w", &[3, 4], &w), tensor_f32("b", &[3], &b)],
    );
    encode(&model(g, 17))
}

/// The error of reading and converting `bytes`, which must fail.
fn refusal(bytes: &[u8]) -> String {
    let graph = match read_onnx_bytes(bytes, None, "hazard.onnx") {
        Err(e) => return e.to_string(),
        Ok(g) => g,
    };
    let options = ConvertOptions { calibration: vec![ArrayD::zeros(IxDyn(&[1, 4]))].into(), ..Default::default() };
    match convert(&graph, &options) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a model with non-finite weights was converted"),
    }
}

#[test]
fn finite_model_converts() {
    let graph = read_onnx_bytes(&gemm_model(0.3, 0.0), None, "ok.onnx").unwrap();
    let options = ConvertOptions { calibration: vec![ArrayD::zeros(IxDyn(&[1, 4]))].into(), ..Default::default() };
    convert(&graph, &options).unwrap();
}

#[test]
fn nan_weight_is_refused() {
    let e = refusal(&gemm_model(f32::NAN, 0.0));
    assert!(e.contains("NaN") && e.contains("'w'"), "{e}");
}

#[test]
fn infinite_weight_is_refused() {
    let e = refusal(&gemm_model(f32::INFINITY, 0.0));
    assert!(e.contains("inf") && e.contains("'w'"), "{e}");
}

#[test]
fn nan_bias_is_refused() {
    let e = refusal(&gemm_model(0.3, f32::NAN));
    assert!(e.contains("NaN") && e.contains("'b'"), "{e}");
}

#[test]
fn negative_infinite_bias_is_refused() {
    let e = refusal(&gemm_model(0.3, f32::NEG_INFINITY));
    assert!(e.contains("inf") && e.contains("'b'"), "{e}");
}

/// A `.npy` file of little-endian f32 values with the given shape.
fn npy_f32(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 { format!("{},", dims[0]) } else { dims.join(", ") };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({shape}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn read_npy(values: &[f32]) -> Result<signgd::data::Dataset, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    std::fs::write(&path, npy_f32(&[2, 3], values)).unwrap();
    read_inputs(&path, LoadLimits::default()).map_err(|e| e.to_string())
}

#[test]
fn finite_inputs_are_read() {
    let ds = read_npy(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    assert_eq!((ds.samples, ds.shape.clone()), (2, vec![3]));
}

#[test]
fn nan_input_is_refused() {
    let e = read_npy(&[0.0, 1.0, 2.0, 3.0, f32::NAN, 5.0]).unwrap_err();
    assert!(e.contains("NaN") && e.contains("sample 1, element 1"), "{e}");
}

#[test]
fn infinite_inputs_are_refused() {
    for v in [f32::INFINITY, f32::NEG_INFINITY] {
        let e = read_npy(&[v, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap_err();
        assert!(e.contains("inf") && e.contains("sample 0, element 0"), "{e}");
    }
}

/// Values that overflow f32 in an f64 file are still finite and read exactly; f64 infinities
/// are refused the same way.
#[test]
fn f64_idx_infinity_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x-idx2");
    let mut bytes = vec![0, 0, 0x0e, 2, 0, 0, 0, 2, 0, 0, 0, 1];
    bytes.extend_from_slice(&1e300f64.to_be_bytes());
    bytes.extend_from_slice(&f64::INFINITY.to_be_bytes());
    std::fs::write(&path, bytes).unwrap();
    let e = read_inputs(&path, LoadLimits::default()).unwrap_err().to_string();
    assert!(e.contains("inf") && e.contains("sample 1"), "{e}");
}
