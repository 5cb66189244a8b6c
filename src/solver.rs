//! [`NaturalGradient`]: the natural-gradient method of MATH.md §2 as an argmin [`Solver`].
//!
//! One iteration, top to bottom:
//!
//! 1. linearise the problem at `θ_k` (one forward pass): loss, `∇_y ℓ`, `g_k = J_kᵀ∇_y ℓ`;
//! 2. stop if `‖g_k‖ ≤ tol`;
//! 3. solve `(G_k + λI) d_k = g_k` matrix-free by CG (or by dense Cholesky);
//! 4. step `θ_{k+1} = θ_k − α d_k`;
//! 5. evaluate the loss at `θ_{k+1}` (one forward pass), so that argmin's state always
//!    pairs a parameter with its own cost.
//!
//! Numerical failures (CG breakdown, no convergence, a singular Gram matrix in the direct
//! solve, a non-finite loss) end the run cleanly with
//! `TerminationReason::SolverExit(reason)`; input errors (sizes, non-finite θ) are
//! `ArgminError::InvalidParameter`.

use crate::error::Error;
use crate::linalg::norm;
use crate::linsolve::{solve_direction, LinearSolver, Rhs, SolveCache, SolveInfo};
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::{Evaluations, Problem};
use argmin::core::{
    ArgminError, IterState, Problem as ArgminProblem, Solver, State, TerminationReason, KV,
};
use faer::Par;

/// The argmin state used by every `natgrad` solver.
pub type NgState = IterState<Vec<f64>, Vec<f64>, (), (), (), f64>;

type ArgminResult<T> = Result<T, argmin::core::Error>;

const NAME: &str = "NaturalGradient";

/// Thread setting for the dense parts of the solver (Cholesky, Gram GEMM); serialisable
/// stand-in for faer's [`Par`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Parallelism {
    /// One thread.
    #[default]
    Sequential,
    /// faer's rayon parallelism with this many threads (0: all of rayon's).
    Rayon(usize),
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

/// Natural-gradient descent `θ ← θ − α (G + λI)⁻¹ g` (MATH.md §2).
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
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NaturalGradient {
    step_size: f64,
    damping: f64,
    linear_solver: LinearSolver,
    grad_tol: f64,
    parallelism: Parallelism,
    /// Last direction, the warm start of the next CG solve.
    prev_direction: Option<Vec<f64>>,
    /// What the linear solver keeps between steps.
    solve_cache: SolveCache,
}

impl Default for NaturalGradient {
    fn default() -> Self {
        Self::new()
    }
}

impl NaturalGradient {
    /// Step size α = 1, damping λ = 1e-8, CG with Jacobi preconditioning, no gradient
    /// tolerance (runs until argmin's `max_iters` or target cost).
    pub fn new() -> Self {
        Self {
            step_size: 1.0,
            damping: 1e-8,
            linear_solver: LinearSolver::default(),
            grad_tol: 0.0,
            parallelism: Parallelism::Sequential,
            prev_direction: None,
            solve_cache: SolveCache::default(),
        }
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

    /// Damping (Tikhonov / Levenberg–Marquardt) λ ≥ 0 added to the Gram matrix.
    pub fn with_damping(mut self, lambda: f64) -> ArgminResult<Self> {
        if !(lambda >= 0.0 && lambda.is_finite()) {
            return Err(invalid(format!(
                "damping must be finite and ≥ 0, got {lambda}"
            )));
        }
        self.damping = lambda;
        Ok(self)
    }

    /// How the direction is solved: CG (with its settings) or Cholesky.
    pub fn with_linear_solver(mut self, solver: LinearSolver) -> ArgminResult<Self> {
        if let LinearSolver::Cg(s) = &solver {
            s.validate().map_err(|e| e.into_argmin(NAME))?;
        }
        self.linear_solver = solver;
        Ok(self)
    }

    /// Stop (converged) when `‖g‖₂ ≤ tol`; `0` disables the test.
    pub fn with_gradient_tolerance(mut self, tol: f64) -> ArgminResult<Self> {
        if !(tol >= 0.0 && tol.is_finite()) {
            return Err(invalid(format!(
                "gradient tolerance must be finite and ≥ 0, got {tol}"
            )));
        }
        self.grad_tol = tol;
        Ok(self)
    }

    /// Threads for the dense parts (Cholesky, Gram GEMM). The Jacobian products use the
    /// model's own setting; CG's vector operations stay sequential so that results do not
    /// depend on the thread count.
    #[must_use]
    pub fn with_parallelism(mut self, parallelism: Parallelism) -> Self {
        self.parallelism = parallelism;
        self
    }

    /// The step size α.
    pub fn step_size(&self) -> f64 {
        self.step_size
    }

    /// The damping λ.
    pub fn damping(&self) -> f64 {
        self.damping
    }

    /// The linear solver.
    pub fn linear_solver(&self) -> &LinearSolver {
        &self.linear_solver
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

/// Records evaluation counts in argmin's counters (`forward_count`, `jvp_count`,
/// `vjp_count`), so that they reach the state with `.counting(true)`.
fn record_counts<O>(problem: &mut ArgminProblem<O>, d: Evaluations) -> ArgminResult<()> {
    problem.bulk_problem("forward_count", d.forward as usize, |_| Ok(()))?;
    problem.bulk_problem("jvp_count", d.jvp as usize, |_| Ok(()))?;
    problem.bulk_problem("vjp_count", d.vjp as usize, |_| Ok(()))
}

/// Outcome of one step, before it is written to the argmin state.
enum Step {
    Moved { theta: Vec<f64>, cost: f64, kv: KV },
    Stop(TerminationReason, KV),
}

impl NaturalGradient {
    fn step<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        problem: &Problem<Mo, Lo, Me>,
        theta: &[f64],
    ) -> crate::Result<Step> {
        let mut lin = problem.linearize(theta)?;
        let loss = lin.loss();
        let g = lin.gradient();
        let grad_norm = norm(&g);
        let mut kv =
            argmin::kv!("loss" => loss; "grad_norm" => grad_norm; "damping" => self.damping;);
        if grad_norm <= self.grad_tol {
            return Ok(Step::Stop(TerminationReason::SolverConverged, kv));
        }
        let mut d = match &self.prev_direction {
            Some(prev) if prev.len() == g.len() => prev.clone(),
            _ => vec![0.0; g.len()],
        };
        let r = lin.output_gradient().to_vec();
        let rhs = Rhs::Cotangent {
            r: &r,
            jt_r: Some(&g),
        };
        let info = solve_direction(
            &mut lin,
            rhs,
            &mut d,
            self.damping,
            &self.linear_solver,
            &mut self.solve_cache,
            self.parallelism.par(),
        );
        let info: SolveInfo = match info {
            Ok(info) => info,
            Err(failure) => {
                let reason = format!("`{NAME}`: {failure}");
                return Ok(Step::Stop(TerminationReason::SolverExit(reason), kv));
            }
        };
        kv.insert("cg_iters", (info.iters as u64).into());
        kv.insert("cg_rel_residual", info.rel_residual.into());
        kv.insert("linear_solver", info.method.to_string().into());
        kv.insert("preconditioner", info.preconditioner.to_string().into());
        drop(lin);

        let alpha = self.step_size;
        let theta_new: Vec<f64> = theta.iter().zip(&d).map(|(t, d)| t - alpha * d).collect();
        kv.insert("step_norm", (alpha * norm(&d)).into());
        self.prev_direction = Some(d);
        let cost = problem.loss_at(&theta_new)?;
        if !cost.is_finite() {
            let reason = format!(
                "`{NAME}`: the loss is not finite after the step (α = {alpha}, λ = {:e}); \
                 reduce the step size or increase the damping",
                self.damping
            );
            return Ok(Step::Stop(TerminationReason::SolverExit(reason), kv));
        }
        Ok(Step::Moved {
            theta: theta_new,
            cost,
            kv,
        })
    }
}

impl<Mo: Model, Lo: Loss, Me: Metric> Solver<Problem<Mo, Lo, Me>, NgState> for NaturalGradient {
    fn name(&self) -> &str {
        NAME
    }

    fn init(
        &mut self,
        problem: &mut ArgminProblem<Problem<Mo, Lo, Me>>,
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
        let before = p.evaluations();
        let cost = p.loss_at(theta).map_err(|e| e.into_argmin(NAME))?;
        if !cost.is_finite() {
            return Err(Error::NonFinite {
                what: "loss at the initial θ".into(),
                index: 0,
                value: cost,
            }
            .into_argmin(NAME));
        }
        let used = p.evaluations() - before;
        record_counts(problem, used)?;
        self.prev_direction = None;
        self.solve_cache = SolveCache::default();
        Ok((state.cost(cost), None))
    }

    fn next_iter(
        &mut self,
        problem: &mut ArgminProblem<Problem<Mo, Lo, Me>>,
        mut state: NgState,
    ) -> ArgminResult<(NgState, Option<KV>)> {
        let theta = state.take_param().ok_or_else(|| {
            argmin::core::Error::from(ArgminError::NotInitialized {
                text: format!("`{NAME}`: no parameter vector in the state"),
            })
        })?;
        let p = inner(problem)?;
        let before = p.evaluations();
        let step = self.step(p, &theta).map_err(|e| e.into_argmin(NAME))?;
        let used = p.evaluations() - before;
        record_counts(problem, used)?;
        Ok(match step {
            Step::Moved { theta, cost, kv } => (state.param(theta).cost(cost), Some(kv)),
            Step::Stop(reason, kv) => (state.param(theta).terminate_with(reason), Some(kv)),
        })
    }
}
