//! The dense least-squares direction ([`LinearSolver::LeastSquares`](super::LinearSolver)):
//! a truncated, optionally damped pseudo-inverse.
//!
//! With a diagonal metric `M = W` and an output-space right-hand side `b = Jᵀ r`, the
//! weighted Jacobian `A = W^{1/2} J` (`n×p`) is factored by a thin SVD `A = U Σ Vᵀ` and
//!
//! ```text
//!   d = V f(Σ) Uᵀ c,   c = W^{-1/2} r,   f(σ) = σ / (σ² + λ) if σ > τ·σ_max, else 0,
//!   τ = max(rcond, max(n, p)·ε).
//! ```
//!
//! The floor `max(n, p)·ε` (ε the machine epsilon; NumPy's `lstsq` default) is the
//! rounding level of a computed singular value: below it `σ` is noise, and `1/σ` would
//! amplify it by up to `1/ε` (issue 14.3: a design with a dependent column and
//! `σ_min ≈ 6e-18` gave `θ ≈ 1e14` with `rcond = 0`). For `λ > 0` the dropped terms are at
//! most `τ σ_max |c| / λ`, within the rounding error of the Cholesky direction itself.
//!
//! For `λ = 0` this is `d = A⁺ c`, the minimum-norm minimiser of `‖A d − c‖`, i.e. the
//! minimum-norm solution of the normal equations `JᵀWJ d = Jᵀ r` on the singular
//! directions kept; for `λ > 0` and `rcond = 0` it is `(JᵀWJ + λI)⁻¹ Jᵀ r` exactly (the
//! Cholesky direction), from the better-conditioned factor `A` rather than `AᵀA`.
//!
//! Otherwise (a right-hand side given in parameter space, or a non-diagonal metric) the
//! Gram matrix `G = JᵀMJ` is formed and diagonalised, `G = Q diag(μ) Qᵀ`, and
//! `d = Q diag(g(μ)) Qᵀ b` with `g(μ) = 1/(μ + λ)` if `μ > max(rcond², p·ε)·μ_max`, else 0
//! (the same cut-off, since `μ = σ²`, except that the floor is the rounding level of the
//! formed `G`, `p·ε·μ_max`: this path resolves singular values of `W^{1/2}J` only down to
//! `√(p ε)·σ_max` ≈ 1e-7·σ_max, the price of forming `G`). With `rcond = 0` and
//! `λ > p·ε·μ_max` nothing is dropped, so that a right-hand side outside the range of `G`
//! gives `(G + λI)⁻¹ b` too.

use super::{cholesky, Direction, Rhs, SolveCtx, SolveFailure, SolveInfo, SolveMethod};
use crate::error::Error;
use crate::linalg::{gemv, norm};
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::LinearizedProblem;
use faer::{Mat, Par, Side};

/// The largest Jacobian (`n·p` entries) the least-squares path forms: 2²⁶ values, 512 MiB.
pub const MAX_JACOBIAN_ENTRIES: usize = 1 << 26;

/// [`LinearSolver::LeastSquares`](super::LinearSolver::LeastSquares) with cut-off `rcond`:
/// the least-squares direction for the right-hand side of `dir` (`Jᵀ r` by one vjp when
/// only `r` is given).
pub(super) fn solve_for<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    dir: Direction<'_>,
    rcond: f64,
    ctx: &mut SolveCtx<'_>,
) -> Result<SolveInfo, SolveFailure> {
    let r = match dir.rhs {
        Rhs::Cotangent { r, .. } => Some(r),
        Rhs::Params(_) => None,
    };
    let b = dir.rhs.param_rhs(lin);
    solve(lin, r, &b, dir.x, (ctx.damping, rcond, ctx.par))
}

/// Solves for the least-squares direction; `r` is the output-space right-hand side when
/// the caller has it, `b = Jᵀ r` (or the parameter-space right-hand side) always.
///
/// `filter` is `(λ, rcond, par)`: the damping, the relative cut-off of the spectrum and
/// the thread setting.
pub(super) fn solve<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    r: Option<&[f64]>,
    b: &[f64],
    d: &mut [f64],
    filter: (f64, f64, Par),
) -> Result<SolveInfo, SolveFailure> {
    let par = filter.2;
    if lin.problem().model().is_sharded() {
        return Err(SolveFailure::Direct(Error::Unsupported(
            "`LinearSolver::LeastSquares` on a sample-sharded problem: it factors the whole \
             Jacobian; use `LinearSolver::Cholesky`, `Cg` or `Auto`"
                .into(),
        )));
    }
    let n = lin.outputs().len();
    let p = b.len();
    if n.saturating_mul(p) > MAX_JACOBIAN_ENTRIES {
        return Err(SolveFailure::Direct(Error::Unsupported(format!(
            "`LinearSolver::LeastSquares` forms the dense {n}×{p} Jacobian, more than \
             {MAX_JACOBIAN_ENTRIES} entries; use `LinearSolver::Cg` or `SampleCg`"
        ))));
    }
    let mut w = vec![0.0; n];
    let diagonal = lin.metric_diagonal(&mut w) && w.iter().all(|&x| x > 0.0 && x.is_finite());
    let jac = cholesky::counted_jacobian(lin);
    match r {
        Some(r) if diagonal => by_svd(jac, (&w, r), b, d, filter),
        _ => {
            let g = lin
                .dense_gram(jac.as_ref(), par)
                .map_err(SolveFailure::Direct)?;
            by_eigen(g, b, d, filter)
        }
    }
}

/// `d = V f(Σ) Uᵀ W^{-1/2} r` from the thin SVD of `W^{1/2} J`.
fn by_svd(
    mut jac: Mat<f64>,
    (w, r): (&[f64], &[f64]),
    b: &[f64],
    d: &mut [f64],
    (damping, rcond, par): (f64, f64, Par),
) -> Result<SolveInfo, SolveFailure> {
    let (n, p) = (jac.nrows(), jac.ncols());
    let sw: Vec<f64> = w.iter().map(|w| w.sqrt()).collect();
    for col in jac.col_iter_mut() {
        col.iter_mut().zip(&sw).for_each(|(a, s)| *a *= s);
    }
    let c: Vec<f64> = r.iter().zip(&sw).map(|(r, s)| r / s).collect();
    let svd = jac
        .thin_svd()
        .map_err(|_| no_convergence("SVD of W^{1/2}J"))?;
    let s = svd.S().column_vector();
    // Relative to machine precision (module docs): noise singular values are dropped.
    let floor = n.max(p) as f64 * f64::EPSILON;
    let cut = rcond.max(floor) * if s.nrows() > 0 { s[0] } else { 0.0 };
    let filter: Vec<f64> = s
        .iter()
        .map(|&sigma| match sigma > cut && sigma > 0.0 {
            true => sigma / (sigma * sigma + damping),
            false => 0.0,
        })
        .collect();
    let spectral = Spectral {
        left: svd.U(),
        filter: &filter,
        right: svd.V(),
    };
    filtered_apply(spectral, &c, d, par);
    // Residual of the normal equations (AᵀA + λI) d = Aᵀc = b.
    let mut ad = vec![0.0; n];
    gemv(&mut ad, jac.as_ref(), d, par);
    let mut atad = vec![0.0; p];
    gemv(&mut atad, jac.transpose(), &ad, par);
    Ok(info(&atad, d, b, damping))
}

/// `d = Q g(μ) Qᵀ b` from the eigendecomposition of `G`.
fn by_eigen(
    g: Mat<f64>,
    b: &[f64],
    d: &mut [f64],
    (damping, rcond, par): (f64, f64, Par),
) -> Result<SolveInfo, SolveFailure> {
    let evd = g
        .self_adjoint_eigen(Side::Lower)
        .map_err(|_| no_convergence("eigendecomposition of G"))?;
    let mu = evd.S().column_vector();
    // Eigenvalues in nondecreasing order.
    let top = if mu.nrows() > 0 {
        mu[mu.nrows() - 1].max(0.0)
    } else {
        0.0
    };
    // Relative to machine precision (module docs): the rounding level of the formed G.
    let noise = b.len() as f64 * f64::EPSILON * top;
    let cut = (rcond * rcond * top).max(noise);
    // With no cut-off and λ above the noise, nothing is dropped: (G + λI)⁻¹ b exactly.
    let keep_all = rcond == 0.0 && damping > noise;
    let filter: Vec<f64> = mu
        .iter()
        .map(|&m| match (m > cut && m > 0.0) || keep_all {
            true => 1.0 / (m.max(0.0) + damping),
            false => 0.0,
        })
        .collect();
    let spectral = Spectral {
        left: evd.U(),
        filter: &filter,
        right: evd.U(),
    };
    filtered_apply(spectral, b, d, par);
    let mut gd = vec![0.0; b.len()];
    gemv(&mut gd, g.as_ref(), d, par);
    Ok(info(&gd, d, b, damping))
}

/// The operator `R diag(f) Lᵀ`: the spectral filter `f` in the singular or eigen basis
/// (`L = U, R = V` for the SVD, `L = R = Q` for the eigendecomposition).
struct Spectral<'a> {
    left: faer::MatRef<'a, f64>,
    filter: &'a [f64],
    right: faer::MatRef<'a, f64>,
}

/// `out = R diag(f) Lᵀ x`.
fn filtered_apply(spectral: Spectral<'_>, x: &[f64], out: &mut [f64], par: Par) {
    let Spectral {
        left,
        filter,
        right,
    } = spectral;
    let mut coeffs = vec![0.0; filter.len()];
    gemv(&mut coeffs, left.transpose(), x, par);
    coeffs.iter_mut().zip(filter).for_each(|(c, f)| *c *= f);
    gemv(out, right, &coeffs, par);
}

fn no_convergence(what: &str) -> SolveFailure {
    SolveFailure::Direct(Error::Unsupported(format!(
        "{what} did not converge (faer) — the Jacobian may hold huge or non-finite values; \
         add damping or use `LinearSolver::Cholesky`"
    )))
}

/// The solve info, with the relative residual `‖G d + λ d − b‖ / ‖b‖` from `gd = G d`.
fn info(gd: &[f64], d: &[f64], b: &[f64], damping: f64) -> SolveInfo {
    let res: Vec<f64> = gd
        .iter()
        .zip(d)
        .zip(b)
        .map(|((g, d), b)| g + damping * d - b)
        .collect();
    let bn = norm(b);
    SolveInfo::direct(
        SolveMethod::LeastSquares,
        if bn > 0.0 { norm(&res) / bn } else { 0.0 },
    )
}
