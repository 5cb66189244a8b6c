//! When a run ends: argmin's own tests (`max_iters`, target cost), read ahead as a
//! [`Horizon`]; the stopping tests of [`crate::stopping`] on what the last step measured
//! (run in `Solver::terminate`); and the `SolverExit` reason of every other end.

use super::NaturalGradient;
use super::NAME;
use crate::line_search::StepSearch;
use crate::stopping::Converged;
use argmin::core::{State, TerminationReason};

/// What argmin's executor will do after an iteration, read from the state before it:
/// whether another iteration follows (`max_iters`) and its target cost. Used only to
/// decide whether to make the next step ahead ([`Ahead`](super::memory::Ahead)); a wrong guess costs time, never
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

impl<S: StepSearch> NaturalGradient<S> {
    /// The stopping test that fires on what the last step measured, if any.
    pub(super) fn converged(&self) -> Option<Converged> {
        self.memory
            .record
            .as_ref()
            .and_then(|r| self.tolerances.check(r))
    }
}

/// `TerminationReason::SolverExit` with the solver's name in front of the reason.
pub(super) fn exit(reason: impl std::fmt::Display) -> TerminationReason {
    TerminationReason::SolverExit(format!("`{NAME}`: {reason}"))
}
