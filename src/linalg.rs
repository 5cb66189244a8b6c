//! Small dense kernels shared by the crate, all delegating to faer.

use faer::linalg::matmul::matmul;
use faer::{Accum, ColMut, ColRef, MatRef, Par};

/// `out = A x` through faer's GEMM (`A` may be a transposed view).
pub(crate) fn gemv(out: &mut [f64], a: MatRef<'_, f64>, x: &[f64], par: Par) {
    let out = ColMut::from_slice_mut(out);
    let x = ColRef::from_slice(x);
    matmul(out, Accum::Replace, a, x, 1.0, par);
}

/// Euclidean inner product, summed in index order (deterministic).
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Euclidean norm, summed in index order (deterministic).
pub(crate) fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// `out_j = Σ_i w_i A_ij²`: the diagonal of `Aᵀ diag(w) A`.
pub(crate) fn weighted_column_norms_sq(a: MatRef<'_, f64>, w: &[f64], out: &mut [f64]) {
    for (j, o) in out.iter_mut().enumerate() {
        *o = a.col(j).iter().zip(w).map(|(x, w)| w * x * x).sum();
    }
}
