//! Two-dimensional convolution. Dense and grouped convolutions lower each group to one matrix
//! product (weights `[out, in·kh·kw]` times the im2col matrix `[in·kh·kw, oh·ow]`, which a
//! 1×1 kernel of stride 1 without padding reads in place); depthwise convolutions (one input
//! channel per group) run their own loop over kernel taps, vectorised along output rows.

use ndarray::{ArrayD, ArrayView2, ArrayViewD, ArrayViewMut2, ShapeBuilder};

use super::gemm::{product_into, product_of_columns, SKINNY};
use crate::engine::isa::{Isa, Level};
use crate::model::graph::Op;
use crate::model::infer::output_shape;
use crate::real::Real;

/// The sizes of one convolution or pooling window sweep over a plane.
#[derive(Clone, Copy, Debug)]
pub(super) struct Window {
    /// Input height and width.
    pub input: [usize; 2],
    /// Output height and width.
    pub output: [usize; 2],
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Strides (rows, columns).
    pub strides: [usize; 2],
    /// Padding before the first row and column.
    pub pads: [usize; 2],
    /// Dilations (rows, columns).
    pub dilations: [usize; 2],
}

impl Window {
    /// The output positions `lo..hi` along `axis` (0: rows, 1: columns) whose input position
    /// for kernel tap `tap` lies inside the input, and the input position of `lo` (meaningful
    /// only when the range is not empty).
    pub fn valid(&self, axis: usize, tap: usize) -> (usize, usize, usize) {
        let (size, out, stride, pad) = (self.input[axis], self.output[axis], self.strides[axis], self.pads[axis]);
        let offset = tap * self.dilations[axis];
        let lo = if offset >= pad { 0 } else { (pad - offset).div_ceil(stride) };
        let hi = if size + pad > offset { ((size + pad - offset - 1) / stride + 1).min(out) } else { 0 };
        let lo = lo.min(hi);
        let first = (lo * stride + offset).saturating_sub(pad);
        (lo, hi, first)
    }
}

/// `Conv` on an NCHW input with weights `[out, in / groups, kh, kw]` and an optional bias.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv2d<F: Real>(
    x: &ArrayViewD<F>,
    w: &ArrayViewD<F>,
    bias: Option<&ArrayViewD<F>>,
    strides: [usize; 2],
    pads: [usize; 4],
    dilations: [usize; 2],
    groups: usize,
) -> Result<ArrayD<F>, String> {
    let op = Op::Conv { strides, pads, dilations, groups };
    let shape = output_shape(&op, &[x.shape(), w.shape()], None)?;
    if strides.contains(&0) || dilations.contains(&0) {
        return Err(format!("Conv strides {strides:?} and dilations {dilations:?} must be positive"));
    }
    let (batch, channels, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (m, cg, kh, kw) = (w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]);
    let window = Window {
        input: [h, wd],
        output: [shape[2], shape[3]],
        kernel: [kh, kw],
        strides,
        pads: [pads[0], pads[1]],
        dilations,
    };
    let plane = shape[2] * shape[3];
    let mg = m / groups;
    let x = x.as_standard_layout();
    let x = x.as_slice().ok_or("Conv input is not contiguous")?;
    let w = w.as_standard_layout();
    let w = w.as_slice().ok_or("Conv weights are not contiguous")?;
    let mut out = biased_output(batch, m, plane, bias)?;
    if plane == 0 {
        return super::shaped(&shape, out);
    }
    let inputs = x.chunks_exact(channels * h * wd);
    let outputs = out.chunks_exact_mut(m * plane);
    if groups > 1 && cg == 1 {
        let isa = Isa::detect();
        for (x, out) in inputs.zip(outputs) {
            for (oc, y) in out.chunks_exact_mut(plane).enumerate() {
                let taps = &w[oc * kh * kw..(oc + 1) * kh * kw];
                depthwise(isa, &x[(oc / mg) * h * wd..][..h * wd], taps, &window, y);
            }
        }
        return super::shaped(&shape, out);
    }
    let kk = cg * kh * kw;
    let in_place = kh == 1 && kw == 1 && strides == [1, 1] && pads == [0; 4];
    if batch > 1 && plane <= SKINNY {
        let index = TapIndex::new(&window);
        for g in 0..groups {
            let wg = ArrayView2::from_shape((mg, kk), &w[g * mg * kk..(g + 1) * mg * kk]).map_err(|e| e.to_string())?;
            let fill = |b: usize, cols: &mut WideColumns<F>| {
                let xg = &x[b * channels * h * wd + g * cg * h * wd..][..cg * h * wd];
                for (c, input) in xg.chunks_exact(h * wd).enumerate() {
                    for tap in 0..kh * kw {
                        cols.set_row(c * kh * kw + tap, index.gather(tap, input));
                    }
                }
                Ok(())
            };
            let target = Target { out: &mut out, stride: m * plane, offset: g * mg * plane };
            batched_product(wg, plane, fill, target, bias.is_some())?;
        }
        return super::shaped(&shape, out);
    }
    let multiply = |cols: &mut [F]| -> Result<(), String> {
        for (x, out) in inputs.zip(outputs) {
            for g in 0..groups {
                let xg = &x[g * cg * h * wd..(g + 1) * cg * h * wd];
                let cols = if in_place {
                    xg
                } else {
                    im2col(xg, cg, &window, cols);
                    &cols[..]
                };
                let cols = ArrayView2::from_shape((kk, plane), cols).map_err(|e| e.to_string())?;
                let wg =
                    ArrayView2::from_shape((mg, kk), &w[g * mg * kk..(g + 1) * mg * kk]).map_err(|e| e.to_string())?;
                let mut y = ArrayViewMut2::from_shape((mg, plane), &mut out[g * mg * plane..(g + 1) * mg * plane])
                    .map_err(|e| e.to_string())?;
                product_into(&mut y, wg, cols, bias.is_some())?;
            }
        }
        Ok(())
    };
    if in_place {
        multiply(&mut [])?;
    } else {
        F::with_scratch(kk * plane, multiply)?;
    }
    super::shaped(&shape, out)
}

/// Writes the im2col matrix of `channels` input planes into `cols`: row `(c, ki, kj)` holds,
/// for every output position, the input under kernel tap `(ki, kj)` of channel `c` (0 in the
/// padding).
fn im2col<F: Real>(x: &[F], channels: usize, win: &Window, cols: &mut [F]) {
    let [h, w] = win.input;
    let [oh, ow] = win.output;
    let [kh, kw] = win.kernel;
    let mut rows = cols.chunks_exact_mut(oh * ow);
    for c in 0..channels {
        let plane = &x[c * h * w..(c + 1) * h * w];
        for ki in 0..kh {
            for kj in 0..kw {
                let Some(row) = rows.next() else { return };
                tap_row(plane, win, ki, kj, row);
            }
        }
    }
}

/// Writes into `row` (one value per output position) the input of `plane` under kernel tap
/// `(ki, kj)`, 0 in the padding.
fn tap_row<F: Real>(plane: &[F], win: &Window, ki: usize, kj: usize, row: &mut [F]) {
    let w = win.input[1];
    let ow = win.output[1];
    let sw = win.strides[1];
    let (ylo, yhi, iy0) = win.valid(0, ki);
    let (xlo, xhi, ix0) = win.valid(1, kj);
    row[..ylo * ow].fill(F::zero());
    row[yhi * ow..].fill(F::zero());
    for (dy, oy) in (ylo..yhi).enumerate() {
        let dst = &mut row[oy * ow..(oy + 1) * ow];
        dst[..xlo].fill(F::zero());
        dst[xhi..].fill(F::zero());
        if xlo == xhi {
            continue;
        }
        let iy = iy0 + dy * win.strides[0];
        let src = &plane[iy * w + ix0..(iy + 1) * w];
        if sw == 1 {
            dst[xlo..xhi].copy_from_slice(&src[..xhi - xlo]);
        } else {
            for (d, &s) in dst[xlo..xhi].iter_mut().zip(src.iter().step_by(sw)) {
                *d = s;
            }
        }
    }
}

/// The kernel rows and the range of kernel columns that meet the input at some output position
/// (the others only ever see padding); `None` when every tap does, or none.
pub(super) fn reaching_taps(win: &Window) -> Option<(Vec<usize>, std::ops::Range<usize>)> {
    let rows: Vec<usize> = (0..win.kernel[0]).filter(|&ki| win.valid(0, ki).0 < win.valid(0, ki).1).collect();
    let columns: Vec<usize> = (0..win.kernel[1]).filter(|&kj| win.valid(1, kj).0 < win.valid(1, kj).1).collect();
    let (&first, &last) = (columns.first()?, columns.last()?);
    if rows.is_empty() || (rows.len() == win.kernel[0] && columns.len() == win.kernel[1]) {
        return None;
    }
    Some((rows, first..last + 1))
}

/// The weights `[out, in, kh, kw]` of the taps that reach the input, `[out, rows, columns, in]`
/// over the kernel rows and the range of kernel columns of [`reaching_taps`], for
/// [`conv2d_taps`]: each output's weights are contiguous, the other taps' not stored.
pub(super) fn reaching_weights<F: Real>(w: &ArrayViewD<F>, win: &Window) -> Option<Vec<F>> {
    let (rows, columns) = reaching_taps(win)?;
    if w.ndim() != 4 || w.shape()[2] != win.kernel[0] || w.shape()[3] != win.kernel[1] {
        return None;
    }
    let (m, cg) = (w.shape()[0], w.shape()[1]);
    let mut out = Vec::with_capacity(m * rows.len() * columns.len() * cg);
    for o in 0..m {
        for &ki in &rows {
            for kj in columns.clone() {
                out.extend((0..cg).map(|c| w[[o, c, ki, kj]]));
            }
        }
    }
    Some(out)
}

/// [`conv2d`] with the weights of [`reaching_weights`] for a convolution some of whose taps only
/// ever see padding: one product per kernel row that reaches the input, over the columns that
/// do, so that the weights of the other taps are never read.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv2d_taps<F: Real>(
    x: &ArrayViewD<F>,
    w: &ArrayViewD<F>,
    taps: &[F],
    bias: Option<&ArrayViewD<F>>,
    strides: [usize; 2],
    pads: [usize; 4],
    dilations: [usize; 2],
    groups: usize,
) -> Result<ArrayD<F>, String> {
    let op = Op::Conv { strides, pads, dilations, groups };
    let shape = output_shape(&op, &[x.shape(), w.shape()], None)?;
    let (batch, channels, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (m, cg, kh, kw) = (w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]);
    let window = Window {
        input: [h, wd],
        output: [shape[2], shape[3]],
        kernel: [kh, kw],
        strides,
        pads: [pads[0], pads[1]],
        dilations,
    };
    let reaching = reaching_taps(&window);
    let stored = |(rows, columns): &(Vec<usize>, std::ops::Range<usize>)| m * rows.len() * columns.len() * cg;
    let usable = reaching.as_ref().is_some_and(|r| stored(r) == taps.len());
    if !usable || strides.contains(&0) || dilations.contains(&0) || groups == 0 {
        return conv2d(x, w, bias, strides, pads, dilations, groups);
    }
    let Some((rows, columns)) = reaching else { return Err("no taps".into()) };
    let row_stride = rows.len() * columns.len() * cg;
    let plane = shape[2] * shape[3];
    let mg = m / groups;
    let x = x.as_standard_layout();
    let x = x.as_slice().ok_or("Conv input is not contiguous")?;
    let mut out = biased_output(batch, m, plane, bias)?;
    if plane == 0 {
        return super::shaped(&shape, out);
    }
    let k = columns.len() * cg;
    let weights = |g: usize, ri: usize| {
        let start = g * mg * row_stride + ri * k;
        let end = start + (mg - 1) * row_stride + k;
        ArrayView2::from_shape((mg, k).strides((row_stride, 1)), &taps[start..end]).map_err(|e| e.to_string())
    };
    if batch > 1 && plane <= SKINNY {
        let index = TapIndex::new(&window);
        for g in 0..groups {
            for (ri, &ki) in rows.iter().enumerate() {
                let fill = |b: usize, cols: &mut WideColumns<F>| {
                    let xg = &x[b * channels * h * wd + g * cg * h * wd..][..cg * h * wd];
                    for (t, kj) in columns.clone().enumerate() {
                        for (c, input) in xg.chunks_exact(h * wd).enumerate() {
                            cols.set_row(t * cg + c, index.gather(ki * kw + kj, input));
                        }
                    }
                    Ok(())
                };
                let target = Target { out: &mut out, stride: m * plane, offset: g * mg * plane };
                batched_product(weights(g, ri)?, plane, fill, target, true)?;
            }
        }
        return super::shaped(&shape, out);
    }
    let mut cols = vec![F::zero(); k * plane];
    for (x, out) in x.chunks_exact(channels * h * wd).zip(out.chunks_exact_mut(m * plane)) {
        for g in 0..groups {
            let xg = &x[g * cg * h * wd..(g + 1) * cg * h * wd];
            for (ri, &ki) in rows.iter().enumerate() {
                let mut row_chunks = cols.chunks_exact_mut(plane);
                for kj in columns.clone() {
                    for c in 0..cg {
                        let Some(row) = row_chunks.next() else { return Err("im2col overrun".into()) };
                        tap_row(&xg[c * h * wd..(c + 1) * h * wd], &window, ki, kj, row);
                    }
                }
                let wg = weights(g, ri)?;
                let cols = ArrayView2::from_shape((k, plane), &cols[..]).map_err(|e| e.to_string())?;
                let mut y = ArrayViewMut2::from_shape((mg, plane), &mut out[g * mg * plane..(g + 1) * mg * plane])
                    .map_err(|e| e.to_string())?;
                product_into(&mut y, wg, cols, true)?;
            }
        }
    }
    super::shaped(&shape, out)
}

/// Where [`batched_product`] writes: the rows of `[out channel, position]` from `offset` of
/// every batch element, `stride` apart.
struct Target<'a, F> {
    out: &'a mut [F],
    stride: usize,
    offset: usize,
}

/// One batch element's columns of the product of [`batched_product`], each column contiguous.
struct WideColumns<'a, F> {
    data: &'a mut [F],
    k: usize,
    first: usize,
}

impl<F> WideColumns<'_, F> {
    /// Sets row `r` of the element's `[k, plane]` matrix to `values`.
    fn set_row(&mut self, r: usize, values: impl Iterator<Item = F>) {
        for (p, v) in values.enumerate() {
            self.data[(self.first + p) * self.k + r] = v;
        }
    }
}

/// For every kernel tap and output position of a window, the position of the input plane it
/// reads, or [`TapIndex::PADDING`]: im2col of small maps as one gather per row.
struct TapIndex {
    plane: usize,
    index: Vec<u32>,
}

impl TapIndex {
    const PADDING: u32 = u32::MAX;

    fn new(win: &Window) -> Self {
        let [oh, ow] = win.output;
        let plane = oh * ow;
        let mut index = vec![Self::PADDING; win.kernel[0] * win.kernel[1] * plane];
        for (tap, row) in index.chunks_exact_mut(plane.max(1)).enumerate() {
            let (ki, kj) = (tap / win.kernel[1], tap % win.kernel[1]);
            let (ylo, yhi, iy0) = win.valid(0, ki);
            let (xlo, xhi, ix0) = win.valid(1, kj);
            for oy in ylo..yhi {
                for ox in xlo..xhi {
                    let iy = iy0 + (oy - ylo) * win.strides[0];
                    let ix = ix0 + (ox - xlo) * win.strides[1];
                    row[oy * ow + ox] = (iy * win.input[1] + ix) as u32;
                }
            }
        }
        TapIndex { plane, index }
    }

    /// The input of `plane` under kernel tap `tap` (`ki · kw + kj`) at every output position,
    /// 0 in the padding: what [`tap_row`] writes.
    fn gather<'a, F: Real>(&'a self, tap: usize, plane: &'a [F]) -> impl Iterator<Item = F> + 'a {
        let index = &self.index[tap * self.plane..][..self.plane];
        index.iter().map(|&i| if i == Self::PADDING { F::zero() } else { plane[i as usize] })
    }
}

/// `y_b (+)= w · cols_b` for every batch element `b` of `target` at once, where `fill(b, cols)`
/// writes element `b`'s `[k, plane]` matrix: the weights are read once for all the elements
/// (each row of them for four columns at a time) instead of once per element, and each element
/// is summed as its own product of `plane` columns would be ([`product_of_columns`]).
fn batched_product<F: Real>(
    w: ArrayView2<'_, F>,
    plane: usize,
    mut fill: impl FnMut(usize, &mut WideColumns<F>) -> Result<(), String>,
    target: Target<'_, F>,
    accumulate: bool,
) -> Result<(), String> {
    let (mg, k) = w.dim();
    let Target { out, stride, offset } = target;
    let batch = out.len() / stride.max(1);
    let n = batch * plane;
    let mut y = vec![F::zero(); mg * n];
    for b in 0..batch {
        let element = &out[b * stride + offset..][..mg * plane];
        for (o, row) in element.chunks_exact(plane).enumerate() {
            y[o * n + b * plane..][..plane].copy_from_slice(row);
        }
    }
    F::with_scratch(k * n, |columns| {
        for b in 0..batch {
            fill(b, &mut WideColumns { data: columns, k, first: b * plane })?;
        }
        let mut product = ArrayViewMut2::from_shape((mg, n), &mut y[..]).map_err(|e| e.to_string())?;
        product_of_columns(&mut product, w, columns, accumulate)
    })?;
    for b in 0..batch {
        let element = &mut out[b * stride + offset..][..mg * plane];
        for (o, row) in element.chunks_exact_mut(plane).enumerate() {
            row.copy_from_slice(&y[o * n + b * plane..][..plane]);
        }
    }
    Ok(())
}

/// Adds to the output plane `y` the convolution of one input plane `x` with one kernel.
fn depthwise<F: Real>(isa: Isa, x: &[F], taps: &[F], win: &Window, y: &mut [F]) {
    match isa.level() {
        Level::Baseline => depthwise_plane(x, taps, win, y),
        // SAFETY: the CPU has AVX2 (`Isa::detect`).
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { depthwise_avx2(x, taps, win, y) },
        // SAFETY: the CPU has AVX-512F (`Isa::detect`).
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { depthwise_avx512(x, taps, win, y) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn depthwise_avx2<F: Real>(x: &[F], taps: &[F], win: &Window, y: &mut [F]) {
    depthwise_plane(x, taps, win, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn depthwise_avx512<F: Real>(x: &[F], taps: &[F], win: &Window, y: &mut [F]) {
    depthwise_plane(x, taps, win, y)
}

#[inline(always)]
fn depthwise_plane<F: Real>(x: &[F], taps: &[F], win: &Window, y: &mut [F]) {
    let w = win.input[1];
    let ow = win.output[1];
    let [sh, sw] = win.strides;
    let kw = win.kernel[1];
    for (ki, kernel_row) in taps.chunks_exact(kw).enumerate() {
        let (ylo, yhi, iy0) = win.valid(0, ki);
        for (kj, &tap) in kernel_row.iter().enumerate() {
            let (xlo, xhi, ix0) = win.valid(1, kj);
            if xlo == xhi {
                continue;
            }
            for (dy, oy) in (ylo..yhi).enumerate() {
                let iy = iy0 + dy * sh;
                let src = &x[iy * w + ix0..(iy + 1) * w];
                let dst = &mut y[oy * ow + xlo..oy * ow + xhi];
                if sw == 1 {
                    for (d, &s) in dst.iter_mut().zip(src) {
                        *d += tap * s;
                    }
                } else {
                    for (d, &s) in dst.iter_mut().zip(src.iter().step_by(sw)) {
                        *d += tap * s;
                    }
                }
            }
        }
    }
}

/// The output `[batch, m, plane]` of a convolution before its products: each channel its bias.
fn biased_output<F: Real>(
    batch: usize,
    m: usize,
    plane: usize,
    bias: Option<&ArrayViewD<F>>,
) -> Result<Vec<F>, String> {
    let mut out = vec![F::zero(); batch * m * plane];
    if let Some(b) = bias {
        if b.len() != m {
            return Err("Conv bias length differs from output channels".into());
        }
        for (channel, &v) in out.chunks_exact_mut(plane.max(1)).zip(b.iter().cycle()) {
            channel.fill(v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use ndarray::IxDyn;

    use super::*;

    /// The convolution by its definition.
    fn reference(
        x: &ArrayD<f64>,
        w: &ArrayD<f64>,
        strides: [usize; 2],
        pads: [usize; 4],
        dil: [usize; 2],
        groups: usize,
    ) -> ArrayD<f64> {
        let op = Op::Conv { strides, pads, dilations: dil, groups };
        let shape = output_shape(&op, &[x.shape(), w.shape()], None).unwrap();
        let (cg, kh, kw) = (w.shape()[1], w.shape()[2], w.shape()[3]);
        let mg = w.shape()[0] / groups;
        ArrayD::from_shape_fn(IxDyn(&shape), |i| {
            let (b, oc, oy, ox) = (i[0], i[1], i[2], i[3]);
            let g = oc / mg;
            let mut s = 0.0;
            for c in 0..cg {
                for ki in 0..kh {
                    for kj in 0..kw {
                        let iy = (oy * strides[0] + ki * dil[0]) as isize - pads[0] as isize;
                        let ix = (ox * strides[1] + kj * dil[1]) as isize - pads[1] as isize;
                        if iy >= 0 && ix >= 0 && (iy as usize) < x.shape()[2] && (ix as usize) < x.shape()[3] {
                            s += w[[oc, c, ki, kj]] * x[[b, g * cg + c, iy as usize, ix as usize]];
                        }
                    }
                }
            }
            s
        })
    }

    /// Input shape, weight shape, strides, pads, dilations, groups.
    type Case = ([usize; 4], [usize; 4], [usize; 2], [usize; 4], [usize; 2], usize);

    #[test]
    fn matches_the_definition() {
        let cases: &[Case] = &[
            ([2, 3, 9, 8], [4, 3, 3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1),
            ([1, 3, 11, 10], [5, 3, 7, 7], [2, 2], [3, 3, 3, 3], [1, 1], 1),
            ([1, 4, 6, 6], [6, 4, 1, 1], [1, 1], [0; 4], [1, 1], 1),
            ([1, 4, 7, 6], [6, 4, 1, 1], [2, 2], [0; 4], [1, 1], 1),
            ([1, 4, 9, 9], [8, 2, 3, 3], [2, 1], [1, 0, 2, 1], [2, 1], 2),
            ([2, 4, 9, 7], [4, 1, 3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 4),
            ([1, 3, 12, 12], [6, 1, 7, 7], [2, 3], [3, 2, 3, 1], [1, 2], 3),
            ([1, 2, 2, 2], [2, 1, 5, 5], [1, 1], [4, 4, 4, 4], [1, 1], 2),
            // small maps: some taps only ever see padding
            ([1, 6, 1, 1], [5, 6, 3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1),
            ([2, 4, 2, 2], [7, 4, 3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 1),
            ([1, 4, 1, 3], [6, 2, 3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 2),
            ([1, 3, 2, 5], [4, 3, 5, 3], [1, 2], [2, 1, 2, 1], [1, 1], 1),
        ];
        for &(xs, ws, strides, pads, dil, groups) in cases {
            let x = ArrayD::from_shape_fn(IxDyn(&xs), |i| ((i[1] * 31 + i[2] * 7 + i[3] * 3 + i[0]) % 17) as f64 - 8.0);
            let w = ArrayD::from_shape_fn(IxDyn(&ws), |i| {
                ((i[0] * 5 + i[1] * 3 + i[2] * 11 + i[3]) % 13) as f64 * 0.5 - 3.0
            });
            let b = ArrayD::from_shape_fn(IxDyn(&[ws[0]]), |i| i[0] as f64 - 1.5);
            let want = reference(&x, &w, strides, pads, dil, groups);
            let got = conv2d(&x.view(), &w.view(), None, strides, pads, dil, groups).unwrap();
            assert_eq!(got, want, "{xs:?} {ws:?} {strides:?} {pads:?} {dil:?} {groups}");
            let out_shape =
                output_shape(&Op::Conv { strides, pads, dilations: dil, groups }, &[&xs, &ws], None).unwrap();
            let window = Window {
                input: [xs[2], xs[3]],
                output: [out_shape[2], out_shape[3]],
                kernel: [ws[2], ws[3]],
                strides,
                pads: [pads[0], pads[1]],
                dilations: dil,
            };
            let taps = reaching_weights(&w.view(), &window).unwrap_or_default();
            let tapped = conv2d_taps(&x.view(), &w.view(), &taps, Some(&b.view()), strides, pads, dil, groups).unwrap();
            let biased_reference = conv2d(&x.view(), &w.view(), Some(&b.view()), strides, pads, dil, groups).unwrap();
            assert_eq!(tapped, biased_reference, "taps: {xs:?} {ws:?} {strides:?} {pads:?} {dil:?} {groups}");
            let biased = conv2d(&x.view(), &w.view(), Some(&b.view()), strides, pads, dil, groups).unwrap();
            let mut want_biased = want.clone();
            for (mut c, &v) in want_biased.axis_iter_mut(ndarray::Axis(1)).zip(b.iter()) {
                c.mapv_inplace(|y| y + v);
            }
            assert_eq!(biased, want_biased);
            let x32 = x.mapv(|v| v as f32);
            let w32 = w.mapv(|v| v as f32);
            let got32 = conv2d(&x32.view(), &w32.view(), None, strides, pads, dil, groups).unwrap();
            assert_eq!(got32, want.mapv(|v| v as f32));
            // Several inputs in one call (one product for all of them on small maps) give each
            // the bits it gets alone, in float32 where the order of summation shows.
            let x32 = x32.mapv(|v| v * 0.37 + 0.011);
            let w32 = w32.mapv(|v| v * 1.3 - 0.007);
            let b32 = b.mapv(|v| v as f32 * 0.1);
            let shifted: Vec<ArrayD<f32>> = (0..3).map(|k| x32.mapv(|v| v - 0.3 * k as f32)).collect();
            let views: Vec<_> = shifted.iter().map(|a| a.view()).collect();
            let stacked = ndarray::concatenate(ndarray::Axis(0), &views).unwrap();
            let together = conv2d(&stacked.view(), &w32.view(), Some(&b32.view()), strides, pads, dil, groups).unwrap();
            let taps32 = reaching_weights(&w32.view(), &window).unwrap_or_default();
            let tapped_together =
                conv2d_taps(&stacked.view(), &w32.view(), &taps32, None, strides, pads, dil, groups).unwrap();
            let per_element = xs[0];
            for (k, one) in shifted.iter().enumerate() {
                let alone = conv2d(&one.view(), &w32.view(), Some(&b32.view()), strides, pads, dil, groups).unwrap();
                let part = ndarray::s![k * per_element..(k + 1) * per_element, .., .., ..];
                assert_eq!(together.slice(part).into_dyn(), alone, "together: {xs:?} {ws:?}");
                let alone = conv2d_taps(&one.view(), &w32.view(), &taps32, None, strides, pads, dil, groups).unwrap();
                assert_eq!(tapped_together.slice(part).into_dyn(), alone, "taps together: {xs:?} {ws:?}");
            }
        }
    }
}
