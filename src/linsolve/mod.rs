//! How a natural-gradient direction is solved: `(G + λI) d = b` by preconditioned
//! conjugate gradients (faer's `conjugate_gradient` on the matrix-free
//! [`GramOperator`](crate::gram::GramOperator)) or by a dense Cholesky factorisation
//! (faer's `llt`) of the same matrix — in parameter space (`p×p`), or in sample space
//! (`n×n`) by the Woodbury push-through of docs/math.md §2:
//!
//! ```text
//!   (JᵀMJ + λI)⁻¹ Jᵀ r = Jᵀ s,   (JJᵀ + λM⁻¹) s = M⁻¹ r.
//! ```
//!
//! (Proof: `(JᵀMJ + λI) Jᵀ = Jᵀ (MJJᵀ + λI) = Jᵀ M (JJᵀ + λM⁻¹)`; multiply on the right by
//! `(JJᵀ + λM⁻¹)⁻¹ M⁻¹ r = s` and on the left by `(JᵀMJ + λI)⁻¹`. For `λ > 0` both
//! matrices are SPD, so it holds for any `r`, not only `r = ∇_y ℓ`: every step rule of
//! docs/math.md §3, whose right-hand sides are all `Jᵀ(·)`, can use it.)
//!
//! CG can be preconditioned by Jacobi or by a randomized Nyström approximation
//! ([`nystrom`]); [`LinearSolver::Auto`] picks the space and the method ([`auto`]).
//!
//! One value answers every solve: the [`DirectionSolver`], which owns the settings
//! ([`LinearSolver`], [`CgSettings`], [`Preconditioner`], [`Parallelism`]) and what is
//! kept between solves ([`SolveCache`]: warm starts, Nyström sketch, K-FAC factors, the
//! automatic choices), and dispatches to one file per path: `cg` (parameter and
//! sample space, with [`precond_choice`] and [`nystrom`]), `cholesky`, `sample_space`,
//! `least_squares`, [`kfac`], and [`auto`] which picks among the first four; `system`
//! holds what the paths are handed.
//!
//! Failures carry the reason the iteration stopped, PETSc-KSP style (operator or
//! preconditioner not positive definite, no convergence, non-finite data), with the
//! iteration and a hint, so that the solver can end an argmin run with a message that
//! says what to try.

pub mod auto;
mod cache;
mod cg;
mod cholesky;
pub mod kfac;
mod least_squares;
pub mod nystrom;
pub mod precond_choice;
mod sample_space;
mod settings;
mod system;

pub use auto::{AutoSettings, CostModel, Path};
pub use cache::{SolveCache, WarmStart};
pub use kfac::{KfacPrecond, KfacState};
pub use least_squares::MAX_JACOBIAN_ENTRIES;
pub use nystrom::{NystromPrecond, NystromSketch};
pub use precond_choice::PrecondChoice;
pub use settings::{CgSettings, LinearSolver, Parallelism, Preconditioner};
pub use system::Rhs;

use system::{Direction, SolveCtx};

pub(crate) use sample_space::sharded_sample_space;

use crate::error::Error;
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::LinearizedProblem;
use std::fmt;

/// The direction solver: `(G + λI) d = b` at a linearisation, by the path its
/// [`LinearSolver`] names (docs/math.md §2), with its CG settings and preconditioner, on
/// the threads of its [`Parallelism`]; it keeps its [`SolveCache`] (warm starts, Nyström
/// sketch, K-FAC factors, the automatic choices) from one solve to the next. One is held
/// by [`NaturalGradient`](crate::NaturalGradient); build one to solve for directions
/// outside an argmin run.
///
/// ```
/// use natgrad::linsolve::{DirectionSolver, Rhs};
/// use natgrad::{problems::toys, LinearSolver};
///
/// // At θ₀ of the biased linear toy, λ = 0: Cholesky and CG give the same direction.
/// let toy = toys::biased_linear(toys::ToyMetric::Anisotropic);
/// let mut lin = toy.problem.linearize(&toy.theta0)?;
/// let r = lin.output_gradient().to_vec();
/// let mut cholesky = DirectionSolver::new(LinearSolver::Cholesky);
/// let mut cg = DirectionSolver::new(LinearSolver::default());
/// cholesky.solve(&mut lin, Rhs::Cotangent { r: &r, jt_r: None }, 0.0)?;
/// cg.solve(&mut lin, Rhs::Cotangent { r: &r, jt_r: None }, 0.0)?;
/// for (a, b) in cholesky.direction().iter().zip(cg.direction()) {
///     assert!((a - b).abs() < 1e-9);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DirectionSolver {
    linear_solver: LinearSolver,
    parallelism: Parallelism,
    cache: SolveCache,
}

impl DirectionSolver {
    /// A solver by `linear_solver`, sequential, with an empty cache. The settings are
    /// checked at each solve ([`LinearSolver::validate`]; a [`SolveFailure::Direct`]).
    pub fn new(linear_solver: LinearSolver) -> Self {
        Self {
            linear_solver,
            parallelism: Parallelism::Sequential,
            cache: SolveCache::default(),
        }
    }

    /// Threads for the dense parts (Cholesky, Gram GEMM, Nyström sketch); CG's own vector
    /// work stays sequential so that results do not depend on the thread count.
    #[must_use]
    pub fn with_parallelism(mut self, parallelism: Parallelism) -> Self {
        self.parallelism = parallelism;
        self
    }

    /// The initial guess of the next solve of the system `which` (used when its settings
    /// warm-start, e.g. [`CgSettings::warm_start`]); replaced by that solve's solution.
    #[must_use]
    pub fn with_warm_start(mut self, which: WarmStart, x: Vec<f64>) -> Self {
        self.cache.warm[which as usize] = Some(x);
        self
    }

    /// The linear solver.
    pub fn linear_solver(&self) -> &LinearSolver {
        &self.linear_solver
    }

    /// The thread setting of the dense parts.
    pub fn parallelism(&self) -> Parallelism {
        self.parallelism
    }

    /// What is kept between solves.
    pub fn cache(&self) -> &SolveCache {
        &self.cache
    }

    /// The solution of the last successful [`solve`](Self::solve) (empty before any; a
    /// failed solve forgets it).
    pub fn direction(&self) -> &[f64] {
        self.cache.warm_start(WarmStart::Direction).unwrap_or(&[])
    }

    /// Replaces the linear solver, keeping what is kept between solves.
    pub fn set_linear_solver(&mut self, linear_solver: LinearSolver) -> &mut Self {
        self.linear_solver = linear_solver;
        self
    }

    /// Replaces the thread setting.
    pub fn set_parallelism(&mut self, parallelism: Parallelism) -> &mut Self {
        self.parallelism = parallelism;
        self
    }

    /// Forgets everything kept between solves (the start of a run).
    pub(crate) fn reset(&mut self) {
        self.cache = SolveCache::default();
    }

    /// Solves `(G + λI) d = b` at `lin` for the step's direction ([`WarmStart::Direction`]),
    /// `λ = damping ≥ 0`; the solution is then [`direction`](Self::direction). Fails with
    /// the reason the path stopped (see [`SolveFailure`]): a non-finite right-hand side or
    /// solution, CG's breakdown or non-convergence, a refused factorisation, a metric or
    /// right-hand side the path cannot use.
    pub fn solve<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
        rhs: Rhs<'_>,
        damping: f64,
    ) -> Result<SolveInfo, SolveFailure> {
        self.solve_system(WarmStart::Direction, lin, rhs, damping)
    }

    /// [`solve`](Self::solve) for the system `which`, warm-started from its own last
    /// solution ([`SolveCache::warm_start`], read back there).
    pub fn solve_system<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        which: WarmStart,
        lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
        rhs: Rhs<'_>,
        damping: f64,
    ) -> Result<SolveInfo, SolveFailure> {
        let p = lin.problem().n_params();
        let mut x = match self.cache.warm[which as usize].take() {
            Some(w) if w.len() == p => w,
            _ => vec![0.0; p],
        };
        let info = self.dispatch(lin, Direction { rhs, x: &mut x }, damping)?;
        self.cache.warm[which as usize] = Some(x);
        Ok(info)
    }

    /// [`solve`](Self::solve) from the initial guess in `x` (length `p`) instead of the
    /// kept one; the solution is written into `x` (and kept as the next initial guess).
    pub fn solve_from<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
        rhs: Rhs<'_>,
        damping: f64,
        x: &mut [f64],
    ) -> Result<SolveInfo, SolveFailure> {
        let which = WarmStart::Direction as usize;
        self.cache.warm[which] = None;
        let info = self.dispatch(lin, Direction { rhs, x: &mut *x }, damping)?;
        self.cache.warm[which] = Some(x.to_vec());
        Ok(info)
    }

    /// The checks every path shares, and the path of the linear solver.
    fn dispatch<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
        dir: Direction<'_>,
        damping: f64,
    ) -> Result<SolveInfo, SolveFailure> {
        self.cache.solves += 1;
        self.linear_solver
            .validate()
            .map_err(SolveFailure::Direct)?;
        if let Some(index) = first_non_finite(dir.rhs.given()) {
            return Err(SolveFailure::NonFinite {
                what: "right-hand side",
                index,
            });
        }
        let ctx = &mut SolveCtx {
            damping,
            cache: &mut self.cache,
            par: self.parallelism.par(),
        };
        let Direction { rhs, x } = dir;
        let dir = Direction { rhs, x: &mut *x };
        let info = match &self.linear_solver {
            LinearSolver::Cg(s) => cg::solve_params(lin, dir, s, ctx)?,
            LinearSolver::Cholesky => cholesky::solve_params(lin, dir, ctx)?,
            LinearSolver::SampleCg(s) => sample_space::solve(lin, dir, Some(s), ctx)?,
            LinearSolver::SampleCholesky => sample_space::solve(lin, dir, None, ctx)?,
            LinearSolver::Auto(a) => auto::solve(lin, a, dir, ctx)?,
            LinearSolver::LeastSquares { rcond } => {
                least_squares::solve_for(lin, dir, *rcond, ctx)?
            }
            LinearSolver::Kfac {
                refresh_every,
                decay,
            } => kfac::solve(lin, dir, (*refresh_every, *decay), ctx)?,
        };
        if let Some(index) = first_non_finite(x) {
            return Err(SolveFailure::NonFinite {
                what: "direction",
                index,
            });
        }
        Ok(info)
    }
}

/// Which method solved a direction ([`SolveInfo::method`]). Its [`Display`](fmt::Display)
/// is the name in the KV's `linear_solver` and in messages: `cg`, `cholesky`, `sample-cg`,
/// `sample-cholesky`, `least-squares`, `kfac`, and `auto:<space>-<method>` (e.g.
/// `auto:sample-cg`) for a path [`LinearSolver::Auto`] chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SolveMethod {
    /// One of the four paths, asked for by name ([`LinearSolver::Cg`], `Cholesky`,
    /// `SampleCg`, `SampleCholesky`).
    Path(Path),
    /// One of the four paths, chosen by [`LinearSolver::Auto`].
    Auto(Path),
    /// [`LinearSolver::LeastSquares`].
    LeastSquares,
    /// [`LinearSolver::Kfac`] (no CG).
    Kfac,
}

impl SolveMethod {
    /// The path (parameter or sample space, CG or Cholesky), for the four paths.
    pub fn path(self) -> Option<Path> {
        match self {
            SolveMethod::Path(p) | SolveMethod::Auto(p) => Some(p),
            SolveMethod::LeastSquares | SolveMethod::Kfac => None,
        }
    }

    /// `true` when [`LinearSolver::Auto`] chose the path.
    pub fn chosen_by_auto(self) -> bool {
        matches!(self, SolveMethod::Auto(_))
    }

    /// `true` for the CG paths (parameter or sample space).
    pub fn runs_cg(self) -> bool {
        self.path().is_some_and(|p| !p.is_direct())
    }
}

impl fmt::Display for SolveMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            SolveMethod::Path(Path::ParamCg) => "cg",
            SolveMethod::Path(Path::ParamCholesky) => "cholesky",
            SolveMethod::Path(Path::SampleCg) => "sample-cg",
            SolveMethod::Path(Path::SampleCholesky) => "sample-cholesky",
            SolveMethod::Auto(Path::ParamCg) => "auto:param-cg",
            SolveMethod::Auto(Path::ParamCholesky) => "auto:param-cholesky",
            SolveMethod::Auto(Path::SampleCg) => "auto:sample-cg",
            SolveMethod::Auto(Path::SampleCholesky) => "auto:sample-cholesky",
            SolveMethod::LeastSquares => "least-squares",
            SolveMethod::Kfac => "kfac",
        };
        f.write_str(name)
    }
}

/// The preconditioner a CG solve actually ran with ([`CgReport::preconditioner`]): the
/// one asked for, or none where it is not available (see [`Preconditioner`]), or the
/// choice of [`Preconditioner::Auto`]. [`Display`](fmt::Display): `none`, `jacobi`,
/// `nystrom`, `kfac` (the KV's `preconditioner`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreconditionerKind {
    /// No preconditioner.
    None,
    /// Jacobi, `(diag(G) + λ)⁻¹`.
    Jacobi,
    /// Randomized Nyström ([`nystrom`]).
    Nystrom,
    /// K-FAC ([`kfac`]).
    Kfac,
}

impl fmt::Display for PreconditionerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PreconditionerKind::None => "none",
            PreconditionerKind::Jacobi => "jacobi",
            PreconditionerKind::Nystrom => "nystrom",
            PreconditionerKind::Kfac => "kfac",
        })
    }
}

/// What the CG iteration of a CG solve did ([`SolveInfo::cg`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CgReport {
    /// CG iterations of the solve that was returned.
    pub iters: usize,
    /// The preconditioner it ran with.
    pub preconditioner: PreconditionerKind,
    /// Gram products spent in this solve on (re)building the Nyström sketch (0 when the
    /// cached sketch was reused or there is none).
    pub sketch_products: u64,
    /// CG stopped at `max_iters` without reaching the tolerance (only with
    /// `accept_truncated`).
    pub truncated: bool,
}

/// What a successful solve did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SolveInfo {
    /// The method that solved it.
    pub method: SolveMethod,
    /// Final relative residual `‖b − A x‖ / ‖b‖`: CG's recursive residual when CG met its
    /// tolerance, the true one (one extra product) when it stopped early (`truncated`);
    /// exact for the direct paths; NaN for [`LinearSolver::Kfac`], which does not compute
    /// it.
    pub rel_residual: f64,
    /// The CG iteration's report when the method ran CG ([`SolveMethod::runs_cg`]); `None`
    /// for the direct methods, which run no CG iteration.
    pub cg: Option<CgReport>,
}

impl SolveInfo {
    /// A direct solve's info (no CG).
    pub(crate) fn direct(method: SolveMethod, rel_residual: f64) -> Self {
        Self {
            method,
            rel_residual,
            cg: None,
        }
    }

    /// The CG iterations, `None` when no CG ran.
    pub fn cg_iters(&self) -> Option<usize> {
        self.cg.map(|c| c.iters)
    }
}

/// Why a direction solve failed.
#[derive(Debug, Clone, PartialEq)]
pub enum SolveFailure {
    /// CG met a direction of non-positive curvature (while the true residual was still
    /// above the tolerance).
    OperatorNotPositiveDefinite {
        /// CG iteration at which it happened.
        iteration: usize,
        /// Damping in use.
        damping: f64,
        /// The operator's scale seen by CG: the largest `‖A v‖ / ‖v‖` over its products
        /// (a lower bound of `‖A‖₂`; 0 if none was taken).
        scale: f64,
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
        /// True relative residual `‖b − A x‖ / ‖b‖` of the last iterate.
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
    /// The direct solve failed (Cholesky pivot, sizes), or the metric or right-hand side
    /// cannot be used by the chosen solver.
    Direct(Error),
    /// The Nyström sketch could not be built.
    Nystrom {
        /// What failed.
        reason: String,
    },
    /// The K-FAC factors could not be formed or inverted.
    Kfac {
        /// What failed.
        reason: String,
    },
}

impl fmt::Display for SolveFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SolveFailure::OperatorNotPositiveDefinite {
                iteration,
                damping,
                scale,
            } => write!(
                f,
                "CG breakdown at iteration {iteration}: the Gram operator G + λI (λ = {damping:e}, \
                 scale ‖G + λI‖ ≥ {scale:e}) is not positive definite to working precision; the \
                 Gram matrix is singular at this θ and λ/‖G‖ is below rounding — increase the \
                 damping with `with_damping` (to ≳ 1e-12·‖G‖)"
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
            SolveFailure::Kfac { reason } => write!(
                f,
                "K-FAC: {reason} — add damping, or use `Preconditioner::None` / \
                 `LinearSolver::Cg`"
            ),
            SolveFailure::Nystrom { reason } => write!(
                f,
                "Nyström preconditioner: {reason} — lower the rank, add damping, or use \
                 `Preconditioner::Jacobi`"
            ),
        }
    }
}

impl std::error::Error for SolveFailure {}

fn first_non_finite(v: &[f64]) -> Option<usize> {
    v.iter().position(|x| !x.is_finite())
}
