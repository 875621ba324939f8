//! Convolution blocks the kernels' tests are checked on.

use crate::real::Real;
use crate::snn::{ConvBlock, Scale};

/// A `k`×`k` convolution with deterministic weights; `scaled` gives it a factor per target.
#[allow(clippy::too_many_arguments)]
pub(crate) fn block<F: Real>(
    in_shape: [usize; 3],
    out_c: usize,
    k: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    groups: usize,
    scaled: bool,
) -> ConvBlock<F> {
    let [ci, h, w] = in_shape;
    let out = |n: usize| (n + 2 * pad - dilation * (k - 1) - 1) / stride + 1;
    let targets = out_c * out(h) * out(w);
    let mut conv = ConvBlock::new(
        (0..out_c * (ci / groups) * k * k).map(|i| F::of((i as f64 * 1.618).sin())).collect(),
        in_shape,
        [out_c, out(h), out(w)],
        [k, k],
        [stride, stride],
        [pad, pad],
        [dilation, dilation],
        groups,
    );
    if scaled {
        conv.target_scale = Scale::Each((0..targets).map(|i| F::of(0.75 + 0.5 * (i as f64 * 0.7).cos())).collect());
    }
    conv
}
