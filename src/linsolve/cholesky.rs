//! The dense direct path: form `J`, then `G + λI`, and factor it (faer's `llt`).

use super::{Direction, Path, SolveCtx, SolveFailure, SolveInfo, SolveMethod};
use crate::error::Error;
use crate::gram::{dense_jacobian, JacobianSource};
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::LinearizedProblem;
use faer::linalg::solvers::Llt;
use faer::linalg::solvers::Solve;
use faer::{ColMut, Mat, Par, Side};

/// [`LinearSolver::Cholesky`](super::LinearSolver::Cholesky), the parameter-space direct
/// path: `(G + λI) x = b`, `b` given or `Jᵀ r` (one vjp).
pub(super) fn solve_params<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    dir: Direction<'_>,
    ctx: &mut SolveCtx<'_>,
) -> Result<SolveInfo, SolveFailure> {
    let b = dir.rhs.param_rhs(lin);
    solve_cholesky(lin, &b, dir.x, ctx.damping, ctx.par)
}

/// Forms `J` and `G + λI` densely (summed over the shards), factors it and solves for
/// `x` (length `p`).
pub(super) fn solve_cholesky<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    rhs: &[f64],
    x: &mut [f64],
    damping: f64,
    par: Par,
) -> Result<SolveInfo, SolveFailure> {
    let jac = counted_jacobian(lin);
    // G = Σ_r J_rᵀ M_r J_r over the shards of a sharded model, then the damping (once).
    let mut g = lin
        .dense_gram(jac.as_ref(), par)
        .map_err(SolveFailure::Direct)?;
    sum_over_shards(lin.problem().model(), &mut g);
    for i in 0..g.nrows() {
        g[(i, i)] += damping;
    }
    let llt = factor(&g, damping)?;
    x.copy_from_slice(rhs);
    llt.solve_in_place(ColMut::from_slice_mut(x).as_mat_mut());
    let mut r = vec![0.0; rhs.len()];
    crate::linalg::gemv(&mut r, g.as_ref(), x, par);
    let res: f64 = r
        .iter()
        .zip(rhs)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        .sqrt();
    let bn = crate::linalg::norm(rhs);
    Ok(SolveInfo::direct(
        SolveMethod::Path(Path::ParamCholesky),
        if bn > 0.0 { res / bn } else { 0.0 },
    ))
}

/// Cholesky factor of the SPD matrix `k` (faer's `llt`), refused when `k` is singular to
/// working precision (issue 14.3): a non-positive pivot, or a pivot `d_i = L_ii²` with
/// `d_i ≤ dim·ε·k_ii` — elimination cancelled the diagonal entry down to its rounding
/// error, so the solution has no correct digit in that direction (relative to the
/// diagonal, so that a well-conditioned matrix with badly scaled rows is not refused).
/// The accuracy the direct paths promise ("exact to rounding") cannot be met then, and
/// the error says to add damping or to use `LinearSolver::LeastSquares` for the
/// minimum-norm direction.
pub(super) fn factor(k: &Mat<f64>, damping: f64) -> Result<Llt<f64>, SolveFailure> {
    let refuse = |index| SolveFailure::Direct(Error::GramNotPositiveDefinite { index, damping });
    let llt = k.llt(Side::Lower).map_err(|e| {
        let faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index } = e;
        refuse(index)
    })?;
    let rounding = k.nrows() as f64 * f64::EPSILON;
    let l = llt.L();
    match (0..k.nrows()).find(|&i| l[(i, i)] * l[(i, i)] <= rounding * k[(i, i)]) {
        Some(index) => Err(refuse(index)),
        None => Ok(llt),
    }
}

/// `g ← Σ_r g_r` over the shards of a sharded model (one sum of all `p²` entries, so that
/// every rank factors the same matrix); nothing otherwise.
fn sum_over_shards<Mo: Model>(model: &Mo, g: &mut Mat<f64>) {
    if !model.is_sharded() {
        return;
    }
    let (rows, cols) = (g.nrows(), g.ncols());
    let mut buf: Vec<f64> = (0..cols).flat_map(|j| g.col(j).iter().copied()).collect();
    model.sum_over_shards(&mut buf);
    *g = Mat::from_fn(rows, cols, |i, j| buf[i + j * rows]);
}

/// The dense Jacobian (the model's, or from `min(n, p)` products, which are counted).
pub(super) fn counted_jacobian<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
) -> faer::Mat<f64> {
    let n = lin.outputs().len();
    let (jac, source) = dense_jacobian(lin.linearization_mut(), n);
    match source {
        JacobianSource::Model => {}
        JacobianSource::Jvps(k) => lin.count_products(k as u64, 0),
        JacobianSource::Vjps(k) => lin.count_products(0, k as u64),
    }
    jac
}
