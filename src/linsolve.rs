//! How a natural-gradient direction is solved: `(G + λI) d = b` by preconditioned
//! conjugate gradients (faer's `conjugate_gradient` on the matrix-free
//! [`GramOperator`](crate::gram::GramOperator)) or by a dense Cholesky factorisation
//! (faer's `llt`) of the same matrix.
//!
//! Failures carry the reason the iteration stopped, PETSc-KSP style (operator or
//! preconditioner not positive definite, no convergence, non-finite data), with the
//! iteration and a hint, so that the solver can end an argmin run with a message that
//! says what to try.

use crate::error::Error;
use crate::gram::{dense_gram, dense_jacobian, JacobianSource};
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::Linearized;
use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::solvers::Solve;
use faer::matrix_free::conjugate_gradient::{
    conjugate_gradient, conjugate_gradient_scratch, CgError, CgParams,
};
use faer::matrix_free::{IdentityPrecond, InitialGuessStatus, LinOp, Precond};
use faer::{ColMut, ColRef, MatMut, MatRef, Par, Side};
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

/// The CG preconditioner actually used.
#[derive(Debug)]
enum CgPrecond {
    Identity(IdentityPrecond),
    Jacobi(Diag<f64>),
}

impl CgPrecond {
    fn name(&self) -> &'static str {
        match self {
            CgPrecond::Identity(_) => "none",
            CgPrecond::Jacobi(_) => "jacobi",
        }
    }
}

impl LinOp<f64> for CgPrecond {
    fn apply_scratch(&self, k: usize, par: Par) -> faer::dyn_stack::StackReq {
        match self {
            CgPrecond::Identity(p) => LinOp::<f64>::apply_scratch(p, k, par),
            CgPrecond::Jacobi(d) => d.apply_scratch(k, par),
        }
    }
    fn nrows(&self) -> usize {
        match self {
            CgPrecond::Identity(p) => p.dim,
            CgPrecond::Jacobi(d) => d.dim(),
        }
    }
    fn ncols(&self) -> usize {
        self.nrows()
    }
    fn apply(&self, out: MatMut<'_, f64>, rhs: MatRef<'_, f64>, par: Par, st: &mut MemStack) {
        match self {
            CgPrecond::Identity(p) => p.apply(out, rhs, par, st),
            CgPrecond::Jacobi(d) => d.apply(out, rhs, par, st),
        }
    }
    fn conj_apply(&self, out: MatMut<'_, f64>, rhs: MatRef<'_, f64>, par: Par, st: &mut MemStack) {
        self.apply(out, rhs, par, st)
    }
}

impl Precond<f64> for CgPrecond {}

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
        LinearSolver::Cg(s) => solve_cg(lin, b, x, damping, s, par)?,
        LinearSolver::Cholesky => solve_cholesky(lin, b, x, damping, par)?,
    };
    if let Some(index) = first_non_finite(x) {
        return Err(SolveFailure::NonFinite {
            what: "direction",
            index,
        });
    }
    Ok(info)
}

fn solve_cg<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut Linearized<'_, Mo, Lo, Me>,
    rhs: &[f64],
    x: &mut [f64],
    damping: f64,
    s: &CgSettings,
    par: Par,
) -> Result<SolveInfo, SolveFailure> {
    let p = rhs.len();
    let precond = match s.preconditioner {
        Preconditioner::Jacobi => match lin.gram_diagonal(damping) {
            Some(d) if d.iter().all(|&v| v > 0.0 && v.is_finite()) => {
                CgPrecond::Jacobi(faer::Col::from_fn(p, |i| 1.0 / d[i]).into_diagonal())
            }
            _ => CgPrecond::Identity(IdentityPrecond { dim: p }),
        },
        Preconditioner::None => CgPrecond::Identity(IdentityPrecond { dim: p }),
    };
    let op = lin.gram(damping);
    // Always `MaybeNonZero`: faer 0.24.4's CG leaves its residual uninitialised when told
    // the guess is `Zero` (it never copies `b` into `r`). A cold start is a zero guess,
    // whose product `G·0` the Gram operator short-circuits, so this costs nothing.
    if !s.warm_start {
        x.fill(0.0);
    }
    let initial_guess = InitialGuessStatus::MaybeNonZero;
    let params = CgParams::<f64> {
        rel_tolerance: s.rel_tol,
        abs_tolerance: s.abs_tol,
        max_iters: s.max_iters,
        initial_guess,
        ..CgParams::default()
    };
    let mut mem = MemBuffer::new(conjugate_gradient_scratch(&precond, &op, 1, par));
    let mut iters = 0usize;
    let result = conjugate_gradient(
        ColMut::from_slice_mut(x).as_mat_mut(),
        &precond,
        &op,
        ColRef::from_slice(rhs).as_mat(),
        params,
        |_| iters += 1,
        par,
        MemStack::new(&mut mem),
    );
    let pname = precond.name();
    match result {
        Ok(info) => Ok(SolveInfo {
            method: "cg",
            iters: info.iter_count,
            rel_residual: info.rel_residual,
            preconditioner: pname,
            truncated: false,
        }),
        Err(CgError::NoConvergence { rel_residual, .. }) if s.accept_truncated => Ok(SolveInfo {
            method: "cg",
            iters,
            rel_residual,
            preconditioner: pname,
            truncated: true,
        }),
        Err(CgError::NoConvergence { rel_residual, .. }) => Err(SolveFailure::NoConvergence {
            iters,
            rel_residual,
            rel_tol: s.rel_tol,
        }),
        Err(CgError::NonPositiveDefiniteOperator) => {
            Err(SolveFailure::OperatorNotPositiveDefinite {
                iteration: iters,
                damping,
            })
        }
        Err(CgError::NonPositiveDefinitePreconditioner) => {
            Err(SolveFailure::PreconditionerNotPositiveDefinite { iteration: iters })
        }
    }
}

fn solve_cholesky<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut Linearized<'_, Mo, Lo, Me>,
    rhs: &[f64],
    x: &mut [f64],
    damping: f64,
    par: Par,
) -> Result<SolveInfo, SolveFailure> {
    let n = lin.outputs().len();
    let (jac, source) = dense_jacobian(lin.linearization_mut(), n);
    match source {
        JacobianSource::Model => {}
        JacobianSource::Jvps(k) => lin.count_products(k as u64, 0),
        JacobianSource::Vjps(k) => lin.count_products(0, k as u64),
    }
    let g = dense_gram(
        jac.as_ref(),
        lin.problem().metric(),
        &lin.point(),
        damping,
        par,
    );
    let llt = g.llt(Side::Lower).map_err(|e| {
        let faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index } = e;
        SolveFailure::Direct(Error::GramNotPositiveDefinite { index, damping })
    })?;
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
    Ok(SolveInfo {
        method: "cholesky",
        iters: 0,
        rel_residual: if bn > 0.0 { res / bn } else { 0.0 },
        preconditioner: "none",
        truncated: false,
    })
}
