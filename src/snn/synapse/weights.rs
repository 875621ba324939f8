//! The weight matrix of a dense block, shared with the model it came from: float32 weights stay
//! float32 (read exactly as f64), and a block that applies one matrix to every token stores it once.

use std::fmt;

use ndarray::{ArcArray, IxDyn};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A tensor of weights in its stored precision; cloning shares the data.
#[derive(Clone)]
pub enum Weights {
    /// Single precision, as most models store their weights.
    F32(ArcArray<f32, IxDyn>),
    /// Double precision (weights computed by the conversion, or float64 models).
    F64(ArcArray<f64, IxDyn>),
}

impl Weights {
    /// Weights from a vector of f64.
    pub fn from_f64(values: Vec<f64>) -> Self {
        let n = values.len();
        Weights::F64(ArcArray::from_shape_vec(IxDyn(&[n]), values).expect("a vector has one axis"))
    }

    /// Number of weights.
    pub fn len(&self) -> usize {
        match self {
            Weights::F32(a) => a.len(),
            Weights::F64(a) => a.len(),
        }
    }

    /// Whether there are no weights.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Weight `i` (in memory order), widened exactly to f64.
    #[inline]
    pub fn get(&self, i: usize) -> f64 {
        match self {
            Weights::F32(a) => a.as_slice_memory_order().expect("contiguous weights")[i] as f64,
            Weights::F64(a) => a.as_slice_memory_order().expect("contiguous weights")[i],
        }
    }

    /// The weights in memory order, when stored in single precision.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            Weights::F32(a) => a.as_slice_memory_order(),
            Weights::F64(_) => None,
        }
    }

    /// The weights in memory order, when stored in double precision.
    pub fn as_f64(&self) -> Option<&[f64]> {
        match self {
            Weights::F64(a) => a.as_slice_memory_order(),
            Weights::F32(_) => None,
        }
    }

    /// Whether both share the same storage (no comparison of values needed).
    pub fn shares(&self, other: &Weights) -> bool {
        match (self, other) {
            (Weights::F32(a), Weights::F32(b)) => a.as_ptr() == b.as_ptr() && a.len() == b.len(),
            (Weights::F64(a), Weights::F64(b)) => a.as_ptr() == b.as_ptr() && a.len() == b.len(),
            _ => false,
        }
    }

    /// An identifier of the storage, equal for weights that share it.
    pub fn storage_id(&self) -> usize {
        match self {
            Weights::F32(a) => a.as_ptr() as usize,
            Weights::F64(a) => a.as_ptr() as usize,
        }
    }

    /// Every weight widened to f64, in memory order.
    pub fn to_vec(&self) -> Vec<f64> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    /// The same weights with each one replaced by `f(w)`, as f64.
    pub fn map(&self, f: impl Fn(f64) -> f64) -> Weights {
        Weights::from_f64((0..self.len()).map(|i| f(self.get(i))).collect())
    }
}

impl PartialEq for Weights {
    fn eq(&self, other: &Self) -> bool {
        self.shares(other) || (self.len() == other.len() && (0..self.len()).all(|i| self.get(i) == other.get(i)))
    }
}

impl fmt::Debug for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let precision = if matches!(self, Weights::F32(_)) { "f32" } else { "f64" };
        write!(f, "Weights({} × {precision})", self.len())
    }
}

impl Serialize for Weights {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_vec().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Weights {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Weights::from_f64(Vec::<f64>::deserialize(d)?))
    }
}
