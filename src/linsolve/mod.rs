//! How a natural-gradient direction is solved: `(G + λI) d = b` by preconditioned
//! conjugate gradients (faer's `conjugate_gradient` on the matrix-free
//! [`GramOperator`](crate::gram::GramOperator)) or by a dense Cholesky factorisation
//! (faer's `llt`) of the same matrix.
//!
//! Failures carry the reason the iteration stopped, PETSc-KSP style (operator or
//! preconditioner not positive definite, no convergence, non-finite data), with the
//! iteration and a hint, so that the solver can end an argmin run with a message that
//! says what to try.

mod cg;
mod cholesky;

use crate::error::Error;
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::Linearized;
use faer::Par;
use std::fmt;

/// The linear solver for the direction.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum LinearSolver {
    /// Matrix-free preconditioned CG on `JᵀMJ + λI` (faer).
    Cg(CgSettings),
    /// Form `J` and `G` densely and factor `G + λI` by Cholesky (faer).
    /// Cost `O(n p² + p³)`, memory `O(p² + n p)`.
    Cholesky,
}

impl Default for LinearSolver {
    fn default() -> Self {
        LinearSolver::Cg(CgSettings::default())
    }
}

/// Preconditioner for CG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Preconditioner {
    /// No preconditioner.
    None,
    /// Jacobi: `diag(G) + λ`, used when the metric is diagonal and the model provides
    /// [`gram_diagonal`](crate::model::Linearization::gram_diagonal); CG falls back to no
    /// preconditioner otherwise (and says so in the solve info).
    #[default]
    Jacobi,
}

/// Settings of the CG solve.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct CgSettings {
    /// Stop when `‖r‖ ≤ rel_tol · ‖b‖` (default `1e-10`).
    pub rel_tol: f64,
    /// ... or when `‖r‖ ≤ abs_tol` (default `0`).
    pub abs_tol: f64,
    /// Iteration cap (default 1000).
    pub max_iters: usize,
    /// Preconditioner (default Jacobi, where available).
    pub preconditioner: Preconditioner,
    /// Start from the previous step's direction (default `true`).
    pub warm_start: bool,
    /// Accept the iterate when `max_iters` is reached without convergence (truncated CG, as
    /// in Hessian-free optimisation). Default `false`: non-convergence ends the run.
    pub accept_truncated: bool,
}

impl Default for CgSettings {
    fn default() -> Self {
        Self {
            rel_tol: 1e-10,
            abs_tol: 0.0,
            max_iters: 1000,
            preconditioner: Preconditioner::Jacobi,
            warm_start: true,
            accept_truncated: false,
        }
    }
}

impl CgSettings {
    /// Exactly `iters` CG iterations: no tolerance, no preconditioner, cold start,
    /// truncated result accepted. The fixed-work setting of benchmarks.
    pub fn fixed_iterations(iters: usize) -> Self {
        Self {
            rel_tol: 0.0,
            abs_tol: 0.0,
            max_iters: iters,
            preconditioner: Preconditioner::None,
            warm_start: false,
            accept_truncated: true,
        }
    }

    pub(crate) fn validate(&self) -> crate::Result<()> {
        let ok = self.rel_tol >= 0.0
            && self.abs_tol >= 0.0
            && self.rel_tol.is_finite()
            && self.abs_tol.is_finite()
            && self.max_iters > 0;
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidSetting(format!(
                "CG settings need finite tolerances ≥ 0 and max_iters > 0, got {self:?}"
            )))
        }
    }
}

/// What a successful solve did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SolveInfo {
    /// `"cg"` or `"cholesky"`.
    pub method: &'static str,
    /// CG iterations (0 for Cholesky).
    pub iters: usize,
    /// Final relative residual `‖b − A x‖ / ‖b‖` (CG's recursive residual; exact for
    /// Cholesky).
    pub rel_residual: f64,
    /// `"none"` or `"jacobi"`.
    pub preconditioner: &'static str,
    /// CG stopped at `max_iters` without reaching the tolerance (only with
    /// `accept_truncated`).
    pub truncated: bool,
}

/// Why a direction solve failed.
#[derive(Debug, Clone, PartialEq)]
pub enum SolveFailure {
    /// CG met a direction of non-positive curvature.
    OperatorNotPositiveDefinite {
        /// CG iteration at which it happened.
        iteration: usize,
        /// Damping in use.
        damping: f64,
    },
    /// The preconditioner is not positive definite.
    PreconditionerNotPositiveDefinite {
        /// CG iteration at which it happened.
        iteration: usize,
    },
    /// CG reached `max_iters` without meeting the tolerance.
    NoConvergence {
        /// Iterations run.
        iters: usize,
        /// Relative residual reached.
        rel_residual: f64,
        /// Tolerance asked for.
        rel_tol: f64,
    },
    /// The right-hand side or the computed direction is not finite.
    NonFinite {
        /// `"right-hand side"` or `"direction"`.
        what: &'static str,
        /// First bad index.
        index: usize,
    },
    /// The direct solve failed (Cholesky pivot, sizes).
    Direct(Error),
}

impl fmt::Display for SolveFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SolveFailure::OperatorNotPositiveDefinite { iteration, damping } => write!(
                f,
                "CG breakdown at iteration {iteration}: the Gram operator G + λI (λ = {damping:e}) \
                 is not positive definite; the Gram matrix is singular at this θ — increase \
                 the damping with `with_damping`"
            ),
            SolveFailure::PreconditionerNotPositiveDefinite { iteration } => write!(
                f,
                "CG breakdown at iteration {iteration}: the preconditioner is not positive \
                 definite — add damping or use `Preconditioner::None`"
            ),
            SolveFailure::NoConvergence {
                iters,
                rel_residual,
                rel_tol,
            } => write!(
                f,
                "CG did not converge: relative residual {rel_residual:e} after {iters} \
                 iterations (tolerance {rel_tol:e}) — raise `max_iters`, add damping, use a \
                 preconditioner, or allow truncated solves (`accept_truncated`)"
            ),
            SolveFailure::NonFinite { what, index } => write!(
                f,
                "non-finite {what} at index {index} — the model or loss produced NaN/inf; \
                 reduce the step size or add damping"
            ),
            SolveFailure::Direct(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SolveFailure {}

/// State a linear solver keeps from one natural-gradient step to the next (e.g. a
/// preconditioner that is rebuilt only every few steps). Owned by the optimiser, so that
/// it is checkpointed with it; empty for the solvers that need nothing.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SolveCache {
    /// Number of direction solves made with this cache.
    pub solves: u64,
}

/// The right-hand side `b` of `(G + λI) d = b`.
///
/// Every step rule of MATH.md §3 has a right-hand side of the form `b = Jᵀ r` for an
/// output-space vector `r` (a cotangent): `r = ∇_y ℓ` for plain natural gradient,
/// `r = β M J_{k−1}δ_{k−1} − α ∇_y ℓ` for transported heavy ball, and so on. Passing `r`
/// rather than `b` lets sample-space solvers (which need `r`) and parameter-space solvers
/// (which need `Jᵀ r`, one vjp) share one interface.
#[derive(Debug, Clone, Copy)]
pub enum Rhs<'a> {
    /// `b = Jᵀ r` with `r ∈ Rⁿ`; `jt_r` is `Jᵀ r` when the caller already has it (saves
    /// a vjp).
    Cotangent {
        /// The output-space vector `r`.
        r: &'a [f64],
        /// `Jᵀ r`, if already computed.
        jt_r: Option<&'a [f64]>,
    },
    /// `b ∈ Rᵖ` given directly (parameter-space solvers only).
    Params(&'a [f64]),
}

fn first_non_finite(v: &[f64]) -> Option<usize> {
    v.iter().position(|x| !x.is_finite())
}

/// Solves `(G + λI) x = b` at a linearisation. On entry `x` holds the initial guess
/// (used when warm starting), on exit the solution.
pub fn solve_direction<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut Linearized<'_, Mo, Lo, Me>,
    rhs: Rhs<'_>,
    x: &mut [f64],
    damping: f64,
    solver: &LinearSolver,
    cache: &mut SolveCache,
    par: Par,
) -> Result<SolveInfo, SolveFailure> {
    cache.solves += 1;
    let given = match rhs {
        Rhs::Cotangent { r, .. } => r,
        Rhs::Params(b) => b,
    };
    if let Some(index) = first_non_finite(given) {
        return Err(SolveFailure::NonFinite {
            what: "right-hand side",
            index,
        });
    }
    let owned;
    let b: &[f64] = match rhs {
        Rhs::Params(b) | Rhs::Cotangent { jt_r: Some(b), .. } => b,
        Rhs::Cotangent { r, jt_r: None } => {
            let mut jtr = vec![0.0; x.len()];
            lin.vjp(r, &mut jtr);
            owned = jtr;
            &owned
        }
    };
    let info = match solver {
        LinearSolver::Cg(s) => cg::solve_cg(lin, b, x, damping, s, par)?,
        LinearSolver::Cholesky => cholesky::solve_cholesky(lin, b, x, damping, par)?,
    };
    if let Some(index) = first_non_finite(x) {
        return Err(SolveFailure::NonFinite {
            what: "direction",
            index,
        });
    }
    Ok(info)
}
