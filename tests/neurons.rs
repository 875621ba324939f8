//! Spike functions of every neuron kind with their exact tie rules (SPEC.md §2), the generic
//! rule, and the IF / LIF neurons.

use signgd::snn::neuron::{gelu, IfNeuron, LifNeuron};
use signgd::snn::{Elementwise, GeluTarget, NeuronKind};

fn fires(kind: NeuronKind, v: f64, x1: f64, x2: f64) -> bool {
    kind.fires(v, x1, x2)
}

#[test]
fn relu_fires_on_ties() {
    assert!(fires(NeuronKind::Relu, 0.0, 0.0, 0.0));
    assert!(fires(NeuronKind::Relu, 0.0, -1.0, 0.0), "v = 0 = max(x, 0)");
    assert!(fires(NeuronKind::Relu, 0.5, 0.5, 0.0));
    assert!(!fires(NeuronKind::Relu, 0.49, 0.5, 0.0));
    assert!(!fires(NeuronKind::Relu, -0.1, -1.0, 0.0));
}

#[test]
fn leaky_relu_uses_the_models_slope_and_strict_ties() {
    let kind = NeuronKind::LeakyRelu { slope: 0.2 };
    assert!(!fires(kind, 1.0, 1.0, 0.0), "tie on the positive side does not fire");
    assert!(fires(kind, 1.0 + 1e-12, 1.0, 0.0));
    assert!(!fires(kind, -0.2, -1.0, 0.0), "tie at slope·x does not fire");
    assert!(fires(kind, -0.19, -1.0, 0.0));
    assert!(fires(kind, -0.11, -1.0, 0.0), "fires with slope 0.2; the reference's fixed 0.1 would not");
    assert!(!NeuronKind::LeakyRelu { slope: 0.1 }.fires(-0.11, -1.0, 0.0));
    assert!(!fires(kind, 0.0, 0.0, 0.0));
}

#[test]
fn gelu_targets() {
    let sigmoid = NeuronKind::Gelu { target: GeluTarget::Sigmoid };
    let erf = NeuronKind::Gelu { target: GeluTarget::Erf };
    let x = 1.0f64;
    let g_sigmoid = x / (1.0 + (-1.702 * x).exp());
    let g_erf = 0.841344746068543;
    assert_eq!(gelu(GeluTarget::Sigmoid, x), g_sigmoid);
    assert!((gelu(GeluTarget::Erf, x) - g_erf).abs() < 1e-15);
    assert!(!fires(sigmoid, g_sigmoid, x, 0.0), "strict");
    assert!(fires(sigmoid, g_sigmoid + 1e-12, x, 0.0));
    // Between the two targets the kinds disagree.
    let between = 0.5 * (g_sigmoid + g_erf);
    assert_ne!(fires(sigmoid, between, x, 0.0), fires(erf, between, x, 0.0));
    // The largest gap between the targets is about 0.0203.
    let gap = (-800..800)
        .map(|i| i as f64 / 100.0)
        .map(|x| (gelu(GeluTarget::Sigmoid, x) - gelu(GeluTarget::Erf, x)).abs())
        .fold(0.0, f64::max);
    assert!((gap - 0.0203).abs() < 5e-4, "gap {gap}");
}

#[test]
fn abs_square_exp_ties() {
    assert!(!fires(NeuronKind::Abs, 2.0, -2.0, 0.0));
    assert!(fires(NeuronKind::Abs, 2.0 + 1e-12, -2.0, 0.0));
    assert!(fires(NeuronKind::Square, 4.0, -2.0, 0.0), "square fires on a tie");
    assert!(!fires(NeuronKind::Square, 3.99, -2.0, 0.0));
    assert!(fires(NeuronKind::Exp, 1.0, 0.0, 0.0), "exp fires on a tie");
    assert!(!fires(NeuronKind::Exp, 0.99, 0.0, 0.0));
}

#[test]
fn two_operand_ties() {
    assert!(!fires(NeuronKind::Max, 3.0, 1.0, 3.0), "max is strict");
    assert!(fires(NeuronKind::Max, 3.0 + 1e-12, 1.0, 3.0));
    assert!(fires(NeuronKind::Product, 6.0, 2.0, 3.0), "product fires on a tie");
    assert!(!fires(NeuronKind::Product, 5.99, 2.0, 3.0));
    assert!(!fires(NeuronKind::Division, 2.0, 6.0, 3.0), "division is strict");
    assert!(fires(NeuronKind::Division, 2.0 + 1e-12, 6.0, 3.0));
}

#[test]
fn div_sqrt_rule_and_nan() {
    // sqrt(4)·1 − 2 = 0: not > 0.
    assert!(!fires(NeuronKind::DivSqrt, 1.0, 2.0, 4.0));
    assert!(fires(NeuronKind::DivSqrt, 1.1, 2.0, 4.0));
    // x2 < 0: the result is NaN and the neuron never fires, whatever v.
    for v in [-1e9, -1.0, 0.0, 1.0, 1e9] {
        assert!(!fires(NeuronKind::DivSqrt, v, -5.0, -1e-9));
        assert!(!fires(NeuronKind::DivSqrt, v, 5.0, -1.0));
    }
    assert!(NeuronKind::DivSqrt.target(1.0f64, -1.0).is_nan());
    // The same in f32.
    assert!(!NeuronKind::DivSqrt.fires(1.0f32, -5.0, -1e-3));
}

#[test]
fn generic_elementwise_rule_is_strict() {
    for function in
        [Elementwise::Silu, Elementwise::Sigmoid, Elementwise::Tanh, Elementwise::Softplus, Elementwise::Hardswish]
    {
        let kind = NeuronKind::Elementwise { function };
        for x in [-2.0, -0.5, 0.0, 0.7, 3.0] {
            let f = function.apply(x);
            assert!(!fires(kind, f, x, 0.0), "{function:?} at a tie");
            assert!(fires(kind, f + 1e-9, x, 0.0));
            assert!(!fires(kind, f - 1e-9, x, 0.0));
        }
    }
    assert!((Elementwise::Silu.apply(1.0f64) - 0.7310585786300049).abs() < 1e-15);
    assert!((Elementwise::Tanh.apply(0.5f64) - 0.46211715726000974).abs() < 1e-15);
    assert!((Elementwise::Sigmoid.apply(0.0f64) - 0.5).abs() < 1e-15);
}

#[test]
fn arity() {
    for kind in [NeuronKind::Max, NeuronKind::Product, NeuronKind::Division, NeuronKind::DivSqrt] {
        assert_eq!(kind.arity(), 2);
    }
    for kind in [NeuronKind::Relu, NeuronKind::Square, NeuronKind::Exp, NeuronKind::Abs] {
        assert_eq!(kind.arity(), 1);
    }
}

#[test]
fn if_neuron_resets_by_subtraction() {
    let mut n = IfNeuron::new(1.0, 0.0);
    let spikes: Vec<bool> = [0.6, 0.6, 0.6, 0.2, 1.0].iter().map(|&i| n.step(i)).collect();
    assert_eq!(spikes, [false, true, false, true, true]);
    assert!((n.membrane - 0.0).abs() < 1e-12);
    let mut tie = IfNeuron::new(1.0, 0.5);
    assert!(tie.step(0.5), "h = θ fires");
    assert_eq!(tie.membrane, 0.0);
}

#[test]
fn lif_neuron_leaks_and_is_if_without_leak() {
    let mut leaky = LifNeuron::new(1.0, 0.5, 0.0);
    assert!(!leaky.step(0.8));
    assert!((leaky.membrane - 0.4).abs() < 1e-15);
    assert!(leaky.step(0.6));
    assert!((leaky.membrane - (0.5 * 1.0 - 1.0)).abs() < 1e-15);
    let mut lif = LifNeuron::new(0.7, 1.0, 0.1);
    let mut if_neuron = IfNeuron::new(0.7, 0.1);
    for i in 0..100 {
        let current = ((i * 37) % 11) as f64 / 10.0 - 0.3;
        assert_eq!(lif.step(current), if_neuron.step(current));
    }
}
