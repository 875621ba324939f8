//! A depthwise convolution of binary spikes (one input channel per group, as in ConvNeXt's 7×7
//! and MobileNet's 3×3 blocks) computed for a batch of inputs at once.
//!
//! No source is shared across output channels, so a register tile reuses each loaded weight
//! across output rows instead: a tile is [`ROWS`] output rows of one channel × two vectors of
//! (output column, input) lanes, and for each kernel tap one broadcast weight feeds the fused
//! multiply-adds of every row of the tile.
//!
//! The spikes of the batch are spread into a padded layout `[channel][row][column phase]
//! [column / stride]` (the source's factor where it fired, 0 elsewhere and in the padding). On
//! wide maps each input has its own layout and a tile's lanes are output columns of one input,
//! so the product comes out per input; on narrow maps the inputs are interleaved innermost and a
//! tile's lanes are (output column, input) pairs, so that the lanes stay busy. Index maps around
//! the convolution (a channels-last population it reads or writes) are folded into the spread
//! and into the write-out of the product.
//!
//! Exact: each target is the sequential fused multiply-add sum of its live taps in `(ky, kx)`
//! order, taps that read padding only for the whole tile skipped (a tap that reads padding adds
//! an exact zero to a sum that is never −0, so skipping it changes no bit). The order depends
//! neither on the batch, the lane a target occupies, the tile nor the instruction set.

use std::any::TypeId;

use super::batch::{deinterleave, BatchKernel};
#[cfg(target_arch = "x86_64")]
use super::isa::cast_mut;
use super::isa::{Isa, Level};
use super::MAX_LANES;
use crate::real::Real;
use crate::snn::{ConvBlock, Scale};

/// Most output rows of one register tile.
pub const ROWS: usize = 14;

/// Vectors of lanes in one register tile.
const VECTORS: usize = 2;

/// Lanes of one register tile in precision `F` (64-byte vectors).
fn tile_lanes<F>() -> usize {
    VECTORS * 64 / std::mem::size_of::<F>()
}

/// One term of a tile's sums: the offset of its sources in the spread layout (relative to the
/// tile's first row and lane) and the index of its weight in the channel's `[ky][kx]` kernel.
type Term = (u32, u32);

/// Geometry of the convolution and of its spread source layout.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Geometry {
    in_shape: [usize; 3],
    out_c: usize,
    out_h: usize,
    out_w: usize,
    /// Output channels per input channel.
    multiplier: usize,
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
    fn of<F>(conv: &ConvBlock<F>) -> Self {
        let [out_c, out_h, out_w] = conv.out_shape;
        let [kh, kw] = conv.kernel_size;
        let [sh, sw] = conv.strides;
        Geometry {
            in_shape: conv.in_shape,
            out_c,
            out_h,
            out_w,
            multiplier: out_c / conv.groups.max(1),
            kernel_size: conv.kernel_size,
            pads: conv.pads,
            stride_h: sh,
            phases: sw,
            rows: out_h.saturating_sub(1) * sh + kh,
            columns: (out_w.saturating_sub(1) * sw + kw).div_ceil(sw),
        }
    }

    /// Positions (elements per input) of one input channel of the spread layout.
    fn channel_positions(&self) -> usize {
        self.rows * self.phases * self.columns
    }

    /// Positions of the whole spread layout.
    fn positions(&self) -> usize {
        self.in_shape[0] * self.channel_positions()
    }

    /// The position of logical source `(c, y, x)` in the spread layout, if a target reads it.
    fn position(&self, c: usize, y: usize, x: usize) -> Option<usize> {
        let (row, column) = (y + self.pads[0], x + self.pads[1]);
        let sw = self.phases;
        (row < self.rows && column / sw < self.columns)
            .then(|| ((c * self.rows + row) * sw + column % sw) * self.columns + column / sw)
    }

    /// Output rows per register tile: the rows split into equal tiles of at most [`ROWS`].
    fn tile_rows(&self) -> usize {
        self.out_h.div_ceil(self.out_h.div_ceil(ROWS).max(1)).max(1)
    }
}

/// Whether [`BatchDepthwise`] computes `conv`: one input channel per group and few outputs per
/// group, unit dilation, index maps (if any) that read each physical source at most once.
pub(crate) fn handles<F: Real>(conv: &ConvBlock<F>) -> bool {
    let [in_c, _, _] = conv.in_shape;
    let [out_c, out_h, out_w] = conv.out_shape;
    let [kh, kw] = conv.kernel_size;
    let depthwise = conv.groups == in_c && in_c > 0 && out_c / conv.groups < 8;
    if !depthwise || conv.dilations != [1, 1] || out_h * out_w == 0 || kh > 64 || kw > 64 {
        return false;
    }
    // Offsets into the spread layout of a full batch are 32-bit.
    let g = Geometry::of(conv);
    let addressable = (g.positions() + 1) * MAX_LANES + 2 * tile_lanes::<F>() < u32::MAX as usize
        && conv.logical_targets() * MAX_LANES < u32::MAX as usize;
    addressable && (conv.source.is_identity() || conv.source.inverse(conv.logical_sources(), conv.sources).is_some())
}

/// A depthwise convolution from a spiking source, prepared for batches.
pub struct BatchDepthwise<F> {
    geometry: Geometry,
    /// `[out channel][ky][kx]`.
    weights: Vec<F>,
    /// Per physical source: its position in the spread layout (`u32::MAX`: read by no target).
    source_positions: Vec<u32>,
    /// Per physical source: the value its spike is spread as.
    source_factors: Scale<F>,
    /// `(first position, positions)` of the runs of the spread layout no source is spread to.
    padding: Vec<(u32, u32)>,
    /// Per logical target: its physical target (`None`: the identity).
    target_positions: Option<Vec<u32>>,
    /// Whether some physical target receives no logical target (its product is zero).
    unwritten_targets: bool,
    /// Number of physical targets.
    targets: usize,
    /// Factors per physical target, applied when the product is read.
    target_scale: Scale<F>,
    isa: Isa,
}

impl<F: Real> BatchDepthwise<F> {
    /// Prepares `conv` for this CPU's widest instruction set, if it is a depthwise convolution
    /// this kernel computes.
    pub fn prepare(conv: &ConvBlock<F>) -> Option<Self> {
        handles(conv).then(|| Self::new(conv, Isa::detect()))
    }

    /// Prepares `conv` (which [`handles`] must accept).
    pub(crate) fn new(conv: &ConvBlock<F>, isa: Isa) -> Self {
        let g = Geometry::of(conv);
        let [in_c, in_h, in_w] = g.in_shape;
        let logical_sources = conv.logical_sources();
        let logical_targets = conv.logical_targets();
        // The logical source each physical source is (identity: itself).
        let logical_of: Vec<u32> = match conv.source.is_identity() {
            true => {
                (0..conv.sources as u32).map(|j| if (j as usize) < logical_sources { j } else { u32::MAX }).collect()
            }
            false => conv.source.inverse(logical_sources, conv.sources).expect("an injective source map"),
        };
        let mut covered = vec![false; g.positions()];
        let mut source_positions = vec![u32::MAX; conv.sources];
        for (j, &i) in logical_of.iter().enumerate() {
            if i == u32::MAX {
                continue;
            }
            let i = i as usize;
            let (c, y, x) = (i / (in_h * in_w), i / in_w % in_h, i % in_w);
            if let Some(position) = g.position(c, y, x) {
                source_positions[j] = position as u32;
                covered[position] = true;
            }
        }
        debug_assert!(in_c * in_h * in_w == logical_sources);
        let mut padding: Vec<(u32, u32)> = Vec::new();
        for (position, _) in covered.iter().enumerate().filter(|(_, &c)| !c) {
            match padding.last_mut() {
                Some((first, len)) if (*first + *len) as usize == position => *len += 1,
                _ => padding.push((position as u32, 1)),
            }
        }
        let source_factors = match &conv.source_scale {
            Scale::Each(values) => Scale::Each(
                logical_of.iter().map(|&i| if i == u32::MAX { F::zero() } else { values[i as usize] }).collect(),
            ),
            scale => scale.clone(),
        };
        let target_positions = (!conv.target.is_identity()).then(|| conv.target.to_entries(logical_targets));
        let unwritten_targets = match &target_positions {
            None => conv.targets > logical_targets,
            Some(entries) => {
                let mut written = vec![false; conv.targets];
                entries.iter().filter(|&&p| (p as usize) < conv.targets).for_each(|&p| written[p as usize] = true);
                written.contains(&false)
            }
        };
        let target_scale = match (&conv.target_scale, &target_positions) {
            (Scale::Each(values), Some(entries)) => {
                let mut physical = vec![F::zero(); conv.targets];
                for (&p, &value) in entries.iter().zip(values) {
                    if let Some(slot) = physical.get_mut(p as usize) {
                        *slot = value;
                    }
                }
                Scale::Each(physical)
            }
            (Scale::Each(values), None) => {
                let mut physical = values.clone();
                physical.resize(conv.targets, F::zero());
                Scale::Each(physical)
            }
            (scale, _) => scale.clone(),
        };
        BatchDepthwise {
            geometry: g,
            weights: conv.kernel.clone(),
            source_positions,
            source_factors,
            padding,
            target_positions,
            unwritten_targets,
            targets: conv.targets,
            target_scale,
            isa,
        }
    }

    /// Bytes of the prepared weights and tables.
    pub fn bytes(&self) -> usize {
        let f = std::mem::size_of::<F>();
        (self.weights.len() + self.source_factors.stored() + self.target_scale.stored()) * f
            + (self.source_positions.len() + self.target_positions.as_ref().map_or(0, Vec::len)) * 4
            + self.padding.len() * 8
    }

    /// Elements of the spread layout for `lanes` inputs, with the slack one tile may read past
    /// its end.
    pub fn spread_len(&self, lanes: usize) -> usize {
        self.geometry.positions() * lanes + tile_lanes::<F>()
    }

    /// Whether each input has its own spread layout and product, the lanes of a tile being
    /// output columns of one input (wide maps), rather than (output column, input) pairs
    /// interleaved (narrow maps, whose rows would leave most lanes of a tile idle).
    fn input_major(&self) -> bool {
        let (width, lanes) = (self.geometry.out_w, tile_lanes::<F>());
        4 * width >= 3 * width.div_ceil(lanes) * lanes
    }

    /// Writes the spikes of the batch into `spread` (see [`BatchDepthwise::spread_len`]):
    /// `fired[b]` lists the physical sources input `b` fired, ascending.
    pub fn spread(&self, fired: &[&[u32]], spread: &mut [F]) {
        let lanes = fired.len();
        assert!(spread.len() >= self.spread_len(lanes), "spread layout too short");
        let factor = |j: u32| self.source_factors.get(j as usize);
        if self.input_major() {
            let positions = self.geometry.positions();
            for (list, layout) in fired.iter().zip(spread.chunks_mut(positions)) {
                layout.fill(F::zero());
                for &j in *list {
                    let position = self.source_positions[j as usize];
                    if position != u32::MAX {
                        layout[position as usize] = factor(j);
                    }
                }
            }
            return;
        }
        for &(first, len) in &self.padding {
            spread[first as usize * lanes..(first + len) as usize * lanes].fill(F::zero());
        }
        // A block of 64 sources at a time: which of them each input fired, as a bit mask, then
        // every input's value of each source.
        let mut cursors = [0usize; MAX_LANES];
        let mut masks = [0u64; MAX_LANES];
        let sources = self.source_positions.len();
        for start in (0..sources).step_by(64) {
            let end = (start + 64).min(sources);
            for (b, list) in fired.iter().enumerate() {
                let (mut k, mut mask) = (cursors[b], 0u64);
                while let Some(&j) = list.get(k).filter(|&&j| (j as usize) < end) {
                    mask |= 1 << (j as usize - start);
                    k += 1;
                }
                (cursors[b], masks[b]) = (k, mask);
            }
            for (bit, &position) in self.source_positions[start..end].iter().enumerate() {
                if position != u32::MAX {
                    let value = factor((start + bit) as u32);
                    let values = &mut spread[position as usize * lanes..][..lanes];
                    for (v, mask) in values.iter_mut().zip(&masks) {
                        *v = if mask >> bit & 1 == 1 { value } else { F::zero() };
                    }
                }
            }
        }
    }

    /// Writes the product for `lanes` inputs from their spread spikes into `product`, unscaled:
    /// `[logical target][input]` for interleaved lanes, `[input][logical target]` for
    /// input-major ones (see [`BatchDepthwise::input_major`]). Returns the multiply-accumulates
    /// performed for the inputs.
    pub fn product(&self, lanes: usize, spread: &[F], product: &mut [F]) -> u64 {
        let g = &self.geometry;
        assert!(spread.len() >= self.spread_len(lanes), "spread layout too short");
        assert!(lanes <= MAX_LANES, "a batch of {lanes} inputs, at most {MAX_LANES} are computed together");
        let logical_targets = g.out_c * g.out_h * g.out_w;
        assert_eq!(product.len(), logical_targets * lanes, "product of the wrong size");
        let [kh, kw] = g.kernel_size;
        let step = tile_lanes::<F>();
        // Per input layout: its lanes per spread position, and how many layouts there are.
        let (unit, layouts) = if self.input_major() { (1, lanes) } else { (lanes, 1) };
        let row_lanes = g.out_w * unit;
        let plane = g.out_h * row_lanes;
        let row_stride = g.phases * g.columns * unit;
        let row_step = g.stride_h * row_stride;
        let tile_rows = g.tile_rows();
        // The terms of each pattern of live taps, and each tile `(first row, rows, first lane,
        // lanes, pattern)`.
        let mut patterns: Vec<((u64, u64), Vec<Term>)> = Vec::new();
        let mut tiles = Vec::new();
        for oy in (0..g.out_h).step_by(tile_rows) {
            let rows = tile_rows.min(g.out_h - oy);
            for start in (0..row_lanes).step_by(step) {
                let n = step.min(row_lanes - start);
                let live = self.live_taps(oy, rows, start / unit, (start + n - 1) / unit);
                let pattern = patterns.iter().position(|(p, _)| *p == live).unwrap_or_else(|| {
                    let terms = (0..kh * kw)
                        .filter(|tap| live.0 >> (tap / kw) & 1 == 1 && live.1 >> (tap % kw) & 1 == 1)
                        .map(|tap| {
                            let (ky, kx) = (tap / kw, tap % kw);
                            let offset = ky * row_stride + ((kx % g.phases) * g.columns + kx / g.phases) * unit;
                            (offset as u32, tap as u32)
                        })
                        .collect();
                    patterns.push((live, terms));
                    patterns.len() - 1
                });
                tiles.push((oy, rows, start, n, pattern));
            }
        }
        let mut macs = 0;
        for layout in 0..layouts {
            let (spread, out) = (&spread[layout * g.positions()..], layout * logical_targets);
            for co in 0..g.out_c {
                let channel = &spread[co / g.multiplier * g.channel_positions() * unit..];
                let weights = &self.weights[co * kh * kw..][..kh * kw];
                for &(oy, rows, start, n, pattern) in &tiles {
                    let terms = &patterns[pattern].1;
                    let tile = Tile {
                        weights,
                        spread: &channel[oy * row_step + start..],
                        terms,
                        reach: terms.iter().map(|t| t.0).max().unwrap_or(0),
                        row_step,
                        out: out + co * plane + oy * row_lanes + start,
                        out_stride: row_lanes,
                        rows,
                        lanes: n,
                    };
                    self.run_tile(&tile, product);
                    macs += (terms.len() * rows * n) as u64;
                }
            }
        }
        macs
    }

    /// The kernel rows and columns (bit masks) that read a source for some output row of
    /// `oy..oy + rows` and some output column of `first..=last`: the others read padding only.
    fn live_taps(&self, oy: usize, rows: usize, first: usize, last: usize) -> (u64, u64) {
        let g = &self.geometry;
        let [kh, kw] = g.kernel_size;
        let [ph, pw] = g.pads;
        let [_, in_h, in_w] = g.in_shape;
        let inside = |position: usize, pad: usize, size: usize| position >= pad && position - pad < size;
        let live_rows = (0..kh)
            .filter(|ky| (oy..oy + rows).any(|y| inside(y * g.stride_h + ky, ph, in_h)))
            .fold(0, |m, ky| m | 1 << ky);
        let live_columns = (0..kw)
            .filter(|kx| (first..=last).any(|ox| inside(ox * g.phases + kx, pw, in_w)))
            .fold(0, |m, kx| m | 1 << kx);
        (live_rows, live_columns)
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

    /// Writes the product as [`BatchDepthwise::product`] wrote it into `[input][physical target]`.
    fn write_out(&self, written: &[F], lanes: usize, products: &mut [F]) {
        let logical_targets = written.len() / lanes;
        // The value of logical target `t` for input `b`.
        let at = |t: usize, b: usize| if self.input_major() { b * logical_targets + t } else { t * lanes + b };
        if self.target_positions.is_none() && !self.unwritten_targets && !self.input_major() {
            return deinterleave(written, lanes, products, self.isa);
        }
        if self.unwritten_targets {
            products.fill(F::zero());
        }
        for (b, row) in products.chunks_exact_mut(self.targets).enumerate() {
            match &self.target_positions {
                None => row[..logical_targets].iter_mut().enumerate().for_each(|(t, p)| *p = written[at(t, b)]),
                Some(positions) => {
                    for (t, &p) in positions.iter().enumerate().filter(|(_, &p)| (p as usize) < self.targets) {
                        row[p as usize] = written[at(t, b)];
                    }
                }
            }
        }
    }
}

impl<F: Real> BatchKernel<F> for BatchDepthwise<F> {
    fn spread_len(&self, lanes: usize) -> usize {
        BatchDepthwise::spread_len(self, lanes)
    }

    fn spread_spikes(&self, fired: &[&[u32]], spread: &mut [F]) {
        self.spread(fired, spread)
    }

    fn products(&self, lanes: usize, spread: &[F], scratch: &mut Vec<F>, products: &mut [F]) -> u64 {
        let g = &self.geometry;
        if self.input_major() && self.target_positions.is_none() && !self.unwritten_targets {
            // The product is already `[input][physical target]`.
            return self.product(lanes, spread, products);
        }
        scratch.resize(g.out_c * g.out_h * g.out_w * lanes, F::zero());
        let macs = self.product(lanes, spread, scratch);
        self.write_out(scratch, lanes, products);
        macs
    }

    fn target_scale(&self) -> &Scale<F> {
        &self.target_scale
    }

    fn bytes(&self) -> usize {
        BatchDepthwise::bytes(self)
    }
}

/// One register tile: `rows` output rows of one channel × `lanes` consecutive (column, input)
/// lanes.
struct Tile<'a, F> {
    /// The channel's `[ky][kx]` weights.
    weights: &'a [F],
    /// The spread layout from the tile's first row and lane.
    spread: &'a [F],
    /// `(spread offset, weight)` of each term, in summation order.
    terms: &'a [Term],
    /// The largest spread offset of the terms.
    reach: u32,
    /// Distance in the spread layout between the sources of consecutive output rows.
    row_step: usize,
    /// Index in the product of the tile's first row and lane.
    out: usize,
    /// Distance in the product between consecutive output rows.
    out_stride: usize,
    rows: usize,
    lanes: usize,
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
            let mut sum = F::zero();
            for &(offset, weight) in tile.terms {
                let x = tile.spread[offset as usize + r * tile.row_step + lane];
                sum = tile.weights[weight as usize].mul_add(x, sum);
            }
            product[tile.out + r * tile.out_stride + lane] = sum;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::Tile;

    macro_rules! tile_kernel {
        ($name:ident, $rows:ident, $t:ty, $lanes:expr, $zero:ident, $set1:ident, $fmadd:ident,
         $loadu:ident, $mask_storeu:ident, $mask:ty) => {
            /// Runs the tile with the row count dispatched to a constant.
            #[target_feature(enable = "avx512f")]
            pub(super) fn $name(tile: &Tile<$t>, product: &mut [$t]) {
                let end = tile.out + (tile.rows - 1) * tile.out_stride + tile.lanes;
                assert!(end <= product.len(), "tile past the end of the product");
                let last = tile.reach as usize + (tile.rows - 1) * tile.row_step + 2 * $lanes;
                assert!(tile.terms.is_empty() || last <= tile.spread.len(), "tile past the spread layout");
                assert!(tile.terms.iter().all(|t| (t.1 as usize) < tile.weights.len()), "weight past the kernel");
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
                let mut acc = [[$zero(); 2]; R];
                let spread = tile.spread.as_ptr();
                let weights = tile.weights.as_ptr();
                let row_step = tile.row_step;
                for &(offset, weight) in tile.terms {
                    let w = $set1(*weights.add(weight as usize));
                    let x = spread.add(offset as usize);
                    for (r, sums) in acc.iter_mut().enumerate() {
                        let x = x.add(r * row_step);
                        sums[0] = $fmadd(w, $loadu(x), sums[0]);
                        sums[1] = $fmadd(w, $loadu(x.add($lanes)), sums[1]);
                    }
                }
                let out = product.as_mut_ptr().add(tile.out);
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
        _mm512_loadu_ps,
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
        _mm512_loadu_pd,
        _mm512_mask_storeu_pd,
        __mmask8
    );
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use crate::engine::batch::lane_masks::{mask_f32, mask_f64};

    use super::Tile;

    macro_rules! tile_kernel {
        ($name:ident, $rows:ident, $t:ty, $lanes:expr, $mask_of:ident, $zero:ident, $set1:ident, $fmadd:ident,
         $loadu:ident, $storeu:ident, $maskstore:ident) => {
            /// Runs the tile a vector of lanes at a time (up to 14 accumulators and the broadcast
            /// weight fill the 16 vector registers), with the row count dispatched to a constant.
            #[target_feature(enable = "avx2,fma")]
            pub(super) fn $name(tile: &Tile<$t>, product: &mut [$t]) {
                let end = tile.out + (tile.rows - 1) * tile.out_stride + tile.lanes;
                assert!(end <= product.len(), "tile past the end of the product");
                let last = tile.reach as usize + (tile.rows - 1) * tile.row_step + 4 * $lanes;
                assert!(tile.terms.is_empty() || last <= tile.spread.len(), "tile past the spread layout");
                assert!(tile.terms.iter().all(|t| (t.1 as usize) < tile.weights.len()), "weight past the kernel");
                assert!(tile.lanes <= 4 * $lanes, "a tile of {} lanes", tile.lanes);
                for first in (0..tile.lanes).step_by($lanes) {
                    let sub = Tile {
                        spread: &tile.spread[first..],
                        out: tile.out + first,
                        lanes: (tile.lanes - first).min($lanes),
                        ..*tile
                    };
                    // SAFETY: the sub-tile lies within the tile, whose bounds were checked above.
                    unsafe { crate::engine::batch::dispatch_rows!(tile.rows, $rows, &sub, product) }
                }
            }

            #[target_feature(enable = "avx2,fma")]
            #[inline]
            unsafe fn $rows<const R: usize>(tile: &Tile<$t>, product: &mut [$t]) {
                let mut acc = [$zero(); R];
                let spread = tile.spread.as_ptr();
                let weights = tile.weights.as_ptr();
                let row_step = tile.row_step;
                for &(offset, weight) in tile.terms {
                    let w = $set1(*weights.add(weight as usize));
                    let x = spread.add(offset as usize);
                    for (r, sum) in acc.iter_mut().enumerate() {
                        *sum = $fmadd(w, $loadu(x.add(r * row_step)), *sum);
                    }
                }
                let out = product.as_mut_ptr().add(tile.out);
                let mask = $mask_of(tile.lanes);
                for (r, &sum) in acc.iter().enumerate() {
                    let row = out.add(r * tile.out_stride);
                    if tile.lanes == $lanes {
                        $storeu(row, sum);
                    } else {
                        $maskstore(row, mask, sum);
                    }
                }
            }
        };
    }

    tile_kernel!(
        tile_f32,
        rows_f32,
        f32,
        8,
        mask_f32,
        _mm256_setzero_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_maskstore_ps
    );
    tile_kernel!(
        tile_f64,
        rows_f64,
        f64,
        4,
        mask_f64,
        _mm256_setzero_pd,
        _mm256_set1_pd,
        _mm256_fmadd_pd,
        _mm256_loadu_pd,
        _mm256_storeu_pd,
        _mm256_maskstore_pd
    );
}

#[cfg(test)]
mod tests {
    use super::super::test_convs;
    use super::*;
    use crate::snn::{Index, SynapseBlock};

    /// A `k`×`k` depthwise convolution with `multiplier` outputs per channel.
    fn block<F: Real>(in_shape: [usize; 3], multiplier: usize, k: usize, stride: usize, pad: usize) -> ConvBlock<F> {
        test_convs::block(in_shape, in_shape[0] * multiplier, k, stride, pad, 1, in_shape[0], false)
    }

    /// Per-element factors on the sources and targets.
    fn scaled<F: Real>(mut conv: ConvBlock<F>) -> ConvBlock<F> {
        let factors =
            |n: usize, phase: f64| Scale::Each((0..n).map(|i| F::of(0.75 + 0.5 * (i as f64 * phase).cos())).collect());
        conv.source_scale = factors(conv.logical_sources(), 0.3);
        conv.target_scale = factors(conv.logical_targets(), 0.7);
        conv
    }

    /// The convolution reading and writing channels-last populations (`[H][W][C]`), as the
    /// depthwise blocks between a channels-last layer norm and a channels-last linear layer do.
    fn channels_last<F: Real>(mut conv: ConvBlock<F>) -> ConvBlock<F> {
        let map = |[c, h, w]: [usize; 3]| Index::fit(&[c, h, w], move |i| Some((i % (h * w)) * c + i / (h * w)));
        conv.source = map(conv.in_shape);
        conv.target = map(conv.out_shape);
        conv
    }

    fn fired_of(sources: usize, b: usize) -> Vec<u32> {
        (0..sources as u32).filter(|j| (j * 7 + b as u32 * 3) % 11 < 5).collect()
    }

    /// The batch's products `[input][physical target]`, unscaled.
    fn products<F: Real>(conv: &ConvBlock<F>, lanes: usize, isa: Isa) -> Vec<F> {
        let kernel = BatchDepthwise::new(conv, isa);
        let fired: Vec<Vec<u32>> = (0..lanes).map(|b| fired_of(conv.sources, b)).collect();
        let fired: Vec<&[u32]> = fired.iter().map(Vec::as_slice).collect();
        // Garbage left by another kernel must not leak into the layout.
        let mut spread = vec![F::of(f64::NAN); kernel.spread_len(lanes)];
        kernel.spread_spikes(&fired, &mut spread);
        let mut products = vec![F::of(7.0); conv.targets * lanes];
        kernel.products(lanes, &spread, &mut Vec::new(), &mut products);
        products
    }

    fn cases<F: Real>() -> Vec<ConvBlock<F>> {
        vec![
            // ConvNeXt's 7×7, padding 3.
            block([6, 12, 12], 1, 7, 1, 3),
            scaled(block([6, 12, 12], 1, 7, 1, 3)),
            channels_last(scaled(block([5, 9, 10], 1, 7, 1, 3))),
            // More rows than one tile; wide maps, each input in its own layout.
            block([3, 31, 5], 1, 7, 1, 3),
            block([3, 9, 30], 1, 7, 1, 3),
            scaled(block([2, 17, 40], 1, 7, 1, 3)),
            channels_last(scaled(block([2, 6, 28], 1, 7, 1, 3))),
            channels_last(block([3, 10, 56], 1, 3, 2, 1)),
            // MobileNet's 3×3, strides 1 and 2.
            block([8, 9, 9], 1, 3, 1, 1),
            block([8, 9, 9], 1, 3, 2, 1),
            scaled(block([4, 16, 15], 1, 3, 2, 1)),
            channels_last(block([4, 11, 11], 1, 3, 2, 1)),
            // Small maps where padding dominates.
            block([4, 3, 3], 1, 7, 1, 3),
            scaled(block([4, 2, 5], 1, 7, 1, 3)),
            block([7, 1, 1], 1, 3, 1, 1),
            // Several outputs per channel, no padding, a wide stride.
            scaled(block([3, 8, 8], 2, 3, 1, 1)),
            block([2, 12, 12], 3, 4, 4, 0),
        ]
    }

    /// Each lane's product equals the generic block's delivery of that lane's spikes, within
    /// rounding (the generic block sums in another order).
    fn check<F: Real>(tolerance: f64) {
        for conv in cases::<F>() {
            assert!(handles(&conv), "{conv:?}");
            let kernel = BatchDepthwise::new(&conv, Isa::detect());
            let generic = SynapseBlock::Conv(conv.clone());
            for lanes in [1, 3, 8, 17, 32] {
                let product = products(&conv, lanes, Isa::detect());
                for b in 0..lanes {
                    let mut expected = vec![F::zero(); generic.targets()];
                    generic.deliver_events(&fired_of(generic.sources(), b), &mut expected);
                    for (t, e) in expected.iter().enumerate() {
                        let got = product[b * conv.targets + t] * kernel.target_scale.get(t);
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

    /// A hand-computed 3×3 depthwise sum: one channel, weights 1..9, the centre and the
    /// top-left source firing with factors 2 and 3, the target scaled by 10.
    #[test]
    fn sums_the_taps_of_the_sources_that_fired() {
        let mut conv = ConvBlock::<f64>::new(
            (1..=9).map(f64::from).collect(),
            [1, 3, 3],
            [1, 3, 3],
            [3, 3],
            [1, 1],
            [1, 1],
            [1, 1],
            1,
        );
        conv.source_scale = Scale::Each(vec![3.0, 1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0]);
        conv.target_scale = Scale::Uniform(10.0);
        let kernel = BatchDepthwise::new(&conv, Isa::detect());
        let mut spread = vec![0.0; kernel.spread_len(1)];
        kernel.spread_spikes(&[&[0, 4]], &mut spread);
        let mut product = vec![0.0; 9];
        kernel.products(1, &spread, &mut Vec::new(), &mut product);
        // Output (oy, ox) reads source (oy + ky - 1, ox + kx - 1) through weight 3 ky + kx + 1.
        // The centre (1, 1) reaches every output through weight 9 - 3 oy - ox (times 2); the
        // top-left (0, 0) reaches outputs (0, 0), (0, 1), (1, 0), (1, 1) through 5, 4, 2, 1
        // (times 3).
        assert_eq!(product, [33.0, 28.0, 14.0, 18.0, 13.0, 8.0, 6.0, 4.0, 2.0]);
        assert_eq!(kernel.target_scale().get(4), 10.0);
    }

    /// A target's bits do not depend on the batch size, its lane or the instruction set.
    fn same_bits<F: Real>() {
        for conv in cases::<F>() {
            let targets = conv.targets;
            // Input b alone in the last lane of a batch of b + 1, on the portable code.
            let reference: Vec<Vec<F>> =
                (0..5).map(|b| products(&conv, b + 1, Isa::baseline())[b * targets..][..targets].to_vec()).collect();
            for (lanes, isa) in [(5, Isa::detect()), (5, Isa::baseline()), (MAX_LANES, Isa::detect())] {
                let product = products(&conv, lanes, isa);
                for (b, expected) in reference.iter().enumerate() {
                    for (t, e) in expected.iter().enumerate() {
                        assert_eq!(
                            product[b * targets + t].to_f64_lossless().to_bits(),
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

    #[test]
    fn refuses_what_it_does_not_compute() {
        // Two inputs per group, a dilation, a source read twice.
        assert!(!handles(&test_convs::block::<f64>([4, 8, 8], 4, 3, 1, 1, 1, 2, false)));
        assert!(!handles(&test_convs::block::<f64>([4, 8, 8], 4, 3, 1, 2, 2, 4, false)));
        let mut twice = block::<f64>([2, 4, 4], 1, 3, 1, 1);
        twice.source = Index::fit(&[2, 4, 4], |i| Some(i % 16));
        twice.sources = 16;
        assert!(!handles(&twice));
        assert!(handles(&block::<f64>([2, 4, 4], 1, 3, 1, 1)));
    }
}
