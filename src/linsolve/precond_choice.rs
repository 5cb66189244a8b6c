//! [`Preconditioner::Auto`](super::Preconditioner::Auto): no preconditioner or Jacobi,
//! chosen by measurement (issue 14.1).
//!
//! **Why measure.** Neither choice is safe on every problem of the crate
//! (docs/performance-solvers.md, "Default preconditioner"): Jacobi multiplies CG's
//! iterations by 6–35 on networks (a Gram matrix of a few large eigenvalues and a
//! fast-decaying tail, whose structure the diagonal scaling spreads), and saves a factor
//! of 70 on a linear design with columns of very different norms. The spread of
//! `diag(G)` does not separate the two cases (1e9 on a polynomial design where Jacobi
//! loses), so there is no static rule; the iteration count of a solve is the measurement
//! that does.
//!
//! **The trial.** At the first solve, and again once `refresh_every` solves have passed
//! since the last trial, the system is solved with the current choice (the *incumbent*;
//! no preconditioner at first). If it needed at most `trial_above` iterations, that is
//! the result and the choice stands. Otherwise the same system is solved again from the
//! same initial guess with the other preconditioner (the *challenger*), capped at one
//! iteration fewer than the incumbent took (the Gram diagonal costs about one product,
//! below); the challenger wins if it reaches the tolerance within the cap. If the
//! incumbent itself stopped at `max_iters`, the challenger gets `max_iters` and wins by
//! reaching the tolerance, or, when neither does, by a smaller true residual. The winner's
//! solution is the one returned and its preconditioner is kept until the next trial.
//! Between trials the kept choice is used alone.
//!
//! So a run whose choice stays "none" has bitwise the iterates of plain CG (the returned
//! solve *is* the plain solve; the trial adds products, not rounding), and a trial costs
//! at most about twice one solve plus one Gram diagonal. The pick depends on iteration
//! counts only, never on wall time, so it is deterministic.
//!
//! **The diagonal's cost** ([`Linearization::gram_diagonal`](crate::model::Linearization::gram_diagonal)),
//! paid at a trial with Jacobi as the challenger and at every solve while Jacobi is the
//! choice: a dense linear or closure model, the weighted squared column norms of `J`
//! (`n·p` multiply-adds, about one jvp: half a Gram product); a sparse linear design,
//! `nnz(J)`; an [`Mlp`](crate::model::Mlp), one backward pass per output component
//! and one GEMM of squares per layer (as many flops as a vjp's weight-gradient GEMM),
//! about `q` vjps for `q` outputs per sample. Models without a diagonal (the PINN and
//! Taylor-mode models, user closures that do not provide one) and non-diagonal metrics
//! (a sparse or dense `K`) have no Jacobi: `Auto` is then no preconditioner, without a
//! trial and without cost. In sample space `Auto` is no preconditioner (Jacobi is
//! parameter-space only).
//!
//! **Failures.** If the incumbent breaks down (non-positive curvature, a metric that
//! fails), the failure is returned as it would be without `Auto`, and no trial is made;
//! a challenger that breaks down loses. A truncated result is an error unless the
//! settings accept truncated solves, as for any CG solve.

use super::cg::{identity, jacobi, run_cg, CgPrecond};
use super::{CgSettings, SolveCtx, SolveFailure, SolveInfo};
use crate::gram::Space;
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::LinearizedProblem;

/// What [`Preconditioner::Auto`](super::Preconditioner::Auto) chose at its last trial,
/// kept in the [`SolveCache`](super::SolveCache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PrecondChoice {
    /// `true`: Jacobi; `false`: no preconditioner.
    pub jacobi: bool,
    /// The solve count ([`SolveCache::solves`](super::SolveCache::solves)) of that trial.
    pub measured_at: u64,
}

/// One CG outcome: iterations, relative residual, truncated.
type Outcome = (usize, f64, bool);

/// The Auto-preconditioned CG solve in parameter space; `rule` is
/// `(trial_above, refresh_every)`.
pub(super) fn solve<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    rhs: &[f64],
    x: &mut [f64],
    s: &CgSettings,
    ctx: &mut SolveCtx<'_>,
    (trial_above, refresh_every): (usize, u64),
) -> Result<SolveInfo, SolveFailure> {
    let (damping, solves) = (ctx.damping, ctx.cache.solves);
    let choice = ctx.cache.precond_choice;
    let due = choice.is_none_or(|c| solves.saturating_sub(c.measured_at) >= refresh_every);
    let wants_jacobi = choice.is_some_and(|c| c.jacobi);
    // The incumbent: Jacobi when chosen and available, else none.
    let incumbent = match wants_jacobi {
        true => jacobi(lin, damping),
        false => None,
    }
    .unwrap_or_else(|| identity(rhs.len()));
    // Accept a truncated incumbent for now: whether it is an error is decided on the
    // solve that is returned (the same iterate and the same error as without Auto).
    let lenient = CgSettings {
        accept_truncated: true,
        ..s.clone()
    };
    let x0 = due.then(|| x.to_vec());
    let mut kept = run_cg(lin, Space::Params, rhs, x, (&lenient, damping), &incumbent)?;
    let mut kept_name = incumbent.name();
    if let Some(x0) = x0 {
        let is_jacobi = matches!(incumbent, CgPrecond::Jacobi(_));
        let mut jacobi_kept = is_jacobi;
        if kept.0 > trial_above {
            let challenger = match is_jacobi {
                true => Some(identity(rhs.len())),
                false => jacobi(lin, damping),
            };
            if let Some(ch) = challenger {
                if let Some(won) = challenge(lin, rhs, x, x0, (s, damping), &ch, kept) {
                    kept = won;
                    kept_name = ch.name();
                    jacobi_kept = !is_jacobi;
                }
            }
        }
        ctx.cache.precond_choice = Some(PrecondChoice {
            jacobi: jacobi_kept,
            measured_at: solves,
        });
    }
    let (iters, rel_residual, truncated) = kept;
    if truncated && !s.accept_truncated {
        return Err(SolveFailure::NoConvergence {
            iters,
            rel_residual,
            rel_tol: s.rel_tol,
        });
    }
    Ok(SolveInfo {
        method: "cg",
        iters,
        rel_residual,
        preconditioner: kept_name,
        sketch_products: 0,
        truncated,
    })
}

/// Solves again from `x0` with the challenger `ch`, capped below the incumbent's
/// iterations (at `max_iters` when the incumbent was truncated). When the challenger
/// wins, writes its solution into `x` and returns its outcome.
fn challenge<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    rhs: &[f64],
    x: &mut [f64],
    mut x0: Vec<f64>,
    (s, damping): (&CgSettings, f64),
    ch: &CgPrecond<'_>,
    incumbent: Outcome,
) -> Option<Outcome> {
    let (iters, residual, truncated) = incumbent;
    let cap = if truncated { s.max_iters } else { iters - 1 };
    if cap == 0 {
        return None;
    }
    let capped = CgSettings {
        max_iters: cap,
        accept_truncated: true,
        ..s.clone()
    };
    let out = run_cg(lin, Space::Params, rhs, &mut x0, (&capped, damping), ch).ok()?;
    let wins = !out.2 || (truncated && out.1 < residual);
    wins.then(|| {
        x.copy_from_slice(&x0);
        out
    })
}
