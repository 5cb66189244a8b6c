//! Matrix-free preconditioned CG on the Gram operator (faer's `conjugate_gradient`).

use super::kfac::KfacPrecond;
use super::nystrom::{NystromPrecond, NystromSketch};
pub(super) use super::system::System;
use super::{
    CgReport, CgSettings, Direction, Path, Preconditioner, PreconditionerKind, SolveCtx,
    SolveFailure, SolveInfo, SolveMethod,
};
use crate::gram::Space;
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::LinearizedProblem;
use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::matrix_free::conjugate_gradient::{
    conjugate_gradient, conjugate_gradient_scratch, CgError, CgParams,
};
use faer::matrix_free::{IdentityPrecond, InitialGuessStatus, LinOp, Precond};
use faer::prelude::{Reborrow, ReborrowMut};
use faer::{ColMut, ColRef, MatMut, MatRef, Par};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The CG preconditioner actually used.
#[derive(Debug)]
pub(super) enum CgPrecond<'a> {
    Identity(IdentityPrecond),
    Jacobi(Diag<f64>),
    Nystrom(NystromPrecond<'a>),
    Kfac(KfacPrecond),
}

impl CgPrecond<'_> {
    /// The kind reported in [`CgReport::preconditioner`].
    pub(super) fn kind(&self) -> PreconditionerKind {
        match self {
            CgPrecond::Identity(_) => PreconditionerKind::None,
            CgPrecond::Jacobi(_) => PreconditionerKind::Jacobi,
            CgPrecond::Nystrom(_) => PreconditionerKind::Nystrom,
            CgPrecond::Kfac(_) => PreconditionerKind::Kfac,
        }
    }
}

impl LinOp<f64> for CgPrecond<'_> {
    fn apply_scratch(&self, k: usize, par: Par) -> faer::dyn_stack::StackReq {
        match self {
            CgPrecond::Identity(p) => LinOp::<f64>::apply_scratch(p, k, par),
            CgPrecond::Jacobi(d) => d.apply_scratch(k, par),
            CgPrecond::Nystrom(n) => n.apply_scratch(k, par),
            CgPrecond::Kfac(n) => n.apply_scratch(k, par),
        }
    }
    fn nrows(&self) -> usize {
        match self {
            CgPrecond::Identity(p) => p.dim,
            CgPrecond::Jacobi(d) => d.dim(),
            CgPrecond::Nystrom(n) => n.nrows(),
            CgPrecond::Kfac(n) => n.nrows(),
        }
    }
    fn ncols(&self) -> usize {
        self.nrows()
    }
    fn apply(&self, out: MatMut<'_, f64>, rhs: MatRef<'_, f64>, par: Par, st: &mut MemStack) {
        match self {
            CgPrecond::Identity(p) => p.apply(out, rhs, par, st),
            CgPrecond::Jacobi(d) => d.apply(out, rhs, par, st),
            CgPrecond::Nystrom(n) => n.apply(out, rhs, par, st),
            CgPrecond::Kfac(n) => n.apply(out, rhs, par, st),
        }
    }
    fn conj_apply(&self, out: MatMut<'_, f64>, rhs: MatRef<'_, f64>, par: Par, st: &mut MemStack) {
        self.apply(out, rhs, par, st)
    }
}

impl Precond<f64> for CgPrecond<'_> {}

/// The Nyström preconditioner's settings ([`Preconditioner::Nystrom`]).
#[derive(Clone, Copy)]
struct Sketch {
    rank: usize,
    refresh_every: usize,
    seed: u64,
}

/// How one CG run goes: its settings, the damping λ, and whether a truncated run's
/// residual is measured.
#[derive(Clone, Copy)]
pub(super) struct CgRun<'s> {
    pub(super) settings: &'s CgSettings,
    pub(super) damping: f64,
    pub(super) truncated: Truncated,
}

/// [`LinearSolver::Cg`](super::LinearSolver::Cg), the parameter-space CG path:
/// `(G + λI) x = b`, `b` given or `Jᵀ r` (one vjp).
pub(super) fn solve_params<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    dir: Direction<'_>,
    s: &CgSettings,
    ctx: &mut SolveCtx<'_>,
) -> Result<SolveInfo, SolveFailure> {
    let b = dir.rhs.param_rhs(lin);
    let sys = System {
        space: Space::Params,
        rhs: &b,
        x: dir.x,
    };
    solve_cg(lin, sys, s, ctx)
}

/// Preconditioned CG on the Gram operator of `sys.space` (`p×p` or `n×n`): `rhs` and `x`
/// have that operator's size. On entry `x` is the initial guess (when warm starting).
pub(super) fn solve_cg<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    mut sys: System<'_>,
    s: &CgSettings,
    ctx: &mut SolveCtx<'_>,
) -> Result<SolveInfo, SolveFailure> {
    let space = sys.space;
    if let Preconditioner::Auto {
        trial_above,
        refresh_every,
    } = s.preconditioner
        && space == Space::Params
    {
        let rule = (trial_above, refresh_every as u64);
        return super::precond_choice::solve(lin, sys, s, ctx, rule);
    }
    let (damping, par) = (ctx.damping, ctx.par);
    let dim = sys.rhs.len();
    let mut sketch_products = 0;
    if let Preconditioner::Nystrom {
        rank,
        refresh_every,
        seed,
    } = s.preconditioner
    {
        let sketch = Sketch {
            rank,
            refresh_every,
            seed,
        };
        sketch_products = refresh_sketch(lin, space, sketch, ctx)?;
    }
    if let Preconditioner::Kfac {
        refresh_every,
        decay,
    } = s.preconditioner
        && space == Space::Params
    {
        super::kfac::refresh(lin, refresh_every, decay, ctx.cache)?;
    }
    let cache = &*ctx.cache;
    let precond = match s.preconditioner {
        Preconditioner::Jacobi if space == Space::Params => {
            jacobi(lin, damping).unwrap_or_else(|| identity(dim))
        }
        Preconditioner::Nystrom { .. } => match &cache.nystrom {
            Some(sk) => CgPrecond::Nystrom(sk.preconditioner(damping)),
            None => identity(dim),
        },
        Preconditioner::Kfac { .. } => match (&cache.kfac, space) {
            (Some(st), Space::Params) => CgPrecond::Kfac(st.preconditioner(damping, par)?),
            _ => identity(dim),
        },
        Preconditioner::Jacobi | Preconditioner::None | Preconditioner::Auto { .. } => {
            identity(dim)
        }
    };
    let how = CgRun {
        settings: s,
        damping,
        truncated: Truncated::Measure,
    };
    let (iters, rel_residual, truncated) = run_cg(lin, sys.rb(), how, &precond)?;
    Ok(cg_info(
        space,
        rel_residual,
        CgReport {
            iters,
            preconditioner: precond.kind(),
            sketch_products,
            truncated,
        },
    ))
}

/// The info of a CG solve in `space`.
pub(super) fn cg_info(space: Space, rel_residual: f64, report: CgReport) -> SolveInfo {
    let path = match space {
        Space::Params => Path::ParamCg,
        Space::Samples => Path::SampleCg,
    };
    SolveInfo {
        method: SolveMethod::Path(path),
        rel_residual,
        cg: Some(report),
    }
}

/// No preconditioner on a system of size `dim`.
pub(super) fn identity(dim: usize) -> CgPrecond<'static> {
    CgPrecond::Identity(IdentityPrecond { dim })
}

/// Jacobi, `(diag(G) + λ)⁻¹`, in parameter space; `None` when the model or the metric has
/// no diagonal ([`LinearizedProblem::gram_diagonal`]) or an entry is not positive and finite.
pub(super) fn jacobi<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    damping: f64,
) -> Option<CgPrecond<'static>> {
    let d = lin.gram_diagonal(damping)?;
    d.iter()
        .all(|&v| v > 0.0 && v.is_finite())
        .then(|| CgPrecond::Jacobi(faer::Col::from_fn(d.len(), |i| 1.0 / d[i]).into_diagonal()))
}

/// What a CG solve that stops at `max_iters` reports as its relative residual.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Truncated {
    /// The true `‖b − A x‖/‖b‖` of the returned `x` (one more product).
    Measure,
    /// `NaN`, without the product: for a capped run whose result is discarded when it
    /// stops at the cap (the race of [`super::precond_choice`]).
    Skip,
}

/// One CG run on `sys` with `precond` as `run` says; returns the iterations, the
/// relative residual and whether it is truncated.
pub(super) fn run_cg<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    sys: System<'_>,
    run: CgRun<'_>,
    precond: &CgPrecond<'_>,
) -> Result<(usize, f64, bool), SolveFailure> {
    let lin_metric_name = lin.problem().metric().name();
    let op = lin.gram_in(sys.space, run.damping);
    let result = run_faer_cg(&op, precond, sys.rhs, sys.x, run);
    if op.metric_failed() {
        return Err(SolveFailure::Direct(crate::Error::Unsupported(format!(
            "the {} metric cannot apply M⁻¹, which the sample-space operator needs",
            lin_metric_name
        ))));
    }
    result
}

/// Runs faer's CG on `op x = rhs` (`x` holds the initial guess) and returns the
/// iterations, the relative residual and whether the result is a truncated one.
///
/// **Scale** (issue 14.6). faer's CG works with `rᵀz` and `pᵀAp`, which underflow when
/// `‖b‖` is tiny (`‖b‖ = 1e-160` gives `rᵀz ≈ 1e-320`, a subnormal, then a false
/// breakdown) and overflow when it is huge. So it solves `A y = b/‖b‖` from `y₀ = x₀/‖b‖`
/// and returns `x = ‖b‖ y`: the same Krylov iterates up to the factor, with the relative
/// tolerance unchanged and the absolute one divided by `‖b‖`. A zero right-hand side is
/// converged at `x = 0`. A breakdown after the true residual already meets the tolerance is
/// convergence; a real one is reported with the operator's scale seen so far.
///
/// **Residual** (issue 14.5). faer 0.24's `NoConvergence` carries the *initial* residual;
/// when CG stops early the residual reported here is the true `‖b − A x‖/‖b‖` of the
/// returned `x`, from one more product. On convergence it is faer's recursive residual.
fn run_faer_cg<O: LinOp<f64>>(
    op: &O,
    precond: &CgPrecond<'_>,
    rhs: &[f64],
    x: &mut [f64],
    run: CgRun<'_>,
) -> Result<(usize, f64, bool), SolveFailure> {
    let CgRun {
        settings: s,
        damping,
        truncated,
    } = run;
    // Always `MaybeNonZero`: faer 0.24.4's CG leaves its residual uninitialised when told
    // the guess is `Zero` (it never copies `b` into `r`). A cold start is a zero guess,
    // whose product `G·0` the Gram operator short-circuits, so this costs nothing.
    if !s.warm_start {
        x.fill(0.0);
    }
    let b_norm = ColRef::from_slice(rhs).norm_l2();
    if b_norm == 0.0 {
        x.fill(0.0);
        return Ok((0, 0.0, false));
    }
    let b_hat: Vec<f64> = rhs.iter().map(|v| v / b_norm).collect();
    x.iter_mut().for_each(|v| *v /= b_norm);
    if x.iter().any(|v| !v.is_finite()) {
        x.fill(0.0);
    }
    let op = Tracked::new(op);
    let params = CgParams::<f64> {
        rel_tolerance: s.rel_tol,
        abs_tolerance: (s.abs_tol / b_norm).min(f64::MAX),
        max_iters: s.max_iters,
        initial_guess: InitialGuessStatus::MaybeNonZero,
        ..CgParams::default()
    };
    // faer's own vector work (dots, updates, the k×k algebra of its block CG) runs
    // sequentially: with one right-hand side each is a single memory-bound pass, and
    // `Par::rayon` made it 3× slower (110 against 34 ms per iteration at p = 2.1 M, the XL
    // size of `ng_step_bench`). The operator parallelises its own products.
    let cg_par = Par::Seq;
    let mut mem = MemBuffer::new(conjugate_gradient_scratch(precond, &op, 1, cg_par));
    let mut iters = 0usize;
    let result = conjugate_gradient(
        ColMut::from_slice_mut(x).as_mat_mut(),
        precond,
        &op,
        ColRef::from_slice(&b_hat).as_mat(),
        params,
        |_| iters += 1,
        cg_par,
        MemStack::new(&mut mem),
    );
    let tol = s.rel_tol.max(params.abs_tolerance);
    let outcome = match result {
        Ok(info) => Ok((info.iter_count, info.rel_residual, false)),
        Err(CgError::NoConvergence { .. }) => {
            let rel_residual = match truncated {
                Truncated::Measure => true_residual(&op, &b_hat, x),
                Truncated::Skip => f64::NAN,
            };
            if s.accept_truncated {
                Ok((iters, rel_residual, true))
            } else {
                Err(SolveFailure::NoConvergence {
                    iters,
                    rel_residual,
                    rel_tol: s.rel_tol,
                })
            }
        }
        Err(CgError::NonPositiveDefiniteOperator) => match true_residual(&op, &b_hat, x) {
            res if res <= tol => Ok((iters, res, false)),
            _ => Err(SolveFailure::OperatorNotPositiveDefinite {
                iteration: iters,
                damping,
                scale: op.scale(),
            }),
        },
        Err(CgError::NonPositiveDefinitePreconditioner) => {
            Err(SolveFailure::PreconditionerNotPositiveDefinite { iteration: iters })
        }
    };
    x.iter_mut().for_each(|v| *v *= b_norm);
    outcome
}

/// `‖b − A x‖ / ‖b‖` (one product with `A`).
fn true_residual<O: LinOp<f64>>(op: &O, b: &[f64], x: &[f64]) -> f64 {
    let mut ax = faer::Col::<f64>::zeros(b.len());
    let mut mem = MemBuffer::new(op.apply_scratch(1, Par::Seq));
    op.apply(
        ax.as_mat_mut(),
        ColRef::from_slice(x).as_mat(),
        Par::Seq,
        MemStack::new(&mut mem),
    );
    let res = faer::Col::<f64>::from_fn(b.len(), |i| b[i] - ax[i]);
    res.norm_l2() / ColRef::from_slice(b).norm_l2()
}

/// An operator that records the largest `‖A v‖ / ‖v‖` over the vectors it was applied to:
/// a lower bound of `‖A‖₂` for two norms per product, the scale against which a
/// breakdown is judged and reported.
#[derive(Debug)]
struct Tracked<'o, O> {
    op: &'o O,
    /// Bits of a non-negative `f64` (whose bit order is its numeric order).
    scale: AtomicU64,
}

impl<'o, O: LinOp<f64>> Tracked<'o, O> {
    fn new(op: &'o O) -> Self {
        Self {
            op,
            scale: AtomicU64::new(0),
        }
    }

    fn scale(&self) -> f64 {
        f64::from_bits(self.scale.load(Relaxed))
    }
}

impl<O: LinOp<f64>> LinOp<f64> for Tracked<'_, O> {
    fn apply_scratch(&self, k: usize, par: Par) -> faer::dyn_stack::StackReq {
        self.op.apply_scratch(k, par)
    }
    fn nrows(&self) -> usize {
        self.op.nrows()
    }
    fn ncols(&self) -> usize {
        self.op.ncols()
    }
    fn apply(&self, mut out: MatMut<'_, f64>, rhs: MatRef<'_, f64>, par: Par, st: &mut MemStack) {
        self.op.apply(out.rb_mut(), rhs, par, st);
        for j in 0..rhs.ncols() {
            let v = rhs.col(j).norm_l2();
            let ratio = out.rb().col(j).norm_l2() / v;
            if v > 0.0 && ratio.is_finite() {
                self.scale.fetch_max(ratio.to_bits(), Relaxed);
            }
        }
    }
    fn conj_apply(&self, out: MatMut<'_, f64>, rhs: MatRef<'_, f64>, par: Par, st: &mut MemStack) {
        self.apply(out, rhs, par, st)
    }
}

/// Makes sure `cache.nystrom` holds a sketch of this space's operator that is at most
/// `refresh_every − 1` solves old (rebuilding it if not); returns the Gram products spent.
///
/// Parameter space: `A₀ = G`, `μ = λ`. Sample space with `M = wI`: `A₀ = JJᵀ`, `μ = λ/w`;
/// with any other metric `A₀ = JJᵀ + λM⁻¹`, `μ = 0` (see [`super::nystrom`]).
fn refresh_sketch<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    space: Space,
    sketch: Sketch,
    ctx: &mut SolveCtx<'_>,
) -> Result<u64, SolveFailure> {
    let (damping, par, cache) = (ctx.damping, ctx.par, &mut *ctx.cache);
    let Sketch {
        rank,
        refresh_every,
        seed,
    } = sketch;
    let (sketch_damping, shift_per_damping) = match space {
        Space::Params => (0.0, 1.0),
        Space::Samples => match scalar_metric(lin) {
            Some(w) => (0.0, 1.0 / w),
            None => (damping, 0.0),
        },
    };
    let dim = match space {
        Space::Params => lin.problem().n_params(),
        Space::Samples => lin.outputs().len(),
    };
    let fresh = cache.nystrom.as_ref().is_some_and(|sk| {
        sk.space() == space
            && sk.dim() == dim
            && sk.rank() == rank.min(dim)
            && sk.shift(1.0) == shift_per_damping
            && cache.solves - sk.built_at() < refresh_every as u64
    });
    if fresh {
        return Ok(0);
    }
    let op = lin.gram_in(space, sketch_damping);
    let seed = seed.wrapping_add(cache.solves);
    let sketch =
        NystromSketch::build(&op, rank, seed, shift_per_damping, par)?.with_built_at(cache.solves);
    let products = sketch.products();
    cache.nystrom = Some(sketch);
    Ok(products)
}

/// `Some(w)` when the metric at this point is `w I` (Euclidean, uniform weights).
fn scalar_metric<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &LinearizedProblem<'_, Mo, Lo, Me>,
) -> Option<f64> {
    let mut diag = vec![0.0; lin.outputs().len()];
    if !lin.problem().metric().diagonal(&lin.point(), &mut diag) {
        return None;
    }
    let w = *diag.first()?;
    (w > 0.0 && diag.iter().all(|&v| v == w)).then_some(w)
}
