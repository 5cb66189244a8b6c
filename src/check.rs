//! Derivative and operator checks for your own models, the ones the crate's tests use.
//!
//! * [`complex_step_jvp`] — `J t` from the complex-step derivative
//!   `Im y(θ + i h t) / h`, exact to rounding (no subtractive cancellation);
//! * [`adjointness_error`] — `|⟨J t, s⟩ − ⟨t, Jᵀ s⟩|`, relative;
//! * [`jacobian_by_jvps`], [`metric_matrix`] — dense twins built column by column.

use crate::linalg::{dot, norm};
use crate::metric::{Metric, OutputPoint};
use crate::model::Linearization;
use faer::Mat;
use num_complex::Complex64;

/// Complex-step step length: small enough that `h²` terms vanish in f64.
pub const COMPLEX_STEP: f64 = 1e-20;

/// `J(θ) t` by the complex-step derivative of a complex-extended value map `f`
/// (`f` writes `n` outputs).
pub fn complex_step_jvp(
    f: impl Fn(&[Complex64], &mut [Complex64]),
    theta: &[f64],
    t: &[f64],
    n: usize,
) -> Vec<f64> {
    let z: Vec<Complex64> = theta
        .iter()
        .zip(t)
        .map(|(&a, &b)| Complex64::new(a, COMPLEX_STEP * b))
        .collect();
    let mut out = vec![Complex64::new(0.0, 0.0); n];
    f(&z, &mut out);
    out.iter().map(|c| c.im / COMPLEX_STEP).collect()
}

/// Relative adjointness defect `|⟨J t, s⟩ − ⟨t, Jᵀ s⟩| / (‖J t‖‖s‖ + ‖t‖‖Jᵀ s‖)`.
pub fn adjointness_error<L: Linearization + ?Sized>(lin: &mut L, t: &[f64], s: &[f64]) -> f64 {
    let mut jt = vec![0.0; s.len()];
    let mut jts = vec![0.0; t.len()];
    lin.jvp(t, &mut jt);
    lin.vjp(s, &mut jts);
    let a = dot(&jt, s);
    let b = dot(t, &jts);
    let scale = norm(&jt) * norm(s) + norm(t) * norm(&jts);
    if scale == 0.0 {
        (a - b).abs()
    } else {
        (a - b).abs() / scale
    }
}

/// The dense Jacobian built column by column from `p` jvps with unit vectors.
pub fn jacobian_by_jvps<L: Linearization + ?Sized>(lin: &mut L, n: usize) -> Mat<f64> {
    let p = lin.n_params();
    let mut j = Mat::zeros(n, p);
    let mut e = vec![0.0; p];
    let mut col = vec![0.0; n];
    for c in 0..p {
        e[c] = 1.0;
        lin.jvp(&e, &mut col);
        e[c] = 0.0;
        for r in 0..n {
            j[(r, c)] = col[r];
        }
    }
    j
}

/// The dense metric matrix built column by column from `n` metric products.
pub fn metric_matrix<Me: Metric + ?Sized>(metric: &Me, at: &OutputPoint<'_>, n: usize) -> Mat<f64> {
    let mut m = Mat::zeros(n, n);
    let mut e = vec![0.0; n];
    let mut col = vec![0.0; n];
    for c in 0..n {
        e[c] = 1.0;
        metric.apply(at, &e, &mut col);
        e[c] = 0.0;
        for r in 0..n {
            m[(r, c)] = col[r];
        }
    }
    m
}

/// Largest entrywise difference between two matrices, relative to the largest entry of
/// `reference`. Matrices of different shapes, or a non-finite entry in either, give
/// `+∞`, so that a comparison `≤ tol` fails (a NaN would otherwise be skipped by `max`,
/// and a smaller `a` compared on its own shape only).
pub fn max_rel_diff(a: &Mat<f64>, reference: &Mat<f64>) -> f64 {
    if a.shape() != reference.shape() {
        return f64::INFINITY;
    }
    let mut diff = 0.0_f64;
    let mut scale = 0.0_f64;
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            let (x, r) = (a[(i, j)], reference[(i, j)]);
            if !(x.is_finite() && r.is_finite()) {
                return f64::INFINITY;
            }
            diff = diff.max((x - r).abs());
            scale = scale.max(r.abs());
        }
    }
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}
