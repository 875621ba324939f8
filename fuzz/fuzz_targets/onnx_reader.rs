//! ONNX bytes → `read_onnx_bytes_with_limits`: must return Ok or Err, never panic, hang or
//! exhaust memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signgd::model::reader::{read_onnx_bytes_with_limits, ReadLimits};

/// Limits small enough for libFuzzer's memory limit. The default limits (2^31 elements, 16 GiB
/// as f64) are checked the same way, by the same code; `tests/fuzz_regressions.rs` tests them.
const FUZZ_LIMITS: ReadLimits = ReadLimits { max_elements: 1 << 20, max_total_elements: 1 << 22 };

fuzz_target!(|data: &[u8]| {
    let _ = read_onnx_bytes_with_limits(data, None, "fuzz.onnx", FUZZ_LIMITS);
});
