//! Neuron kinds and their spike functions, with the exact tie rules of the reference.

use serde::{Deserialize, Serialize};

use crate::real::Real;

/// Which function a GELU neuron descends towards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeluTarget {
    /// `x · sigmoid(1.702 x)`, the reference implementation's target.
    Sigmoid,
    /// The exact GELU `x · Φ(x) = x (1 + erf(x / √2)) / 2`.
    Erf,
}

/// A one-operand elementwise function without a tie rule of its own in the reference.
/// Its neuron fires when `v − f(x) > 0`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Elementwise {
    /// `x · sigmoid(x)`.
    Silu,
    /// `1 / (1 + e^−x)`.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// `ln(1 + e^x)`.
    Softplus,
    /// `x · clip(x + 3, 0, 6) / 6`.
    Hardswish,
    /// `clip(alpha·x + beta, 0, 1)`.
    HardSigmoid {
        /// Slope.
        alpha: f64,
        /// Offset.
        beta: f64,
    },
}

impl Elementwise {
    /// Evaluates the function.
    pub fn apply<F: Real>(self, x: F) -> F {
        let one = F::one();
        match self {
            Elementwise::Silu => x / (one + (-x).exp()),
            Elementwise::Sigmoid => one / (one + (-x).exp()),
            Elementwise::Tanh => x.tanh(),
            Elementwise::Softplus => x.max(F::zero()) + (-x.abs()).exp().ln_1p(),
            Elementwise::Hardswish => {
                let six = F::of(6.0);
                x * (x + F::of(3.0)).max(F::zero()).min(six) / six
            }
            Elementwise::HardSigmoid { alpha, beta } => (F::of(alpha) * x + F::of(beta)).min(one).max(F::zero()),
        }
    }

    /// Short name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Elementwise::Silu => "silu",
            Elementwise::Sigmoid => "sigmoid",
            Elementwise::Tanh => "tanh",
            Elementwise::Softplus => "softplus",
            Elementwise::Hardswish => "hardswish",
            Elementwise::HardSigmoid { .. } => "hardsigmoid",
        }
    }
}

/// The nonlinear operator a population of signGD neurons descends towards (SPEC.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NeuronKind {
    /// ReLU on a normalised input: fires iff `v ≥ max(x, 0)`.
    Relu,
    /// LeakyReLU with the model's slope: fires iff `v > x` for `x ≥ 0`, else `v > slope·x`.
    LeakyRelu {
        /// The negative slope.
        slope: f64,
    },
    /// GELU: fires iff `v > gelu(x)` for the chosen target.
    Gelu {
        /// The target function.
        target: GeluTarget,
    },
    /// GELU over a positive per-neuron scale, `gelu(x1) / x2` with `x2` a constant operand (the
    /// calibrated dynamics' GELU, whose readers multiply by the scale): fires iff
    /// `v > gelu(x1) / x2`.
    ScaledGelu {
        /// The target function.
        target: GeluTarget,
    },
    /// Absolute value: fires iff `v > |x|`.
    Abs,
    /// Square: fires iff `v ≥ x²`.
    Square,
    /// Exponential: fires iff `v ≥ eˣ`.
    Exp,
    /// Maximum of two operands: fires iff `v > max(x1, x2)`.
    Max,
    /// Product of two operands: fires iff `v ≥ x1·x2`.
    Product,
    /// Division of two operands: fires iff `v > x1 / x2`.
    Division,
    /// `x1 / sqrt(x2)`: fires iff `sqrt(x2)·v − x1 > 0`; never while `x2 < 0` (NaN).
    DivSqrt,
    /// Any other elementwise function: fires iff `v − f(x) > 0`.
    Elementwise {
        /// The function.
        function: Elementwise,
    },
    /// Not a neuron: a relay that holds, each step, the real-valued linear combination of its
    /// sources' outputs (a dendritic accumulator). The converter inserts one where composing two
    /// mixing maps (a convolution after a linear layer, say) would multiply the synapse count;
    /// its consumers read it with dense multiply-accumulates. It never spikes.
    Relay,
}

impl NeuronKind {
    /// Number of operands the neuron takes.
    pub fn arity(self) -> usize {
        match self {
            NeuronKind::Max
            | NeuronKind::Product
            | NeuronKind::Division
            | NeuronKind::DivSqrt
            | NeuronKind::ScaledGelu { .. } => 2,
            _ => 1,
        }
    }

    /// Short name used in reports.
    pub fn name(self) -> String {
        match self {
            NeuronKind::Relu => "relu".into(),
            NeuronKind::LeakyRelu { .. } => "leaky_relu".into(),
            NeuronKind::Gelu { target: GeluTarget::Sigmoid } => "gelu".into(),
            NeuronKind::Gelu { target: GeluTarget::Erf } => "gelu_erf".into(),
            NeuronKind::ScaledGelu { target: GeluTarget::Sigmoid } => "gelu_scaled".into(),
            NeuronKind::ScaledGelu { target: GeluTarget::Erf } => "gelu_erf_scaled".into(),
            NeuronKind::Abs => "abs".into(),
            NeuronKind::Square => "square".into(),
            NeuronKind::Exp => "exp".into(),
            NeuronKind::Max => "max".into(),
            NeuronKind::Product => "product".into(),
            NeuronKind::Division => "division".into(),
            NeuronKind::DivSqrt => "div_sqrt".into(),
            NeuronKind::Elementwise { function } => function.name().into(),
            NeuronKind::Relay => "relay".into(),
        }
    }

    /// The function value `f(x1, x2)` the neuron tracks (`x2` is ignored by one-operand kinds).
    pub fn target<F: Real>(self, x1: F, x2: F) -> F {
        match self {
            NeuronKind::Relu => x1.max(F::zero()),
            NeuronKind::LeakyRelu { slope } => {
                if x1 >= F::zero() {
                    x1
                } else {
                    F::of(slope) * x1
                }
            }
            NeuronKind::Gelu { target } => gelu(target, x1),
            NeuronKind::ScaledGelu { target } => gelu(target, x1) / x2,
            NeuronKind::Abs => x1.abs(),
            NeuronKind::Square => x1 * x1,
            NeuronKind::Exp => x1.exp(),
            NeuronKind::Max => x1.max(x2),
            NeuronKind::Product => x1 * x2,
            NeuronKind::Division => x1 / x2,
            NeuronKind::DivSqrt => x1 / x2.sqrt(),
            NeuronKind::Elementwise { function } => function.apply(x1),
            NeuronKind::Relay => x1,
        }
    }

    /// Whether the population is a relay rather than neurons.
    pub fn is_relay(self) -> bool {
        self == NeuronKind::Relay
    }

    /// The spike function Φ(v, x): `true` means the neuron emits 1 (its estimate moves down).
    #[inline(always)]
    pub fn fires<F: Real>(self, v: F, x1: F, x2: F) -> bool {
        match self {
            NeuronKind::Relu => v >= x1.max(F::zero()),
            NeuronKind::LeakyRelu { slope } => {
                if x1 >= F::zero() {
                    v > x1
                } else {
                    v > F::of(slope) * x1
                }
            }
            NeuronKind::Gelu { target } => v > gelu(target, x1),
            NeuronKind::ScaledGelu { target } => v > gelu(target, x1) / x2,
            NeuronKind::Abs => v > x1.abs(),
            NeuronKind::Square => v >= x1 * x1,
            NeuronKind::Exp => v >= x1.exp(),
            NeuronKind::Max => v > x1.max(x2),
            NeuronKind::Product => v >= x1 * x2,
            NeuronKind::Division => v > x1 / x2,
            NeuronKind::DivSqrt => x2.sqrt() * v - x1 > F::zero(),
            NeuronKind::Elementwise { function } => v - function.apply(x1) > F::zero(),
            NeuronKind::Relay => false,
        }
    }
}

/// GELU with the chosen target.
pub fn gelu<F: Real>(target: GeluTarget, x: F) -> F {
    match target {
        GeluTarget::Sigmoid => x * (F::one() / (F::one() + (-(F::of(1.702) * x)).exp())),
        GeluTarget::Erf => F::of(0.5) * x * (F::one() + (x / F::of(std::f64::consts::SQRT_2)).erf()),
    }
}

/// An integrate-and-fire neuron with reset by subtraction (SPEC.md §1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IfNeuron {
    /// Firing threshold θ.
    pub threshold: f64,
    /// Membrane potential u.
    pub membrane: f64,
}

impl IfNeuron {
    /// A neuron with threshold `threshold` and initial membrane `u0`.
    pub fn new(threshold: f64, u0: f64) -> Self {
        IfNeuron { threshold, membrane: u0 }
    }

    /// One step: `h = u + I; s = [h ≥ θ]; u = h − θ s`.
    pub fn step(&mut self, current: f64) -> bool {
        let h = self.membrane + current;
        let spike = h >= self.threshold;
        self.membrane = if spike { h - self.threshold } else { h };
        spike
    }
}

/// A leaky integrate-and-fire neuron with reset by subtraction:
/// `h = u + I; s = [h ≥ θ]; u = λ h − θ s`. With `λ = 1` it is the IF neuron.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LifNeuron {
    /// Firing threshold θ.
    pub threshold: f64,
    /// Leak factor λ applied to the membrane each step.
    pub leak: f64,
    /// Membrane potential u.
    pub membrane: f64,
}

impl LifNeuron {
    /// A neuron with threshold `threshold`, leak `leak` and initial membrane `u0`.
    pub fn new(threshold: f64, leak: f64, u0: f64) -> Self {
        LifNeuron { threshold, leak, membrane: u0 }
    }

    /// One step: `h = u + I; s = [h ≥ θ]; u = λ h − θ s`.
    pub fn step(&mut self, current: f64) -> bool {
        let h = self.membrane + current;
        let spike = h >= self.threshold;
        self.membrane = self.leak * h - if spike { self.threshold } else { 0.0 };
        spike
    }
}
