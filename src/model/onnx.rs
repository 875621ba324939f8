//! Hand-written protobuf messages for the subset of `onnx.proto` that the reader uses.
//!
//! Field numbers follow `onnx.proto` (proto2). Fields not listed here are skipped by the decoder.
//! Repeated scalars are decoded whether or not they are packed.

/// Tensor element types (`TensorProto.DataType`).
pub mod data_type {
    /// 32-bit float.
    pub const FLOAT: i32 = 1;
    /// Unsigned 8-bit integer.
    pub const UINT8: i32 = 2;
    /// Signed 8-bit integer.
    pub const INT8: i32 = 3;
    /// Unsigned 16-bit integer.
    pub const UINT16: i32 = 4;
    /// Signed 16-bit integer.
    pub const INT16: i32 = 5;
    /// Signed 32-bit integer.
    pub const INT32: i32 = 6;
    /// Signed 64-bit integer.
    pub const INT64: i32 = 7;
    /// String.
    pub const STRING: i32 = 8;
    /// Boolean.
    pub const BOOL: i32 = 9;
    /// IEEE half precision.
    pub const FLOAT16: i32 = 10;
    /// 64-bit float.
    pub const DOUBLE: i32 = 11;
    /// Unsigned 32-bit integer.
    pub const UINT32: i32 = 12;
    /// Unsigned 64-bit integer.
    pub const UINT64: i32 = 13;
    /// bfloat16.
    pub const BFLOAT16: i32 = 16;

    /// Whether the type is a floating-point type.
    pub fn is_float(t: i32) -> bool {
        matches!(t, FLOAT | FLOAT16 | DOUBLE | BFLOAT16)
    }

    /// Human-readable name of a data type.
    pub fn name(t: i32) -> &'static str {
        match t {
            FLOAT => "float",
            UINT8 => "uint8",
            INT8 => "int8",
            UINT16 => "uint16",
            INT16 => "int16",
            INT32 => "int32",
            INT64 => "int64",
            STRING => "string",
            BOOL => "bool",
            FLOAT16 => "float16",
            DOUBLE => "double",
            UINT32 => "uint32",
            UINT64 => "uint64",
            BFLOAT16 => "bfloat16",
            _ => "unknown",
        }
    }
}

/// Attribute types (`AttributeProto.AttributeType`).
pub mod attribute_type {
    /// No type recorded (some old exporters omit it).
    pub const UNDEFINED: i32 = 0;
    /// float `f`.
    pub const FLOAT: i32 = 1;
    /// int `i`.
    pub const INT: i32 = 2;
    /// bytes `s`.
    pub const STRING: i32 = 3;
    /// tensor `t`.
    pub const TENSOR: i32 = 4;
    /// graph `g`.
    pub const GRAPH: i32 = 5;
    /// floats.
    pub const FLOATS: i32 = 6;
    /// ints.
    pub const INTS: i32 = 7;
    /// strings.
    pub const STRINGS: i32 = 8;
}

/// `ModelProto`: the top-level message of an `.onnx` file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// IR version.
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    /// Operator sets the model uses.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// Producer (e.g. "pytorch").
    #[prost(string, tag = "2")]
    pub producer_name: String,
    /// Producer version.
    #[prost(string, tag = "3")]
    pub producer_version: String,
    /// The graph.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// Model-local functions (only their names are read, for error messages).
    #[prost(message, repeated, tag = "25")]
    pub functions: Vec<FunctionProto>,
}

/// `OperatorSetIdProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    /// Domain ("" or "ai.onnx" is the default domain).
    #[prost(string, tag = "1")]
    pub domain: String,
    /// Opset version.
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// `FunctionProto` (only the identifying fields).
#[derive(Clone, PartialEq, prost::Message)]
pub struct FunctionProto {
    /// Function name (the op_type under which nodes call it).
    #[prost(string, tag = "1")]
    pub name: String,
    /// Function domain.
    #[prost(string, tag = "10")]
    pub domain: String,
}

/// `GraphProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    /// Nodes (topologically sorted by the ONNX rules).
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// Graph name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Initializers (weights).
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Graph inputs (may include initializers in older exports).
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// Graph outputs.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    /// Type and shape information of intermediate values.
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
}

/// `NodeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    /// Input names ("" for an omitted optional input).
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Output names.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// Node name.
    #[prost(string, tag = "3")]
    pub name: String,
    /// Operator type.
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// Operator domain.
    #[prost(string, tag = "7")]
    pub domain: String,
    /// Attributes.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
}

/// `AttributeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    /// Attribute name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Attribute type (see [`attribute_type`]).
    #[prost(int32, tag = "20")]
    pub r#type: i32,
    /// Float value.
    #[prost(float, tag = "2")]
    pub f: f32,
    /// Integer value.
    #[prost(int64, tag = "3")]
    pub i: i64,
    /// String value.
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    /// Tensor value.
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    /// Graph value (never used by the reader; decoded to be skipped cleanly).
    #[prost(message, optional, tag = "6")]
    pub g: Option<GraphProto>,
    /// Float list.
    #[prost(float, repeated, packed = "false", tag = "7")]
    pub floats: Vec<f32>,
    /// Integer list.
    #[prost(int64, repeated, packed = "false", tag = "8")]
    pub ints: Vec<i64>,
    /// String list.
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
}

/// `StringStringEntryProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    /// Key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `TensorProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// Dimensions.
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    /// Element type (see [`data_type`]).
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    /// Float data.
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// int32 (and smaller integer, bool, float16 bit pattern) data.
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    /// String data.
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub string_data: Vec<Vec<u8>>,
    /// int64 data.
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    /// Tensor name.
    #[prost(string, tag = "8")]
    pub name: String,
    /// Raw little-endian data (a slice of the decoded buffer when that is a `Bytes`).
    #[prost(bytes = "bytes", tag = "9")]
    pub raw_data: prost::bytes::Bytes,
    /// Double data.
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    /// uint32 / uint64 data.
    #[prost(uint64, repeated, tag = "11")]
    pub uint64_data: Vec<u64>,
    /// External data description (location, offset, length).
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    /// 0 = DEFAULT, 1 = EXTERNAL.
    #[prost(int32, tag = "14")]
    pub data_location: i32,
}

/// `ValueInfoProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    /// Value name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Type.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

/// `TypeProto` (only the tensor case is read).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    /// The `value` oneof.
    #[prost(oneof = "type_proto::Value", tags = "1")]
    pub value: Option<type_proto::Value>,
}

/// Nested types of [`TypeProto`].
pub mod type_proto {
    /// `TypeProto.Tensor`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Tensor {
        /// Element type.
        #[prost(int32, tag = "1")]
        pub elem_type: i32,
        /// Shape (absent = unknown rank).
        #[prost(message, optional, tag = "2")]
        pub shape: Option<super::TensorShapeProto>,
    }

    /// The `value` oneof of `TypeProto`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        /// `tensor_type = 1`.
        #[prost(message, tag = "1")]
        TensorType(Tensor),
    }
}

/// `TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// Dimensions.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<tensor_shape_proto::Dimension>,
}

/// Nested types of [`TensorShapeProto`].
pub mod tensor_shape_proto {
    /// `TensorShapeProto.Dimension`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        /// The `value` oneof.
        #[prost(oneof = "dimension::Value", tags = "1, 2")]
        pub value: Option<dimension::Value>,
    }

    /// Nested types of [`Dimension`].
    pub mod dimension {
        /// `dim_value = 1` or `dim_param = 2`.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            /// A fixed size.
            #[prost(int64, tag = "1")]
            DimValue(i64),
            /// A symbolic size.
            #[prost(string, tag = "2")]
            DimParam(String),
        }
    }
}

/// Small constructors for building ONNX models in memory (used by tests and examples).
pub mod builder {
    use super::tensor_shape_proto::{dimension, Dimension};
    use super::*;

    /// A dimension of a declared input/output shape.
    #[derive(Clone, Debug)]
    pub enum Dim {
        /// Fixed size.
        Fixed(i64),
        /// Symbolic size (e.g. "batch").
        Param(&'static str),
    }

    /// A node with the given op type, inputs, outputs and attributes; the name is `op_type`
    /// followed by the first output name.
    pub fn node(op_type: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: format!("/{}_{}", op_type, outputs.first().copied().unwrap_or("")),
            op_type: op_type.to_string(),
            domain: String::new(),
            attribute: attrs,
        }
    }

    /// An integer attribute.
    pub fn attr_i(name: &str, v: i64) -> AttributeProto {
        AttributeProto { name: name.into(), r#type: attribute_type::INT, i: v, ..Default::default() }
    }

    /// A float attribute.
    pub fn attr_f(name: &str, v: f32) -> AttributeProto {
        AttributeProto { name: name.into(), r#type: attribute_type::FLOAT, f: v, ..Default::default() }
    }

    /// An integer-list attribute.
    pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto { name: name.into(), r#type: attribute_type::INTS, ints: v.to_vec(), ..Default::default() }
    }

    /// A float-list attribute.
    pub fn attr_floats(name: &str, v: &[f32]) -> AttributeProto {
        AttributeProto { name: name.into(), r#type: attribute_type::FLOATS, floats: v.to_vec(), ..Default::default() }
    }

    /// A string attribute.
    pub fn attr_s(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: attribute_type::STRING,
            s: v.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    /// A tensor attribute.
    pub fn attr_t(name: &str, t: TensorProto) -> AttributeProto {
        AttributeProto { name: name.into(), r#type: attribute_type::TENSOR, t: Some(t), ..Default::default() }
    }

    /// A float tensor stored in `float_data`.
    pub fn tensor_f32(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: data_type::FLOAT,
            float_data: data.to_vec(),
            ..Default::default()
        }
    }

    /// A float tensor stored in `raw_data` (little-endian).
    pub fn tensor_f32_raw(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: data_type::FLOAT,
            raw_data: raw.into(),
            ..Default::default()
        }
    }

    /// An int64 tensor stored in `int64_data`.
    pub fn tensor_i64(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: data_type::INT64,
            int64_data: data.to_vec(),
            ..Default::default()
        }
    }

    /// A float tensor value info with the given dims.
    pub fn value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
        let dim = dims
            .iter()
            .map(|d| Dimension {
                value: Some(match d {
                    Dim::Fixed(v) => dimension::Value::DimValue(*v),
                    Dim::Param(p) => dimension::Value::DimParam(p.to_string()),
                }),
            })
            .collect();
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: data_type::FLOAT,
                    shape: Some(TensorShapeProto { dim }),
                })),
            }),
        }
    }

    /// A float tensor value info with fixed dims.
    pub fn value_info_fixed(name: &str, dims: &[i64]) -> ValueInfoProto {
        let d: Vec<Dim> = dims.iter().map(|&v| Dim::Fixed(v)).collect();
        value_info(name, &d)
    }

    /// A graph.
    pub fn graph(
        nodes: Vec<NodeProto>,
        inputs: Vec<ValueInfoProto>,
        outputs: Vec<ValueInfoProto>,
        initializers: Vec<TensorProto>,
    ) -> GraphProto {
        GraphProto {
            node: nodes,
            name: "test".into(),
            initializer: initializers,
            input: inputs,
            output: outputs,
            value_info: vec![],
        }
    }

    /// A model at the given default-domain opset.
    pub fn model(graph: GraphProto, opset: i64) -> ModelProto {
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: opset }],
            producer_name: "signgd-test".into(),
            producer_version: String::new(),
            graph: Some(graph),
            functions: vec![],
        }
    }

    /// Encodes a model to bytes.
    pub fn encode(model: &ModelProto) -> Vec<u8> {
        prost::Message::encode_to_vec(model)
    }
}
