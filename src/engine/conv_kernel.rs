//! An output-stationary convolution kernel. Each step the active sources are listed per input
//! pixel and channel group (channels-last); every output pixel then sums, in registers, the
//! contiguous weight rows `[tap][in channel][out channels]` of its active inputs, and writes
//! each target once. Event-driven (inactive sources cost nothing) and exact: every target adds
//! its terms in an order fixed by the active set alone, with separate multiplies and adds, so
//! the result is the same bit for bit on every instruction set the kernel runs on.

use super::isa::{Isa, Level};
use crate::real::Real;
use crate::snn::{ConvBlock, Scale};

/// Largest run of output channels summed in registers, in bytes.
const CHUNK_BYTES: usize = 128;

/// How [`gather`] reads the sources: listed spikes, listed values, or dense channels-last values.
const SPIKES: u8 = 0;
const VALUES: u8 = 1;
const DENSE: u8 = 2;

/// Independent register sums per output channel, so that consecutive additions overlap.
const BANKS: usize = 4;

/// Per-worker buffers of [`ConvGather`]: the active sources of one step, listed per input pixel
/// and channel group.
pub struct ConvScratch<F> {
    /// Per `(pixel, in channel slot)`: offset of the source's weight row within its tap.
    rows: Vec<u32>,
    /// Per `(pixel, in channel slot)`: the source's value (unused for spikes).
    values: Vec<F>,
    /// Per `(pixel, group)`: number of active sources listed.
    counts: Vec<u32>,
    /// Per tap valid at one output pixel: `(tap, input pixel)`.
    taps: Vec<(u32, u32)>,
    /// The weight rows of one output pixel and group, over all its taps, and their values.
    flat: Vec<u32>,
    flat_values: Vec<F>,
}

impl<F: Real> ConvScratch<F> {
    /// Buffers for convolutions of at most `sources` source elements.
    pub fn new(sources: usize) -> Self {
        ConvScratch {
            rows: vec![0; sources],
            values: vec![F::zero(); sources],
            counts: vec![0; sources],
            taps: Vec::new(),
            flat: Vec::new(),
            flat_values: Vec::new(),
        }
    }

    /// Bytes the buffers hold.
    pub fn bytes(&self) -> usize {
        let f = std::mem::size_of::<F>();
        (self.rows.capacity() + self.counts.capacity() + self.flat.capacity()) * 4
            + (self.values.capacity() + self.flat_values.capacity()) * f
            + self.taps.capacity() * 8
    }
}

/// A convolution's kernel laid out `[group][tap][in channel of group][out channel of group]`, the
/// out channels padded to a whole number of register chunks. A convolution with one input and
/// few output channels per group (depthwise) is instead laid out `[tap][out channel]` and summed
/// densely across channels from a channels-last copy of its input.
pub struct ConvGather<F> {
    weights: Vec<F>,
    depthwise: bool,
    /// Output channels summed together in registers.
    chunk: usize,
    /// Out channels of a group, rounded up to a multiple of `chunk`: the stride of weight rows.
    row_len: usize,
    isa: Isa,
}

/// Geometry in the form the inner loops use.
struct Shape {
    in_c: usize,
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
    kh: usize,
    kw: usize,
    groups: usize,
    in_per_group: usize,
    out_per_group: usize,
}

impl Shape {
    fn of<F>(conv: &ConvBlock<F>) -> Self {
        let [in_c, in_h, in_w] = conv.in_shape;
        let [out_c, out_h, out_w] = conv.out_shape;
        let [kh, kw] = conv.kernel_size;
        let groups = conv.groups;
        Shape {
            in_c,
            in_h,
            in_w,
            out_h,
            out_w,
            kh,
            kw,
            groups,
            in_per_group: in_c / groups,
            out_per_group: out_c / groups,
        }
    }
}

impl<F> ConvGather<F> {
    /// Bytes of the rearranged kernel.
    pub fn bytes(&self) -> usize {
        self.weights.len() * std::mem::size_of::<F>()
    }
}

impl<F: Real> ConvGather<F> {
    /// Rearranges the kernel of `conv`.
    pub fn new(conv: &ConvBlock<F>) -> Self {
        let s = Shape::of(conv);
        let taps = s.kh * s.kw;
        let (depthwise, chunk, row_len) = Self::layout(&s);
        let mut weights = vec![F::zero(); s.groups * taps * s.in_per_group * row_len];
        if depthwise {
            weights = vec![F::zero(); taps * row_len];
            for co in 0..s.groups * s.out_per_group {
                for tap in 0..taps {
                    weights[tap * row_len + co] = conv.kernel[co * taps + tap];
                }
            }
        }
        for g in (0..s.groups).filter(|_| !depthwise) {
            for cog in 0..s.out_per_group {
                let co = g * s.out_per_group + cog;
                for cig in 0..s.in_per_group {
                    for tap in 0..taps {
                        weights[((g * taps + tap) * s.in_per_group + cig) * row_len + cog] =
                            conv.kernel[(co * s.in_per_group + cig) * taps + tap];
                    }
                }
            }
        }
        assert!(weights.len() <= u32::MAX as usize, "convolution kernel too large");
        ConvGather { weights, depthwise, chunk, row_len, isa: Isa::detect() }
    }

    /// Whether the convolution is summed densely across channels, the number of output channels
    /// summed together in registers, and the stride of weight rows.
    fn layout(s: &Shape) -> (bool, usize, usize) {
        let depthwise = s.in_per_group == 1 && s.out_per_group < 8;
        let channels = if depthwise { s.groups * s.out_per_group } else { s.out_per_group };
        let chunk = channels.next_power_of_two().min(CHUNK_BYTES / std::mem::size_of::<F>());
        (depthwise, chunk, channels.div_ceil(chunk) * chunk)
    }

    /// Elements `scratch` must hold room for (see [`ConvScratch::new`]).
    pub fn scratch_len(conv: &ConvBlock<F>) -> usize {
        let s = Shape::of(conv);
        match Self::layout(&s) {
            // Channels-last values, each repeated for the output channels it feeds.
            (true, _, row_len) => s.in_h * s.in_w * row_len,
            // The active sources listed per pixel and channel group.
            (false, _, _) => s.in_c * s.in_h * s.in_w,
        }
    }

    /// Writes the source values channels-last, each repeated for the output channels it feeds.
    fn spread(&self, s: &Shape, scratch: &mut ConvScratch<F>, mut value: impl FnMut(usize) -> F) {
        let plane = s.in_h * s.in_w;
        let dense = &mut scratch.values[..plane * self.row_len];
        for (p, pixel) in dense.chunks_exact_mut(self.row_len).enumerate() {
            for (ci, outs) in pixel[..s.in_c * s.out_per_group].chunks_exact_mut(s.out_per_group).enumerate() {
                outs.fill(value(ci * plane + p));
            }
        }
    }

    /// Adds the synapses of every source in `fired` (sorted ascending, each emitting 1) to `acc`.
    pub fn add_spikes(&self, conv: &ConvBlock<F>, fired: &[u32], scratch: &mut ConvScratch<F>, acc: &mut [F]) {
        let s = Shape::of(conv);
        let plane = s.in_h * s.in_w;
        if self.depthwise {
            scratch.values[..plane * self.row_len].fill(F::zero());
            for &j in fired {
                let (ci, p) = (j as usize / plane, j as usize % plane);
                scratch.values[p * self.row_len + ci * s.out_per_group..][..s.out_per_group].fill(F::one());
            }
            return self.dispatch::<DENSE>(conv, &s, scratch, acc);
        }
        scratch.counts[..plane * s.groups].fill(0);
        let (mut start, mut group, mut row) = (0, 0, 0);
        for &j in fired {
            let j = j as usize;
            if j >= start + plane {
                let ci = j / plane;
                start = ci * plane;
                group = ci / s.in_per_group;
                row = ((ci % s.in_per_group) * self.row_len) as u32;
            }
            let p = j - start;
            let slot = p * s.groups + group;
            let n = scratch.counts[slot];
            scratch.rows[p * s.in_c + group * s.in_per_group + n as usize] = row;
            scratch.counts[slot] = n + 1;
        }
        self.dispatch::<SPIKES>(conv, &s, scratch, acc);
    }

    /// Adds `A u` for a dense real-valued source vector `u` to `acc`; zeros cost nothing.
    pub fn add_values(&self, conv: &ConvBlock<F>, values: &[F], scratch: &mut ConvScratch<F>, acc: &mut [F]) {
        let s = Shape::of(conv);
        let plane = s.in_h * s.in_w;
        if self.depthwise {
            self.spread(&s, scratch, |j| values[j]);
            return self.dispatch::<DENSE>(conv, &s, scratch, acc);
        }
        scratch.counts[..plane * s.groups].fill(0);
        for (ci, channel) in values.chunks_exact(plane).enumerate() {
            let group = ci / s.in_per_group;
            let row = ((ci % s.in_per_group) * self.row_len) as u32;
            for (p, &u) in channel.iter().enumerate() {
                let slot = p * s.groups + group;
                let n = scratch.counts[slot];
                let at = p * s.in_c + group * s.in_per_group + n as usize;
                scratch.rows[at] = row;
                scratch.values[at] = u;
                scratch.counts[slot] = n + (u != F::zero()) as u32;
            }
        }
        self.dispatch::<VALUES>(conv, &s, scratch, acc);
    }

    fn dispatch<const MODE: u8>(&self, conv: &ConvBlock<F>, s: &Shape, scratch: &mut ConvScratch<F>, acc: &mut [F]) {
        match self.chunk {
            1 => self.on_isa::<1, MODE>(conv, s, scratch, acc),
            2 => self.on_isa::<2, MODE>(conv, s, scratch, acc),
            4 => self.on_isa::<4, MODE>(conv, s, scratch, acc),
            8 => self.on_isa::<8, MODE>(conv, s, scratch, acc),
            16 => self.on_isa::<16, MODE>(conv, s, scratch, acc),
            32 => self.on_isa::<32, MODE>(conv, s, scratch, acc),
            n => unreachable!("chunk of {n} output channels"),
        }
    }

    fn on_isa<const N: usize, const MODE: u8>(
        &self,
        conv: &ConvBlock<F>,
        s: &Shape,
        scratch: &mut ConvScratch<F>,
        acc: &mut [F],
    ) {
        match self.isa.level() {
            Level::Baseline => gather::<F, N, MODE>(self, conv, s, scratch, acc),
            // SAFETY: `Isa::detect` found the feature on this CPU.
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => unsafe { gather_avx2::<F, N, MODE>(self, conv, s, scratch, acc) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { gather_avx512::<F, N, MODE>(self, conv, s, scratch, acc) },
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn gather_avx2<F: Real, const N: usize, const MODE: u8>(
    kernel: &ConvGather<F>,
    conv: &ConvBlock<F>,
    s: &Shape,
    scratch: &mut ConvScratch<F>,
    acc: &mut [F],
) {
    gather::<F, N, MODE>(kernel, conv, s, scratch, acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn gather_avx512<F: Real, const N: usize, const MODE: u8>(
    kernel: &ConvGather<F>,
    conv: &ConvBlock<F>,
    s: &Shape,
    scratch: &mut ConvScratch<F>,
    acc: &mut [F],
) {
    gather::<F, N, MODE>(kernel, conv, s, scratch, acc)
}

/// For every output pixel, group and chunk of `N` output channels: sums the weight rows of the
/// listed sources over the valid taps (source `i` of the pixel's list into bank `i mod BANKS`),
/// then adds the sums, times the target scales, to `acc`.
#[inline(always)]
fn gather<F: Real, const N: usize, const MODE: u8>(
    kernel: &ConvGather<F>,
    conv: &ConvBlock<F>,
    s: &Shape,
    scratch: &mut ConvScratch<F>,
    acc: &mut [F],
) {
    let ConvScratch { rows, values, counts, taps, flat, flat_values } = scratch;
    let [sh, sw] = conv.strides;
    let [ph, pw] = conv.pads;
    let [dh, dw] = conv.dilations;
    let tap_len = s.in_per_group * kernel.row_len;
    for oy in 0..s.out_h {
        for ox in 0..s.out_w {
            taps.clear();
            for ky in 0..s.kh {
                let Some(iy) = (oy * sh + ky * dh).checked_sub(ph).filter(|&iy| iy < s.in_h) else { continue };
                for kx in 0..s.kw {
                    let Some(ix) = (ox * sw + kx * dw).checked_sub(pw).filter(|&ix| ix < s.in_w) else { continue };
                    taps.push(((ky * s.kw + kx) as u32, (iy * s.in_w + ix) as u32));
                }
            }
            let p_out = oy * s.out_w + ox;
            if MODE == DENSE {
                for c0 in (0..s.groups * s.out_per_group).step_by(N) {
                    // Tap `t` of the list into the even or the odd bank, as `t mod 2` says.
                    let (mut even, mut odd) = ([F::zero(); N], [F::zero(); N]);
                    let add_tap = |sums: &mut [F; N], &(tap, p_in): &(u32, u32)| {
                        let x: &[F; N] = values[p_in as usize * kernel.row_len + c0..][..N].try_into().unwrap();
                        let w: &[F; N] = kernel.weights[tap as usize * kernel.row_len + c0..][..N].try_into().unwrap();
                        for ((s, &x), &w) in sums.iter_mut().zip(x).zip(w) {
                            *s += x * w;
                        }
                    };
                    let mut pairs = taps.chunks_exact(2);
                    for pair in &mut pairs {
                        add_tap(&mut even, &pair[0]);
                        add_tap(&mut odd, &pair[1]);
                    }
                    if let [last] = pairs.remainder() {
                        add_tap(&mut even, last);
                    }
                    let sums: [F; N] = std::array::from_fn(|k| even[k] + odd[k]);
                    add_sums(conv, &sums, c0, p_out, acc);
                }
                continue;
            }
            for g in 0..s.groups {
                flat.clear();
                flat_values.clear();
                for &(tap, p_in) in taps.iter() {
                    let (tap, p_in) = (tap as usize, p_in as usize);
                    let n = counts[p_in * s.groups + g] as usize;
                    let first = p_in * s.in_c + g * s.in_per_group;
                    let base = ((g * s.kh * s.kw + tap) * tap_len) as u32;
                    flat.extend(rows[first..first + n].iter().map(|&r| base + r));
                    if MODE == VALUES {
                        flat_values.extend_from_slice(&values[first..first + n]);
                    }
                }
                for c0 in (0..s.out_per_group).step_by(N) {
                    let weights = &kernel.weights[c0..];
                    let row = |o: u32| -> &[F; N] { weights[o as usize..][..N].try_into().unwrap() };
                    let value = |i: usize| if MODE == SPIKES { F::one() } else { flat_values[i] };
                    let mut banks = [[F::zero(); N]; BANKS];
                    let mut quads = flat.chunks_exact(BANKS);
                    for (q, quad) in (&mut quads).enumerate() {
                        for b in 0..BANKS {
                            add_row::<F, N, MODE>(&mut banks[b], row(quad[b]), value(q * BANKS + b));
                        }
                    }
                    let done = flat.len() - quads.remainder().len();
                    for (b, &o) in quads.remainder().iter().enumerate() {
                        add_row::<F, N, MODE>(&mut banks[b], row(o), value(done + b));
                    }
                    let sums: [F; N] =
                        std::array::from_fn(|k| (banks[0][k] + banks[1][k]) + (banks[2][k] + banks[3][k]));
                    let live = N.min(s.out_per_group - c0);
                    add_sums(conv, &sums[..live], g * s.out_per_group + c0, p_out, acc);
                }
            }
        }
    }
}

/// Adds `sums`, times the target scales, to output channels `first..` at output pixel `p_out`
/// (channels past the last are padding and ignored).
#[inline(always)]
fn add_sums<F: Real>(conv: &ConvBlock<F>, sums: &[F], first: usize, p_out: usize, acc: &mut [F]) {
    let [out_c, out_h, out_w] = conv.out_shape;
    let plane = out_h * out_w;
    let live = sums.len().min(out_c - first);
    for (k, &sum) in sums[..live].iter().enumerate() {
        let target = (first + k) * plane + p_out;
        acc[target] += match &conv.target_scale {
            Scale::One => sum,
            scale => sum * scale.get(target),
        };
    }
}

/// `sums += row` for a spike, `sums += value · row` otherwise.
#[inline(always)]
fn add_row<F: Real, const N: usize, const MODE: u8>(sums: &mut [F; N], row: &[F; N], value: F) {
    if MODE == SPIKES {
        for (s, &w) in sums.iter_mut().zip(row) {
            *s += w;
        }
    } else {
        for (s, &w) in sums.iter_mut().zip(row) {
            *s += value * w;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_convs::block;
    use super::*;
    use crate::snn::SynapseBlock;

    /// Checks spikes (every third source fires, or none) and real values with zeros against
    /// the generic block.
    fn check<F: Real>(conv: ConvBlock<F>, tolerance: f64) {
        let generic = SynapseBlock::Conv(conv.clone());
        let (sources, targets) = (generic.sources(), generic.targets());
        let kernel = ConvGather::new(&conv);
        let mut scratch = ConvScratch::new(ConvGather::scratch_len(&conv));
        let close = |got: &[F], expected: &[F], what: &str| {
            for (i, (g, e)) in got.iter().zip(expected).enumerate() {
                let (g, e) = (g.to_f64_lossless(), e.to_f64_lossless());
                assert!((g - e).abs() <= tolerance * (1.0 + e.abs()), "{what} target {i}: {g} vs {e} in {conv:?}");
            }
        };
        let start: Vec<F> = (0..targets).map(|i| F::of((i as f64 * 0.37).cos())).collect();
        for fired in [(0..sources as u32).filter(|j| j % 3 != 1).collect::<Vec<_>>(), vec![], vec![sources as u32 - 1]]
        {
            let mut expected = start.clone();
            generic.deliver_events(&fired, &mut expected);
            let mut got = start.clone();
            kernel.add_spikes(&conv, &fired, &mut scratch, &mut got);
            close(&got, &expected, "spikes");
        }
        let values: Vec<F> =
            (0..sources).map(|j| if j % 5 == 2 { F::zero() } else { F::of((j as f64 * 2.3).sin()) }).collect();
        let mut expected = start.clone();
        generic.multiply_add(&values, &mut expected);
        let mut got = start.clone();
        kernel.add_values(&conv, &values, &mut scratch, &mut got);
        close(&got, &expected, "values");
    }

    fn cases<F: Real>() -> Vec<ConvBlock<F>> {
        let mut cases = Vec::new();
        for scaled in [false, true] {
            cases.extend([
                block([3, 8, 8], 5, 3, 1, 1, 1, 1, scaled),
                block([16, 9, 7], 32, 3, 2, 1, 1, 1, scaled),
                block([16, 14, 14], 48, 3, 1, 1, 1, 1, scaled),
                block([8, 10, 10], 16, 1, 1, 0, 1, 1, scaled),
                block([6, 9, 9], 6, 3, 1, 1, 1, 6, scaled),
                block([5, 7, 8], 5, 1, 1, 0, 1, 5, scaled),
                block([6, 12, 12], 6, 7, 1, 3, 1, 6, scaled),
                block([4, 9, 9], 8, 3, 1, 1, 1, 2, scaled),
                block([4, 9, 9], 8, 3, 2, 1, 1, 2, scaled),
                block([8, 8, 8], 16, 3, 1, 2, 2, 4, scaled),
                block([1, 28, 28], 8, 4, 4, 0, 1, 1, scaled),
                block([2, 11, 11], 64, 3, 2, 0, 1, 2, scaled),
            ]);
        }
        cases
    }

    #[test]
    fn matches_the_generic_block_in_f64() {
        for conv in cases::<f64>() {
            check(conv, 1e-12);
        }
    }

    #[test]
    fn matches_the_generic_block_in_f32() {
        for conv in cases::<f32>() {
            check(conv, 1e-4);
        }
    }

    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        let conv = block::<f32>([16, 9, 9], 32, 3, 1, 1, 1, 2, true);
        let fired: Vec<u32> = (0..16 * 81).filter(|j| (j * 7) % 11 < 6).collect();
        let values: Vec<f32> = (0..16 * 81).map(|j| (j as f32 * 0.9).sin()).collect();
        let mut kernel = ConvGather::new(&conv);
        let mut scratch = ConvScratch::new(ConvGather::scratch_len(&conv));
        let run = |kernel: &ConvGather<f32>, scratch: &mut ConvScratch<f32>| {
            let mut spikes = vec![0.0; 16 * 81 * 2];
            kernel.add_spikes(&conv, &fired, scratch, &mut spikes);
            let mut dense = vec![0.0; 16 * 81 * 2];
            kernel.add_values(&conv, &values, scratch, &mut dense);
            (spikes, dense)
        };
        let detected = run(&kernel, &mut scratch);
        kernel.isa = Isa::baseline();
        let baseline = run(&kernel, &mut scratch);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&detected.0), bits(&baseline.0));
        assert_eq!(bits(&detected.1), bits(&baseline.1));
    }
}
