//! Affine forms: every activation between two neuron populations as `Σ_sources M_s u_s + c`,
//! composed op by op. Each `M_s` is a synapse block that keeps the structure of the ops it came
//! from (a convolution, a matrix applied per token, a selection through an index map); explicit
//! sparse matrices only for compositions that have none.

use ndarray::{ArrayD, IxDyn};
use sprs::{CsMat, TriMat};

use crate::snn::{Constants, ConvBlock, Index, Operand, Projection, Scale, SelectBlock, Source, SynapseBlock};

/// One source's contribution to an affine form: a block from the source's elements to the
/// activation's elements (flattened, row-major).
#[derive(Clone, Debug)]
pub struct Term {
    /// The source.
    pub source: Source,
    /// Its linear map.
    pub block: SynapseBlock,
    /// Its synapses are all synapses of another term of the same source (see
    /// [`crate::snn::Projection::overlap`]).
    pub overlap: bool,
}

/// An activation as an affine function of neuron populations and the input.
#[derive(Clone, Debug)]
pub struct AffineForm {
    /// The constant part c, in the activation's shape.
    pub bias: ArrayD<f64>,
    /// The terms, in the order they were added (a source may appear more than once).
    pub terms: Vec<Term>,
}

impl AffineForm {
    /// The output of `source` itself, of shape `shape`.
    pub fn source(source: Source, shape: &[usize]) -> Self {
        let size = shape.iter().product();
        AffineForm {
            bias: ArrayD::zeros(IxDyn(shape)),
            terms: vec![Term { source, block: identity(size), overlap: false }],
        }
    }

    /// A constant.
    pub fn constant(value: ArrayD<f64>) -> Self {
        AffineForm { bias: value, terms: Vec::new() }
    }

    /// Number of elements.
    pub fn size(&self) -> usize {
        self.bias.len()
    }

    /// Whether the form is its one source unchanged, or a constant: nothing to compose or relay.
    pub fn is_direct(&self) -> bool {
        match self.terms.as_slice() {
            [] => true,
            [term] => is_identity(&term.block),
            _ => false,
        }
    }

    /// Synapses of all terms (each joined pair once).
    pub fn synapses(&self) -> u64 {
        self.terms.iter().filter(|t| !t.overlap).map(|t| t.block.synapses()).sum()
    }
}

/// The block that passes `size` elements through unchanged.
pub fn identity(size: usize) -> SynapseBlock {
    SynapseBlock::Select(SelectBlock { targets: size, sources: size, source: Index::Identity, scale: Scale::One })
}

/// Whether a block passes its source through unchanged.
pub fn is_identity(block: &SynapseBlock) -> bool {
    match block {
        SynapseBlock::Select(s) => s.sources == s.targets && s.source.is_identity() && s.scale.is_one(),
        SynapseBlock::Diagonal { scale } => scale.iter().all(|&w| w == 1.0),
        _ => false,
    }
}

/// Turns a form into an operand: terms become projections (an elementwise sparse matrix a
/// diagonal).
pub fn to_operand(form: &AffineForm) -> Operand {
    let projections = form
        .terms
        .iter()
        .map(|term| {
            let block = match &term.block {
                SynapseBlock::Sparse { matrix } => match diagonal_of(matrix) {
                    Some(scale) => SynapseBlock::Diagonal { scale },
                    None => term.block.clone(),
                },
                block => block.clone(),
            };
            Projection { source: term.source, block, overlap: term.overlap }
        })
        .collect();
    Operand { bias: Constants::compact(form.bias.iter().copied().collect()), projections }
}

/// The diagonal of a square matrix whose every column holds exactly its diagonal entry.
fn diagonal_of(m: &CsMat<f64>) -> Option<Vec<f64>> {
    if m.rows() != m.cols() || m.nnz() != m.rows() {
        return None;
    }
    let mut scale = vec![0.0; m.rows()];
    for (outer, vector) in m.outer_iterator().enumerate() {
        let (indices, data) = (vector.indices(), vector.data());
        if indices != [outer] {
            return None;
        }
        scale[outer] = data[0];
    }
    Some(scale)
}

/// A convolution block as an explicit CSR matrix `[targets × sources]`.
pub fn conv_matrix(conv: &ConvBlock) -> CsMat<f64> {
    to_csr(&SynapseBlock::Conv(conv.clone()))
}

/// Any block as an explicit CSR matrix `[targets × sources]` (time and memory proportional to
/// its synapses: callers check the size first).
pub fn to_csr(block: &SynapseBlock) -> CsMat<f64> {
    let mut tri = TriMat::new((block.targets(), block.sources()));
    block.for_each_synapse(|target, source, w| tri.add_triplet(target, source, w));
    tri.to_csr()
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
    let index = broadcast_index(in_shape, out_shape);
    let total: usize = out_shape.iter().product();
    (0..total).map(|i| index.get(i).expect("a broadcast has no holes")).collect()
}

/// The index map that broadcasts `in_shape` to `out_shape` (numpy rules): the identity when
/// the shapes have the same elements, a strided map with zero strides otherwise.
pub fn broadcast_index(in_shape: &[usize], out_shape: &[usize]) -> Index {
    let in_strides = strides(in_shape);
    let offset = out_shape.len() - in_shape.len();
    let strides = (0..out_shape.len())
        .map(|axis| match axis.checked_sub(offset) {
            Some(a) if in_shape[a] != 1 => in_strides[a],
            _ => 0,
        })
        .collect();
    Index::strided(out_shape.to_vec(), strides, 0)
}
