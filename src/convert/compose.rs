//! Composition of synapse blocks: an affine op's block applied after a term's block. Structure is
//! kept wherever it survives (a selection after anything injective, a convolution or a matrix
//! after a selection, two matrices along the same axis); anything else becomes an explicit
//! sparse matrix, built only within [`SPARSE_BUDGET`].

use ndarray::ArrayViewD;
use sprs::CsMat;

use super::affine::{broadcast_indices, to_csr, Term};
use crate::snn::synapse::NONE;
use crate::snn::{ConvBlock, DenseBlock, Index, Matrix, Scale, SelectBlock, SynapseBlock};

/// Largest explicit sparse composition built, in paths (products of a weight of one block with
/// a weight of the other): about 4.2 million, at most 64 MiB as a sparse matrix.
pub const SPARSE_BUDGET: u64 = 1 << 22;

/// The result of composing two blocks.
pub enum Composed {
    /// The composition keeps a structure.
    Structured(SynapseBlock),
    /// The composition as an explicit sparse matrix.
    Sparse(SynapseBlock),
    /// The composition has no structure and would exceed [`SPARSE_BUDGET`].
    TooLarge {
        /// Products of weights it would take.
        paths: u64,
    },
}

impl Composed {
    /// The composed block, if it was built.
    pub fn block(self) -> Option<SynapseBlock> {
        match self {
            Composed::Structured(block) | Composed::Sparse(block) => Some(block),
            Composed::TooLarge { .. } => None,
        }
    }
}

/// `op ∘ term`: the block from the term's source to the op's output (`op` reads the elements
/// `term` writes).
pub fn compose(op: &SynapseBlock, term: &SynapseBlock) -> Composed {
    if let Some(block) = structured(op, term) {
        return Composed::Structured(block);
    }
    let paths = paths(op, term);
    if paths > SPARSE_BUDGET {
        return Composed::TooLarge { paths };
    }
    let product = &to_csr(op) * &to_csr(term);
    Composed::Sparse(SynapseBlock::Sparse { matrix: product.to_csc() })
}

/// Products of weights an explicit composition takes: for every element between the two blocks,
/// the synapses reaching it times the synapses leaving it.
pub fn paths(op: &SynapseBlock, term: &SynapseBlock) -> u64 {
    op.fan_out().iter().zip(term.fan_in()).map(|(&out, inn)| out as u64 * inn as u64).sum()
}

/// A selection (each target reads at most one source) as index map and factors.
fn as_selection(block: &SynapseBlock) -> Option<(Index, Scale)> {
    match block {
        SynapseBlock::Select(s) => Some((s.source.clone(), s.scale.clone())),
        SynapseBlock::Diagonal { scale } => Some((Index::Identity, Scale::fit(scale.clone()))),
        _ => None,
    }
}

/// The logical shape an index map over `count` elements is fitted on.
fn shape_of(index: &Index, count: usize) -> Vec<usize> {
    match index {
        Index::Strided { shape, .. } => shape.clone(),
        _ => vec![count],
    }
}

/// Reading `count` elements through (`outer`, `outer_scale`), each of which reads through
/// (`inner`, `inner_scale`): element `e` reads `inner(outer(e))` times
/// `outer_scale[e] · inner_scale[outer(e)]`.
fn through(outer: &Index, outer_scale: &Scale, count: usize, inner: &Index, inner_scale: &Scale) -> (Index, Scale) {
    let index = match outer {
        Index::Identity => inner.clone(),
        _ => inner.after(outer, &shape_of(outer, count)),
    };
    let scale = match (outer, inner_scale) {
        (_, Scale::One) => outer_scale.clone(),
        (_, Scale::Uniform(u)) => outer_scale.times(&Scale::Uniform(*u), count),
        (Index::Identity, inner_scale) => outer_scale.times(inner_scale, count),
        (outer, inner_scale) => {
            let gathered: Vec<f64> = (0..count).map(|e| outer.get(e).map_or(0.0, |p| inner_scale.get(p))).collect();
            outer_scale.times(&Scale::fit(gathered), count)
        }
    };
    (index, scale)
}

/// A selection: which element of what it reads each of its `targets` reads, over `read`
/// elements, and the factors.
struct Selection<'a> {
    index: &'a Index,
    scale: &'a Scale,
    targets: usize,
    read: usize,
}

/// Where the targets of a block land after `selection` reads them: the new target index and
/// factor of each of `count` logical targets (fitted over `shape`), or `None` when the
/// selection reads an element twice (a broadcast after a convolution or a matrix has no
/// structure of its own).
fn retarget(
    target: &Index,
    target_scale: &Scale,
    count: usize,
    shape: &[usize],
    selection: &Selection,
) -> Option<(Index, Scale)> {
    let inverse = selection.index.inverse(selection.targets, selection.read)?;
    let mut entries = vec![NONE; count];
    let mut scale = Vec::with_capacity(count);
    target.for_each(count, |t, p| {
        let j = p.map_or(NONE, |p| inverse[p]);
        entries[t] = j;
        scale.push(target_scale.get(t) * if j == NONE { 1.0 } else { selection.scale.get(j as usize) });
    });
    Some((Index::from_entries(shape, entries), Scale::fit(scale)))
}

/// The composition when it keeps a structure.
fn structured(op: &SynapseBlock, term: &SynapseBlock) -> Option<SynapseBlock> {
    if let Some((op_index, op_scale)) = as_selection(op) {
        let targets = op.targets();
        let selection = Selection { index: &op_index, scale: &op_scale, targets, read: op.sources() };
        if let Some((term_index, term_scale)) = as_selection(term) {
            let (source, scale) = through(&op_index, &op_scale, targets, &term_index, &term_scale);
            return Some(SynapseBlock::Select(SelectBlock { targets, sources: term.sources(), source, scale }));
        }
        return match term {
            SynapseBlock::Conv(conv) => {
                let shape = conv.out_shape.to_vec();
                let count = conv.logical_targets();
                let (target, target_scale) = retarget(&conv.target, &conv.target_scale, count, &shape, &selection)?;
                Some(SynapseBlock::Conv(ConvBlock { target, target_scale, targets, ..conv.clone() }))
            }
            SynapseBlock::Dense(dense) => {
                let shape = [dense.outer, dense.outputs, dense.inner];
                let count = dense.logical_targets();
                let (target, target_scale) = retarget(&dense.target, &dense.target_scale, count, &shape, &selection)?;
                Some(SynapseBlock::Dense(DenseBlock { target, target_scale, targets, ..dense.clone() }))
            }
            _ => None,
        };
    }
    if let Some((term_index, term_scale)) = as_selection(term) {
        return match op {
            SynapseBlock::Conv(conv) => {
                let count = conv.logical_sources();
                let (source, source_scale) = through(&conv.source, &conv.source_scale, count, &term_index, &term_scale);
                Some(SynapseBlock::Conv(ConvBlock { source, source_scale, sources: term.sources(), ..conv.clone() }))
            }
            SynapseBlock::Dense(dense) => {
                let count = dense.logical_sources();
                let (source, source_scale) =
                    through(&dense.source, &dense.source_scale, count, &term_index, &term_scale);
                Some(SynapseBlock::Dense(DenseBlock { source, source_scale, sources: term.sources(), ..dense.clone() }))
            }
            _ => None,
        };
    }
    match (op, term) {
        (SynapseBlock::Dense(outer), SynapseBlock::Dense(inner)) => chain_dense(outer, inner),
        _ => None,
    }
}

/// Two matrices along the same axis of the same tokens: one matrix, their product.
fn chain_dense(op: &DenseBlock, term: &DenseBlock) -> Option<SynapseBlock> {
    let aligned = op.outer == term.outer
        && op.inner == term.inner
        && op.inputs == term.outputs
        && op.source.is_identity()
        && term.target.is_identity()
        && op.sources == term.targets;
    if !aligned {
        return None;
    }
    // The factors between the two matrices must depend on the feature alone.
    let mid = op.logical_sources();
    let factor = |e: usize| op.source_scale.get(e) * term.target_scale.get(e);
    let per_feature: Vec<f64> = (0..op.inputs).map(|k| factor(k * op.inner)).collect();
    for e in 0..mid {
        let k = (e / op.inner) % op.inputs;
        if factor(e) != per_feature[k] {
            return None;
        }
    }
    let mut values = vec![0.0; op.outputs * term.inputs];
    for n in 0..op.outputs {
        for (k, &factor) in per_feature.iter().enumerate() {
            let w = op.matrix.get(n, k) * factor;
            if w == 0.0 {
                continue;
            }
            for j in 0..term.inputs {
                values[n * term.inputs + j] += w * term.matrix.get(k, j);
            }
        }
    }
    Some(SynapseBlock::Dense(DenseBlock {
        outer: op.outer,
        inputs: term.inputs,
        outputs: op.outputs,
        inner: op.inner,
        matrix: Matrix::owned(op.outputs, term.inputs, values),
        source: term.source.clone(),
        source_scale: term.source_scale.clone(),
        target: op.target.clone(),
        target_scale: op.target_scale.clone(),
        sources: term.sources,
        targets: op.targets,
    }))
}

/// Adds `term` to `terms`. A term from a source already present merges with it where the two
/// are one structure (selections through the same index map) or either is an explicit sparse
/// matrix (their sum, within [`SPARSE_BUDGET`]); otherwise both stay, as two blocks from the
/// same source, and a selection whose synapses the other block already has is marked as
/// overlapping (its synapses are counted once).
pub fn merge_term(terms: &mut Vec<Term>, mut term: Term) {
    let Some(existing) = terms.iter_mut().find(|t| t.source == term.source && !t.overlap) else {
        terms.push(term);
        return;
    };
    match (&mut existing.block, &term.block) {
        (SynapseBlock::Select(a), SynapseBlock::Select(b)) if a.source == b.source && a.sources == b.sources => {
            let sum: Vec<f64> = (0..a.targets).map(|t| a.scale.get(t) + b.scale.get(t)).collect();
            a.scale = Scale::fit(sum);
        }
        (a, b) if matches!(a, SynapseBlock::Sparse { .. }) || matches!(b, SynapseBlock::Sparse { .. }) => {
            if a.synapses() + b.synapses() > SPARSE_BUDGET {
                terms.push(term);
                return;
            }
            let sum = &to_csr(a) + &to_csr(b);
            *a = SynapseBlock::Sparse { matrix: sum.to_csc() };
        }
        (a, b) => {
            if covers(a, b) {
                term.overlap = true;
            } else if covers(b, a) {
                existing.overlap = true;
            }
            terms.push(term);
        }
    }
}

/// Whether every synapse of the selection `small` joins a pair that the dense block `big` joins.
fn covers(big: &SynapseBlock, small: &SynapseBlock) -> bool {
    let (SynapseBlock::Dense(dense), SynapseBlock::Select(select)) = (big, small) else { return false };
    if dense.targets != select.targets || dense.sources != select.sources {
        return false;
    }
    let (Some(targets), Some(sources)) = (
        dense.target.inverse(dense.logical_targets(), dense.targets),
        dense.source.inverse(dense.logical_sources(), dense.sources),
    ) else {
        return false;
    };
    // Logical target (o, n, i) reads logical sources (o, k, i) for every k.
    let token = |logical: usize, extent: usize| (logical / (extent * dense.inner), logical % dense.inner);
    let mut covered = true;
    select.source.for_each(select.targets, |t, p| {
        let Some(p) = p else { return };
        covered &= match (targets[t], sources[p]) {
            (NONE, _) | (_, NONE) => false,
            (lt, ls) => token(lt as usize, dense.outputs) == token(ls as usize, dense.inputs),
        };
    });
    covered
}

/// `x @ W` or `W @ x` for a constant `W` holding a batch of matrices, as an explicit sparse
/// matrix (rows: output elements, columns: `x`'s elements), refused beyond [`SPARSE_BUDGET`].
pub fn batched_matmul(
    x_shape: &[usize],
    w: &ArrayViewD<f64>,
    activation_first: bool,
    out_shape: &[usize],
) -> Result<CsMat<f64>, String> {
    let promote = |s: &[usize], first: bool| -> Vec<usize> {
        match s.len() {
            0 => vec![1, 1],
            1 if first => vec![1, s[0]],
            1 => vec![s[0], 1],
            _ => s.to_vec(),
        }
    };
    let (a_shape, b_shape) = if activation_first {
        (promote(x_shape, true), promote(w.shape(), false))
    } else {
        (promote(w.shape(), true), promote(x_shape, false))
    };
    let (m, k, n) = (a_shape[a_shape.len() - 2], a_shape[a_shape.len() - 1], b_shape[b_shape.len() - 1]);
    if b_shape[b_shape.len() - 2] != k {
        return Err(format!("MatMul shapes {a_shape:?} and {b_shape:?} do not fit"));
    }
    let batch_a = &a_shape[..a_shape.len() - 2];
    let batch_b = &b_shape[..b_shape.len() - 2];
    let rank = batch_a.len().max(batch_b.len());
    let mut batch_out = vec![1; rank];
    for (i, d) in batch_a.iter().rev().enumerate() {
        batch_out[rank - 1 - i] = *d;
    }
    for (i, d) in batch_b.iter().rev().enumerate() {
        let slot = &mut batch_out[rank - 1 - i];
        *slot = (*slot).max(*d);
    }
    let batches: usize = batch_out.iter().product();
    let rows: usize = out_shape.iter().product();
    if rows != batches * m * n {
        return Err(format!("MatMul output {out_shape:?} does not fit {a_shape:?} @ {b_shape:?}"));
    }
    let entries = (batches * m * n * k) as u64;
    if entries > SPARSE_BUDGET {
        return Err(format!(
            "a batch of constant matrices applied to an activation would need {entries} explicit synapses (more than {SPARSE_BUDGET})"
        ));
    }
    let a_index = broadcast_indices(batch_a, &batch_out);
    let b_index = broadcast_indices(batch_b, &batch_out);
    let wf: Vec<f64> = w.iter().copied().collect();
    let x_size: usize = x_shape.iter().product();
    let mut tri = sprs::TriMat::new((rows, x_size));
    for b in 0..batches {
        for i in 0..m {
            for j in 0..n {
                let row = (b * m + i) * n + j;
                for kk in 0..k {
                    if activation_first {
                        let col = a_index[b] * m * k + i * k + kk;
                        tri.add_triplet(row, col, wf[b_index[b] * k * n + kk * n + j]);
                    } else {
                        let col = b_index[b] * k * n + kk * n + j;
                        tri.add_triplet(row, col, wf[a_index[b] * m * k + i * k + kk]);
                    }
                }
            }
        }
    }
    Ok(tri.to_csr())
}
