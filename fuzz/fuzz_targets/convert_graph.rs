//! ONNX bytes → `read_onnx_bytes_with_limits` → (if Ok) `convert` with one all-zero calibration
//! input of the graph's input shape. Must return Ok or Err, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ndarray::{ArrayD, IxDyn};
use signgd::convert::{convert, ConvertOptions};
use signgd::model::reader::{read_onnx_bytes_with_limits, ReadLimits};

/// Limits small enough for libFuzzer's memory limit (see `onnx_reader.rs`).
const FUZZ_LIMITS: ReadLimits = ReadLimits { max_elements: 1 << 20, max_total_elements: 1 << 22 };

fuzz_target!(|data: &[u8]| {
    let Ok(graph) = read_onnx_bytes_with_limits(data, None, "fuzz.onnx", FUZZ_LIMITS) else {
        return;
    };
    let shape = graph.values[graph.input].shape.clone();
    let options = ConvertOptions { calibration: vec![ArrayD::zeros(IxDyn(&shape))].into(), ..Default::default() };
    let _ = convert(&graph, &options);
});
