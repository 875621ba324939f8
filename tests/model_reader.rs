//! ONNX reader: folding of PyTorch shape arithmetic, fusions, op coverage and error classes.

use ndarray::{ArrayD, IxDyn};
use signgd::model::onnx::builder::*;
use signgd::model::onnx::{ModelProto, StringStringEntryProto, TensorProto};
use signgd::model::{read_onnx, read_onnx_bytes, Graph, Op};

fn read(m: &ModelProto, shape: Option<&[usize]>) -> Graph {
    read_onnx_bytes(&encode(m), shape, "test.onnx").unwrap_or_else(|e| panic!("{e}"))
}

fn err(m: &ModelProto, shape: Option<&[usize]>) -> String {
    read_onnx_bytes(&encode(m), shape, "test.onnx").unwrap_err().to_string()
}

fn ops(g: &Graph) -> Vec<&'static str> {
    g.nodes.iter().map(|n| n.op.name()).collect()
}

fn input(shape: &[usize], f: impl Fn(usize) -> f64) -> ArrayD<f64> {
    let n = shape.iter().product();
    ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(f).collect()).unwrap()
}

fn assert_close(a: &ArrayD<f64>, b: &ArrayD<f64>, tol: f64) {
    assert_eq!(a.shape(), b.shape());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol, "{a} vs {b}");
    }
}

/// Legacy exporter pattern: x.view(x.size(0), -1) with a dynamic batch dimension.
fn legacy_flatten_model() -> ModelProto {
    let w: Vec<f32> = (0..16 * 3).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
    let nodes = vec![
        node("Shape", &["x"], &["s"], vec![]),
        node("Constant", &[], &["zero"], vec![attr_t("value", tensor_i64("", &[], &[0]))]),
        node("Gather", &["s", "zero"], &["b"], vec![attr_i("axis", 0)]),
        node("Constant", &[], &["ax"], vec![attr_t("value", tensor_i64("", &[1], &[0]))]),
        node("Unsqueeze", &["b", "ax"], &["b1"], vec![]),
        node("Constant", &[], &["m1"], vec![attr_ints("value_ints", &[-1])]),
        node("Concat", &["b1", "m1"], &["shape"], vec![attr_i("axis", 0)]),
        node("Reshape", &["x", "shape"], &["flat"], vec![]),
        node("Gemm", &["flat", "W", "B"], &["y"], vec![attr_i("transB", 1)]),
    ];
    let g = graph(
        nodes,
        vec![value_info("x", &[Dim::Param("batch"), Dim::Fixed(1), Dim::Fixed(4), Dim::Fixed(4)])],
        vec![value_info("y", &[Dim::Param("batch"), Dim::Fixed(3)])],
        vec![tensor_f32_raw("W", &[3, 16], &w), tensor_f32("B", &[3], &[0.5, -0.5, 0.])],
    );
    model(g, 17)
}

#[test]
fn legacy_dynamic_batch_shape_chain_folds() {
    let m = legacy_flatten_model();
    let g = read(&m, None);
    assert_eq!(ops(&g), vec!["Reshape", "Gemm"]);
    assert_eq!(g.values[g.input].shape, vec![1, 1, 4, 4]);
    assert_eq!(g.values[g.output].shape, vec![1, 3]);
    let x = input(&[1, 1, 4, 4], |i| i as f64 / 16.0);
    let y = g.evaluate(&x).unwrap();
    let w = g.constant(g.nodes[1].inputs[1]).unwrap().to_f64();
    let want0: f64 = (0..16).map(|i| x.as_slice().unwrap()[i] * w[[0, i]]).sum::<f64>() + 0.5;
    assert!((y[[0, 0]] - want0).abs() < 1e-12);
    // with an explicit batch
    let g2 = read(&m, Some(&[2, 1, 4, 4]));
    assert_eq!(g2.values[g2.output].shape, vec![2, 3]);
    assert!(g2.summary().contains("Gemm"));
}

#[test]
fn erf_gelu_fuses_in_both_orders() {
    let inv = std::f32::consts::SQRT_2;
    let a = vec![
        node("Div", &["x", "c"], &["d"], vec![]),
        node("Erf", &["d"], &["e"], vec![]),
        node("Add", &["e", "one"], &["a"], vec![]),
        node("Mul", &["x", "a"], &["m"], vec![]),
        node("Mul", &["m", "half"], &["y"], vec![]),
    ];
    let b = vec![
        node("Mul", &["x", "half"], &["h"], vec![]),
        node("Mul", &["x", "cinv"], &["d"], vec![]),
        node("Erf", &["d"], &["e"], vec![]),
        node("Add", &["one", "e"], &["a"], vec![]),
        node("Mul", &["h", "a"], &["y"], vec![]),
    ];
    for nodes in [a, b] {
        let inits = vec![
            tensor_f32("c", &[], &[inv]),
            tensor_f32("cinv", &[], &[1.0 / inv]),
            tensor_f32("one", &[], &[1.0]),
            tensor_f32("half", &[], &[0.5]),
        ];
        let g = graph(nodes, vec![value_info_fixed("x", &[1, 4])], vec![value_info_fixed("y", &[1, 4])], inits);
        let g = read(&model(g, 17), None);
        assert_eq!(ops(&g), vec!["Gelu"]);
        assert_eq!(g.nodes[0].op, Op::Gelu { tanh: false });
        let y = g.evaluate(&input(&[1, 4], |i| i as f64 - 1.5)).unwrap();
        assert!((y[[0, 3]] - 1.5 * 0.5 * (1.0 + libm::erf(1.5 / 2f64.sqrt()))).abs() < 1e-12);
    }
}

#[test]
fn tanh_gelu_and_softmax_fuse() {
    let nodes = vec![
        node("Mul", &["x", "half"], &["h"], vec![]),
        node("Pow", &["x", "three"], &["p"], vec![]),
        node("Mul", &["p", "k"], &["kp"], vec![]),
        node("Add", &["x", "kp"], &["s"], vec![]),
        node("Mul", &["s", "c"], &["u"], vec![]),
        node("Tanh", &["u"], &["t"], vec![]),
        node("Add", &["t", "one"], &["a"], vec![]),
        node("Mul", &["h", "a"], &["g"], vec![]),
        node("Exp", &["g"], &["e"], vec![]),
        node("ReduceSum", &["e", "axes"], &["z"], vec![attr_i("keepdims", 1)]),
        node("Div", &["e", "z"], &["y"], vec![]),
    ];
    let inits = vec![
        tensor_f32("half", &[], &[0.5]),
        tensor_f32("three", &[], &[3.0]),
        tensor_f32("k", &[], &[0.044715]),
        tensor_f32("c", &[], &[(2.0f64 / std::f64::consts::PI).sqrt() as f32]),
        tensor_f32("one", &[], &[1.0]),
        tensor_i64("axes", &[1], &[-1]),
    ];
    let g = graph(nodes, vec![value_info_fixed("x", &[2, 3])], vec![value_info_fixed("y", &[2, 3])], inits);
    let g = read(&model(g, 17), None);
    assert_eq!(ops(&g), vec!["Gelu", "Softmax"]);
    assert_eq!(g.nodes[0].op, Op::Gelu { tanh: true });
    assert_eq!(g.nodes[1].op, Op::Softmax { axis: 1 });
    let y = g.evaluate(&input(&[2, 3], |i| i as f64)).unwrap();
    assert!((y.sum() - 2.0).abs() < 1e-12);
}

#[test]
fn decomposed_layernorm_fuses() {
    let nodes = vec![
        node("ReduceMean", &["x"], &["mu"], vec![attr_ints("axes", &[-1])]),
        node("Sub", &["x", "mu"], &["d"], vec![]),
        node("Pow", &["d", "two"], &["sq"], vec![]),
        node("ReduceMean", &["sq"], &["var"], vec![attr_ints("axes", &[-1])]),
        node("Add", &["var", "eps"], &["ve"], vec![]),
        node("Sqrt", &["ve"], &["sd"], vec![]),
        node("Div", &["d", "sd"], &["n"], vec![]),
        node("Mul", &["n", "gamma"], &["gn"], vec![]),
        node("Add", &["gn", "beta"], &["y"], vec![]),
    ];
    let inits = vec![
        tensor_f32("two", &[], &[2.0]),
        tensor_f32("eps", &[], &[1e-5]),
        tensor_f32("gamma", &[4], &[1.0, 2.0, 0.5, 1.0]),
        tensor_f32("beta", &[4], &[0.0, 0.1, 0.2, 0.3]),
    ];
    let gp = graph(nodes, vec![value_info_fixed("x", &[1, 2, 4])], vec![value_info_fixed("y", &[1, 2, 4])], inits);
    let g = read(&model(gp, 17), None);
    assert_eq!(ops(&g), vec!["LayerNorm"]);
    match g.nodes[0].op {
        Op::LayerNorm { axis, epsilon } => {
            assert_eq!(axis, 2);
            assert!((epsilon - 1e-5).abs() < 1e-9);
        }
        ref o => panic!("{o:?}"),
    }
    let x = input(&[1, 2, 4], |i| (i * i) as f64 * 0.1);
    let y = g.evaluate(&x).unwrap();
    // reference: the same graph without fusion, evaluated op by op
    let row: Vec<f64> = (0..4).map(|i| x[[0, 1, i]]).collect();
    let mu = row.iter().sum::<f64>() / 4.0;
    let var = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / 4.0;
    let eps = 1e-5f32 as f64;
    let want = (row[1] - mu) / (var + eps).sqrt() * 2.0 + 0.1f32 as f64;
    assert!((y[[0, 1, 1]] - want).abs() < 1e-9);
}

#[test]
fn cnn_ops_and_removed_ops() {
    // Conv(pad 1) -> BatchNorm -> Relu -> MaxPool -> Dropout -> Identity -> Flatten -> Cast -> MatMul -> Add
    let w: Vec<f32> = (0..2 * 9).map(|i| ((i % 5) as f32 - 2.0) * 0.25).collect();
    let fc: Vec<f32> = (0..8 * 2).map(|i| (i as f32 - 8.0) * 0.05).collect();
    let nodes = vec![
        node(
            "Conv",
            &["x", "w", "cb"],
            &["c"],
            vec![attr_ints("pads", &[1, 1, 1, 1]), attr_ints("kernel_shape", &[3, 3])],
        ),
        node("BatchNormalization", &["c", "s", "bb", "mean", "var"], &["bn"], vec![attr_f("epsilon", 1e-5)]),
        node("Relu", &["bn"], &["r"], vec![]),
        node("MaxPool", &["r"], &["p"], vec![attr_ints("kernel_shape", &[2, 2]), attr_ints("strides", &[2, 2])]),
        node("Dropout", &["p"], &["dp"], vec![]),
        node("Identity", &["dp"], &["id"], vec![]),
        node("Flatten", &["id"], &["f"], vec![attr_i("axis", 1)]),
        node("Cast", &["f"], &["fc"], vec![attr_i("to", 1)]),
        node("MatMul", &["fc", "fcw"], &["mm"], vec![]),
        node("Add", &["mm", "fcb"], &["y"], vec![]),
    ];
    let inits = vec![
        tensor_f32("w", &[2, 1, 3, 3], &w),
        tensor_f32("cb", &[2], &[0.1, -0.1]),
        tensor_f32("s", &[2], &[1.0, 2.0]),
        tensor_f32("bb", &[2], &[0.0, 0.5]),
        tensor_f32("mean", &[2], &[0.1, 0.2]),
        tensor_f32("var", &[2], &[1.0, 4.0]),
        tensor_f32("fcw", &[8, 2], &fc),
        tensor_f32("fcb", &[2], &[0.0, 1.0]),
    ];
    let gp = graph(nodes, vec![value_info_fixed("x", &[1, 1, 4, 4])], vec![value_info_fixed("y", &[1, 2])], inits);
    let g = read(&model(gp, 20), None);
    assert_eq!(ops(&g), vec!["Conv", "BatchNorm", "Relu", "MaxPool", "Reshape", "MatMul", "Add"]);
    let x = input(&[1, 1, 4, 4], |i| (i as f64 * 0.37).sin());
    let y64 = g.evaluate(&x).unwrap();
    let y32 = g.evaluate(&x.mapv(|v| v as f32)).unwrap();
    assert_close(&y64, &y32.mapv(|v| v as f64), 1e-5);
    let all = g.evaluate_all(&x).unwrap();
    let conv = all[g.nodes[0].output].as_ref().unwrap();
    // top-left conv output: kernel rows 1..3, cols 1..3 over x[0..2, 0..2]
    let mut want = 0.1f32 as f64;
    for ki in 1..3 {
        for kj in 1..3 {
            want += w[ki * 3 + kj] as f64 * x[[0, 0, ki - 1, kj - 1]];
        }
    }
    assert!((conv[[0, 0, 0, 0]] - want).abs() < 1e-9);
}

#[test]
fn misc_ops_through_reader() {
    // Transpose, Squeeze/Unsqueeze, Slice with INT64_MAX end, Gather, Pad, Expand, Concat with a
    // constant, ReduceMean with axes input (opset 18), Softmax, LeakyRelu, Gelu op, Pow 2 -> Square,
    // ConstantOfShape/Range folding, Max.
    let nodes = vec![
        node("Transpose", &["x"], &["t"], vec![attr_ints("perm", &[0, 2, 1])]), // [1,3,2]
        node("Unsqueeze", &["t", "ax0"], &["u"], vec![]),                       // [1,1,3,2]
        node("Squeeze", &["u", "ax0"], &["sq"], vec![]),                        // [1,3,2]
        node("Slice", &["sq", "st", "en", "axs"], &["sl"], vec![]),             // [1,2,2]
        node("Gather", &["sl", "gi"], &["ga"], vec![attr_i("axis", 2)]),        // [1,2,2]
        node("Pad", &["ga", "pads", "pv"], &["pd"], vec![]),                    // [1,2,3]
        node("Range", &["r0", "r1", "r2"], &["rg"], vec![]),                    // [3] = 0,1,2
        node("Cast", &["rg"], &["rgf"], vec![attr_i("to", 1)]),
        node("Add", &["pd", "rgf"], &["pa"], vec![]),
        node("ConstantOfShape", &["cs"], &["co"], vec![attr_t("value", tensor_f32("", &[1], &[0.25]))]), // [1,1,3]
        node("Concat", &["pa", "co"], &["cc"], vec![attr_i("axis", 1)]),                                 // [1,3,3]
        node("Pow", &["cc", "two"], &["p2"], vec![]),
        node("LeakyRelu", &["p2"], &["lr"], vec![attr_f("alpha", 0.2)]),
        node("Gelu", &["lr"], &["ge"], vec![attr_s("approximate", "tanh")]),
        node("Max", &["ge", "cc"], &["mx"], vec![]),
        node("ReduceMean", &["mx", "rax"], &["rm"], vec![attr_i("keepdims", 0)]), // [1,3]
        node("Expand", &["rm", "exs"], &["ex"], vec![]),                          // [2,3]
        node("Softmax", &["ex"], &["y"], vec![attr_i("axis", 1)]),
    ];
    let inits = vec![
        tensor_i64("ax0", &[1], &[0]),
        tensor_i64("st", &[1], &[1]),
        tensor_i64("en", &[1], &[i64::MAX]),
        tensor_i64("axs", &[1], &[1]),
        tensor_i64("gi", &[2], &[-1, 0]),
        tensor_i64("pads", &[6], &[0, 0, 1, 0, 0, 0]),
        tensor_f32("pv", &[], &[9.0]),
        tensor_i64("r0", &[], &[0]),
        tensor_i64("r1", &[], &[3]),
        tensor_i64("r2", &[], &[1]),
        tensor_i64("cs", &[3], &[1, 1, 3]),
        tensor_f32("two", &[], &[2.0]),
        tensor_i64("rax", &[1], &[2]),
        tensor_i64("exs", &[2], &[2, 1]),
    ];
    let gp = graph(nodes, vec![value_info_fixed("x", &[1, 2, 3])], vec![value_info_fixed("y", &[2, 3])], inits);
    let g = read(&model(gp, 18), None);
    let o = ops(&g);
    assert!(o.contains(&"Square") && o.contains(&"Gather") && o.contains(&"Pad") && o.contains(&"Expand"), "{o:?}");
    assert!(!o.contains(&"Pow"));
    let x = input(&[1, 2, 3], |i| i as f64 * 0.1 - 0.2);
    // independent computation
    let xt = |a: usize, b: usize| x[[0, b, a]]; // t[0,a,b]
    let sl = |a: usize, b: usize| xt(a + 1, b); // a in 0..2
    let ga = |a: usize, b: usize| sl(a, if b == 0 { 1 } else { 0 });
    let pd = |a: usize, b: usize| if b == 0 { 9.0 } else { ga(a, b - 1) };
    let cc = |a: usize, b: usize| if a < 2 { pd(a, b) + b as f64 } else { 0.25 };
    let gelu_t = |v: f64| 0.5 * v * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v)).tanh());
    let mx = |a: usize, b: usize| {
        let s = cc(a, b) * cc(a, b);
        let l = if s >= 0.0 { s } else { 0.2 * s };
        gelu_t(l).max(cc(a, b))
    };
    let rm: Vec<f64> = (0..3).map(|a| (0..3).map(|b| mx(a, b)).sum::<f64>() / 3.0).collect();
    let m = rm.iter().cloned().fold(f64::MIN, f64::max);
    let z: f64 = rm.iter().map(|v| (v - m).exp()).sum();
    let y = g.evaluate(&x).unwrap();
    for r in 0..2 {
        for c in 0..3 {
            assert!((y[[r, c]] - (rm[c] - m).exp() / z).abs() < 1e-9);
        }
    }
}

#[test]
fn error_truncated_and_garbage() {
    let bytes = encode(&legacy_flatten_model());
    let e = read_onnx_bytes(&bytes[..bytes.len() / 2], None, "cut.onnx").unwrap_err().to_string();
    assert!(e.contains("cut.onnx") && e.contains("truncated"), "{e}");
    let e =
        read_onnx_bytes(b"\x89PNG\r\n\x1a\n garbage that is not protobuf", None, "pic.onnx").unwrap_err().to_string();
    assert!(e.contains("pic.onnx") && e.contains("not a valid ONNX model"), "{e}");
    let e = read_onnx_bytes(b"", None, "empty.onnx").unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");
    let e = read_onnx(std::path::Path::new("/nonexistent/model.onnx"), None).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/model.onnx"), "{e}");
}

#[test]
fn error_unknown_op_names_node_and_suggests() {
    let mut n = node("Relu6", &["x"], &["y"], vec![]);
    n.name = "/features/act".into();
    let gp = graph(vec![n], vec![value_info_fixed("x", &[1, 4])], vec![value_info_fixed("y", &[1, 4])], vec![]);
    let e = err(&model(gp, 17), None);
    assert!(e.contains("test.onnx") && e.contains("/features/act") && e.contains("Relu6") && e.contains("Relu"), "{e}");
}

#[test]
fn error_mistyped_attribute_names_node_attribute_and_types() {
    // An INTS where the operator takes an INT used to read as 0 (Softmax over axis 0).
    let n = node("Softmax", &["x"], &["y"], vec![attr_ints("axis", &[1])]);
    let gp = graph(vec![n], vec![value_info_fixed("x", &[2, 4])], vec![value_info_fixed("y", &[2, 4])], vec![]);
    let e = err(&model(gp, 17), None);
    assert!(e.contains("Softmax") && e.contains("'axis'") && e.contains("an INTS list") && e.contains("an INT"), "{e}");
    // A FLOAT where the operator takes INTS.
    let n = node("Transpose", &["x"], &["y"], vec![attr_f("perm", 1.0)]);
    let gp = graph(vec![n], vec![value_info_fixed("x", &[2, 4])], vec![value_info_fixed("y", &[4, 2])], vec![]);
    let e = err(&model(gp, 17), None);
    assert!(e.contains("Transpose") && e.contains("'perm'") && e.contains("a FLOAT"), "{e}");
}

#[test]
fn error_unsupported_attribute_values() {
    let n = node("Pad", &["x", "p"], &["y"], vec![attr_s("mode", "reflect")]);
    let gp = graph(
        vec![n],
        vec![value_info_fixed("x", &[1, 4])],
        vec![value_info_fixed("y", &[1, 6])],
        vec![tensor_i64("p", &[4], &[0, 1, 0, 1])],
    );
    let e = err(&model(gp, 17), None);
    assert!(e.contains("reflect") && e.contains("Pad"), "{e}");
    let n = node("Gelu", &["x"], &["y"], vec![attr_s("approximate", "sigmoid")]);
    let gp = graph(vec![n], vec![value_info_fixed("x", &[1, 4])], vec![value_info_fixed("y", &[1, 4])], vec![]);
    assert!(err(&model(gp, 20), None).contains("approximate='sigmoid'"));
    // a tensor claiming too many elements is refused before allocation
    let big = TensorProto { name: "W".into(), dims: vec![1 << 20, 1 << 20], data_type: 1, ..Default::default() };
    let gp = graph(
        vec![node("MatMul", &["x", "W"], &["y"], vec![])],
        vec![value_info_fixed("x", &[1, 4])],
        vec![value_info_fixed("y", &[1, 4])],
        vec![big],
    );
    assert!(err(&model(gp, 17), None).contains("exceed"));
}

fn external_model(location: &str) -> ModelProto {
    let w = TensorProto {
        name: "W".into(),
        dims: vec![2, 2],
        data_type: 1,
        data_location: 1,
        external_data: vec![StringStringEntryProto { key: "location".into(), value: location.into() }],
        ..Default::default()
    };
    let gp = graph(
        vec![node("MatMul", &["x", "W"], &["y"], vec![])],
        vec![value_info_fixed("x", &[1, 2])],
        vec![value_info_fixed("y", &[1, 2])],
        vec![w],
    );
    model(gp, 17)
}

#[test]
fn error_missing_external_data_and_loading_present_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    std::fs::write(&path, encode(&external_model("m.onnx.data"))).unwrap();
    let e = read_onnx(&path, None).unwrap_err().to_string();
    assert!(e.contains("m.onnx.data") && e.contains("not found") && e.contains("external_data=False"), "{e}");
    let raw: Vec<u8> = [1f32, 2., 3., 4.].iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.path().join("m.onnx.data"), raw).unwrap();
    let g = read_onnx(&path, None).unwrap();
    let y = g.evaluate(&ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![1.0, 1.0]).unwrap()).unwrap();
    assert_eq!(y.iter().copied().collect::<Vec<f64>>(), vec![4., 6.]);
    // from memory: always not found
    let e = err(&external_model("w.bin"), None);
    assert!(e.contains("w.bin") && e.contains("external_data=False"), "{e}");
}

#[test]
fn error_dynamic_dim_and_wrong_input_shape() {
    let gp = graph(
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![value_info("x", &[Dim::Param("batch"), Dim::Fixed(3), Dim::Param("height"), Dim::Fixed(8)])],
        vec![value_info("y", &[Dim::Param("batch"), Dim::Fixed(3), Dim::Param("height"), Dim::Fixed(8)])],
        vec![],
    );
    let m = model(gp, 17);
    let e = err(&m, None);
    // The library names no command-line flag: no command has one for the input shape.
    assert!(e.contains("height") && e.contains("fixed input shape") && e.contains("test.onnx"), "{e}");
    assert!(!e.contains("--"), "{e}");
    let g = read(&m, Some(&[2, 3, 5, 8]));
    assert_eq!(g.values[g.output].shape, vec![2, 3, 5, 8]);
    let e = err(&m, Some(&[1, 4, 5, 8]));
    assert!(e.contains("[1, 4, 5, 8]") && e.contains("[batch, 3, height, 8]") && !e.contains("--"), "{e}");
    let e = err(&m, Some(&[1, 3, 5]));
    assert!(e.contains("does not match"), "{e}");
}

#[test]
fn error_non_constant_shape_operand() {
    // Reshape whose shape depends on activations cannot be resolved statically
    let nodes =
        vec![node("Cast", &["x"], &["xi"], vec![attr_i("to", 7)]), node("Reshape", &["x", "xi"], &["y"], vec![])];
    let gp = graph(nodes, vec![value_info_fixed("x", &[2])], vec![value_info_fixed("y", &[2])], vec![]);
    let e = err(&model(gp, 17), None);
    assert!(e.contains("Cast") && e.contains("int64"), "{e}");
}

#[test]
fn split_becomes_slices() {
    let nodes = vec![
        node("Split", &["x", "sp"], &["a", "b"], vec![attr_i("axis", 1)]),
        node("Sub", &["a", "b"], &["y"], vec![]),
    ];
    let gp = graph(
        nodes,
        vec![value_info_fixed("x", &[1, 4])],
        vec![value_info_fixed("y", &[1, 2])],
        vec![tensor_i64("sp", &[2], &[2, 2])],
    );
    let g = read(&model(gp, 17), None);
    let y = g.evaluate(&input(&[1, 4], |i| (i * i) as f64)).unwrap();
    assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![-4., -8.]);
}

#[test]
fn mutated_bytes_never_panic() {
    let good = encode(&legacy_flatten_model());
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2000 {
        let mut b = good.clone();
        for _ in 0..1 + next() % 4 {
            let i = (next() as usize) % b.len();
            b[i] = next() as u8;
        }
        let cut = (next() as usize) % (b.len() + 1);
        if next() % 4 == 0 {
            b.truncate(cut);
        }
        if let Ok(g) = read_onnx_bytes(&b, None, "fuzz.onnx") {
            let x = ArrayD::<f32>::zeros(IxDyn(&g.values[g.input].shape));
            let _ = g.evaluate(&x);
        }
    }
}

#[test]
fn external_data_range_is_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    let raw: Vec<u8> = [9f32, 1., 2., 3., 4., 9.].iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.path().join("m.bin"), raw).unwrap();
    let with_range = |offset: &str, length: &str| {
        let mut m = external_model("m.bin");
        let entries = &mut m.graph.as_mut().unwrap().initializer[0].external_data;
        for (key, value) in [("offset", offset), ("length", length)] {
            entries.push(StringStringEntryProto { key: key.into(), value: value.into() });
        }
        std::fs::write(&path, encode(&m)).unwrap();
        read_onnx(&path, None)
    };
    let g = with_range("4", "16").unwrap();
    let w = g.constant(g.nodes[0].inputs[1]).unwrap();
    assert_eq!(w.as_f32().unwrap().iter().copied().collect::<Vec<_>>(), vec![1., 2., 3., 4.]);
    let e = with_range("12", "16").unwrap_err().to_string();
    assert!(e.contains("range 12+16 lies outside") && e.contains("(24 bytes)"), "{e}");
}

/// Float initializers stay single precision (also through data movement); arithmetic on them is
/// folded in double precision; integers are double precision; clones share the data.
#[test]
fn constants_keep_their_stored_precision() {
    let nodes = vec![
        node("Transpose", &["Wt"], &["W"], vec![]),
        node("Add", &["Ba", "Bb"], &["B"], vec![]),
        node("Cast", &["I"], &["F"], vec![attr_i("to", 1)]),
        node("MatMul", &["x", "W"], &["h"], vec![]),
        node("Add", &["h", "B"], &["s"], vec![]),
        node("Mul", &["s", "F"], &["y"], vec![]),
    ];
    let gp = graph(
        nodes,
        vec![value_info_fixed("x", &[1, 3])],
        vec![value_info_fixed("y", &[1, 2])],
        vec![
            tensor_f32_raw("Wt", &[2, 3], &[0.1, 0.2, 0.3, -1., -2., -3.]),
            tensor_f32("Ba", &[2], &[0.1, 0.7]),
            tensor_f32("Bb", &[2], &[0.2, 0.0]),
            tensor_i64("I", &[1], &[3]),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    std::fs::write(&path, encode(&model(gp, 17))).unwrap();
    let g = read_onnx(&path, None).unwrap();
    assert_eq!(ops(&g), vec!["MatMul", "Add", "Mul"]);
    let w = g.constant(g.nodes[0].inputs[1]).unwrap();
    assert_eq!(w.shape(), &[3, 2]);
    assert_eq!(w.as_f32().unwrap().iter().copied().collect::<Vec<_>>(), vec![0.1, -1., 0.2, -2., 0.3, -3.]);
    let b = g.constant(g.nodes[1].inputs[1]).unwrap();
    assert_eq!(
        b.as_f64().unwrap().iter().copied().collect::<Vec<_>>(),
        vec![0.1f32 as f64 + 0.2f32 as f64, 0.7f32 as f64]
    );
    let f = g.constant(g.nodes[2].inputs[1]).unwrap();
    assert_eq!(f.as_f32().unwrap().iter().copied().collect::<Vec<_>>(), vec![3.0]);
    let copy = g.clone();
    assert_eq!(copy.constant(g.nodes[0].inputs[1]).unwrap().as_f32().unwrap().as_ptr(), w.as_f32().unwrap().as_ptr());
    let x = input(&[1, 3], |i| i as f64 + 1.0);
    let y = g.evaluate(&x).unwrap();
    let want = |j: usize, bias: f64| 3.0 * ((1..=3).map(|i| i as f64 * w.to_f64()[[i - 1, j]]).sum::<f64>() + bias);
    let expected = vec![want(0, 0.1f32 as f64 + 0.2f32 as f64), want(1, 0.7f32 as f64)];
    assert_close(&y, &ArrayD::from_shape_vec(IxDyn(&[1, 2]), expected).unwrap(), 1e-12);
    let y32 = g.evaluate(&x.mapv(|v| v as f32)).unwrap();
    assert_close(&y, &y32.mapv(|v| v as f64), 1e-5);
}
