//! The settings of [`NaturalGradient`]: argmin-style builders (checked ones return
//! `InvalidParameter` naming the solver, unchecked ones are `#[must_use]`), their getters,
//! and the check of the settings against the problem at `init`.

use super::{invalid, ArgminResult, NaturalGradient, NAME};
use crate::batch::MiniBatch;
use crate::error::Error;
use crate::line_search::{ArgminLineSearch, StepSearch};
use crate::linsolve::{LinearSolver, Parallelism};
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::FitProblem;
use crate::step_control::{DampingScale, LevenbergMarquardt, StepControl, WarmUp};
use crate::step_rule::StepRule;
use crate::stopping::{check_tolerance, Tolerances};

impl<S> NaturalGradient<S> {
    /// The same solver with another step control.
    pub(super) fn with_step_search<T>(self, step_control: T) -> NaturalGradient<T> {
        NaturalGradient {
            step_size: self.step_size,
            damping: self.damping,
            initial_damping: self.initial_damping,
            damping_scale: self.damping_scale,
            tolerances: self.tolerances,
            momentum: self.momentum,
            step_control,
            adaptive_damping: self.adaptive_damping,
            line_search_damping: self.line_search_damping,
            max_step_norm: self.max_step_norm,
            warm_up: self.warm_up,
            batch: self.batch,
            seed: self.seed,
            memory: self.memory,
            direction_solver: self.direction_solver,
        }
    }

    /// How much of each step is taken: fixed, Armijo backtracking or the log grid
    /// (replaces an argmin line search set by [`with_line_search`](Self::with_line_search)).
    pub fn with_step_control(
        self,
        control: StepControl,
    ) -> ArgminResult<NaturalGradient<StepControl>> {
        control.validate().map_err(invalid)?;
        Ok(self.with_step_search(control))
    }

    /// Any argmin line search as the step control (argmin's convention, as in `LBFGS` and
    /// `GaussNewtonLS`): e.g. `MoreThuenteLineSearch::new()` or
    /// `HagerZhangLineSearch::new()`, run along `δ_k` from `t = 1` at each step
    /// ([`ArgminLineSearch`] says how; wrap it yourself to change its iteration limit).
    pub fn with_line_search<L>(self, search: L) -> NaturalGradient<ArgminLineSearch<L>> {
        self.with_step_search(ArgminLineSearch::new(search))
    }

    /// The same, with the wrapper given ([`ArgminLineSearch::with_max_iters`]).
    pub fn with_argmin_line_search<L>(
        self,
        search: ArgminLineSearch<L>,
    ) -> NaturalGradient<ArgminLineSearch<L>> {
        self.with_step_search(search)
    }

    /// Step size α > 0 (default 1: with damping λ → 0 a plain step is the Gauss–Newton
    /// step, docs/math.md §3). Under a line search or step control, α scales the direction
    /// before the search. Fails for a non-positive or non-finite α.
    pub fn with_step_size(mut self, alpha: f64) -> ArgminResult<Self> {
        if !(alpha > 0.0 && alpha.is_finite()) {
            return Err(invalid(format!(
                "step size must be finite and > 0, got {alpha}"
            )));
        }
        self.step_size = alpha;
        Ok(self)
    }

    /// Damping (Tikhonov / Levenberg–Marquardt) λ ≥ 0 added to the Gram matrix; with
    /// [`with_adaptive_damping`](Self::with_adaptive_damping), the starting value.
    pub fn with_damping(mut self, lambda: f64) -> ArgminResult<Self> {
        if !(lambda >= 0.0 && lambda.is_finite()) {
            return Err(invalid(format!(
                "damping must be finite and ≥ 0, got {lambda}"
            )));
        }
        self.damping = lambda;
        self.initial_damping = lambda;
        Ok(self)
    }

    /// How the direction is solved (see [`LinearSolver`]): CG or Cholesky in parameter
    /// or sample space, or chosen automatically.
    pub fn with_linear_solver(mut self, solver: LinearSolver) -> ArgminResult<Self> {
        solver.validate().map_err(|e| e.into_argmin(NAME))?;
        self.direction_solver.set_linear_solver(solver);
        Ok(self)
    }

    /// The relative-reduction test (MINPACK's `ftol`, [`crate::stopping`]): converged when
    /// the actual and the predicted decrease of the loss are both at most `tol·|L|`;
    /// `0` switches the test off. Default [`Tolerances::default`].
    pub fn with_tolerance_cost(mut self, tol: f64) -> ArgminResult<Self> {
        self.tolerances.cost = check_tolerance("cost", tol).map_err(invalid)?;
        Ok(self)
    }

    /// The relative-step test (MINPACK's `xtol`, [`crate::stopping`]): converged when
    /// `‖step‖ ≤ tol·(‖θ‖ + tol)`; `0` switches the test off.
    pub fn with_tolerance_step(mut self, tol: f64) -> ArgminResult<Self> {
        self.tolerances.step = check_tolerance("step", tol).map_err(invalid)?;
        Ok(self)
    }

    /// The gradient test (MINPACK's `gtol`, [`crate::stopping`]): converged when the
    /// cosine between the residual and the range of `J` in the metric is at most `tol`
    /// (scale-invariant, unlike `‖g‖ ≤ tol`); `0` switches the test off, and with it the
    /// stop at an exactly zero gradient.
    pub fn with_tolerance_grad(mut self, tol: f64) -> ArgminResult<Self> {
        self.tolerances.grad = check_tolerance("gradient", tol).map_err(invalid)?;
        Ok(self)
    }

    /// All three tolerances at once.
    pub fn with_tolerances(mut self, tolerances: Tolerances) -> ArgminResult<Self> {
        check_tolerance("cost", tolerances.cost).map_err(invalid)?;
        check_tolerance("step", tolerances.step).map_err(invalid)?;
        check_tolerance("gradient", tolerances.grad).map_err(invalid)?;
        self.tolerances = tolerances;
        Ok(self)
    }

    /// Former name of [`with_tolerance_grad`](Self::with_tolerance_grad). The test it
    /// sets was absolute (`‖g‖₂ ≤ tol`), which fires far from a minimum on one problem and
    /// never at the minimum of another; it is now the scale-invariant cosine test, and
    /// `0` switches it off.
    #[deprecated(note = "use `with_tolerance_grad` (a scale-invariant test)")]
    pub fn with_gradient_tolerance(self, tol: f64) -> ArgminResult<Self> {
        self.with_tolerance_grad(tol)
    }

    /// The step rule of docs/math.md §3 (default [`StepRule::Plain`]). β must be finite.
    pub fn with_step_rule(mut self, momentum: StepRule) -> ArgminResult<Self> {
        let beta = momentum.beta();
        if !beta.is_finite() {
            return Err(invalid(format!(
                "momentum coefficient β must be finite, got {beta}"
            )));
        }
        self.momentum = momentum;
        Ok(self)
    }

    /// Levenberg–Marquardt adaptive damping within `[min, max]` (`0 < min ≤ max`) with
    /// Nielsen's update ([`crate::step_control::DampingRule::Nielsen`]), starting from the
    /// damping of [`with_damping`](Self::with_damping) clipped to the bounds.
    pub fn with_adaptive_damping(self, min: f64, max: f64) -> ArgminResult<Self> {
        self.with_levenberg_marquardt(LevenbergMarquardt::new(min, max))
    }

    /// Levenberg–Marquardt adaptive damping with its bounds and update rule given.
    pub fn with_levenberg_marquardt(mut self, lm: LevenbergMarquardt) -> ArgminResult<Self> {
        lm.validate().map_err(invalid)?;
        self.adaptive_damping = Some(lm);
        Ok(self)
    }

    /// Levenberg–Marquardt damping that follows the line search off plateaus: after an
    /// accepted step of which the step control kept only `t < t_max` (`0 < t_max ≤ 1`),
    /// `λ ← max(λ', λ·t_max/t)` with λ the damping of that step and λ' the
    /// Levenberg–Marquardt update, clipped to its bounds (KV `damping_follows`, the factor
    /// `t_max/t`). Needs adaptive damping (ignored without it).
    ///
    /// Why: the gain ratio ρ is measured on the step `tδ` the line search took. On a
    /// plateau Armijo may keep `t ≈ 2⁻²⁰` of a Gauss–Newton step that is far too long
    /// while ρ of the short step stays in ¼…¾, so neither rule raises λ and the run
    /// creeps (docs/pinn.md, *One recipe for PINNs*). For a λ that dominates the Gram's
    /// small eigenvalues `‖δ‖ ∝ 1/λ`, so `λ·t_max/t` makes the next full step about as
    /// long as what the search accepted, times `1/t_max`; the usual update takes over
    /// once the search keeps at least `t_max`.
    pub fn with_line_search_damping(mut self, t_max: f64) -> ArgminResult<Self> {
        if !(t_max > 0.0 && t_max <= 1.0) {
            return Err(invalid(format!(
                "line-search damping threshold t_max must be in (0, 1], got {t_max}"
            )));
        }
        self.line_search_damping = Some(t_max);
        Ok(self)
    }

    /// A watchdog warm-up before the configured steps ([`WarmUp`]): the first
    /// `warm_up.steps` steps are plain, full (α = 1, `t = 1`) and unguarded with damping
    /// `warm_up.damping`; then the run goes on from there if the loss is below `L(θ₀)`,
    /// otherwise from `θ₀` (KV `watchdog`), with the configured settings as at the start
    /// of a run. Errors: `InvalidParameter` for 0 steps or a damping that is negative or
    /// not finite.
    pub fn with_warm_up(mut self, warm_up: WarmUp) -> ArgminResult<Self> {
        warm_up.validate().map_err(invalid)?;
        self.warm_up = Some(warm_up);
        Ok(self)
    }

    /// What the damping is relative to (default [`DampingScale::Absolute`]): with
    /// [`DampingScale::GramTrace`] the value of [`with_damping`](Self::with_damping) (and
    /// the bounds of [`with_adaptive_damping`](Self::with_adaptive_damping)) is a
    /// dimensionless μ and each step uses `λ_k = μ·tr(G_k)/p`.
    #[must_use]
    pub fn with_damping_scale(mut self, scale: DampingScale) -> Self {
        self.damping_scale = scale;
        self
    }

    /// Caps the step norm: `δ_k ← δ_k · min(1, cap / ‖δ_k‖₂)` (`cap > 0`).
    pub fn with_max_step_norm(mut self, cap: f64) -> ArgminResult<Self> {
        if !(cap > 0.0 && cap.is_finite()) {
            return Err(invalid(format!(
                "maximal step norm must be finite and > 0, got {cap}"
            )));
        }
        self.max_step_norm = Some(cap);
        Ok(self)
    }

    /// Mini-batches of `b ≥ 1` sample points per step, drawn with the seed of
    /// [`with_seed`](Self::with_seed) (default 0).
    pub fn with_batch_size(mut self, b: usize) -> ArgminResult<Self> {
        self.batch = Some(MiniBatch::new(b, self.seed).map_err(|e| e.into_argmin(NAME))?);
        Ok(self)
    }

    /// Seed of the mini-batch generator.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        if let Some(b) = &self.batch {
            self.batch = MiniBatch::new(b.size(), seed).ok();
        }
        self
    }

    /// Threads for the dense parts (Cholesky, Gram GEMM). The Jacobian products use the
    /// model's own setting; CG's vector operations stay sequential so that results do not
    /// depend on the thread count.
    #[must_use]
    pub fn with_parallelism(mut self, parallelism: Parallelism) -> Self {
        self.direction_solver.set_parallelism(parallelism);
        self
    }

    /// The step size α.
    pub fn step_size(&self) -> f64 {
        self.step_size
    }

    /// The damping of the next step: λ, or the relative μ with
    /// [`DampingScale::GramTrace`].
    pub fn damping(&self) -> f64 {
        self.damping
    }

    /// What the damping is relative to.
    pub fn damping_scale(&self) -> DampingScale {
        self.damping_scale
    }

    /// The linear solver.
    pub fn linear_solver(&self) -> &LinearSolver {
        self.direction_solver.linear_solver()
    }

    /// The step rule.
    pub fn step_rule(&self) -> StepRule {
        self.momentum
    }

    /// The watchdog warm-up, if any ([`with_warm_up`](Self::with_warm_up)).
    pub fn warm_up(&self) -> Option<WarmUp> {
        self.warm_up
    }

    /// The tolerances of the stopping tests.
    pub fn tolerances(&self) -> Tolerances {
        self.tolerances
    }
}

impl<S: StepSearch> NaturalGradient<S> {
    /// Refuses settings the problem cannot run with (before any collective on a sharded
    /// problem, so that every rank fails) and restarts the mini-batch generator.
    pub(super) fn check_setup<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        p: &FitProblem<Mo, Lo, Me>,
    ) -> ArgminResult<()> {
        if p.model().is_sharded() {
            if matches!(
                self.direction_solver.linear_solver(),
                LinearSolver::SampleCg(_) | LinearSolver::SampleCholesky
            ) {
                return Err(crate::linsolve::sharded_sample_space().into_argmin(NAME));
            }
            if self.batch.is_some() {
                return Err(Error::Unsupported(
                    "mini-batches of a sample-sharded problem (each rank would draw from its \
                     own samples); use all samples"
                        .into(),
                )
                .into_argmin(NAME));
            }
        }
        if let Some(b) = &mut self.batch {
            let m = p.model().n_samples();
            if b.size() > m {
                return Err(invalid(format!(
                    "mini-batch size {} exceeds the number of samples {m}",
                    b.size()
                )));
            }
            b.reset();
        }
        Ok(())
    }
}
