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
//! So Auto decides by a **cost model** (issue 14.2), in flops, from `n`, `p` and the
//! metric's kind ([`CostModel`]), and from the CG iterations of the last CG solve
//! ([`SolveCache`]; before any, an optimistic prior of [`AutoSettings::cg_iters_prior`]):
//!
//! * the direct paths are *possible* when `k ≤ max_direct_dim` (default 2048: a `k×k`
//!   factor of 32 MiB, a factorisation of ~3 Gflop) and `n·p ≤ max_dense_entries` (default
//!   `2²⁵` ≈ 33.5 M entries, a 256 MiB Jacobian); otherwise Auto runs CG with `cg`;
//! * it takes the cheapest of the possible paths by the model; a direct pick is solved
//!   directly, without a CG attempt;
//! * a CG pick, when a direct path is possible, gets the budget of iterations that costs
//!   as much as the cheapest direct path (the break-even point); if CG misses it, Auto
//!   solves directly, so a wrong guess costs at most twice the better path (the
//!   ski-rental rule), and the iterations spent make the next pick direct.
//!
//! The model uses counts, not wall times, so that the pick (and so the iterates) is
//! deterministic. Its constants: a Gram product (one jvp and one vjp) costs `4np` (a dense
//! Jacobian; an MLP's products cost about that), a non-diagonal metric is costed as dense
//! (`n²` per product, `2n²` per solve; an upper bound for a sparse one), the dense Gram
//! GEMMs `2np²` / `2n²p`, a Cholesky factorisation `k³/3`, forming `J` `2np·min(n, p)`.
//! `docs/performance-solvers.md` compares its picks with the best fixed path.
//!
//! **Sharded problems** (`natgrad::distributed`, feature `mpi`): Auto decides from the
//! global `n` ([`Model::n_outputs_global`]) and stays in parameter space, so every rank
//! takes the same path, the one the single-process run takes when `n ≥ p`.
//!
//! [`SolveCache`]: super::SolveCache

use super::{cg, cholesky, sample_space};
use super::{CgSettings, Direction, Rhs, SolveCtx, SolveFailure, SolveInfo, SolveMethod};
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::LinearizedProblem;

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
    /// CG iterations assumed before any CG solve was measured (default 10, the fewest seen
    /// on the crate's problems at λ = 1e-3; optimistic, so that the first pick is CG
    /// unless the direct path is cheaper even then).
    pub cg_iters_prior: usize,
}

impl Default for AutoSettings {
    fn default() -> Self {
        Self {
            cg: CgSettings::default(),
            max_direct_dim: 2048,
            max_dense_entries: 1 << 25,
            cg_iters_prior: 10,
        }
    }
}

/// The flop model of [`LinearSolver::Auto`](super::LinearSolver::Auto) for `n` outputs,
/// `p` parameters and a diagonal or general metric (see the module docs for the
/// constants).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostModel {
    /// Outputs `n`.
    pub n: usize,
    /// Parameters `p`.
    pub p: usize,
    /// The metric is diagonal (`M` and `M⁻¹` cost `n` per vector).
    pub metric_diagonal: bool,
}

impl CostModel {
    /// Flops of one CG iteration in parameter space (`sample = false`) or sample space:
    /// a Gram product `4np`, the metric (apply in parameter space, solve in sample
    /// space) and `10·dim` of vector work.
    pub fn cg_iteration(&self, sample: bool) -> f64 {
        let (n, p) = (self.n as f64, self.p as f64);
        let metric = match (self.metric_diagonal, sample) {
            (true, _) => n,
            (false, false) => n * n,
            (false, true) => 2.0 * n * n,
        };
        4.0 * n * p + metric + 10.0 * if sample { n } else { p }
    }

    /// Flops of the direct path in parameter space (`J`, `JᵀMJ`, Cholesky of `p×p`) or in
    /// sample space (`J`, `JJᵀ`, `M⁻¹`, Cholesky of `n×n`).
    pub fn direct(&self, sample: bool) -> f64 {
        let (n, p) = (self.n as f64, self.p as f64);
        let form_j = 2.0 * n * p * n.min(p);
        let dense_metric = !self.metric_diagonal;
        if sample {
            let inverse_metric = if dense_metric { 2.0 * n * n * n } else { n };
            form_j + 2.0 * n * n * p + inverse_metric + n * n * n / 3.0
        } else {
            let mj = if dense_metric { 2.0 * n * n * p } else { n * p };
            form_j + mj + 2.0 * n * p * p + p * p * p / 3.0
        }
    }
}

impl AutoSettings {
    /// Whether the direct path is possible for `n` outputs and `p` parameters in the
    /// given space (the size limits above).
    pub fn direct_possible(&self, n: usize, p: usize, sample: bool) -> bool {
        let k = if sample { n } else { p };
        k <= self.max_direct_dim && n.saturating_mul(p) <= self.max_dense_entries
    }

    /// The path with the lowest modelled cost for CG needing `cg_iters` iterations
    /// (`sample_ok`: sample space is possible — an output-space right-hand side and a
    /// metric with an inverse), with that cost in flops.
    pub fn plan(&self, model: &CostModel, sample_ok: bool, cg_iters: usize) -> (Path, f64) {
        let (n, p) = (model.n, model.p);
        let mut best = (Path::ParamCg, f64::INFINITY);
        for sample in [false, true] {
            if sample && !sample_ok {
                continue;
            }
            let (cg, direct) = match sample {
                false => (Path::ParamCg, Path::ParamCholesky),
                true => (Path::SampleCg, Path::SampleCholesky),
            };
            let cost = cg_iters as f64 * model.cg_iteration(sample);
            if cost < best.1 {
                best = (cg, cost);
            }
            if self.direct_possible(n, p, sample) && model.direct(sample) < best.1 {
                best = (direct, model.direct(sample));
            }
        }
        best
    }

    /// The CG iteration budget before Auto switches to the direct path: as many
    /// iterations as the cheapest possible direct path costs (at least 1, at most
    /// `cg.max_iters`); `None` when no direct path is possible.
    pub fn cg_budget(&self, model: &CostModel, sample_ok: bool, cg_path: Path) -> Option<usize> {
        let direct = [false, true]
            .into_iter()
            .filter(|&s| (!s || sample_ok) && self.direct_possible(model.n, model.p, s))
            .map(|s| model.direct(s))
            .fold(f64::INFINITY, f64::min);
        let per_iter = model.cg_iteration(cg_path == Path::SampleCg);
        direct
            .is_finite()
            .then(|| ((direct / per_iter) as usize).clamp(1, self.cg.max_iters))
    }
}

/// [`LinearSolver::Auto`](super::LinearSolver::Auto): the cheapest path by the cost model
/// (module docs), a CG pick within its break-even budget before the direct path.
pub(super) fn solve<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    a: &AutoSettings,
    mut dir: Direction<'_>,
    ctx: &mut SolveCtx<'_>,
) -> Result<SolveInfo, SolveFailure> {
    // On a sharded problem: the global n (so that every rank, and the single-process run,
    // choose alike), and never sample space (its unknown lives on the samples).
    let model = lin.problem().model();
    let (n, p) = (model.n_outputs_global(), dir.x.len());
    let sample_ok = !model.is_sharded()
        && match dir.rhs {
            Rhs::Cotangent { r, .. } => lin.solve_metric(r, &mut vec![0.0; r.len()]).is_ok(),
            Rhs::Params(_) => false,
        };
    let mut w = vec![0.0; lin.outputs().len()];
    let costs = CostModel {
        n,
        p,
        metric_diagonal: lin.problem().metric().diagonal(&lin.point(), &mut w),
    };
    let iters = ctx
        .cache
        .auto_cg_iters
        .map_or(a.cg_iters_prior, |i| i as usize);
    let (path, _) = a.plan(&costs, sample_ok, iters);
    let mut info = match (path.is_direct(), a.cg_budget(&costs, sample_ok, path)) {
        (true, _) | (false, None) => run_path(lin, path, dir.rb(), &a.cg, ctx)?,
        (false, Some(budget)) => {
            let budgeted = CgSettings {
                max_iters: budget,
                accept_truncated: false,
                ..a.cg.clone()
            };
            match run_path(lin, path, dir.rb(), &budgeted, ctx) {
                Ok(info) => info,
                Err(_) => {
                    // CG cost at least its budget: the next plan goes direct.
                    ctx.cache.auto_cg_iters = Some(budget as u64 + 1);
                    let direct = a.plan(&costs, sample_ok, usize::MAX).0;
                    let mut info = run_path(lin, direct, dir, &a.cg, ctx)?;
                    info.method = SolveMethod::Auto(direct);
                    return Ok(info);
                }
            }
        }
    };
    if !path.is_direct() {
        ctx.cache.auto_cg_iters = info.cg_iters().map(|i| i as u64);
    }
    info.method = SolveMethod::Auto(path);
    Ok(info)
}

/// Solves by one of the four paths ([`Path`], the choice of [`solve`]); `cg` is used by the CG
/// paths.
fn run_path<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    path: Path,
    dir: Direction<'_>,
    cg: &CgSettings,
    ctx: &mut SolveCtx<'_>,
) -> Result<SolveInfo, SolveFailure> {
    match path {
        Path::ParamCg => cg::solve_params(lin, dir, cg, ctx),
        Path::ParamCholesky => cholesky::solve_params(lin, dir, ctx),
        Path::SampleCg => sample_space::solve(lin, dir, Some(cg), ctx),
        Path::SampleCholesky => sample_space::solve(lin, dir, None, ctx),
    }
}
