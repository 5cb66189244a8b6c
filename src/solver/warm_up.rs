//! The watchdog warm-up ([`WarmUp`], `with_warm_up`; docs/math.md §3, step control): the
//! settings a warm-up step uses, and the watchdog's verdict after the last one.
//! Hand-written: argmin has no watchdog and no line search that accepts a loss increase
//! (see [`WarmUp`] for why one is needed).

use super::memory::{GradientAt, Memory};
use super::step::Step;
use super::NaturalGradient;
use crate::line_search::StepSearch;
use crate::step_control::{LevenbergMarquardt, WarmUp};
use crate::step_rule::StepRule;
use argmin::core::KV;

/// A warm-up under way: the steps left, and where the run started (`θ₀`, `L(θ₀)`, `g(θ₀)`
/// on all samples), to go back to.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(super) struct WarmUpRun {
    left: u64,
    theta0: Vec<f64>,
    loss0: f64,
    gradient0: Vec<f64>,
}

impl<S: StepSearch> NaturalGradient<S> {
    /// Whether this step is a warm-up step.
    pub(super) fn warming(&self) -> bool {
        self.memory.warm_up.is_some()
    }

    /// The step rule of this step: plain during the warm-up.
    pub(super) fn step_rule_now(&self) -> StepRule {
        match self.warming() {
            true => StepRule::Plain,
            false => self.momentum,
        }
    }

    /// The step size α of this step: 1 during the warm-up.
    pub(super) fn step_size_now(&self) -> f64 {
        match self.warming() {
            true => 1.0,
            false => self.step_size,
        }
    }

    /// Levenberg–Marquardt for this step: none during the warm-up.
    pub(super) fn levenberg_marquardt_now(&self) -> Option<LevenbergMarquardt> {
        match self.warming() {
            true => None,
            false => self.adaptive_damping,
        }
    }

    /// The damping a run (or the run after its warm-up) starts from.
    pub(super) fn start_damping(&self) -> f64 {
        match self.adaptive_damping {
            Some(lm) => self.initial_damping.clamp(lm.min, lm.max),
            None => self.initial_damping,
        }
    }

    /// At `init`, before the first step is made ahead: starts the warm-up from `θ₀` with
    /// loss `loss0` (its gradient is added by [`Self::warm_up_gradient`]).
    pub(super) fn begin_warm_up(&mut self, theta0: &[f64], loss0: f64) {
        self.memory.warm_up = self.warm_up.map(|w: WarmUp| {
            self.damping = w.damping;
            WarmUpRun {
                left: w.steps,
                theta0: theta0.to_vec(),
                loss0,
                gradient0: Vec::new(),
            }
        });
    }

    /// Keeps `g(θ₀)` for a return to `θ₀`.
    pub(super) fn warm_up_gradient(&mut self, g: &[f64]) {
        if let Some(run) = self.memory.warm_up.as_mut() {
            run.gradient0 = g.to_vec();
        }
    }

    /// After a step: counts a warm-up step that moved, and after the last one (or when
    /// the gradient could not be formed where it went) lets the watchdog decide where the
    /// run goes on.
    pub(super) fn after_warm_up_step(&mut self, step: Step) -> Step {
        let Step::Moved { theta, cost, kv } = step else {
            return step;
        };
        let Some(mut run) = self.memory.warm_up.take() else {
            return Step::Moved { theta, cost, kv };
        };
        run.left -= 1;
        let failed = self.memory.gradient_failure.is_some();
        if run.left == 0 || failed {
            let reached = (!failed).then_some((theta, cost));
            return self.end_warm_up(run, reached, kv);
        }
        self.memory.warm_up = Some(run);
        Step::Moved { theta, cost, kv }
    }

    /// A warm-up step that failed numerically (a direction solve, a non-finite value;
    /// `reason`): the watchdog takes the run back to `θ₀` (KV `warm_up_failure`). `None`
    /// outside a warm-up.
    pub(super) fn warm_up_failed(&mut self, reason: &str, kv: &mut KV) -> Option<Step> {
        let run = self.memory.warm_up.take()?;
        kv.insert("warm_up_failure", reason.to_string().into());
        Some(self.end_warm_up(run, None, std::mem::take(kv)))
    }

    /// The watchdog at the end of the warm-up `run`: the run goes on from `reached` (`θ_K` and its loss) if its loss is
    /// below `L(θ₀)`, otherwise (or when the warm-up failed, `reached = None`) from `θ₀`; then as at the start of a run with the configured
    /// settings (λ₀, no momentum memory, no step made ahead with the warm-up's settings).
    pub(super) fn end_warm_up(
        &mut self,
        run: WarmUpRun,
        reached: Option<(Vec<f64>, f64)>,
        mut kv: KV,
    ) -> Step {
        let kept = reached.filter(|(_, cost)| *cost < run.loss0);
        kv.insert(
            "watchdog",
            if kept.is_some() {
                "kept"
            } else {
                "back_to_start"
            }
            .into(),
        );
        let (theta, cost, gradient, gradient_failure) = match kept {
            Some((theta, cost)) => (
                theta,
                cost,
                self.memory.gradient.take(),
                self.memory.gradient_failure.take(),
            ),
            None => {
                let at = GradientAt {
                    theta: run.theta0.clone(),
                    gradient: run.gradient0,
                };
                (run.theta0, run.loss0, Some(at), None)
            }
        };
        self.memory = Memory {
            gradient,
            gradient_failure,
            ..Memory::default()
        };
        self.direction_solver.reset();
        self.damping = self.start_damping();
        Step::Moved { theta, cost, kv }
    }
}
