//! One iteration of [`NaturalGradient`]: the table of docs/math.md §3, top to bottom.

use super::solve::SolveLog;
use super::{exit, NaturalGradient};
use crate::linalg::{dot, norm};
use crate::line_search::{StepSearch, StepStart};
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::{Evaluations, FitProblem, LinearizedProblem};
use crate::step_control::{
    cap_step_norm, failed_at_max_reason, gram_scale, predicted_decrease, stalled_reason, Accepted,
    DampingScale, LevenbergMarquardt,
};
use crate::step_rule::{Previous, PreviousOutputs, StepRule};
use crate::stopping::{column_cosine, zero_gradient_reason, StepRecord, Tolerances};
use argmin::core::{State, TerminationReason, KV};
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

/// Levenberg–Marquardt steps rejected in a row at the maximum damping before the run ends
/// (the second repeats the first: same θ, same λ, and no momentum memory after a
/// rejection).
const STALLED_REJECTIONS: u32 = 2;

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
struct StepAt<'s, Mo, Lo, Me> {
    all: &'s FitProblem<Mo, Lo, Me>,
    on: &'s FitProblem<Mo, Lo, Me>,
    theta: &'s [f64],
    previous: Option<&'s Previous>,
    previous_outputs: Option<Cow<'s, PreviousOutputs>>,
    samples: Option<Vec<usize>>,
    horizon: Horizon,
}

/// What argmin's executor will do after an iteration, read from the state before it:
/// whether another iteration follows (`max_iters`) and its target cost. Used only to
/// decide whether to make the next step ahead ([`Ahead`]); a wrong guess costs time, never
/// a different iterate.
#[derive(Debug, Clone, Copy)]
pub(super) struct Horizon {
    /// Another iteration follows unless a stopping test fires.
    pub(super) more_iterations: bool,
    pub(super) target_cost: f64,
    pub(super) best_cost: f64,
}

impl Horizon {
    /// Read from the state handed to `init` (`after_init`) or to `next_iter`: argmin ends
    /// when the iteration count reaches `max_iters` or the best cost reaches the target.
    pub(super) fn of(state: &super::NgState, after_init: bool) -> Self {
        let done = state.get_iter().saturating_add(u64::from(!after_init));
        Horizon {
            more_iterations: done < state.get_max_iters(),
            target_cost: state.get_target_cost(),
            best_cost: state.get_best_cost(),
        }
    }

    /// Whether argmin runs another iteration after one that reports `cost`.
    pub(super) fn continues(self, cost: f64) -> bool {
        self.more_iterations && self.best_cost.min(cost) > self.target_cost
    }
}

/// The part of a step made on its linearisation (docs/math.md §3 up to the step
/// control): the start at `θ_k` and the measured direction, or the end of the run.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(super) enum Prepared {
    /// Ready for the step control.
    Ready { start: Start, measured: Measured },
    /// The run ends with this reason (an exactly zero gradient).
    Stop(String),
}

/// Step `k+1` made ahead, at the end of step `k`, on the linearisation at `θ_{k+1}` that
/// formed the state's gradient: the next step then starts from it instead of linearising
/// again at the same θ (one forward pass less per step). Only on all samples and not when
/// argmin is about to stop. It is what step `k+1` would compute in the next call, in the
/// same order (the warm starts, the solver's cache and the damping scale advance as they
/// would), so the iterates are bitwise those of linearising again; it is part of the
/// solver's serialised state, so that a resumed run goes on the same way.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(super) struct Ahead {
    /// `θ_{k+1}`, where it was made.
    theta: Vec<f64>,
    /// The step's KV so far.
    kv: KV,
    /// What it found, or the reason of a numerical failure.
    outcome: Result<Prepared, String>,
}

/// What the start of a step found at `θ_k`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(super) struct Start {
    /// `ℓ(θ_k)` on the step's samples.
    loss: f64,
    /// `g_k = J_kᵀ∇_yℓ`.
    g: Vec<f64>,
    zero_gradient: bool,
    /// The gradient test's cosine, when the stopping tests run and the model has
    /// `diag(G_k)`.
    column_cosine: Option<f64>,
}

/// What the step needs of `J_k` after the rule (see `measure`).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(super) struct Measured {
    /// `δ_k`, capped.
    delta: Vec<f64>,
    /// `J_kδ_k`, when heavy ball, LM or the stopping tests need it.
    jd: Option<Vec<f64>>,
    /// `‖J_kδ_k‖²_M` (0 when not needed).
    jd_m_sq: f64,
    outputs: PreviousOutputs,
    /// `gᵀ(G + λI)⁻¹g` of a plain solve, for the gradient test.
    g_ginv_g: Option<f64>,
}

/// The loss at `θ_k`, and its actual and predicted decrease along the step.
struct Decrease {
    loss: f64,
    actual: f64,
    predicted: f64,
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

    /// What a step's outcome means for the run: under Levenberg–Marquardt a failed
    /// direction solve is a rejected step with a larger λ; a rejected step restarts the
    /// momentum (`had_memory`: the step had one); a numerical failure ends the run with its
    /// reason, also in the KV.
    fn settle(
        &mut self,
        outcome: Result<Step, Failure>,
        had_memory: bool,
        mut kv: KV,
    ) -> crate::Result<Step> {
        let outcome = match outcome {
            Err(Failure::Solve(reason)) => match self.adaptive_damping {
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
                    && !matches!(self.momentum, StepRule::Plain | StepRule::GradientDescent);
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
    fn step_on<Mo: Model, Lo: Loss, Me: Metric>(
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

    /// On the linearisation at `θ_k`: the start (with `gradient` when it is known
    /// already), the step rule and what the step control needs of `J_k`.
    fn prepare<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        mut lin: LinearizedProblem<'_, Mo, Lo, Me>,
        at: &StepAt<'_, Mo, Lo, Me>,
        gradient: Option<Vec<f64>>,
        kv: &mut KV,
    ) -> Result<Prepared, Failure> {
        let start = self.start(&mut lin, at, gradient, kv)?;
        // An exactly zero gradient is no convergence (crate::stopping); with
        // tolerance_grad = 0 the run goes on, and no test fires on its zero steps.
        if start.zero_gradient && self.tolerances.grad > 0.0 {
            return Ok(Prepared::Stop(zero_gradient_reason(start.loss)));
        }
        let delta = self.direction(&mut lin, at, &start.g, kv)?;
        let measured = self.measure(lin, at, &start, delta)?;
        Ok(Prepared::Ready { start, measured })
    }

    /// Makes step `k+1` ahead ([`Ahead`]) on `lin`, the linearisation at `θ_{k+1} =
    /// theta` on all samples of `problem` that formed the gradient `g` there.
    pub(super) fn look_ahead<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        problem: &FitProblem<Mo, Lo, Me>,
        lin: LinearizedProblem<'_, Mo, Lo, Me>,
        theta: &[f64],
        g: Vec<f64>,
    ) {
        let previous = self.memory.previous.take();
        let mut at = StepAt {
            all: problem,
            on: problem,
            theta,
            previous: previous.as_ref(),
            previous_outputs: None,
            samples: None,
            horizon: Horizon {
                more_iterations: true,
                target_cost: f64::NEG_INFINITY,
                best_cost: f64::INFINITY,
            },
        };
        let mut kv = KV::new();
        let outcome = match self.previous_outputs(&at) {
            Ok(outputs) => {
                at.previous_outputs = outputs;
                self.prepare(lin, &at, Some(g), &mut kv)
            }
            Err(e) => Err(e),
        };
        drop(at);
        self.memory.previous = previous;
        self.memory.ahead = match outcome {
            Ok(prepared) => Some(Ok(prepared)),
            Err(Failure::Numerical(reason)) => Some(Err(reason)),
            Err(Failure::Solve(reason)) if self.adaptive_damping.is_none() => Some(Err(reason)),
            // An input error ends the run, and under Levenberg–Marquardt a failed solve
            // is a rejection: the next step meets either again.
            Err(Failure::Input(_) | Failure::Solve(_)) => None,
        }
        .map(|outcome| Ahead {
            theta: theta.to_vec(),
            kv,
            outcome,
        });
    }

    /// The previous iterate's output vectors on this step's samples, for the rules that
    /// use them.
    fn previous_outputs<'s, Mo: Model, Lo: Loss, Me: Metric>(
        &self,
        at: &StepAt<'s, Mo, Lo, Me>,
    ) -> Result<Option<Cow<'s, PreviousOutputs>>, Failure> {
        match at.previous {
            Some(prev) if self.momentum.uses_previous_outputs() => Ok(Some(self.previous_on(
                at.on,
                prev,
                at.samples.as_deref(),
            )?)),
            _ => Ok(None),
        }
    }

    /// At `θ_k`: the loss, the gradient `g_k` (formed at the end of the previous step on
    /// all samples, else one vjp), this step's damping, and the KV's first entries.
    fn start<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
        at: &StepAt<'_, Mo, Lo, Me>,
        gradient: Option<Vec<f64>>,
        kv: &mut KV,
    ) -> Result<Start, Failure> {
        let rule = self.momentum;
        let loss = lin.loss();
        let g = match (gradient, &self.memory.gradient) {
            (Some(g), _) => g,
            (None, Some(kept)) if at.samples.is_none() && kept.theta == at.theta => {
                kept.gradient.clone()
            }
            _ => lin.gradient(),
        };
        let tested = self.tolerances != Tolerances::NONE;
        let diagonal = self.scale_damping(lin, &g, tested);
        *kv = argmin::kv!(
            "start_loss" => loss; "grad_norm" => norm(&g); "damping" => self.lambda();
            "momentum" => rule.name(); "beta" => rule.beta();
        );
        if self.damping_scale != DampingScale::Absolute {
            kv.insert("damping_relative", self.damping.into());
        }
        if let Some(s) = &at.samples {
            kv.insert("batch_size", (s.len() as u64).into());
        }
        fault(lin).map_err(|f| f.at("θ_k"))?;
        finite(
            "the gradient g_k = J_kᵀ∇_yℓ (at finite outputs and ∇_yℓ)",
            &g,
        )?;
        Ok(Start {
            loss,
            zero_gradient: g.iter().all(|&v| v == 0.0),
            column_cosine: diagonal.map(|d| column_cosine(&g, &d, loss)),
            g,
        })
    }

    /// The step rule (docs/math.md §3): `δ_k`, by one solve (two for the Nesterov rules,
    /// none for gradient descent). `previous` is `None` at k = 0: the Plain step.
    fn direction<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
        at: &StepAt<'_, Mo, Lo, Me>,
        g: &[f64],
        kv: &mut KV,
    ) -> Result<Vec<f64>, Failure> {
        let (rule, alpha) = (self.momentum, self.step_size);
        let mut log = SolveLog::new(kv);
        let log = &mut log;
        let prev_outputs = at.previous_outputs.as_deref();
        Ok(match (rule, at.previous) {
            // G = I: δ_k = −α g_k
            (StepRule::GradientDescent, _) => combine(None, alpha, g),
            // G_k δ_k = −α g_k
            (StepRule::Plain, _) | (_, None) => self.solve_gradient(lin, None, g, log)?,
            // G_k δ_k = β J_kᵀ h − α g_k, h = M J_{k−1}δ_{k−1} | M (y_k − y_{k−1}) | ∇ℓ(y_{k−1})
            (
                StepRule::HeavyBall { beta }
                | StepRule::FiniteDifference { beta }
                | StepRule::LaggedGradient { beta },
                Some(_),
            ) => {
                let prev = prev_outputs.expect("read by `previous_outputs` for these rules");
                let h = rule.output_term(lin, prev).ok_or_else(|| {
                    Failure::Input(crate::Error::InvalidSetting(
                        "heavy ball: J_{k−1}δ_{k−1} missing from the previous step".into(),
                    ))
                })?;
                self.solve_gradient(lin, Some((beta, &h)), g, log)?
            }
            // δ_k = β δ_{k−1} − α G_k⁻¹ g_k
            (StepRule::ParamHeavyBall { beta }, Some(prev)) => {
                let d = self.solve_gradient(lin, None, g, log)?;
                add(&scaled(beta, &prev.delta), &d)
            }
            // z = θ_k + β G_k⁻¹ J_kᵀ M (y_k − y_{k−1});  θ_{k+1} = z − α G(z)⁻¹ g(z)
            (StepRule::Nesterov { beta }, Some(_)) => {
                let prev = prev_outputs.expect("read by `previous_outputs` for this rule");
                let h = rule.output_term(lin, prev).unwrap_or_default();
                let s = self.solve_extrapolation(lin, beta, &h, log)?;
                add(&s, &self.gradient_step_at(at.on, at.theta, &s, log)?)
            }
            // z = θ_k + β (θ_k − θ_{k−1});  θ_{k+1} = z − α G(z)⁻¹ g(z)
            (StepRule::ParamNesterov { beta }, Some(prev)) => {
                let s = scaled(beta, &prev.delta);
                add(&s, &self.gradient_step_at(at.on, at.theta, &s, log)?)
            }
        })
    }

    /// What the step control, the stopping tests and the next step need of `J_k`: the
    /// capped `δ_k`, `J_kδ_k` (carried by heavy ball; the curvature of LM's model and of
    /// the stopping tests), `‖J_kδ_k‖²_M`, and the outputs. Ends the linearisation.
    fn measure<Mo: Model, Lo: Loss, Me: Metric>(
        &self,
        mut lin: LinearizedProblem<'_, Mo, Lo, Me>,
        at: &StepAt<'_, Mo, Lo, Me>,
        start: &Start,
        mut delta: Vec<f64>,
    ) -> Result<Measured, Failure> {
        let rule = self.momentum;
        // gᵀ(G + λI)⁻¹g of a plain solve δ = −α(G + λI)⁻¹g, for the gradient test.
        let plain_solve = !matches!(rule, StepRule::GradientDescent)
            && (matches!(rule, StepRule::Plain) || at.previous.is_none());
        let g_ginv_g = plain_solve.then(|| -dot(&start.g, &delta) / self.step_size);
        cap_step_norm(&mut delta, self.max_step_norm);
        let curvature = self.adaptive_damping.is_some() || self.tolerances != Tolerances::NONE;
        let jd = (rule.uses_jvp_of_step() || curvature).then(|| {
            let mut jd = vec![0.0; lin.outputs().len()];
            lin.jvp(&delta, &mut jd);
            jd
        });
        let jd_m_sq = match &jd {
            Some(jd) if curvature => lin.metric_norm_sq(jd),
            _ => 0.0,
        };
        let outputs = PreviousOutputs {
            outputs: lin.outputs().to_vec(),
            output_gradient: lin.output_gradient().to_vec(),
            jvp_delta: None,
        };
        fault(&lin).map_err(|f| f.at("θ_k"))?;
        drop(lin);
        finite("the step δ_k", &delta)?;
        finite("θ_k + δ_k (the step overflows θ)", &add(at.theta, &delta))?;
        Ok(Measured {
            delta,
            jd,
            jd_m_sq,
            outputs,
            g_ginv_g,
        })
    }

    /// Step control: the line search or fixed step, the stopping tests' record, and
    /// Levenberg–Marquardt's verdict. `Break` ends the step without moving.
    fn control<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        at: &StepAt<'_, Mo, Lo, Me>,
        start: &Start,
        m: &Measured,
        kv: &mut KV,
    ) -> Result<ControlFlow<Step, Accepted>, Failure> {
        let search_from = StepStart {
            theta: at.theta,
            loss: start.loss,
            gradient: &start.g,
            delta: &m.delta,
        };
        let accepted = self.step_control.search(at.on, &search_from)?;
        let t = accepted.t;
        let step_norm = t * norm(&m.delta);
        kv.insert("step_scale", t.into());
        kv.insert("line_search", accepted.note.to_string().into());
        kv.insert("step_norm", step_norm.into());
        let decrease = Decrease {
            loss: start.loss,
            actual: start.loss - accepted.loss,
            predicted: predicted_decrease(t, dot(&start.g, &m.delta), m.jd_m_sq),
        };
        if self.tolerances != Tolerances::NONE && !start.zero_gradient {
            let damping = match self.momentum {
                StepRule::GradientDescent => 0.0,
                _ => self.lambda(),
            };
            self.memory.record = Some(StepRecord {
                loss: start.loss,
                actual: decrease.actual,
                predicted: decrease.predicted,
                step_norm,
                theta_norm: norm(at.theta),
                curvature: t * t * m.jd_m_sq,
                damping_term: damping * step_norm * step_norm,
                g_ginv_g: m.g_ginv_g,
                column_cosine: start.column_cosine,
            });
        }
        if let Some(lm) = self.adaptive_damping {
            let used = self.damping;
            if let Some(ended) = self.levenberg_marquardt(lm, &decrease, kv) {
                return Ok(ControlFlow::Break(ended));
            }
            if let Some(t_max) = self.line_search_damping.filter(|&t_max| t < t_max) {
                let factor = t_max / t;
                self.damping = (used * factor).max(self.damping).clamp(lm.min, lm.max);
                kv.insert("damping_follows", factor.into());
            }
        } else if !accepted.loss.is_finite() {
            return Err(self.non_finite_after_step(at.on, &accepted.theta));
        }
        Ok(ControlFlow::Continue(accepted))
    }

    /// Levenberg–Marquardt's damping update; a rejected step (or the end of the run after
    /// repeated rejections at the maximum damping) when the step does not decrease.
    fn levenberg_marquardt(
        &mut self,
        lm: LevenbergMarquardt,
        d: &Decrease,
        kv: &mut KV,
    ) -> Option<Step> {
        let at_max = self.damping >= lm.max;
        let nu = self.memory.damping.nu;
        let update = lm.update(self.damping, nu, d.actual, d.predicted);
        kv.insert("lm_rho", update.rho.into());
        self.damping = update.damping;
        self.memory.damping.nu = update.nu;
        if update.accepted {
            self.memory.rejected_at_max = 0;
            return None;
        }
        self.memory.rejected_at_max = if at_max {
            self.memory.rejected_at_max + 1
        } else {
            0
        };
        if self.memory.rejected_at_max >= STALLED_REJECTIONS {
            let reason = stalled_reason(lm.max, d.loss, d.actual, d.predicted);
            return Some(Step::Stop(exit(reason), take(kv)));
        }
        Some(Step::Rejected(take(kv)))
    }

    /// Levenberg–Marquardt after a direction solve that more damping cures failed
    /// (`reason`): a rejected step with a larger λ
    /// ([`LevenbergMarquardt::after_failed_solve`]), or the end of the run at the maximum
    /// damping. KV `lm_failed_solve`.
    fn failed_solve(&mut self, lm: LevenbergMarquardt, reason: String, kv: &mut KV) -> Step {
        let at_max = self.damping >= lm.max;
        let update = lm.after_failed_solve(self.damping, self.memory.damping.nu);
        self.damping = update.damping;
        self.memory.damping.nu = update.nu;
        kv.insert("lm_failed_solve", reason.clone().into());
        match at_max {
            true => Step::Stop(exit(failed_at_max_reason(lm.max, &reason)), take(kv)),
            false => Step::Rejected(take(kv)),
        }
    }

    /// The failure when the loss after the step is not finite: the model may know where
    /// (a PDE term and point), its linearisation says; else the forward pass or the loss
    /// says which value.
    fn non_finite_after_step<Mo: Model, Lo: Loss, Me: Metric>(
        &self,
        on: &FitProblem<Mo, Lo, Me>,
        theta: &[f64],
    ) -> Failure {
        let cause = match on.linearize(theta) {
            Err(e) => e.to_string(),
            Ok(_) => on.non_finite_loss(theta, "θ_k + tδ_k").to_string(),
        };
        Failure::Numerical(format!(
            "the loss is not finite after the step (α = {}, λ = {:e}): {cause}; reduce the \
             step size, increase the damping or use adaptive damping",
            self.step_size,
            self.lambda()
        ))
    }

    /// Keeps what the next step needs of this one (`θ_k`, `tδ_k`, `y_k`, `∇_yℓ(y_k)`,
    /// `tJ_kδ_k`, the samples), the loss at `θ_{k+1}` on all samples for the state, and
    /// the gradient there (argmin's convention: the gradient at the returned iterate).
    fn remember<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        at: StepAt<'_, Mo, Lo, Me>,
        m: Measured,
        accepted: Accepted,
        kv: &mut KV,
    ) -> Result<Step, Failure> {
        let t = accepted.t;
        let uses_jvp = self.momentum.uses_jvp_of_step();
        self.memory.previous = Some(Previous {
            theta: at.theta.to_vec(),
            delta: scaled(t, &m.delta),
            outputs: PreviousOutputs {
                jvp_delta: m.jd.filter(|_| uses_jvp).map(|jd| scaled(t, &jd)),
                ..m.outputs
            },
            samples: at.samples,
        });
        let cost = if std::ptr::eq(at.all, at.on) {
            accepted.loss
        } else {
            at.all.loss_at(&accepted.theta)?
        };
        let ahead =
            self.batch.is_none() && at.horizon.continues(cost) && self.converged().is_none();
        match super::GradientAt::at(at.all, &accepted.theta) {
            Ok((g, lin)) if ahead => {
                let gradient = g.gradient.clone();
                self.memory.gradient = Some(g);
                self.look_ahead(at.all, lin, &accepted.theta, gradient);
            }
            Ok((g, _)) => self.memory.gradient = Some(g),
            Err(Failure::Numerical(e)) => {
                self.memory.gradient = None;
                self.memory.gradient_failure = Some(e);
            }
            Err(input) => return Err(input),
        }
        Ok(Step::Moved {
            theta: accepted.theta,
            cost,
            kv: take(kv),
        })
    }

    /// The damping λ_k of this step's solves: λ, or `μ·s_k` relative to the Gram's
    /// scale ([`DampingScale`]).
    pub(super) fn lambda(&self) -> f64 {
        self.damping * self.memory.damping.scale
    }

    /// Sets this step's damping scale `s_k` ([`DampingScale`]); returns `diag(G_k)` when
    /// the stopping tests need it (`tested`) and the model has it.
    fn scale_damping<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
        g: &[f64],
        tested: bool,
    ) -> Option<Vec<f64>> {
        let relative = self.damping_scale == DampingScale::GramTrace;
        let diagonal = (tested || relative)
            .then(|| lin.gram_diagonal(0.0))
            .flatten();
        self.memory.damping.scale = if relative {
            gram_scale(diagonal.as_deref(), g, || {
                let mut jg = vec![0.0; lin.outputs().len()];
                lin.jvp(g, &mut jg);
                lin.metric_norm_sq(&jg)
            })
        } else {
            1.0
        };
        diagonal.filter(|_| tested)
    }

    /// The previous iterate's output vectors on the samples of this step: kept from the
    /// previous step when the samples are the same, otherwise evaluated at `θ_{k−1}` on
    /// the current samples (one forward pass, and one jvp for heavy ball).
    fn previous_on<'a, Mo: Model, Lo: Loss, Me: Metric>(
        &self,
        on: &FitProblem<Mo, Lo, Me>,
        prev: &'a Previous,
        samples: Option<&[usize]>,
    ) -> Result<Cow<'a, PreviousOutputs>, Failure> {
        if prev.samples.as_deref() == samples {
            return Ok(Cow::Borrowed(&prev.outputs));
        }
        let at_previous = |f: Failure| f.at("θ_{k−1} on this step's samples");
        let mut lin = on
            .linearize(&prev.theta)
            .map_err(|e| at_previous(e.into()))?;
        let jvp_delta = self.momentum.uses_jvp_of_step().then(|| {
            let mut jd = vec![0.0; lin.outputs().len()];
            lin.jvp(&prev.delta, &mut jd);
            jd
        });
        fault(&lin).map_err(at_previous)?;
        Ok(Cow::Owned(PreviousOutputs {
            outputs: lin.outputs().to_vec(),
            output_gradient: lin.output_gradient().to_vec(),
            jvp_delta,
        }))
    }
}
