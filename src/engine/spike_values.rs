//! A population's spikes as 0/1 values, for the kernels that read every source's value, and a
//! weight added where a row of spikes is 1, for those that read the bits themselves.

#[cfg(target_arch = "x86_64")]
use std::any::TypeId;

use crate::real::Real;

use super::isa::Isa;
#[cfg(target_arch = "x86_64")]
use super::isa::Level;

/// Writes spike `i` (bit `i % 64` of word `i / 64` of `bits`) to `out[i]` as 1 or 0, for every
/// `i < out.len()`; `bits` covers `out`.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub(super) fn spike_values<F: Real>(isa: Isa, bits: &[u64], out: &mut [F]) {
    assert!(bits.len() * 64 >= out.len(), "{} bits for {} values", bits.len() * 64, out.len());
    #[cfg(target_arch = "x86_64")]
    if isa.level() == Level::Avx512 {
        let whole = out.len() / 64;
        let (head, tail) = out.split_at_mut(whole * 64);
        if TypeId::of::<F>() == TypeId::of::<f32>() {
            // SAFETY: `F` is `f32` (same type, same layout); `Isa::detect` found AVX-512F.
            unsafe { avx512::words_f32(&bits[..whole], &mut *(head as *mut [F] as *mut [f32])) };
            return portable(&bits[whole..], tail);
        }
        if TypeId::of::<F>() == TypeId::of::<f64>() {
            // SAFETY: as above, for `f64`.
            unsafe { avx512::words_f64(&bits[..whole], &mut *(head as *mut [F] as *mut [f64])) };
            return portable(&bits[whole..], tail);
        }
    }
    portable(bits, out)
}

/// Adds `w` to `y[j]` for every `j` whose spike `start + j` of `bits` is 1: the bits of
/// `y[j] += w * s` on 0/1 values, without writing the values out.
#[inline(always)]
pub(super) fn add_where_spiked<F: Real>(isa: Isa, y: &mut [F], w: F, bits: &[u64], start: usize) {
    assert!(bits.len() * 64 >= start + y.len(), "{} bits for spikes up to {}", bits.len() * 64, start + y.len());
    #[cfg(target_arch = "x86_64")]
    if isa.level() == Level::Avx512 {
        if TypeId::of::<F>() == TypeId::of::<f32>() {
            // SAFETY: `F` is `f32` (same type, same layout); `Isa::detect` found AVX-512F.
            let (y, w) = unsafe { (&mut *(y as *mut [F] as *mut [f32]), *(&w as *const F as *const f32)) };
            return unsafe { avx512::add_where_spiked_f32(y, w, bits, start) };
        }
        if TypeId::of::<F>() == TypeId::of::<f64>() {
            // SAFETY: as above, for `f64`.
            let (y, w) = unsafe { (&mut *(y as *mut [F] as *mut [f64]), *(&w as *const F as *const f64)) };
            return unsafe { avx512::add_where_spiked_f64(y, w, bits, start) };
        }
    }
    for (j, y) in y.iter_mut().enumerate() {
        let p = start + j;
        if bits[p / 64] >> (p % 64) & 1 == 1 {
            *y += w;
        }
    }
}

/// The `len` (at most 64) spikes from `start` as the low bits of a word.
#[inline(always)]
pub(super) fn spikes_at(bits: &[u64], start: usize, len: usize) -> u64 {
    let (word, shift) = (start / 64, start % 64);
    let mut spikes = bits[word] >> shift;
    if shift != 0 && shift + len > 64 {
        spikes |= bits[word + 1] << (64 - shift);
    }
    if len < 64 {
        spikes &= (1 << len) - 1;
    }
    spikes
}

fn portable<F: Real>(bits: &[u64], out: &mut [F]) {
    for (chunk, &word) in out.chunks_mut(64).zip(bits) {
        for (k, s) in chunk.iter_mut().enumerate() {
            *s = if word >> k & 1 == 1 { F::one() } else { F::zero() };
        }
    }
}

/// Masked adds of a weight, and masked moves of a vector of ones, per 16 (or 8) spikes.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{_mm512_add_pd, _mm512_add_ps, _mm512_mask_storeu_pd, _mm512_mask_storeu_ps};
    use std::arch::x86_64::{_mm512_maskz_loadu_pd, _mm512_maskz_loadu_ps};
    use std::arch::x86_64::{_mm512_maskz_mov_pd, _mm512_maskz_mov_ps, _mm512_set1_pd, _mm512_set1_ps};
    use std::arch::x86_64::{_mm512_storeu_pd, _mm512_storeu_ps};

    use super::spikes_at;

    /// Per 64 spikes a word; per 16 of them, the elements whose spike is 1 are loaded, added to
    /// and stored under that mask.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn add_where_spiked_f32(y: &mut [f32], w: f32, bits: &[u64], start: usize) {
        let weight = _mm512_set1_ps(w);
        for (c, chunk) in y.chunks_mut(64).enumerate() {
            let spikes = spikes_at(bits, start + 64 * c, chunk.len());
            for q in (0..chunk.len().div_ceil(16)).filter(|q| spikes >> (16 * q) & 0xFFFF != 0) {
                let mask = (spikes >> (16 * q)) as u16;
                // SAFETY: the mask holds only lanes below `chunk.len() - 16 q` (`spikes_at`
                // clears the bits past the chunk), so only elements of `chunk` are touched.
                unsafe {
                    let at = chunk.as_mut_ptr().add(16 * q);
                    let sum = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, at), weight);
                    _mm512_mask_storeu_ps(at, mask, sum);
                }
            }
        }
    }

    /// As [`add_where_spiked_f32`], 8 elements a vector.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn add_where_spiked_f64(y: &mut [f64], w: f64, bits: &[u64], start: usize) {
        let weight = _mm512_set1_pd(w);
        for (c, chunk) in y.chunks_mut(64).enumerate() {
            let spikes = spikes_at(bits, start + 64 * c, chunk.len());
            for q in (0..chunk.len().div_ceil(8)).filter(|q| spikes >> (8 * q) & 0xFF != 0) {
                let mask = (spikes >> (8 * q)) as u8;
                // SAFETY: as in `add_where_spiked_f32`.
                unsafe {
                    let at = chunk.as_mut_ptr().add(8 * q);
                    let sum = _mm512_add_pd(_mm512_maskz_loadu_pd(mask, at), weight);
                    _mm512_mask_storeu_pd(at, mask, sum);
                }
            }
        }
    }

    /// `out` holds exactly 64 values per word of `bits`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn words_f32(bits: &[u64], out: &mut [f32]) {
        assert_eq!(out.len(), bits.len() * 64);
        let ones = _mm512_set1_ps(1.0);
        for (chunk, &word) in out.chunks_exact_mut(64).zip(bits) {
            for q in 0..4 {
                // SAFETY: 16 values at 16 q within the chunk of 64.
                unsafe {
                    _mm512_storeu_ps(
                        chunk.as_mut_ptr().add(16 * q),
                        _mm512_maskz_mov_ps((word >> (16 * q)) as u16, ones),
                    )
                };
            }
        }
    }

    /// `out` holds exactly 64 values per word of `bits`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn words_f64(bits: &[u64], out: &mut [f64]) {
        assert_eq!(out.len(), bits.len() * 64);
        let ones = _mm512_set1_pd(1.0);
        for (chunk, &word) in out.chunks_exact_mut(64).zip(bits) {
            for q in 0..8 {
                // SAFETY: 8 values at 8 q within the chunk of 64.
                unsafe {
                    _mm512_storeu_pd(chunk.as_mut_ptr().add(8 * q), _mm512_maskz_mov_pd((word >> (8 * q)) as u8, ones))
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<F: Real>() {
        let bits: Vec<u64> = (0..5u64).map(|w| w.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (w << 61)).collect();
        for len in [0, 1, 63, 64, 65, 200, 320] {
            let mut fast = vec![F::of(7.0); len];
            let mut slow = vec![F::of(7.0); len];
            spike_values(Isa::detect(), &bits, &mut fast);
            portable(&bits, &mut slow);
            assert_eq!(fast, slow, "{len} values");
            for (i, &s) in slow.iter().enumerate() {
                assert_eq!(s == F::one(), bits[i / 64] >> (i % 64) & 1 == 1, "spike {i}");
            }
        }
    }

    #[test]
    fn every_instruction_set_writes_each_bit_as_one_or_zero() {
        check::<f32>();
        check::<f64>();
    }

    fn check_rows<F: Real>() {
        let bits: Vec<u64> = (0..6u64).map(|w| w.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (w << 61)).collect();
        let bits = [&bits[..], &[0, 0]].concat();
        for (start, len) in [(0, 64), (1, 64), (3, 61), (5, 197), (64, 70), (130, 17), (320, 64), (390, 1), (191, 0)] {
            let values = {
                let mut v = vec![F::zero(); 64 * bits.len()];
                portable(&bits, &mut v);
                v
            };
            let before: Vec<F> = (0..len).map(|j| F::of((j as f64 * 0.7).sin() * 1e3)).collect();
            let w = F::of(0.1);
            let expected: Vec<F> = before.iter().zip(&values[start..]).map(|(&y, &s)| y + w * s).collect();
            let mut got = before.clone();
            add_where_spiked(Isa::detect(), &mut got, w, &bits, start);
            assert_eq!(got, expected, "{len} spikes from {start}");
            let mut portable = before;
            add_where_spiked(Isa::baseline(), &mut portable, w, &bits, start);
            assert_eq!(portable, expected, "portable, {len} spikes from {start}");
        }
    }

    #[test]
    fn a_weight_is_added_where_a_spike_is_one() {
        check_rows::<f32>();
        check_rows::<f64>();
    }
}
