//! A dense matrix applied along one axis of a tensor: a linear layer applied to every token
//! (MatMul/Gemm on `[tokens, features]`), token mixing, a mean or a sum over an axis, a
//! broadcast. One matrix, stored once (shared with the model), whatever the number of tokens.

use serde::{Deserialize, Serialize};

use super::index::Index;
use super::scale::Scale;
use super::weights::Weights;
use crate::real::Real;
use crate::snn::NetworkError;

/// The matrix `W[n][k]` of a dense block, read from shared storage: weight `(n, k)` is element
/// `offset + n · output_stride + k · input_stride` of `weights` (so a transposed matrix, or the
/// rows of a larger one, need no copy).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    /// The storage.
    pub weights: Weights,
    /// Element of weight `(0, 0)`.
    pub offset: usize,
    /// Step between consecutive outputs `n`.
    pub output_stride: usize,
    /// Step between consecutive inputs `k`.
    pub input_stride: usize,
}

impl Matrix {
    /// Weight `(n, k)`.
    #[inline]
    pub fn get(&self, n: usize, k: usize) -> f64 {
        self.weights.get(self.offset + n * self.output_stride + k * self.input_stride)
    }

    /// The first weight of the `outputs × inputs` matrix, read from `weights` (its storage in
    /// memory order), that is not finite: its row, column and value.
    fn first_non_finite<T: Copy + Into<f64>>(
        &self,
        weights: &[T],
        outputs: usize,
        inputs: usize,
    ) -> Option<(usize, usize, f64)> {
        (0..outputs).find_map(|n| {
            let row = self.offset + n * self.output_stride;
            (0..inputs).find_map(|k| {
                let w: f64 = weights[row + k * self.input_stride].into();
                (!w.is_finite()).then_some((n, k, w))
            })
        })
    }

    /// Number of weights the matrix reads from its storage for `outputs × inputs` (a zero stride
    /// repeats a weight: a mean reads one).
    pub fn stored(&self, outputs: usize, inputs: usize) -> usize {
        let along = |stride: usize, extent: usize| if stride == 0 { 1 } else { extent };
        along(self.output_stride, outputs) * along(self.input_stride, inputs)
    }

    /// A matrix of `outputs × inputs` f64 values, row-major.
    pub fn owned(outputs: usize, inputs: usize, values: Vec<f64>) -> Self {
        debug_assert_eq!(values.len(), outputs * inputs);
        Matrix { weights: Weights::from_f64(values), offset: 0, output_stride: inputs, input_stride: 1 }
    }

    /// The `outputs × inputs` weights, row-major, as f64.
    pub fn to_rows(&self, outputs: usize, inputs: usize) -> Vec<f64> {
        let mut rows = Vec::with_capacity(outputs * inputs);
        for n in 0..outputs {
            rows.extend((0..inputs).map(|k| self.get(n, k)));
        }
        rows
    }
}

/// `y[o, n, i] = Σ_k W[n][k] · x[o, k, i]` over logical tensors `x: [outer, inputs, inner]` and
/// `y: [outer, outputs, inner]`. Logical source element `e` reads physical source `source(e)`
/// times `source_scale[e]`; logical target `t` adds, times `target_scale[t]`, into physical
/// target `target(t)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DenseBlock<W = f64> {
    /// Leading (token) extent.
    pub outer: usize,
    /// Contracted extent `k`.
    pub inputs: usize,
    /// Produced extent `n`.
    pub outputs: usize,
    /// Trailing extent, carried through.
    pub inner: usize,
    /// The matrix.
    pub matrix: Matrix,
    /// Where each logical source is read from.
    pub source: Index,
    /// A factor per logical source.
    pub source_scale: Scale<W>,
    /// Where each logical target is written to.
    pub target: Index,
    /// A factor per logical target.
    pub target_scale: Scale<W>,
    /// Number of physical source elements.
    pub sources: usize,
    /// Number of physical target elements.
    pub targets: usize,
}

impl<W: Real> DenseBlock<W> {
    /// A plain dense block over `[outer, inputs, inner] → [outer, outputs, inner]`.
    pub fn new(outer: usize, inputs: usize, outputs: usize, inner: usize, matrix: Matrix) -> Self {
        DenseBlock {
            outer,
            inputs,
            outputs,
            inner,
            matrix,
            source: Index::Identity,
            source_scale: Scale::One,
            target: Index::Identity,
            target_scale: Scale::One,
            sources: outer * inputs * inner,
            targets: outer * outputs * inner,
        }
    }

    /// Number of logical source elements.
    pub fn logical_sources(&self) -> usize {
        self.outer * self.inputs * self.inner
    }

    /// Number of logical target elements.
    pub fn logical_targets(&self) -> usize {
        self.outer * self.outputs * self.inner
    }

    /// Number of weights of the matrix in its storage.
    pub fn matrix_weights(&self) -> usize {
        self.matrix.stored(self.outputs, self.inputs)
    }

    /// Per `(outer, inner)` token, how many of its logical targets (`live_targets`) and sources
    /// (`live_sources`) exist (a map with holes reads or writes nothing for some).
    fn live(&self) -> (Vec<u32>, Vec<u32>) {
        let tokens = self.outer * self.inner;
        let count = |index: &Index, extent: usize| -> Vec<u32> {
            if !index.has_holes() {
                return vec![extent as u32; tokens];
            }
            let mut live = vec![0u32; tokens];
            index.for_each(self.outer * extent * self.inner, |e, p| {
                if p.is_some() {
                    let (o, i) = (e / (extent * self.inner), e % self.inner);
                    live[o * self.inner + i] += 1;
                }
            });
            live
        };
        (count(&self.target, self.outputs), count(&self.source, self.inputs))
    }

    /// Synapses leaving each physical source.
    pub fn fan_out(&self) -> Vec<u32> {
        let (live_targets, _) = self.live();
        let mut out = vec![0u32; self.sources];
        self.source.for_each(self.logical_sources(), |e, p| {
            if let Some(p) = p {
                let (o, i) = (e / (self.inputs * self.inner), e % self.inner);
                out[p] += live_targets[o * self.inner + i];
            }
        });
        out
    }

    /// Synapses reaching each physical target.
    pub fn fan_in(&self) -> Vec<u32> {
        let (_, live_sources) = self.live();
        let mut out = vec![0u32; self.targets];
        self.target.for_each(self.logical_targets(), |t, p| {
            if let Some(p) = p {
                let (o, i) = (t / (self.outputs * self.inner), t % self.inner);
                out[p] += live_sources[o * self.inner + i];
            }
        });
        out
    }

    /// Number of synapses.
    pub fn synapses(&self) -> u64 {
        let (live_targets, live_sources) = self.live();
        if !self.source.has_holes() {
            return live_targets.iter().map(|&n| n as u64 * self.inputs as u64).sum();
        }
        live_targets.iter().zip(&live_sources).map(|(&n, &k)| n as u64 * k as u64).sum()
    }

    /// Calls `visit(physical target, physical source, weight)` for every synapse, factors included.
    pub fn for_each_synapse(&self, mut visit: impl FnMut(usize, usize, W)) {
        let sources = self.source.to_entries(self.logical_sources());
        let targets = self.target.to_entries(self.logical_targets());
        for o in 0..self.outer {
            for n in 0..self.outputs {
                for i in 0..self.inner {
                    let t = (o * self.outputs + n) * self.inner + i;
                    let Some(target) = physical(targets[t]) else { continue };
                    for k in 0..self.inputs {
                        let e = (o * self.inputs + k) * self.inner + i;
                        let Some(source) = physical(sources[e]) else { continue };
                        let w = W::of(self.matrix.get(n, k)) * self.source_scale.get(e) * self.target_scale.get(t);
                        visit(target, source, w);
                    }
                }
            }
        }
    }

    /// Adds `A u` for a dense vector `u` of physical source values to `acc` (physical targets).
    pub fn multiply_add(&self, u: &[W], acc: &mut [W]) {
        let mut x = vec![W::zero(); self.logical_sources()];
        self.source.for_each(x.len(), |e, p| {
            if let Some(p) = p {
                x[e] = u[p] * self.source_scale.get(e);
            }
        });
        let mut y = vec![W::zero(); self.logical_targets()];
        match (self.matrix.weights.as_f32(), self.matrix.weights.as_f64()) {
            (Some(w), _) => self.product(w, &x, &mut y),
            (_, Some(w)) => self.product(w, &x, &mut y),
            _ => unreachable!("weights are stored contiguously"),
        }
        self.target.for_each(y.len(), |t, p| {
            if let Some(p) = p {
                acc[p] += y[t] * self.target_scale.get(t);
            }
        });
    }

    /// `y = W x` on logical tensors, reading the weights where they are stored: along the rows
    /// of the storage (an update per input when outputs are adjacent, a dot product per output
    /// otherwise).
    fn product<S: Copy + Into<f64>>(&self, storage: &[S], x: &[W], y: &mut [W]) {
        let m = &self.matrix;
        let weight = |n: usize, k: usize| W::of(storage[m.offset + n * m.output_stride + k * m.input_stride].into());
        let (k_len, n_len, inner) = (self.inputs, self.outputs, self.inner);
        for (xo, yo) in x.chunks_exact(k_len * inner).zip(y.chunks_exact_mut(n_len * inner)) {
            if m.output_stride == 1 && m.input_stride > 0 && inner == 1 {
                for (k, &v) in xo.iter().enumerate() {
                    if v != W::zero() {
                        let row = &storage[m.offset + k * m.input_stride..][..n_len];
                        yo.iter_mut().zip(row).for_each(|(y, &w)| *y += W::of(w.into()) * v);
                    }
                }
            } else if m.output_stride == 1 && m.input_stride > 0 {
                for (k, xk) in xo.chunks_exact(inner).enumerate() {
                    if xk.iter().all(|&v| v == W::zero()) {
                        continue;
                    }
                    let row = &storage[m.offset + k * m.input_stride..][..n_len];
                    for (yn, &w) in yo.chunks_exact_mut(inner).zip(row) {
                        let w = W::of(w.into());
                        yn.iter_mut().zip(xk).for_each(|(y, &v)| *y += w * v);
                    }
                }
            } else if inner == 1 {
                for (n, yn) in yo.iter_mut().enumerate() {
                    *yn = xo.iter().enumerate().fold(W::zero(), |s, (k, &v)| s + weight(n, k) * v);
                }
            } else {
                for (n, yn) in yo.chunks_exact_mut(inner).enumerate() {
                    for (k, xk) in xo.chunks_exact(inner).enumerate() {
                        let w = weight(n, k);
                        yn.iter_mut().zip(xk).for_each(|(y, &v)| *y += w * v);
                    }
                }
            }
        }
    }

    /// The same block with its factors in another precision (the matrix stays shared).
    pub fn cast<T: Real>(&self) -> DenseBlock<T> {
        DenseBlock {
            outer: self.outer,
            inputs: self.inputs,
            outputs: self.outputs,
            inner: self.inner,
            matrix: self.matrix.clone(),
            source: self.source.clone(),
            source_scale: self.source_scale.cast(),
            target: self.target.clone(),
            target_scale: self.target_scale.cast(),
            sources: self.sources,
            targets: self.targets,
        }
    }

    /// Checks extents, the matrix's storage, the factors and the index maps.
    pub fn validate(&self) -> Result<(), NetworkError> {
        let bad = |what: String| Err(NetworkError::Block(format!("dense block: {what}")));
        let m = &self.matrix;
        if self.inputs > 0 && self.outputs > 0 {
            let last = m.offset + (self.outputs - 1) * m.output_stride + (self.inputs - 1) * m.input_stride;
            if last >= m.weights.len() {
                return bad(format!(
                    "a {}×{} matrix needs weight {last}, the storage holds {}",
                    self.outputs,
                    self.inputs,
                    m.weights.len()
                ));
            }
            let non_finite = match (m.weights.as_f32(), m.weights.as_f64()) {
                (Some(weights), _) => m.first_non_finite(weights, self.outputs, self.inputs),
                (_, Some(weights)) => m.first_non_finite(weights, self.outputs, self.inputs),
                _ => return bad("its weights are not stored contiguously".into()),
            };
            if let Some((n, k, w)) = non_finite {
                return bad(format!("weight ({n}, {k}) is {w}"));
            }
        }
        let (sources, targets) = (self.logical_sources(), self.logical_targets());
        for (scale, count, what) in [(&self.target_scale, targets, "target"), (&self.source_scale, sources, "source")] {
            if let Scale::Each(values) = scale {
                if values.len() != count {
                    return bad(format!("{} {what} factors for {count} {what}s", values.len()));
                }
            }
            if let Some((i, w)) = scale.non_finite() {
                return bad(format!("{what} factor {i} is {w}"));
            }
        }
        super::validate_index(&self.source, sources, self.sources, "source").or_else(bad)?;
        super::validate_index(&self.target, targets, self.targets, "target").or_else(bad)?;
        if self.target.inverse(targets, self.targets).is_none() {
            return bad("two logical targets write the same physical target".into());
        }
        Ok(())
    }
}

fn physical(entry: u32) -> Option<usize> {
    (entry != super::index::NONE).then_some(entry as usize)
}
