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

/// Clears the upper halves of the vector registers (`vzeroupper`) after a faer GEMM.
///
/// faer's AVX-512 GEMM kernels can return with the upper register state dirty; until it is
/// cleared, every legacy-SSE instruction that follows — libm's `tanh`, and scalar code
/// compiled for baseline x86-64 — pays a state-transition penalty. Measured on the PINN
/// model: the Taylor-mode forward pass of a 1-32-32-1 tanh network at 1 002 points took
/// 16 ms with the penalty and 4 ms without. A no-op on other architectures and on CPUs
/// without AVX.
#[inline]
pub(crate) fn clear_upper_simd_state() {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU supports AVX (checked above), which is all `vzeroupper` needs; it
        // only zeroes bits 128.. of the vector registers, which LLVM treats as clobbered.
        unsafe { vzeroupper() }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn vzeroupper() {
    std::arch::x86_64::_mm256_zeroupper();
}

/// `out (+)= A B` through faer, then [`clear_upper_simd_state`]: for GEMMs followed by
/// elementwise work.
pub(crate) fn matmul_then_scalar(
    out: faer::MatMut<'_, f64>,
    accum: Accum,
    a: MatRef<'_, f64>,
    b: MatRef<'_, f64>,
    par: Par,
) {
    matmul(out, accum, a, b, 1.0, par);
    clear_upper_simd_state();
}
