//! Step control (docs/math.md §3–4): the line search or fixed step along `δ_k`, the
//! stopping tests' record of the step, Levenberg–Marquardt's damping update (and its
//! rejection of a step, or of a failed direction solve), λ following the line search.

use super::prepare::{Measured, Start};
use super::step::{Failure, Step, StepAt};
use super::termination::exit;
use super::NaturalGradient;
use crate::linalg::{dot, norm};
use crate::line_search::StepSearch;
use crate::line_search::StepStart;
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::FitProblem;
use crate::step_control::{
    failed_at_max_reason, predicted_decrease, stalled_reason, Accepted, LevenbergMarquardt,
    StepControl,
};
use crate::step_rule::StepRule;
use crate::stopping::{StepRecord, Tolerances};
use argmin::core::KV;
use std::mem::take;
use std::ops::ControlFlow;

/// Levenberg–Marquardt steps rejected in a row at the maximum damping before the run ends
/// (the second repeats the first: same θ, same λ, and no momentum memory after a
/// rejection).
const STALLED_REJECTIONS: u32 = 2;

/// The loss at `θ_k`, and its actual and predicted decrease along the step.
struct Decrease {
    loss: f64,
    actual: f64,
    predicted: f64,
}

impl<S: StepSearch> NaturalGradient<S> {
    /// Step control: the line search or fixed step, the stopping tests' record, and
    /// Levenberg–Marquardt's verdict. `Break` ends the step without moving.
    pub(super) fn control<Mo: Model, Lo: Loss, Me: Metric>(
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
        let accepted = match self.warming() {
            true => StepControl::Fixed.search(at.on, &search_from)?,
            false => self.step_control.search(at.on, &search_from)?,
        };
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
            let damping = match self.step_rule_now() {
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
        if let Some(lm) = self.levenberg_marquardt_now() {
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
    pub(super) fn failed_solve(
        &mut self,
        lm: LevenbergMarquardt,
        reason: String,
        kv: &mut KV,
    ) -> Step {
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
    pub(super) fn non_finite_after_step<Mo: Model, Lo: Loss, Me: Metric>(
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
}
