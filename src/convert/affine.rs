//! Affine forms: every activation between two neuron populations as `Σ_sources M_s u_s + c`,
//! composed op by op, and the sparse matrices of the affine ops' linear parts.

use ndarray::{ArrayD, IxDyn};
use sprs::{CsMat, TriMat};

use crate::snn::{ConvBlock, Operand, Projection, Source, SynapseBlock};

/// The linear map from a source's output vector to an activation (flattened, row-major).
#[derive(Clone, Debug)]
pub enum LinearMap {
    /// The activation is the source itself.
    Identity,
    /// A convolution applied directly to the source: kept as kernel plus geometry.
    Conv(ConvBlock),
    /// Any other linear map, rows = activation elements, columns = source elements (CSR).
    Sparse(CsMat<f64>),
}

/// One source's contribution to an affine form.
#[derive(Clone, Debug)]
pub struct Term {
    /// The source.
    pub source: Source,
    /// Its linear map.
    pub map: LinearMap,
}

/// An activation as an affine function of neuron populations and the input.
#[derive(Clone, Debug)]
pub struct AffineForm {
    /// The constant part c, in the activation's shape.
    pub bias: ArrayD<f64>,
    /// One term per source.
    pub terms: Vec<Term>,
}

impl AffineForm {
    /// The output of `source` itself, of shape `shape`.
    pub fn source(source: Source, shape: &[usize]) -> Self {
        AffineForm { bias: ArrayD::zeros(IxDyn(shape)), terms: vec![Term { source, map: LinearMap::Identity }] }
    }

    /// A constant.
    pub fn constant(value: ArrayD<f64>) -> Self {
        AffineForm { bias: value, terms: Vec::new() }
    }

    /// Number of elements.
    pub fn size(&self) -> usize {
        self.bias.len()
    }

    /// Applies the linear map `matrix` (rows: new elements, columns: this form's elements) to
    /// every term; the caller supplies the new bias.
    pub fn transform(&self, matrix: &CsMat<f64>) -> Vec<Term> {
        self.terms
            .iter()
            .map(|term| {
                let map = match &term.map {
                    LinearMap::Identity => matrix.clone(),
                    LinearMap::Conv(conv) => match diagonal_of(matrix) {
                        // An elementwise scaling after a convolution stays with the kernel.
                        Some(scale) => {
                            let mut conv = conv.clone();
                            conv.target_scale = match conv.target_scale.is_empty() {
                                true => scale,
                                false => conv.target_scale.iter().zip(&scale).map(|(a, b)| a * b).collect(),
                            };
                            return Term { source: term.source, map: LinearMap::Conv(conv) };
                        }
                        None => matrix * &conv_matrix(conv),
                    },
                    LinearMap::Sparse(inner) => matrix * inner,
                };
                Term { source: term.source, map: LinearMap::Sparse(map) }
            })
            .collect()
    }
}

/// Adds `term` to `terms`, merging it with an existing term of the same source.
pub fn merge_term(terms: &mut Vec<Term>, term: Term, size: usize) {
    match terms.iter_mut().find(|t| t.source == term.source) {
        None => terms.push(term),
        Some(existing) => {
            let a = as_sparse(&existing.map, size);
            let b = as_sparse(&term.map, size);
            existing.map = LinearMap::Sparse(&a + &b);
        }
    }
}

/// The map as a CSR matrix with `rows` rows.
pub fn as_sparse(map: &LinearMap, rows: usize) -> CsMat<f64> {
    match map {
        LinearMap::Identity => CsMat::eye(rows),
        LinearMap::Conv(conv) => conv_matrix(conv),
        LinearMap::Sparse(m) => m.clone(),
    }
}

/// A convolution block as an explicit CSR matrix.
pub fn conv_matrix(conv: &ConvBlock) -> CsMat<f64> {
    let sources: usize = conv.in_shape.iter().product();
    let targets: usize = conv.out_shape.iter().product();
    let mut tri = TriMat::new((targets, sources));
    for j in 0..sources {
        conv.for_each_synapse(j, |target, w| tri.add_triplet(target, j, w));
    }
    tri.to_csr()
}

/// Builds a CSR matrix from triplets.
pub fn matrix(rows: usize, cols: usize, entries: impl IntoIterator<Item = (usize, usize, f64)>) -> CsMat<f64> {
    let mut tri = TriMat::new((rows, cols));
    for (r, c, w) in entries {
        tri.add_triplet(r, c, w);
    }
    tri.to_csr()
}

/// Turns a form into an operand of `size` neurons: terms become synapse blocks (diagonal where
/// the map is elementwise, sparse by columns otherwise).
pub fn to_operand(form: &AffineForm) -> Operand {
    let size = form.size();
    let projections = form
        .terms
        .iter()
        .map(|term| {
            let block = match &term.map {
                LinearMap::Identity => SynapseBlock::Diagonal { scale: vec![1.0; size] },
                LinearMap::Conv(conv) => SynapseBlock::Conv(conv.clone()),
                LinearMap::Sparse(m) => match diagonal_of(m) {
                    Some(scale) => SynapseBlock::Diagonal { scale },
                    None => SynapseBlock::Sparse { matrix: m.to_csc() },
                },
            };
            Projection { source: term.source, block }
        })
        .collect();
    Operand { bias: form.bias.iter().copied().collect(), projections }
}

/// The diagonal of a square matrix whose every row holds exactly its diagonal entry.
fn diagonal_of(m: &CsMat<f64>) -> Option<Vec<f64>> {
    if m.rows() != m.cols() || m.nnz() != m.rows() {
        return None;
    }
    let mut scale = vec![0.0; m.rows()];
    for (row, vector) in m.outer_iterator().enumerate() {
        let (indices, data) = (vector.indices(), vector.data());
        if indices != [row] {
            return None;
        }
        scale[row] = data[0];
    }
    Some(scale)
}

/// Row-major strides of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// For every element of `out_shape`, the element of `in_shape` it reads under numpy
/// broadcasting (in_shape right-aligned; size-1 axes repeat).
pub fn broadcast_indices(in_shape: &[usize], out_shape: &[usize]) -> Vec<usize> {
    let out_strides = strides(out_shape);
    let in_strides = strides(in_shape);
    let offset = out_shape.len() - in_shape.len();
    let total: usize = out_shape.iter().product();
    (0..total)
        .map(|flat| {
            let mut index = 0;
            for (axis, (&dim, &stride)) in in_shape.iter().zip(&in_strides).enumerate() {
                let coordinate = (flat / out_strides[axis + offset]) % out_shape[axis + offset];
                if dim != 1 {
                    index += coordinate * stride;
                }
            }
            index
        })
        .collect()
}

/// The 0/1 matrix that broadcasts `in_shape` to `out_shape`, each row scaled by `scale(row)`.
pub fn broadcast_matrix(in_shape: &[usize], out_shape: &[usize], scale: impl Fn(usize) -> f64) -> CsMat<f64> {
    let rows: usize = out_shape.iter().product();
    let cols: usize = in_shape.iter().product();
    let indices = broadcast_indices(in_shape, out_shape);
    matrix(rows, cols, indices.into_iter().enumerate().map(|(r, c)| (r, c, scale(r))))
}
