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
//! **The trial: a race.** At the first solve, and again once `refresh_every` solves have
//! passed since the last trial, the current choice (the *incumbent*; no preconditioner at
//! first) solves with its iterations capped at `trial_above`. If it reaches the tolerance
//! within the cap, that is the result and the choice stands: a capped run that converges
//! is the uncapped solve, iterate for iterate (faer's CG only bounds its loop by
//! `max_iters`), so such a solve is bitwise plain CG. Otherwise the other preconditioner
//! (the *challenger*) solves the same system from the same initial guess, capped at
//! `2·trial_above`; then the incumbent again from that guess at `4·trial_above`, the
//! challenger at `8·trial_above`, and so on (caps never above `max_iters`; with
//! `trial_above = 0` the caps after the first are 2, 4, 8, …). The first run to reach the
//! tolerance within its cap wins: its solution is returned and its preconditioner kept
//! until the next trial. A run capped at `max_iters` is its runner's last, and the other
//! then gets `max_iters` too; if neither reaches the tolerance the smaller true residual
//! wins (the incumbent on a tie). When `max_iters ≤ trial_above` the incumbent's solve
//! is returned as it is, reached or not: there is no race (as before the race, and so a
//! fixed-iteration solve, `CgSettings::fixed_iterations`, stays the plain one). Between
//! trials the kept choice is used alone.
//!
//! *Why a race.* Before it, the incumbent ran to completion before the challenger was
//! tried: on a column-scaled linear design plain CG's 1 393 iterations were paid in full
//! before Jacobi's 19 (docs/performance-solvers.md). Neither count is known before it is
//! run, and a run cannot be resumed after its cap without changing its iterates, so the
//! runs restart from the initial guess with doubling caps. Every run but the winner's
//! stops at its cap, so a trial whose winner needs `w` iterations costs at most
//! `T + 2T + … + 2^{k−1}T + w` products for the `k`-th run `T·2^k ≥ w`: when the
//! incumbent misses `T` and the challenger needs `c ≤ 2T`, exactly `T + c` (cold start;
//! a warm start adds one product `G x₀` per run). Against the better choice alone, with
//! count `m`, a trial that races (the incumbent missed `T`) costs at most `T + m` when
//! the challenger's first run wins, and otherwise less than `5m` (the winner's count
//! exceeds the cap of its own previous run, `2^{k−2}T`, and the sum of the caps before it
//! is below `2^k T`; less than `4m` when the loser was the better one); the kept choice
//! then needs at most twice the other's iterations. A run stopped below `max_iters` skips
//! the true residual of a truncated CG solve, which is not needed.
//!
//! The pick depends on iteration counts only, never on wall time, so it is deterministic
//! (and the same on every MPI rank, whose CG iterates agree).
//!
//! **The diagonal's cost** ([`Linearization::gram_diagonal`](crate::model::Linearization::gram_diagonal)),
//! paid at every trial (before the race, even when the incumbent then converges within
//! `trial_above`: whether a model has a diagonal is known only by asking, and a race
//! started without a challenger would have to restart the incumbent) and at every solve
//! while Jacobi is the choice; it is not a Gram product and not counted as one: a dense linear or closure model, the weighted squared column norms of `J`
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
//! fails) in any of its runs, the failure is returned as it would be without `Auto` (its
//! capped runs repeat the uncapped solve's iterations); a challenger that breaks down
//! loses, and the incumbent then runs to `max_iters`. A truncated result is an error unless the
//! settings accept truncated solves, as for any CG solve.

use super::cg::{identity, jacobi, run_cg, CgPrecond, CgRun, System, Truncated};
use super::{CgReport, CgSettings, SolveCtx, SolveFailure, SolveInfo};
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
    sys: System<'_>,
    s: &CgSettings,
    ctx: &mut SolveCtx<'_>,
    (trial_above, refresh_every): (usize, u64),
) -> Result<SolveInfo, SolveFailure> {
    let (damping, solves) = (ctx.damping, ctx.cache.solves);
    let choice = ctx.cache.precond_choice;
    let due = choice.is_none_or(|c| solves.saturating_sub(c.measured_at) >= refresh_every);
    let wants_jacobi = choice.is_some_and(|c| c.jacobi);
    // The diagonal is formed when Jacobi is the choice, and at a trial before the race
    // starts: whether the model has one is known only by asking, and a race begun without
    // a challenger would have to run the incumbent again from the start.
    let jac = match wants_jacobi || due {
        true => jacobi(lin, damping),
        false => None,
    };
    let dim = sys.rhs.len();
    let (incumbent, challenger) = match (wants_jacobi, jac) {
        (true, Some(j)) => (j, due.then(|| identity(dim))),
        (false, j) => (identity(dim), j),
        (true, None) => (identity(dim), None),
    };
    // Accept a truncated solve for now: whether it is an error is decided on the solve
    // that is returned (the same iterate and the same error as without Auto).
    let lenient = CgSettings {
        accept_truncated: true,
        ..s.clone()
    };
    let ((iters, rel_residual, truncated), kept) = match &challenger {
        Some(ch) => race(lin, sys, (&lenient, damping), [&incumbent, ch], trial_above)?,
        None => {
            let how = CgRun {
                settings: &lenient,
                damping,
                truncated: Truncated::Measure,
            };
            let out = run_cg(lin, sys, how, &incumbent)?;
            (out, &incumbent)
        }
    };
    if due {
        ctx.cache.precond_choice = Some(PrecondChoice {
            jacobi: matches!(kept, CgPrecond::Jacobi(_)),
            measured_at: solves,
        });
    }
    if truncated && !s.accept_truncated {
        return Err(SolveFailure::NoConvergence {
            iters,
            rel_residual,
            rel_tol: s.rel_tol,
        });
    }
    let report = CgReport {
        iters,
        preconditioner: kept.kind(),
        sketch_products: 0,
        truncated,
    };
    Ok(super::cg::cg_info(Space::Params, rel_residual, report))
}

/// The cap of run `round` of a race: `trial_above` for the first (the incumbent's),
/// then `2^round · max(trial_above, 1)`, never above `max_iters`.
fn cap(round: u32, trial_above: usize, max_iters: usize) -> usize {
    let cap = match round {
        0 => trial_above,
        _ => trial_above
            .max(1)
            .saturating_mul(2usize.saturating_pow(round)),
    };
    cap.min(max_iters)
}

/// Where a runner of [`race`] stands.
enum Runner {
    /// Still racing: its last run stopped at a cap below `max_iters`.
    Racing,
    /// Failed (a challenger that broke down).
    Failed,
    /// Stopped at `max_iters` without reaching the tolerance: its outcome and solution.
    Final(Outcome, Vec<f64>),
}

/// A trial: the incumbent (`runners[0]`) and the challenger (`runners[1]`) solve `sys` in
/// turn from its initial guess `x`, run `k` capped at [`cap`]`(k)`, until one reaches the
/// tolerance within its cap; it wins, its solution is written into `x`, and its outcome and
/// preconditioner are returned. A run capped at `max_iters` is its runner's last (and once
/// one runner has had its last, the other runs to `max_iters` next); when neither
/// reached the tolerance, the smaller true residual wins (the incumbent on a tie). The
/// incumbent's failure is returned as it would be without a trial (each of its runs
/// repeats the uncapped solve's first iterations exactly); a challenger that fails loses.
fn race<'p, 'q, Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    sys: System<'_>,
    (s, damping): (&CgSettings, f64),
    runners: [&'p CgPrecond<'q>; 2],
    trial_above: usize,
) -> Result<(Outcome, &'p CgPrecond<'q>), SolveFailure> {
    let System { space, rhs, x } = sys;
    let x0 = x.to_vec();
    let mut state = [Runner::Racing, Runner::Racing];
    for round in 0u32.. {
        let who = (round % 2) as usize;
        if !matches!(state[who], Runner::Racing) {
            continue;
        }
        let max_iters = match state[1 - who] {
            Runner::Racing => cap(round, trial_above, s.max_iters),
            _ => s.max_iters,
        };
        let last = max_iters == s.max_iters;
        let capped = CgSettings {
            max_iters,
            ..s.clone()
        };
        let mode = match last {
            true => Truncated::Measure,
            false => Truncated::Skip,
        };
        let mut xr = x0.clone();
        let how = CgRun {
            settings: &capped,
            damping,
            truncated: mode,
        };
        let run = System {
            space,
            rhs,
            x: &mut xr,
        };
        match run_cg(lin, run, how, runners[who]) {
            Err(e) if who == 0 => return Err(e),
            Err(_) => state[who] = Runner::Failed,
            // Converged; or, at `trial_above ≥ max_iters`, the incumbent's one solve
            // (it cannot have taken more than `trial_above` iterations: no race).
            Ok(out) if !out.2 || (round == 0 && last) => {
                x.copy_from_slice(&xr);
                return Ok((out, runners[who]));
            }
            Ok(out) if last => state[who] = Runner::Final(out, xr),
            Ok(_) => {}
        }
        if let [Runner::Final(a, _), other] = &state
            && !matches!(other, Runner::Racing)
        {
            // Neither reached the tolerance within `max_iters`.
            let who = usize::from(matches!(other, Runner::Final(b, _) if b.1 < a.1));
            if let Runner::Final(out, xr) = std::mem::replace(&mut state[who], Runner::Failed) {
                x.copy_from_slice(&xr);
                return Ok((out, runners[who]));
            }
        }
    }
    // Unreachable: every run brings a runner closer to `max_iters`, and the loop returns
    // once both have had their last run. Kept as an error, not a panic.
    Err(SolveFailure::NoConvergence {
        iters: s.max_iters,
        rel_residual: f64::NAN,
        rel_tol: s.rel_tol,
    })
}
