//! Model graph: ONNX reader, intermediate representation and dense reference evaluator.
