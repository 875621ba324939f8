//! Model graph: ONNX reader, intermediate representation and dense reference evaluator.
//!
//! * [`onnx`]: the protobuf messages of the ONNX subset that is read (plus test builders).
//! * [`graph`]: the canonical intermediate representation ([`Graph`], [`Op`]).
//! * [`tensor`]: constant data in its stored precision, shared between clones ([`Tensor`]).
//! * [`reader`]: ONNX → [`Graph`], with static shapes and constant folding.
//! * [`canonical`]: fusion of PyTorch's decomposed GELU / LayerNorm / Softmax into canonical ops.
//! * [`eval`]: the dense reference evaluator ([`Graph::evaluate`]).
//! * [`operators`]: the supported ONNX operators and what each becomes.

pub mod canonical;
pub mod error;
pub mod eval;
pub mod graph;
pub mod infer;
pub mod onnx;
pub mod operators;
pub mod reader;
pub mod tensor;

pub use error::ModelError;
pub use eval::Evaluator;
pub use graph::{Graph, Node, Op, Value, ValueId};
pub use reader::{read_onnx, read_onnx_bytes};
pub use tensor::Tensor;
