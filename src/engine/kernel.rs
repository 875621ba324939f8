//! Convolution kernels: a dense one for real-valued sources and an event-driven one whose
//! kernel is rearranged so every tap of an event adds contiguous output channels.

use crate::real::Real;
use crate::snn::synapse::output_index;
use crate::snn::ConvBlock;

/// Adds the convolution of a dense source vector `x` (channel-major) to `acc`: for every
/// kernel tap, one contiguous multiply-add along each output row where the stride is 1.
pub fn convolve_dense<F: Real>(conv: &ConvBlock<F>, x: &[F], acc: &mut [F]) {
    let [in_c, in_h, in_w] = conv.in_shape;
    let [out_c, out_h, out_w] = conv.out_shape;
    let [kh, kw] = conv.kernel_size;
    let [sh, sw] = conv.strides;
    let [ph, pw] = conv.pads;
    let [dh, dw] = conv.dilations;
    let in_per_group = in_c / conv.groups;
    let out_per_group = out_c / conv.groups;
    let plane = out_h * out_w;
    for co in 0..out_c {
        let group = co / out_per_group;
        let out_plane = &mut acc[co * plane..(co + 1) * plane];
        let scale_plane = conv.target_scale.get(co * plane..(co + 1) * plane);
        for cig in 0..in_per_group {
            let ci = group * in_per_group + cig;
            let in_plane = &x[ci * in_h * in_w..(ci + 1) * in_h * in_w];
            for ky in 0..kh {
                for kx in 0..kw {
                    let w = conv.kernel[((co * in_per_group + cig) * kh + ky) * kw + kx];
                    // Output columns whose input column ox·sw − pw + kx·dw lies inside the map.
                    let shift = kx * dw;
                    let first = pw.saturating_sub(shift).div_ceil(sw);
                    let last = (in_w + pw).saturating_sub(shift + 1) / sw;
                    if first >= out_w || first > last {
                        continue;
                    }
                    let last = last.min(out_w - 1);
                    for oy in 0..out_h {
                        let Some(iy) = (oy * sh + ky * dh).checked_sub(ph) else { continue };
                        if iy >= in_h {
                            continue;
                        }
                        let out_row = &mut out_plane[oy * out_w..(oy + 1) * out_w];
                        let in_row = &in_plane[iy * in_w..(iy + 1) * in_w];
                        let start = first * sw + shift - pw;
                        let n = last - first + 1;
                        let outs = &mut out_row[first..=last];
                        let ins = in_row[start..].iter().step_by(sw);
                        match scale_plane {
                            Some(scales) => {
                                let scales = &scales[oy * out_w + first..oy * out_w + first + n];
                                for ((a, &v), &scale) in outs.iter_mut().zip(ins).zip(scales) {
                                    *a += w * scale * v;
                                }
                            }
                            None if sw == 1 => {
                                for (a, &v) in outs.iter_mut().zip(&in_row[start..start + n]) {
                                    *a += w * v;
                                }
                            }
                            None => {
                                for (a, &v) in outs.iter_mut().zip(ins) {
                                    *a += w * v;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A convolution's kernel rearranged as `[in channel][ky][kx][out channel of the group]`, so that
/// each tap of one active input element adds a contiguous run of output channels (accumulated
/// channels-last in a scratch buffer, then added to the channel-major targets). Event-driven and
/// vectorisable; used where a group has enough output channels to fill a vector.
pub struct ConvColumns<F> {
    kernel: Vec<F>,
}

/// Below this many output channels per group the run is too short to pay for the rearrangement.
const MIN_RUN: usize = 8;

impl<F: Real> ConvColumns<F> {
    /// The rearranged kernel, or `None` when a group has fewer than [`MIN_RUN`] output channels.
    pub fn new(conv: &ConvBlock<F>) -> Option<Self> {
        let [in_c, _, _] = conv.in_shape;
        let [out_c, _, _] = conv.out_shape;
        let [kh, kw] = conv.kernel_size;
        let (in_per_group, out_per_group) = (in_c / conv.groups, out_c / conv.groups);
        if out_per_group < MIN_RUN {
            return None;
        }
        let mut kernel = vec![F::zero(); conv.kernel.len()];
        for co in 0..out_c {
            let (group, cog) = (co / out_per_group, co % out_per_group);
            for cig in 0..in_per_group {
                let ci = group * in_per_group + cig;
                for tap in 0..kh * kw {
                    kernel[(ci * kh * kw + tap) * out_per_group + cog] =
                        conv.kernel[(co * in_per_group + cig) * kh * kw + tap];
                }
            }
        }
        Some(ConvColumns { kernel })
    }

    /// Adds the convolution of the listed `(source, value)` pairs to `acc`; `scratch` holds at
    /// least as many elements as the convolution has targets.
    pub fn apply(
        &self,
        conv: &ConvBlock<F>,
        sources: impl Iterator<Item = (usize, F)>,
        scratch: &mut [F],
        acc: &mut [F],
    ) {
        let [in_c, in_h, in_w] = conv.in_shape;
        let [out_c, out_h, out_w] = conv.out_shape;
        let [kh, kw] = conv.kernel_size;
        let (in_per_group, out_per_group) = (in_c / conv.groups, out_c / conv.groups);
        let plane = out_h * out_w;
        let scratch = &mut scratch[..out_c * plane];
        scratch.fill(F::zero());
        for (j, u) in sources {
            let (ci, rest) = (j / (in_h * in_w), j % (in_h * in_w));
            let (y, x) = (rest / in_w, rest % in_w);
            let group = ci / in_per_group;
            for ky in 0..kh {
                let Some(oy) = output_index(y, ky, conv.pads[0], conv.dilations[0], conv.strides[0], out_h) else {
                    continue;
                };
                for kx in 0..kw {
                    let Some(ox) = output_index(x, kx, conv.pads[1], conv.dilations[1], conv.strides[1], out_w) else {
                        continue;
                    };
                    let k = ((ci * kh + ky) * kw + kx) * out_per_group;
                    let t = (oy * out_w + ox) * out_c + group * out_per_group;
                    for (s, &w) in scratch[t..t + out_per_group].iter_mut().zip(&self.kernel[k..k + out_per_group]) {
                        *s += u * w;
                    }
                }
            }
        }
        for co in 0..out_c {
            let targets = &mut acc[co * plane..(co + 1) * plane];
            match conv.target_scale.get(co * plane..(co + 1) * plane) {
                Some(scales) => {
                    for (p, (a, &scale)) in targets.iter_mut().zip(scales).enumerate() {
                        *a += scale * scratch[p * out_c + co];
                    }
                }
                None => {
                    for (p, a) in targets.iter_mut().enumerate() {
                        *a += scratch[p * out_c + co];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snn::SynapseBlock;

    fn conv(in_shape: [usize; 3], out_c: usize, stride: usize, groups: usize, scaled: bool) -> ConvBlock<f64> {
        let [ci, h, w] = in_shape;
        let out = |n: usize| (n + 2 - 3) / stride + 1;
        let targets = out_c * out(h) * out(w);
        ConvBlock {
            kernel: (0..out_c * (ci / groups) * 9).map(|i| ((i * 7919) % 23) as f64 / 11.0 - 1.0).collect(),
            in_shape,
            out_shape: [out_c, out(h), out(w)],
            kernel_size: [3, 3],
            strides: [stride, stride],
            pads: [1, 1],
            dilations: [1, 1],
            groups,
            target_scale: if scaled { (0..targets).map(|i| 0.5 + (i % 5) as f64 * 0.25).collect() } else { vec![] },
        }
    }

    #[test]
    fn all_convolution_kernels_agree() {
        for (block, input_len) in [
            (conv([2, 6, 6], 16, 1, 2, true), 72),
            (conv([16, 6, 6], 8, 2, 1, false), 576),
            (conv([8, 5, 7], 16, 2, 1, true), 280),
        ] {
            let input: Vec<f64> = (0..input_len).map(|i| ((i * 13) % 9) as f64 / 9.0 - 0.3).collect();
            let generic = SynapseBlock::Conv(block.clone());
            let mut expected = vec![0.0; generic.targets()];
            generic.multiply_add(&input, &mut expected);
            let mut direct = vec![0.0; generic.targets()];
            convolve_dense(&block, &input, &mut direct);
            let columns = ConvColumns::new(&block).expect("enough output channels");
            let mut scratch = vec![0.0; generic.targets()];
            let mut rearranged = vec![0.0; generic.targets()];
            columns.apply(&block, input.iter().copied().enumerate(), &mut scratch, &mut rearranged);
            for i in 0..expected.len() {
                assert!((direct[i] - expected[i]).abs() < 1e-12, "direct {i}");
                assert!(
                    (rearranged[i] - expected[i]).abs() < 1e-12,
                    "columns {i}: {} vs {}",
                    rearranged[i],
                    expected[i]
                );
            }
        }
    }
}
