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
//! Failures carry the reason the iteration stopped, PETSc-KSP style (operator or
//! preconditioner not positive definite, no convergence, non-finite data), with the
//! iteration and a hint, so that the solver can end an argmin run with a message that
//! says what to try.

pub mod auto;
mod cg;
mod cholesky;
pub mod kfac;
mod least_squares;
pub mod nystrom;
pub mod precond_choice;
mod sample_space;

pub use auto::{AutoSettings, CostModel, Path};
pub use kfac::{KfacPrecond, KfacState};
pub use least_squares::MAX_JACOBIAN_ENTRIES;
pub use nystrom::{NystromPrecond, NystromSketch};
pub use precond_choice::PrecondChoice;

use crate::error::Error;
use crate::gram::Space;
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::LinearizedProblem;
use faer::Par;
use std::fmt;

/// The linear solver for the direction.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum LinearSolver {
    /// Matrix-free preconditioned CG on `JᵀMJ + λI` (faer).
    Cg(CgSettings),
    /// Form `J` and `G` densely and factor `G + λI` by Cholesky (faer).
    /// Cost `O(n p² + p³)`, memory `O(p² + n p)`. On a sharded problem
    /// ([`Model::is_sharded`]) each rank forms `J_rᵀ M_r J_r` and the `p×p` matrices are
    /// summed over ranks (`p²` values) before the factorisation.
    Cholesky,
    /// Sample space, matrix-free: CG on `s ↦ (JJᵀ + λM⁻¹) s` (one vjp and one jvp per
    /// product, `M⁻¹` by [`Metric::solve`]), then `d = Jᵀ s` (one vjp). Needs an
    /// output-space right-hand side ([`Rhs::Cotangent`]) and a metric with an inverse.
    /// Jacobi is not available in sample space (CG falls back to no preconditioner).
    /// Refused on a sharded problem (its unknown lives on the samples).
    SampleCg(CgSettings),
    /// Sample space, direct: form `J`, the `n×n` kernel `JJᵀ + λM⁻¹` (dense `M⁻¹` from `n`
    /// metric solves unless `M` is diagonal) and factor it by Cholesky (faer).
    /// Cost `O(n² p + n³)`, memory `O(n² + n p)`. Refused on a sharded problem.
    SampleCholesky,
    /// Picks one of the four above by a flop model from `n`, `p`, the metric's kind and
    /// the last CG solve's iterations; see [`auto`] (on a sharded problem: from the
    /// global `n`, in parameter space only).
    /// The choice is reported in [`SolveInfo::method`] as [`SolveMethod::Auto`]
    /// (displayed `auto:<space>-<method>`).
    Auto(AutoSettings),
    /// Parameter space, dense: a truncated (optionally damped) pseudo-inverse, the
    /// minimum-norm least-squares direction `d = argmin ‖W^{1/2}(J d) − W^{-1/2} r‖` for a
    /// diagonal metric `W` and `λ = 0`, from a thin SVD of `W^{1/2}J` (faer) with singular
    /// values `σ ≤ max(rcond, max(n, p)·ε)·σ_max` dropped (ε the machine epsilon: below
    /// that a singular value is rounding noise, so `rcond = 0` still drops it); with
    /// `λ > 0` the kept ones are filtered by `σ/(σ² + λ)`, so that `rcond = 0` gives the
    /// Cholesky direction. With a parameter-space right-hand side or a non-diagonal metric
    /// the Gram matrix is diagonalised instead (eigenvalues `μ ≤ max(rcond², p·ε)·μ_max`
    /// dropped: it resolves `σ` only down to `√(p ε)·σ_max`). This is the
    /// "least-squares solve of the Gram system" of energy natural gradient, for small
    /// dense problems: it refuses a Jacobian of more than [`MAX_JACOBIAN_ENTRIES`] entries
    /// and a sharded problem. Cost `O(n p min(n, p))`, memory `O(n p)`.
    LeastSquares {
        /// Relative singular-value cut-off in `[0, 1)` (e.g. `1e-12`).
        rcond: f64,
    },
    /// Parameter space, no CG: the K-FAC direction `d = P⁻¹ b` with
    /// `P⁻¹ = ⊕_l (A_l + π_l√λ I)⁻¹ ⊗ (B_l + √λ/π_l I)⁻¹` ([`kfac`], docs/math.md §5), the
    /// update of K-FAC optimisers. Needs a diagonal metric and a model with layers
    /// ([`Mlp`](crate::model::Mlp)). Cost per solve: two small GEMMs per layer, plus at
    /// each refresh `q` backward passes, the factor GEMMs and their eigendecompositions.
    Kfac {
        /// Recompute the factors every this many solves (≥ 1).
        refresh_every: usize,
        /// Exponential average `A ← ρ A_old + (1 − ρ) A_new` at each refresh, `ρ ∈ [0, 1)`
        /// (0: no averaging).
        decay: f64,
    },
}

impl LinearSolver {
    /// Checks the CG settings this solver may use ([`CgSettings::validate`]).
    pub fn validate(&self) -> crate::Result<()> {
        match self {
            LinearSolver::Cg(s) | LinearSolver::SampleCg(s) => s.validate(),
            LinearSolver::Auto(a) => a.cg.validate(),
            LinearSolver::Cholesky | LinearSolver::SampleCholesky => Ok(()),
            LinearSolver::Kfac {
                refresh_every,
                decay,
            } => validate_kfac(*refresh_every, *decay),
            LinearSolver::LeastSquares { rcond } => {
                if (0.0..1.0).contains(rcond) {
                    Ok(())
                } else {
                    Err(Error::InvalidSetting(format!(
                        "least-squares cut-off rcond must be in [0, 1), got {rcond}"
                    )))
                }
            }
        }
    }
}

/// K-FAC settings: `refresh_every ≥ 1`, `decay ∈ [0, 1)`.
fn validate_kfac(refresh_every: usize, decay: f64) -> crate::Result<()> {
    if refresh_every >= 1 && (0.0..1.0).contains(&decay) {
        Ok(())
    } else {
        Err(Error::InvalidSetting(format!(
            "K-FAC needs refresh_every ≥ 1 and decay in [0, 1), got {refresh_every} and {decay}"
        )))
    }
}

impl Default for LinearSolver {
    fn default() -> Self {
        LinearSolver::Cg(CgSettings::default())
    }
}

/// Preconditioner for CG.
///
/// The default is [`Preconditioner::auto()`]: no preconditioner unless a measurement
/// says Jacobi is faster (see [`Preconditioner::Auto`] and [`precond_choice`]). Neither
/// fixed choice is safe (table in `docs/performance-solvers.md`, "Default
/// preconditioner"): on networks, whose Gram matrix has a few large eigenvalues and a
/// fast-decaying tail, Jacobi (`diag(G) + λ`) spreads the spectrum and multiplies CG's
/// iterations by 6–80 (a 2-20-20-1 MLP with an L² metric at λ = 1e-8: 4 914 against 63);
/// on a linear model whose columns have very different norms it divides them by 70–90
/// (1 393 against 19), and the spread of `diag(G)` does not tell the two apart. On the
/// crate's problems Auto stayed within 1.34× of the better fixed choice over 10-step runs
/// (3.6× on a single direction that raced) and took Jacobi where it pays.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Preconditioner {
    /// No preconditioner.
    None,
    /// Jacobi: `diag(G) + λ`, used when the metric is diagonal and the model provides
    /// [`gram_diagonal`](crate::model::Linearization::gram_diagonal); CG falls back to no
    /// preconditioner otherwise (and says so in the solve info).
    Jacobi,
    /// Randomized Nyström preconditioner of rank `rank` ([`nystrom`]), sketched from
    /// `rank` Gram products with a Gaussian test matrix seeded by `seed` (plus the solve
    /// count, so each refresh draws a new one), kept in the [`SolveCache`] and rebuilt every
    /// `refresh_every` direction solves.
    Nystrom {
        /// Rank `r` of the sketch (clamped to the system size).
        rank: usize,
        /// Rebuild the sketch every this many solves (≥ 1).
        refresh_every: usize,
        /// Seed of the Gaussian test matrix.
        seed: u64,
    },
    /// K-FAC ([`kfac`], docs/math.md §5): `P⁻¹ = ⊕_l (A_l + π_l√λ I)⁻¹ ⊗ (B_l + √λ/π_l I)⁻¹`
    /// from the model's Kronecker factors, kept in the [`SolveCache`] and recomputed every
    /// `refresh_every` direction solves. Parameter space only (CG falls back to no
    /// preconditioner in sample space); needs a diagonal metric and a model with layers
    /// ([`Mlp`](crate::model::Mlp)), a typed error otherwise.
    Kfac {
        /// Recompute the factors every this many solves (≥ 1).
        refresh_every: usize,
        /// Exponential average of the factors at each refresh, `ρ ∈ [0, 1)` (0: none).
        decay: f64,
    },
    /// None or Jacobi, chosen by measurement ([`precond_choice`]): at the first solve and
    /// every `refresh_every` solves after, the current choice (none at first) runs capped
    /// at `trial_above` iterations; if it misses, the two race from the same initial
    /// guess with doubling caps (the other at `2·trial_above`, the current one at `4·`, …)
    /// and the first to reach the tolerance is returned and kept (in the [`SolveCache`])
    /// until the next trial. A solve that converges within `trial_above` is exactly the
    /// current choice's (bitwise plain CG at first); a race costs at most
    /// `trial_above + m` or `5m` products for the better choice's count `m`, plus the Gram
    /// diagonal. Parameter space with a diagonal metric and a model with
    /// [`gram_diagonal`](crate::model::Linearization::gram_diagonal) only; otherwise it is
    /// no preconditioner, without a trial.
    Auto {
        /// Try the other preconditioner only when the solve took more than this many CG
        /// iterations (default 50).
        trial_above: usize,
        /// Measure again every this many solves (≥ 1, default 10).
        refresh_every: usize,
    },
}

impl Default for Preconditioner {
    /// [`Preconditioner::auto()`].
    fn default() -> Self {
        Preconditioner::auto()
    }
}

impl Preconditioner {
    /// K-FAC with the factors recomputed at every solve and no averaging: a refresh costs
    /// `q` backward passes plus small GEMMs and eigendecompositions, and on the M network
    /// of `kfac_bench` (λ = 1e-6, 10-step runs) refreshing every 10 solves instead took
    /// 1683 against 694 Gram products per solve from the trained θ (328 against 603 from
    /// Glorot): stale factors are no cheaper overall (docs/performance-solvers.md, K-FAC).
    pub fn kfac() -> Self {
        Preconditioner::Kfac {
            refresh_every: 1,
            decay: 0.0,
        }
    }

    /// [`Preconditioner::Auto`] with a trial above 50 iterations, measured again every 10
    /// solves.
    pub fn auto() -> Self {
        Preconditioner::Auto {
            trial_above: 50,
            refresh_every: 10,
        }
    }

    /// Nyström of rank `rank`, refreshed every 10 solves, seed 0.
    pub fn nystrom(rank: usize) -> Self {
        Preconditioner::Nystrom {
            rank,
            refresh_every: 10,
            seed: 0,
        }
    }
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
    /// Preconditioner (default [`Preconditioner::auto()`], see [`Preconditioner`] why).
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
            preconditioner: Preconditioner::auto(),
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

    /// Fails with [`Error::InvalidSetting`] on negative or non-finite tolerances, a zero
    /// iteration cap, or a Nyström rank or refresh period of 0.
    pub fn validate(&self) -> crate::Result<()> {
        let ok = self.rel_tol >= 0.0
            && self.abs_tol >= 0.0
            && self.rel_tol.is_finite()
            && self.abs_tol.is_finite()
            && self.max_iters > 0
            && match self.preconditioner {
                Preconditioner::Nystrom {
                    rank,
                    refresh_every,
                    ..
                } => rank > 0 && refresh_every > 0,
                Preconditioner::Kfac {
                    refresh_every,
                    decay,
                } => validate_kfac(refresh_every, decay).is_ok(),
                Preconditioner::Auto { refresh_every, .. } => refresh_every > 0,
                _ => true,
            };
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidSetting(format!(
                "CG settings need finite tolerances ≥ 0, max_iters > 0 a Nyström rank and \
                 refresh period ≥ 1, a K-FAC refresh period ≥ 1 and decay in [0, 1), and an Auto \
                 refresh period ≥ 1, got {self:?}"
            )))
        }
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

/// State a linear solver keeps from one natural-gradient step to the next (e.g. a
/// preconditioner that is rebuilt only every few steps). Owned by the optimiser, so that
/// it is checkpointed with it; empty for the solvers that need nothing.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SolveCache {
    /// Number of direction solves made with this cache.
    pub(crate) solves: u64,
    /// The Nyström sketch of [`Preconditioner::Nystrom`], if one was taken.
    pub(crate) nystrom: Option<NystromSketch>,
    /// The last sample-space solution `s` (the warm start of [`LinearSolver::SampleCg`]).
    pub(crate) sample_guess: Option<Vec<f64>>,
    /// The K-FAC factors of [`Preconditioner::Kfac`] / [`LinearSolver::Kfac`], if taken.
    pub(crate) kfac: Option<KfacState>,
    /// CG iterations of [`LinearSolver::Auto`]'s last CG solve (or its budget + 1 when CG
    /// missed it): the measurement its cost model uses for the next pick ([`auto`]).
    pub(crate) auto_cg_iters: Option<u64>,
    /// The choice of [`Preconditioner::Auto`] and the solve at which it was measured.
    pub precond_choice: Option<PrecondChoice>,
}

impl SolveCache {
    /// Number of direction solves made with this cache.
    pub fn solves(&self) -> u64 {
        self.solves
    }

    /// The Nyström sketch of [`Preconditioner::Nystrom`], if one was taken.
    pub fn nystrom(&self) -> Option<&NystromSketch> {
        self.nystrom.as_ref()
    }

    /// The K-FAC factors of [`Preconditioner::Kfac`] / [`LinearSolver::Kfac`], if taken.
    pub fn kfac(&self) -> Option<&KfacState> {
        self.kfac.as_ref()
    }

    /// CG iterations of [`LinearSolver::Auto`]'s last CG solve (or its budget + 1 when CG
    /// missed it), the measurement its cost model uses for the next pick.
    pub fn auto_cg_iters(&self) -> Option<u64> {
        self.auto_cg_iters
    }
}

/// The right-hand side `b` of `(G + λI) d = b`.
///
/// Every step rule of docs/math.md §3 has a right-hand side of the form `b = Jᵀ r` for an
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

/// What every path of one solve shares: the damping λ, the cache kept between solves and
/// the thread setting of the dense parts.
pub(crate) struct SolveCtx<'c> {
    pub(crate) damping: f64,
    pub(crate) cache: &'c mut SolveCache,
    pub(crate) par: Par,
}

/// Solves `(G + λI) x = b` at a linearisation. On entry `x` holds the initial guess
/// (used when warm starting), on exit the solution.
pub fn solve_direction<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    rhs: Rhs<'_>,
    x: &mut [f64],
    damping: f64,
    solver: &LinearSolver,
    cache: &mut SolveCache,
    par: Par,
) -> Result<SolveInfo, SolveFailure> {
    cache.solves += 1;
    solver.validate().map_err(SolveFailure::Direct)?;
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
    let ctx = &mut SolveCtx {
        damping,
        cache,
        par,
    };
    let info = match solver {
        LinearSolver::Cg(s) => run_path(lin, Path::ParamCg, rhs, x, s, ctx)?,
        LinearSolver::Cholesky => run_path(
            lin,
            Path::ParamCholesky,
            rhs,
            x,
            &CgSettings::default(),
            ctx,
        )?,
        LinearSolver::SampleCg(s) => run_path(lin, Path::SampleCg, rhs, x, s, ctx)?,
        LinearSolver::SampleCholesky => run_path(
            lin,
            Path::SampleCholesky,
            rhs,
            x,
            &CgSettings::default(),
            ctx,
        )?,
        LinearSolver::Auto(a) => auto::solve(lin, a, rhs, x, ctx)?,
        LinearSolver::LeastSquares { rcond } => {
            let r = match rhs {
                Rhs::Cotangent { r, .. } => Some(r),
                Rhs::Params(_) => None,
            };
            let b = param_rhs(lin, rhs);
            least_squares::solve(lin, r, &b, x, (damping, *rcond, par))?
        }
        LinearSolver::Kfac {
            refresh_every,
            decay,
        } => {
            let b = param_rhs(lin, rhs);
            let settings = (*refresh_every, *decay);
            kfac::solve_direction(lin, &b, x, damping, settings, ctx.cache, par)?
        }
    };
    if let Some(index) = first_non_finite(x) {
        return Err(SolveFailure::NonFinite {
            what: "direction",
            index,
        });
    }
    Ok(info)
}

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

/// The parameter-space right-hand side `b`: given, or `Jᵀ r` (one vjp) when only the
/// cotangent `r` is.
fn param_rhs<'a, Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    rhs: Rhs<'a>,
) -> std::borrow::Cow<'a, [f64]> {
    match rhs {
        Rhs::Params(b) | Rhs::Cotangent { jt_r: Some(b), .. } => b.into(),
        Rhs::Cotangent { r, jt_r: None } => {
            let mut jtr = vec![0.0; lin.problem().n_params()];
            lin.vjp(r, &mut jtr);
            jtr.into()
        }
    }
}

/// Solves by one of the four paths; `cg` is used by the CG paths.
fn run_path<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    path: Path,
    rhs: Rhs<'_>,
    x: &mut [f64],
    cg: &CgSettings,
    ctx: &mut SolveCtx<'_>,
) -> Result<SolveInfo, SolveFailure> {
    match path {
        Path::ParamCg | Path::ParamCholesky => {
            let b = param_rhs(lin, rhs);
            if path == Path::ParamCg {
                cg::solve_cg(lin, Space::Params, &b, x, cg, ctx)
            } else {
                cholesky::solve_cholesky(lin, &b, x, ctx.damping, ctx.par)
            }
        }
        Path::SampleCg | Path::SampleCholesky => {
            if lin.problem().model().is_sharded() {
                return Err(SolveFailure::Direct(sharded_sample_space()));
            }
            let Rhs::Cotangent { r, .. } = rhs else {
                return Err(SolveFailure::Direct(Error::Unsupported(
                    "sample-space solvers need the right-hand side as an output-space \
                     cotangent (`Rhs::Cotangent`); use a parameter-space solver for \
                     `Rhs::Params`"
                        .into(),
                )));
            };
            let direct = path == Path::SampleCholesky;
            sample_space::solve(lin, r, x, direct, cg, ctx)
        }
    }
}
