//! Hostile and broken inputs: forged headers and graphs claiming huge sizes, and every input the
//! fuzzers (`fuzz/run.sh`) found, are refused with an error naming the problem, never a panic,
//! a hang or an allocation of the claimed size. Data files live in `tests/fuzz_regressions/`;
//! the ONNX cases are built here so that the test says what each one forges.

use std::panic::catch_unwind;
use std::path::{Path, PathBuf};

use signgd::data::{read_inputs, read_labels, LoadLimits};
use signgd::model::onnx::builder::*;
use signgd::model::onnx::{ModelProto, TensorProto};
use signgd::model::read_onnx_bytes;
use signgd::model::reader::{read_onnx_bytes_with_limits, ReadLimits, MAX_ELEMENTS};

fn file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions").join(name)
}

/// The error message of reading the regression file `name` as inputs and as labels; both must
/// fail without panicking.
fn data_errors(name: &str) -> (String, String) {
    let path = file(name);
    let inputs = catch_unwind(|| read_inputs(&path, LoadLimits::default()))
        .unwrap_or_else(|_| panic!("read_inputs panicked on {name}"));
    let labels = catch_unwind(|| read_labels(&path, LoadLimits::default()))
        .unwrap_or_else(|_| panic!("read_labels panicked on {name}"));
    match (inputs, labels) {
        (Err(a), Err(b)) => (a.to_string(), b.to_string()),
        (a, b) => panic!("{name} was accepted: inputs {:?}, labels {:?}", a.is_ok(), b.is_ok()),
    }
}

fn assert_mentions(message: &str, words: &[&str]) {
    for w in words {
        assert!(message.contains(w), "message does not mention {w:?}: {message}");
    }
}

#[test]
fn npy_shape_whose_size_overflows() {
    let (a, b) = data_errors("npy_shape_overflow.npy");
    assert_mentions(&a, &["npy_shape_overflow.npy", "load limit"]);
    assert_mentions(&b, &["npy_shape_overflow.npy"]);
}

#[test]
fn npy_header_claiming_4g_values_on_a_short_file() {
    let (a, _) = data_errors("npy_claims_4g_values.npy");
    assert_mentions(&a, &["npy_claims_4g_values.npy", "load limit"]);
}

#[test]
fn npy_shorter_than_its_header() {
    for name in ["npy_truncated.npy", "npy_truncated.npy.gz"] {
        let (a, _) = data_errors(name);
        assert_mentions(&a, &[name, "truncated"]);
    }
}

#[test]
fn idx_dims_whose_product_overflows() {
    let (a, _) = data_errors("idx_dims_overflow-idx3");
    assert_mentions(&a, &["idx_dims_overflow-idx3", "load limit"]);
}

#[test]
fn gzipped_idx_shorter_than_its_header() {
    let (a, _) = data_errors("idx_truncated-idx3.gz");
    assert_mentions(&a, &["idx_truncated-idx3.gz", "truncated"]);
}

#[test]
fn idx_unknown_type_code() {
    let (a, _) = data_errors("idx_bad_type-idx1");
    assert_mentions(&a, &["idx_bad_type-idx1"]);
}

/// Every file in `tests/fuzz_regressions/` (including crashes the fuzzers find later) goes
/// through every reader without a panic.
#[test]
fn no_regression_file_panics_any_reader() {
    for entry in std::fs::read_dir(file("")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let name = path.display().to_string();
        let small = ReadLimits { max_elements: 1 << 20, max_total_elements: 1 << 22 };
        catch_unwind(|| {
            let _ = read_onnx_bytes_with_limits(&bytes, None, &name, small);
            let _ = read_inputs(&path, LoadLimits::default());
            let _ = read_labels(&path, LoadLimits::default());
        })
        .unwrap_or_else(|_| panic!("a reader panicked on {name}"));
    }
}

/// x[1, 4] → `nodes` → y, with `inits` as initializers.
fn onnx(nodes: Vec<signgd::model::onnx::NodeProto>, inits: Vec<TensorProto>) -> Vec<u8> {
    let g = graph(nodes, vec![value_info_fixed("x", &[1, 4])], vec![value_info_fixed("y", &[1, 4])], inits);
    let m: ModelProto = model(g, 17);
    encode(&m)
}

fn onnx_error(bytes: &[u8], limits: ReadLimits) -> String {
    match catch_unwind(|| read_onnx_bytes_with_limits(bytes, None, "forged.onnx", limits)) {
        Err(_) => panic!("the reader panicked"),
        Ok(Ok(_)) => panic!("the forged model was accepted"),
        Ok(Err(e)) => e.to_string(),
    }
}

#[test]
fn tensor_claiming_huge_dims_without_data() {
    let mut t = tensor_f32("w", &[1 << 20, 1 << 20, 1 << 20], &[]);
    t.float_data.clear();
    let e = onnx_error(&onnx(vec![node("Add", &["x", "w"], &["y"], vec![])], vec![t]), ReadLimits::default());
    assert_mentions(&e, &["forged.onnx", "tensor 'w'", "exceed the limit of 2147483648 elements"]);
}

#[test]
fn tensor_with_raw_data_shorter_than_its_dims() {
    let mut t = tensor_f32_raw("w", &[4], &[1.0, 2.0, 3.0, 4.0]);
    t.dims = vec![1 << 30];
    let e = onnx_error(&onnx(vec![node("Add", &["x", "w"], &["y"], vec![])], vec![t]), ReadLimits::default());
    assert_mentions(&e, &["tensor 'w'", "raw data has 16 bytes"]);
}

#[test]
fn constant_of_shape_claiming_huge_output() {
    let nodes = vec![node("ConstantOfShape", &["s"], &["c"], vec![]), node("Add", &["x", "c"], &["y"], vec![])];
    let e = onnx_error(&onnx(nodes, vec![tensor_i64("s", &[2], &[1 << 16, 1 << 16])]), ReadLimits::default());
    assert_mentions(&e, &["ConstantOfShape", "[65536, 65536] exceeds the limit of 2147483648 elements"]);
}

#[test]
fn expand_claiming_huge_output() {
    let nodes = vec![node("Expand", &["x", "s"], &["y"], vec![])];
    let e = onnx_error(&onnx(nodes, vec![tensor_i64("s", &[3], &[1 << 20, 1 << 20, 4])]), ReadLimits::default());
    assert_mentions(&e, &["Expand", "exceeds the limit"]);
}

#[test]
fn range_claiming_huge_output() {
    let nodes = vec![node("Range", &["a", "b", "d"], &["r"], vec![]), node("Add", &["x", "r"], &["y"], vec![])];
    let inits = vec![tensor_i64("a", &[], &[0]), tensor_i64("b", &[], &[1 << 40]), tensor_i64("d", &[], &[1])];
    let e = onnx_error(&onnx(nodes, inits), ReadLimits::default());
    assert_mentions(&e, &["Range", "invalid range 0..1099511627776 step 1", "at most 2147483648 elements"]);
}

/// Where and Equal broadcast constant operands; the broadcast shape is checked before it is
/// computed (it used to be allocated unchecked: 2^40 elements here).
#[test]
fn where_and_equal_broadcasting_to_huge_outputs() {
    for (op, ins) in [("Where", &["a", "b", "b"][..]), ("Equal", &["a", "b"][..])] {
        let nodes = vec![node(op, ins, &["c"], vec![]), node("Add", &["x", "c"], &["y"], vec![])];
        let inits = vec![
            tensor_f32("a", &[1 << 20, 1], &vec![1.0; 1 << 20]),
            tensor_f32("b", &[1, 1 << 20], &vec![0.0; 1 << 20]),
        ];
        let e = onnx_error(&onnx(nodes, inits), ReadLimits::default());
        assert_mentions(&e, &[op, "[1048576, 1048576] exceeds the limit of 2147483648 elements"]);
    }
}

#[test]
fn input_declaring_huge_shape() {
    let g = graph(
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![value_info_fixed("x", &[1 << 16, 1 << 16])],
        vec![value_info_fixed("y", &[1 << 16, 1 << 16])],
        vec![],
    );
    let e = onnx_error(&encode(&model(g, 17)), ReadLimits::default());
    assert_mentions(&e, &["input 'x'", "exceeds the limit of 2147483648 elements"]);
    assert_eq!(MAX_ELEMENTS, 1 << 31);
}

/// Many tensors each within the per-tensor limit are refused once they exceed the total budget.
#[test]
fn total_budget_over_many_tensors() {
    let limits = ReadLimits { max_elements: 1000, max_total_elements: 2500 };
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(node("ConstantOfShape", &["s"], &[&format!("c{i}")], vec![]));
    }
    nodes.push(node("Add", &["x", "c0"], &["y"], vec![]));
    let e = onnx_error(&onnx(nodes, vec![tensor_i64("s", &[1], &[1000])]), limits);
    assert_mentions(&e, &["ConstantOfShape", "more than the limit of 2500 elements in total"]);
    // A small model reads fine with the default limits.
    let ok = onnx(vec![node("Relu", &["x"], &["y"], vec![])], vec![]);
    read_onnx_bytes(&ok, None, "ok.onnx").unwrap();
}
