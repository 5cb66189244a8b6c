//! [`NaturalGradient`]: natural gradient with momentum (docs/math.md §2–3) as an argmin
//! [`Solver`].
//!
//! The files of `src/solver/` follow the mathematical objects of one iteration, in the
//! order of docs/math.md §3: `step.rs` (the iteration top to bottom, `step_on`, and what
//! an outcome means for the run), `prepare.rs` (step preparation at `θ_k`: start,
//! gradient, step rule, what the control needs of `J_k`), `solve.rs` (the rules' linear
//! solves, by the `DirectionSolver`), `control.rs`
//! (step control and Levenberg–Marquardt), `memory.rs` (what is kept between steps, the
//! step made ahead), `termination.rs` (argmin's horizon, the stopping tests, exit
//! reasons), `settings.rs` (builders and getters). This file: the solver value and
//! argmin's `Solver` (`init`, `next_iter`, `terminate`).
//!
//! One iteration (reads like the table of docs/math.md §3):
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
//! 4. step control ([`StepControl`] or any argmin line search, [`ArgminLineSearch`](crate::ArgminLineSearch)): cap
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

mod control;
mod memory;
mod prepare;
mod settings;
mod solve;
mod step;
mod termination;
mod warm_up;

use crate::batch::MiniBatch;
use crate::line_search::StepSearch;
use crate::linsolve::{DirectionSolver, LinearSolver};
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::{Evaluations, FitProblem};
use crate::step_control::{DampingScale, LevenbergMarquardt, StepControl, WarmUp};
use crate::step_rule::StepRule;
use crate::stopping::{Tolerances, CONVERGED};
use argmin::core::{
    ArgminError, IterState, Problem as ArgminProblem, Solver, State, TerminationStatus, KV,
};
use memory::Memory;
use termination::{exit, Horizon};

/// The argmin state used by every `natgrad` solver.
pub type NgState = IterState<Vec<f64>, Vec<f64>, (), (), (), f64>;

pub(super) type ArgminResult<T> = Result<T, argmin::core::Error>;

pub(super) const NAME: &str = "NaturalGradient";

pub use crate::linsolve::Parallelism;

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
/// | `damping_relative` | float | μ, the damping setting that λ is relative to (dimensionless; only with [`DampingScale::GramTrace`]: `damping` = μ·s_k) |
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
/// | `watchdog` | string | after the last step of a warm-up ([`NaturalGradient::with_warm_up`]): `kept` (the run goes on from there) or `back_to_start` (from `θ₀`) |
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
    /// The watchdog warm-up before the configured steps ([`NaturalGradient::with_warm_up`]).
    warm_up: Option<WarmUp>,
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
            warm_up: None,
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

pub(super) fn invalid(text: String) -> argmin::core::Error {
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
        self.damping = self.start_damping();
        let before = p.evaluations();
        let cost = p.loss_at(theta).map_err(|e| e.into_argmin(NAME))?;
        if !cost.is_finite() {
            return Err(p.non_finite_loss(theta, "the initial θ").into_argmin(NAME));
        }
        self.begin_warm_up(theta, cost);
        let ahead = Horizon::of(&state, true).continues(cost);
        let gradient = self.first_gradient(p, theta, ahead);
        if let Ok(g) = &gradient {
            self.warm_up_gradient(g);
        }
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
        let horizon = Horizon::of(&state, false);
        let theta = state.take_param().ok_or_else(|| {
            argmin::core::Error::from(ArgminError::NotInitialized {
                text: format!("`{NAME}`: no parameter vector in the state"),
            })
        })?;
        let p = inner(problem)?;
        let before = p.evaluations();
        // linearise → gradient → step rule → step control → remember (`step.rs`)
        let (outcome, batch_evaluations) = self.step(p, &theta, horizon);
        record_counts(problem, p.evaluations() - before + batch_evaluations)?;
        let step = outcome.map_err(|e| e.into_argmin(NAME))?;
        let step = self.after_warm_up_step(step);
        Ok(self.write_state(state, theta, step))
    }

    /// The stopping tests of [`crate::stopping`] on what the last step measured.
    fn terminate(&mut self, _state: &NgState) -> TerminationStatus {
        match self.converged() {
            Some(test) => TerminationStatus::Terminated(exit(format!("{CONVERGED}{test}"))),
            None => TerminationStatus::NotTerminated,
        }
    }
}
