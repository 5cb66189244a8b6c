//! What the solver carries from one step to the next (docs/math.md §3, "remember"): the
//! previous iterate for the step rules (`θ_{k−1}`, `δ_{k−1}`, its output vectors), the
//! damping's state, the stopping tests' record, the gradient at the state's parameter
//! (argmin's convention), and the next step made ahead on the linearisation that formed
//! it ([`Ahead`]). The direction solver's warm starts are its own ([`crate::linsolve`]).

use super::prepare::{Measured, Prepared};
use super::step::{scaled, Failure, Step, StepAt};
use super::termination::Horizon;
use super::warm_up::WarmUpRun;
use super::NaturalGradient;
use crate::line_search::StepSearch;
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::{FitProblem, LinearizedProblem};
use crate::step_control::{Accepted, DampingMemory};
use crate::step_rule::{Previous, PreviousOutputs};
use crate::stopping::StepRecord;
use argmin::core::KV;
use std::mem::take;

/// What the solver carries from one step to the next besides its settings.
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(super) struct Memory {
    /// Iterate `k−1` (none at `k = 0`).
    pub(super) previous: Option<Previous>,
    /// What the last step measured, for the stopping tests in `terminate`.
    pub(super) record: Option<StepRecord>,
    /// Levenberg–Marquardt steps rejected in a row at the maximum damping.
    pub(super) rejected_at_max: u32,
    /// Nielsen's ν and the damping's scale at this step.
    pub(super) damping: DampingMemory,
    /// The gradient on all samples at the state's parameter (computed at the end of the
    /// step that moved there, or in `init`), reused by the next step on all samples.
    pub(super) gradient: Option<GradientAt>,
    /// Why that gradient could not be formed (the run ends with it).
    pub(super) gradient_failure: Option<String>,
    /// The next step, made ahead on the linearisation that formed that gradient.
    pub(super) ahead: Option<Ahead>,
    /// The watchdog warm-up under way (`with_warm_up`).
    pub(super) warm_up: Option<WarmUpRun>,
}

/// A parameter vector and the full gradient `g = Jᵀ∇_yℓ` there.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(super) struct GradientAt {
    pub(super) theta: Vec<f64>,
    pub(super) gradient: Vec<f64>,
}

impl GradientAt {
    /// `g(θ)` on all samples of `problem`, and the linearisation that formed it (the next
    /// step may start from it); the error's text when the linearisation fails or a
    /// product is faulty or not finite (the run then ends naming it).
    pub(super) fn at<'p, Mo: Model, Lo: Loss, Me: Metric>(
        problem: &'p FitProblem<Mo, Lo, Me>,
        theta: &[f64],
    ) -> Result<(Self, LinearizedProblem<'p, Mo, Lo, Me>), Failure> {
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
    pub(super) theta: Vec<f64>,
    /// The step's KV so far.
    pub(super) kv: KV,
    /// What it found, or the reason of a numerical failure.
    pub(super) outcome: Result<Prepared, String>,
}

impl<S: StepSearch> NaturalGradient<S> {
    /// Keeps what the next step needs of this one (`θ_k`, `tδ_k`, `y_k`, `∇_yℓ(y_k)`,
    /// `tJ_kδ_k`, the samples), the loss at `θ_{k+1}` on all samples for the state, and
    /// the gradient there (argmin's convention: the gradient at the returned iterate).
    pub(super) fn remember<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        at: StepAt<'_, Mo, Lo, Me>,
        m: Measured,
        accepted: Accepted,
        kv: &mut KV,
    ) -> Result<Step, Failure> {
        let t = accepted.t;
        let uses_jvp = self.step_rule_now().uses_jvp_of_step();
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
        match GradientAt::at(at.all, &accepted.theta) {
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
            Err(Failure::Solve(reason)) if self.levenberg_marquardt_now().is_none() => {
                Some(Err(reason))
            }
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

    /// The gradient at `θ₀` (kept for the first step, which makes it ahead on its
    /// linearisation when `ahead` and all samples are used).
    pub(super) fn first_gradient<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        p: &FitProblem<Mo, Lo, Me>,
        theta: &[f64],
        ahead: bool,
    ) -> Result<Vec<f64>, Failure> {
        let (at, lin) = GradientAt::at(p, theta)?;
        let g = at.gradient.clone();
        self.memory.gradient = Some(at);
        if ahead && self.batch.is_none() {
            self.look_ahead(p, lin, theta, g.clone());
        }
        Ok(g)
    }
}
