//! A selection (each target reads at most one source) from a population's spike bits: target
//! `t` adds its factor where its source's bit is 1, as delivering that spike's event would, so
//! no list of events is walked and no per-event scatter is done. Max pooling's slices and
//! residual shortcuts are such selections.

#[cfg(target_arch = "x86_64")]
use std::any::TypeId;

use crate::real::Real;
use crate::snn::synapse::{Scale, SelectBlock, NONE};

use super::isa::Isa;
#[cfg(target_arch = "x86_64")]
use super::isa::Level;

/// A selection block prepared to read its source's spike bits.
pub(super) struct BitSelect<F> {
    /// The source of each target ([`NONE`] for none), or `None` where target `t` reads source `t`.
    entries: Option<Vec<u32>>,
    scale: Scale<F>,
    targets: usize,
    sources: usize,
    isa: Isa,
}

/// The source of each target: a table, or the identity from a first source.
#[derive(Clone, Copy)]
enum Entries<'a> {
    Table(&'a [u32]),
    Identity(usize),
}

/// The factor each target adds: one for all, or one per target.
#[derive(Clone, Copy)]
enum Factors<'a, F> {
    Same(F),
    Each(&'a [F]),
}

impl<F: Real> BitSelect<F> {
    /// Prepares `block` for the kernels of `isa`.
    pub fn new(block: &SelectBlock, isa: Isa) -> Self {
        let entries = (!block.source.is_identity()).then(|| block.source.to_entries(block.targets));
        BitSelect { entries, scale: block.scale.cast(), targets: block.targets, sources: block.sources, isa }
    }

    /// Bytes of the table and factors.
    pub fn bytes(&self) -> usize {
        self.entries.as_ref().map_or(0, Vec::len) * 4 + self.scale.stored() * std::mem::size_of::<F>()
    }

    /// Adds target `start + t`'s factor to `acc[t]` for every target of `start..start +
    /// acc.len()` (at most to the last) whose source fired: bit `p % 64` of word `p / 64` of
    /// `bits` for source `p`.
    pub fn add(&self, bits: &[u64], start: usize, acc: &mut [F]) {
        assert!(bits.len() * 64 >= self.sources, "{} spike bits for {} sources", bits.len() * 64, self.sources);
        let end = (start + acc.len()).min(self.targets);
        let acc = &mut acc[..end.saturating_sub(start)];
        let entries = match &self.entries {
            Some(entries) => Entries::Table(&entries[start..end]),
            None => Entries::Identity(start),
        };
        let factors = match &self.scale {
            Scale::One => Factors::Same(F::one()),
            &Scale::Uniform(s) => Factors::Same(s),
            Scale::Each(factors) => Factors::Each(&factors[start..end]),
        };
        #[cfg(target_arch = "x86_64")]
        if self.isa.level() == Level::Avx512 {
            if TypeId::of::<F>() == TypeId::of::<f32>() {
                // SAFETY: `F` is `f32` (same type, same layout); `Isa::detect` found AVX-512F;
                // every entry below `sources` lies within `bits` (asserted above).
                return unsafe { avx512::add_f32(entries, cast_factors(factors), bits, cast_mut(acc)) };
            }
            if TypeId::of::<F>() == TypeId::of::<f64>() {
                // SAFETY: as above, for `f64`.
                return unsafe { avx512::add_f64(entries, cast_factors(factors), bits, cast_mut(acc)) };
            }
        }
        portable(entries, factors, bits, acc)
    }
}

/// # Safety
///
/// `T` must be `F`.
#[cfg(target_arch = "x86_64")]
unsafe fn cast_factors<F: Real, T: Real>(factors: Factors<F>) -> Factors<T> {
    match factors {
        // SAFETY: the same type (the caller's guarantee).
        Factors::Same(w) => Factors::Same(unsafe { *(&w as *const F as *const T) }),
        // SAFETY: as above.
        Factors::Each(f) => Factors::Each(unsafe { &*(f as *const [F] as *const [T]) }),
    }
}

/// # Safety
///
/// `T` must be `F`.
#[cfg(target_arch = "x86_64")]
unsafe fn cast_mut<F: Real, T: Real>(acc: &mut [F]) -> &mut [T] {
    // SAFETY: the same type (the caller's guarantee).
    unsafe { &mut *(acc as *mut [F] as *mut [T]) }
}

fn portable<F: Real>(entries: Entries, factors: Factors<F>, bits: &[u64], acc: &mut [F]) {
    for (t, y) in acc.iter_mut().enumerate() {
        let p = match entries {
            Entries::Table(entries) => entries[t] as usize,
            Entries::Identity(first) => first + t,
        };
        if p != NONE as usize && bits[p / 64] >> (p % 64) & 1 == 1 {
            *y += match factors {
                Factors::Same(w) => w,
                Factors::Each(f) => f[t],
            };
        }
    }
}

/// Sixteen targets at a time: their spikes as a mask (the source bits gathered through the
/// table, or read in place for the identity), then a masked load, add and store.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{__m512, __m512d, _mm512_add_pd, _mm512_add_ps, _mm512_and_si512};
    use std::arch::x86_64::{_mm512_mask_cmpneq_epi32_mask, _mm512_mask_i32gather_epi32};
    use std::arch::x86_64::{_mm512_mask_storeu_pd, _mm512_mask_storeu_ps, _mm512_mask_test_epi32_mask};
    use std::arch::x86_64::{_mm512_maskz_loadu_epi32, _mm512_maskz_loadu_pd, _mm512_maskz_loadu_ps};
    use std::arch::x86_64::{_mm512_set1_epi32, _mm512_set1_pd, _mm512_set1_ps, _mm512_setzero_si512};
    use std::arch::x86_64::{_mm512_srli_epi32, _mm512_srlv_epi32};

    use super::{Entries, Factors};
    use crate::engine::spike_values::spikes_at;

    /// The spikes of the sources `entries[..n]` (`n` ≤ 16; [`super::NONE`] never fires) as the
    /// low bits of a mask.
    ///
    /// # Safety
    ///
    /// `entries` holds `n` elements and every entry other than `NONE` indexes a bit of `bits`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn gathered_spikes(entries: *const u32, n: usize, bits: &[u64]) -> u16 {
        let lanes = if n >= 16 { u16::MAX } else { (1u16 << n) - 1 };
        // SAFETY: only the `n` lanes of `entries` are loaded; the gathered words are those of
        // live sources, inside `bits` (the caller's guarantee), read as 32-bit words.
        unsafe {
            let p = _mm512_maskz_loadu_epi32(lanes, entries as *const i32);
            let live = _mm512_mask_cmpneq_epi32_mask(lanes, p, _mm512_set1_epi32(-1));
            let words = _mm512_mask_i32gather_epi32::<4>(
                _mm512_setzero_si512(),
                live,
                _mm512_srli_epi32::<5>(p),
                bits.as_ptr() as *const i32,
            );
            let shifted = _mm512_srlv_epi32(words, _mm512_and_si512(p, _mm512_set1_epi32(31)));
            _mm512_mask_test_epi32_mask(live, shifted, _mm512_set1_epi32(1))
        }
    }

    /// The spikes of targets `t..t + n` (`n` ≤ 16) as a mask.
    ///
    /// # Safety
    ///
    /// As [`gathered_spikes`], for the entries from `t`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn spikes(entries: Entries, t: usize, n: usize, bits: &[u64]) -> u16 {
        match entries {
            Entries::Identity(first) => spikes_at(bits, first + t, n) as u16,
            // SAFETY: the caller's guarantee; `t + n` lies within `entries`.
            Entries::Table(entries) => unsafe { gathered_spikes(entries[t..t + n].as_ptr(), n, bits) },
        }
    }

    /// # Safety
    ///
    /// The CPU has AVX-512F; every entry other than `NONE` (every target, without a table)
    /// indexes a bit of `bits`; `Factors::Each` holds a factor per element of `acc`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn add_f32(entries: Entries, factors: Factors<f32>, bits: &[u64], acc: &mut [f32]) {
        let same = match factors {
            Factors::Same(w) => _mm512_set1_ps(w),
            Factors::Each(_) => _mm512_set1_ps(0.0),
        };
        for t in (0..acc.len()).step_by(16) {
            let n = (acc.len() - t).min(16);
            // SAFETY: the caller's guarantee.
            let mask = unsafe { spikes(entries, t, n, bits) };
            if mask == 0 {
                continue;
            }
            // SAFETY: the mask holds only lanes below `n`, so only elements `t..t + n` are
            // touched, of `acc` and of the factors (as long as `acc`).
            unsafe {
                let factor: __m512 = match factors {
                    Factors::Same(_) => same,
                    Factors::Each(f) => _mm512_maskz_loadu_ps(mask, f.as_ptr().add(t)),
                };
                let at = acc.as_mut_ptr().add(t);
                _mm512_mask_storeu_ps(at, mask, _mm512_add_ps(_mm512_maskz_loadu_ps(mask, at), factor));
            }
        }
    }

    /// As [`add_f32`], the mask of sixteen targets split over two vectors of eight.
    ///
    /// # Safety
    ///
    /// As [`add_f32`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn add_f64(entries: Entries, factors: Factors<f64>, bits: &[u64], acc: &mut [f64]) {
        let same = match factors {
            Factors::Same(w) => _mm512_set1_pd(w),
            Factors::Each(_) => _mm512_set1_pd(0.0),
        };
        for t in (0..acc.len()).step_by(16) {
            let n = (acc.len() - t).min(16);
            // SAFETY: the caller's guarantee.
            let mask = unsafe { spikes(entries, t, n, bits) };
            for half in 0..2 {
                let mask = (mask >> (8 * half)) as u8;
                if mask == 0 {
                    continue;
                }
                let at = t + 8 * half;
                // SAFETY: as in `add_f32`: only lanes below `n - 8 half` are set.
                unsafe {
                    let factor: __m512d = match factors {
                        Factors::Same(_) => same,
                        Factors::Each(f) => _mm512_maskz_loadu_pd(mask, f.as_ptr().add(at)),
                    };
                    let at = acc.as_mut_ptr().add(at);
                    _mm512_mask_storeu_pd(at, mask, _mm512_add_pd(_mm512_maskz_loadu_pd(mask, at), factor));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snn::synapse::Index;

    /// A table with holes, repeats and sources in no order; the identity; a strided map.
    fn blocks() -> Vec<SelectBlock> {
        let sources = 300;
        let table = Index::Table {
            entries: (0..203u32).map(|t| if t % 7 == 3 { NONE } else { (t * 37 + 11) % sources as u32 }).collect(),
        };
        let factors = Scale::Each((0..203).map(|t| 0.25 + (t % 5) as f64 * -0.5).collect());
        vec![
            SelectBlock { targets: 203, sources, source: table.clone(), scale: factors.clone() },
            SelectBlock { targets: 203, sources, source: table, scale: Scale::Uniform(-1.5) },
            SelectBlock { targets: 203, sources, source: Index::Identity, scale: factors },
            SelectBlock { targets: 17, sources, source: Index::Identity, scale: Scale::One },
            SelectBlock {
                targets: 60,
                sources,
                source: Index::strided(vec![3, 20], vec![100, 2], 5),
                scale: Scale::Uniform(0.75),
            },
        ]
    }

    fn check<F: Real>() {
        let bits: Vec<u64> = (1..6u64).map(|w| w.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (w << 61)).collect();
        for (b, block) in blocks().iter().enumerate() {
            let before: Vec<F> = (0..block.targets + 3).map(|t| F::of((t as f64 * 0.7).sin() * 1e3)).collect();
            // The events delivered one by one: each target that reads a fired source adds its factor.
            let mut expected = before.clone();
            block.source.for_each(block.targets, |t, p| {
                if p.is_some_and(|p| bits[p / 64] >> (p % 64) & 1 == 1) {
                    expected[t] += F::of(block.scale.get(t));
                }
            });
            assert_ne!(expected, before, "block {b} selects some spike");
            for isa in [Isa::detect(), Isa::baseline()] {
                let select = BitSelect::<F>::new(block, isa);
                let mut got = before.clone();
                select.add(&bits, 0, &mut got);
                assert_eq!(got, expected, "block {b}, {isa:?}");
                // Slice by slice, from starts off any vector or word boundary.
                let mut sliced = before.clone();
                for start in (0..block.targets).step_by(37) {
                    let end = (start + 37).min(sliced.len());
                    select.add(&bits, start, &mut sliced[start..end]);
                }
                assert_eq!(sliced, expected, "block {b} in slices, {isa:?}");
            }
        }
    }

    #[test]
    fn a_target_adds_its_factor_where_its_source_fired() {
        check::<f32>();
        check::<f64>();
    }
}
