//! Matrix products on the `gemm` crate: its f32 and f64 kernels are chosen at run time for the
//! CPU (AVX-512 where present). Every product runs on the calling thread (no parallelism
//! inside), so the evaluator parallelises over inputs and its results do not depend on the
//! number of threads.

use std::any::TypeId;

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};

use crate::engine::isa::{Isa, Level};
use crate::real::Real;

/// `c = a·b`, or `c += a·b` when `accumulate`; an error names the shapes when they do not agree.
pub(crate) fn product_into<F: Real>(
    c: &mut ArrayViewMut2<'_, F>,
    a: ArrayView2<'_, F>,
    b: ArrayView2<'_, F>,
    accumulate: bool,
) -> Result<(), String> {
    let (m, k) = a.dim();
    let n = b.ncols();
    if b.nrows() != k || c.dim() != (m, n) {
        return Err(format!("matrix product of shapes {:?} · {:?} into {:?}", a.shape(), b.shape(), c.shape()));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            c.fill(F::zero());
        }
        return Ok(());
    }
    if n <= SKINNY && a.strides()[1] == 1 {
        skinny(c, a, b, accumulate);
        return Ok(());
    }
    if m <= SKINNY && b.strides()[0] == 1 {
        skinny(&mut c.view_mut().reversed_axes(), b.reversed_axes(), a.reversed_axes(), accumulate);
        return Ok(());
    }
    let kernel = TypeId::of::<F>() == TypeId::of::<f32>() || TypeId::of::<F>() == TypeId::of::<f64>();
    let forward = a.strides().iter().chain(b.strides()).chain(c.strides()).all(|&s| s >= 0);
    if !kernel || !forward {
        let beta = if accumulate { F::one() } else { F::zero() };
        general_mat_mul(F::one(), &a, &b, beta, c);
        return Ok(());
    }
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    let (c_rs, c_cs) = (c.strides()[0], c.strides()[1]);
    // SAFETY: `F` is f32 or f64 (checked above), the element types the crate's kernels take.
    // The views guarantee that every element `(i, j)` within their shapes, at `ptr + i·rs +
    // j·cs`, is valid (for writing, in the case of `c`); the kernels read `a` and `b` and write
    // `c` only within the shapes given, with the strides given (all non-negative). `c` is a
    // unique borrow, so it aliases neither `a` nor `b`, and an `ArrayViewMut2` never has two
    // indices at one address.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs,
            c_rs,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            F::one(),
            F::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    Ok(())
}

/// Products with at most this many columns (or rows) take [`skinny`]: a GEMM would pack the
/// large operand, read once, for little reuse.
const SKINNY: usize = 16;

/// Lanes of the dot products' accumulators (a multiple of the vector width of f32 and f64).
const LANES: usize = 32;

/// `c (+)= a·b` for a `b` of few columns and an `a` whose rows are contiguous: `b`'s columns are
/// copied into contiguous rows, and every element of `c` is a dot product, accumulated in
/// [`LANES`] lanes summed in a fixed order (four columns at a time, so that each row of `a` is
/// read once per four columns).
fn skinny<F: Real>(c: &mut ArrayViewMut2<'_, F>, a: ArrayView2<'_, F>, b: ArrayView2<'_, F>, accumulate: bool) {
    let k = a.ncols();
    let columns: Vec<F> = b.t().iter().copied().collect();
    let isa = Isa::detect();
    for (i, mut row) in c.outer_iter_mut().enumerate() {
        let lhs = a.row(i);
        let Some(lhs) = lhs.as_slice() else {
            // Unreachable: the caller checked that rows are contiguous.
            return;
        };
        let mut start = 0;
        for block in columns.chunks(4 * k) {
            let mut sums = [F::zero(); 4];
            dots(isa, lhs, block, &mut sums);
            for (j, &v) in sums.iter().take(block.len() / k).enumerate() {
                let y = &mut row[start + j];
                *y = if accumulate { *y + v } else { v };
            }
            start += block.len() / k;
        }
    }
}

/// `sums[j] = lhs · rhs[j·k..(j + 1)·k]` for the (one to four) rows of `rhs`, `k = lhs.len()`.
fn dots<F: Real>(isa: Isa, lhs: &[F], rhs: &[F], sums: &mut [F; 4]) {
    match rhs.len().checked_div(lhs.len()).unwrap_or(0) {
        0 => {}
        1 => dots_rows::<F, 1>(isa, lhs, rhs, sums),
        2 => dots_rows::<F, 2>(isa, lhs, rhs, sums),
        3 => dots_rows::<F, 3>(isa, lhs, rhs, sums),
        _ => dots_rows::<F, 4>(isa, lhs, rhs, sums),
    }
}

fn dots_rows<F: Real, const R: usize>(isa: Isa, lhs: &[F], rhs: &[F], sums: &mut [F; 4]) {
    match isa.level() {
        Level::Baseline => dots_generic::<F, R>(lhs, rhs, sums),
        // SAFETY: the CPU has AVX2 (`Isa::detect`).
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { dots_avx2::<F, R>(lhs, rhs, sums) },
        // SAFETY: the CPU has AVX-512F (`Isa::detect`).
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { dots_avx512::<F, R>(lhs, rhs, sums) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dots_avx2<F: Real, const R: usize>(lhs: &[F], rhs: &[F], sums: &mut [F; 4]) {
    dots_generic::<F, R>(lhs, rhs, sums)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn dots_avx512<F: Real, const R: usize>(lhs: &[F], rhs: &[F], sums: &mut [F; 4]) {
    dots_generic::<F, R>(lhs, rhs, sums)
}

/// The dot products of `lhs` with the first `R` rows of `rhs` (which holds `R` rows at least).
#[inline(always)]
fn dots_generic<F: Real, const R: usize>(lhs: &[F], rhs: &[F], sums: &mut [F; 4]) {
    let k = lhs.len();
    let body = k - k % LANES;
    let row = |j: usize| &rhs[j.min(R - 1) * k..][..k];
    let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
    let mut acc = [[F::zero(); LANES]; 4];
    let [a0, a1, a2, a3] = &mut acc;
    for start in (0..body).step_by(LANES) {
        let x = lanes(lhs, start);
        multiply_add(a0, x, lanes(r0, start));
        if R > 1 {
            multiply_add(a1, x, lanes(r1, start));
        }
        if R > 2 {
            multiply_add(a2, x, lanes(r2, start));
        }
        if R > 3 {
            multiply_add(a3, x, lanes(r3, start));
        }
    }
    for (j, (sum, acc)) in sums.iter_mut().zip(&acc).take(R).enumerate() {
        let r = row(j);
        let mut total = F::zero();
        for &a in acc {
            total += a;
        }
        for l in body..k {
            total += lhs[l] * r[l];
        }
        *sum = total;
    }
}

/// The [`LANES`] elements of `values` from `start`.
#[inline(always)]
fn lanes<F>(values: &[F], start: usize) -> &[F; LANES] {
    values[start..start + LANES].try_into().expect("LANES elements")
}

/// `acc[l] += x[l] · y[l]` for every lane.
#[inline(always)]
fn multiply_add<F: Real>(acc: &mut [F; LANES], x: &[F; LANES], y: &[F; LANES]) {
    for l in 0..LANES {
        acc[l] += x[l] * y[l];
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, ShapeBuilder};

    use super::*;

    fn naive(a: &Array2<f64>, b: &Array2<f64>) -> Array2<f64> {
        Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| (0..a.ncols()).map(|l| a[[i, l]] * b[[l, j]]).sum())
    }

    #[test]
    fn products_in_any_layout() {
        let a = Array2::from_shape_fn((7, 5), |(i, j)| (i * 5 + j) as f64 * 0.25 - 3.0);
        let b = Array2::from_shape_fn((5, 9).f(), |(i, j)| (i as f64 - j as f64) * 0.5);
        let want = naive(&a, &b);
        let mut c = Array2::<f64>::ones((7, 9));
        product_into(&mut c.view_mut(), a.view(), b.view(), false).unwrap();
        assert_eq!(c, want);
        product_into(&mut c.view_mut(), a.view(), b.view(), true).unwrap();
        assert_eq!(c, &want * 2.0);
        // transposed operands and a column-major destination
        let mut ct = Array2::<f64>::zeros((9, 7).f());
        product_into(&mut ct.view_mut(), b.t(), a.t(), false).unwrap();
        assert_eq!(ct, want.t());
        // negative strides go through the generic path
        let mut cr = Array2::<f64>::zeros((7, 9));
        let flipped = a.slice(ndarray::s![..;-1, ..]).to_owned();
        product_into(&mut cr.view_mut(), flipped.slice(ndarray::s![..;-1, ..]), b.view(), false).unwrap();
        assert_eq!(cr, want);
        let a32 = a.mapv(|v| v as f32);
        let b32 = b.mapv(|v| v as f32);
        let mut c32 = Array2::<f32>::zeros((7, 9));
        product_into(&mut c32.view_mut(), a32.view(), b32.view(), false).unwrap();
        assert_eq!(c32, want.mapv(|v| v as f32));
        assert!(product_into(&mut c32.view_mut(), b32.view(), a32.view(), false).is_err());
        // skinny products (few columns, few rows), long inner dimension with a tail
        for (m, k, n) in [(37, 70, 3), (2, 101, 40), (5, 64, 5), (1, 1, 1)] {
            let a = Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 3) % 11) as f64 - 5.0);
            let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j) % 9) as f64 * 0.5 - 2.0);
            let want = naive(&a, &b);
            let mut c = Array2::<f64>::ones((m, n));
            product_into(&mut c.view_mut(), a.view(), b.view(), false).unwrap();
            assert_eq!(c, want, "{m}×{k}×{n}");
            product_into(&mut c.view_mut(), a.view(), b.view(), true).unwrap();
            assert_eq!(c, &want * 2.0, "{m}×{k}×{n}");
        }
    }
}
