//! Operators added for common PyTorch activations (ReLU6 and Hardtanh as Clip, Min, HardSigmoid,
//! HardSwish, Softplus): the ANN evaluates them as PyTorch does, the conversion makes neurons of
//! them, and the SNN descends towards the ANN's values. Unsupported operators list what is.

use ndarray::{ArrayD, IxDyn};
use signgd::convert::{convert, ConvertOptions};
use signgd::engine::SimConfig;
use signgd::model::onnx::builder::*;
use signgd::model::onnx::{NodeProto, TensorProto};
use signgd::model::{read_onnx_bytes, Graph};
use signgd::runner::{evaluate_ann_inputs, simulate_inputs};
use signgd::snn::EncoderKind;

const X: [f64; 8] = [-7.0, -3.5, -1.0, -0.25, 0.5, 2.0, 4.0, 9.0];

/// `x [1,8] → <nodes> → y` with the given initializers.
fn model_of(nodes: Vec<NodeProto>, inits: Vec<TensorProto>, opset: i64) -> Graph {
    let g = graph(nodes, vec![value_info_fixed("x", &[1, 8])], vec![value_info_fixed("y", &[1, 8])], inits);
    read_onnx_bytes(&encode(&model(g, opset)), None, "ops.onnx").unwrap_or_else(|e| panic!("{e}"))
}

fn ann(g: &Graph) -> Vec<f64> {
    evaluate_ann_inputs::<f64>(g, &[X.to_vec()], 1).unwrap()
}

/// The SNN's output after `steps` steps with the exact encoder and a slow schedule.
fn snn(g: &Graph, steps: usize) -> Vec<f64> {
    let calibration = vec![ArrayD::from_shape_vec(IxDyn(&[1, 8]), X.to_vec()).unwrap()];
    let conversion = convert(g, &ConvertOptions { calibration: calibration.into(), ..Default::default() })
        .unwrap_or_else(|e| panic!("{e}"));
    let config = SimConfig {
        encoder: EncoderKind::Exact,
        schedule: signgd::snn::Schedule::parse("exp:1.0:0.97").unwrap(),
        ..SimConfig::reference(vec![steps])
    };
    simulate_inputs::<f64>(&conversion.network, &config, &[X.to_vec()], 1, &|_| {}).unwrap().outputs
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{what}[{i}] (x = {}): {g} vs {w}\n{got:?}\n{want:?}", X[i]);
    }
}

fn scalar(name: &str, v: f32) -> TensorProto {
    tensor_f32(name, &[], &[v])
}

#[test]
fn clip_relu6_hardtanh_and_min_evaluate_and_convert() {
    let relu6 = model_of(
        vec![node("Clip", &["x", "lo", "hi"], &["y"], vec![])],
        vec![scalar("lo", 0.0), scalar("hi", 6.0)],
        17,
    );
    let want: Vec<f64> = X.iter().map(|x| x.clamp(0.0, 6.0)).collect();
    assert_eq!(ann(&relu6), want);
    assert_close("relu6 snn", &snn(&relu6, 512), &want, 0.05);

    let hardtanh = model_of(
        vec![node("Clip", &["x", "lo", "hi"], &["y"], vec![])],
        vec![scalar("lo", -1.0), scalar("hi", 1.0)],
        17,
    );
    let want: Vec<f64> = X.iter().map(|x| x.clamp(-1.0, 1.0)).collect();
    assert_eq!(ann(&hardtanh), want);
    assert_close("hardtanh snn", &snn(&hardtanh, 512), &want, 0.05);

    // Opset 6 keeps the bounds as attributes.
    let legacy = model_of(vec![node("Clip", &["x"], &["y"], vec![attr_f("min", 0.0), attr_f("max", 6.0)])], vec![], 6);
    assert_eq!(ann(&legacy), X.iter().map(|x| x.clamp(0.0, 6.0)).collect::<Vec<_>>());

    let min = model_of(vec![node("Min", &["x", "c"], &["y"], vec![])], vec![scalar("c", 1.5)], 17);
    let want: Vec<f64> = X.iter().map(|x| x.min(1.5)).collect();
    assert_eq!(ann(&min), want);
    assert_close("min snn", &snn(&min, 512), &want, 0.05);
}

#[test]
fn hard_activations_and_softplus_follow_pytorch() {
    let hardswish = model_of(vec![node("HardSwish", &["x"], &["y"], vec![])], vec![], 17);
    let want: Vec<f64> = X.iter().map(|x| x * (x + 3.0).clamp(0.0, 6.0) / 6.0).collect();
    assert_close("hardswish ann", &ann(&hardswish), &want, 1e-12);
    assert_close("hardswish snn", &snn(&hardswish, 512), &want, 0.05);

    // PyTorch exports nn.Hardsigmoid with alpha = 1/6.
    let hardsigmoid = model_of(vec![node("HardSigmoid", &["x"], &["y"], vec![attr_f("alpha", 1.0 / 6.0)])], vec![], 17);
    let want: Vec<f64> = X.iter().map(|x| (x / 6.0 + 0.5).clamp(0.0, 1.0)).collect();
    assert_close("hardsigmoid ann", &ann(&hardsigmoid), &want, 1e-7);
    assert_close("hardsigmoid snn", &snn(&hardsigmoid, 512), &want, 0.05);

    let softplus = model_of(vec![node("Softplus", &["x"], &["y"], vec![])], vec![], 17);
    let want: Vec<f64> = X.iter().map(|x| x.exp().ln_1p()).collect();
    assert_close("softplus ann", &ann(&softplus), &want, 1e-12);
    assert_close("softplus snn", &snn(&softplus, 512), &want, 0.05);

    // The dynamo exporter writes nn.Softplus with PyTorch's threshold: x where x > 20.
    let thresholded = |t: f32| {
        let g = graph(
            vec![
                node("Softplus", &["x"], &["sp"], vec![]),
                node("Greater", &["x", "t"], &["c"], vec![]),
                node("Where", &["c", "x", "sp"], &["y"], vec![]),
            ],
            vec![value_info_fixed("x", &[1, 8])],
            vec![value_info_fixed("y", &[1, 8])],
            vec![scalar("t", t)],
        );
        read_onnx_bytes(&encode(&model(g, 20)), None, "softplus.onnx")
    };
    assert_close("thresholded softplus", &ann(&thresholded(20.0).unwrap()), &want, 1e-12);
    // A threshold where the shortcut changes the function is refused, naming the pattern.
    let error = thresholded(1.0).unwrap_err().to_string();
    assert!(error.contains("Where(x > t, x, Softplus(x))"), "{error}");
}

#[test]
fn training_mode_dropout_is_refused_like_training_batchnorm() {
    let g = graph(
        vec![node("Dropout", &["x", "ratio", "train"], &["y"], vec![])],
        vec![value_info_fixed("x", &[1, 8])],
        vec![value_info_fixed("y", &[1, 8])],
        vec![scalar("ratio", 0.5), tensor_i64("train", &[], &[1])],
    );
    let error = read_onnx_bytes(&encode(&model(g, 17)), None, "train.onnx").unwrap_err().to_string();
    assert!(error.contains("train.onnx") && error.contains("Dropout") && error.contains("eval() mode"), "{error}");

    // In eval mode (the flag false or absent) Dropout is the identity.
    for inputs in [&["x", "ratio", "train"][..], &["x"][..]] {
        let g = graph(
            vec![node("Dropout", inputs, &["y"], vec![])],
            vec![value_info_fixed("x", &[1, 8])],
            vec![value_info_fixed("y", &[1, 8])],
            vec![scalar("ratio", 0.5), tensor_i64("train", &[], &[0])],
        );
        let g = read_onnx_bytes(&encode(&model(g, 17)), None, "eval.onnx").unwrap();
        assert_eq!(ann(&g), X.to_vec());
    }
}

#[test]
fn unsupported_operators_get_the_full_list_and_a_rewrite() {
    for (op, rewrite) in [("Elu", "LeakyReLU"), ("Mish", "softplus"), ("Sin", "")] {
        let g = graph(
            vec![node(op, &["x"], &["y"], vec![])],
            vec![value_info_fixed("x", &[1, 8])],
            vec![value_info_fixed("y", &[1, 8])],
            vec![],
        );
        let error = read_onnx_bytes(&encode(&model(g, 17)), None, "m.onnx").unwrap_err().to_string();
        assert!(error.contains(rewrite), "{op}: {error}");
        for supported in signgd::model::operators::OPERATORS {
            assert!(error.contains(supported.name), "{op}: {} missing from {error}", supported.name);
        }
        assert!(error.contains("signgd ops"), "{error}");
    }
}
