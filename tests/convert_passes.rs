//! Conversion passes on small models built in the test: BatchNorm folding (and a BatchNorm that
//! must stay), each checked against the reference evaluator.

use ndarray::{ArrayD, IxDyn};
use signgd::convert::{convert, ConvertOptions};
use signgd::model::onnx::builder::{attr_i, attr_ints, encode, graph, model, node, tensor_f32, value_info_fixed};
use signgd::model::{read_onnx_bytes, Graph, Op};
use signgd::snn::SynapseBlock;

/// x [1,2,5,5] → Conv 3×3 (3 channels, pad 1) → BatchNormalization → Relu, and optionally the
/// convolution's output also added to the result (so the BatchNorm is not its only consumer).
fn conv_bn_relu(shared: bool) -> Graph {
    let w: Vec<f32> = (0..54).map(|i| ((i * 7) % 13) as f32 * 0.05 - 0.3).collect();
    let mut nodes = vec![
        node("Conv", &["x", "w", "b"], &["c"], vec![attr_ints("pads", &[1, 1, 1, 1])]),
        node("BatchNormalization", &["c", "gamma", "beta", "mean", "var"], &["n"], vec![]),
        node("Relu", &["n"], &["r"], vec![]),
    ];
    if shared {
        nodes.push(node("Add", &["r", "c"], &["y"], vec![]));
    }
    let output = if shared { "y" } else { "r" };
    let g = graph(
        nodes,
        vec![value_info_fixed("x", &[1, 2, 5, 5])],
        vec![value_info_fixed(output, &[1, 3, 5, 5])],
        vec![
            tensor_f32("w", &[3, 2, 3, 3], &w),
            tensor_f32("b", &[3], &[0.1, -0.2, 0.05]),
            tensor_f32("gamma", &[3], &[1.5, 0.5, -0.8]),
            tensor_f32("beta", &[3], &[0.2, 0.0, -0.1]),
            tensor_f32("mean", &[3], &[0.05, -0.1, 0.3]),
            tensor_f32("var", &[3], &[0.4, 1.3, 0.9]),
        ],
    );
    read_onnx_bytes(&encode(&model(g, 17)), None, "conv_bn_relu.onnx").unwrap()
}

fn inputs() -> Vec<ArrayD<f64>> {
    (0..3)
        .map(|k| ArrayD::from_shape_fn(IxDyn(&[1, 2, 5, 5]), |i| ((i[1] * 25 + i[2] * 5 + i[3] + k) % 7) as f64 / 7.0))
        .collect()
}

fn assert_same_function(a: &Graph, b: &Graph) {
    for x in inputs() {
        let (ya, yb) = (a.evaluate::<f64>(&x).unwrap(), b.evaluate::<f64>(&x).unwrap());
        for (p, q) in ya.iter().zip(yb.iter()) {
            assert!((p - q).abs() < 1e-9, "{p} vs {q}");
        }
    }
}

#[test]
fn batchnorm_folds_into_the_convolution_before_it() {
    let original = conv_bn_relu(false);
    let conversion =
        convert(&original, &ConvertOptions { calibration: inputs().into(), ..Default::default() }).unwrap();
    assert!(conversion.notes.iter().any(|n| n.contains("folded 1 BatchNorm")), "{:?}", conversion.notes);
    assert!(!conversion.graph.nodes.iter().any(|n| matches!(n.op, Op::BatchNorm { .. })));
    assert_same_function(&original, &conversion.graph);
    // The folded convolution stays a kernel with geometry, normalisation included.
    let relu = &conversion.network.populations[0];
    assert!(matches!(relu.operands[0].projections[0].block, SynapseBlock::Conv(_)));
}

#[test]
fn a_batchnorm_that_is_not_the_only_consumer_stays_affine() {
    let original = conv_bn_relu(true);
    let conversion =
        convert(&original, &ConvertOptions { calibration: inputs().into(), ..Default::default() }).unwrap();
    assert!(!conversion.notes.iter().any(|n| n.contains("BatchNorm")), "{:?}", conversion.notes);
    assert!(conversion.graph.nodes.iter().any(|n| matches!(n.op, Op::BatchNorm { .. })));
    assert_same_function(&original, &conversion.graph);
    assert_eq!(conversion.network.populations.iter().filter(|p| !p.kind.is_relay()).count(), 1);
}

/// x [1,2,4,4] → Relu → MaxPool 2×2 → (AveragePool 1×1 when `pooled`) → Flatten → Gemm to 3
/// outputs: the shape of VGG's classifier at 224×224, whose adaptive pooling keeps the 7×7 map.
fn classifier(pooled: bool) -> Graph {
    let w: Vec<f32> = (0..24).map(|i| ((i * 5) % 11) as f32 * 0.1 - 0.5).collect();
    let mut nodes = vec![
        node("Relu", &["x"], &["r"], vec![]),
        node("MaxPool", &["r"], &["m"], vec![attr_ints("kernel_shape", &[2, 2]), attr_ints("strides", &[2, 2])]),
        node("Flatten", &["a"], &["f"], vec![]),
        node("Gemm", &["f", "w"], &["y"], vec![attr_i("transB", 1)]),
    ];
    if pooled {
        nodes.insert(2, node("AveragePool", &["m"], &["a"], vec![attr_ints("kernel_shape", &[1, 1])]));
    } else {
        nodes[2].input[0] = "m".into();
    }
    let g = graph(
        nodes,
        vec![value_info_fixed("x", &[1, 2, 4, 4])],
        vec![value_info_fixed("y", &[1, 3])],
        vec![tensor_f32("w", &[3, 8], &w)],
    );
    read_onnx_bytes(&encode(&model(g, 17)), None, "classifier.onnx").unwrap()
}

#[test]
fn an_average_pooling_to_the_maps_own_size_passes_its_source_through() {
    let convert_classifier = |pooled| {
        let x: Vec<ArrayD<f64>> = (0..3)
            .map(|k| {
                ArrayD::from_shape_fn(IxDyn(&[1, 2, 4, 4]), |i| ((i[1] * 16 + i[2] * 4 + i[3] + k) % 5) as f64 / 5.0)
            })
            .collect();
        convert(&classifier(pooled), &ConvertOptions { calibration: x.into(), ..Default::default() }).unwrap()
    };
    // The classifier reads the max pooling's spikes directly, as a dense block, with no relay
    // population in between (a relay's values are real: its reader could not be batched as a
    // product of spikes), as if the pooling were not there.
    let pooled = convert_classifier(true);
    assert!(pooled.network.populations.iter().all(|p| !p.kind.is_relay()));
    let readout = &pooled.network.readout.projections;
    assert_eq!(readout.len(), 1);
    assert!(matches!(readout[0].block, SynapseBlock::Dense(_)), "{:?}", readout[0].block);
    assert_eq!(readout[0].block, convert_classifier(false).network.readout.projections[0].block);
}
