//! [`LinearSolver::Auto`](super::LinearSolver::Auto): which space, direct or CG.
//!
//! **Space.** The parameter-space system is `p×p`, the sample-space one `n×n`; they give the
//! same direction (push-through, docs/math.md §2) and have the same non-zero spectrum
//! (`JᵀMJ` and `M^{½}JJᵀM^{½}`), so CG needs about as many products in either, and a
//! product costs one jvp and one vjp in both. The smaller system is cheaper for everything
//! else: a direct factorisation (`k³/3` flops, `k²` memory for `k = min(n, p)`), CG's vector
//! work and the Nyström sketch (`k×r` per block). So Auto works in sample space when
//! `n < p`, the right-hand side is an output-space cotangent and the metric can apply
//! `M⁻¹`; otherwise in parameter space.
//!
//! **Direct or CG.** With `k = min(n, p)`, the direct path forms `J` (up to `k` jvps or
//! vjps, `n·p` memory), the `k×k` matrix by one GEMM (`n·p·k` flops) and factors it
//! (`k³/3`). CG costs `iters × (jvp + vjp)`, about `iters × 4np` flops for a dense Jacobian,
//! and keeps only vectors. The GEMM alone is worth about `k/4` CG iterations, so CG wins
//! when it converges in fewer than ~`k/4` iterations and the direct path wins otherwise —
//! and the iteration count is not known in advance: it depends on the spectrum of `G` and
//! on `λ` (7 to 400 iterations on the benchmark problems of `docs/performance-solvers.md`).
//!
//! So Auto decides by size first and then by trying:
//!
//! * the direct path is *possible* when `k ≤ max_direct_dim` (default 2048: a `k×k` factor
//!   of 32 MiB, a factorisation of ~3 Gflop) and `n·p ≤ max_dense_entries` (default `2²⁵`
//!   ≈ 33.5 M entries, a 256 MiB Jacobian); otherwise Auto runs CG with `cg`;
//! * when it is possible, Auto first runs CG with a budget of `max(k/8, 8)` iterations
//!   (capped by `cg.max_iters`). If CG converges, that is the answer (`auto:*-cg`); if not,
//!   Auto solves directly (`auto:*-cholesky`) and remembers it in the [`SolveCache`]
//!   (`auto_direct`), going direct straight away in later solves. The products wasted on
//!   the failed CG attempt are at most `k/8`, half the GEMM's cost: like the ski-rental
//!   rule, Auto never costs much more than the better of the two paths, without knowing
//!   the spectrum.
//!
//! **Sharded problems** (`natgrad::distributed`, feature `mpi`): Auto decides from the
//! global `n` ([`Model::n_outputs_global`]) and stays in parameter space, so every rank
//! takes the same path, the one the single-process run takes when `n ≥ p`.
//!
//! [`SolveCache`]: super::SolveCache

use super::{run_path, CgSettings, Rhs, SolveCache, SolveFailure, SolveInfo};
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::Linearized;
use faer::Par;

/// The four ways to solve for the direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// CG on `JᵀMJ + λI` (parameter space).
    ParamCg,
    /// Cholesky of `JᵀMJ + λI` (parameter space).
    ParamCholesky,
    /// CG on `JJᵀ + λM⁻¹` (sample space).
    SampleCg,
    /// Cholesky of `JJᵀ + λM⁻¹` (sample space).
    SampleCholesky,
}

impl Path {
    /// The same space with CG.
    pub fn cg(self) -> Path {
        match self {
            Path::ParamCg | Path::ParamCholesky => Path::ParamCg,
            Path::SampleCg | Path::SampleCholesky => Path::SampleCg,
        }
    }

    /// `true` for the Cholesky paths.
    pub fn is_direct(self) -> bool {
        matches!(self, Path::ParamCholesky | Path::SampleCholesky)
    }

    /// The name reported by an automatic choice, `"auto:<space>-<method>"`.
    pub fn auto_name(self) -> &'static str {
        match self {
            Path::ParamCg => "auto:param-cg",
            Path::ParamCholesky => "auto:param-cholesky",
            Path::SampleCg => "auto:sample-cg",
            Path::SampleCholesky => "auto:sample-cholesky",
        }
    }
}

/// Settings of [`LinearSolver::Auto`](super::LinearSolver::Auto).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AutoSettings {
    /// CG settings when CG is chosen (in either space).
    pub cg: CgSettings,
    /// Largest system size `min(n, p)` solved directly (default 2048).
    pub max_direct_dim: usize,
    /// Largest dense Jacobian `n·p` the direct path may form (default `2²⁵`).
    pub max_dense_entries: usize,
}

impl Default for AutoSettings {
    fn default() -> Self {
        Self {
            cg: CgSettings::default(),
            max_direct_dim: 2048,
            max_dense_entries: 1 << 25,
        }
    }
}

impl AutoSettings {
    /// The CG iteration budget before Auto switches to the direct path: `max(k/8, 8)`.
    pub fn cg_budget(&self, n: usize, p: usize, sample: bool) -> usize {
        let k = if sample { n } else { p };
        (k / 8).max(8).min(self.cg.max_iters)
    }

    /// The size rule: the space for `n` outputs and `p` parameters (`sample_ok` says whether
    /// sample space is possible: an output-space right-hand side and a metric with an
    /// inverse), and whether the direct path is possible there (a `*Cholesky` path) or not
    /// (a `*Cg` path). When the direct path is possible, `LinearSolver::Auto` still tries CG first
    /// within [`Self::cg_budget`].
    pub fn choose(&self, n: usize, p: usize, sample_ok: bool) -> Path {
        let sample = sample_ok && n < p;
        let k = if sample { n } else { p };
        let direct = k <= self.max_direct_dim && n.saturating_mul(p) <= self.max_dense_entries;
        match (sample, direct) {
            (false, false) => Path::ParamCg,
            (false, true) => Path::ParamCholesky,
            (true, false) => Path::SampleCg,
            (true, true) => Path::SampleCholesky,
        }
    }
}

/// [`LinearSolver::Auto`](super::LinearSolver::Auto): the size rule of [`AutoSettings::choose`], then CG within its
/// budget before the direct path (see the module docs).
pub(super) fn solve<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut Linearized<'_, Mo, Lo, Me>,
    a: &AutoSettings,
    rhs: Rhs<'_>,
    x: &mut [f64],
    damping: f64,
    cache: &mut SolveCache,
    par: Par,
) -> Result<SolveInfo, SolveFailure> {
    // On a sharded problem: the global n (so that every rank, and the single-process run,
    // choose alike), and never sample space (its unknown lives on the samples).
    let model = lin.problem().model();
    let (n, p) = (model.n_outputs_global(), x.len());
    let sample_ok = !model.is_sharded()
        && match rhs {
            Rhs::Cotangent { r, .. } => lin.solve_metric(r, &mut vec![0.0; r.len()]).is_ok(),
            Rhs::Params(_) => false,
        };
    let path = a.choose(n, p, sample_ok);
    let mut info = if !path.is_direct() || cache.auto_direct {
        run_path(lin, path, rhs, x, damping, &a.cg, cache, par)?
    } else {
        let budget = CgSettings {
            max_iters: a.cg_budget(n, p, path == Path::SampleCholesky),
            accept_truncated: false,
            ..a.cg.clone()
        };
        match run_path(lin, path.cg(), rhs, x, damping, &budget, cache, par) {
            Ok(info) => {
                let mut info = info;
                info.method = path.cg().auto_name();
                return Ok(info);
            }
            Err(_) => {
                cache.auto_direct = true;
                run_path(lin, path, rhs, x, damping, &a.cg, cache, par)?
            }
        }
    };
    info.method = path.auto_name();
    Ok(info)
}
