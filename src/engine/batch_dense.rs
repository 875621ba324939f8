//! A matrix applied along an axis of binary spikes (a linear layer applied to every token, token
//! mixing) computed for a batch of inputs at once, as a register-tiled product of 0/1 values: the
//! matrix is read once per step for every token of every input of the batch.
//!
//! The spikes of the batch are spread into a layout `[input][token][input feature k]` (the
//! source's factor where it fired, 0 elsewhere; for a block without index map over the last axis,
//! each input's spikes in the source's own order). A register tile of [`ROWS`] tokens × two
//! vectors of consecutive output features is summed over every `k`, in ascending order, one fused
//! multiply-add per term, the weights of a term read as vectors from the matrix `[k][n]` as the
//! model stores it. Its sums are the product in the layout `[input][token][output feature]`: the
//! targets themselves when the block writes them without index map.
//!
//! Exact: each target is the sum, in ascending `k`, of the weights of the sources that fired
//! (times their factors; adding zero changes nothing). The order does not depend on the batch,
//! the place a target takes in a tile or the instruction set, so the result is the same bit for
//! bit for every batch size, thread count and CPU.

use std::any::TypeId;

use super::batch::BatchKernel;
#[cfg(target_arch = "x86_64")]
use super::isa::cast_mut;
use super::isa::{Isa, Level};
use crate::real::Real;
use crate::snn::synapse::NONE;
use crate::snn::{DenseBlock, Scale, Weights};

/// Tokens of one register tile.
pub const ROWS: usize = 14;

/// Terms summed per pass over a tile: the weights of one block of output features stay in the
/// cache closest to the core across the tokens.
const K_BLOCK: usize = 256;

/// Vectors of output features in one register tile.
const VECTORS: usize = 2;

/// Fewest output features a block needs for the tile to pay (a mean or a sum over an axis keeps
/// its event-driven kernel).
const MIN_OUTPUTS: usize = 8;

/// Fewest multiply-accumulates per input a block's product needs to be batched (the engine's own
/// bound between its small and large kernels): below it, spreading and writing out a batch costs
/// more than the product saves, and the event-driven kernels stay (ConvNeXt's 28×28 fixture ran
/// 20 % slower batched).
const MIN_PRODUCT: u64 = super::TILED_SYNAPSES;

/// Output features of one register tile in precision `F` (64-byte vectors).
fn tile_columns<F>() -> usize {
    VECTORS * 64 / std::mem::size_of::<F>()
}

/// Whether [`BatchDense`] computes `dense`.
pub(crate) fn handles<W: Real>(dense: &DenseBlock<W>) -> bool {
    let product = dense.logical_sources() as u64 * dense.outputs as u64;
    dense.outputs >= MIN_OUTPUTS && dense.inputs > 0 && dense.outer * dense.inner > 0 && product > MIN_PRODUCT
}

/// The matrix: the model's storage when it is in the simulation's precision with the outputs
/// adjacent, a copy `[k][n]` otherwise.
enum Matrix<F> {
    Owned(Vec<F>),
    Shared { weights: Weights, offset: usize },
}

impl<F: Real> Matrix<F> {
    /// The weights from `(k = 0, n = 0)`: weight `(n, k)` is element `k · stride + n`.
    fn slice(&self) -> &[F] {
        match self {
            Matrix::Owned(rows) => rows,
            Matrix::Shared { weights, offset } => {
                &F::stored_slice(weights).expect("shared weights are in the simulation's precision")[*offset..]
            }
        }
    }
}

/// Where the spikes of a physical source are spread.
enum Spread<F> {
    /// Source `j` is logical element `j` (no map): its position and factor follow from `j`.
    Direct,
    /// Physical source `j` is read by the logical elements `entries[starts[j]..starts[j + 1]]`,
    /// each `(position, factor)`.
    Mapped { starts: Vec<u32>, entries: Vec<(u32, F)> },
}

/// A dense block from a spiking source, prepared for batches.
pub struct BatchDense<F> {
    outer: usize,
    inputs: usize,
    outputs: usize,
    inner: usize,
    matrix: Matrix<F>,
    /// Step between the weights of consecutive `k`.
    stride: usize,
    spread: Spread<F>,
    /// Factors per logical source (for a source without map).
    source_scale: Scale<F>,
    /// Per logical target, its physical target (`None`: the identity).
    target: Option<Vec<u32>>,
    /// The runs `first..end` of output features some target reads (the others are not
    /// computed: a block whose targets keep a part of its outputs, as attention's query, key and
    /// value each keep a third of one matrix's).
    live_outputs: Vec<(usize, usize)>,
    /// Every physical target is written by some logical target.
    covers_targets: bool,
    /// Number of physical targets.
    targets: usize,
    /// Factors per physical target.
    target_scale: Scale<F>,
    isa: Isa,
}

impl<F: Real> BatchDense<F> {
    /// Prepares `dense` for this CPU's widest instruction set, if it is a block this kernel
    /// computes (at least 8 outputs, more than 2²¹ multiply-accumulates per input).
    pub fn prepare(dense: &DenseBlock) -> Option<Self> {
        handles(dense).then(|| Self::new(dense, Isa::detect()))
    }

    /// Prepares `dense` (which [`handles`] must accept), sharing the model's weights where their
    /// precision and layout allow.
    pub(crate) fn new(dense: &DenseBlock, isa: Isa) -> Self {
        let (k_len, n_len) = (dense.inputs, dense.outputs);
        let m = &dense.matrix;
        let (matrix, stride) = if F::stored_slice(&m.weights).is_some() && m.output_stride == 1 {
            (Matrix::Shared { weights: m.weights.clone(), offset: m.offset }, m.input_stride)
        } else {
            let mut rows = vec![F::zero(); k_len * n_len];
            for k in 0..k_len {
                for n in 0..n_len {
                    rows[k * n_len + n] = F::of(m.get(n, k));
                }
            }
            (Matrix::Owned(rows), n_len)
        };
        let logical_sources = dense.logical_sources();
        let source_scale: Scale<F> = dense.source_scale.cast();
        let spread = if dense.source.is_identity() {
            Spread::Direct
        } else {
            let mut starts = vec![0u32; dense.sources + 1];
            dense.source.for_each(logical_sources, |_, p| {
                if let Some(p) = p {
                    starts[p + 1] += 1;
                }
            });
            for j in 0..dense.sources {
                starts[j + 1] += starts[j];
            }
            let mut fill = starts.clone();
            let mut entries = vec![(0, F::zero()); starts[dense.sources] as usize];
            dense.source.for_each(logical_sources, |e, p| {
                if let Some(p) = p {
                    let position = spread_position(e, dense.inputs, dense.inner);
                    entries[fill[p] as usize] = (position as u32, source_scale.get(e));
                    fill[p] += 1;
                }
            });
            Spread::Mapped { starts, entries }
        };
        let logical_targets = dense.logical_targets();
        let (target, covers_targets, target_scale) = if dense.target.is_identity() {
            let scale = match dense.target_scale.cast() {
                // Targets past the logical ones stay 0, whatever their factor.
                Scale::Each(mut values) => {
                    values.resize(dense.targets, F::one());
                    Scale::Each(values)
                }
                other => other,
            };
            (None, logical_targets == dense.targets, scale)
        } else {
            let entries = dense.target.to_entries(logical_targets);
            let written = entries.iter().filter(|&&p| p != NONE).count();
            // The factors move with their targets; a target no logical one writes stays 0.
            let scale = match &dense.target_scale {
                Scale::Each(values) => {
                    let mut physical = vec![F::one(); dense.targets];
                    for (t, &p) in entries.iter().enumerate().filter(|(_, &p)| p != NONE) {
                        physical[p as usize] = F::of(values[t]);
                    }
                    Scale::Each(physical)
                }
                uniform => uniform.cast(),
            };
            (Some(entries), written == dense.targets, scale)
        };
        let live_outputs = live_outputs(dense.outer, n_len, dense.inner, target.as_deref());
        BatchDense {
            outer: dense.outer,
            inputs: k_len,
            outputs: n_len,
            inner: dense.inner,
            matrix,
            stride,
            spread,
            source_scale: if dense.source.is_identity() { source_scale } else { Scale::One },
            target,
            live_outputs,
            covers_targets,
            targets: dense.targets,
            target_scale,
            isa,
        }
    }

    /// Tokens: `outer × inner` positions the matrix is applied at.
    fn tokens(&self) -> usize {
        self.outer * self.inner
    }

    /// Whether the product's layout `[token][output feature]` is the targets' own.
    fn writes_targets(&self) -> bool {
        self.target.is_none() && self.inner == 1
    }

    /// Bytes of the prepared weights (a copy, when the model's cannot be read in place) and
    /// tables.
    pub fn bytes(&self) -> usize {
        let f = std::mem::size_of::<F>();
        let matrix = match &self.matrix {
            Matrix::Owned(rows) => rows.len() * f,
            Matrix::Shared { .. } => 0,
        };
        let spread = match &self.spread {
            Spread::Direct => 0,
            Spread::Mapped { starts, entries } => starts.len() * 4 + entries.len() * std::mem::size_of::<(u32, F)>(),
        };
        matrix
            + spread
            + self.target.as_ref().map_or(0, Vec::len) * 4
            + self.live_outputs.len() * 2 * std::mem::size_of::<usize>()
            + (self.source_scale.stored() + self.target_scale.stored()) * f
    }

    /// Elements of the spread layout for `lanes` inputs.
    pub fn spread_len(&self, lanes: usize) -> usize {
        self.inputs * self.tokens() * lanes
    }

    /// Writes the spikes of `lanes` inputs into `spread` (see [`BatchDense::spread_len`]):
    /// `fired(b)` lists the sources input `b` fired.
    pub fn spread<'a>(&self, lanes: usize, fired: impl Fn(usize) -> &'a [u32], spread: &mut [F]) {
        let per_input = self.inputs * self.tokens();
        for (b, spread) in spread[..per_input * lanes].chunks_exact_mut(per_input).enumerate() {
            spread.fill(F::zero());
            match &self.spread {
                Spread::Direct => {
                    // Sources past the logical ones are read by no target.
                    for &j in fired(b).iter().take_while(|&&j| (j as usize) < per_input) {
                        let position = spread_position(j as usize, self.inputs, self.inner);
                        spread[position] = self.source_scale.get(j as usize);
                    }
                }
                Spread::Mapped { starts, entries } => {
                    for &j in fired(b) {
                        let reading = &entries[starts[j as usize] as usize..starts[j as usize + 1] as usize];
                        for &(position, factor) in reading {
                            spread[position as usize] = factor;
                        }
                    }
                }
            }
        }
    }

    /// Writes the product for `lanes` inputs from their spread spikes into `product`,
    /// `[input][token][output feature]` (unscaled, logical; output features no target keeps are
    /// not written). Returns the multiply-accumulates performed.
    pub fn product(&self, lanes: usize, spread: &[F], product: &mut [F]) -> u64 {
        self.product_into(lanes, spread, product, self.tokens() * self.outputs)
    }

    /// [`BatchDense::product`] with input `b`'s product starting at `b × lane_stride`.
    fn product_into(&self, lanes: usize, spread: &[F], product: &mut [F], lane_stride: usize) -> u64 {
        let tokens = self.tokens();
        assert!(spread.len() >= self.spread_len(lanes), "spread layout too short");
        assert!(product.len() >= (lanes - 1) * lane_stride + tokens * self.outputs, "product too short");
        let weights = self.matrix.slice();
        let step = tile_columns::<F>();
        let mut macs = 0;
        for first_term in (0..self.inputs).step_by(K_BLOCK) {
            let terms = K_BLOCK.min(self.inputs - first_term);
            let columns =
                self.live_outputs.iter().flat_map(|&(first, end)| (first..end).step_by(step).map(move |n| (n, end)));
            for (first, end) in columns {
                let columns = step.min(end - first);
                for b in 0..lanes {
                    for token in (0..tokens).step_by(ROWS) {
                        let rows = ROWS.min(tokens - token);
                        let tile = Tile {
                            weights: &weights[first_term * self.stride + first..],
                            weight_stride: self.stride,
                            spread: &spread[(b * tokens + token) * self.inputs + first_term..],
                            spread_stride: self.inputs,
                            terms,
                            out: b * lane_stride + token * self.outputs + first,
                            out_stride: self.outputs,
                            rows,
                            columns,
                            continued: first_term > 0,
                        };
                        self.run_tile(&tile, product);
                        macs += (terms * rows * columns) as u64;
                    }
                }
            }
        }
        macs
    }

    /// Writes `[input][token][output feature]` values as `[input][physical target]`.
    fn scatter(&self, lanes: usize, logical: &[F], products: &mut [F]) {
        if !self.covers_targets {
            products.fill(F::zero());
        }
        // Blocks of tokens, a feature at a time across the block: a map that transposes tokens
        // and features (ConvNeXt's, Mixer's) then writes runs of adjacent targets.
        const TOKEN_BLOCK: usize = 16;
        let per_input = self.tokens() * self.outputs;
        for (b, values) in logical.chunks_exact(per_input).take(lanes).enumerate() {
            let products = &mut products[b * self.targets..][..self.targets];
            for first in (0..self.outer).step_by(TOKEN_BLOCK) {
                let block = first..(first + TOKEN_BLOCK).min(self.outer);
                for n in 0..self.outputs {
                    for o in block.clone() {
                        for i in 0..self.inner {
                            let value = values[(o * self.inner + i) * self.outputs + n];
                            let t = (o * self.outputs + n) * self.inner + i;
                            match &self.target {
                                None => products[t] = value,
                                Some(entries) if entries[t] != NONE => products[entries[t] as usize] = value,
                                Some(_) => {}
                            }
                        }
                    }
                }
            }
        }
    }

    fn run_tile(&self, tile: &Tile<F>, product: &mut [F]) {
        #[cfg(target_arch = "x86_64")]
        if self.isa.level() == Level::Avx512 {
            if TypeId::of::<F>() == TypeId::of::<f32>() {
                // SAFETY: `F` is `f32` (same type, same layout); `Isa::detect` found AVX-512F.
                return unsafe { avx512::tile_f32(cast(tile), cast_mut(product)) };
            }
            if TypeId::of::<F>() == TypeId::of::<f64>() {
                // SAFETY: as above, for `f64`.
                return unsafe { avx512::tile_f64(cast(tile), cast_mut(product)) };
            }
        }
        #[cfg(target_arch = "x86_64")]
        if self.isa.level() == Level::Avx2 {
            if TypeId::of::<F>() == TypeId::of::<f32>() {
                // SAFETY: `F` is `f32` (same type, same layout); `Isa::detect` found AVX2 and
                // `new` found FMA.
                return unsafe { avx2::tile_f32(cast(tile), cast_mut(product)) };
            }
            if TypeId::of::<F>() == TypeId::of::<f64>() {
                // SAFETY: as above, for `f64`.
                return unsafe { avx2::tile_f64(cast(tile), cast_mut(product)) };
            }
        }
        tile_generic(tile, product)
    }
}

/// The runs `first..end` of output features `n` of `[outer][outputs][inner]` targets at least
/// one of which `target` (per logical target; `None`: all of them) writes.
fn live_outputs(outer: usize, outputs: usize, inner: usize, target: Option<&[u32]>) -> Vec<(usize, usize)> {
    let live = |n: usize| {
        target.is_none_or(|entries| {
            (0..outer).any(|o| entries[(o * outputs + n) * inner..][..inner].iter().any(|&p| p != NONE))
        })
    };
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for n in (0..outputs).filter(|&n| live(n)) {
        match runs.last_mut() {
            Some((_, end)) if *end == n => *end = n + 1,
            _ => runs.push((n, n + 1)),
        }
    }
    runs
}

/// The spread position (within an input) of logical source `e` of `[outer][inputs][inner]`:
/// `token × inputs + k`.
fn spread_position(e: usize, inputs: usize, inner: usize) -> usize {
    if inner == 1 {
        return e;
    }
    let (o, k, i) = (e / (inputs * inner), e / inner % inputs, e % inner);
    (o * inner + i) * inputs + k
}

impl<F: Real> BatchKernel<F> for BatchDense<F> {
    fn spread_len(&self, lanes: usize) -> usize {
        BatchDense::spread_len(self, lanes)
    }

    fn spread_spikes(&self, fired: &[&[u32]], spread: &mut [F]) {
        self.spread(fired.len(), |b| fired[b], spread)
    }

    fn products(&self, lanes: usize, spread: &[F], scratch: &mut Vec<F>, products: &mut [F]) -> u64 {
        if self.writes_targets() {
            let macs = self.product_into(lanes, spread, products, self.targets);
            if !self.covers_targets {
                let logical = self.tokens() * self.outputs;
                products.chunks_exact_mut(self.targets).for_each(|p| p[logical..].fill(F::zero()));
            }
            return macs;
        }
        scratch.resize(self.outputs * self.tokens() * lanes, F::zero());
        let macs = self.product(lanes, spread, scratch);
        self.scatter(lanes, scratch, products);
        macs
    }

    fn target_scale(&self) -> &Scale<F> {
        &self.target_scale
    }

    fn bytes(&self) -> usize {
        BatchDense::bytes(self)
    }
}

/// One register tile: `rows` tokens × `columns` consecutive output features.
struct Tile<'a, F> {
    /// The weights from the tile's first term and column: column `c` of term `k` is element
    /// `k × weight_stride + c`.
    weights: &'a [F],
    weight_stride: usize,
    /// The spread layout from the tile's first row and term: term `k` of row `r` is element
    /// `r × spread_stride + k`.
    spread: &'a [F],
    spread_stride: usize,
    terms: usize,
    /// Index in the product of the tile's first row and column.
    out: usize,
    /// Distance in the product between consecutive rows.
    out_stride: usize,
    rows: usize,
    columns: usize,
    /// The sums continue from the values in the product (a later block of terms).
    continued: bool,
}

/// Reinterprets a tile of `F` as one of `T`.
///
/// # Safety
/// `F` and `T` must be the same type.
#[cfg(target_arch = "x86_64")]
unsafe fn cast<'a, F, T>(tile: &'a Tile<'a, F>) -> &'a Tile<'a, T> {
    &*(tile as *const Tile<'a, F>).cast::<Tile<'a, T>>()
}

/// The tile in portable code: the same fused multiply-adds in the same order as the vector
/// kernels.
fn tile_generic<F: Real>(tile: &Tile<F>, product: &mut [F]) {
    for r in 0..tile.rows {
        let x = &tile.spread[r * tile.spread_stride..][..tile.terms];
        for c in 0..tile.columns {
            let at = tile.out + r * tile.out_stride + c;
            let mut sum = if tile.continued { product[at] } else { F::zero() };
            for (k, &x) in x.iter().enumerate() {
                sum = x.mul_add(tile.weights[k * tile.weight_stride + c], sum);
            }
            product[at] = sum;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::Tile;

    macro_rules! tile_kernel {
        ($name:ident, $rows:ident, $t:ty, $lanes:expr, $zero:ident, $set1:ident, $fmadd:ident,
         $mask_loadu:ident, $mask_storeu:ident, $mask:ty) => {
            /// Runs the tile with the row count dispatched to a constant.
            #[target_feature(enable = "avx512f")]
            pub(super) fn $name(tile: &Tile<$t>, product: &mut [$t]) {
                assert!(tile.terms > 0 && tile.rows > 0 && tile.columns > 0, "an empty tile");
                assert!(tile.columns <= 2 * $lanes, "a tile of {} columns", tile.columns);
                let end = tile.out + (tile.rows - 1) * tile.out_stride + tile.columns;
                assert!(end <= product.len(), "tile past the end of the product");
                let last = (tile.rows - 1) * tile.spread_stride + tile.terms;
                assert!(last <= tile.spread.len(), "tile past the spread layout");
                let last = (tile.terms - 1) * tile.weight_stride + tile.columns;
                assert!(last <= tile.weights.len(), "tile past the weights");
                // SAFETY: the bounds were checked above.
                unsafe { crate::engine::batch::dispatch_rows!(tile.rows, $rows, tile, product) }
            }

            #[target_feature(enable = "avx512f")]
            #[inline]
            unsafe fn $rows<const R: usize>(tile: &Tile<$t>, product: &mut [$t]) {
                let full = |n: usize| -> $mask {
                    if n >= $lanes {
                        !0
                    } else {
                        ((1u32 << n) - 1) as $mask
                    }
                };
                let (low, high) = (full(tile.columns), full(tile.columns.saturating_sub($lanes)));
                let out = product.as_mut_ptr().add(tile.out);
                let mut acc = [[$zero(); 2]; R];
                if tile.continued {
                    for (r, sums) in acc.iter_mut().enumerate() {
                        let row = out.add(r * tile.out_stride);
                        *sums = [$mask_loadu($zero(), low, row), $mask_loadu($zero(), high, row.add($lanes))];
                    }
                }
                let x = tile.spread.as_ptr();
                let mut weights = tile.weights.as_ptr();
                for k in 0..tile.terms {
                    let w0 = $mask_loadu($zero(), low, weights);
                    let w1 = $mask_loadu($zero(), high, weights.add($lanes));
                    for (r, sums) in acc.iter_mut().enumerate() {
                        let x = $set1(*x.add(r * tile.spread_stride + k));
                        sums[0] = $fmadd(x, w0, sums[0]);
                        sums[1] = $fmadd(x, w1, sums[1]);
                    }
                    weights = weights.add(tile.weight_stride);
                }
                for (r, sums) in acc.iter().enumerate() {
                    let row = out.add(r * tile.out_stride);
                    $mask_storeu(row, low, sums[0]);
                    $mask_storeu(row.add($lanes), high, sums[1]);
                }
            }
        };
    }

    tile_kernel!(
        tile_f32,
        rows_f32,
        f32,
        16,
        _mm512_setzero_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_mask_loadu_ps,
        _mm512_mask_storeu_ps,
        __mmask16
    );
    tile_kernel!(
        tile_f64,
        rows_f64,
        f64,
        8,
        _mm512_setzero_pd,
        _mm512_set1_pd,
        _mm512_fmadd_pd,
        _mm512_mask_loadu_pd,
        _mm512_mask_storeu_pd,
        __mmask8
    );
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use crate::engine::batch::lane_masks::{mask_f32, mask_f64};

    use super::Tile;

    /// Most rows of a sub-tile: its 2 × 6 accumulators, two vectors of weights and a broadcast
    /// source take 15 of the 16 vector registers.
    const ROWS: usize = 6;

    macro_rules! tile_kernel {
        ($name:ident, $rows:ident, $full:ident, $part:ident, $t:ty, $lanes:expr, $mask_of:ident, $zero:ident,
         $set1:ident, $fmadd:ident, $loadu:ident, $storeu:ident, $maskload:ident, $maskstore:ident) => {
            /// Runs the tile as sub-tiles of at most [`ROWS`] rows × two vectors of columns, the
            /// rows split evenly, each sub-tile with its row count dispatched to a constant.
            #[target_feature(enable = "avx2,fma")]
            pub(super) fn $name(tile: &Tile<$t>, product: &mut [$t]) {
                assert!(tile.terms > 0 && tile.rows > 0 && tile.columns > 0, "an empty tile");
                assert!(tile.columns <= 4 * $lanes, "a tile of {} columns", tile.columns);
                let end = tile.out + (tile.rows - 1) * tile.out_stride + tile.columns;
                assert!(end <= product.len(), "tile past the end of the product");
                let last = (tile.rows - 1) * tile.spread_stride + tile.terms;
                assert!(last <= tile.spread.len(), "tile past the spread layout");
                let last = (tile.terms - 1) * tile.weight_stride + tile.columns;
                assert!(last <= tile.weights.len(), "tile past the weights");
                let chunks = tile.rows.div_ceil(ROWS);
                for first_column in (0..tile.columns).step_by(2 * $lanes) {
                    let mut first_row = 0;
                    for chunk in 0..chunks {
                        let rows = (tile.rows - first_row).div_ceil(chunks - chunk);
                        let sub = Tile {
                            weights: &tile.weights[first_column..],
                            spread: &tile.spread[first_row * tile.spread_stride..],
                            out: tile.out + first_row * tile.out_stride + first_column,
                            rows,
                            columns: (tile.columns - first_column).min(2 * $lanes),
                            ..*tile
                        };
                        // SAFETY: the sub-tile lies within the tile, whose bounds were checked
                        // above.
                        unsafe {
                            if sub.columns == 2 * $lanes {
                                crate::engine::batch::dispatch_rows!(rows, $full, &sub, product)
                            } else {
                                crate::engine::batch::dispatch_rows!(rows, $part, &sub, product)
                            }
                        }
                        first_row += rows;
                    }
                }
            }

            /// A sub-tile of two full vectors of columns.
            #[target_feature(enable = "avx2,fma")]
            #[inline]
            unsafe fn $full<const R: usize>(tile: &Tile<$t>, product: &mut [$t]) {
                $rows::<R, true>(tile, product)
            }

            /// A sub-tile of fewer columns.
            #[target_feature(enable = "avx2,fma")]
            #[inline]
            unsafe fn $part<const R: usize>(tile: &Tile<$t>, product: &mut [$t]) {
                $rows::<R, false>(tile, product)
            }

            #[target_feature(enable = "avx2,fma")]
            #[inline]
            unsafe fn $rows<const R: usize, const FULL: bool>(tile: &Tile<$t>, product: &mut [$t]) {
                let (low, high) = ($mask_of(tile.columns), $mask_of(tile.columns.saturating_sub($lanes)));
                let load = |at: *const $t, mask: __m256i| if FULL { $loadu(at) } else { $maskload(at, mask) };
                let out = product.as_mut_ptr().add(tile.out);
                let mut acc = [[$zero(); 2]; R];
                if tile.continued {
                    for (r, sums) in acc.iter_mut().enumerate() {
                        let row = out.add(r * tile.out_stride);
                        *sums = [load(row, low), load(row.add($lanes), high)];
                    }
                }
                let x = tile.spread.as_ptr();
                let mut weights = tile.weights.as_ptr();
                for k in 0..tile.terms {
                    let w0 = load(weights, low);
                    let w1 = load(weights.add($lanes), high);
                    for (r, sums) in acc.iter_mut().enumerate() {
                        let x = $set1(*x.add(r * tile.spread_stride + k));
                        sums[0] = $fmadd(x, w0, sums[0]);
                        sums[1] = $fmadd(x, w1, sums[1]);
                    }
                    weights = weights.add(tile.weight_stride);
                }
                for (r, sums) in acc.iter().enumerate() {
                    let row = out.add(r * tile.out_stride);
                    if FULL {
                        $storeu(row, sums[0]);
                        $storeu(row.add($lanes), sums[1]);
                    } else {
                        $maskstore(row, low, sums[0]);
                        $maskstore(row.add($lanes), high, sums[1]);
                    }
                }
            }
        };
    }

    tile_kernel!(
        tile_f32,
        rows_f32,
        full_f32,
        part_f32,
        f32,
        8,
        mask_f32,
        _mm256_setzero_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_maskload_ps,
        _mm256_maskstore_ps
    );
    tile_kernel!(
        tile_f64,
        rows_f64,
        full_f64,
        part_f64,
        f64,
        4,
        mask_f64,
        _mm256_setzero_pd,
        _mm256_set1_pd,
        _mm256_fmadd_pd,
        _mm256_loadu_pd,
        _mm256_storeu_pd,
        _mm256_maskload_pd,
        _mm256_maskstore_pd
    );
}

#[cfg(test)]
mod tests {
    use ndarray::{ArcArray, IxDyn};

    use super::super::structured::{DenseKernel, StructuredScratch};
    use super::super::MAX_LANES;
    use super::*;
    use crate::snn::{Index, Matrix, SynapseBlock};

    /// How a test block stores its matrix.
    #[derive(Clone, Copy, Debug)]
    enum Storage {
        /// `[n][k]` in f64 (a copy is laid out).
        RowsF64,
        /// `[k][n]` in f64, as `x @ W` stores it, inside a larger tensor.
        ColumnsF64,
        /// `[k][n]` in f32.
        ColumnsF32,
    }

    fn matrix(inputs: usize, outputs: usize, storage: Storage) -> Matrix {
        let weight = |n: usize, k: usize| ((n * inputs + k) as f64 * 0.37).sin() as f32 as f64;
        match storage {
            Storage::RowsF64 => {
                Matrix::owned(outputs, inputs, (0..outputs * inputs).map(|i| weight(i / inputs, i % inputs)).collect())
            }
            Storage::ColumnsF64 => {
                let (offset, row) = (5, outputs + 3);
                let mut values = vec![0.0; offset + inputs * row];
                for k in 0..inputs {
                    for n in 0..outputs {
                        values[offset + k * row + n] = weight(n, k);
                    }
                }
                Matrix { weights: Weights::from_f64(values), offset, output_stride: 1, input_stride: row }
            }
            Storage::ColumnsF32 => {
                let values: Vec<f32> = (0..inputs * outputs).map(|i| weight(i % outputs, i / outputs) as f32).collect();
                let weights = Weights::F32(ArcArray::from_shape_vec(IxDyn(&[values.len()]), values).unwrap());
                Matrix { weights, offset: 0, output_stride: 1, input_stride: outputs }
            }
        }
    }

    /// The maps and factors a test block reads and writes through.
    #[derive(Clone, Copy, Debug)]
    enum Around {
        /// None.
        Plain,
        /// Factors per source and per target.
        Scaled,
        /// A reversed source map with factors, a target map with holes and a uniform factor.
        Mapped,
        /// A source read by several tokens (a broadcast), the targets transposed with factors,
        /// more physical sources than the block reads.
        Broadcast,
        /// The targets keep the middle third of the outputs of every token (attention's keys
        /// out of a query-key-value matrix), with factors.
        Part,
    }

    fn block(shape: [usize; 4], storage: Storage, around: Around) -> DenseBlock {
        let [outer, inputs, outputs, inner] = shape;
        let mut dense = DenseBlock::new(outer, inputs, outputs, inner, matrix(inputs, outputs, storage));
        let (sources, targets) = (dense.logical_sources(), dense.logical_targets());
        let factors =
            |n: usize, phase: f64| Scale::Each((0..n).map(|i| 0.75 + 0.5 * (i as f64 * phase).cos()).collect());
        match around {
            Around::Plain => {}
            Around::Scaled => {
                dense.source_scale = factors(sources, 0.3);
                dense.target_scale = factors(targets, 0.7);
            }
            Around::Mapped => {
                dense.source = Index::fit(&[sources], |e| Some(sources - 1 - e));
                dense.source_scale = factors(sources, 0.3);
                dense.target = Index::fit(&[targets], |t| (t % 5 != 3).then_some(targets - 1 - t));
                dense.target_scale = Scale::Uniform(1.5);
            }
            Around::Broadcast => {
                // Logical (o, k, i) reads physical (k, i) of a larger source: every token of
                // `outer` reads the same spikes.
                dense.sources = inputs * inner + 7;
                dense.source = Index::strided(vec![outer, inputs, inner], vec![0, inner, 1], 0);
                // Logical (o, n, i) writes physical (n, o, i).
                dense.target = Index::strided(vec![outer, outputs, inner], vec![inner, outer * inner, 1], 0);
                dense.target_scale = factors(targets, 0.7);
            }
            Around::Part => {
                let (first, end) = (outputs / 3, 2 * outputs / 3);
                dense.targets = outer * (end - first) * inner;
                dense.target = Index::fit(&[targets], |t| {
                    let (o, n, i) = (t / (outputs * inner), t / inner % outputs, t % inner);
                    (first..end).contains(&n).then_some((o * (end - first) + n - first) * inner + i)
                });
                dense.target_scale = factors(targets, 0.7);
            }
        }
        dense.validate().unwrap();
        dense
    }

    fn cases() -> Vec<DenseBlock> {
        let mut cases = Vec::new();
        let shapes = [[3, 7, 9, 1], [2, 40, 70, 1], [2, 6, 16, 4], [1, 33, 8, 3], [5, 50, 96, 1], [1, 300, 20, 2]];
        for (i, shape) in shapes.into_iter().enumerate() {
            let storage = [Storage::RowsF64, Storage::ColumnsF64, Storage::ColumnsF32][i % 3];
            for around in [Around::Plain, Around::Scaled, Around::Mapped, Around::Broadcast, Around::Part] {
                cases.push(block(shape, storage, around));
            }
        }
        // ViT-Tiny's per-token layer on a few tokens, and more terms than one block.
        cases.push(block([3, 192, 768, 1], Storage::ColumnsF32, Around::Plain));
        cases.push(block([2, 600, 30, 1], Storage::RowsF64, Around::Scaled));
        // More tokens than one tile (tiles of 14 and 13 rows), outputs past whole vectors.
        cases.push(block([3, 40, 45, 9], Storage::ColumnsF32, Around::Scaled));
        cases.push(block([2, 300, 45, 10], Storage::RowsF64, Around::Plain));
        cases
    }

    fn fired_of(sources: usize, b: usize) -> Vec<u32> {
        (0..sources as u32).filter(|j| (j * 7 + b as u32 * 3) % 11 < 5).collect()
    }

    /// Each input's product `[input][physical target]` through the batched kernel's interface.
    fn products<F: Real>(dense: &DenseBlock, lanes: usize, isa: Isa) -> Vec<F> {
        let kernel = BatchDense::<F>::new(dense, isa);
        let fired: Vec<Vec<u32>> = (0..lanes).map(|b| fired_of(dense.sources, b)).collect();
        let lists: Vec<&[u32]> = fired.iter().map(Vec::as_slice).collect();
        let mut spread = vec![F::zero(); kernel.spread_len(lanes)];
        kernel.spread_spikes(&lists, &mut spread);
        let mut product = vec![F::of(7.0); dense.targets * lanes];
        let macs = kernel.products(lanes, &spread, &mut Vec::new(), &mut product);
        let outputs = kernel.live_outputs.iter().map(|(first, end)| end - first).sum::<usize>();
        assert_eq!(macs, (dense.logical_sources() * outputs * lanes) as u64, "{dense:?}");
        product
    }

    /// Each lane's product, with the target factors, equals the block's own product and the
    /// event-driven kernel's within rounding (they sum in another order).
    fn check<F: Real>(tolerance: f64) {
        for dense in cases() {
            let generic = SynapseBlock::Dense(dense.cast::<F>());
            let event_driven = DenseKernel::<F>::new(&dense, Isa::detect());
            for lanes in [1, 3, 8, 17] {
                let kernel = BatchDense::<F>::new(&dense, Isa::detect());
                let product = products::<F>(&dense, lanes, Isa::detect());
                for b in 0..lanes {
                    let mut spikes = vec![F::zero(); dense.sources];
                    fired_of(dense.sources, b).into_iter().for_each(|j| spikes[j as usize] = F::one());
                    let mut expected = vec![F::zero(); dense.targets];
                    generic.multiply_add(&spikes, &mut expected);
                    let mut events = vec![F::zero(); dense.targets];
                    event_driven.add(&spikes, true, &mut StructuredScratch::default(), &mut events);
                    for (t, (e, d)) in expected.iter().zip(&events).enumerate() {
                        let got = (product[b * dense.targets + t] * kernel.target_scale().get(t)).to_f64_lossless();
                        for reference in [e.to_f64_lossless(), d.to_f64_lossless()] {
                            assert!(
                                (got - reference).abs() <= tolerance * (1.0 + reference.abs()),
                                "lane {b} of {lanes}, target {t}: {got} vs {reference} in {dense:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn matches_the_block_and_the_event_driven_kernel_in_f64() {
        check::<f64>(1e-12);
    }

    #[test]
    fn matches_the_block_and_the_event_driven_kernel_in_f32() {
        check::<f32>(1e-4);
    }

    /// A sum by hand: two tokens, three inputs, eight outputs, every factor and map at once.
    #[test]
    fn sums_the_weights_of_the_sources_that_fired() {
        let weights: Vec<f64> = (0..24).map(|i| i as f64).collect();
        let mut dense = DenseBlock::new(2, 3, 8, 1, Matrix::owned(8, 3, weights));
        dense.source_scale = Scale::Each(vec![1.0, 2.0, 4.0, 0.5, 0.25, 8.0]);
        dense.target_scale = Scale::Uniform(3.0);
        let kernel = BatchDense::<f64>::new(&dense, Isa::detect());
        // Input 0 fires sources 0 and 2 (token 0, k = 0 and 2) and 4 (token 1, k = 1); input 1
        // fires source 5 (token 1, k = 2).
        let fired: [&[u32]; 2] = [&[0, 2, 4], &[5]];
        let mut spread = vec![0.0; kernel.spread_len(2)];
        kernel.spread_spikes(&fired, &mut spread);
        let mut product = vec![0.0; 2 * 16];
        kernel.products(2, &spread, &mut Vec::new(), &mut product);
        // W(n, k) = 3n + k.
        for n in 0..8 {
            let w = |k: usize| (3 * n + k) as f64;
            assert_eq!(product[n], w(0) * 1.0 + w(2) * 4.0, "input 0, token 0, output {n}");
            assert_eq!(product[8 + n], w(1) * 0.25, "input 0, token 1, output {n}");
            assert_eq!(product[16 + n], 0.0, "input 1, token 0, output {n}");
            assert_eq!(product[24 + n], w(2) * 8.0, "input 1, token 1, output {n}");
        }
        assert_eq!(kernel.target_scale(), &Scale::Uniform(3.0));
    }

    #[test]
    fn batches_the_large_blocks_with_several_outputs() {
        // ViT-Tiny's per-token 192→768 layer and its 768→192 one.
        assert!(handles(&block([197, 192, 768, 1], Storage::ColumnsF32, Around::Plain)));
        assert!(handles(&block([197, 768, 192, 1], Storage::ColumnsF32, Around::Plain)));
        // A 28×28 fixture's layer (49 tokens, 32→128), and a mean over 768 features.
        assert!(!handles(&block([49, 32, 128, 1], Storage::ColumnsF32, Around::Plain)));
        assert!(!handles(&DenseBlock::<f64>::new(
            3136,
            768,
            1,
            1,
            Matrix { weights: Weights::from_f64(vec![1.0 / 768.0]), offset: 0, output_stride: 0, input_stride: 0 }
        )));
    }

    #[test]
    fn computes_only_the_outputs_some_target_keeps() {
        let entries = [NONE, 0, NONE, NONE, 1, 2, NONE, 3, NONE, NONE, NONE, NONE];
        // Two tokens of six outputs: outputs 1, 4 and 5 of token 0, 1 of token 1 are kept.
        assert_eq!(live_outputs(2, 6, 1, Some(&entries)), vec![(1, 2), (4, 6)]);
        assert_eq!(live_outputs(2, 6, 1, None), vec![(0, 6)]);
        let dense = block([4, 10, 30, 1], Storage::RowsF64, Around::Part);
        let kernel = BatchDense::<f64>::new(&dense, Isa::detect());
        assert_eq!(kernel.live_outputs, vec![(10, 20)]);
    }

    /// A target's bits do not depend on the batch size, its lane or the instruction set.
    fn same_bits<F: Real>() {
        for dense in cases() {
            let targets = dense.targets;
            // Input b alone in the last lane of a batch of b + 1, on the portable code.
            let reference: Vec<Vec<F>> = (0..5)
                .map(|b| products::<F>(&dense, b + 1, Isa::baseline())[b * targets..][..targets].to_vec())
                .collect();
            for (lanes, isa) in [(5, Isa::detect()), (5, Isa::baseline()), (MAX_LANES, Isa::detect())] {
                let product = products::<F>(&dense, lanes, isa);
                for (b, expected) in reference.iter().enumerate() {
                    for (t, e) in expected.iter().enumerate() {
                        assert_eq!(
                            product[b * targets + t].to_f64_lossless().to_bits(),
                            e.to_f64_lossless().to_bits(),
                            "lane {b} of {lanes} on {isa:?}, target {t} in {dense:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn batch_size_lane_and_instruction_set_do_not_change_the_bits() {
        same_bits::<f32>();
        same_bits::<f64>();
    }
}
