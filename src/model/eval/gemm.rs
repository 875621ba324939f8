//! Matrix products on the `gemm` crate: its f32 and f64 kernels are chosen at run time for the
//! CPU (AVX-512 where present). Every product runs on the calling thread (no parallelism
//! inside), so the evaluator parallelises over inputs and its results do not depend on the
//! number of threads.

use std::any::TypeId;

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};

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

/// `c (+)= a·b` for an `a` whose rows are contiguous and `b` given as its `n` columns of
/// `a.ncols()` elements each (`b` transposed, row-major), each element summed as
/// [`product_into`] sums it when `b` has at most [`SKINNY`] columns, however many `b` has: the
/// columns of several inputs' products of at most [`SKINNY`] columns each, taken together so
/// that `a` is read once for all of them, give every input the bits of its own product.
pub(crate) fn product_of_columns<F: Real>(
    c: &mut ArrayViewMut2<'_, F>,
    a: ArrayView2<'_, F>,
    columns: &[F],
    accumulate: bool,
) -> Result<(), String> {
    let (m, k) = a.dim();
    let n = c.ncols();
    if c.nrows() != m || columns.len() != n * k {
        return Err(format!(
            "matrix product of {:?} and {n} columns of {} into {:?}",
            a.shape(),
            columns.len(),
            c.shape()
        ));
    }
    if m == 0 || n == 0 || k == 0 || a.strides()[1] != 1 {
        let b = ArrayView2::from_shape((k, n).strides((1, k)), columns).map_err(|e| e.to_string())?;
        return product_into(c, a, b, accumulate);
    }
    skinny_columns(c, a, columns, accumulate);
    Ok(())
}

/// Products with at most this many columns (or rows) take [`skinny`]: a GEMM would pack the
/// large operand, read once, for little reuse.
pub(crate) const SKINNY: usize = 16;

/// Rows of `a` [`skinny_columns`] takes through every block of columns before the next rows
/// (an even number).
const ROW_BLOCK: usize = 16;

/// Lanes of the dot products' accumulators (a multiple of the vector width of f32 and f64).
const LANES: usize = 32;

/// `c (+)= a·b` for a `b` of few columns and an `a` whose rows are contiguous: `b`'s columns are
/// copied into contiguous rows, and every element of `c` is a dot product, accumulated in
/// [`LANES`] lanes summed in a fixed order. Several dot products run together so that each
/// loaded vector serves several of them and their final sums overlap: two rows of `a` with four
/// columns (each row of `a` read once per four columns), and for the last one to three columns,
/// four, two or one rows of `a` with them. Every element is summed in the same order whichever
/// group it falls in.
fn skinny<F: Real>(c: &mut ArrayViewMut2<'_, F>, a: ArrayView2<'_, F>, b: ArrayView2<'_, F>, accumulate: bool) {
    let columns: Vec<F> = b.t().iter().copied().collect();
    skinny_columns(c, a, &columns, accumulate)
}

/// [`skinny`] with `b` given as its columns, each contiguous (`b` transposed, row-major).
fn skinny_columns<F: Real>(c: &mut ArrayViewMut2<'_, F>, a: ArrayView2<'_, F>, columns: &[F], accumulate: bool) {
    let (m, n) = c.dim();
    let mut rows = Vec::with_capacity(m);
    for i in 0..m {
        match a.row(i).to_slice() {
            Some(row) => rows.push(row),
            // Unreachable: the caller checked that rows are contiguous.
            None => return,
        }
    }
    let mut products = Products { isa: Isa::detect(), rows, columns, k: a.ncols(), c, accumulate };
    let full = n - n % 4;
    let pairs = m - m % 2;
    // Rows of `a` a block at a time, read again for every four columns (which stay in the
    // first-level cache across the block).
    for block in (0..pairs).step_by(ROW_BLOCK) {
        for j in (0..full).step_by(4) {
            for i in (block..(block + ROW_BLOCK).min(pairs)).step_by(2) {
                products.tile::<2, 4>(i, j);
            }
        }
    }
    for i in pairs..m {
        (0..full).step_by(4).for_each(|j| products.tile::<1, 4>(i, j));
    }
    match n - full {
        0 => {}
        1 => {
            let quads = m - m % 4;
            (0..quads).step_by(4).for_each(|i| products.tile::<4, 1>(i, full));
            (quads..m).for_each(|i| products.tile::<1, 1>(i, full));
        }
        2 => {
            (0..pairs).step_by(2).for_each(|i| products.tile::<2, 2>(i, full));
            (pairs..m).for_each(|i| products.tile::<1, 2>(i, full));
        }
        _ => (0..m).for_each(|i| products.tile::<1, 3>(i, full)),
    }
}

/// The operands and the destination of [`skinny_columns`].
struct Products<'a, 'c, F> {
    isa: Isa,
    /// The rows of `a`.
    rows: Vec<&'a [F]>,
    /// The columns of `b`, `k` elements each, one after the other.
    columns: &'a [F],
    k: usize,
    c: &'a mut ArrayViewMut2<'c, F>,
    accumulate: bool,
}

impl<F: Real> Products<'_, '_, F> {
    /// The elements `(i..i + RA, j..j + RB)` of `c`, their dot products computed together.
    fn tile<const RA: usize, const RB: usize>(&mut self, i: usize, j: usize) {
        let lhs: [&[F]; RA] = std::array::from_fn(|r| self.rows[i + r]);
        let rhs: [&[F]; RB] = std::array::from_fn(|q| &self.columns[(j + q) * self.k..][..self.k]);
        let mut sums = [[F::zero(); RB]; RA];
        dots_rows(self.isa, lhs, rhs, &mut sums);
        for (r, row) in sums.iter().enumerate() {
            for (q, &v) in row.iter().enumerate() {
                let y = &mut self.c[[i + r, j + q]];
                *y = if self.accumulate { *y + v } else { v };
            }
        }
    }
}

/// `sums[r][q] = lhs[r] · rhs[q]` for every pair.
fn dots_rows<F: Real, const RA: usize, const RB: usize>(
    isa: Isa,
    lhs: [&[F]; RA],
    rhs: [&[F]; RB],
    sums: &mut [[F; RB]; RA],
) {
    match isa.level() {
        Level::Baseline => dots_generic(lhs, rhs, sums),
        // SAFETY: the CPU has AVX2 (`Isa::detect`).
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { dots_avx2(lhs, rhs, sums) },
        // SAFETY: the CPU has AVX-512F (`Isa::detect`).
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { dots_avx512(lhs, rhs, sums) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dots_avx2<F: Real, const RA: usize, const RB: usize>(lhs: [&[F]; RA], rhs: [&[F]; RB], sums: &mut [[F; RB]; RA]) {
    dots_generic(lhs, rhs, sums)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn dots_avx512<F: Real, const RA: usize, const RB: usize>(lhs: [&[F]; RA], rhs: [&[F]; RB], sums: &mut [[F; RB]; RA]) {
    dots_generic(lhs, rhs, sums)
}

/// The dot products of every `lhs` row with every `rhs` row (all of one length `k`): `LANES`
/// partial sums per product, then the lanes in order, then the last `k mod LANES` terms.
#[inline(always)]
fn dots_generic<F: Real, const RA: usize, const RB: usize>(lhs: [&[F]; RA], rhs: [&[F]; RB], sums: &mut [[F; RB]; RA]) {
    let k = lhs[0].len();
    let body = k - k % LANES;
    let lhs = lhs.map(|row| &row[..k]);
    let rhs = rhs.map(|row| &row[..k]);
    let mut acc = [[[F::zero(); LANES]; RB]; RA];
    for start in (0..body).step_by(LANES) {
        for r in 0..RA {
            let x = lanes(lhs[r], start);
            for q in 0..RB {
                multiply_add(&mut acc[r][q], x, lanes(rhs[q], start));
            }
        }
    }
    let mut totals = [[F::zero(); RB]; RA];
    for l in 0..LANES {
        for (total, acc) in totals.iter_mut().zip(&acc) {
            for (total, acc) in total.iter_mut().zip(acc) {
                *total += acc[l];
            }
        }
    }
    for ((sums, totals), lhs) in sums.iter_mut().zip(&totals).zip(lhs) {
        for ((sum, &total), rhs) in sums.iter_mut().zip(totals).zip(rhs) {
            let mut total = total;
            for l in body..k {
                total += lhs[l] * rhs[l];
            }
            *sum = total;
        }
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

    #[test]
    fn products_of_many_columns_sum_each_as_a_skinny_product() {
        // Float32 values whose sums round, so that any change in the order of summation shows.
        let value = |i: usize, j: usize| ((i * 7919 + j * 104_729) % 1013) as f32 / 97.0 - 5.0;
        for (m, k, n) in [(7, 100, 3), (9, 64, 37), (2, 33, 16), (5, 31, 18), (1, 70, 5)] {
            let a = Array2::from_shape_fn((m, k), |(i, j)| value(i, j));
            let b = Array2::from_shape_fn((k, n), |(i, j)| value(j + 11, i) * 0.3);
            let columns: Vec<f32> = b.t().iter().copied().collect();
            for accumulate in [false, true] {
                let start = Array2::from_shape_fn((m, n), |(i, j)| value(i + 3, j) * 0.01);
                let mut together = start.clone();
                product_of_columns(&mut together.view_mut(), a.view(), &columns, accumulate).unwrap();
                // Each block of at most SKINNY columns alone, as one input's product would be.
                for first in (0..n).step_by(SKINNY) {
                    let last = (first + SKINNY).min(n);
                    let mut alone = start.slice(ndarray::s![.., first..last]).to_owned();
                    let part = b.slice(ndarray::s![.., first..last]);
                    product_into(&mut alone.view_mut(), a.view(), part, accumulate).unwrap();
                    assert_eq!(together.slice(ndarray::s![.., first..last]), alone, "{m}×{k}×{n}, columns {first}..");
                }
            }
        }
        let mut c = Array2::<f32>::zeros((2, 3));
        let a = Array2::<f32>::ones((2, 4));
        assert!(product_of_columns(&mut c.view_mut(), a.view(), &[0.0; 11], false).is_err());
    }
}
