//! An operand's constants `c` and offsets `o` in the simulation's precision, stored once per
//! repetition: a layer applied per token repeats them for every token, and ViT-size networks
//! would otherwise keep hundreds of megabytes of copies.

use crate::real::Real;
use crate::snn::{Repetition, Scale};

/// The constants and offsets of `len` estimates, repeating the same way.
pub(crate) struct OperandConstants<F> {
    bias: Vec<F>,
    offset: Vec<F>,
    repetition: Repetition,
    len: usize,
}

impl<F> OperandConstants<F> {
    /// Number of estimates.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes stored.
    pub fn bytes(&self) -> usize {
        (self.bias.len() + self.offset.len()) * std::mem::size_of::<F>()
    }
}

impl<F: Real> OperandConstants<F> {
    /// Constants `bias` and offsets `offset` (one per estimate), compacted where both repeat
    /// the same way.
    pub fn new(bias: &[f64], offset: &[f64]) -> Self {
        let len = bias.len();
        let repetition = [Repetition::of(bias), Repetition::of(offset)]
            .into_iter()
            .find(|r| r.fits(bias) && r.fits(offset))
            .map_or(Repetition::None, |r| vectorisable(r, len));
        let cast = |values: &[f64]| repetition.compact(values).into_iter().map(F::of).collect();
        OperandConstants { bias: cast(bias), offset: cast(offset), repetition, len }
    }

    /// `len` estimates whose constants are never read (a relay emits `A s` alone).
    pub fn unread(len: usize) -> Self {
        OperandConstants { bias: Vec::new(), offset: Vec::new(), repetition: Repetition::None, len }
    }

    /// Writes every estimate's constant into `out`.
    pub fn write_bias(&self, out: &mut [F]) {
        match self.repetition {
            Repetition::None => out.copy_from_slice(&self.bias),
            Repetition::Periodic(p) => out.chunks_exact_mut(p).for_each(|chunk| chunk.copy_from_slice(&self.bias)),
            Repetition::Runs(r) => out.chunks_exact_mut(r).zip(&self.bias).for_each(|(run, &c)| run.fill(c)),
        }
    }

    /// Calls `each(first estimate, chunk of estimates, chunk of acc, constants, offsets)` over
    /// the estimates `first..first + x.len()` in stretches that read the constants in order: one
    /// stretch, one per period, or one per run (constants and offsets then one value each).
    #[inline(always)]
    fn stretches(&self, first: usize, x: &mut [F], acc: &[F], mut each: impl FnMut(usize, &mut [F], &[F], &[F], &[F])) {
        let end = first + x.len();
        match self.repetition {
            Repetition::None => each(first, x, acc, &self.bias[first..end], &self.offset[first..end]),
            Repetition::Periodic(p) if first == 0 && x.len() == self.len => {
                for (k, (x, acc)) in x.chunks_exact_mut(p).zip(acc.chunks_exact(p)).enumerate() {
                    each(k * p, x, acc, &self.bias, &self.offset);
                }
            }
            Repetition::Runs(r) if first == 0 && x.len() == self.len => {
                for (k, (x, acc)) in x.chunks_exact_mut(r).zip(acc.chunks_exact(r)).enumerate() {
                    each(k * r, x, acc, &self.bias[k..k + 1], &self.offset[k..k + 1]);
                }
            }
            Repetition::Periodic(p) | Repetition::Runs(p) => {
                let (mut x, mut acc, mut at) = (x, acc, first);
                while at < end {
                    let len = (p - at % p).min(end - at);
                    let (stretch, rest) = x.split_at_mut(len);
                    let (stretch_acc, rest_acc) = acc.split_at(len);
                    let constants = match self.repetition {
                        Repetition::Runs(_) => at / p..at / p + 1,
                        _ => at % p..at % p + len,
                    };
                    each(at, stretch, stretch_acc, &self.bias[constants.clone()], &self.offset[constants]);
                    (x, acc, at) = (rest, rest_acc, at + len);
                }
            }
        }
    }

    /// The signGD charge `x −= η (2 (a + c) − o)` of the estimates `first..first + x.len()`.
    #[inline(always)]
    pub fn charge_sign_gd(&self, first: usize, acc: &[F], eta: F, x: &mut [F]) {
        let two = F::of(2.0);
        self.stretches(
            first,
            x,
            acc,
            #[inline(always)]
            |_, x, acc, bias, offset| {
                if bias.len() == 1 {
                    let (c, o) = (bias[0], offset[0]);
                    for (x, &a) in x.iter_mut().zip(acc) {
                        *x -= eta * (two * (a + c) - o);
                    }
                } else {
                    for ((x, &a), (&c, &o)) in x.iter_mut().zip(acc).zip(bias.iter().zip(offset)) {
                        *x -= eta * (two * (a + c) - o);
                    }
                }
            },
        );
    }

    /// [`OperandConstants::charge_sign_gd`] of an input that is one product `p` with factors
    /// `s` (indexed from `first`, as the estimates), read in place: the same bits as
    /// accumulating `0 + p s` first.
    #[inline(always)]
    pub fn charge_sign_gd_product(&self, first: usize, product: &[F], scale: &Scale<F>, eta: F, x: &mut [F]) {
        let two = F::of(2.0);
        match scale {
            // A sum that starts from +0 is never -0, so `0 + p` is `p`.
            Scale::One => self.charge_sign_gd(first, product, eta, x),
            Scale::Uniform(s) => {
                let s = *s;
                self.stretches(
                    first,
                    x,
                    product,
                    #[inline(always)]
                    |_, x, product, bias, offset| {
                        for (i, (x, &p)) in x.iter_mut().zip(product).enumerate() {
                            let (c, o) = if bias.len() == 1 { (bias[0], offset[0]) } else { (bias[i], offset[i]) };
                            *x -= eta * (two * ((F::zero() + p * s) + c) - o);
                        }
                    },
                )
            }
            Scale::Each(factors) => self.stretches(
                first,
                x,
                product,
                #[inline(always)]
                |first, x, product, bias, offset| {
                    let factors = &factors[first..first + x.len()];
                    if bias.len() == 1 {
                        let (c, o) = (bias[0], offset[0]);
                        for ((x, &p), &s) in x.iter_mut().zip(product).zip(factors) {
                            *x -= eta * (two * ((F::zero() + p * s) + c) - o);
                        }
                    } else {
                        for (((x, &p), &s), (&c, &o)) in
                            x.iter_mut().zip(product).zip(factors).zip(bias.iter().zip(offset))
                        {
                            *x -= eta * (two * ((F::zero() + p * s) + c) - o);
                        }
                    }
                },
            ),
        }
    }

    /// The subgradient charge `x −= η (x − (a + c))` of the estimates `first..first + x.len()`.
    #[inline(always)]
    pub fn charge_subgradient(&self, first: usize, acc: &[F], eta: F, x: &mut [F]) {
        self.stretches(
            first,
            x,
            acc,
            #[inline(always)]
            |_, x, acc, bias, _| {
                if bias.len() == 1 {
                    let c = bias[0];
                    for (x, &a) in x.iter_mut().zip(acc) {
                        *x -= eta * (*x - (a + c));
                    }
                } else {
                    for ((x, &a), &c) in x.iter_mut().zip(acc).zip(bias) {
                        *x -= eta * (*x - (a + c));
                    }
                }
            },
        );
    }
}

/// Stretches shorter than this many estimates cost more in loop overhead than their constants
/// save in memory.
const SHORTEST_STRETCH: usize = 16;

/// `repetition` with stretches of at least [`SHORTEST_STRETCH`] estimates: a short period
/// repeated into a longer one that still divides `len`, short runs (and short periods that
/// cannot be lengthened) stored in full. A period of 1 (one value for every estimate) becomes
/// one run over all of them.
fn vectorisable(repetition: Repetition, len: usize) -> Repetition {
    match repetition {
        // One value for every estimate: one run over all of them, not `len` stretches of one.
        Repetition::Periodic(1) if len > 0 => Repetition::Runs(len),
        Repetition::Periodic(p) if p > 1 && p < SHORTEST_STRETCH => (2..)
            .map(|k| k * p)
            .take_while(|&q| q < len)
            .find(|&q| q >= SHORTEST_STRETCH && len.is_multiple_of(q))
            .map_or(Repetition::None, Repetition::Periodic),
        Repetition::Runs(r) if r < SHORTEST_STRETCH => Repetition::None,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charged(constants: &OperandConstants<f32>, acc: &[f32]) -> Vec<f32> {
        let mut x: Vec<f32> = (0..acc.len()).map(|i| i as f32 * 0.25).collect();
        constants.charge_sign_gd(0, acc, 0.3, &mut x);
        constants.charge_subgradient(0, acc, 0.7, &mut x);
        // Charged again a slice at a time, from starts inside periods and runs: the same bits.
        let mut sliced = x.clone();
        let mut whole = x.clone();
        constants.charge_sign_gd(0, acc, 0.5, &mut whole);
        for start in (0..acc.len()).step_by(7) {
            let end = (start + 7).min(acc.len());
            constants.charge_sign_gd(start, &acc[start..end], 0.5, &mut sliced[start..end]);
        }
        assert_eq!(sliced, whole, "charged in slices of 7");
        x
    }

    #[test]
    fn compact_constants_charge_exactly_as_full_ones() {
        let acc: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
        // Too short to be worth compacting: stored in full, charged alike.
        let periodic: Vec<f64> = (0..12).map(|i| [0.5, -1.25, 3.0][i % 3]).collect();
        let runs: Vec<f64> = (0..12).map(|i| [0.1, 7.0][i / 6]).collect();
        let offsets: Vec<f64> = (0..12).map(|i| i as f64).collect();
        for (bias, offset, stored) in [(&periodic, &periodic, 24), (&runs, &runs, 24), (&periodic, &offsets, 24)] {
            let compact = OperandConstants::<f32>::new(bias, offset);
            assert_eq!(compact.bytes(), stored * 4);
            let full = OperandConstants::<f32> {
                bias: bias.iter().map(|&c| c as f32).collect(),
                offset: offset.iter().map(|&o| o as f32).collect(),
                repetition: Repetition::None,
                len: 12,
            };
            assert_eq!(charged(&compact, &acc), charged(&full, &acc));
            let (mut a, mut b) = (vec![0.0; 12], vec![0.0; 12]);
            compact.write_bias(&mut a);
            full.write_bias(&mut b);
            assert_eq!(a, b);
        }
    }

    #[test]
    fn long_stretches_are_compacted_and_charge_exactly_as_full_ones() {
        let len = 32 * 12;
        let acc: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
        let periodic: Vec<f64> = (0..len).map(|i| [0.5, -1.25, 3.0][i % 3]).collect();
        let runs: Vec<f64> = (0..len).map(|i| (i / 32) as f64 * 0.7).collect();
        let constant = vec![0.25; len];
        for (values, stored) in [(&periodic, 2 * 24), (&runs, 2 * 12), (&constant, 2)] {
            let compact = OperandConstants::<f32>::new(values, values);
            assert_eq!(compact.bytes(), stored * 4);
            let full = OperandConstants::<f32> {
                bias: values.iter().map(|&c| c as f32).collect(),
                offset: values.iter().map(|&o| o as f32).collect(),
                repetition: Repetition::None,
                len,
            };
            assert_eq!(charged(&compact, &acc), charged(&full, &acc));
            let (mut a, mut b) = (vec![0.0; len], vec![0.0; len]);
            compact.write_bias(&mut a);
            full.write_bias(&mut b);
            assert_eq!(a, b);
        }
    }

    #[test]
    fn one_value_for_every_estimate_is_charged_as_one_run() {
        let constants = OperandConstants::<f32>::new(&[0.25; 40], &[1.0; 40]);
        assert_eq!(constants.repetition, Repetition::Runs(40));
        assert_eq!(constants.bytes(), 2 * 4);
    }
}
