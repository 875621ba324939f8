//! Synapse blocks: who reaches whom with what weight, stored in memory proportional to the
//! weights and the neurons, never to the synapses (except the explicit sparse matrices of maps
//! that have no structure). A block maps the output vector of one source to one operand of a
//! target population.

mod conv;
mod dense;
mod index;
mod scale;
mod select;
mod weights;

use serde::{Deserialize, Serialize};
use sprs::CsMat;

pub use conv::ConvBlock;
pub use dense::{DenseBlock, Matrix};
pub use index::{Index, Run, NONE};
pub use scale::Scale;
pub use select::SelectBlock;
pub use weights::Weights;

use super::NetworkError;
use crate::real::Real;

/// A block of synapses from one source to one operand of a target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SynapseBlock<W = f64> {
    /// A general linear map: a compressed sparse column matrix `[targets × sources]`, each column
    /// the fan-out of one source. Only for maps with none of the structures below.
    Sparse {
        /// The matrix in CSC storage.
        #[serde(with = "csc_serde")]
        matrix: CsMat<W>,
    },
    /// A convolution: kernel plus geometry.
    Conv(ConvBlock<W>),
    /// A matrix applied along one axis (per-token linear layers, token mixing, reductions).
    Dense(DenseBlock<W>),
    /// Each target reads at most one source, through an index map.
    Select(SelectBlock<W>),
    /// An elementwise map: target i receives `scale[i]` times source i.
    Diagonal {
        /// One weight per element.
        scale: Vec<W>,
    },
}

impl<W: Real> SynapseBlock<W> {
    /// Number of source elements the block reads.
    pub fn sources(&self) -> usize {
        match self {
            SynapseBlock::Sparse { matrix } => matrix.cols(),
            SynapseBlock::Conv(conv) => conv.sources,
            SynapseBlock::Dense(dense) => dense.sources,
            SynapseBlock::Select(select) => select.sources,
            SynapseBlock::Diagonal { scale } => scale.len(),
        }
    }

    /// Number of target elements the block writes.
    pub fn targets(&self) -> usize {
        match self {
            SynapseBlock::Sparse { matrix } => matrix.rows(),
            SynapseBlock::Conv(conv) => conv.targets,
            SynapseBlock::Dense(dense) => dense.targets,
            SynapseBlock::Select(select) => select.targets,
            SynapseBlock::Diagonal { scale } => scale.len(),
        }
    }

    /// Number of stored weights (the block's memory in elements): the matrix, the kernel, the
    /// per-element factors. A dense block counts its matrix even where it shares it.
    pub fn stored_weights(&self) -> usize {
        match self {
            SynapseBlock::Sparse { matrix } => matrix.nnz(),
            SynapseBlock::Conv(conv) => conv.kernel.len() + conv.target_scale.stored() + conv.source_scale.stored(),
            SynapseBlock::Dense(dense) => {
                dense.matrix_weights() + dense.target_scale.stored() + dense.source_scale.stored()
            }
            SynapseBlock::Select(select) => select.scale.stored(),
            SynapseBlock::Diagonal { scale } => scale.len(),
        }
    }

    /// Number of shared weights the block stores (the sparse matrix, the kernel, the dense
    /// matrix), without the per-element factors, which grow with the neurons, not the model.
    pub fn parameters(&self) -> usize {
        match self {
            SynapseBlock::Sparse { matrix } => matrix.nnz(),
            SynapseBlock::Conv(conv) => conv.kernel.len(),
            SynapseBlock::Dense(dense) => dense.matrix_weights(),
            SynapseBlock::Select(_) | SynapseBlock::Diagonal { .. } => 0,
        }
    }

    /// Number of index entries the block stores for its addressing.
    pub fn stored_indices(&self) -> usize {
        match self {
            SynapseBlock::Sparse { matrix } => matrix.nnz() + matrix.cols() + 1,
            SynapseBlock::Conv(conv) => conv.source.stored_entries() + conv.target.stored_entries(),
            SynapseBlock::Dense(dense) => dense.source.stored_entries() + dense.target.stored_entries(),
            SynapseBlock::Select(select) => select.source.stored_entries(),
            SynapseBlock::Diagonal { .. } => 0,
        }
    }

    /// Short name of the block's kind.
    pub fn kind_name(&self) -> &'static str {
        match self {
            SynapseBlock::Sparse { .. } => "sparse",
            SynapseBlock::Conv(_) => "conv",
            SynapseBlock::Dense(_) => "dense",
            SynapseBlock::Select(_) => "select",
            SynapseBlock::Diagonal { .. } => "diagonal",
        }
    }

    /// Adds the columns of every source in `fired` (each weight once): binary event delivery.
    /// The reference for the engine's kernels, not fast.
    pub fn deliver_events(&self, fired: &[u32], acc: &mut [W]) {
        match self {
            SynapseBlock::Sparse { matrix } => {
                let (indptr, indices, data) = (matrix.indptr(), matrix.indices(), matrix.data());
                for &j in fired {
                    let range = indptr.outer_inds_sz(j as usize);
                    for (&row, &w) in indices[range.clone()].iter().zip(&data[range]) {
                        acc[row] += w;
                    }
                }
            }
            SynapseBlock::Diagonal { scale } => {
                for &j in fired {
                    acc[j as usize] += scale[j as usize];
                }
            }
            _ => {
                let mut spikes = vec![W::zero(); self.sources()];
                fired.iter().for_each(|&j| spikes[j as usize] = W::one());
                self.multiply_add(&spikes, acc);
            }
        }
    }

    /// Adds `A u` for a dense real-valued source vector `u`.
    pub fn multiply_add(&self, u: &[W], acc: &mut [W]) {
        match self {
            SynapseBlock::Sparse { matrix } => {
                for (j, &value) in u.iter().enumerate() {
                    let range = matrix.indptr().outer_inds_sz(j);
                    for (&row, &w) in matrix.indices()[range.clone()].iter().zip(&matrix.data()[range]) {
                        acc[row] += value * w;
                    }
                }
            }
            SynapseBlock::Conv(conv) => conv.multiply_add(u, acc),
            SynapseBlock::Dense(dense) => dense.multiply_add(u, acc),
            SynapseBlock::Select(select) => select.multiply_add(u, acc),
            SynapseBlock::Diagonal { scale } => {
                for ((a, &value), &d) in acc.iter_mut().zip(u).zip(scale) {
                    *a += value * d;
                }
            }
        }
    }

    /// Number of synapses leaving each source (its fan-out), computed from the structure.
    pub fn fan_out(&self) -> Vec<u32> {
        match self {
            SynapseBlock::Sparse { matrix } => {
                (0..matrix.cols()).map(|j| matrix.indptr().outer_inds_sz(j).len() as u32).collect()
            }
            SynapseBlock::Conv(conv) => conv.fan_out(),
            SynapseBlock::Dense(dense) => dense.fan_out(),
            SynapseBlock::Select(select) => select.fan_out(),
            SynapseBlock::Diagonal { scale } => vec![1; scale.len()],
        }
    }

    /// Number of synapses reaching each target (its fan-in), computed from the structure.
    pub fn fan_in(&self) -> Vec<u32> {
        let mut out = vec![0u32; self.targets()];
        match self {
            SynapseBlock::Sparse { matrix } => matrix.indices().iter().for_each(|&row| out[row] += 1),
            SynapseBlock::Conv(conv) => out = conv.fan_in(),
            SynapseBlock::Dense(dense) => out = dense.fan_in(),
            SynapseBlock::Select(select) => out = select.fan_in(),
            SynapseBlock::Diagonal { .. } => out.iter_mut().for_each(|c| *c = 1),
        }
        out
    }

    /// Total number of synapses.
    pub fn synapses(&self) -> u64 {
        match self {
            SynapseBlock::Sparse { matrix } => matrix.nnz() as u64,
            SynapseBlock::Dense(dense) => dense.synapses(),
            SynapseBlock::Select(select) => select.synapses(),
            SynapseBlock::Diagonal { scale } => scale.len() as u64,
            SynapseBlock::Conv(_) => self.fan_out().iter().map(|&f| f as u64).sum(),
        }
    }

    /// Calls `visit(target, source, weight)` for every synapse (time proportional to the
    /// synapses: for small blocks, tests and explicit compositions).
    pub fn for_each_synapse(&self, mut visit: impl FnMut(usize, usize, W)) {
        match self {
            SynapseBlock::Sparse { matrix } => {
                for j in 0..matrix.cols() {
                    let range = matrix.indptr().outer_inds_sz(j);
                    for (&row, &w) in matrix.indices()[range.clone()].iter().zip(&matrix.data()[range]) {
                        visit(row, j, w);
                    }
                }
            }
            SynapseBlock::Conv(conv) => conv.for_each_synapse(visit),
            SynapseBlock::Dense(dense) => dense.for_each_synapse(visit),
            SynapseBlock::Select(select) => select.source.for_each(select.targets, |t, p| {
                if let Some(p) = p {
                    visit(t, p, select.scale.get(t));
                }
            }),
            SynapseBlock::Diagonal { scale } => scale.iter().enumerate().for_each(|(i, &w)| visit(i, i, w)),
        }
    }

    /// `A 1`: the response of the targets when every source emits 1.
    pub fn response_to_ones(&self) -> Vec<W> {
        let mut acc = vec![W::zero(); self.targets()];
        self.multiply_add(&vec![W::one(); self.sources()], &mut acc);
        acc
    }

    /// The same block with its weights converted to another precision (a dense block's matrix
    /// stays shared, in its stored precision).
    pub fn cast<T: Real>(&self) -> SynapseBlock<T> {
        let convert = |w: &W| T::of(w.to_f64_lossless());
        match self {
            SynapseBlock::Sparse { matrix } => SynapseBlock::Sparse { matrix: matrix.map(convert) },
            SynapseBlock::Conv(conv) => SynapseBlock::Conv(conv.cast()),
            SynapseBlock::Dense(dense) => SynapseBlock::Dense(dense.cast()),
            SynapseBlock::Select(select) => SynapseBlock::Select(select.cast()),
            SynapseBlock::Diagonal { scale } => SynapseBlock::Diagonal { scale: scale.iter().map(convert).collect() },
        }
    }

    /// The same block with every weight and factor replaced by its absolute value (`|A|`, for
    /// bounds on the rounding error of `A u`). A dense block's matrix becomes a copy.
    pub fn absolute(&self) -> SynapseBlock<W> {
        let abs_scale = |scale: &Scale<W>| match scale {
            Scale::One => Scale::One,
            Scale::Uniform(w) => Scale::Uniform(w.abs()),
            Scale::Each(values) => Scale::Each(values.iter().map(|w| w.abs()).collect()),
        };
        match self {
            SynapseBlock::Sparse { matrix } => SynapseBlock::Sparse { matrix: matrix.map(|w| w.abs()) },
            SynapseBlock::Conv(conv) => SynapseBlock::Conv(ConvBlock {
                kernel: conv.kernel.iter().map(|w| w.abs()).collect(),
                target_scale: abs_scale(&conv.target_scale),
                source_scale: abs_scale(&conv.source_scale),
                ..conv.clone()
            }),
            SynapseBlock::Dense(dense) => {
                let rows = dense.matrix.to_rows(dense.outputs, dense.inputs);
                SynapseBlock::Dense(DenseBlock {
                    matrix: Matrix::owned(dense.outputs, dense.inputs, rows.into_iter().map(f64::abs).collect()),
                    source_scale: abs_scale(&dense.source_scale),
                    target_scale: abs_scale(&dense.target_scale),
                    ..dense.clone()
                })
            }
            SynapseBlock::Select(select) => {
                SynapseBlock::Select(SelectBlock { scale: abs_scale(&select.scale), ..select.clone() })
            }
            SynapseBlock::Diagonal { scale } => {
                SynapseBlock::Diagonal { scale: scale.iter().map(|w| w.abs()).collect() }
            }
        }
    }

    /// Checks internal consistency: storage, geometry, index maps, finite weights.
    pub fn validate(&self) -> Result<(), NetworkError> {
        let weights: &[W] = match self {
            SynapseBlock::Sparse { matrix } => {
                if !matrix.is_csc() {
                    return Err(NetworkError::Block("sparse block must be stored by columns (CSC)".into()));
                }
                matrix.data()
            }
            SynapseBlock::Conv(conv) => {
                conv.validate()?;
                &conv.kernel
            }
            SynapseBlock::Dense(dense) => return dense.validate(),
            SynapseBlock::Select(select) => return select.validate(),
            SynapseBlock::Diagonal { scale } => scale,
        };
        if let Some(i) = weights.iter().position(|w| !w.is_finite()) {
            return Err(NetworkError::Block(format!("weight {i} of a {} block is {}", self.kind_name(), weights[i])));
        }
        Ok(())
    }
}

/// Checks that an index map over `count` logical elements stays within `physical` elements.
fn validate_index(index: &Index, count: usize, physical: usize, what: &str) -> Result<(), String> {
    match index {
        Index::Identity if count > physical => {
            Err(format!("{count} logical {what}s read or write {physical} physical elements one to one"))
        }
        Index::Strided { shape, strides, .. }
            if shape.iter().product::<usize>() != count || shape.len() != strides.len() =>
        {
            Err(format!("a strided {what} map over {shape:?} does not cover {count} elements"))
        }
        Index::Table { entries } if entries.len() != count => {
            Err(format!("a {what} table of {} entries for {count} elements", entries.len()))
        }
        _ if index.span(count) > physical => {
            Err(format!("the {what} map reaches element {} of {physical}", index.span(count) - 1))
        }
        _ => Ok(()),
    }
}

mod csc_serde {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use sprs::CsMat;

    #[derive(Deserialize)]
    struct Csc<W> {
        rows: usize,
        cols: usize,
        indptr: Vec<usize>,
        indices: Vec<usize>,
        data: Vec<W>,
    }

    #[derive(Serialize)]
    struct CscRef<'a, W> {
        rows: usize,
        cols: usize,
        indptr: Vec<usize>,
        indices: &'a [usize],
        data: &'a [W],
    }

    pub fn serialize<W: Serialize, S: Serializer>(m: &CsMat<W>, s: S) -> Result<S::Ok, S::Error> {
        CscRef {
            rows: m.rows(),
            cols: m.cols(),
            indptr: m.indptr().to_proper().into_owned(),
            indices: m.indices(),
            data: m.data(),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, W: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<CsMat<W>, D::Error> {
        let c = Csc::<W>::deserialize(d)?;
        CsMat::try_new_csc((c.rows, c.cols), c.indptr, c.indices, c.data)
            .map_err(|(_, _, _, e)| serde::de::Error::custom(e))
    }
}
