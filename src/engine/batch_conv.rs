//! A convolution of binary spikes computed for a batch of inputs at once, as a register-tiled
//! product of 0/1 values: the kernel's weights are loaded once per step for every input of the
//! batch, which event lists per input cannot do.
//!
//! The spikes of the batch are spread into a padded layout `[channel][row][column phase]
//! [column / stride][input]` (the source's factor where it fired, 0 elsewhere and in the
//! padding), so that for an output
//! row the sources of one kernel tap and input channel are contiguous over (output column, input).
//! A tile of [`ROWS`] output channels × two vectors of (column, input) lanes is summed in
//! registers over every tap and input channel of its group, in one fixed order.
//!
//! Exact: each target is the sum, in that fixed order, of the weights of the sources that fired
//! (times their factors, each term a fused multiply-add; adding zero changes nothing). The order
//! does not depend on the batch, the lane a target occupies or the instruction set, so the result
//! is the same bit for bit for every batch size, thread count and CPU.

use std::any::TypeId;

use super::batch::{deinterleave, BatchKernel};
#[cfg(target_arch = "x86_64")]
use super::isa::cast_mut;
use super::isa::{Isa, Level};
use super::MAX_LANES;
use crate::real::Real;
use crate::snn::{ConvBlock, Scale};

/// Output channels of one register tile.
pub const ROWS: usize = 14;

/// Terms summed per pass over a tile: the sources of one run and the weights of one tile stay
/// in the caches closest to the core.
const K_BLOCK: usize = 256;

/// Vectors of lanes in one register tile.
const VECTORS: usize = 2;

/// Lanes of one register tile in precision `F` (64-byte vectors).
fn tile_lanes<F>() -> usize {
    VECTORS * 64 / std::mem::size_of::<F>()
}

/// The kernel rows and columns that read some source for a tile, as bit masks.
type LiveTaps = (u64, u64);

/// One term of a tile's sums: the offset of its sources in the spread layout and of its weights
/// in the panel.
type Term = (u32, u32);

/// Geometry of the convolution and of its spread source layout.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Geometry {
    in_shape: [usize; 3],
    out_c: usize,
    out_h: usize,
    out_w: usize,
    groups: usize,
    in_per_group: usize,
    out_per_group: usize,
    /// Kernel size `[kh, kw]`.
    kernel_size: [usize; 2],
    /// Leading padding `[top, left]`.
    pads: [usize; 2],
    /// Vertical stride.
    stride_h: usize,
    /// Horizontal stride: the number of column phases.
    phases: usize,
    /// Rows of the spread layout (padding included).
    rows: usize,
    /// Columns per phase of the spread layout.
    columns: usize,
}

impl Geometry {
    /// Positions (elements per input) of one input channel of the spread layout.
    fn channel_positions(&self) -> usize {
        self.rows * self.phases * self.columns
    }

    /// Positions of the whole spread layout.
    fn positions(&self) -> usize {
        self.in_shape[0] * self.channel_positions()
    }
}

/// A plain convolution (no index maps, no source factors, unit dilation) from a spiking source,
/// prepared for batches.
pub struct BatchConv<F> {
    geometry: Geometry,
    /// `[group][row tile][k][ROWS]` with `k = tap × in channels of group + in channel` (the
    /// terms of a tap that reads padding only are then one contiguous run); rows past the
    /// group's output channels are zero.
    weights: Vec<F>,
    /// Per `k`: the position of its source relative to the tile's first, in the spread layout.
    k_positions: Vec<usize>,
    /// Per source element: its position in the spread layout (`u32::MAX`: read by no target).
    source_positions: Vec<u32>,
    /// Per position of the spread layout: the source element spread there (`u32::MAX`: padding).
    position_sources: Vec<u32>,
    /// Factors per target, applied when the product is read.
    pub target_scale: Scale<F>,
    /// Factors per source: a spike of source `j` is spread as its factor.
    source_scale: Scale<F>,
    isa: Isa,
}

thread_local! {
    /// Per source element, the inputs of the batch that fired it (bit `b` for input `b`).
    static LANE_MASKS: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether [`BatchConv`] computes `conv`.
pub(crate) fn handles<F: Real>(conv: &ConvBlock<F>) -> bool {
    let depthwise = conv.in_shape[0] == conv.groups && conv.out_shape[0] / conv.groups < 8;
    let [kh, kw] = conv.kernel_size;
    let [_, out_h, out_w] = conv.out_shape;
    let [sh, sw] = conv.strides;
    let rows = out_h.saturating_sub(1) * sh + kh;
    let columns = (out_w.saturating_sub(1) * sw + kw).div_ceil(sw) * sw;
    // Offsets into the spread layout of a full batch are 32-bit.
    let addressable = (conv.in_shape[0] * rows * columns + 1) * MAX_LANES < u32::MAX as usize;
    conv.source.is_identity()
        && conv.target.is_identity()
        && conv.dilations == [1, 1]
        && !depthwise
        && addressable
        && out_h * out_w > 0
        && kh <= 64
        && kw <= 64
}

impl<F: Real> BatchConv<F> {
    /// Prepares `conv` for this CPU's widest instruction set, if it is a convolution this kernel
    /// computes (no index maps, unit dilation, not depthwise).
    pub fn prepare(conv: &ConvBlock<F>) -> Option<Self> {
        handles(conv).then(|| Self::new(conv, Isa::detect()))
    }

    /// Prepares `conv` (which [`handles`] must accept).
    pub(crate) fn new(conv: &ConvBlock<F>, isa: Isa) -> Self {
        let [in_c, in_h, in_w] = conv.in_shape;
        let [out_c, out_h, out_w] = conv.out_shape;
        let [kh, kw] = conv.kernel_size;
        let [sh, sw] = conv.strides;
        let [ph, pw] = conv.pads;
        let geometry = Geometry {
            in_shape: conv.in_shape,
            out_c,
            out_h,
            out_w,
            groups: conv.groups,
            in_per_group: in_c / conv.groups,
            out_per_group: out_c / conv.groups,
            kernel_size: conv.kernel_size,
            pads: conv.pads,
            stride_h: sh,
            phases: sw,
            rows: (out_h - 1) * sh + kh,
            columns: ((out_w - 1) * sw + kw).div_ceil(sw),
        };
        let g = &geometry;
        let taps = kh * kw;
        let k_len = g.in_per_group * taps;
        let tiles = g.out_per_group.div_ceil(ROWS);
        let mut weights = vec![F::zero(); g.groups * tiles * k_len * ROWS];
        for co in 0..out_c {
            let (group, within) = (co / g.out_per_group, co % g.out_per_group);
            let panel = (group * tiles + within / ROWS) * k_len * ROWS;
            for k in 0..k_len {
                let (tap, ci) = (k / g.in_per_group, k % g.in_per_group);
                weights[panel + k * ROWS + within % ROWS] = conv.kernel[co * k_len + ci * taps + tap];
            }
        }
        let k_positions = (0..k_len)
            .map(|k| {
                let (tap, ci) = (k / g.in_per_group, k % g.in_per_group);
                let (ky, kx) = (tap / kw, tap % kw);
                ((ci * g.rows + ky) * g.phases + kx % sw) * g.columns + kx / sw
            })
            .collect();
        let mut source_positions = vec![u32::MAX; in_c * in_h * in_w];
        for c in 0..in_c {
            for y in 0..in_h {
                for x in 0..in_w {
                    let (row, column) = (y + ph, x + pw);
                    if row < g.rows && column / sw < g.columns {
                        let position = ((c * g.rows + row) * g.phases + column % sw) * g.columns + column / sw;
                        source_positions[(c * in_h + y) * in_w + x] = position as u32;
                    }
                }
            }
        }
        let mut position_sources = vec![u32::MAX; geometry.positions()];
        for (j, &position) in source_positions.iter().enumerate().filter(|(_, &p)| p != u32::MAX) {
            position_sources[position as usize] = j as u32;
        }
        BatchConv {
            geometry,
            weights,
            k_positions,
            source_positions,
            position_sources,
            target_scale: conv.target_scale.clone(),
            source_scale: conv.source_scale.clone(),
            isa,
        }
    }

    /// Bytes of the prepared weights and tables.
    pub fn bytes(&self) -> usize {
        self.weights.len() * std::mem::size_of::<F>()
            + (self.k_positions.len() * 2 + self.source_positions.len() + self.position_sources.len()) * 4
    }

    /// Elements of the spread layout for `lanes` inputs, with the slack one tile may read past
    /// its end.
    pub fn spread_len(&self, lanes: usize) -> usize {
        self.geometry.positions() * lanes + tile_lanes::<F>()
    }

    /// Writes the spikes of `lanes` inputs into `spread` (see [`BatchConv::spread_len`]):
    /// `fired(b)` lists the sources input `b` fired.
    ///
    /// The inputs that fired each source are first collected as a bit mask per source (small,
    /// in cache), then the layout is written once, position by position, in order.
    pub fn spread<'a>(&self, lanes: usize, fired: impl Fn(usize) -> &'a [u32], spread: &mut [F]) {
        assert!(lanes <= 32, "a batch of {lanes} inputs, at most 32 are spread");
        LANE_MASKS.with_borrow_mut(|masks| {
            masks.clear();
            masks.resize(self.source_positions.len(), 0);
            for b in 0..lanes {
                for &j in fired(b) {
                    masks[j as usize] |= 1 << b;
                }
            }
            let (body, slack) = spread.split_at_mut(self.geometry.positions() * lanes);
            slack.fill(F::zero());
            self.isa.vectorised(
                #[inline(always)]
                || match lanes {
                    32 => self.spread_masks::<32>(masks, body),
                    16 => self.spread_masks::<16>(masks, body),
                    _ => {
                        for (out, &j) in body.chunks_exact_mut(lanes).zip(&self.position_sources) {
                            self.spread_position(masks, j, out);
                        }
                    }
                },
            )
        })
    }

    /// [`BatchConv::spread`]'s writing of the layout for `L` inputs.
    #[inline(always)]
    fn spread_masks<const L: usize>(&self, masks: &[u32], body: &mut [F]) {
        for (out, &j) in body.chunks_exact_mut(L).zip(&self.position_sources) {
            let out: &mut [F; L] = out.try_into().expect("chunks of L");
            self.spread_position(masks, j, out);
        }
    }

    /// Writes one position of the spread layout: the factor of source `j` in the lanes of the
    /// inputs that fired it, 0 elsewhere and at padding (`j` is `u32::MAX`).
    #[inline(always)]
    fn spread_position(&self, masks: &[u32], j: u32, out: &mut [F]) {
        let (mask, factor) = match j {
            u32::MAX => (0, F::zero()),
            j => (masks[j as usize], self.source_scale.get(j as usize)),
        };
        for (b, out) in out.iter_mut().enumerate() {
            *out = if mask >> b & 1 == 1 { factor } else { F::zero() };
        }
    }

    /// Writes the product for `lanes` inputs from their spread spikes into `product`,
    /// `[target][input]` (unscaled: the target factors are applied by the reader). Returns the
    /// multiply-accumulates performed for the inputs (not for the unused lanes of a tile).
    pub fn product(&self, lanes: usize, spread: &[F], product: &mut [F]) -> u64 {
        let mut macs = 0;
        let g = &self.geometry;
        assert!(spread.len() >= self.spread_len(lanes), "spread layout too short");
        assert!(lanes <= MAX_LANES, "a batch of {lanes} inputs, at most {MAX_LANES} are computed together");
        assert_eq!(product.len(), g.out_c * g.out_h * g.out_w * lanes, "product of the wrong size");
        let k_len = self.k_positions.len();
        let tiles = g.out_per_group.div_ceil(ROWS);
        let row_lanes = g.out_w * lanes;
        let plane = g.out_h * row_lanes;
        let step = tile_lanes::<F>();
        // The terms of each pattern of live taps (a few: interior, edges, corners), and the
        // pattern of each run of lanes `(output row, first lane, lanes)`.
        let mut patterns: Vec<(LiveTaps, Vec<Term>)> = Vec::new();
        let mut runs = Vec::new();
        for oy in 0..g.out_h {
            for start in (0..row_lanes).step_by(step) {
                let n = step.min(row_lanes - start);
                let taps = self.live_taps(oy, start / lanes, (start + n - 1) / lanes);
                let pattern = patterns.iter().position(|(p, _)| *p == taps).unwrap_or_else(|| {
                    patterns.push((taps, self.live_terms(taps, lanes)));
                    patterns.len() - 1
                });
                runs.push((oy, start, n, pattern));
            }
        }
        let blocks = patterns.iter().map(|(_, terms)| terms.len().div_ceil(K_BLOCK)).max().unwrap_or(0).max(1);
        for group in 0..g.groups {
            let group_spread = &spread[group * g.in_per_group * g.channel_positions() * lanes..];
            // Blocks of terms outermost, so that one run's sources stay in cache across the
            // output channels; each target continues its sum from the previous block.
            for block in 0..blocks {
                for &(oy, start, n, pattern) in &runs {
                    let terms = &patterns[pattern].1;
                    let first_term = block * K_BLOCK;
                    if first_term >= terms.len() && block > 0 {
                        continue;
                    }
                    let terms = &terms[first_term.min(terms.len())..terms.len().min(first_term + K_BLOCK)];
                    let reach = reach(terms);
                    let row_start = oy * g.stride_h * g.phases * g.columns * lanes;
                    for tile in 0..tiles {
                        let first = tile * ROWS;
                        let rows = ROWS.min(g.out_per_group - first);
                        let tile = Tile {
                            panel: &self.weights[(group * tiles + tile) * k_len * ROWS..][..k_len * ROWS],
                            spread: &group_spread[row_start + start..],
                            terms,
                            reach,
                            out: (group * g.out_per_group + first) * plane + oy * row_lanes + start,
                            out_stride: plane,
                            rows,
                            lanes: n,
                            continued: block > 0,
                        };
                        self.run_tile(&tile, product);
                        macs += (terms.len() * rows * n) as u64;
                    }
                }
            }
        }
        macs
    }

    /// The kernel rows and columns (bit masks) that read a source for output row `oy` and some
    /// output column of `first..=last`: the other taps read padding only.
    fn live_taps(&self, oy: usize, first: usize, last: usize) -> LiveTaps {
        let g = &self.geometry;
        let [kh, kw] = g.kernel_size;
        let [ph, pw] = g.pads;
        let [_, in_h, in_w] = g.in_shape;
        let inside = |position: usize, pad: usize, size: usize| position >= pad && position - pad < size;
        let rows = (0..kh).filter(|ky| inside(oy * g.stride_h + ky, ph, in_h)).fold(0, |m, ky| m | 1 << ky);
        let columns = (0..kw)
            .filter(|kx| (first..=last).any(|ox| inside(ox * g.phases + kx, pw, in_w)))
            .fold(0, |m, kx| m | 1 << kx);
        (rows, columns)
    }

    /// The `(spread offset, panel offset)` of every `k` whose tap is live, in `k` order.
    fn live_terms(&self, (rows, columns): LiveTaps, lanes: usize) -> Vec<Term> {
        let kw = self.geometry.kernel_size[1];
        let tap = |k: usize| k / self.geometry.in_per_group;
        let live = |k: &usize| rows >> (tap(*k) / kw) & 1 == 1 && columns >> (tap(*k) % kw) & 1 == 1;
        (0..self.k_positions.len())
            .filter(live)
            .map(|k| ((self.k_positions[k] * lanes) as u32, (k * ROWS) as u32))
            .collect()
    }

    fn run_tile(&self, tile: &Tile<F>, product: &mut [F]) {
        #[cfg(target_arch = "x86_64")]
        {
            let f32 = TypeId::of::<F>() == TypeId::of::<f32>();
            let f64 = TypeId::of::<F>() == TypeId::of::<f64>();
            match self.isa.level() {
                // SAFETY: `F` is the kernel's type (same type, same layout); `Isa::detect` found
                // the instruction set.
                Level::Avx512 if f32 => return unsafe { avx512::tile_f32(cast(tile), cast_mut(product)) },
                Level::Avx512 if f64 => return unsafe { avx512::tile_f64(cast(tile), cast_mut(product)) },
                Level::Avx2 if f32 => return unsafe { avx2::tile_f32(cast(tile), cast_mut(product)) },
                Level::Avx2 if f64 => return unsafe { avx2::tile_f64(cast(tile), cast_mut(product)) },
                _ => {}
            }
        }
        tile_generic(tile, product)
    }
}

impl<F: Real> BatchKernel<F> for BatchConv<F> {
    fn spread_len(&self, lanes: usize) -> usize {
        BatchConv::spread_len(self, lanes)
    }

    fn spread_spikes(&self, fired: &[&[u32]], spread: &mut [F]) {
        self.spread(fired.len(), |b| fired[b], spread)
    }

    fn products(&self, lanes: usize, spread: &[F], scratch: &mut Vec<F>, products: &mut [F]) -> u64 {
        scratch.resize(products.len(), F::zero());
        let macs = self.product(lanes, spread, scratch);
        deinterleave(scratch, lanes, products, self.isa);
        macs
    }

    fn target_scale(&self) -> &Scale<F> {
        &self.target_scale
    }

    fn bytes(&self) -> usize {
        BatchConv::bytes(self)
    }
}

/// One register tile: `rows` output channels × `lanes` consecutive (column, input) lanes.
struct Tile<'a, F> {
    /// `[k][ROWS]` weights.
    panel: &'a [F],
    /// The spread layout from the tile's first lane at `k` offset 0.
    spread: &'a [F],
    /// `(spread offset, panel offset)` of each term, in summation order.
    terms: &'a [Term],
    /// Bounds of the terms: past the largest spread offset and the largest panel offset.
    reach: Term,
    /// Index in the product of the tile's first row and lane.
    out: usize,
    /// Distance in the product between consecutive output channels.
    out_stride: usize,
    rows: usize,
    lanes: usize,
    /// The sums continue from the values in the product (a later block of terms).
    continued: bool,
}

/// The largest spread offset and panel offset of `terms`.
fn reach(terms: &[Term]) -> Term {
    terms.iter().fold((0, 0), |(o, w), &(offset, weights)| (o.max(offset), w.max(weights)))
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
        for lane in 0..tile.lanes {
            let at = tile.out + r * tile.out_stride + lane;
            let mut sum = if tile.continued { product[at] } else { F::zero() };
            for &(offset, weights) in tile.terms {
                sum = tile.panel[weights as usize + r].mul_add(tile.spread[offset as usize + lane], sum);
            }
            product[at] = sum;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{reach, Tile, ROWS};

    /// How many terms ahead the tile asks for its sources.
    const PREFETCH_TERMS: usize = 8;

    macro_rules! tile_kernel {
        ($name:ident, $rows:ident, $t:ty, $vec:ty, $lanes:expr, $zero:ident, $set1:ident, $fmadd:ident,
         $loadu:ident, $mask_loadu:ident, $mask_storeu:ident, $mask:ty) => {
            /// Runs the tile with the row count dispatched to a constant.
            #[target_feature(enable = "avx512f")]
            pub(super) fn $name(tile: &Tile<$t>, product: &mut [$t]) {
                let end = tile.out + (tile.rows - 1) * tile.out_stride + tile.lanes;
                assert!(end <= product.len(), "tile past the end of the product");
                debug_assert_eq!(tile.reach, reach(tile.terms));
                assert!(tile.reach.0 as usize + 2 * $lanes <= tile.spread.len(), "tile past the spread layout");
                assert!(tile.reach.1 as usize + ROWS <= tile.panel.len(), "tile past the end of the weights");
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
                let (low, high) = (full(tile.lanes), full(tile.lanes.saturating_sub($lanes)));
                let out = product.as_mut_ptr().add(tile.out);
                let mut acc = [[$zero(); 2]; R];
                if tile.continued {
                    for (r, sums) in acc.iter_mut().enumerate() {
                        let row = out.add(r * tile.out_stride);
                        *sums = [$mask_loadu($zero(), low, row), $mask_loadu($zero(), high, row.add($lanes))];
                    }
                }
                let spread = tile.spread.as_ptr();
                let panel = tile.panel.as_ptr();
                for (i, &(offset, weights)) in tile.terms.iter().enumerate() {
                    // Each term reads sources from another channel or tap, seldom in L1: ask for
                    // those of a later term now.
                    if let Some(&(ahead, _)) = tile.terms.get(i + PREFETCH_TERMS) {
                        let x = spread.add(ahead as usize).cast::<i8>();
                        _mm_prefetch::<_MM_HINT_T0>(x);
                        _mm_prefetch::<_MM_HINT_T0>(x.add(64));
                        _mm_prefetch::<_MM_HINT_T0>(x.add(2 * $lanes * std::mem::size_of::<$t>() - 1));
                    }
                    let x = spread.add(offset as usize);
                    let (x0, x1) = ($loadu(x), $loadu(x.add($lanes)));
                    let weights = panel.add(weights as usize);
                    for (r, sums) in acc.iter_mut().enumerate() {
                        let w = $set1(*weights.add(r));
                        sums[0] = $fmadd(w, x0, sums[0]);
                        sums[1] = $fmadd(w, x1, sums[1]);
                    }
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
        __m512,
        16,
        _mm512_setzero_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_loadu_ps,
        _mm512_mask_loadu_ps,
        _mm512_mask_storeu_ps,
        __mmask16
    );
    tile_kernel!(
        tile_f64,
        rows_f64,
        f64,
        __m512d,
        8,
        _mm512_setzero_pd,
        _mm512_set1_pd,
        _mm512_fmadd_pd,
        _mm512_loadu_pd,
        _mm512_mask_loadu_pd,
        _mm512_mask_storeu_pd,
        __mmask8
    );
}

/// The tile with 256-bit vectors: the AVX-512 tile's 32 lanes are four vectors here, covered two
/// at a time and a few rows at a time so that the sums fit the 16 registers.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{reach, Tile, ROWS};

    /// Rows summed together over two vectors of lanes: 5 × 2 sums, two sources and a weight
    /// take 13 of the 16 registers.
    const SUB_ROWS: usize = 5;

    macro_rules! tile_kernel {
        ($name:ident, $rows:ident, $t:ty, $vec:ty, $lanes:expr, $zero:ident, $set1:ident, $fmadd:ident,
         $loadu:ident, $maskload:ident, $maskstore:ident, $lane_mask:expr) => {
            /// Runs the tile two vectors of lanes and a few rows at a time, with the row and vector
            /// counts as constants.
            #[target_feature(enable = "avx2,fma")]
            pub(super) fn $name(tile: &Tile<$t>, product: &mut [$t]) {
                let end = tile.out + (tile.rows - 1) * tile.out_stride + tile.lanes;
                assert!(end <= product.len(), "tile past the end of the product");
                debug_assert_eq!(tile.reach, reach(tile.terms));
                assert!(tile.reach.0 as usize + 4 * $lanes <= tile.spread.len(), "tile past the spread layout");
                assert!(tile.reach.1 as usize + ROWS <= tile.panel.len(), "tile past the end of the weights");
                assert!(tile.lanes <= 4 * $lanes, "a tile of {} lanes", tile.lanes);
                let vectors = tile.lanes.div_ceil($lanes);
                for first_vector in (0..vectors).step_by(2) {
                    let pair = 2.min(vectors - first_vector);
                    for first in (0..tile.rows).step_by(SUB_ROWS) {
                        let rows = SUB_ROWS.min(tile.rows - first);
                        let at = (first, first_vector * $lanes);
                        // SAFETY: the bounds were checked above.
                        unsafe {
                            match (rows, pair) {
                                (5, 2) => $rows::<5, 2>(tile, at, product),
                                (4, 2) => $rows::<4, 2>(tile, at, product),
                                (3, 2) => $rows::<3, 2>(tile, at, product),
                                (2, 2) => $rows::<2, 2>(tile, at, product),
                                (1, 2) => $rows::<1, 2>(tile, at, product),
                                (5, 1) => $rows::<5, 1>(tile, at, product),
                                (4, 1) => $rows::<4, 1>(tile, at, product),
                                (3, 1) => $rows::<3, 1>(tile, at, product),
                                (2, 1) => $rows::<2, 1>(tile, at, product),
                                (1, 1) => $rows::<1, 1>(tile, at, product),
                                (r, v) => unreachable!("a sub-tile of {r} rows and {v} vectors"),
                            }
                        }
                    }
                }
            }

            /// Rows `first..first + R` of the tile over `V` vectors of lanes from lane `lane`.
            #[target_feature(enable = "avx2,fma")]
            #[inline]
            unsafe fn $rows<const R: usize, const V: usize>(
                tile: &Tile<$t>,
                (first, lane): (usize, usize),
                product: &mut [$t],
            ) {
                let mut masks = [_mm256_setzero_si256(); V];
                for (v, mask) in masks.iter_mut().enumerate() {
                    *mask = $lane_mask(tile.lanes.saturating_sub(lane + v * $lanes).min($lanes));
                }
                let out = product.as_mut_ptr().add(tile.out + first * tile.out_stride + lane);
                let mut acc = [[$zero(); V]; R];
                if tile.continued {
                    for (r, sums) in acc.iter_mut().enumerate() {
                        let row = out.add(r * tile.out_stride);
                        for (v, sum) in sums.iter_mut().enumerate() {
                            *sum = $maskload(row.add(v * $lanes), masks[v]);
                        }
                    }
                }
                let spread = tile.spread.as_ptr().add(lane);
                let panel = tile.panel.as_ptr().add(first);
                for &(offset, weights) in tile.terms {
                    let x = spread.add(offset as usize);
                    let mut xs = [$zero(); V];
                    for (v, xv) in xs.iter_mut().enumerate() {
                        *xv = $loadu(x.add(v * $lanes));
                    }
                    let weights = panel.add(weights as usize);
                    for (r, sums) in acc.iter_mut().enumerate() {
                        let w = $set1(*weights.add(r));
                        for (sum, xv) in sums.iter_mut().zip(&xs) {
                            *sum = $fmadd(w, *xv, *sum);
                        }
                    }
                }
                for (r, sums) in acc.iter().enumerate() {
                    let row = out.add(r * tile.out_stride);
                    for (v, sum) in sums.iter().enumerate() {
                        $maskstore(row.add(v * $lanes), masks[v], *sum);
                    }
                }
            }
        };
    }

    /// The first `n` of eight 32-bit lanes.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn first_lanes_32(n: usize) -> __m256i {
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
    }

    /// The first `n` of four 64-bit lanes.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn first_lanes_64(n: usize) -> __m256i {
        _mm256_cmpgt_epi64(_mm256_set1_epi64x(n as i64), _mm256_setr_epi64x(0, 1, 2, 3))
    }

    tile_kernel!(
        tile_f32,
        rows_f32,
        f32,
        __m256,
        8,
        _mm256_setzero_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_loadu_ps,
        _mm256_maskload_ps,
        _mm256_maskstore_ps,
        first_lanes_32
    );
    tile_kernel!(
        tile_f64,
        rows_f64,
        f64,
        __m256d,
        4,
        _mm256_setzero_pd,
        _mm256_set1_pd,
        _mm256_fmadd_pd,
        _mm256_loadu_pd,
        _mm256_maskload_pd,
        _mm256_maskstore_pd,
        first_lanes_64
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snn::SynapseBlock;

    /// A convolution with deterministic weights, unit dilation and no factors.
    fn block<F: Real>(
        in_shape: [usize; 3],
        out_c: usize,
        k: usize,
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> ConvBlock<F> {
        super::super::test_convs::block(in_shape, out_c, k, stride, pad, 1, groups, false)
    }

    fn fired_of(sources: usize, b: usize) -> Vec<u32> {
        (0..sources as u32).filter(|j| (j * 7 + b as u32 * 3) % 11 < 5).collect()
    }

    fn products<F: Real>(conv: &ConvBlock<F>, lanes: usize, isa: Isa) -> Vec<F> {
        let kernel = BatchConv::new(conv, isa);
        let sources = conv.in_shape.iter().product();
        let fired: Vec<Vec<u32>> = (0..lanes).map(|b| fired_of(sources, b)).collect();
        let mut spread = vec![F::zero(); kernel.spread_len(lanes)];
        kernel.spread(lanes, |b| &fired[b], &mut spread);
        let mut product = vec![F::zero(); conv.out_shape.iter().product::<usize>() * lanes];
        kernel.product(lanes, &spread, &mut product);
        product
    }

    /// Per-element factors on the sources and targets.
    fn scaled<F: Real>(mut conv: ConvBlock<F>) -> ConvBlock<F> {
        let factors =
            |n: usize, phase: f64| Scale::Each((0..n).map(|i| F::of(0.75 + 0.5 * (i as f64 * phase).cos())).collect());
        conv.source_scale = factors(conv.in_shape.iter().product(), 0.3);
        conv.target_scale = factors(conv.out_shape.iter().product(), 0.7);
        conv
    }

    fn cases<F: Real>() -> Vec<ConvBlock<F>> {
        vec![
            scaled(block([16, 9, 7], 32, 3, 2, 1, 1)),
            scaled(block([8, 6, 6], 16, 3, 1, 1, 2)),
            block([3, 8, 8], 5, 3, 1, 1, 1),
            block([16, 9, 7], 32, 3, 2, 1, 1),
            block([16, 14, 14], 48, 3, 1, 1, 1),
            block([8, 10, 10], 16, 1, 1, 0, 1),
            block([8, 10, 10], 16, 1, 2, 0, 1),
            block([4, 9, 9], 8, 3, 2, 1, 2),
            block([16, 12, 12], 32, 3, 1, 1, 2),
            block([1, 28, 28], 8, 4, 4, 0, 1),
            block([2, 11, 11], 64, 3, 2, 0, 2),
            block([3, 15, 15], 20, 7, 2, 3, 1),
            block([32, 1, 1], 30, 3, 1, 1, 1),
            // More terms than one block.
            block([64, 6, 6], 20, 3, 1, 1, 1),
            scaled(block([300, 2, 3], 15, 1, 1, 0, 1)),
        ]
    }

    /// Each lane's product equals the generic block's delivery of that lane's spikes, within
    /// rounding (the generic block sums in another order).
    fn check<F: Real>(tolerance: f64) {
        for conv in cases::<F>() {
            let generic = SynapseBlock::Conv(conv.clone());
            for lanes in [1, 3, 8, 17] {
                let product = products(&conv, lanes, Isa::detect());
                for b in 0..lanes {
                    let mut expected = vec![F::zero(); generic.targets()];
                    generic.deliver_events(&fired_of(generic.sources(), b), &mut expected);
                    for (t, e) in expected.iter().enumerate() {
                        let got = product[t * lanes + b] * conv.target_scale.get(t);
                        let (g, e) = (got.to_f64_lossless(), e.to_f64_lossless());
                        assert!(
                            (g - e).abs() <= tolerance * (1.0 + e.abs()),
                            "lane {b} of {lanes}, target {t}: {g} vs {e} in {conv:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn matches_the_generic_block_in_f64() {
        check::<f64>(1e-12);
    }

    #[test]
    fn matches_the_generic_block_in_f32() {
        check::<f32>(1e-4);
    }

    /// A target's bits do not depend on the batch size, its lane or the instruction set.
    fn same_bits<F: Real>() {
        for conv in cases::<F>() {
            let targets: usize = conv.out_shape.iter().product();
            // Input b alone in the last lane of a batch of b + 1, on the portable code.
            let reference: Vec<Vec<F>> = (0..5)
                .map(|b| {
                    let product = products(&conv, b + 1, Isa::baseline());
                    (0..targets).map(|t| product[t * (b + 1) + b]).collect()
                })
                .collect();
            for (lanes, isa) in [(5, Isa::detect()), (5, Isa::baseline()), (MAX_LANES, Isa::detect())] {
                let product = products(&conv, lanes, isa);
                for (b, expected) in reference.iter().enumerate() {
                    for (t, e) in expected.iter().enumerate() {
                        assert_eq!(
                            product[t * lanes + b].to_f64_lossless().to_bits(),
                            e.to_f64_lossless().to_bits(),
                            "lane {b} of {lanes} on {isa:?}, target {t} in {conv:?}"
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
