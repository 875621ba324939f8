//! Errors raised while reading, canonicalising or evaluating a model.

/// An error from the model layer. Every message names the file (or origin), the node involved
/// (name and ONNX op type) where there is one, and says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model file could not be read from disk.
    #[error("cannot read model file {path}: {source}")]
    Io {
        /// Path of the file.
        path: String,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a decodable ONNX protobuf (truncated, corrupt or not ONNX at all).
    #[error("{origin}: not a valid ONNX model ({detail}); the file is truncated, corrupt or not ONNX: re-export it with torch.onnx.export")]
    Decode {
        /// File name or other origin of the bytes.
        origin: String,
        /// What failed.
        detail: String,
    },
    /// A tensor stores its data in an external file that is missing or unusable.
    #[error("{origin}: tensor '{tensor}' uses external data: {detail}; re-export with external_data=False")]
    ExternalData {
        /// File name or other origin of the model.
        origin: String,
        /// Name of the tensor.
        tensor: String,
        /// What went wrong, e.g. "external data file X not found".
        detail: String,
    },
    /// An operator that the reader does not know.
    #[error("{origin}: node '{node}' ({op_type}): unsupported operator '{op_type}'{domain_note}; {advice}")]
    UnknownOp {
        /// File name or other origin of the model.
        origin: String,
        /// Node name.
        node: String,
        /// ONNX op type.
        op_type: String,
        /// Extra note about the domain (empty for the default domain).
        domain_note: String,
        /// The rewrite that converts, where one exists, and the supported operators.
        advice: String,
    },
    /// A known operator used with attribute values or input kinds that are not supported.
    #[error("{origin}: node '{node}' ({op_type}): {detail}")]
    Unsupported {
        /// File name or other origin of the model.
        origin: String,
        /// Node name.
        node: String,
        /// ONNX op type.
        op_type: String,
        /// What is unsupported and what to do.
        detail: String,
    },
    /// A dynamic input dimension that cannot be resolved.
    #[error("{origin}: input '{input}' has dynamic dimension {index} ('{param}') that cannot be resolved; export the model with a fixed input shape (every dimension but the batch), or give the whole input shape when reading it (`input_shape` of `read_onnx`)")]
    DynamicDim {
        /// File name or other origin of the model.
        origin: String,
        /// Input name.
        input: String,
        /// Index of the dimension.
        index: usize,
        /// Symbolic name of the dimension (dim_param), or "?" when absent.
        param: String,
    },
    /// A user-supplied input shape that contradicts the model.
    #[error("{origin}: input shape {given:?} does not match input '{input}' of the model, whose shape is {expected}; give a shape that matches the model")]
    InputShape {
        /// File name or other origin of the model.
        origin: String,
        /// Input name.
        input: String,
        /// Model's declared shape, rendered (dynamic dims by name).
        expected: String,
        /// Shape given by the user.
        given: Vec<usize>,
    },
    /// A structurally invalid model (missing graph, dangling names, bad tensors, too large, ...).
    #[error("{origin}: {detail}")]
    Invalid {
        /// File name or other origin of the model.
        origin: String,
        /// What is wrong.
        detail: String,
    },
    /// A failure while evaluating a node of a [`crate::model::Graph`].
    #[error("evaluating node '{node}' ({op}): {detail}")]
    Eval {
        /// Node name.
        node: String,
        /// Canonical op name.
        op: String,
        /// What went wrong.
        detail: String,
    },
}
