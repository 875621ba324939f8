//! Evaluation of every canonical op on hand-computed values.

use ndarray::{ArrayD, IxDyn};
use signgd::model::eval::eval_op;
use signgd::model::{Graph, Op};

fn a(shape: &[usize], v: &[f64]) -> ArrayD<f64> {
    ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap()
}

fn ev(op: Op, ins: &[&ArrayD<f64>], out: &[usize]) -> ArrayD<f64> {
    let shapes: Vec<&[usize]> = ins.iter().map(|x| x.shape()).collect();
    let inferred = signgd::model::infer::output_shape(&op, &shapes, Some(out)).unwrap();
    assert_eq!(inferred, out, "inferred shape for {op:?}");
    let views: Vec<_> = ins.iter().map(|x| x.view()).collect();
    let y = eval_op(&op, &views, out).unwrap();
    assert_eq!(y.shape(), out);
    y
}

fn close(y: &ArrayD<f64>, want: &[f64]) {
    let got: Vec<f64> = y.iter().copied().collect();
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-6 || (g.is_nan() && w.is_nan()), "{got:?} vs {want:?}");
    }
}

#[test]
fn conv_plain_padded_grouped() {
    let x = a(&[1, 1, 3, 3], &[1., 2., 3., 4., 5., 6., 7., 8., 9.]);
    let w = a(&[1, 1, 2, 2], &[1.; 4]);
    let op = Op::Conv { strides: [1, 1], pads: [0; 4], dilations: [1, 1], groups: 1 };
    close(&ev(op, &[&x, &w], &[1, 1, 2, 2]), &[12., 16., 24., 28.]);
    let b = a(&[1], &[1.]);
    let op = Op::Conv { strides: [2, 2], pads: [1, 1, 1, 1], dilations: [1, 1], groups: 1 };
    close(&ev(op, &[&x, &w, &b], &[1, 1, 2, 2]), &[2., 6., 12., 29.]);
    // dilation 2: single window of corners
    let op = Op::Conv { strides: [1, 1], pads: [0; 4], dilations: [2, 2], groups: 1 };
    close(&ev(op, &[&x, &w], &[1, 1, 1, 1]), &[1. + 3. + 7. + 9.]);
    // depthwise: 2 channels, 1x1 kernels with weights 1 and 2
    let x2 = a(&[1, 2, 1, 2], &[1., 2., 3., 4.]);
    let w2 = a(&[2, 1, 1, 1], &[1., 2.]);
    let op = Op::Conv { strides: [1, 1], pads: [0; 4], dilations: [1, 1], groups: 2 };
    close(&ev(op, &[&x2, &w2], &[1, 2, 1, 2]), &[1., 2., 6., 8.]);
    // asymmetric padding (top,left,bottom,right) = (0,1,0,0)
    let op = Op::Conv { strides: [1, 1], pads: [0, 1, 0, 0], dilations: [1, 1], groups: 1 };
    close(&ev(op, &[&x, &w], &[1, 1, 2, 3]), &[5., 12., 16., 11., 24., 28.]);
}

#[test]
fn matmul_gemm() {
    let m = a(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    let n = a(&[3, 2], &[1., 0., 0., 1., 1., 1.]);
    close(&ev(Op::MatMul, &[&m, &n], &[2, 2]), &[4., 5., 10., 11.]);
    // broadcast batch: [2,1,3] @ [3,2]
    let mb = a(&[2, 1, 3], &[1., 2., 3., 4., 5., 6.]);
    close(&ev(Op::MatMul, &[&mb, &n], &[2, 1, 2]), &[4., 5., 10., 11.]);
    // batched both sides [2,1,2] @ [2,2,1]
    let p = a(&[2, 1, 2], &[1., 2., 3., 4.]);
    let q = a(&[2, 2, 1], &[1., 1., 2., 0.]);
    close(&ev(Op::MatMul, &[&p, &q], &[2, 1, 1]), &[3., 6.]);
    // 1-D operands
    let v = a(&[3], &[1., 1., 1.]);
    close(&ev(Op::MatMul, &[&m, &v], &[2]), &[6., 15.]);
    close(&ev(Op::MatMul, &[&v, &n], &[2]), &[2., 2.]);
    // Gemm: 2 * A @ B^T + 0.5 * C
    let bt = a(&[2, 3], &[1., 0., 1., 0., 1., 1.]);
    let c = a(&[2], &[2., 4.]);
    let op = Op::Gemm { alpha: 2.0, beta: 0.5, trans_a: false, trans_b: true };
    close(&ev(op, &[&m, &bt, &c], &[2, 2]), &[9., 12., 21., 24.]);
    let op = Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: true, trans_b: false };
    let at = a(&[3, 2], &[1., 4., 2., 5., 3., 6.]);
    close(&ev(op, &[&at, &n], &[2, 2]), &[4., 5., 10., 11.]);
}

#[test]
fn elementwise() {
    let x = a(&[2, 1], &[1., -2.]);
    let y = a(&[3], &[1., 2., 4.]);
    close(&ev(Op::Add, &[&x, &y], &[2, 3]), &[2., 3., 5., -1., 0., 2.]);
    close(&ev(Op::Sub, &[&x, &y], &[2, 3]), &[0., -1., -3., -3., -4., -6.]);
    close(&ev(Op::Mul, &[&x, &y], &[2, 3]), &[1., 2., 4., -2., -4., -8.]);
    close(&ev(Op::Div, &[&x, &y], &[2, 3]), &[1., 0.5, 0.25, -2., -1., -0.5]);
    close(&ev(Op::Max, &[&x, &y], &[2, 3]), &[1., 2., 4., 1., 2., 4.]);
    let e = a(&[], &[3.]);
    close(&ev(Op::Pow, &[&x, &e], &[2, 1]), &[1., -8.]);
    let v = a(&[4], &[-1., 0., 0.5, 2.]);
    close(&ev(Op::Neg, &[&v], &[4]), &[1., 0., -0.5, -2.]);
    close(&ev(Op::Relu, &[&v], &[4]), &[0., 0., 0.5, 2.]);
    close(&ev(Op::LeakyRelu { alpha: 0.1 }, &[&v], &[4]), &[-0.1, 0., 0.5, 2.]);
    close(&ev(Op::Abs, &[&v], &[4]), &[1., 0., 0.5, 2.]);
    close(&ev(Op::Square, &[&v], &[4]), &[1., 0., 0.25, 4.]);
    close(&ev(Op::Exp, &[&v], &[4]), &[(-1f64).exp(), 1., 0.5f64.exp(), 2f64.exp()]);
    close(&ev(Op::Tanh, &[&v], &[4]), &[(-1f64).tanh(), 0., 0.5f64.tanh(), 2f64.tanh()]);
    close(
        &ev(Op::Sigmoid, &[&v], &[4]),
        &[1. / (1. + 1f64.exp()), 0.5, 1. / (1. + (-0.5f64).exp()), 1. / (1. + (-2f64).exp())],
    );
    close(&ev(Op::Sqrt, &[&v], &[4]), &[f64::NAN, 0., 0.5f64.sqrt(), 2f64.sqrt()]);
    close(&ev(Op::Erf, &[&v], &[4]), &[-0.8427007929497149, 0., 0.5204998778130465, 0.9953222650189527]);
    let g = a(&[3], &[-1., 0., 1.]);
    close(&ev(Op::Gelu { tanh: false }, &[&g], &[3]), &[-0.15865525393145707, 0., 0.8413447460685429]);
    close(&ev(Op::Gelu { tanh: true }, &[&g], &[3]), &[-0.15880800939172324, 0., 0.8411919906082768]);
    let n = a(&[3], &[4., 9., 1.]);
    let d = a(&[3], &[4., -1., 0.25]);
    close(&ev(Op::DivSqrt, &[&n, &d], &[3]), &[2., f64::NAN, 2.]);
}

#[test]
fn softmax_reductions_norms() {
    let x = a(&[2, 3], &[1., 2., 3., 0., 0., 0.]);
    close(
        &ev(Op::Softmax { axis: 1 }, &[&x], &[2, 3]),
        &[0.09003057317038046, 0.24472847105479767, 0.6652409557748219, 1. / 3., 1. / 3., 1. / 3.],
    );
    close(
        &ev(Op::Softmax { axis: 0 }, &[&x], &[2, 3]),
        &[
            1. / (1. + (-1f64).exp()),
            1. / (1. + (-2f64).exp()),
            1. / (1. + (-3f64).exp()),
            1. / (1. + 1f64.exp()),
            1. / (1. + 2f64.exp()),
            1. / (1. + 3f64.exp()),
        ],
    );
    close(&ev(Op::ReduceSum { axes: vec![1], keepdims: true }, &[&x], &[2, 1]), &[6., 0.]);
    close(&ev(Op::ReduceMean { axes: vec![0, 1], keepdims: false }, &[&x], &[]), &[1.]);
    close(&ev(Op::ReduceMean { axes: vec![0], keepdims: false }, &[&x], &[3]), &[0.5, 1., 1.5]);
    // LayerNorm over the last axis, population variance, eps inside sqrt
    let s = a(&[3], &[1., 2., 1.]);
    let b = a(&[3], &[0., 0., 1.]);
    let k = 1. / (2. / 3. + 1e-5f64).sqrt();
    close(&ev(Op::LayerNorm { axis: 1, epsilon: 1e-5 }, &[&x, &s, &b], &[2, 3]), &[-k, 0., k + 1., 0., 0., 1.]);
    // LayerNorm over two axes
    let x3 = a(&[1, 2, 2], &[1., 2., 3., 4.]);
    let ones = a(&[2, 2], &[1.; 4]);
    let k2 = 1. / (1.25f64 + 1e-5).sqrt();
    close(
        &ev(Op::LayerNorm { axis: 1, epsilon: 1e-5 }, &[&x3, &ones], &[1, 2, 2]),
        &[-1.5 * k2, -0.5 * k2, 0.5 * k2, 1.5 * k2],
    );
    // BatchNorm on 2 channels
    let xb = a(&[1, 2, 1, 2], &[1., 3., 2., 6.]);
    let sc = a(&[2], &[2., 1.]);
    let bi = a(&[2], &[0., 1.]);
    let me = a(&[2], &[1., 2.]);
    let va = a(&[2], &[4., 16.]);
    close(&ev(Op::BatchNorm { epsilon: 0. }, &[&xb, &sc, &bi, &me, &va], &[1, 2, 1, 2]), &[0., 2., 1., 2.]);
}

#[test]
fn pooling() {
    let x = a(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
    let mp = Op::MaxPool { kernel: [2, 2], strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], ceil_mode: false };
    close(&ev(mp, &[&x], &[1, 1, 3, 3]), &[1., 2., 2., 3., 4., 4., 3., 4., 4.]);
    // negative values: padding must be -inf, not 0
    let xn = a(&[1, 1, 1, 1], &[-5.]);
    let mp = Op::MaxPool { kernel: [2, 2], strides: [1, 1], pads: [1, 1, 0, 0], dilations: [1, 1], ceil_mode: false };
    close(&ev(mp, &[&xn], &[1, 1, 1, 1]), &[-5.]);
    let ap = |inc| Op::AveragePool {
        kernel: [2, 2],
        strides: [1, 1],
        pads: [1, 1, 1, 1],
        count_include_pad: inc,
        ceil_mode: false,
    };
    close(&ev(ap(true), &[&x], &[1, 1, 3, 3]), &[0.25, 0.75, 0.5, 1., 2.5, 1.5, 0.75, 1.75, 1.]);
    close(&ev(ap(false), &[&x], &[1, 1, 3, 3]), &[1., 1.5, 2., 2., 2.5, 3., 3., 3.5, 4.]);
    // ceil mode: 5x5, kernel 2 stride 2 -> 3x3, the last window is partial
    let x5 = a(&[1, 1, 5, 5], &(0..25).map(|v| v as f64).collect::<Vec<_>>());
    let mp = Op::MaxPool { kernel: [2, 2], strides: [2, 2], pads: [0; 4], dilations: [1, 1], ceil_mode: true };
    close(&ev(mp, &[&x5], &[1, 1, 3, 3]), &[6., 8., 9., 16., 18., 19., 21., 23., 24.]);
    let mp = Op::MaxPool { kernel: [2, 2], strides: [2, 2], pads: [0; 4], dilations: [1, 1], ceil_mode: false };
    close(&ev(mp, &[&x5], &[1, 1, 2, 2]), &[6., 8., 16., 18.]);
    let ap =
        Op::AveragePool { kernel: [2, 2], strides: [2, 2], pads: [0; 4], count_include_pad: false, ceil_mode: true };
    close(&ev(ap, &[&x5], &[1, 1, 3, 3]), &[3., 5., 6.5, 13., 15., 16.5, 20.5, 22.5, 24.]);
    close(&ev(Op::GlobalAveragePool, &[&x5], &[1, 1, 1, 1]), &[12.]);
}

#[test]
fn shape_ops() {
    let x = a(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    close(&ev(Op::Reshape, &[&x], &[3, 2]), &[1., 2., 3., 4., 5., 6.]);
    close(&ev(Op::Transpose { perm: vec![1, 0] }, &[&x], &[3, 2]), &[1., 4., 2., 5., 3., 6.]);
    let y = a(&[2, 1], &[7., 8.]);
    close(&ev(Op::Concat { axis: 1 }, &[&x, &y], &[2, 4]), &[1., 2., 3., 7., 4., 5., 6., 8.]);
    let sl = Op::Slice { starts: vec![0, 1], ends: vec![2, 3], axes: vec![0, 1], steps: vec![1, 1] };
    close(&ev(sl, &[&x], &[2, 2]), &[2., 3., 5., 6.]);
    let sl = Op::Slice { starts: vec![0], ends: vec![3], axes: vec![1], steps: vec![2] };
    close(&ev(sl, &[&x], &[2, 2]), &[1., 3., 4., 6.]);
    let sl = Op::Slice { starts: vec![2], ends: vec![2], axes: vec![1], steps: vec![1] };
    close(&ev(sl, &[&x], &[2, 0]), &[]);
    let idx = ArrayD::from_shape_vec(IxDyn(&[2]), vec![2i64, 0]).unwrap();
    close(&ev(Op::Gather { axis: 1, indices: idx }, &[&x], &[2, 2]), &[3., 1., 6., 4.]);
    let idx = ArrayD::from_shape_vec(IxDyn(&[]), vec![1i64]).unwrap();
    close(&ev(Op::Gather { axis: 0, indices: idx }, &[&x], &[3]), &[4., 5., 6.]);
    let pad = Op::Pad { pads: vec![(1, 0), (0, 1)], value: -1. };
    close(&ev(pad, &[&x], &[3, 4]), &[-1., -1., -1., -1., 1., 2., 3., -1., 4., 5., 6., -1.]);
    close(&ev(Op::Expand, &[&y], &[2, 2, 3]), &[7., 7., 7., 8., 8., 8., 7., 7., 7., 8., 8., 8.]);
}

#[test]
fn graph_evaluate_f32_and_helpers() {
    // y = relu(x @ W + b), built through the Graph API
    let mut g = Graph::new();
    let x = g.add_value("x", vec![1, 2]);
    g.input = x;
    let w = g.add_constant("w", a(&[2, 2], &[1., -1., 2., 1.]));
    let b = g.add_constant("b", a(&[2], &[0.5, -10.]));
    let h = g.add_node_inferred("mm", Op::MatMul, vec![x, w], None).unwrap();
    let s = g.add_node_inferred("add", Op::Add, vec![h, b], None).unwrap();
    let y = g.add_node_inferred("relu", Op::Relu, vec![s], None).unwrap();
    g.output = y;
    g.validate().unwrap();
    assert_eq!(g.producer(h), Some(0));
    assert_eq!(g.consumers(h), vec![1]);
    assert_eq!(g.value_by_name("b"), Some(b));
    let inp = ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![1f32, 2.]).unwrap();
    let out = g.evaluate(&inp).unwrap();
    assert_eq!(out.iter().copied().collect::<Vec<f32>>(), vec![5.5, 0.]);
    let all = g.evaluate_all(&inp.mapv(|v| v as f64)).unwrap();
    assert_eq!(all.len(), g.values.len());
    assert_eq!(all[h].as_ref().unwrap().iter().copied().collect::<Vec<_>>(), vec![5., 1.]);
    assert!(all[w].is_none(), "constants are read from the graph");
    assert_eq!(g.constant(w).unwrap().iter_f64().collect::<Vec<_>>(), vec![1., -1., 2., 1.]);
    // wrong input shape is an error, not a panic
    let bad = ArrayD::<f32>::zeros(IxDyn(&[2, 2]));
    assert!(g.evaluate(&bad).unwrap_err().to_string().contains("expects [1, 2]"));
    // toposort restores order; retain_live drops dead nodes and values
    g.nodes.reverse();
    g.toposort().unwrap();
    assert_eq!(g.nodes[0].name, "mm");
    let dead = g.add_node_inferred("dead", Op::Neg, vec![x], None).unwrap();
    assert!(dead > 0);
    g.retain_live();
    assert_eq!(g.nodes.len(), 3);
    assert!(g.value_by_name("dead").is_none());
    let text = g.summary();
    assert!(text.contains("MatMul") && text.contains("[1, 2]"), "{text}");
}
