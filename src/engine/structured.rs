//! Kernels of the structured blocks: dense matrices applied along an axis, elementwise selections,
//! and the index maps and factors that surround a convolution or a matrix. They read a source as
//! a dense vector (0/1 for spikes, real values for relays and the encoder) and skip zeros, so
//! inactive sources cost only the test. Every target sums its terms in an order fixed by the
//! active sources alone, with separate multiplies and adds: the same bits on every instruction
//! set and thread count.

use super::isa::{Isa, Level};
use super::spike_values::add_where_spiked;
use super::token_group::{self, SourceMajor, GROUP};
use crate::real::Real;
use crate::snn::{DenseBlock, Index, Run, Scale, SelectBlock, Weights};

/// Output features summed together in registers, in bytes.
const CHUNK_BYTES: usize = 256;

/// Per-worker buffers of the structured kernels.
#[derive(Default)]
pub struct StructuredScratch<F> {
    /// A block's logical sources (after its index map and factors).
    pub(super) logical_in: Vec<F>,
    /// A block's logical targets (before its index map).
    pub(super) logical_out: Vec<F>,
    /// The active inputs of one token: index and value.
    active: Vec<(u32, F)>,
}

impl<F: Real> StructuredScratch<F> {
    /// Bytes the buffers hold.
    pub fn bytes(&self) -> usize {
        (self.logical_in.capacity() + self.logical_out.capacity()) * std::mem::size_of::<F>()
            + self.active.capacity() * std::mem::size_of::<(u32, F)>()
    }
}

/// How [`combine_mapped`] puts a term into its destination.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Combine {
    /// `dest = term`, 0 at a hole.
    Assign,
    /// `dest += term`, nothing at a hole.
    Add,
}

/// For the logical elements `start..start + dest.len()` of `source`, puts the term
/// `values[source(e)] · scale[e]` into `dest[e - start]` as `combine` says; a run at a time where
/// the map's runs are long (a copy or a fill where nothing is scaled). A factor of one is not
/// multiplied (x · 1 = x exactly, so the bits are those of the product).
#[inline(always)]
pub(super) fn combine_mapped<F: Real>(
    source: &Index,
    scale: &Scale<F>,
    values: &[F],
    start: usize,
    dest: &mut [F],
    combine: Combine,
) {
    let put = |d: &mut F, v: F| match combine {
        Combine::Assign => *d = v,
        Combine::Add => *d += v,
    };
    let end = start + dest.len();
    if !source.has_long_runs() {
        return source.for_each_in(start, end, |e, p| match p {
            Some(p) => put(&mut dest[e - start], values[p] * scale.get(e)),
            None if combine == Combine::Assign => dest[e - start] = F::zero(),
            None => {}
        });
    }
    source.for_each_run_in(start, end, |first, len, run| {
        let dest = &mut dest[first - start..][..len];
        let Some(Run { base, stride }) = run else {
            if combine == Combine::Assign {
                dest.fill(F::zero());
            }
            return;
        };
        match (scale, stride) {
            (Scale::One, 1) if combine == Combine::Assign => dest.copy_from_slice(&values[base..base + len]),
            (Scale::One, 0) if combine == Combine::Assign => dest.fill(values[base]),
            (Scale::One, 1) => dest.iter_mut().zip(&values[base..base + len]).for_each(|(d, &v)| put(d, v)),
            (Scale::One, _) => dest.iter_mut().enumerate().for_each(|(k, d)| put(d, values[base + k * stride])),
            (Scale::Uniform(s), 1) => dest.iter_mut().zip(&values[base..base + len]).for_each(|(d, &v)| put(d, v * *s)),
            (Scale::Uniform(s), _) => {
                dest.iter_mut().enumerate().for_each(|(k, d)| put(d, values[base + k * stride] * *s))
            }
            (Scale::Each(factors), 1) => dest
                .iter_mut()
                .zip(&values[base..base + len])
                .zip(&factors[first..first + len])
                .for_each(|((d, &v), &s)| put(d, v * s)),
            (Scale::Each(factors), _) => dest
                .iter_mut()
                .zip(&factors[first..first + len])
                .enumerate()
                .for_each(|(k, (d, &s))| put(d, values[base + k * stride] * s)),
        }
    })
}

/// Writes `out[e] = values[source(e)] · scale[e]` (0 where the map has a hole).
pub(super) fn gather_logical<F: Real>(source: &Index, scale: &Scale<F>, values: &[F], out: &mut [F]) {
    combine_mapped(source, scale, values, 0, out, Combine::Assign)
}

/// Adds `out[t] · scale[t]` into `acc[target(t)]`.
pub(super) fn scatter_logical<F: Real>(target: &Index, scale: &Scale<F>, out: &[F], acc: &mut [F]) {
    match (target, scale) {
        (Index::Identity, Scale::One) => acc.iter_mut().zip(out).for_each(|(a, &y)| *a += y),
        (Index::Identity, _) => acc.iter_mut().zip(out).enumerate().for_each(|(t, (a, &y))| *a += y * scale.get(t)),
        _ if !target.has_long_runs() => target.for_each(out.len(), |t, p| {
            if let Some(p) = p {
                acc[p] += out[t] * scale.get(t);
            }
        }),
        _ => target.for_each_run_in(0, out.len(), |first, len, run| {
            let out = &out[first..first + len];
            match run {
                None => {}
                Some(Run { base, stride: 1 }) => {
                    let acc = &mut acc[base..base + len];
                    match scale {
                        Scale::One => acc.iter_mut().zip(out).for_each(|(a, &y)| *a += y),
                        _ => {
                            acc.iter_mut().zip(out).enumerate().for_each(|(k, (a, &y))| *a += y * scale.get(first + k))
                        }
                    }
                }
                Some(Run { base, stride }) => {
                    out.iter().enumerate().for_each(|(k, &y)| acc[base + k * stride] += y * scale.get(first + k))
                }
            }
        }),
    }
}

/// The matrix of a dense kernel: the model's own storage when it is in the simulation's
/// precision and laid out along an axis the kernels read, a prepared copy otherwise.
enum Rows<F> {
    Owned(Vec<F>),
    Shared { weights: Weights, offset: usize },
}

impl<F: Real> Rows<F> {
    fn slice(&self) -> &[F] {
        match self {
            Rows::Owned(rows) => rows,
            Rows::Shared { weights, offset } => {
                &F::stored_slice(weights).expect("shared weights are in the simulation's precision")[*offset..]
            }
        }
    }
}

/// How the matrix is laid out.
#[derive(Clone, Copy)]
enum Layout {
    /// `[input k][output n]`, rows `row_len` apart, `chunk` (dividing the row) outputs summed
    /// together in registers over a token's active inputs: events are skipped.
    SourceMajor { row_len: usize, chunk: usize },
    /// `[output n][input k]`, rows `row_len` apart: each output is a dot product over all inputs
    /// in sixteen fixed partial sums (a spike or a zero adds nothing).
    TargetMajor { row_len: usize },
}

/// Partial sums of a dot product, whatever the vector width: the same bits on every CPU.
const LANES: usize = 16;

/// A dense block prepared for simulation.
pub struct DenseKernel<F> {
    outer: usize,
    inputs: usize,
    outputs: usize,
    inner: usize,
    rows: Rows<F>,
    layout: Layout,
    source: Index,
    source_scale: Scale<F>,
    target: Index,
    target_scale: Scale<F>,
    isa: Isa,
}

/// The largest power of two at most `limit` that divides `n`.
fn dividing_chunk(n: usize, limit: usize) -> usize {
    let mut chunk = 1;
    while chunk * 2 <= limit && n.is_multiple_of(chunk * 2) {
        chunk *= 2;
    }
    chunk
}

impl<F: Real> DenseKernel<F> {
    /// Prepares `block`, sharing the model's weights where their precision and layout allow.
    pub(crate) fn new(block: &DenseBlock, isa: Isa) -> Self {
        let m = &block.matrix;
        let limit = CHUNK_BYTES / std::mem::size_of::<F>();
        let shared = F::stored_slice(&m.weights).is_some() && block.inputs > 0 && block.outputs > 0;
        let (rows, layout) = if shared && m.output_stride == 1 && m.input_stride >= block.outputs {
            let chunk = dividing_chunk(block.outputs, limit);
            let layout = Layout::SourceMajor { row_len: m.input_stride, chunk };
            (Rows::Shared { weights: m.weights.clone(), offset: m.offset }, layout)
        } else if shared && m.input_stride == 1 && m.output_stride >= block.inputs && block.outputs > 1 {
            let layout = Layout::TargetMajor { row_len: m.output_stride };
            (Rows::Shared { weights: m.weights.clone(), offset: m.offset }, layout)
        } else {
            let chunk = limit.min(block.outputs.next_power_of_two()).max(1);
            let row_len = block.outputs.div_ceil(chunk) * chunk;
            let mut rows = vec![F::zero(); block.inputs * row_len];
            for n in 0..block.outputs {
                for k in 0..block.inputs {
                    rows[k * row_len + n] = F::of(m.get(n, k));
                }
            }
            (Rows::Owned(rows), Layout::SourceMajor { row_len, chunk })
        };
        DenseKernel {
            outer: block.outer,
            inputs: block.inputs,
            outputs: block.outputs,
            inner: block.inner,
            rows,
            layout,
            source: block.source.clone(),
            source_scale: block.source_scale.cast(),
            target: block.target.clone(),
            target_scale: block.target_scale.cast(),
            isa,
        }
    }

    /// Prepares `block` for the instruction set of this CPU.
    pub fn prepare(block: &DenseBlock) -> Self {
        Self::new(block, Isa::detect())
    }

    /// Bytes the kernel holds of its own (shared weights are the model's).
    pub fn bytes(&self) -> usize {
        let f = std::mem::size_of::<F>();
        let rows = match &self.rows {
            Rows::Owned(rows) => rows.len() * f,
            Rows::Shared { .. } => 0,
        };
        rows + (self.source.stored_entries() + self.target.stored_entries()) * 4
            + (self.source_scale.stored() + self.target_scale.stored()) * f
    }

    /// Logical source and target counts (for scratch sizes).
    pub fn logical_sizes(&self) -> (usize, usize) {
        (self.outer * self.inputs * self.inner, self.outer * self.outputs * self.inner)
    }

    /// Adds `A u` to `acc` for the physical source values `values` (0/1 for spikes).
    pub fn add(&self, values: &[F], binary: bool, scratch: &mut StructuredScratch<F>, acc: &mut [F]) {
        let (sources, targets) = self.logical_sizes();
        let direct_in = matches!((&self.source, &self.source_scale), (Index::Identity, Scale::One));
        let mut logical_in = std::mem::take(&mut scratch.logical_in);
        let x: &[F] = if direct_in {
            &values[..sources]
        } else {
            logical_in.resize(sources, F::zero());
            gather_logical(&self.source, &self.source_scale, values, &mut logical_in);
            &logical_in
        };
        // Without factors, a spike adds the weight row as it is.
        let ones = binary && self.source_scale.is_one();
        let mut y = std::mem::take(&mut scratch.logical_out);
        y.clear();
        y.resize(targets, F::zero());
        match self.isa.level() {
            Level::Baseline => self.product(x, ones, &mut scratch.active, &mut y),
            // SAFETY: `Isa::detect` found the feature on this CPU.
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => unsafe { self.product_avx2(x, ones, &mut scratch.active, &mut y) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { self.product_avx512(x, ones, &mut scratch.active, &mut y) },
        }
        scatter_logical(&self.target, &self.target_scale, &y, acc);
        scratch.logical_in = logical_in;
        scratch.logical_out = y;
    }

    /// Whether [`DenseKernel::add_spike_bits`] can compute the block: the physical sources are the
    /// logical ones, without factors, and the matrix acts along an outer axis (`inner > 1`), so
    /// that each weight meets a contiguous row of spikes.
    fn spike_rows(&self) -> bool {
        self.inner > 1 && matches!((&self.source, &self.source_scale), (Index::Identity, Scale::One))
    }

    /// Whether the simulation reads the block's spikes as bits ([`DenseKernel::add_spike_bits`]):
    /// where it can, with AVX-512's masked adds (without them, the 0/1 values and the vectorised
    /// product are faster than a branch per spike).
    pub fn reads_spike_bits(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self.isa.level() == Level::Avx512 {
            return self.spike_rows();
        }
        false
    }

    /// [`DenseKernel::add`] on spikes given as bits (spike `i` is bit `i % 64` of word `i / 64`):
    /// the same sums in the same order, with no 0/1 value written out. Only for a matrix along an
    /// outer axis reading its physical sources without factors.
    pub fn add_spike_bits(&self, bits: &[u64], scratch: &mut StructuredScratch<F>, acc: &mut [F]) {
        assert!(self.spike_rows(), "the kernel reads its sources through a map");
        let mut y = std::mem::take(&mut scratch.logical_out);
        y.clear();
        y.resize(self.outer * self.outputs * self.inner, F::zero());
        match self.isa.level() {
            // SAFETY: `Isa::detect` found the feature on this CPU.
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { self.spike_bits_product_avx512(bits, &mut y) },
            _ => self.spike_bits_product(bits, &mut y),
        }
        scatter_logical(&self.target, &self.target_scale, &y, acc);
        scratch.logical_out = y;
    }

    /// The row loops compiled with the masked adds they call, so that those inline.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn spike_bits_product_avx512(&self, bits: &[u64], y: &mut [F]) {
        self.spike_bits_product(bits, y)
    }

    /// `y = W s` on logical tensors, for spikes `s` given as bits.
    #[inline(always)]
    fn spike_bits_product(&self, bits: &[u64], y: &mut [F]) {
        let rows = self.rows.slice();
        let (k_len, n_len, inner) = (self.inputs, self.outputs, self.inner);
        for (o, yo) in y.chunks_exact_mut(n_len * inner).enumerate() {
            let row_start = |k: usize| (o * k_len + k) * inner;
            match self.layout {
                Layout::SourceMajor { row_len, .. } => {
                    for k in 0..k_len {
                        let weights = &rows[k * row_len..k * row_len + n_len];
                        for (yn, &w) in yo.chunks_exact_mut(inner).zip(weights) {
                            add_where_spiked(self.isa, yn, w, bits, row_start(k));
                        }
                    }
                }
                Layout::TargetMajor { row_len } => {
                    for (n, yn) in yo.chunks_exact_mut(inner).enumerate() {
                        for (k, &w) in rows[n * row_len..n * row_len + k_len].iter().enumerate() {
                            add_where_spiked(self.isa, yn, w, bits, row_start(k));
                        }
                    }
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn product_avx2(&self, x: &[F], ones: bool, active: &mut Vec<(u32, F)>, y: &mut [F]) {
        self.product(x, ones, active, y)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn product_avx512(&self, x: &[F], ones: bool, active: &mut Vec<(u32, F)>, y: &mut [F]) {
        self.product(x, ones, active, y)
    }

    /// `y = W x` on logical tensors.
    #[inline(always)]
    fn product(&self, x: &[F], ones: bool, active: &mut Vec<(u32, F)>, y: &mut [F]) {
        let rows = self.rows.slice();
        let (k_len, n_len, inner) = (self.inputs, self.outputs, self.inner);
        match self.layout {
            Layout::TargetMajor { row_len } if inner == 1 => {
                for (xo, yo) in x.chunks_exact(k_len).zip(y.chunks_exact_mut(n_len)) {
                    for (n, out) in yo.iter_mut().enumerate() {
                        *out = dot(&rows[n * row_len..n * row_len + k_len], xo);
                    }
                }
            }
            Layout::TargetMajor { row_len } => {
                for (xo, yo) in x.chunks_exact(k_len * inner).zip(y.chunks_exact_mut(n_len * inner)) {
                    for (n, yn) in yo.chunks_exact_mut(inner).enumerate() {
                        for (&w, xk) in rows[n * row_len..n * row_len + k_len].iter().zip(xo.chunks_exact(inner)) {
                            yn.iter_mut().zip(xk).for_each(|(y, &v)| *y += w * v);
                        }
                    }
                }
            }
            Layout::SourceMajor { row_len, .. } if inner > 1 => {
                for (xo, yo) in x.chunks_exact(k_len * inner).zip(y.chunks_exact_mut(n_len * inner)) {
                    for (k, xk) in xo.chunks_exact(inner).enumerate() {
                        // Without an early exit, so that the test vectorises.
                        if !xk.iter().fold(false, |any, &v| any | (v != F::zero())) {
                            continue;
                        }
                        let row = &rows[k * row_len..k * row_len + n_len];
                        for (yn, &w) in yo.chunks_exact_mut(inner).zip(row) {
                            yn.iter_mut().zip(xk).for_each(|(y, &v)| *y += w * v);
                        }
                    }
                }
            }
            Layout::SourceMajor { row_len, chunk } => {
                let matrix = SourceMajor { rows, row_len, inputs: k_len, outputs: n_len };
                for (xg, yg) in x.chunks(k_len * GROUP).zip(y.chunks_mut(n_len * GROUP)) {
                    let whole = !ones && xg.len() == k_len * GROUP && xg.iter().all(|&v| v != F::zero());
                    if whole && token_group::group(self.isa, matrix, xg, yg) {
                        continue;
                    }
                    for (xo, yo) in xg.chunks_exact(k_len).zip(yg.chunks_exact_mut(n_len)) {
                        active.clear();
                        active.extend(
                            xo.iter().enumerate().filter(|(_, &v)| v != F::zero()).map(|(k, &v)| (k as u32, v)),
                        );
                        match chunk {
                            1 => token::<F, 1>(rows, row_len, active, ones, yo),
                            2 => token::<F, 2>(rows, row_len, active, ones, yo),
                            4 => token::<F, 4>(rows, row_len, active, ones, yo),
                            8 => token::<F, 8>(rows, row_len, active, ones, yo),
                            16 => token::<F, 16>(rows, row_len, active, ones, yo),
                            32 => token::<F, 32>(rows, row_len, active, ones, yo),
                            64 => token::<F, 64>(rows, row_len, active, ones, yo),
                            n => unreachable!("chunk of {n} outputs"),
                        }
                    }
                }
            }
        }
    }
}

/// `Σ w[k] x[k]` in [`LANES`] partial sums (element `k` into sum `k mod LANES`) added in a
/// fixed tree.
#[inline(always)]
fn dot<F: Real>(w: &[F], x: &[F]) -> F {
    let mut sums = [F::zero(); LANES];
    let mut wc = w.chunks_exact(LANES);
    let mut xc = x.chunks_exact(LANES);
    for (wl, xl) in (&mut wc).zip(&mut xc) {
        for j in 0..LANES {
            sums[j] += wl[j] * xl[j];
        }
    }
    for (j, (&w, &x)) in wc.remainder().iter().zip(xc.remainder()).enumerate() {
        sums[j] += w * x;
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for j in 0..width {
            sums[j] += sums[j + width];
        }
    }
    sums[0]
}

/// One token's outputs, `N` at a time held in registers over all its active inputs.
#[inline(always)]
fn token<F: Real, const N: usize>(rows: &[F], row_len: usize, active: &[(u32, F)], ones: bool, y: &mut [F]) {
    for c0 in (0..y.len()).step_by(N) {
        let mut banks = [[F::zero(); N]; 2];
        let row = |k: u32| -> &[F; N] { rows[k as usize * row_len + c0..][..N].try_into().unwrap() };
        let mut pairs = active.chunks_exact(2);
        for pair in &mut pairs {
            for (bank, &(k, v)) in banks.iter_mut().zip(pair) {
                let w = row(k);
                if ones {
                    bank.iter_mut().zip(w).for_each(|(s, &w)| *s += w);
                } else {
                    bank.iter_mut().zip(w).for_each(|(s, &w)| *s += v * w);
                }
            }
        }
        if let [(k, v)] = pairs.remainder() {
            let w = row(*k);
            if ones {
                banks[0].iter_mut().zip(w).for_each(|(s, &w)| *s += w);
            } else {
                banks[0].iter_mut().zip(w).for_each(|(s, &w)| *s += *v * w);
            }
        }
        let live = N.min(y.len() - c0);
        for (k, out) in y[c0..c0 + live].iter_mut().enumerate() {
            *out = banks[0][k] + banks[1][k];
        }
    }
}

/// Adds `A u` of a selection block to `acc` for the physical source values `values`.
pub(super) fn add_selected<F: Real>(block: &SelectBlock<F>, values: &[F], acc: &mut [F]) {
    combine_mapped(&block.source, &block.scale, values, 0, &mut acc[..block.targets], Combine::Add)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snn::{Matrix, SynapseBlock, Weights};

    fn block(outer: usize, inputs: usize, outputs: usize, inner: usize, mapped: bool, layout: usize) -> DenseBlock {
        let weights: Vec<f64> = (0..inputs * outputs).map(|i| ((i as f64) * 0.37).sin()).collect();
        // Row-major [n][k], or [k][n] (x @ W), or a copy with every weight at a stride of two.
        let matrix = match layout {
            0 => Matrix::owned(outputs, inputs, weights),
            1 => Matrix { weights: Weights::from_f64(weights), offset: 0, output_stride: 1, input_stride: outputs },
            _ => {
                let spread = weights.iter().flat_map(|&w| [w, 0.0]).collect();
                Matrix { weights: Weights::from_f64(spread), offset: 0, output_stride: 2 * inputs, input_stride: 2 }
            }
        };
        let mut dense = DenseBlock::new(outer, inputs, outputs, inner, matrix);
        if mapped {
            let sources = dense.logical_sources();
            let targets = dense.logical_targets();
            dense.source = Index::fit(&[sources], |e| Some(sources - 1 - e));
            dense.source_scale = Scale::Each((0..sources).map(|e| 0.5 + (e % 3) as f64).collect());
            dense.target = Index::fit(&[targets], |t| (t % 5 != 3).then_some(targets - 1 - t));
            dense.target_scale = Scale::Uniform(1.5);
        }
        dense
    }

    #[test]
    fn matches_the_reference_product() {
        let cases = [(3, 7, 5, 1), (2, 40, 70, 1), (2, 6, 3, 4), (1, 33, 1, 1), (2, 50, 96, 1), (1, 37, 19, 3)];
        for ((outer, inputs, outputs, inner), layout) in cases.into_iter().flat_map(|c| (0..3).map(move |l| (c, l))) {
            for mapped in [false, true] {
                let dense = block(outer, inputs, outputs, inner, mapped, layout);
                let kernel = DenseKernel::<f64>::new(&dense, Isa::detect());
                let mut scratch = StructuredScratch::default();
                let values: Vec<f64> =
                    (0..dense.sources).map(|j| if j % 3 == 0 { 0.0 } else { (j as f64 * 1.1).cos() }).collect();
                let spikes: Vec<f64> = (0..dense.sources).map(|j| ((j * 7) % 3 == 1) as u8 as f64).collect();
                let generic = SynapseBlock::Dense(dense.clone());
                for (input, binary) in [(&values, false), (&spikes, true)] {
                    let mut expected = vec![0.25; dense.targets];
                    generic.multiply_add(input, &mut expected);
                    let mut got = vec![0.25; dense.targets];
                    kernel.add(input, binary, &mut scratch, &mut got);
                    for (g, e) in got.iter().zip(&expected) {
                        assert!((g - e).abs() < 1e-12, "{outer}×{inputs}→{outputs}×{inner}: {g} vs {e}");
                    }
                }
            }
        }
    }

    /// A kernel along an outer axis reads the spike bits directly: the same sums in the same order
    /// as on the 0/1 values, for both weight layouts, in either precision.
    fn spike_bits_give_the_bits_of_spike_values<F: Real>() {
        for (outer, inputs, outputs, inner) in [(2, 6, 3, 4), (1, 37, 1, 197), (3, 64, 1, 70), (1, 5, 9, 16)] {
            for layout in 0..3 {
                let dense = block(outer, inputs, outputs, inner, false, layout);
                let kernel = DenseKernel::<F>::new(&dense, Isa::detect());
                assert!(kernel.spike_rows());
                let spikes: Vec<F> =
                    (0..dense.sources).map(|j| F::of(((j * 7 + j / 5) % 3 == 1) as u8 as f64)).collect();
                let mut bits = vec![0u64; dense.sources.div_ceil(64)];
                for (j, &s) in spikes.iter().enumerate() {
                    bits[j / 64] |= ((s == F::one()) as u64) << (j % 64);
                }
                let mut scratch = StructuredScratch::default();
                let mut from_values = vec![F::of(0.25); dense.targets];
                kernel.add(&spikes, true, &mut scratch, &mut from_values);
                for isa in [Isa::detect(), Isa::baseline()] {
                    let kernel = DenseKernel::<F>::new(&dense, isa);
                    let mut from_bits = vec![F::of(0.25); dense.targets];
                    kernel.add_spike_bits(&bits, &mut scratch, &mut from_bits);
                    assert_eq!(from_bits, from_values, "{outer}×{inputs}→{outputs}×{inner}, layout {layout}, {isa:?}");
                }
            }
        }
        let mapped = DenseKernel::<F>::new(&block(2, 6, 3, 4, true, 0), Isa::detect());
        assert!(
            !mapped.spike_rows() && !mapped.reads_spike_bits(),
            "sources read through a map are gathered as values"
        );
        let portable = DenseKernel::<F>::new(&block(2, 6, 3, 4, false, 0), Isa::baseline());
        assert!(!portable.reads_spike_bits(), "without masked adds the 0/1 values are read");
    }

    #[test]
    fn spike_bits_give_the_bits_of_spike_values_f32() {
        spike_bits_give_the_bits_of_spike_values::<f32>();
    }

    #[test]
    fn spike_bits_give_the_bits_of_spike_values_f64() {
        spike_bits_give_the_bits_of_spike_values::<f64>();
    }

    /// Tokens whose inputs are all non-zero go through the grouped kernel where the CPU has one;
    /// every token must get the bits the one-token kernel (the portable build) gives it.
    fn grouped_tokens_have_the_bits_of_single_tokens<F: Real>() {
        // 13 tokens: two whole groups (the second with one zero input) and a tail of one; output
        // counts on and off the vector width.
        for (inputs, outputs) in [(7, 70), (40, 196), (33, 16), (384, 45)] {
            let dense = block(13, inputs, outputs, 1, false, 1);
            let values: Vec<F> = (0..dense.sources)
                .map(|j| if j == 9 * inputs + 3 { F::zero() } else { F::of((j as f64 * 1.1).cos() * 3.0 + 0.01) })
                .collect();
            let mut scratch = StructuredScratch::default();
            let mut bits = Vec::new();
            for isa in [Isa::baseline(), Isa::detect()] {
                let kernel = DenseKernel::<F>::new(&dense, isa);
                let mut got = vec![F::zero(); dense.targets];
                kernel.add(&values, false, &mut scratch, &mut got);
                bits.push(got.iter().map(|v| v.to_f64_lossless().to_bits()).collect::<Vec<_>>());
            }
            assert_eq!(bits[0], bits[1], "{inputs}→{outputs}");
        }
    }

    #[test]
    fn grouped_tokens_have_the_bits_of_single_tokens_in_both_precisions() {
        grouped_tokens_have_the_bits_of_single_tokens::<f32>();
        grouped_tokens_have_the_bits_of_single_tokens::<f64>();
    }
}
