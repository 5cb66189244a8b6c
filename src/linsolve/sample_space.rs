//! The sample-space direction (docs/math.md §2, Woodbury push-through): `d = Jᵀ s` with
//! `(JJᵀ + λM⁻¹) s = M⁻¹ r`, an `n×n` SPD system, by matrix-free CG or by a dense
//! Cholesky factorisation of the kernel. See the [module docs](super) for the algebra.

use super::cg::System;
use super::{cg, cholesky, CgSettings, Direction, Path, Rhs, SolveCtx};
use super::{SolveFailure, SolveInfo, SolveMethod};
use crate::error::Error;
use crate::gram::Space;
use crate::linalg::{gemv, norm};
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::LinearizedProblem;
use faer::linalg::matmul::matmul;
use faer::linalg::solvers::Solve;
use faer::{Accum, ColMut, Mat, Par};

/// The refusal of the sample-space solvers on a sharded problem
/// ([`Model::is_sharded`]).
pub(crate) fn sharded_sample_space() -> Error {
    Error::Unsupported(
        "sample-space solvers (`LinearSolver::SampleCg`, `SampleCholesky`) on a \
         sample-sharded problem: their unknown lives on the samples, which are split across \
         ranks; use `LinearSolver::Cg`, `LinearSolver::Cholesky` or `LinearSolver::Auto` \
         (parameter space)"
            .into(),
    )
}

/// [`LinearSolver::SampleCg`](super::LinearSolver::SampleCg) with the CG settings `cg`,
/// or [`LinearSolver::SampleCholesky`](super::LinearSolver::SampleCholesky) for `None`:
/// `d = (JᵀMJ + λI)⁻¹ Jᵀ r` in sample space. Needs the right-hand side as a cotangent
/// `r`; refused on a sharded problem.
pub(super) fn solve<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    dir: Direction<'_>,
    cg: Option<&CgSettings>,
    ctx: &mut SolveCtx<'_>,
) -> Result<SolveInfo, SolveFailure> {
    if lin.problem().model().is_sharded() {
        return Err(SolveFailure::Direct(sharded_sample_space()));
    }
    let Rhs::Cotangent { r, .. } = dir.rhs else {
        return Err(SolveFailure::Direct(Error::Unsupported(
            "sample-space solvers need the right-hand side as an output-space \
             cotangent (`Rhs::Cotangent`); use a parameter-space solver for \
             `Rhs::Params`"
                .into(),
        )));
    };
    solve_cotangent(lin, r, dir.x, cg, ctx)
}

/// Solves for `d = (JᵀMJ + λI)⁻¹ Jᵀ r` in sample space, by CG with `settings` or, for
/// `None`, by Cholesky; `d` has length `p`.
fn solve_cotangent<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    r: &[f64],
    d: &mut [f64],
    settings: Option<&CgSettings>,
    ctx: &mut SolveCtx<'_>,
) -> Result<SolveInfo, SolveFailure> {
    let (damping, par) = (ctx.damping, ctx.par);
    let n = r.len();
    let mut rhs = vec![0.0; n];
    lin.solve_metric(r, &mut rhs)
        .map_err(SolveFailure::Direct)?;
    let Some(settings) = settings else {
        return solve_direct(lin, &rhs, d, damping, par);
    };
    let mut s = match (&ctx.cache.sample_guess, settings.warm_start) {
        (Some(g), true) if g.len() == n => g.clone(),
        _ => vec![0.0; n],
    };
    let sys = System {
        space: Space::Samples,
        rhs: &rhs,
        x: &mut s,
    };
    let info = cg::solve_cg(lin, sys, settings, ctx)?;
    lin.vjp(&s, d);
    ctx.cache.sample_guess = Some(s);
    Ok(info)
}

/// Forms `K = JJᵀ + λM⁻¹` (n×n), factors it, `s = K⁻¹ rhs`, `d = Jᵀ s`.
fn solve_direct<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    rhs: &[f64],
    d: &mut [f64],
    damping: f64,
    par: Par,
) -> Result<SolveInfo, SolveFailure> {
    let n = rhs.len();
    let jac = cholesky::counted_jacobian(lin);
    let mut k = Mat::<f64>::zeros(n, n);
    matmul(
        k.as_mut(),
        Accum::Replace,
        jac.as_ref(),
        jac.transpose(),
        1.0,
        par,
    );
    if damping != 0.0 {
        add_damped_inverse_metric(lin, &mut k, damping)?;
    }
    let llt = cholesky::factor(&k, damping)?;
    let mut s = rhs.to_vec();
    llt.solve_in_place(ColMut::from_slice_mut(&mut s).as_mat_mut());
    gemv(d, jac.transpose(), &s, par);
    let mut ks = vec![0.0; n];
    gemv(&mut ks, k.as_ref(), &s, par);
    let res = norm(&ks.iter().zip(rhs).map(|(a, b)| a - b).collect::<Vec<_>>());
    let bn = norm(rhs);
    Ok(SolveInfo::direct(
        SolveMethod::Path(Path::SampleCholesky),
        if bn > 0.0 { res / bn } else { 0.0 },
    ))
}

/// `K += λ M⁻¹`: the diagonal `λ/w_i` for a diagonal metric, otherwise `n` metric solves
/// with unit vectors (the direct path is for small `n`).
fn add_damped_inverse_metric<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &LinearizedProblem<'_, Mo, Lo, Me>,
    k: &mut Mat<f64>,
    damping: f64,
) -> Result<(), SolveFailure> {
    let n = k.nrows();
    let mut w = vec![0.0; n];
    if lin.metric_diagonal(&mut w) {
        for (i, wi) in w.iter().enumerate() {
            k[(i, i)] += damping / wi;
        }
        return Ok(());
    }
    let mut e = vec![0.0; n];
    let mut col = vec![0.0; n];
    for j in 0..n {
        e[j] = 1.0;
        lin.solve_metric(&e, &mut col)
            .map_err(SolveFailure::Direct)?;
        e[j] = 0.0;
        for (i, c) in col.iter().enumerate() {
            k[(i, j)] += damping * c;
        }
    }
    Ok(())
}
