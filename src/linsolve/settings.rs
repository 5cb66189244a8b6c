//! The settings of a direction solve: which path ([`LinearSolver`]), CG's tolerances and
//! caps ([`CgSettings`]), its preconditioner ([`Preconditioner`]), and the threads of the
//! dense parts ([`Parallelism`]).

use super::AutoSettings;
use crate::error::Error;
use faer::Par;

/// The linear solver for the direction.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum LinearSolver {
    /// Matrix-free preconditioned CG on `JᵀMJ + λI` (faer).
    Cg(CgSettings),
    /// Form `J` and `G` densely and factor `G + λI` by Cholesky (faer).
    /// Cost `O(n p² + p³)`, memory `O(p² + n p)`. On a sharded problem
    /// ([`Model::is_sharded`](crate::model::Model::is_sharded)) each rank forms `J_rᵀ M_r J_r` and the `p×p` matrices are
    /// summed over ranks (`p²` values) before the factorisation.
    Cholesky,
    /// Sample space, matrix-free: CG on `s ↦ (JJᵀ + λM⁻¹) s` (one vjp and one jvp per
    /// product, `M⁻¹` by [`Metric::solve`](crate::metric::Metric::solve)), then `d = Jᵀ s` (one vjp). Needs an
    /// output-space right-hand side ([`Rhs::Cotangent`](super::Rhs::Cotangent)) and a metric with an inverse.
    /// Jacobi is not available in sample space (CG falls back to no preconditioner).
    /// Refused on a sharded problem (its unknown lives on the samples).
    SampleCg(CgSettings),
    /// Sample space, direct: form `J`, the `n×n` kernel `JJᵀ + λM⁻¹` (dense `M⁻¹` from `n`
    /// metric solves unless `M` is diagonal) and factor it by Cholesky (faer).
    /// Cost `O(n² p + n³)`, memory `O(n² + n p)`. Refused on a sharded problem.
    SampleCholesky,
    /// Picks one of the four above by a flop model from `n`, `p`, the metric's kind and
    /// the last CG solve's iterations; see [`auto`](super::auto) (on a sharded problem: from the
    /// global `n`, in parameter space only).
    /// The choice is reported in [`SolveInfo::method`](super::SolveInfo::method) as [`SolveMethod::Auto`](super::SolveMethod::Auto)
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
    /// dense problems: it refuses a Jacobian of more than [`MAX_JACOBIAN_ENTRIES`](super::MAX_JACOBIAN_ENTRIES) entries
    /// and a sharded problem. Cost `O(n p min(n, p))`, memory `O(n p)`.
    LeastSquares {
        /// Relative singular-value cut-off in `[0, 1)` (e.g. `1e-12`).
        rcond: f64,
    },
    /// Parameter space, no CG: the K-FAC direction `d = P⁻¹ b` with
    /// `P⁻¹ = ⊕_l (A_l + π_l√λ I)⁻¹ ⊗ (B_l + √λ/π_l I)⁻¹` ([`kfac`](super::kfac), docs/math.md §5), the
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
/// says Jacobi is faster (see [`Preconditioner::Auto`] and [`precond_choice`](super::precond_choice)). Neither
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
    /// Randomized Nyström preconditioner of rank `rank` ([`nystrom`](super::nystrom)), sketched from
    /// `rank` Gram products with a Gaussian test matrix seeded by `seed` (plus the solve
    /// count, so each refresh draws a new one), kept in the [`SolveCache`](super::SolveCache) and rebuilt every
    /// `refresh_every` direction solves.
    Nystrom {
        /// Rank `r` of the sketch (clamped to the system size).
        rank: usize,
        /// Rebuild the sketch every this many solves (≥ 1).
        refresh_every: usize,
        /// Seed of the Gaussian test matrix.
        seed: u64,
    },
    /// K-FAC ([`kfac`](super::kfac), docs/math.md §5): `P⁻¹ = ⊕_l (A_l + π_l√λ I)⁻¹ ⊗ (B_l + √λ/π_l I)⁻¹`
    /// from the model's Kronecker factors, kept in the [`SolveCache`](super::SolveCache) and recomputed every
    /// `refresh_every` direction solves. Parameter space only (CG falls back to no
    /// preconditioner in sample space); needs a diagonal metric and a model with layers
    /// ([`Mlp`](crate::model::Mlp)), a typed error otherwise.
    Kfac {
        /// Recompute the factors every this many solves (≥ 1).
        refresh_every: usize,
        /// Exponential average of the factors at each refresh, `ρ ∈ [0, 1)` (0: none).
        decay: f64,
    },
    /// None or Jacobi, chosen by measurement ([`precond_choice`](super::precond_choice)): at the first solve and
    /// every `refresh_every` solves after, the current choice (none at first) runs capped
    /// at `trial_above` iterations; if it misses, the two race from the same initial
    /// guess with doubling caps (the other at `2·trial_above`, the current one at `4·`, …)
    /// and the first to reach the tolerance is returned and kept (in the [`SolveCache`](super::SolveCache))
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

/// Thread setting for the dense parts of the direction solve (Cholesky, Gram GEMM);
/// serialisable stand-in for faer's [`Par`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Parallelism {
    /// One thread.
    #[default]
    Sequential,
    /// faer's rayon parallelism with this many threads (0: all of rayon's).
    Rayon(usize),
}

impl From<Par> for Parallelism {
    /// `Par::Seq` is sequential, `Par::Rayon(n)` is `n` threads.
    fn from(par: Par) -> Self {
        match par {
            Par::Seq => Parallelism::Sequential,
            Par::Rayon(n) => Parallelism::Rayon(n.get()),
        }
    }
}

impl Parallelism {
    /// The faer [`Par`] value.
    pub fn par(self) -> Par {
        match self {
            Parallelism::Sequential => Par::Seq,
            Parallelism::Rayon(n) => Par::rayon(n),
        }
    }
}
