//! Constant tensors kept in the precision the model stores them, with shared data: cloning a
//! [`Tensor`] (or a whole [`crate::model::Graph`]) never copies the elements.

use ndarray::{iter::Iter, ArcArray, ArrayD, CowArray, IxDyn};

use crate::real::Real;

/// The data of a constant: float32 model parameters stay single precision; every other element
/// type (integers, booleans, half precision, double) and every value computed in double
/// precision is `F64`. Readers see it in the precision they need through [`Tensor::view`].
#[derive(Clone, Debug)]
pub enum Tensor {
    /// Single-precision data (ONNX `FLOAT`), exactly as stored.
    F32(ArcArray<f32, IxDyn>),
    /// Double-precision data.
    F64(ArcArray<f64, IxDyn>),
}

impl Tensor {
    /// The shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::F32(a) => a.shape(),
            Tensor::F64(a) => a.shape(),
        }
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape().len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Tensor::F32(a) => a.len(),
            Tensor::F64(a) => a.len(),
        }
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The data in precision `F`: borrowed when `F` is the stored precision, converted otherwise
    /// (widened exactly, or rounded to nearest).
    pub fn view<F: Real>(&self) -> CowArray<'_, F, IxDyn> {
        match self {
            Tensor::F32(a) => F::from_f32_view(a.view()),
            Tensor::F64(a) => F::from_f64_view(a.view()),
        }
    }

    /// The data in double precision (borrowed for `F64`, widened exactly for `F32`).
    pub fn to_f64(&self) -> CowArray<'_, f64, IxDyn> {
        self.view::<f64>()
    }

    /// The elements in logical (row-major) order, widened to `f64`.
    pub fn iter_f64(&self) -> IterF64<'_> {
        match self {
            Tensor::F32(a) => IterF64::F32(a.iter()),
            Tensor::F64(a) => IterF64::F64(a.iter()),
        }
    }

    /// The single-precision data, if that is how the tensor is stored.
    pub fn as_f32(&self) -> Option<&ArcArray<f32, IxDyn>> {
        match self {
            Tensor::F32(a) => Some(a),
            Tensor::F64(_) => None,
        }
    }

    /// The double-precision data, if that is how the tensor is stored.
    pub fn as_f64(&self) -> Option<&ArcArray<f64, IxDyn>> {
        match self {
            Tensor::F64(a) => Some(a),
            Tensor::F32(_) => None,
        }
    }
}

impl From<ArrayD<f64>> for Tensor {
    fn from(data: ArrayD<f64>) -> Self {
        Tensor::F64(data.into_shared())
    }
}

impl From<ArrayD<f32>> for Tensor {
    fn from(data: ArrayD<f32>) -> Self {
        Tensor::F32(data.into_shared())
    }
}

/// Equal shapes and equal values, whatever the stored precisions.
impl PartialEq for Tensor {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Tensor::F32(a), Tensor::F32(b)) => a == b,
            (Tensor::F64(a), Tensor::F64(b)) => a == b,
            _ => self.shape() == other.shape() && self.iter_f64().eq(other.iter_f64()),
        }
    }
}

/// Iterator of [`Tensor::iter_f64`].
pub enum IterF64<'a> {
    /// Over single-precision data.
    F32(Iter<'a, f32, IxDyn>),
    /// Over double-precision data.
    F64(Iter<'a, f64, IxDyn>),
}

impl Iterator for IterF64<'_> {
    type Item = f64;

    fn next(&mut self) -> Option<f64> {
        match self {
            IterF64::F32(it) => it.next().map(|&v| v as f64),
            IterF64::F64(it) => it.next().copied(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            IterF64::F32(it) => it.size_hint(),
            IterF64::F64(it) => it.size_hint(),
        }
    }
}

impl ExactSizeIterator for IterF64<'_> {}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn};

    use super::Tensor;

    fn f32s(shape: &[usize], data: &[f32]) -> Tensor {
        ArrayD::from_shape_vec(IxDyn(shape), data.to_vec()).unwrap().into()
    }

    #[test]
    fn views_borrow_the_stored_precision_and_convert_the_other() {
        let t = f32s(&[2], &[0.1, -3.0]);
        let stored = t.as_f32().unwrap();
        assert_eq!(t.view::<f32>().as_ptr(), stored.as_ptr());
        assert_eq!(t.to_f64().iter().copied().collect::<Vec<_>>(), vec![0.1f32 as f64, -3.0]);
        let d: Tensor = ArrayD::from_shape_vec(IxDyn(&[1]), vec![0.1]).unwrap().into();
        assert_eq!(d.to_f64().as_ptr(), d.as_f64().unwrap().as_ptr());
        assert_eq!(d.view::<f32>()[[0]], 0.1f32);
    }

    #[test]
    fn clones_share_data_and_equality_compares_values() {
        let t = f32s(&[2, 1], &[1.5, 2.0]);
        let c = t.clone();
        assert_eq!(c.as_f32().unwrap().as_ptr(), t.as_f32().unwrap().as_ptr());
        let wide: Tensor = ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![1.5, 2.0]).unwrap().into();
        assert_eq!(t, wide);
        assert_ne!(t, f32s(&[2], &[1.5, 2.0]));
        assert_eq!((t.len(), t.ndim(), t.shape(), t.is_empty()), (2, 2, &[2usize, 1][..], false));
        assert_eq!(t.iter_f64().len(), 2);
    }
}
