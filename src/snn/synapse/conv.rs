//! A 2-D convolution as a synapse block: kernel plus geometry, with the per-element factors and
//! index maps of what surrounds it in the model. Fan-out is computed from the geometry, never
//! materialised.

use serde::{Deserialize, Serialize};

use super::index::Index;
use super::scale::Scale;
use crate::engine::isa::{Isa, Level};
use crate::real::Real;
use crate::snn::NetworkError;

/// Output elements of one channel summed together by [`ConvBlock::multiply_add`] (about 8 KB of
/// float64 targets).
const CONVOLVE_BLOCK: usize = 1024;

/// Geometry and kernel of a 2-D convolution. Its logical tensors are channel-major (C, H, W), as
/// in ONNX: logical source `(ci, y, x)` reads physical source `source(ci·H·W + y·W + x)` times
/// `source_scale`, and logical target `(co, oy, ox)` adds, times `target_scale`, into physical
/// target `target(co·OH·OW + oy·OW + ox)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvBlock<W = f64> {
    /// Kernel `[out_channels][in_channels / groups][kh][kw]`, row-major.
    pub kernel: Vec<W>,
    /// Logical source shape `[C, H, W]`.
    pub in_shape: [usize; 3],
    /// Logical target shape `[C, OH, OW]`.
    pub out_shape: [usize; 3],
    /// Kernel size `[kh, kw]`.
    pub kernel_size: [usize; 2],
    /// Strides `[sh, sw]`.
    pub strides: [usize; 2],
    /// Leading padding `[top, left]`.
    pub pads: [usize; 2],
    /// Dilations `[dh, dw]`.
    pub dilations: [usize; 2],
    /// Number of channel groups (the input channels for a depthwise convolution).
    pub groups: usize,
    /// A factor per logical target applied after the convolution (an elementwise scaling that
    /// followed it in the ANN, such as ReLU normalisation's 1/m).
    pub target_scale: Scale<W>,
    /// A factor per logical source applied before the convolution (such as ReLU
    /// normalisation's m of the population it reads).
    pub source_scale: Scale<W>,
    /// Where each logical source is read from.
    pub source: Index,
    /// Where each logical target is written to.
    pub target: Index,
    /// Number of physical source elements.
    pub sources: usize,
    /// Number of physical target elements.
    pub targets: usize,
}

impl<W: Real> ConvBlock<W> {
    /// A plain convolution: no factors, sources and targets in their own layout.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kernel: Vec<W>,
        in_shape: [usize; 3],
        out_shape: [usize; 3],
        kernel_size: [usize; 2],
        strides: [usize; 2],
        pads: [usize; 2],
        dilations: [usize; 2],
        groups: usize,
    ) -> Self {
        ConvBlock {
            kernel,
            in_shape,
            out_shape,
            kernel_size,
            strides,
            pads,
            dilations,
            groups,
            target_scale: Scale::One,
            source_scale: Scale::One,
            source: Index::Identity,
            target: Index::Identity,
            sources: in_shape.iter().product(),
            targets: out_shape.iter().product(),
        }
    }

    /// Number of logical source elements.
    pub fn logical_sources(&self) -> usize {
        self.in_shape.iter().product()
    }

    /// Number of logical target elements.
    pub fn logical_targets(&self) -> usize {
        self.out_shape.iter().product()
    }

    /// Whether the block reads and writes its own layout with no factor before the kernel.
    pub fn is_plain(&self) -> bool {
        self.source.is_identity() && self.target.is_identity() && self.source_scale.is_one()
    }

    /// Calls `visit(logical target, logical source, weight)` for every synapse leaving logical
    /// source `source`, target factor included (the source factor is not).
    #[inline]
    pub fn for_each_logical_synapse(&self, source: usize, mut visit: impl FnMut(usize, W)) {
        let [in_c, in_h, in_w] = self.in_shape;
        let [out_c, out_h, out_w] = self.out_shape;
        let [kh, kw] = self.kernel_size;
        let (ci, rest) = (source / (in_h * in_w), source % (in_h * in_w));
        let (y, x) = (rest / in_w, rest % in_w);
        let in_per_group = in_c / self.groups;
        let out_per_group = out_c / self.groups;
        let group = ci / in_per_group;
        let ci_in_group = ci % in_per_group;
        for ky in 0..kh {
            let Some(oy) = output_index(y, ky, self.pads[0], self.dilations[0], self.strides[0], out_h) else {
                continue;
            };
            for kx in 0..kw {
                let Some(ox) = output_index(x, kx, self.pads[1], self.dilations[1], self.strides[1], out_w) else {
                    continue;
                };
                for co in group * out_per_group..(group + 1) * out_per_group {
                    let w = self.kernel[((co * in_per_group + ci_in_group) * kh + ky) * kw + kx];
                    let target = (co * out_h + oy) * out_w + ox;
                    visit(target, w * self.target_scale.get(target));
                }
            }
        }
    }

    /// Calls `visit(physical target, physical source, weight)` for every synapse, both factors
    /// included.
    pub fn for_each_synapse(&self, mut visit: impl FnMut(usize, usize, W)) {
        let count = self.logical_sources();
        self.source.for_each(count, |i, p| {
            let Some(p) = p else { return };
            let factor = self.source_scale.get(i);
            self.for_each_logical_synapse(i, |t, w| {
                if let Some(target) = self.target.get(t) {
                    visit(target, p, factor * w);
                }
            });
        });
    }

    /// Logical fan-out of every logical source, from the geometry: the output rows each input
    /// row reaches times the output columns each input column reaches times the output channels
    /// of its group (dropped targets excluded).
    fn logical_fan_out(&self) -> Vec<u32> {
        let count = self.logical_sources();
        if self.target.has_holes() {
            let mut out = vec![0u32; count];
            for (i, slot) in out.iter_mut().enumerate() {
                self.for_each_logical_synapse(i, |t, _| *slot += self.target.get(t).is_some() as u32);
            }
            return out;
        }
        let [in_c, in_h, in_w] = self.in_shape;
        let [out_c, out_h, out_w] = self.out_shape;
        let rows: Vec<u32> = (0..in_h).map(|y| self.reach(y, 0, out_h)).collect();
        let cols: Vec<u32> = (0..in_w).map(|x| self.reach(x, 1, out_w)).collect();
        let per_group = (out_c / self.groups) as u32;
        let mut out = Vec::with_capacity(count);
        for _ in 0..in_c {
            for &r in &rows {
                out.extend(cols.iter().map(|&c| r * c * per_group));
            }
        }
        out
    }

    /// Number of kernel taps along `axis` that take input position `pos` to a valid output.
    fn reach(&self, pos: usize, axis: usize, size: usize) -> u32 {
        (0..self.kernel_size[axis])
            .filter(|&k| {
                output_index(pos, k, self.pads[axis], self.dilations[axis], self.strides[axis], size).is_some()
            })
            .count() as u32
    }

    /// Number of kernel taps along `axis` that read a valid input for output position `out`.
    fn taps(&self, out: usize, axis: usize, size: usize) -> u32 {
        (0..self.kernel_size[axis])
            .filter(|&k| {
                (out * self.strides[axis] + k * self.dilations[axis])
                    .checked_sub(self.pads[axis])
                    .is_some_and(|i| i < size)
            })
            .count() as u32
    }

    /// Synapses leaving each physical source.
    pub fn fan_out(&self) -> Vec<u32> {
        let logical = self.logical_fan_out();
        if self.source.is_identity() {
            let mut out = logical;
            out.resize(self.sources, 0);
            return out;
        }
        let mut out = vec![0u32; self.sources];
        self.source.for_each(logical.len(), |i, p| {
            if let Some(p) = p {
                out[p] += logical[i];
            }
        });
        out
    }

    /// Synapses reaching each physical target.
    pub fn fan_in(&self) -> Vec<u32> {
        let targets = self.logical_targets();
        let mut logical = vec![0u32; targets];
        if self.source.has_holes() {
            self.for_each_synapse_logical_target(|t| logical[t] += 1);
        } else {
            let [in_c, in_h, in_w] = self.in_shape;
            let [out_c, out_h, out_w] = self.out_shape;
            let per_group = (in_c / self.groups) as u32;
            let rows: Vec<u32> = (0..out_h).map(|oy| self.taps(oy, 0, in_h)).collect();
            let cols: Vec<u32> = (0..out_w).map(|ox| self.taps(ox, 1, in_w)).collect();
            let plane = out_h * out_w;
            for (t, slot) in logical.iter_mut().enumerate().take(out_c * plane) {
                let p = t % plane;
                *slot = rows[p / out_w] * cols[p % out_w] * per_group;
            }
        }
        let mut out = vec![0u32; self.targets];
        self.target.for_each(targets, |t, p| {
            if let Some(p) = p {
                out[p] += logical[t];
            }
        });
        out
    }

    fn for_each_synapse_logical_target(&self, mut visit: impl FnMut(usize)) {
        let count = self.logical_sources();
        self.source.for_each(count, |i, p| {
            if p.is_some() {
                self.for_each_logical_synapse(i, |t, _| visit(t));
            }
        });
    }

    /// Adds `A u` for a dense vector `u` of physical source values to `acc` (physical targets).
    pub fn multiply_add(&self, u: &[W], acc: &mut [W]) {
        let mut x = vec![W::zero(); self.logical_sources()];
        self.source.for_each(x.len(), |i, p| {
            if let Some(p) = p {
                x[i] = u[p] * self.source_scale.get(i);
            }
        });
        let mut y = vec![W::zero(); self.logical_targets()];
        self.convolve(&x, &mut y);
        self.target.for_each(y.len(), |t, p| {
            if let Some(p) = p {
                acc[p] += y[t] * self.target_scale.get(t);
            }
        });
    }

    /// The output columns `lo..hi` whose kernel column `kx` reads inside the input.
    fn valid_columns(&self, kx: usize) -> (usize, usize) {
        let [_, _, in_w] = self.in_shape;
        let out_w = self.out_shape[2];
        let shift = kx * self.dilations[1];
        let stride = self.strides[1];
        // ox·stride + shift − pad ∈ [0, in_w)
        let lo = self.pads[1].saturating_sub(shift).div_ceil(stride);
        let hi = (in_w + self.pads[1]).checked_sub(shift).map_or(0, |limit| limit.div_ceil(stride)).min(out_w);
        (lo.min(hi), hi)
    }

    /// `y += conv(x)` on logical tensors, without factors.
    fn convolve(&self, x: &[W], y: &mut [W]) {
        match Isa::detect().level() {
            Level::Baseline => self.convolve_blocks(x, y),
            // SAFETY: the CPU has AVX2 (`Isa::detect`).
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 | Level::Avx512 => unsafe { self.convolve_blocks_avx2(x, y) },
        }
    }

    /// [`Self::convolve_blocks`] compiled for AVX2 (separate multiplies and adds, as the portable
    /// code: the same bits).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn convolve_blocks_avx2(&self, x: &[W], y: &mut [W]) {
        self.convolve_blocks(x, y)
    }

    /// Output rows are taken a block at a time, every output channel per block, so that the
    /// input rows a block reads stay in cache across the output channels; each target still
    /// sums its terms in the order (input channel, kernel row, kernel column).
    #[inline(always)]
    fn convolve_blocks(&self, x: &[W], y: &mut [W]) {
        let in_c = self.in_shape[0];
        let [out_c, out_h, out_w] = self.out_shape;
        let in_per_group = in_c / self.groups;
        let out_per_group = out_c / self.groups;
        let block_rows = (CONVOLVE_BLOCK / out_w.max(1)).clamp(1, out_h.max(1));
        for block_start in (0..out_h).step_by(block_rows) {
            let block = block_start..(block_start + block_rows).min(out_h);
            for co in 0..out_c {
                self.convolve_rows(x, y, co, block.clone(), in_per_group, out_per_group);
            }
        }
    }

    /// `y += conv(x)` for the output rows `rows` of output channel `co`.
    #[inline(always)]
    fn convolve_rows(
        &self,
        x: &[W],
        y: &mut [W],
        co: usize,
        rows: std::ops::Range<usize>,
        in_per_group: usize,
        out_per_group: usize,
    ) {
        let [_, in_h, in_w] = self.in_shape;
        let [_, out_h, out_w] = self.out_shape;
        let [kh, kw] = self.kernel_size;
        let group = co / out_per_group;
        let out_plane = &mut y[co * out_h * out_w..(co + 1) * out_h * out_w];
        for cig in 0..in_per_group {
            let ci = group * in_per_group + cig;
            let in_plane = &x[ci * in_h * in_w..(ci + 1) * in_h * in_w];
            for ky in 0..kh {
                for kx in 0..kw {
                    let w = self.kernel[((co * in_per_group + cig) * kh + ky) * kw + kx];
                    if w == W::zero() {
                        continue;
                    }
                    let (lo, hi) = self.valid_columns(kx);
                    if lo == hi {
                        continue;
                    }
                    for oy in rows.clone() {
                        let Some(iy) = (oy * self.strides[0] + ky * self.dilations[0])
                            .checked_sub(self.pads[0])
                            .filter(|&iy| iy < in_h)
                        else {
                            continue;
                        };
                        let in_row = &in_plane[iy * in_w..(iy + 1) * in_w];
                        let out_row = &mut out_plane[oy * out_w + lo..oy * out_w + hi];
                        let first = lo * self.strides[1] + kx * self.dilations[1] - self.pads[1];
                        if self.strides[1] == 1 {
                            for (out, &v) in out_row.iter_mut().zip(&in_row[first..]) {
                                *out += w * v;
                            }
                        } else {
                            let inputs = in_row[first..].iter().step_by(self.strides[1]);
                            for (out, &v) in out_row.iter_mut().zip(inputs) {
                                *out += w * v;
                            }
                        }
                    }
                }
            }
        }
    }

    /// The same block with its weights in another precision.
    pub fn cast<T: Real>(&self) -> ConvBlock<T> {
        ConvBlock {
            kernel: self.kernel.iter().map(|w| T::of(w.to_f64_lossless())).collect(),
            in_shape: self.in_shape,
            out_shape: self.out_shape,
            kernel_size: self.kernel_size,
            strides: self.strides,
            pads: self.pads,
            dilations: self.dilations,
            groups: self.groups,
            target_scale: self.target_scale.cast(),
            source_scale: self.source_scale.cast(),
            source: self.source.clone(),
            target: self.target.clone(),
            sources: self.sources,
            targets: self.targets,
        }
    }

    /// Checks the geometry, the factors and the index maps.
    pub fn validate(&self) -> Result<(), NetworkError> {
        let [in_c, _, _] = self.in_shape;
        let [out_c, _, _] = self.out_shape;
        let [kh, kw] = self.kernel_size;
        let bad = |what: String| Err(NetworkError::Block(format!("convolution block: {what}")));
        if self.groups == 0 || in_c % self.groups != 0 || out_c % self.groups != 0 {
            return bad(format!("{} groups do not divide {in_c} input and {out_c} output channels", self.groups));
        }
        if self.strides.contains(&0) || self.dilations.contains(&0) {
            return bad("strides and dilations must be positive".into());
        }
        let expected = out_c * (in_c / self.groups) * kh * kw;
        if self.kernel.len() != expected {
            return bad(format!("kernel holds {} weights, geometry needs {expected}", self.kernel.len()));
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

/// The output row (or column) that input position `pos` reaches through kernel tap `k`.
#[inline]
pub(crate) fn output_index(
    pos: usize,
    k: usize,
    pad: usize,
    dilation: usize,
    stride: usize,
    size: usize,
) -> Option<usize> {
    let shifted = (pos + pad).checked_sub(k * dilation)?;
    if shifted % stride != 0 {
        return None;
    }
    let out = shifted / stride;
    (out < size).then_some(out)
}
