//! Any argmin line search as the step control of [`crate::NaturalGradient`].
//!
//! [`StepSearch`] is what the solver asks of a step control: given `θ_k`, `L(θ_k)`, `g_k`
//! and the step `δ_k`, return `θ_{k+1} = θ_k + tδ_k` and its loss. [`StepControl`]
//! (fixed, Armijo, log grid) implements it, and so does [`ArgminLineSearch`], which runs
//! any argmin line search (`MoreThuenteLineSearch`, `HagerZhangLineSearch` and
//! `BacktrackingLineSearch` are tested) along `δ_k` from `t = 1` in an inner argmin
//! [`Executor`], as
//! argmin's own `LBFGS` and `GaussNewtonLS` run theirs. Pass it with
//! [`NaturalGradient::with_line_search`](crate::NaturalGradient::with_line_search).

use crate::linalg::dot;
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::FitProblem;
use crate::step_control::{take_step, Accepted, StepControl};
use argmin::core::{CostFunction, Executor, Gradient, IterState, LineSearch, Solver, State};
use std::borrow::Cow;

/// Where a step control starts: `θ_k`, `L(θ_k)`, `g_k` and the step `δ_k` (momentum and
/// α included), all on the step's samples.
#[derive(Debug, Clone, Copy)]
pub struct StepStart<'a> {
    /// `θ_k`.
    pub theta: &'a [f64],
    /// `L(θ_k)`.
    pub loss: f64,
    /// `g_k = J_kᵀ∇_yℓ`.
    pub gradient: &'a [f64],
    /// `δ_k`.
    pub delta: &'a [f64],
}

/// How much of the step `δ_k` is taken; implemented by [`StepControl`] and
/// [`ArgminLineSearch`] only (sealed: any argmin line search enters through
/// [`ArgminLineSearch`]).
pub trait StepSearch: Clone + sealed::Sealed {
    /// `θ_{k+1} = θ_k + tδ_k` and its loss on `problem` (the step's samples). Errors: the
    /// problem's own, and [`crate::Error::LineSearch`] when an argmin line search fails.
    #[doc(hidden)]
    fn search<Mo: Model, Lo: Loss, Me: Metric>(
        &self,
        problem: &FitProblem<Mo, Lo, Me>,
        start: &StepStart<'_>,
    ) -> crate::Result<Accepted>;
}

/// Seals [`StepSearch`]: its method returns a crate-internal type.
mod sealed {
    /// Implemented by the crate's step controls only.
    pub trait Sealed {}
    impl Sealed for crate::step_control::StepControl {}
    impl<L> Sealed for super::ArgminLineSearch<L> {}
}

impl StepSearch for StepControl {
    fn search<Mo: Model, Lo: Loss, Me: Metric>(
        &self,
        problem: &FitProblem<Mo, Lo, Me>,
        s: &StepStart<'_>,
    ) -> crate::Result<Accepted> {
        take_step(self, problem, s)
    }
}

/// The line-search problem `t ↦ L(θ)` with its gradient, type-erased so that one line
/// search type serves every natgrad problem.
pub struct SearchProblem<'a> {
    cost: &'a CostFn<'a>,
    gradient: &'a GradientFn<'a>,
}

/// `θ ↦ L(θ)`, argmin's `CostFunction::cost` of the problem.
type CostFn<'a> = dyn Fn(&Vec<f64>) -> Result<f64, argmin::core::Error> + Sync + 'a;

/// `θ ↦ ∇L(θ)`, argmin's `Gradient::gradient` of the problem.
type GradientFn<'a> = dyn Fn(&Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> + Sync + 'a;

impl CostFunction for SearchProblem<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, x: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        (self.cost)(x)
    }
}

impl Gradient for SearchProblem<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, x: &Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> {
        (self.gradient)(x)
    }
}

/// The state of an argmin line search on `Vec<f64>`.
pub type SearchState = IterState<Vec<f64>, Vec<f64>, (), (), (), f64>;

/// An argmin line search `L` as a natgrad step control, e.g.
/// `ArgminLineSearch::new(MoreThuenteLineSearch::new())`.
///
/// Each step runs `L` along `δ_k` from `θ_k` with initial step length 1 and at most
/// [`max_iters`](Self::with_max_iters) iterations (default 20); `t` is read off the
/// returned point. A `δ_k` that is no descent direction (`g_kᵀδ_k ≥ 0`, possible with
/// momentum) is taken whole (`t = 1`, KV `line_search` = `…_skipped_not_descent`), as
/// argmin's line searches require a descent direction.
///
/// argmin's `BacktrackingLineSearch` shrinks `t` by its factor `rho`, **0.9 by default**
/// (not ½): from `t = 1` it tries `1, 0.9, 0.81, …` and stops at the first `t` where its
/// condition holds. Set `.rho(0.5)` for halving, or use [`StepControl::armijo`].
#[derive(Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ArgminLineSearch<L> {
    search: L,
    max_iters: u64,
}

impl<L> std::fmt::Debug for ArgminLineSearch<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgminLineSearch")
            .field("search", &std::any::type_name::<L>())
            .field("max_iters", &self.max_iters)
            .finish()
    }
}

impl<L> ArgminLineSearch<L> {
    /// Wraps an argmin line search.
    pub fn new(search: L) -> Self {
        Self {
            search,
            max_iters: 20,
        }
    }

    /// Iterations of the line search at most per step (≥ 1).
    #[must_use]
    pub fn with_max_iters(mut self, max_iters: u64) -> Self {
        self.max_iters = max_iters.max(1);
        self
    }
}

impl<L> StepSearch for ArgminLineSearch<L>
where
    L: Clone + LineSearch<Vec<f64>, f64> + for<'a> Solver<SearchProblem<'a>, SearchState>,
{
    fn search<Mo: Model, Lo: Loss, Me: Metric>(
        &self,
        problem: &FitProblem<Mo, Lo, Me>,
        s: &StepStart<'_>,
    ) -> crate::Result<Accepted> {
        let cost = |x: &Vec<f64>| problem.cost(x);
        let gradient = |x: &Vec<f64>| problem.gradient(x);
        let inner = SearchProblem {
            cost: &cost,
            gradient: &gradient,
        };
        let name = Solver::<SearchProblem<'_>, SearchState>::name(&self.search).to_string();
        if dot(s.gradient, s.delta) >= 0.0 {
            let mut full = take_step(&StepControl::Fixed, problem, s)?;
            full.note = Cow::Owned(format!("{name}_skipped_not_descent"));
            return Ok(full);
        }
        let failed = |e: argmin::core::Error| crate::Error::LineSearch(format!("{name}: {e}"));
        let mut search = self.search.clone();
        search.search_direction(s.delta.to_vec());
        search.initial_step_length(1.0).map_err(failed)?;
        let res = Executor::new(inner, search)
            .configure(|c| {
                c.param(s.theta.to_vec())
                    .gradient(s.gradient.to_vec())
                    .cost(s.loss)
                    .max_iters(self.max_iters)
            })
            .ctrlc(false)
            .run()
            .map_err(failed)?;
        let state = res.state();
        let theta = state
            .get_param()
            .cloned()
            .unwrap_or_else(|| s.theta.to_vec());
        // t from θ_{k+1} − θ_k = tδ_k, projected on δ_k.
        let moved: Vec<f64> = theta.iter().zip(s.theta).map(|(a, b)| a - b).collect();
        let t = dot(&moved, s.delta) / dot(s.delta, s.delta);
        Ok(Accepted {
            t,
            theta,
            loss: state.get_cost(),
            note: Cow::Owned(name),
        })
    }
}
