//! The ONNX operators the reader accepts, what each becomes in the spiking network, and the
//! rewrites that make common unsupported operators convert.

/// One supported ONNX operator.
#[derive(Clone, Copy, Debug)]
pub struct Operator {
    /// The ONNX op type.
    pub name: &'static str,
    /// What the conversion makes of it.
    pub becomes: &'static str,
}

const fn op(name: &'static str, becomes: &'static str) -> Operator {
    Operator { name, becomes }
}

const AFFINE: &str = "synapses (affine, folded into the next population's weights)";
const SHAPE: &str = "addressing only (no neurons, no synapses)";
const FOLDED: &str = "constant-folded (shape arithmetic); refused where it depends on the input";

/// Every operator the reader accepts, in alphabetical order.
pub const OPERATORS: &[Operator] = &[
    op("Abs", "|x| neurons"),
    op("Add", "synapses (sum of operands); a constant becomes a bias"),
    op("AveragePool", AFFINE),
    op("BatchNormalization", "folded into the neighbouring weights (eval mode only)"),
    op("Cast", FOLDED),
    op("CastLike", FOLDED),
    op("Clip", "ReLU neurons (lower bound 0) or max neurons, then a min neuron for the upper bound"),
    op("Concat", SHAPE),
    op("Constant", "a constant"),
    op("ConstantOfShape", FOLDED),
    op("Conv", "convolution synapses (kernels shared over positions)"),
    op("Div", "division neurons; a constant divisor becomes synapses"),
    op("Dropout", "removed (eval mode only; training mode is refused)"),
    op("Equal", FOLDED),
    op("Erf", "GELU neurons, inside GELU's 0.5·x·(1 + erf(x/√2)) pattern only"),
    op("Exp", "exp neurons"),
    op("Expand", SHAPE),
    op("Flatten", SHAPE),
    op("Gather", SHAPE),
    op("Gelu", "GELU neurons"),
    op("Gemm", "dense synapses"),
    op("Greater", "constant-folded; on activations only as softplus's threshold Where(x > t, x, Softplus(x))"),
    op("GlobalAveragePool", AFFINE),
    op("HardSigmoid", "elementwise neurons tracking clip(alpha·x + beta, 0, 1)"),
    op("HardSwish", "elementwise neurons tracking x·clip(x + 3, 0, 6)/6"),
    op("Identity", "removed"),
    op("LayerNormalization", "mean synapses, square, 1/sqrt and product neurons"),
    op("LeakyRelu", "leaky ReLU neurons"),
    op("MatMul", "dense synapses (constant weights) or product neurons (two activations, attention)"),
    op("Max", "max neurons"),
    op("MaxPool", "a tree of exact max neurons"),
    op("Min", "max neurons on negated operands"),
    op("Mul", "product neurons; a constant factor becomes synapses"),
    op("Neg", AFFINE),
    op("Not", FOLDED),
    op("Pad", SHAPE),
    op("Pow", "square neurons (exponent 2); other exponents are refused"),
    op("Range", FOLDED),
    op("ReduceMean", AFFINE),
    op("ReduceSum", AFFINE),
    op("Relu", "ReLU neurons (normalised by the calibration maxima)"),
    op("Reshape", SHAPE),
    op("Shape", FOLDED),
    op("Sigmoid", "elementwise neurons tracking 1/(1 + e^−x)"),
    op("Size", FOLDED),
    op("Slice", SHAPE),
    op("Softmax", "exp neurons, sum synapses and division neurons"),
    op("Softplus", "elementwise neurons tracking ln(1 + eˣ)"),
    op("Split", SHAPE),
    op("Sqrt", "1/sqrt neurons, as the divisor of a Div only"),
    op("Squeeze", SHAPE),
    op("Sub", "synapses (difference of operands); a constant becomes a bias"),
    op("Tanh", "elementwise neurons tracking tanh(x)"),
    op("Transpose", SHAPE),
    op("Unsqueeze", SHAPE),
    op("Where", FOLDED),
];

/// Whether the reader accepts `name`.
pub fn is_supported(name: &str) -> bool {
    OPERATORS.iter().any(|o| o.name == name)
}

/// The names of every supported operator, comma-separated.
pub fn supported_list() -> String {
    OPERATORS.iter().map(|o| o.name).collect::<Vec<_>>().join(", ")
}

/// A rewrite in PyTorch that converts, for an operator that does not.
pub fn rewrite(name: &str) -> Option<&'static str> {
    Some(match name {
        "Relu6" | "Hardtanh" => "export torch.clamp / nn.ReLU6 / nn.Hardtanh, which the exporter writes as Clip",
        "GlobalMaxPool" => "use nn.MaxPool2d with the kernel size equal to the feature map's size",
        "ReduceMax" => "use nn.MaxPool2d over the reduced axes, or torch.maximum of the slices",
        "Elu" | "Selu" | "Celu" => "replace the activation by nn.LeakyReLU, nn.GELU or nn.Softplus and fine-tune",
        "Mish" => "write it as x * torch.tanh(F.softplus(x)) (Softplus, Tanh and Mul convert)",
        "Silu" | "Swish" => "write it as x * torch.sigmoid(x) (Sigmoid and Mul convert)",
        "Softsign" => "write it as x / (1 + x.abs()) (Abs, Add and Div convert)",
        "InstanceNormalization" | "GroupNormalization" => {
            "use nn.LayerNorm over the channel axis, or fold the normalisation into BatchNorm before export"
        }
        "Dropout" => "export the model in eval() mode",
        _ => return None,
    })
}
