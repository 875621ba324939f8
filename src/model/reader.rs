//! ONNX → [`Graph`]: decoding, input-shape resolution, op translation to canonical form,
//! constant folding (including PyTorch's Shape/Gather/Unsqueeze/Concat/Reshape arithmetic),
//! canonicalisation and dead-node removal.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use ndarray::{ArrayD, ArrayViewD, CowArray, IxDyn};
use prost::bytes::{Buf, Bytes};
use prost::Message;

use super::canonical;
use super::error::ModelError;
use super::eval::eval_op;
use super::graph::{Graph, Op, ValueId};
use super::infer::{self, broadcast};
use super::onnx::tensor_shape_proto::dimension;
use super::onnx::{attribute_type, data_type, type_proto, AttributeProto, ModelProto, NodeProto, TensorProto};
use super::operators;
use super::tensor::Tensor;

/// Largest number of elements accepted for any tensor (initializer or inferred value).
pub const MAX_ELEMENTS: usize = 1 << 31;

/// Largest number of elements accepted over all tensors of a model together (initializers,
/// folded constants and inferred activations; each costs 8 bytes as an `f64` when evaluated).
pub const MAX_TOTAL_ELEMENTS: usize = 1 << 31;

/// Appended to a size-limit error: what a user with a genuine large model can do.
const LIMIT_HINT: &str = "; if the model is genuine, raise the limit with --max-model-elements";

/// Size limits of the reader, checked (with overflow-checked products) before anything of that
/// size is allocated: a forged tensor or a ConstantOfShape / Expand / Range / Where claiming a
/// huge output is refused with an error instead of exhausting memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest number of elements of any one tensor ([`MAX_ELEMENTS`] by default).
    pub max_elements: usize,
    /// Largest number of elements of all tensors together ([`MAX_TOTAL_ELEMENTS`] by default).
    pub max_total_elements: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits { max_elements: MAX_ELEMENTS, max_total_elements: MAX_TOTAL_ELEMENTS }
    }
}

/// Reads an ONNX file. `input_shape` overrides / resolves the input's dynamic dimensions
/// (without it a dynamic first dimension is taken as batch 1).
pub fn read_onnx(path: &Path, input_shape: Option<&[usize]>) -> Result<Graph, ModelError> {
    read_onnx_with_limits(path, input_shape, ReadLimits::default())
}

/// [`read_onnx`] with explicit size limits.
pub fn read_onnx_with_limits(
    path: &Path,
    input_shape: Option<&[usize]>,
    limits: ReadLimits,
) -> Result<Graph, ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io { path: path.display().to_string(), source })?;
    // Decoding a shared buffer makes every `raw_data` a slice of it rather than a copy.
    read_impl(Bytes::from(bytes), input_shape, &path.display().to_string(), path.parent(), limits)
}

/// Reads an ONNX model from bytes; `origin` names it in error messages. Tensors stored as
/// external data are refused (there is no model directory to look in); use [`read_onnx`].
pub fn read_onnx_bytes(bytes: &[u8], input_shape: Option<&[usize]>, origin: &str) -> Result<Graph, ModelError> {
    read_impl(bytes, input_shape, origin, None, ReadLimits::default())
}

/// [`read_onnx_bytes`] with explicit size limits.
pub fn read_onnx_bytes_with_limits(
    bytes: &[u8],
    input_shape: Option<&[usize]>,
    origin: &str,
    limits: ReadLimits,
) -> Result<Graph, ModelError> {
    read_impl(bytes, input_shape, origin, None, limits)
}

fn read_impl(
    bytes: impl Buf,
    input_shape: Option<&[usize]>,
    origin: &str,
    base_dir: Option<&Path>,
    limits: ReadLimits,
) -> Result<Graph, ModelError> {
    let decode = |detail: String| ModelError::Decode { origin: origin.into(), detail };
    if !bytes.has_remaining() {
        return Err(decode("the file is empty".into()));
    }
    let mut model = ModelProto::decode(bytes).map_err(|e| decode(format!("protobuf decoding failed: {e}")))?;
    let graph = match &mut model.graph {
        Some(g) if model.ir_version > 0 || !model.opset_import.is_empty() => g,
        _ => return Err(decode("no ONNX graph found in the file".into())),
    };
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(20);
    let mut r = Reader {
        origin,
        base_dir,
        opset,
        g: Graph::new(),
        names: HashMap::new(),
        ints: HashSet::new(),
        unusable: HashMap::new(),
        thresholds: HashMap::new(),
        functions: model.functions.iter().map(|f| f.name.clone()).collect(),
        limits,
        total: 0,
    };
    // Initializers, each released once it is a constant of the graph.
    let mut init_names = HashSet::new();
    for t in std::mem::take(&mut graph.initializer) {
        let (data, is_int) = r.tensor(&t)?;
        let id = r.g.add_constant(t.name.clone(), data);
        if is_int {
            r.ints.insert(id);
        }
        r.names.insert(t.name.clone(), id);
        init_names.insert(t.name);
    }
    // The activation input.
    let inputs: Vec<_> = graph.input.iter().filter(|i| !init_names.contains(&i.name)).collect();
    if inputs.len() != 1 {
        return Err(r.invalid(format!(
            "the model has {} non-initializer inputs ({}); only single-input models are supported",
            inputs.len(),
            inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    let inp = inputs[0];
    let shape = r.input_shape(inp, input_shape)?;
    r.charge(&shape).map_err(|d| r.invalid(format!("input '{}': {d}", inp.name)))?;
    let id = r.g.add_value(inp.name.clone(), shape);
    r.g.input = id;
    r.names.insert(inp.name.clone(), id);
    // Nodes, in a topological order.
    for n in r.sorted_nodes(&graph.node)? {
        r.node(n)?;
    }
    if graph.output.len() != 1 {
        return Err(r.invalid(format!(
            "the model has {} outputs; only single-output models are supported",
            graph.output.len()
        )));
    }
    let out_name = &graph.output[0].name;
    r.g.output = match r.names.get(out_name) {
        Some(&v) => v,
        None => return Err(r.invalid(format!("graph output '{out_name}' is not produced by any node"))),
    };
    let mut g = r.g;
    g.retain_live();
    canonical::canonicalize(&mut g);
    g.retain_live();
    g.validate().map_err(|e| ModelError::Invalid { origin: origin.into(), detail: e.to_string() })?;
    Ok(g)
}

struct Reader<'a> {
    origin: &'a str,
    base_dir: Option<&'a Path>,
    opset: i64,
    g: Graph,
    names: HashMap<String, ValueId>,
    ints: HashSet<ValueId>,
    unusable: HashMap<String, String>,
    /// Comparisons `x > t` of an activation with a constant, by output name: usable only as the
    /// condition of softplus's threshold pattern `Where(x > t, x, Softplus(x))`.
    thresholds: HashMap<String, (ValueId, f64)>,
    functions: HashSet<String>,
    limits: ReadLimits,
    /// Elements of all tensors created so far, charged against `limits.max_total_elements`.
    total: usize,
}

fn attr<'n>(n: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

impl Reader<'_> {
    /// Attribute `name` of `n` checked to be of type `expected` (an attribute written without a
    /// type, as some old exporters do, is read as the type asked for).
    fn typed_attr<'n>(
        &self,
        n: &'n NodeProto,
        name: &str,
        expected: i32,
    ) -> Result<Option<&'n AttributeProto>, ModelError> {
        match attr(n, name) {
            Some(a) if a.r#type != expected && a.r#type != attribute_type::UNDEFINED => Err(self.unsupported(
                n,
                format!(
                    "attribute '{name}' is {} where the operator takes {}; re-export the model or correct the attribute",
                    attribute_type_name(a.r#type),
                    attribute_type_name(expected)
                ),
            )),
            found => Ok(found),
        }
    }

    fn attr_i(&self, n: &NodeProto, name: &str, default: i64) -> Result<i64, ModelError> {
        Ok(self.typed_attr(n, name, attribute_type::INT)?.map_or(default, |a| a.i))
    }

    fn attr_f(&self, n: &NodeProto, name: &str, default: f64) -> Result<f64, ModelError> {
        Ok(self.typed_attr(n, name, attribute_type::FLOAT)?.map_or(default, |a| a.f as f64))
    }

    fn attr_ints(&self, n: &NodeProto, name: &str) -> Result<Option<Vec<i64>>, ModelError> {
        Ok(self.typed_attr(n, name, attribute_type::INTS)?.map(|a| a.ints.clone()))
    }

    fn attr_s(&self, n: &NodeProto, name: &str) -> Result<Option<String>, ModelError> {
        Ok(self.typed_attr(n, name, attribute_type::STRING)?.map(|a| String::from_utf8_lossy(&a.s).into_owned()))
    }
}

/// An attribute type as a message says it ("an INTS").
fn attribute_type_name(t: i32) -> String {
    match t {
        attribute_type::FLOAT => "a FLOAT".into(),
        attribute_type::INT => "an INT".into(),
        attribute_type::STRING => "a STRING".into(),
        attribute_type::TENSOR => "a TENSOR".into(),
        attribute_type::GRAPH => "a GRAPH".into(),
        attribute_type::FLOATS => "a FLOATS list".into(),
        attribute_type::INTS => "an INTS list".into(),
        other => format!("of type {other}"),
    }
}

fn f64_to_i64(v: f64) -> i64 {
    v as i64 // saturating; exact for |v| < 2^53
}

/// What to do about an unsupported operator: its rewrite where one converts, then every
/// supported operator.
fn unsupported_advice(op: &str) -> String {
    let rewrite = operators::rewrite(op).map(|r| format!("{r}; ")).unwrap_or_default();
    format!(
        "{rewrite}the supported operators are {} (`signgd ops` says how each converts)",
        operators::supported_list()
    )
}

fn half_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((bits >> 10) & 0x1f) as i32;
    let mant = (bits & 0x3ff) as f64;
    sign * match exp {
        0 => mant * 2f64.powi(-24),
        31 => {
            if mant == 0.0 {
                f64::INFINITY
            } else {
                f64::NAN
            }
        }
        e => (1.0 + mant / 1024.0) * 2f64.powi(e - 15),
    }
}

/// The little-endian elements of `raw` (of type `dt`, `width` bytes each) as `f64`.
fn raw_f64(dt: i32, raw: &[u8], width: usize) -> Vec<f64> {
    raw.chunks_exact(width)
        .map(|c| match dt {
            data_type::FLOAT => f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
            data_type::INT32 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
            data_type::UINT32 => u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
            data_type::DOUBLE => f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
            data_type::INT64 => i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64,
            data_type::UINT64 => u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64,
            data_type::INT8 => c[0] as i8 as f64,
            data_type::UINT8 => c[0] as f64,
            data_type::BOOL => (c[0] != 0) as u8 as f64,
            data_type::INT16 => i16::from_le_bytes([c[0], c[1]]) as f64,
            data_type::UINT16 => u16::from_le_bytes([c[0], c[1]]) as f64,
            data_type::FLOAT16 => half_to_f64(u16::from_le_bytes([c[0], c[1]])),
            _ => f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16) as f64,
        })
        .collect()
}

/// The elements of a tensor stored in its typed fields (no `raw_data`) as `f64`.
fn typed_f64(t: &TensorProto) -> Vec<f64> {
    match t.data_type {
        data_type::FLOAT => t.float_data.iter().map(|&v| v as f64).collect(),
        data_type::DOUBLE => t.double_data.clone(),
        data_type::INT64 => t.int64_data.iter().map(|&v| v as f64).collect(),
        data_type::UINT32 | data_type::UINT64 => t.uint64_data.iter().map(|&v| v as f64).collect(),
        data_type::FLOAT16 => t.int32_data.iter().map(|&v| half_to_f64(v as u16)).collect(),
        data_type::BFLOAT16 => t.int32_data.iter().map(|&v| f32::from_bits((v as u32 & 0xffff) << 16) as f64).collect(),
        data_type::BOOL => t.int32_data.iter().map(|&v| (v != 0) as u8 as f64).collect(),
        _ => t.int32_data.iter().map(|&v| v as f64).collect(),
    }
}

/// `data` as an array of `shape` (the tensor's `dims`), refusing a count that does not fit.
fn shaped<T>(shape: &[usize], dims: &[i64], data: Vec<T>) -> Result<ArrayD<T>, String> {
    let count: usize = shape.iter().product();
    if data.len() != count {
        return Err(format!("has {} values but dims {dims:?} need {count}", data.len()));
    }
    ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|e| e.to_string())
}

/// Folds `op` over constant inputs. Data movement of single-precision constants stays single
/// precision (it is exact); everything else is computed in double precision.
fn fold(op: &Op, inputs: &[&Tensor], shape: &[usize]) -> Result<Tensor, String> {
    let moves_data = match op {
        Op::Reshape | Op::Transpose { .. } | Op::Concat { .. } | Op::Slice { .. } | Op::Gather { .. } | Op::Expand => {
            true
        }
        Op::Pad { value, .. } => *value as f32 as f64 == *value,
        _ => false,
    };
    if moves_data && inputs.iter().all(|t| t.as_f32().is_some()) {
        let arrays: Vec<CowArray<f32, IxDyn>> = inputs.iter().map(|t| t.view::<f32>()).collect();
        let views: Vec<ArrayViewD<f32>> = arrays.iter().map(|a| a.view()).collect();
        return eval_op(op, &views, shape).map(Tensor::from);
    }
    let arrays: Vec<CowArray<f64, IxDyn>> = inputs.iter().map(|t| t.to_f64()).collect();
    let views: Vec<ArrayViewD<f64>> = arrays.iter().map(|a| a.view()).collect();
    eval_op(op, &views, shape).map(Tensor::from)
}

/// `t` rounded to single precision (as a cast to `FLOAT` does).
fn to_f32(t: Tensor) -> Tensor {
    match t {
        Tensor::F64(a) => Tensor::from(a.mapv(|v| v as f32)),
        single => single,
    }
}

impl<'a> Reader<'a> {
    fn invalid(&self, detail: String) -> ModelError {
        ModelError::Invalid { origin: self.origin.into(), detail }
    }

    fn unsupported(&self, n: &NodeProto, detail: impl Into<String>) -> ModelError {
        ModelError::Unsupported {
            origin: self.origin.into(),
            node: n.name.clone(),
            op_type: n.op_type.clone(),
            detail: detail.into(),
        }
    }

    /// Decodes a tensor: `FLOAT` data stays single precision, every other element type becomes
    /// `f64`. Returns whether its element type is an integer type.
    fn tensor(&mut self, t: &TensorProto) -> Result<(Tensor, bool), ModelError> {
        let origin = self.origin;
        let bad =
            |d: String| ModelError::Invalid { origin: origin.into(), detail: format!("tensor '{}': {d}", t.name) };
        let mut shape = Vec::with_capacity(t.dims.len());
        let mut count: usize = 1;
        for &d in &t.dims {
            if d < 0 {
                return Err(bad(format!("negative dimension in {:?}", t.dims)));
            }
            let d = usize::try_from(d).map_err(|_| bad("dimension too large".into()))?;
            count = count.checked_mul(d).filter(|&c| c <= self.limits.max_elements).ok_or_else(|| {
                bad(format!(
                    "dims {:?} exceed the limit of {} elements per tensor{LIMIT_HINT}",
                    t.dims, self.limits.max_elements
                ))
            })?;
            shape.push(d);
        }
        self.charge(&shape).map_err(bad)?;
        let external;
        let raw: &[u8] = if t.data_location == 1 {
            external = self.external(t, count)?;
            &external
        } else {
            &t.raw_data
        };
        let dt = t.data_type;
        let width = match dt {
            data_type::FLOAT | data_type::INT32 | data_type::UINT32 => 4,
            data_type::DOUBLE | data_type::INT64 | data_type::UINT64 => 8,
            data_type::INT8 | data_type::UINT8 | data_type::BOOL => 1,
            data_type::INT16 | data_type::UINT16 | data_type::FLOAT16 | data_type::BFLOAT16 => 2,
            _ => return Err(bad(format!("unsupported element type {} ({})", dt, data_type::name(dt)))),
        };
        if !raw.is_empty() && raw.len() != count * width {
            return Err(bad(format!(
                "raw data has {} bytes, dims {:?} of {} need {}",
                raw.len(),
                t.dims,
                data_type::name(dt),
                count * width
            )));
        }
        let tensor = if dt == data_type::FLOAT {
            let data: Vec<f32> = if raw.is_empty() {
                t.float_data.clone()
            } else {
                raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
            };
            Tensor::from(shaped(&shape, &t.dims, data).map_err(bad)?)
        } else if raw.is_empty() {
            Tensor::from(shaped(&shape, &t.dims, typed_f64(t)).map_err(bad)?)
        } else {
            Tensor::from(shaped(&shape, &t.dims, raw_f64(dt, raw, width)).map_err(bad)?)
        };
        Ok((tensor, !data_type::is_float(dt)))
    }

    /// Loads the bytes of an externally stored tensor, if the file is next to the model.
    fn external(&self, t: &TensorProto, count: usize) -> Result<Vec<u8>, ModelError> {
        let err =
            |detail: String| ModelError::ExternalData { origin: self.origin.into(), tensor: t.name.clone(), detail };
        let get = |k: &str| t.external_data.iter().find(|e| e.key == k).map(|e| e.value.clone());
        let location = get("location").ok_or_else(|| err("no location given".into()))?;
        let Some(dir) = self.base_dir else {
            return Err(err(format!("external data file {location} not found (the model was read from memory)")));
        };
        let rel = Path::new(&location);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(err(format!("external data location {location} escapes the model directory")));
        }
        let path = dir.join(rel);
        if !path.is_file() {
            return Err(err(format!("external data file {} not found", path.display())));
        }
        let cannot_read = |e: std::io::Error| err(format!("cannot read {}: {e}", path.display()));
        let mut file = std::fs::File::open(&path).map_err(cannot_read)?;
        let size = usize::try_from(file.metadata().map_err(cannot_read)?.len()).unwrap_or(usize::MAX);
        let offset: usize = get("offset").map_or(Ok(0), |s| s.parse()).map_err(|_| err("bad offset".into()))?;
        let length: usize = match get("length") {
            Some(s) => s.parse().map_err(|_| err("bad length".into()))?,
            None => size.saturating_sub(offset),
        };
        offset
            .checked_add(length)
            .filter(|&e| e <= size)
            .ok_or_else(|| err(format!("range {offset}+{length} lies outside {} ({size} bytes)", path.display())))?;
        let _ = count;
        let mut bytes = vec![0; length];
        file.seek(SeekFrom::Start(offset as u64)).and_then(|_| file.read_exact(&mut bytes)).map_err(cannot_read)?;
        Ok(bytes)
    }

    fn input_shape(
        &self,
        inp: &super::onnx::ValueInfoProto,
        given: Option<&[usize]>,
    ) -> Result<Vec<usize>, ModelError> {
        let tt = match inp.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(type_proto::Value::TensorType(t)) => t,
            None => return Err(self.invalid(format!("input '{}' is not a tensor", inp.name))),
        };
        if tt.elem_type != 0 && !data_type::is_float(tt.elem_type) {
            return Err(self.invalid(format!(
                "input '{}' has element type {}; only floating-point inputs are supported",
                inp.name,
                data_type::name(tt.elem_type)
            )));
        }
        let dims: Vec<(Option<usize>, String)> = match &tt.shape {
            Some(s) => s
                .dim
                .iter()
                .map(|d| match &d.value {
                    Some(dimension::Value::DimValue(v)) if *v > 0 => (usize::try_from(*v).ok(), v.to_string()),
                    Some(dimension::Value::DimParam(p)) => (None, p.clone()),
                    _ => (None, "?".into()),
                })
                .collect(),
            None => match given {
                Some(g) => g.iter().map(|&d| (Some(d), d.to_string())).collect(),
                None => {
                    return Err(self.invalid(format!("input '{}' has no declared shape; export the model with its input shape, or give the shape when reading it (`input_shape` of `read_onnx`)", inp.name)))
                }
            },
        };
        let rendered = format!("[{}]", dims.iter().map(|d| d.1.clone()).collect::<Vec<_>>().join(", "));
        if let Some(g) = given {
            let mismatch = g.len() != dims.len()
                || g.iter().any(|&d| d == 0 || d > self.limits.max_elements)
                || g.iter().zip(&dims).any(|(&a, (b, _))| b.is_some_and(|b| b != a));
            if mismatch {
                return Err(ModelError::InputShape {
                    origin: self.origin.into(),
                    input: inp.name.clone(),
                    expected: rendered,
                    given: g.to_vec(),
                });
            }
            self.check_size(g).map_err(|d| self.invalid(format!("input '{}': {d}", inp.name)))?;
            return Ok(g.to_vec());
        }
        let mut shape = Vec::with_capacity(dims.len());
        for (i, (d, p)) in dims.iter().enumerate() {
            match d {
                Some(v) => shape.push(*v),
                None if i == 0 => shape.push(1),
                None => {
                    return Err(ModelError::DynamicDim {
                        origin: self.origin.into(),
                        input: inp.name.clone(),
                        index: i,
                        param: p.clone(),
                    })
                }
            }
        }
        self.check_size(&shape).map_err(|d| self.invalid(format!("input '{}': {d}", inp.name)))?;
        Ok(shape)
    }

    fn check_size(&self, shape: &[usize]) -> Result<usize, String> {
        match shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b)) {
            Some(c) if c <= self.limits.max_elements => Ok(c),
            _ => Err(format!(
                "shape {shape:?} exceeds the limit of {} elements per tensor{LIMIT_HINT}",
                self.limits.max_elements
            )),
        }
    }

    /// Checks a new tensor of `shape` against both limits and adds it to the running total;
    /// called before the tensor is allocated.
    fn charge(&mut self, shape: &[usize]) -> Result<(), String> {
        let count = self.check_size(shape)?;
        match self.total.checked_add(count) {
            Some(t) if t <= self.limits.max_total_elements => {
                self.total = t;
                Ok(())
            }
            _ => Err(format!(
                "shape {shape:?} would bring the model's tensors to more than the limit of {} elements in total ({} already){LIMIT_HINT}",
                self.limits.max_total_elements, self.total
            )),
        }
    }

    /// Orders nodes so that every input is defined before use (stable for sorted graphs).
    fn sorted_nodes<'n>(&self, nodes: &'n [NodeProto]) -> Result<Vec<&'n NodeProto>, ModelError> {
        let mut known: HashSet<&str> = self.names.keys().map(|s| s.as_str()).collect();
        known.insert("");
        let mut done = vec![false; nodes.len()];
        let mut out = Vec::with_capacity(nodes.len());
        let mut start = 0;
        while out.len() < nodes.len() {
            let mut progressed = false;
            for i in start..nodes.len() {
                if !done[i] && nodes[i].input.iter().all(|x| known.contains(x.as_str())) {
                    done[i] = true;
                    progressed = true;
                    out.push(&nodes[i]);
                    known.extend(nodes[i].output.iter().map(|s| s.as_str()));
                }
            }
            while start < nodes.len() && done[start] {
                start += 1;
            }
            if !progressed {
                let n = &nodes[start];
                let missing = n.input.iter().find(|x| !known.contains(x.as_str())).cloned().unwrap_or_default();
                return Err(self.invalid(format!(
                    "node '{}' ({}) reads '{}', which no node, initializer or input defines (or the graph has a cycle)",
                    n.name, n.op_type, missing
                )));
            }
        }
        Ok(out)
    }

    fn input(&self, n: &NodeProto, i: usize) -> Result<Option<ValueId>, ModelError> {
        let Some(name) = n.input.get(i) else {
            return Ok(None);
        };
        if name.is_empty() {
            return Ok(None);
        }
        if let Some(reason) = self.unusable.get(name) {
            return Err(self.unsupported(n, format!("input '{name}' is {reason}, which is not supported")));
        }
        self.names
            .get(name)
            .copied()
            .map(Some)
            .ok_or_else(|| self.invalid(format!("node '{}' ({}) reads undefined value '{name}'", n.name, n.op_type)))
    }

    /// The inputs of a variadic node (Max, Min), empty names skipped: the first and the rest.
    fn variadic_inputs(&self, n: &NodeProto) -> Result<(ValueId, Vec<ValueId>), ModelError> {
        let mut ins = Vec::with_capacity(n.input.len());
        for i in 0..n.input.len() {
            ins.extend(self.input(n, i)?);
        }
        if ins.is_empty() {
            return Err(self.unsupported(n, format!("{} needs inputs", n.op_type)));
        }
        let first = ins.remove(0);
        Ok((first, ins))
    }

    fn req(&self, n: &NodeProto, i: usize) -> Result<ValueId, ModelError> {
        self.input(n, i)?.ok_or_else(|| self.unsupported(n, format!("required input {i} is missing")))
    }

    fn cst(&self, n: &NodeProto, i: usize, what: &str) -> Result<Option<Tensor>, ModelError> {
        match self.input(n, i)? {
            None => Ok(None),
            Some(v) => match self.g.constant(v) {
                Some(c) => Ok(Some(c.clone())),
                None => Err(self.unsupported(
                    n,
                    format!("input {i} ({what}) must be a constant, but it depends on the model input; only statically computable {what} is supported"),
                )),
            },
        }
    }

    fn cst_ints(&self, n: &NodeProto, i: usize, what: &str) -> Result<Option<Vec<i64>>, ModelError> {
        Ok(self.cst(n, i, what)?.map(|a| a.iter_f64().map(f64_to_i64).collect()))
    }

    fn shape(&self, v: ValueId) -> &[usize] {
        &self.g.values[v].shape
    }

    fn axis(&self, n: &NodeProto, a: i64, rank: usize) -> Result<usize, ModelError> {
        let r = rank as i64;
        if a < -r || a >= r {
            return Err(self.unsupported(n, format!("axis {a} is out of range for rank {rank}")));
        }
        Ok(if a < 0 { (a + r) as usize } else { a as usize })
    }

    fn out_name(&self, n: &NodeProto) -> Result<String, ModelError> {
        n.output
            .first()
            .filter(|s| !s.is_empty())
            .cloned()
            .ok_or_else(|| self.invalid(format!("node '{}' ({}) has no output", n.name, n.op_type)))
    }

    fn finish(&mut self, n: &NodeProto, v: ValueId) -> Result<(), ModelError> {
        let name = self.out_name(n)?;
        self.names.insert(name, v);
        for extra in n.output.iter().skip(1).filter(|s| !s.is_empty()) {
            self.unusable.insert(extra.clone(), format!("a secondary output of node '{}' ({})", n.name, n.op_type));
        }
        Ok(())
    }

    fn bind_const(&mut self, n: &NodeProto, a: impl Into<Tensor>, is_int: bool) -> Result<(), ModelError> {
        let name = self.out_name(n)?;
        let a = a.into();
        let a = if is_int { Tensor::from(a.to_f64().mapv(f64::trunc)) } else { a };
        let v = self.g.add_constant(name, a);
        if is_int {
            self.ints.insert(v);
        }
        self.finish(n, v)
    }

    /// Adds `op` (folding it when all inputs are constants) and returns the output value.
    fn add(
        &mut self,
        n: &NodeProto,
        name: &str,
        op: Op,
        inputs: Vec<ValueId>,
        hint: Option<Vec<usize>>,
    ) -> Result<ValueId, ModelError> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|&i| self.shape(i)).collect();
        let shape = infer::output_shape(&op, &shapes, hint.as_deref()).map_err(|d| self.unsupported(n, d))?;
        self.charge(&shape).map_err(|d| self.unsupported(n, d))?;
        if inputs.iter().all(|&i| self.g.is_constant(i)) {
            let arrs: Vec<&Tensor> = inputs.iter().map(|&i| self.g.constant(i).expect("constant")).collect();
            let out =
                fold(&op, &arrs, &shape).map_err(|d| self.unsupported(n, format!("constant folding failed: {d}")))?;
            let data_int = match op {
                Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Max | Op::Neg | Op::Abs => {
                    inputs.iter().all(|i| self.ints.contains(i))
                }
                Op::Reshape
                | Op::Transpose { .. }
                | Op::Concat { .. }
                | Op::Slice { .. }
                | Op::Gather { .. }
                | Op::Expand
                | Op::Pad { .. } => inputs.iter().all(|i| self.ints.contains(i)),
                _ => false,
            };
            let out = if data_int { Tensor::from(out.to_f64().mapv(f64::trunc)) } else { out };
            let v = self.g.add_constant(name.to_string(), out);
            if data_int {
                self.ints.insert(v);
            }
            return Ok(v);
        }
        let v = self.g.add_value(name.to_string(), shape);
        self.g.add_node(if n.name.is_empty() { name.to_string() } else { n.name.clone() }, op, inputs, v);
        Ok(v)
    }

    /// `min(y, hi)` as `−max(−y, −hi)`: the SNN has max neurons, and negation is exact.
    fn min(&mut self, n: &NodeProto, name: &str, y: ValueId, hi: f64) -> Result<ValueId, ModelError> {
        let negated = self.add(n, &format!("{name}/neg"), Op::Neg, vec![y], None)?;
        let bound = self.g.add_constant(format!("{name}/neg_max"), Tensor::from(ndarray::arr0(-hi).into_dyn()));
        let max = self.add(n, &format!("{name}/max_neg"), Op::Max, vec![negated, bound], None)?;
        self.add(n, name, Op::Neg, vec![max], None)
    }

    fn emit(
        &mut self,
        n: &NodeProto,
        op: Op,
        inputs: Vec<ValueId>,
        hint: Option<Vec<usize>>,
    ) -> Result<(), ModelError> {
        let name = self.out_name(n)?;
        let v = self.add(n, &name, op, inputs, hint)?;
        self.finish(n, v)
    }

    fn pads2d(
        &self,
        n: &NodeProto,
        x: &[usize],
        kernel: [usize; 2],
        strides: [usize; 2],
        dil: [usize; 2],
    ) -> Result<[usize; 4], ModelError> {
        let auto = self.attr_s(n, "auto_pad")?.unwrap_or_else(|| "NOTSET".into());
        match auto.as_str() {
            "NOTSET" | "" => {
                let p = self.attr_ints(n, "pads")?.unwrap_or_else(|| vec![0; 4]);
                if p.len() != 4 || p.iter().any(|&v| !(0..=1 << 20).contains(&v)) {
                    return Err(self.unsupported(n, format!("pads {p:?} must be 4 non-negative values for a 2-D op")));
                }
                Ok([p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize])
            }
            "VALID" => Ok([0; 4]),
            "SAME_UPPER" | "SAME_LOWER" => {
                let mut pads = [0; 4];
                for i in 0..2 {
                    let inp = x[2 + i];
                    let out = inp.div_ceil(strides[i]);
                    let eff = dil[i] * kernel[i].saturating_sub(1) + 1;
                    let total = (out.saturating_sub(1) * strides[i] + eff).saturating_sub(inp);
                    let small = total / 2;
                    let (b, e) = if auto == "SAME_UPPER" { (small, total - small) } else { (total - small, small) };
                    pads[i] = b;
                    pads[i + 2] = e;
                }
                Ok(pads)
            }
            other => Err(self.unsupported(n, format!("auto_pad '{other}' is not supported"))),
        }
    }

    fn pair(&self, n: &NodeProto, name: &str, default: usize) -> Result<[usize; 2], ModelError> {
        match self.attr_ints(n, name)? {
            None => Ok([default; 2]),
            Some(v) if v.len() == 2 && v.iter().all(|&x| (1..=1 << 20).contains(&x)) => {
                Ok([v[0] as usize, v[1] as usize])
            }
            Some(v) => {
                Err(self.unsupported(n, format!("{name} {v:?} must be two positive values (only 2-D is supported)")))
            }
        }
    }

    fn node(&mut self, n: &NodeProto) -> Result<(), ModelError> {
        if !(n.domain.is_empty() || n.domain == "ai.onnx") {
            let note = if self.functions.contains(&n.op_type) {
                format!(" (a model-local function in domain '{}'; re-export with the functions inlined)", n.domain)
            } else {
                format!(" in domain '{}'", n.domain)
            };
            return Err(ModelError::UnknownOp {
                origin: self.origin.into(),
                node: n.name.clone(),
                op_type: n.op_type.clone(),
                domain_note: note,
                advice: unsupported_advice(&n.op_type),
            });
        }
        let op = n.op_type.as_str();
        match op {
            "Identity" => {
                let x = self.req(n, 0)?;
                self.finish(n, x)
            }
            "Dropout" => {
                let x = self.req(n, 0)?;
                let training = if self.opset < 12 {
                    self.opset < 7 && self.typed_attr(n, "is_test", attribute_type::INT)?.is_some_and(|a| a.i == 0)
                } else {
                    let mode = self.cst(n, 2, "training_mode")?;
                    mode.is_some_and(|m| m.iter_f64().any(|v| v != 0.0))
                };
                if training {
                    return Err(self.unsupported(
                        n,
                        "Dropout in training mode drops activations at random; export the model in eval() mode (model.eval() before torch.onnx.export, no training=TrainingMode.TRAINING)",
                    ));
                }
                self.finish(n, x)
            }
            "Clip" => {
                let x = self.req(n, 0)?;
                let bound = |i: usize, attr: &str, what: &str| -> Result<Option<f64>, ModelError> {
                    let value = if self.opset < 11 {
                        self.typed_attr(n, attr, attribute_type::FLOAT)?.map(|a| a.f as f64)
                    } else {
                        match self.cst(n, i, what)? {
                            None => None,
                            Some(t) if t.len() == 1 => t.iter_f64().next(),
                            Some(t) => {
                                return Err(
                                    self.unsupported(n, format!("{what} has {} elements; give a scalar", t.len()))
                                )
                            }
                        }
                    };
                    Ok(value.filter(|v| v.is_finite()))
                };
                let (lo, hi) = (bound(1, "min", "the lower bound")?, bound(2, "max", "the upper bound")?);
                if let (Some(lo), Some(hi)) = (lo, hi) {
                    if lo > hi {
                        return Err(self.unsupported(n, format!("lower bound {lo} exceeds upper bound {hi}")));
                    }
                }
                let name = self.out_name(n)?;
                let mut y = x;
                if let Some(lo) = lo {
                    y = if lo == 0.0 {
                        self.add(n, &format!("{name}/relu"), Op::Relu, vec![y], None)?
                    } else {
                        let lo = self.g.add_constant(format!("{name}/min"), Tensor::from(ndarray::arr0(lo).into_dyn()));
                        self.add(n, &format!("{name}/max_min"), Op::Max, vec![y, lo], None)?
                    };
                }
                if let Some(hi) = hi {
                    y = self.min(n, &name, y, hi)?;
                }
                self.finish(n, y)
            }
            "Min" => {
                let (first, rest) = self.variadic_inputs(n)?;
                let name = self.out_name(n)?;
                let mut acc = self.add(n, &format!("{name}/neg0"), Op::Neg, vec![first], None)?;
                for (i, &b) in rest.iter().enumerate() {
                    let negated = self.add(n, &format!("{name}/neg{}", i + 1), Op::Neg, vec![b], None)?;
                    acc = self.add(n, &format!("{name}/max{i}"), Op::Max, vec![acc, negated], None)?;
                }
                let out = self.add(n, &name, Op::Neg, vec![acc], None)?;
                self.finish(n, out)
            }
            "HardSigmoid" => {
                let x = self.req(n, 0)?;
                let (alpha, beta) = (self.attr_f(n, "alpha", 0.2)?, self.attr_f(n, "beta", 0.5)?);
                self.emit(n, Op::HardSigmoid { alpha, beta }, vec![x], None)
            }
            "HardSwish" | "Softplus" => {
                let x = self.req(n, 0)?;
                self.emit(n, if op == "HardSwish" { Op::HardSwish } else { Op::Softplus }, vec![x], None)
            }
            "Cast" | "CastLike" => {
                let x = self.req(n, 0)?;
                let to_int = if op == "Cast" {
                    let to = self.attr_i(n, "to", data_type::FLOAT as i64)? as i32;
                    if to == data_type::STRING {
                        return Err(self.unsupported(n, "cast to string is not supported"));
                    }
                    (!data_type::is_float(to)).then_some(to)
                } else {
                    let t = self.req(n, 1)?;
                    self.ints.contains(&t).then_some(data_type::INT64)
                };
                if self.g.is_constant(x) {
                    let s = self.shape(x).to_vec();
                    self.charge(&s).map_err(|d| self.unsupported(n, d))?;
                }
                match (self.g.constant(x).cloned(), to_int) {
                    (Some(c), Some(t)) => {
                        let c = if t == data_type::BOOL { c.to_f64().mapv(|v| (v != 0.0) as u8 as f64).into() } else { c };
                        self.bind_const(n, c, true)
                    }
                    (Some(c), None) => {
                        let to = self.attr_i(n, "to", 1)? as i32;
                        let c = if op == "Cast" && to == data_type::FLOAT { to_f32(c) } else { c };
                        self.bind_const(n, c, false)
                    }
                    (None, None) => self.finish(n, x),
                    (None, Some(t)) => Err(self.unsupported(
                        n,
                        format!("casting a model activation to {} is not supported; only casts to float types can be removed", data_type::name(t)),
                    )),
                }
            }
            "Constant" => {
                let (arr, is_int) = if let Some(a) = self.typed_attr(n, "value", attribute_type::TENSOR)? {
                    let t = a.t.as_ref().ok_or_else(|| self.unsupported(n, "attribute 'value' has no tensor"))?;
                    self.tensor(t)?
                } else if let Some(a) = self.typed_attr(n, "value_float", attribute_type::FLOAT)? {
                    (ArrayD::from_elem(IxDyn(&[]), a.f as f64).into(), false)
                } else if let Some(a) = self.typed_attr(n, "value_floats", attribute_type::FLOATS)? {
                    (
                        ArrayD::from_shape_vec(IxDyn(&[a.floats.len()]), a.floats.iter().map(|&v| v as f64).collect())
                            .expect("1-D")
                            .into(),
                        false,
                    )
                } else if let Some(a) = self.typed_attr(n, "value_int", attribute_type::INT)? {
                    (ArrayD::from_elem(IxDyn(&[]), a.i as f64).into(), true)
                } else if let Some(a) = self.typed_attr(n, "value_ints", attribute_type::INTS)? {
                    (
                        ArrayD::from_shape_vec(IxDyn(&[a.ints.len()]), a.ints.iter().map(|&v| v as f64).collect())
                            .expect("1-D")
                            .into(),
                        true,
                    )
                } else {
                    return Err(self.unsupported(
                        n,
                        "only the value, value_float(s) and value_int(s) forms of Constant are supported",
                    ));
                };
                self.bind_const(n, arr, is_int)
            }
            "Shape" | "Size" => {
                let x = self.req(n, 0)?;
                let s: Vec<f64> = self.shape(x).iter().map(|&d| d as f64).collect();
                if op == "Size" {
                    return self.bind_const(n, ArrayD::from_elem(IxDyn(&[]), s.iter().product::<f64>()), true);
                }
                let r = s.len() as i64;
                let norm = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
                let start = norm(self.attr_i(n, "start", 0)?);
                let end = norm(self.attr_i(n, "end", r)?).max(start);
                let part = s[start..end].to_vec();
                self.bind_const(n, ArrayD::from_shape_vec(IxDyn(&[part.len()]), part).expect("1-D"), true)
            }
            "ConstantOfShape" => {
                let shape = self.cst_ints(n, 0, "shape")?.unwrap_or_default();
                if shape.iter().any(|&d| d < 0) {
                    return Err(self.unsupported(n, format!("negative dimension in {shape:?}")));
                }
                let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
                self.charge(&shape).map_err(|d| self.unsupported(n, d))?;
                let (val, is_int) = match attr(n, "value").and_then(|a| a.t.as_ref()) {
                    Some(t) => {
                        let (a, i) = self.tensor(t)?;
                        (a.iter_f64().next().unwrap_or(0.0), i)
                    }
                    None => (0.0, false),
                };
                self.bind_const(n, ArrayD::from_elem(IxDyn(&shape), val), is_int)
            }
            "Range" => {
                let get = |i: usize, w: &str| -> Result<f64, ModelError> {
                    let a = self.cst(n, i, w)?.ok_or_else(|| self.unsupported(n, format!("missing {w}")))?;
                    a.iter_f64().next().ok_or_else(|| self.unsupported(n, format!("empty {w}")))
                };
                let (s, l, d) = (get(0, "start")?, get(1, "limit")?, get(2, "delta")?);
                let count = if d == 0.0 { f64::NAN } else { ((l - s) / d).ceil().max(0.0) };
                if !(count.is_finite() && count <= self.limits.max_elements as f64) {
                    return Err(self.unsupported(
                        n,
                        format!(
                            "invalid range {s}..{l} step {d}: the output must have a finite number of at most {} elements",
                            self.limits.max_elements
                        ),
                    ));
                }
                self.charge(&[count as usize]).map_err(|d| self.unsupported(n, d))?;
                let v: Vec<f64> = (0..count as usize).map(|i| s + i as f64 * d).collect();
                let is_int = n.input.first().and_then(|s| self.names.get(s)).is_some_and(|v| self.ints.contains(v));
                self.bind_const(n, ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).expect("1-D"), is_int)
            }
            "Greater" if !self.input(n, 0)?.is_some_and(|v| self.g.is_constant(v)) => {
                let x = self.req(n, 0)?;
                let t = match self.cst(n, 1, "threshold")? {
                    Some(t) if t.len() == 1 => t.iter_f64().next().unwrap_or(f64::NAN),
                    _ => {
                        return Err(self.unsupported(
                            n,
                            "a comparison of activations with anything but a constant scalar does not convert",
                        ))
                    }
                };
                let name = self.out_name(n)?;
                self.thresholds.insert(name.clone(), (x, t));
                self.unusable.insert(
                    name,
                    format!("the comparison of activations in node '{}' (Greater), which converts only as the condition of softplus's threshold pattern Where(x > t, x, Softplus(x))", n.name),
                );
                Ok(())
            }
            "Where" if n.input.first().is_some_and(|c| self.thresholds.contains_key(c)) => {
                let (x, t) = self.thresholds[&n.input[0]];
                let (then, otherwise) = (self.req(n, 1)?, self.req(n, 2)?);
                let softplus_of_x = self
                    .g
                    .nodes
                    .iter()
                    .any(|node| node.output == otherwise && matches!(node.op, Op::Softplus) && node.inputs == [x]);
                // Above t ≥ 15, ln(1 + eˣ) − x < 3.1e-7: PyTorch's shortcut, not a different function.
                if then != x || !softplus_of_x || t < 15.0 {
                    return Err(self.unsupported(
                        n,
                        "a Where on a comparison of activations converts only as softplus's threshold pattern Where(x > t, x, Softplus(x)) with t ≥ 15",
                    ));
                }
                self.finish(n, otherwise)
            }
            "Equal" | "Not" | "Where" | "Greater" => {
                let k = if op == "Where" {
                    3
                } else if op == "Not" {
                    1
                } else {
                    2
                };
                let mut tensors = Vec::new();
                for i in 0..k {
                    tensors.push(self.cst(n, i, "data")?.ok_or_else(|| self.unsupported(n, "missing input"))?);
                }
                let arrs: Vec<CowArray<f64, IxDyn>> = tensors.iter().map(Tensor::to_f64).collect();
                let out_shape = arrs[1..]
                    .iter()
                    .try_fold(arrs[0].shape().to_vec(), |s, a| broadcast(&s, a.shape()))
                    .map_err(|d| self.unsupported(n, d))?;
                self.charge(&out_shape).map_err(|d| self.unsupported(n, d))?;
                let out = match op {
                    "Not" => arrs[0].mapv(|v| (v == 0.0) as u8 as f64),
                    "Greater" => eval_op(&Op::Sub, &[arrs[0].view(), arrs[1].view()], &[])
                        .map_err(|d| self.unsupported(n, d))?
                        .mapv(|v| (v > 0.0) as u8 as f64),
                    "Equal" => eval_op(&Op::Sub, &[arrs[0].view(), arrs[1].view()], &[])
                        .map_err(|d| self.unsupported(n, d))?
                        .mapv(|v| (v == 0.0) as u8 as f64),
                    _ => {
                        let shape = broadcast(arrs[0].shape(), arrs[1].shape())
                            .and_then(|s| broadcast(&s, arrs[2].shape()))
                            .map_err(|d| self.unsupported(n, d))?;
                        let sh = IxDyn(&shape);
                        let (c, a, b) =
                            (arrs[0].broadcast(sh.clone()), arrs[1].broadcast(sh.clone()), arrs[2].broadcast(sh));
                        let (Some(c), Some(a), Some(b)) = (c, a, b) else {
                            return Err(self.unsupported(n, "broadcast failed"));
                        };
                        ndarray::Zip::from(&c).and(&a).and(&b).map_collect(|&c, &a, &b| if c != 0.0 { a } else { b })
                    }
                };
                let is_int = op != "Where"
                    || [1, 2].iter().all(|&i| {
                        n.input.get(i).and_then(|s| self.names.get(s)).is_some_and(|v| self.ints.contains(v))
                    });
                self.bind_const(n, out, is_int)
            }
            "Add" | "Sub" | "Mul" | "Div" => {
                let (a, b) = (self.req(n, 0)?, self.req(n, 1)?);
                let o = match op {
                    "Add" => Op::Add,
                    "Sub" => Op::Sub,
                    "Mul" => Op::Mul,
                    _ => Op::Div,
                };
                self.emit(n, o, vec![a, b], None)
            }
            "Neg" | "Relu" | "Sigmoid" | "Tanh" | "Exp" | "Abs" | "Sqrt" | "Erf" => {
                let x = self.req(n, 0)?;
                let o = match op {
                    "Neg" => Op::Neg,
                    "Relu" => Op::Relu,
                    "Sigmoid" => Op::Sigmoid,
                    "Tanh" => Op::Tanh,
                    "Exp" => Op::Exp,
                    "Abs" => Op::Abs,
                    "Sqrt" => Op::Sqrt,
                    _ => Op::Erf,
                };
                self.emit(n, o, vec![x], None)
            }
            "LeakyRelu" => {
                let x = self.req(n, 0)?;
                self.emit(n, Op::LeakyRelu { alpha: self.attr_f(n, "alpha", 0.01)? }, vec![x], None)
            }
            "Gelu" => {
                let x = self.req(n, 0)?;
                let tanh = match self.attr_s(n, "approximate")?.as_deref() {
                    None | Some("none") => false,
                    Some("tanh") => true,
                    Some(o) => {
                        return Err(self.unsupported(n, format!("approximate='{o}' is not supported (none or tanh)")))
                    }
                };
                self.emit(n, Op::Gelu { tanh }, vec![x], None)
            }
            "Pow" => {
                let (x, e) = (self.req(n, 0)?, self.req(n, 1)?);
                let ec = self.cst(n, 1, "exponent")?.expect("required");
                if !self.g.is_constant(x)
                    && ec.len() == 1
                    && ec.iter_f64().next() == Some(2.0)
                    && broadcast(self.shape(x), ec.shape()).ok().as_deref() == Some(self.shape(x))
                {
                    return self.emit(n, Op::Square, vec![x], None);
                }
                self.emit(n, Op::Pow, vec![x, e], None)
            }
            "Max" => {
                let (first, rest) = self.variadic_inputs(n)?;
                let name = self.out_name(n)?;
                let mut acc = first;
                for (i, &b) in rest.iter().enumerate() {
                    let nm = if i + 1 == rest.len() { name.clone() } else { format!("{name}/max{i}") };
                    acc = self.add(n, &nm, Op::Max, vec![acc, b], None)?;
                }
                self.finish(n, acc)
            }
            "Softmax" => {
                let x = self.req(n, 0)?;
                let r = self.shape(x).len();
                let default = if self.opset < 13 { 1 } else { -1 };
                let axis = self.axis(n, self.attr_i(n, "axis", default)?, r)?;
                if self.opset < 13 && axis + 1 != r {
                    return Err(self.unsupported(n, "Softmax before opset 13 flattens to 2-D; only the last axis is supported, re-export with opset >= 13"));
                }
                self.emit(n, Op::Softmax { axis }, vec![x], None)
            }
            "ReduceMean" | "ReduceSum" => {
                let x = self.req(n, 0)?;
                let r = self.shape(x).len();
                let axes = match self.attr_ints(n, "axes")? {
                    Some(a) => a,
                    None => self.cst_ints(n, 1, "axes")?.unwrap_or_default(),
                };
                let keepdims = self.attr_i(n, "keepdims", 1)? != 0;
                if axes.is_empty() && self.attr_i(n, "noop_with_empty_axes", 0)? != 0 {
                    return self.finish(n, x);
                }
                let mut ax: Vec<usize> = if axes.is_empty() {
                    (0..r).collect()
                } else {
                    axes.iter().map(|&a| self.axis(n, a, r)).collect::<Result<_, _>>()?
                };
                ax.sort_unstable();
                ax.dedup();
                let o = if op == "ReduceMean" {
                    Op::ReduceMean { axes: ax, keepdims }
                } else {
                    Op::ReduceSum { axes: ax, keepdims }
                };
                self.emit(n, o, vec![x], None)
            }
            "LayerNormalization" => {
                let x = self.req(n, 0)?;
                let s = self.req(n, 1)?;
                let b = self.input(n, 2)?;
                let axis = self.axis(n, self.attr_i(n, "axis", -1)?, self.shape(x).len())?;
                let mut ins = vec![x, s];
                ins.extend(b);
                self.emit(n, Op::LayerNorm { axis, epsilon: self.attr_f(n, "epsilon", 1e-5)? }, ins, None)
            }
            "BatchNormalization" => {
                if self.attr_i(n, "training_mode", 0)? != 0 {
                    return Err(
                        self.unsupported(n, "training_mode=1 is not supported; export the model in eval() mode")
                    );
                }
                let ins = (0..5).map(|i| self.req(n, i)).collect::<Result<Vec<_>, _>>()?;
                for &p in &ins[1..] {
                    if !self.g.is_constant(p) {
                        return Err(self.unsupported(n, "scale, bias, mean and variance must be constants"));
                    }
                }
                self.emit(n, Op::BatchNorm { epsilon: self.attr_f(n, "epsilon", 1e-5)? }, ins, None)
            }
            "Conv" => {
                let x = self.req(n, 0)?;
                let w = self.req(n, 1)?;
                let b = self.input(n, 2)?;
                let (xs, ws) = (self.shape(x).to_vec(), self.shape(w).to_vec());
                if xs.len() != 4 || ws.len() != 4 {
                    return Err(
                        self.unsupported(n, format!("only 2-D convolution is supported (input {xs:?}, weight {ws:?})"))
                    );
                }
                if !self.g.is_constant(w) || b.is_some_and(|b| !self.g.is_constant(b)) {
                    return Err(self.unsupported(n, "the weight and bias must be constants"));
                }
                if let Some(k) = self.attr_ints(n, "kernel_shape")? {
                    if k != [ws[2] as i64, ws[3] as i64] {
                        return Err(
                            self.unsupported(n, format!("kernel_shape {k:?} disagrees with the weight shape {ws:?}"))
                        );
                    }
                }
                let strides = self.pair(n, "strides", 1)?;
                let dilations = self.pair(n, "dilations", 1)?;
                let pads = self.pads2d(n, &xs, [ws[2], ws[3]], strides, dilations)?;
                let groups = self.attr_i(n, "group", 1)?;
                if groups < 1 {
                    return Err(self.unsupported(n, format!("group {groups} must be positive")));
                }
                let mut ins = vec![x, w];
                ins.extend(b);
                self.emit(n, Op::Conv { strides, pads, dilations, groups: groups as usize }, ins, None)
            }
            "MaxPool" | "AveragePool" => {
                let x = self.req(n, 0)?;
                let xs = self.shape(x).to_vec();
                if xs.len() != 4 {
                    return Err(
                        self.unsupported(n, format!("only 2-D pooling on [N,C,H,W] is supported, input is {xs:?}"))
                    );
                }
                let kernel = match self.attr_ints(n, "kernel_shape")? {
                    Some(k) if k.len() == 2 && k.iter().all(|&v| (1..=1 << 20).contains(&v)) => {
                        [k[0] as usize, k[1] as usize]
                    }
                    k => return Err(self.unsupported(n, format!("kernel_shape {k:?} must be two positive values"))),
                };
                let strides = self.pair(n, "strides", 1)?;
                let dilations = self.pair(n, "dilations", 1)?;
                let pads = self.pads2d(n, &xs, kernel, strides, dilations)?;
                let ceil_mode = self.attr_i(n, "ceil_mode", 0)? != 0;
                if op == "MaxPool" {
                    self.emit(n, Op::MaxPool { kernel, strides, pads, dilations, ceil_mode }, vec![x], None)
                } else {
                    if dilations != [1, 1] {
                        return Err(self.unsupported(n, "dilated average pooling is not supported"));
                    }
                    let count_include_pad = self.attr_i(n, "count_include_pad", 0)? != 0;
                    self.emit(n, Op::AveragePool { kernel, strides, pads, count_include_pad, ceil_mode }, vec![x], None)
                }
            }
            "GlobalAveragePool" => {
                let x = self.req(n, 0)?;
                self.emit(n, Op::GlobalAveragePool, vec![x], None)
            }
            "Gemm" => {
                let (a, b) = (self.req(n, 0)?, self.req(n, 1)?);
                let c = self.input(n, 2)?;
                let mut ins = vec![a, b];
                ins.extend(c);
                let o = Op::Gemm {
                    alpha: self.attr_f(n, "alpha", 1.0)?,
                    beta: self.attr_f(n, "beta", 1.0)?,
                    trans_a: self.attr_i(n, "transA", 0)? != 0,
                    trans_b: self.attr_i(n, "transB", 0)? != 0,
                };
                self.emit(n, o, ins, None)
            }
            "MatMul" => {
                let (a, b) = (self.req(n, 0)?, self.req(n, 1)?);
                self.emit(n, Op::MatMul, vec![a, b], None)
            }
            "Flatten" => {
                let x = self.req(n, 0)?;
                let s = self.shape(x).to_vec();
                let r = s.len();
                let a = self.attr_i(n, "axis", 1)?;
                let axis = if a == r as i64 { r } else { self.axis(n, a, r)? };
                let target = vec![s[..axis].iter().product(), s[axis..].iter().product()];
                self.emit(n, Op::Reshape, vec![x], Some(target))
            }
            "Reshape" => {
                let x = self.req(n, 0)?;
                let spec = self.cst_ints(n, 1, "shape")?.ok_or_else(|| self.unsupported(n, "missing shape input"))?;
                let s = self.shape(x).to_vec();
                let allowzero = self.attr_i(n, "allowzero", 0)? != 0;
                let total: usize = s.iter().product();
                let mut target = Vec::with_capacity(spec.len());
                let mut infer_at = None;
                for (i, &d) in spec.iter().enumerate() {
                    match d {
                        -1 if infer_at.is_none() => {
                            infer_at = Some(i);
                            target.push(1);
                        }
                        0 if !allowzero => target.push(*s.get(i).ok_or_else(|| {
                            self.unsupported(n, format!("shape {spec:?}: 0 at {i} copies a missing input dimension"))
                        })?),
                        d if d >= 0 => {
                            target.push(usize::try_from(d).map_err(|_| self.unsupported(n, "dimension too large"))?)
                        }
                        _ => return Err(self.unsupported(n, format!("invalid target shape {spec:?}"))),
                    }
                }
                if let Some(i) = infer_at {
                    let known = target.iter().try_fold(1usize, |a, &b| a.checked_mul(b)).unwrap_or(0);
                    if known == 0 || !total.is_multiple_of(known) {
                        return Err(self.unsupported(n, format!("cannot reshape {s:?} to {spec:?}")));
                    }
                    target[i] = total / known;
                }
                self.emit(n, Op::Reshape, vec![x], Some(target))
            }
            "Squeeze" | "Unsqueeze" => {
                let x = self.req(n, 0)?;
                let s = self.shape(x).to_vec();
                let axes = match self.attr_ints(n, "axes")? {
                    Some(a) => Some(a),
                    None => self.cst_ints(n, 1, "axes")?,
                };
                let target = if op == "Squeeze" {
                    let ax: Vec<usize> = match axes {
                        Some(a) => a.iter().map(|&v| self.axis(n, v, s.len())).collect::<Result<_, _>>()?,
                        None => (0..s.len()).filter(|&i| s[i] == 1).collect(),
                    };
                    if let Some(&bad) = ax.iter().find(|&&a| s[a] != 1) {
                        return Err(
                            self.unsupported(n, format!("cannot squeeze axis {bad} of size {} in {s:?}", s[bad]))
                        );
                    }
                    s.iter().enumerate().filter(|(i, _)| !ax.contains(i)).map(|(_, &d)| d).collect()
                } else {
                    let a = axes.ok_or_else(|| self.unsupported(n, "missing axes"))?;
                    let r = s.len() + a.len();
                    let mut ax: Vec<usize> = a.iter().map(|&v| self.axis(n, v, r)).collect::<Result<_, _>>()?;
                    ax.sort_unstable();
                    ax.dedup();
                    if ax.len() != a.len() {
                        return Err(self.unsupported(n, format!("repeated axes {a:?}")));
                    }
                    let mut it = s.iter();
                    (0..r).map(|i| if ax.contains(&i) { 1 } else { *it.next().unwrap_or(&1) }).collect()
                };
                self.emit(n, Op::Reshape, vec![x], Some(target))
            }
            "Transpose" => {
                let x = self.req(n, 0)?;
                let r = self.shape(x).len();
                let perm = match self.attr_ints(n, "perm")? {
                    Some(p) => p.iter().map(|&v| self.axis(n, v, r)).collect::<Result<Vec<_>, _>>()?,
                    None => (0..r).rev().collect(),
                };
                self.emit(n, Op::Transpose { perm }, vec![x], None)
            }
            "Concat" => {
                let ins: Vec<ValueId> = (0..n.input.len())
                    .map(|i| self.input(n, i))
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .flatten()
                    .collect();
                let Some(&first) = ins.first() else {
                    return Err(self.unsupported(n, "Concat needs inputs"));
                };
                let axis = self.axis(n, self.attr_i(n, "axis", 0)?, self.shape(first).len())?;
                self.emit(n, Op::Concat { axis }, ins, None)
            }
            "Expand" => {
                let x = self.req(n, 0)?;
                let spec = self.cst_ints(n, 1, "shape")?.ok_or_else(|| self.unsupported(n, "missing shape input"))?;
                if spec.iter().any(|&d| d < 0) {
                    return Err(self.unsupported(n, format!("invalid shape {spec:?}")));
                }
                let spec: Vec<usize> = spec.iter().map(|&d| d as usize).collect();
                let target = broadcast(self.shape(x), &spec).map_err(|d| self.unsupported(n, d))?;
                self.emit(n, Op::Expand, vec![x], Some(target))
            }
            "Slice" => {
                let x = self.req(n, 0)?;
                let s = self.shape(x).to_vec();
                let (starts, ends, axes, steps) = if attr(n, "starts").is_some() {
                    (
                        self.attr_ints(n, "starts")?.unwrap_or_default(),
                        self.attr_ints(n, "ends")?.unwrap_or_default(),
                        self.attr_ints(n, "axes")?,
                        None,
                    )
                } else {
                    (
                        self.cst_ints(n, 1, "starts")?.unwrap_or_default(),
                        self.cst_ints(n, 2, "ends")?.unwrap_or_default(),
                        self.cst_ints(n, 3, "axes")?,
                        self.cst_ints(n, 4, "steps")?,
                    )
                };
                let k = starts.len();
                let axes = axes.unwrap_or_else(|| (0..k as i64).collect());
                let steps = steps.unwrap_or_else(|| vec![1; k]);
                if ends.len() != k || axes.len() != k || steps.len() != k {
                    return Err(self.unsupported(n, "starts, ends, axes and steps have different lengths"));
                }
                let (mut st, mut en, mut ax, mut sp) = (vec![], vec![], vec![], vec![]);
                for i in 0..k {
                    let a = self.axis(n, axes[i], s.len())?;
                    if steps[i] <= 0 {
                        return Err(
                            self.unsupported(n, format!("step {} is not supported; only positive steps are", steps[i]))
                        );
                    }
                    let d = s[a] as i64;
                    let norm = |v: i64| (if v < 0 { v.saturating_add(d) } else { v }).clamp(0, d) as usize;
                    let (b, e) = (norm(starts[i]), norm(ends[i]));
                    st.push(b);
                    en.push(e.max(b));
                    ax.push(a);
                    sp.push(steps[i] as usize);
                }
                self.emit(n, Op::Slice { starts: st, ends: en, axes: ax, steps: sp }, vec![x], None)
            }
            "Split" => {
                let x = self.req(n, 0)?;
                let s = self.shape(x).to_vec();
                let axis = self.axis(n, self.attr_i(n, "axis", 0)?, s.len())?;
                let d = s[axis];
                let k = n.output.len();
                let sizes: Vec<usize> = match self.attr_ints(n, "split")?.or(self.cst_ints(n, 1, "split")?) {
                    Some(v) => {
                        if v.len() != k || v.iter().any(|&x| x < 0) || v.iter().sum::<i64>() != d as i64 {
                            return Err(self.unsupported(
                                n,
                                format!("split sizes {v:?} do not partition size {d} into {k} outputs"),
                            ));
                        }
                        v.iter().map(|&x| x as usize).collect()
                    }
                    None => {
                        let parts = self.attr_i(n, "num_outputs", k as i64)?.max(1) as usize;
                        if parts != k {
                            return Err(self.unsupported(n, format!("num_outputs {parts} differs from {k} outputs")));
                        }
                        let chunk = d.div_ceil(parts);
                        (0..parts).map(|i| chunk.min(d.saturating_sub(i * chunk))).collect()
                    }
                };
                let mut start = 0;
                for (i, &len) in sizes.iter().enumerate() {
                    let name = n.output[i].clone();
                    let op =
                        Op::Slice { starts: vec![start], ends: vec![start + len], axes: vec![axis], steps: vec![1] };
                    start += len;
                    if name.is_empty() {
                        continue;
                    }
                    let v = self.add(n, &name, op, vec![x], None)?;
                    self.names.insert(name, v);
                }
                Ok(())
            }
            "Gather" => {
                let x = self.req(n, 0)?;
                let idx = self.cst(n, 1, "indices")?.ok_or_else(|| self.unsupported(n, "missing indices"))?;
                let s = self.shape(x).to_vec();
                let axis = self.axis(n, self.attr_i(n, "axis", 0)?, s.len())?;
                let d = s[axis] as i64;
                let mut bad = None;
                let indices = idx.to_f64().mapv(|v| {
                    let i = f64_to_i64(v);
                    let j = if i < 0 { i + d } else { i };
                    if j < 0 || j >= d {
                        bad = Some(i);
                    }
                    j
                });
                if let Some(i) = bad {
                    return Err(self.unsupported(n, format!("index {i} is out of range for axis {axis} of size {d}")));
                }
                self.emit(n, Op::Gather { axis, indices }, vec![x], None)
            }
            "Pad" => {
                let x = self.req(n, 0)?;
                let mode = self.attr_s(n, "mode")?.unwrap_or_else(|| "constant".into());
                if mode != "constant" {
                    return Err(
                        self.unsupported(n, format!("mode '{mode}' is not supported; only constant padding is"))
                    );
                }
                let r = self.shape(x).len();
                let (p, value) = match self.attr_ints(n, "pads")? {
                    Some(p) => (p, self.attr_f(n, "value", 0.0)?),
                    None => {
                        let p = self.cst_ints(n, 1, "pads")?.ok_or_else(|| self.unsupported(n, "missing pads"))?;
                        let v = self.cst(n, 2, "constant_value")?.and_then(|a| a.iter_f64().next()).unwrap_or(0.0);
                        (p, v)
                    }
                };
                let axes: Vec<usize> = match self.cst_ints(n, 3, "axes")? {
                    Some(a) => a.iter().map(|&v| self.axis(n, v, r)).collect::<Result<_, _>>()?,
                    None => (0..r).collect(),
                };
                if p.len() != 2 * axes.len() || p.iter().any(|&v| !(0..=1 << 20).contains(&v)) {
                    return Err(self.unsupported(
                        n,
                        format!(
                            "pads {p:?} must be {} non-negative values (negative pads are not supported)",
                            2 * axes.len()
                        ),
                    ));
                }
                let mut pads = vec![(0, 0); r];
                for (i, &a) in axes.iter().enumerate() {
                    pads[a] = (p[i] as usize, p[i + axes.len()] as usize);
                }
                self.emit(n, Op::Pad { pads, value }, vec![x], None)
            }
            _ => {
                let note = if self.functions.contains(&n.op_type) {
                    " (a model-local function; re-export with the functions inlined)".to_string()
                } else {
                    String::new()
                };
                Err(ModelError::UnknownOp {
                    origin: self.origin.into(),
                    node: n.name.clone(),
                    op_type: n.op_type.clone(),
                    domain_note: note,
                    advice: unsupported_advice(&n.op_type),
                })
            }
        }
    }
}
