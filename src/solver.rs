//! [`NaturalGradient`]: natural gradient with momentum (docs/math.md §2–3) as an argmin
//! [`Solver`].
//!
//! One iteration (`step.rs`, which reads like the table of docs/math.md §3):
//!
//! 1. draw the mini-batch `I_k` (if any) and bring the previous iterate's output vectors
//!    to it;
//! 2. linearise at `θ_k` (one forward pass; on all samples, the linearisation made at the
//!    end of the previous step for the state's gradient, on which this step was then made
//!    ahead — one forward pass per step less, the same iterates): loss, `∇_y ℓ`, `g_k = J_kᵀ∇_y ℓ`; an
//!    exactly zero gradient ends the run, not as convergence (the stopping tests of
//!    [`crate::stopping`] run in `Solver::terminate`, after each step);
//! 3. the step rule ([`StepRule`]): one solve `(G_k + λI) δ_k = J_kᵀ r` with the rule's
//!    output-space `r` (two for the Nesterov rules), matrix-free by CG or by Cholesky;
//! 4. step control ([`StepControl`] or any argmin line search, [`ArgminLineSearch`]): cap
//!    `‖δ_k‖`, then fixed step, Armijo backtracking
//!    or the log-grid search; Levenberg–Marquardt damping update ([`LevenbergMarquardt`]);
//! 5. keep what the next step needs (`θ_k`, `δ_k`, `y_k`, `∇_yℓ(y_k)`, `J_kδ_k`) and report
//!    the loss at `θ_{k+1}` on all samples, so that argmin's state pairs a parameter with
//!    its own cost.
//!
//! Numerical failures (CG breakdown, no convergence, a singular Gram matrix in the direct
//! solve, a non-finite loss) end the run cleanly with
//! `TerminationReason::SolverExit(reason)`; input errors (sizes, non-finite θ, settings)
//! are `ArgminError::InvalidParameter`. The whole solver (settings, previous iterate,
//! damping, random generator) is serialisable, so argmin's checkpointing resumes a run
//! exactly.

mod solve;
mod step;

use crate::batch::MiniBatch;
use crate::error::Error;
use crate::line_search::{ArgminLineSearch, StepSearch};
use crate::linsolve::{DirectionSolver, LinearSolver};
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::{Evaluations, FitProblem, LinearizedProblem};
use crate::step_control::{DampingMemory, DampingScale, LevenbergMarquardt, StepControl};
use crate::step_rule::{Previous, StepRule};
use crate::stopping::{check_tolerance, Converged, StepRecord, Tolerances, CONVERGED};
use argmin::core::{
    ArgminError, IterState, Problem as ArgminProblem, Solver, State, TerminationReason,
    TerminationStatus, KV,
};

/// The argmin state used by every `natgrad` solver.
pub type NgState = IterState<Vec<f64>, Vec<f64>, (), (), (), f64>;

type ArgminResult<T> = Result<T, argmin::core::Error>;

const NAME: &str = "NaturalGradient";

pub use crate::linsolve::Parallelism;

/// What the solver carries from one step to the next besides its settings.
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
struct Memory {
    /// Iterate `k−1` (none at `k = 0`).
    previous: Option<Previous>,
    /// What the last step measured, for the stopping tests in `terminate`.
    record: Option<StepRecord>,
    /// Levenberg–Marquardt steps rejected in a row at the maximum damping.
    rejected_at_max: u32,
    /// Nielsen's ν and the damping's scale at this step.
    damping: DampingMemory,
    /// The gradient on all samples at the state's parameter (computed at the end of the
    /// step that moved there, or in `init`), reused by the next step on all samples.
    gradient: Option<GradientAt>,
    /// Why that gradient could not be formed (the run ends with it).
    gradient_failure: Option<String>,
    /// The next step, made ahead on the linearisation that formed that gradient.
    ahead: Option<step::Ahead>,
}

/// A parameter vector and the full gradient `g = Jᵀ∇_yℓ` there.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
struct GradientAt {
    theta: Vec<f64>,
    gradient: Vec<f64>,
}

impl GradientAt {
    /// `g(θ)` on all samples of `problem`, and the linearisation that formed it (the next
    /// step may start from it); the error's text when the linearisation fails or a
    /// product is faulty or not finite (the run then ends naming it).
    fn at<'p, Mo: Model, Lo: Loss, Me: Metric>(
        problem: &'p FitProblem<Mo, Lo, Me>,
        theta: &[f64],
    ) -> Result<(Self, LinearizedProblem<'p, Mo, Lo, Me>), step::Failure> {
        let mut lin = problem.linearize(theta)?;
        let gradient = lin.gradient();
        if let Some(e) = lin.fault() {
            return Err(e.clone().into());
        }
        crate::error::check_finite("the gradient g = Jᵀ∇_yℓ", &gradient)?;
        let at = GradientAt {
            theta: theta.to_vec(),
            gradient,
        };
        Ok((at, lin))
    }
}

/// Natural-gradient descent with momentum (docs/math.md §2–3): each step solves
/// `(G_k + λI) δ_k = J_kᵀ r` for the rule's output-space `r` and moves
/// `θ_{k+1} = θ_k + t δ_k`.
///
/// Defaults: [`StepRule::Plain`] (`θ ← θ − α (G + λI)⁻¹ g`), α = 1, λ = 1e-8, CG with the
/// measured choice of preconditioner ([`crate::linsolve::Preconditioner`] says why), fixed step, all samples.
///
/// ```
/// use argmin::core::{Executor, State};
/// use natgrad::{problems::toys, LinearSolver, NaturalGradient};
///
/// // Biased linear toy with K = diag(1, 10): one step with α = 1, λ = 0 is Newton's step.
/// let toy = toys::biased_linear(toys::ToyMetric::Anisotropic);
/// let solver = NaturalGradient::new()
///     .with_step_size(1.0)?
///     .with_damping(0.0)?
///     .with_linear_solver(LinearSolver::Cholesky)?;
/// let res = Executor::new(toy.problem, solver)
///     .configure(|s| s.param(toy.theta0.clone()).max_iters(1))
///     .run()?;
/// let theta = res.state().get_best_param().unwrap();
/// assert!((theta[0] - 1.0).abs() < 1e-12 && (theta[1] + 4.0 / 3.0).abs() < 1e-12);
/// # Ok::<(), argmin::core::Error>(())
/// ```
///
/// Transported heavy ball escapes the local minimum of the local-minima toy, where plain
/// natural gradient stops (docs/math.md §4):
///
/// ```
/// use argmin::core::{Executor, State};
/// use natgrad::{problems::toys, StepRule, NaturalGradient};
///
/// let toy = toys::local_minima();
/// let solver = NaturalGradient::new()
///     .with_step_size(0.5)?
///     .with_step_rule(StepRule::HeavyBall { beta: 0.8 })?;
/// let res = Executor::new(toy.problem, solver)
///     .configure(|s| s.param(toy.theta0.clone()).max_iters(200))
///     .run()?;
/// let theta = res.state().get_param().unwrap()[0];
/// assert!((theta - 1.07).abs() < 0.01);
/// # Ok::<(), argmin::core::Error>(())
/// ```
///
/// # What each iteration reports
///
/// Every iteration hands argmin's observers a KV with these keys (read them in an
/// `Observe` impl, or use [`crate::observe::IterationTable`] or, with the feature
/// `progress`, `observe::ProgressBar`). A step that fails reports what it knew up to the
/// failure, and the reason. Losses are in the loss's own units; `θ`-space norms are
/// Euclidean norms in the units of θ.
///
/// | key | type | meaning (unit) |
/// |---|---|---|
/// | `start_loss` | float | `ℓ(θ_k)`, the loss where the step starts, on this step's samples (loss units); the state's cost is `ℓ(θ_{k+1})` on all samples, its gradient `g(θ_{k+1})` on all samples |
/// | `grad_norm` | float | `‖g_k‖₂`, `g_k = J_kᵀ∇_yℓ` (loss units per unit of θ) |
/// | `damping` | float | λ used by this step's solves (loss units per unit of θ²) |
/// | `momentum` | string | the step rule, [`StepRule::name`] |
/// | `beta` | float | its coefficient β (dimensionless; 0 for `plain`, `gd`) |
/// | `batch_size` | uint | sample points of the mini-batch (only with mini-batches) |
/// | `solves` | uint | linear solves made (Nesterov rules: two; `gd`: none) |
/// | `cg_iters` | uint | CG iterations summed over the solves, a failed solve's too (only when a solve ran CG; absent for direct solvers) |
/// | `rel_residual` | float | largest final relative residual `‖b − Ax‖/‖b‖` of the solves: CG's, or the direct solve's (dimensionless) |
/// | `linear_solver` | string | what solved the last system: [`crate::linsolve::SolveInfo::method`] (`cg`, `cholesky`, `auto:sample-cg`, …) |
/// | `preconditioner` | string | CG's preconditioner (`none`, `jacobi`, `nystrom`, `kfac`; only when the last solve ran CG) |
/// | `step_scale` | float | `t`, the fraction of the step taken by the step control (dimensionless) |
/// | `line_search` | string | what the step control did (`fixed`, `armijo`, `log_grid`, `armijo_skipped_not_descent`, …; an argmin line search's name, e.g. `More-Thuente Line search`) |
/// | `step_norm` | float | `‖θ_{k+1} − θ_k‖₂ = t‖δ_k‖₂` (units of θ) |
/// | `lm_rho` | float | Levenberg–Marquardt gain ratio actual/predicted decrease (dimensionless; with adaptive damping) |
/// | `damping_follows` | float | `t_max/t`, the factor by which λ followed the line search ([`NaturalGradient::with_line_search_damping`]; only when it did) |
/// | `momentum_restart` | bool | a rejected LM step cleared the momentum memory (rejected steps only) |
/// | `reason` | string | why the run ends (a failing step only; the same text as the termination reason) |
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NaturalGradient<S = StepControl> {
    step_size: f64,
    /// The damping λ of the next step (changed by Levenberg–Marquardt).
    damping: f64,
    /// The damping a run starts from.
    initial_damping: f64,
    /// What λ is relative to.
    damping_scale: DampingScale,
    tolerances: Tolerances,
    momentum: StepRule,
    /// The step control: a [`StepControl`] or an argmin line search
    /// ([`ArgminLineSearch`]).
    step_control: S,
    adaptive_damping: Option<LevenbergMarquardt>,
    /// `t_max` of [`NaturalGradient::with_line_search_damping`].
    line_search_damping: Option<f64>,
    max_step_norm: Option<f64>,
    batch: Option<MiniBatch>,
    seed: u64,
    memory: Memory,
    /// The linear solver of the directions, its threads, and what it keeps between
    /// solves (warm starts, sketch, factors).
    direction_solver: DirectionSolver,
}

impl Default for NaturalGradient {
    fn default() -> Self {
        Self::new()
    }
}

impl NaturalGradient {
    /// Plain natural gradient: step size α = 1, damping λ = 1e-8, CG with
    /// [`Preconditioner::auto()`](crate::Preconditioner::auto), fixed step, all samples in every step, and the stopping tests of
    /// [`crate::stopping`] with their default [`Tolerances`] (a run also ends at argmin's
    /// `max_iters` or target cost).
    pub fn new() -> Self {
        Self {
            step_size: 1.0,
            damping: 1e-8,
            initial_damping: 1e-8,
            damping_scale: DampingScale::Absolute,
            tolerances: Tolerances::default(),
            momentum: StepRule::Plain,
            step_control: StepControl::Fixed,
            adaptive_damping: None,
            line_search_damping: None,
            max_step_norm: None,
            batch: None,
            seed: 0,
            memory: Memory::default(),
            direction_solver: DirectionSolver::new(LinearSolver::default()),
        }
    }

    /// The step control.
    pub fn step_control(&self) -> StepControl {
        self.step_control
    }
}

impl<S> NaturalGradient<S> {
    /// The same solver with another step control.
    fn with_step_search<T>(self, step_control: T) -> NaturalGradient<T> {
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

    /// Step size α > 0.
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

    /// The tolerances of the stopping tests.
    pub fn tolerances(&self) -> Tolerances {
        self.tolerances
    }
}

impl<S: StepSearch> NaturalGradient<S> {
    /// The stopping test that fires on what the last step measured, if any.
    fn converged(&self) -> Option<Converged> {
        self.memory
            .record
            .as_ref()
            .and_then(|r| self.tolerances.check(r))
    }

    /// Refuses settings the problem cannot run with (before any collective on a sharded
    /// problem, so that every rank fails) and restarts the mini-batch generator.
    fn check_setup<Mo: Model, Lo: Loss, Me: Metric>(
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

    /// The gradient at `θ₀` (kept for the first step, which makes it ahead on its
    /// linearisation when `ahead` and all samples are used).
    fn first_gradient<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        p: &FitProblem<Mo, Lo, Me>,
        theta: &[f64],
        ahead: bool,
    ) -> Result<Vec<f64>, step::Failure> {
        let (at, lin) = GradientAt::at(p, theta)?;
        let g = at.gradient.clone();
        self.memory.gradient = Some(at);
        if ahead && self.batch.is_none() {
            self.look_ahead(p, lin, theta, g.clone());
        }
        Ok(g)
    }
}

fn invalid(text: String) -> argmin::core::Error {
    ArgminError::InvalidParameter {
        text: format!("`{NAME}`: {text}"),
    }
    .into()
}

fn inner<O>(problem: &ArgminProblem<O>) -> ArgminResult<&O> {
    problem.problem.as_ref().ok_or_else(|| {
        ArgminError::PotentialBug {
            text: format!("`{NAME}`: the problem was taken out of argmin's wrapper"),
        }
        .into()
    })
}

/// Records evaluation counts in argmin's counters, so that they reach the state with
/// `.counting(true)`: `cost_count` (forward passes, each evaluates the loss) and
/// `gradient_count` under the names argmin's own solvers use, and `jvp_count`,
/// `vjp_count` (every Jacobian product, gradients included).
fn record_counts<O>(problem: &mut ArgminProblem<O>, d: Evaluations) -> ArgminResult<()> {
    problem.bulk_problem("cost_count", d.forward as usize, |_| Ok(()))?;
    problem.bulk_problem("gradient_count", d.gradient as usize, |_| Ok(()))?;
    problem.bulk_problem("jvp_count", d.jvp as usize, |_| Ok(()))?;
    problem.bulk_problem("vjp_count", d.vjp as usize, |_| Ok(()))
}

impl<Mo: Model, Lo: Loss, Me: Metric, S: StepSearch> Solver<FitProblem<Mo, Lo, Me>, NgState>
    for NaturalGradient<S>
{
    fn name(&self) -> &str {
        NAME
    }

    fn init(
        &mut self,
        problem: &mut ArgminProblem<FitProblem<Mo, Lo, Me>>,
        state: NgState,
    ) -> ArgminResult<(NgState, Option<KV>)> {
        let theta = state.get_param().ok_or_else(|| {
            argmin::core::Error::from(ArgminError::NotInitialized {
                text: format!(
                    "`{NAME}` requires an initial parameter vector; provide it with \
                     `Executor::configure(|s| s.param(theta0))`"
                ),
            })
        })?;
        let p = inner(problem)?;
        self.check_setup(p)?;
        self.memory = Memory::default();
        self.direction_solver.reset();
        self.damping = match self.adaptive_damping {
            Some(lm) => self.initial_damping.clamp(lm.min, lm.max),
            None => self.initial_damping,
        };
        let before = p.evaluations();
        let cost = p.loss_at(theta).map_err(|e| e.into_argmin(NAME))?;
        if !cost.is_finite() {
            return Err(p.non_finite_loss(theta, "the initial θ").into_argmin(NAME));
        }
        let ahead = step::Horizon::of(&state, true).continues(cost);
        let gradient = self.first_gradient(p, theta, ahead);
        record_counts(problem, p.evaluations() - before)?;
        let state = match gradient {
            Ok(g) => state.gradient(g),
            Err(step::Failure::Numerical(e) | step::Failure::Solve(e)) => {
                state.terminate_with(exit(format!("at the initial θ: {e}")))
            }
            Err(step::Failure::Input(e)) => return Err(e.into_argmin(NAME)),
        };
        Ok((state.cost(cost), None))
    }

    fn next_iter(
        &mut self,
        problem: &mut ArgminProblem<FitProblem<Mo, Lo, Me>>,
        mut state: NgState,
    ) -> ArgminResult<(NgState, Option<KV>)> {
        let horizon = step::Horizon::of(&state, false);
        let theta = state.take_param().ok_or_else(|| {
            argmin::core::Error::from(ArgminError::NotInitialized {
                text: format!("`{NAME}`: no parameter vector in the state"),
            })
        })?;
        let p = inner(problem)?;
        let before = p.evaluations();
        let (outcome, batch_evaluations) = self.step(p, &theta, horizon);
        record_counts(problem, p.evaluations() - before + batch_evaluations)?;
        Ok(match outcome.map_err(|e| e.into_argmin(NAME))? {
            step::Step::Moved { theta, cost, kv } => {
                // The gradient at θ_{k+1}; the run ends when it could not be formed there.
                state = match &self.memory.gradient {
                    Some(at) if at.theta == theta => state.gradient(at.gradient.clone()),
                    _ => {
                        state.take_gradient();
                        state
                    }
                };
                let state = state.param(theta).cost(cost);
                match self.memory.gradient_failure.take() {
                    Some(e) => (
                        state.terminate_with(exit(format!("at θ_{{k+1}}: {e}"))),
                        Some(kv),
                    ),
                    None => (state, Some(kv)),
                }
            }
            step::Step::Rejected(kv) => (state.param(theta), Some(kv)),
            step::Step::Stop(reason, kv) => (state.param(theta).terminate_with(reason), Some(kv)),
        })
    }

    /// The stopping tests of [`crate::stopping`] on what the last step measured.
    fn terminate(&mut self, _state: &NgState) -> TerminationStatus {
        match self.converged() {
            Some(test) => TerminationStatus::Terminated(exit(format!("{CONVERGED}{test}"))),
            None => TerminationStatus::NotTerminated,
        }
    }
}

/// `TerminationReason::SolverExit` with the solver's name in front of the reason.
fn exit(reason: impl std::fmt::Display) -> TerminationReason {
    TerminationReason::SolverExit(format!("`{NAME}`: {reason}"))
}
