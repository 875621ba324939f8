//! `MatMul` (with NumPy broadcasting of the batch axes) and `Gemm`, on [`product_into`].

use ndarray::{Array2, Array3, ArrayD, ArrayView2, ArrayViewD, Axis, Ix2, IxDyn};

use super::gemm::product_into;
use super::{shaped, zip2};
use crate::model::infer::{broadcast, matmul_shape};
use crate::real::Real;

/// `a @ b` as NumPy's `matmul`: 1-D operands are promoted to matrices, batch axes broadcast.
pub(super) fn matmul<F: Real>(a: &ArrayViewD<F>, b: &ArrayViewD<F>) -> Result<ArrayD<F>, String> {
    let out_shape = matmul_shape(a.shape(), b.shape())?;
    let a2 = if a.ndim() == 1 { a.view().insert_axis(Axis(0)) } else { a.view() };
    let b2 = if b.ndim() == 1 { b.view().insert_axis(Axis(1)) } else { b.view() };
    let (m, k) = (a2.shape()[a2.ndim() - 2], a2.shape()[a2.ndim() - 1]);
    let n = b2.shape()[b2.ndim() - 1];
    let a_batch = &a2.shape()[..a2.ndim() - 2];
    let b_batch = &b2.shape()[..b2.ndim() - 2];
    let batch = broadcast(a_batch, b_batch)?;
    let nb: usize = batch.iter().product();
    if b_batch.iter().product::<usize>() == 1 && a_batch.iter().product::<usize>() == nb {
        // One matrix for every row of a batch: a single product.
        let am = a2.as_standard_layout();
        let am = am.view().into_shape_with_order((nb * m, k)).map_err(|e| e.to_string())?;
        let bm = b2.to_shape((k, n)).map_err(|e| e.to_string())?;
        let mut y = Array2::zeros((nb * m, n));
        product_into(&mut y.view_mut(), am, bm.view(), false)?;
        return shaped(&out_shape, y.into_raw_vec_and_offset().0);
    }
    let mut ash = batch.clone();
    ash.extend([m, k]);
    let mut bsh = batch.clone();
    bsh.extend([k, n]);
    let av = a2.broadcast(IxDyn(&ash)).ok_or("broadcast failed")?;
    let bv = b2.broadcast(IxDyn(&bsh)).ok_or("broadcast failed")?;
    let mut y = Array3::zeros((nb, m, n));
    for (i, mut yi) in y.outer_iter_mut().enumerate() {
        let (ai, bi) = (matrix(&av, &batch, i)?, matrix(&bv, &batch, i)?);
        product_into(&mut yi, ai, bi, false)?;
    }
    shaped(&out_shape, y.into_raw_vec_and_offset().0)
}

/// The `i`-th matrix (row-major over the batch axes `batch`) of a batched view.
fn matrix<'a, F>(v: &ArrayViewD<'a, F>, batch: &[usize], mut i: usize) -> Result<ArrayView2<'a, F>, String> {
    let mut index = vec![0; batch.len()];
    for (j, &d) in index.iter_mut().zip(batch).rev() {
        *j = i % d;
        i /= d;
    }
    let mut m = v.clone();
    for j in index {
        m = m.index_axis_move(Axis(0), j);
    }
    m.into_dimensionality::<Ix2>().map_err(|e| e.to_string())
}

/// `Gemm`: `alpha · op(a) · op(b) + beta · c`, with `op` an optional transposition.
pub(super) fn gemm_op<F: Real>(
    inputs: &[ArrayViewD<F>],
    alpha: f64,
    beta: f64,
    trans_a: bool,
    trans_b: bool,
) -> Result<ArrayD<F>, String> {
    let a = inputs[0].view().into_dimensionality::<Ix2>().map_err(|e| e.to_string())?;
    let b = inputs[1].view().into_dimensionality::<Ix2>().map_err(|e| e.to_string())?;
    let a = if trans_a { a.reversed_axes() } else { a };
    let b = if trans_b { b.reversed_axes() } else { b };
    if a.ncols() != b.nrows() {
        return Err(format!("Gemm inner dimensions differ: {:?} @ {:?}", a.shape(), b.shape()));
    }
    let (m, n) = (a.nrows(), b.ncols());
    let c = inputs.get(2);
    if alpha == 1.0 {
        if let Some(c) = c {
            // `beta · c` first, then the product added to it.
            let c = c
                .broadcast(IxDyn(&[m, n]))
                .ok_or_else(|| format!("Gemm's C of shape {:?} does not broadcast", c.shape()))?;
            let be = F::of(beta);
            let mut y = Array2::zeros((m, n));
            for (y, &q) in y.iter_mut().zip(c.iter()) {
                *y = be * q;
            }
            product_into(&mut y.view_mut(), a, b, true)?;
            return Ok(y.into_dyn());
        }
    }
    let mut y = Array2::zeros((m, n));
    product_into(&mut y.view_mut(), a, b, false)?;
    if alpha != 1.0 {
        let al = F::of(alpha);
        y.mapv_inplace(|v| v * al);
    }
    let y = y.into_dyn();
    match c {
        Some(c) => {
            let be = F::of(beta);
            zip2(&y.view(), c, |p, q| p + be * q)
        }
        None => Ok(y),
    }
}
