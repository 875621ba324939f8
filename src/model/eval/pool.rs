//! Max and average pooling over the planes of an NCHW tensor.

use ndarray::{ArrayD, ArrayViewD};

use super::conv::Window;
use super::shaped;
use crate::real::Real;

/// The reduction of a pooling window.
pub(super) enum PoolKind {
    /// The largest value (NaN wins).
    Max,
    /// The mean; `include_pad` divides by the window clipped to the padded extent (PyTorch's
    /// `count_include_pad`), otherwise by the number of inputs in the window.
    Avg {
        /// Whether padding counts in the divisor.
        include_pad: bool,
    },
}

/// Pools every plane of `x` into `out_shape` (`[n, c, oh, ow]`).
pub(super) fn pool<F: Real>(
    x: &ArrayViewD<F>,
    out_shape: &[usize],
    kernel: [usize; 2],
    strides: [usize; 2],
    pads: [usize; 4],
    dil: [usize; 2],
    kind: PoolKind,
) -> Result<ArrayD<F>, String> {
    if x.ndim() != 4 {
        return Err(format!("pooling expects a 4-D input, got {:?}", x.shape()));
    }
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    if out_shape.len() != 4 || out_shape[0] != n || out_shape[1] != c {
        return Err(format!("bad pool output shape {out_shape:?} for input {:?}", x.shape()));
    }
    if strides.contains(&0) || dil.contains(&0) {
        return Err(format!("pooling strides {strides:?} and dilations {dil:?} must be positive"));
    }
    let (oh, ow) = (out_shape[2], out_shape[3]);
    let win = Window { input: [h, w], output: [oh, ow], kernel, strides, pads: [pads[0], pads[1]], dilations: dil };
    let x = x.as_standard_layout();
    let x = x.as_slice().ok_or("pooling input is not contiguous")?;
    let mut out = vec![F::zero(); n * c * oh * ow];
    let mut valid = vec![0usize; oh * ow];
    let init = match kind {
        PoolKind::Max => F::neg_infinity(),
        PoolKind::Avg { .. } => F::zero(),
    };
    for (plane, y) in x.chunks_exact((h * w).max(1)).zip(out.chunks_exact_mut((oh * ow).max(1))) {
        y.fill(init);
        valid.fill(0);
        for ki in 0..kernel[0] {
            let (ylo, yhi, iy0) = win.valid(0, ki);
            for kj in 0..kernel[1] {
                let (xlo, xhi, ix0) = win.valid(1, kj);
                if xlo == xhi {
                    continue;
                }
                for (dy, oy) in (ylo..yhi).enumerate() {
                    let row = &plane[(iy0 + dy * strides[0]) * w + ix0..];
                    let range = oy * ow + xlo..oy * ow + xhi;
                    match kind {
                        PoolKind::Max => max_row(&mut y[range], row, strides[1]),
                        PoolKind::Avg { .. } => {
                            for (i, (acc, count)) in y[range.clone()].iter_mut().zip(&mut valid[range]).enumerate() {
                                *acc += row[i * strides[1]];
                                *count += 1;
                            }
                        }
                    }
                }
            }
        }
        if let PoolKind::Avg { include_pad } = kind {
            for (i, (acc, &count)) in y.iter_mut().zip(&valid).enumerate() {
                let div = if include_pad {
                    // window clipped to the padded extent (PyTorch semantics)
                    let (oy, ox) = (i / ow, i % ow);
                    let y0 = (oy * strides[0]) as isize - pads[0] as isize;
                    let x0 = (ox * strides[1]) as isize - pads[1] as isize;
                    let y1 = (y0 + kernel[0] as isize).min((h + pads[2]) as isize);
                    let x1 = (x0 + kernel[1] as isize).min((w + pads[3]) as isize);
                    ((y1 - y0) * (x1 - x0)).max(1) as usize
                } else {
                    count.max(1)
                };
                *acc /= F::of(div as f64);
            }
        }
    }
    shaped(out_shape, out)
}

/// `acc[i] = max(acc[i], row[i · stride])`, a NaN winning.
fn max_row<F: Real>(acc: &mut [F], row: &[F], stride: usize) {
    if stride == 1 {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a = if v > *a || v.is_nan() { v } else { *a };
        }
    } else {
        for (a, &v) in acc.iter_mut().zip(row.iter().step_by(stride)) {
            *a = if v > *a || v.is_nan() { v } else { *a };
        }
    }
}
