//! One iteration of [`NaturalGradient`], top to bottom (docs/math.md §3): where the step
//! starts ([`StepAt`]), linearise → gradient → step rule (`prepare.rs`) → step control
//! (`control.rs`) → remember (`memory.rs`), and what an outcome means for the run
//! ([`Step`], [`Failure`]).

use super::prepare::Prepared;
use super::termination::{exit, Horizon};
use super::NaturalGradient;
use super::NgState;
use crate::line_search::StepSearch;
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::Evaluations;
use crate::problem::{FitProblem, LinearizedProblem};
use crate::step_rule::{Previous, PreviousOutputs, StepRule};
use argmin::core::KV;
use argmin::core::{State, TerminationReason};
use std::borrow::Cow;
use std::mem::take;
use std::ops::ControlFlow;

/// Outcome of one step, before it is written to the argmin state.
pub(super) enum Step {
    /// `θ_{k+1}` and its loss on all samples.
    Moved { theta: Vec<f64>, cost: f64, kv: KV },
    /// Levenberg–Marquardt rejected the step: `θ_{k+1} = θ_k`, larger damping.
    Rejected(KV),
    /// The run ends.
    Stop(TerminationReason, KV),
}

/// Why a step could not be made.
pub(super) enum Failure {
    /// Bad input or settings: an argmin error.
    Input(crate::Error),
    /// A numerical failure: the run ends with this reason.
    Numerical(String),
    /// A direction solve that more damping cures (`step_control::damping_cures`): under
    /// Levenberg–Marquardt a rejected step with a larger λ, otherwise as `Numerical`.
    Solve(String),
}

/// What to try when a value of the run is not finite.
const NON_FINITE_ADVICE: &str = "reduce the step size, add damping (`with_damping`, \
     `with_adaptive_damping`) or cap the step (`with_max_step_norm`); if θ is reasonable, \
     check the model's code for this quantity (`natgrad::check`)";

impl From<crate::Error> for Failure {
    /// Mid-run, a non-finite value is a numerical failure of the run (θ_k is finite and
    /// was checked at the start), so it ends the run with the error's text — which names
    /// the quantity and the trait method that returned it — and advice; a size mismatch
    /// is a bug in user code, an input error.
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::NonFinite { .. } => {
                Failure::Numerical(format!("{e} — {NON_FINITE_ADVICE}"))
            }
            crate::Error::GramNotPositiveDefinite { .. } | crate::Error::LineSearch(_) => {
                Failure::Numerical(e.to_string())
            }
            crate::Error::NonFiniteMetric { .. } => Failure::Numerical(format!(
                "{e} — check that metric's code for this point (a division by a zero \
                 weight, a root or logarithm of a negative output), or use one of \
                 `natgrad::metric`'s metrics; the last good iterate is kept"
            )),
            // Raised during a step only by a metric that depends on θ (a Deep Ritz
            // energy's Hessian, `pde::RitzModel`) and turns indefinite at this iterate.
            crate::Error::IndefiniteMetric { .. } => Failure::Numerical(e.to_string()),
            e => Failure::Input(e),
        }
    }
}

impl Failure {
    /// Says where a numerical failure happened (`"θ_k"`, `"the extrapolation point"`).
    pub(super) fn at(self, point: &str) -> Self {
        match self {
            Failure::Numerical(text) => Failure::Numerical(format!("at {point}: {text}")),
            Failure::Solve(text) => Failure::Solve(format!("at {point}: {text}")),
            input => input,
        }
    }
}

/// A fault recorded by the checked linearisation (a non-finite product, a wrong-shape
/// Jacobian from user code), as the failure that names it.
pub(super) fn fault<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &LinearizedProblem<'_, Mo, Lo, Me>,
) -> Result<(), Failure> {
    lin.fault().map_or(Ok(()), |e| Err(e.clone().into()))
}

/// Fails when `v` (named `what`) has a non-finite entry.
pub(super) fn finite(what: &str, v: &[f64]) -> Result<(), Failure> {
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Failure::Numerical(format!(
            "{what} is not finite (entry {i} is {}) — {NON_FINITE_ADVICE}",
            v[i]
        ))),
    }
}

/// Where a step starts: the problem on all samples, the one of this step (`on`: the
/// mini-batch problem, or `all` itself), `θ_k`, the previous iterate and its output
/// vectors on this step's samples, the samples, and what argmin does after this step.
pub(super) struct StepAt<'s, Mo, Lo, Me> {
    pub(super) all: &'s FitProblem<Mo, Lo, Me>,
    pub(super) on: &'s FitProblem<Mo, Lo, Me>,
    pub(super) theta: &'s [f64],
    pub(super) previous: Option<&'s Previous>,
    pub(super) previous_outputs: Option<Cow<'s, PreviousOutputs>>,
    pub(super) samples: Option<Vec<usize>>,
    pub(super) horizon: Horizon,
}

/// `−α v` or `β h − α v`, elementwise (with `β = 0` bitwise equal to `−α v`).
pub(super) fn combine(momentum: Option<(f64, &[f64])>, alpha: f64, v: &[f64]) -> Vec<f64> {
    match momentum {
        None => v.iter().map(|v| -(alpha * v)).collect(),
        Some((beta, h)) => h.iter().zip(v).map(|(h, v)| beta * h - alpha * v).collect(),
    }
}

/// `a + b`, elementwise.
pub(super) fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a + b).collect()
}

/// `t v`, elementwise.
pub(super) fn scaled(t: f64, v: &[f64]) -> Vec<f64> {
    v.iter().map(|v| t * v).collect()
}

impl<S: StepSearch> NaturalGradient<S> {
    /// One step from `θ_k = theta`; also returns the evaluations made on a mini-batch
    /// problem (those on `problem` itself are counted by the caller).
    pub(super) fn step<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        problem: &FitProblem<Mo, Lo, Me>,
        theta: &[f64],
        horizon: Horizon,
    ) -> (crate::Result<Step>, Evaluations) {
        let previous = self.memory.previous.take();
        self.memory.record = None;
        let mut batch_evaluations = Evaluations::default();
        // Filled as the step goes, so that a failing step still reports what it knew.
        let mut kv = KV::new();
        let n_samples = problem.model().n_samples();
        let samples = match self.batch.as_mut().map(|b| b.draw(n_samples)).transpose() {
            Ok(samples) => samples,
            Err(e) => return (Err(e), batch_evaluations),
        };
        let at = |on, samples| StepAt {
            all: problem,
            on,
            theta,
            previous: previous.as_ref(),
            previous_outputs: None,
            samples,
            horizon,
        };
        let outcome = match samples.as_deref().map(|s| problem.select_samples(s)) {
            None => self.step_on(at(problem, None), &mut kv),
            Some(Err(e)) => Err(Failure::Input(e)),
            Some(Ok(sub)) => {
                let o = self.step_on(at(&sub, samples), &mut kv);
                batch_evaluations = sub.evaluations();
                o
            }
        };
        let had_memory = previous.is_some();
        (self.settle(outcome, had_memory, kv), batch_evaluations)
    }

    /// What a step's outcome means for the run: during a warm-up a numerical failure
    /// takes the run back to `θ₀` (the watchdog); under Levenberg–Marquardt a failed
    /// direction solve is a rejected step with a larger λ; a rejected step restarts the
    /// momentum (`had_memory`: the step had one); a numerical failure ends the run with its
    /// reason, also in the KV.
    pub(super) fn settle(
        &mut self,
        outcome: Result<Step, Failure>,
        had_memory: bool,
        mut kv: KV,
    ) -> crate::Result<Step> {
        if let Err(Failure::Solve(reason) | Failure::Numerical(reason)) = &outcome
            && let Some(back) = self.warm_up_failed(reason, &mut kv)
        {
            return Ok(back);
        }
        let outcome = match outcome {
            Err(Failure::Solve(reason)) => match self.levenberg_marquardt_now() {
                Some(lm) => Ok(self.failed_solve(lm, reason, &mut kv)),
                None => Err(Failure::Numerical(reason)),
            },
            other => other,
        };
        match outcome {
            Ok(Step::Rejected(mut kv)) => {
                // Restart: θ_k stays, so keeping the momentum memory would propose the same
                // momentum term again with only λ larger — and once λ dominates `G` every
                // term of the step scales like 1/λ, so a step that was no descent
                // direction never becomes one. Without the memory the next step is a
                // plain natural-gradient step from θ_k, a descent direction.
                let restarted = had_memory
                    && !matches!(
                        self.step_rule_now(),
                        StepRule::Plain | StepRule::GradientDescent
                    );
                kv.insert("momentum_restart", restarted.into());
                Ok(Step::Rejected(kv))
            }
            Ok(step) => Ok(step),
            Err(Failure::Input(e)) => Err(e),
            // (A failed solve is a `Numerical` one here, unless LM made it a rejection.)
            Err(Failure::Numerical(reason) | Failure::Solve(reason)) => {
                let reason = exit(reason);
                if let TerminationReason::SolverExit(text) = &reason {
                    kv.insert("reason", text.clone().into());
                }
                Ok(Step::Stop(reason, kv))
            }
        }
    }

    /// The step computed on `at.on` (the mini-batch problem, or `at.all` itself):
    /// docs/math.md §3, linearise → gradient → step rule → step control → remember.
    pub(super) fn step_on<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        mut at: StepAt<'_, Mo, Lo, Me>,
        kv: &mut KV,
    ) -> Result<Step, Failure> {
        let prepared = match self.memory.ahead.take() {
            // Made at the end of the previous step on the linearisation at this θ.
            Some(ahead) if at.samples.is_none() && ahead.theta == at.theta => {
                *kv = ahead.kv;
                ahead.outcome.map_err(Failure::Numerical)?
            }
            _ => {
                at.previous_outputs = self.previous_outputs(&at)?;
                let lin = at
                    .on
                    .linearize(at.theta)
                    .map_err(|e| Failure::from(e).at("θ_k"))?;
                self.prepare(lin, &at, None, kv)?
            }
        };
        let (start, measured) = match prepared {
            Prepared::Ready { start, measured } => (start, measured),
            Prepared::Stop(reason) => return Ok(Step::Stop(exit(reason), take(kv))),
        };
        match self.control(&at, &start, &measured, kv)? {
            ControlFlow::Continue(accepted) => self.remember(at, measured, accepted, kv),
            ControlFlow::Break(ended) => Ok(ended),
        }
    }

    /// What the step means for argmin's state, `θ_k` taken out of it: `θ_{k+1}` with its
    /// cost and the gradient there on all samples (or the end of the run, when the gradient
    /// could not be formed there); `θ_k` again after a rejection; or the end of the run.
    pub(super) fn write_state(
        &mut self,
        mut state: NgState,
        theta: Vec<f64>,
        step: Step,
    ) -> (NgState, Option<KV>) {
        match step {
            Step::Moved { theta, cost, kv } => {
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
            Step::Rejected(kv) => (state.param(theta), Some(kv)),
            Step::Stop(reason, kv) => (state.param(theta).terminate_with(reason), Some(kv)),
        }
    }
}
