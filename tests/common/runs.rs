//! Running a natgrad solver and recording every iterate.

use argmin::core::observers::{Observe, ObserverMode};
use argmin::core::{Executor, State, TerminationReason, KV};
use natgrad::observe::Iterates;
use natgrad::{FitProblem, Loss, Metric, Model, NaturalGradient, NgState};
use std::sync::{Arc, Mutex};

/// Runs `solver` for `iters` steps from `theta0`; returns the iterates θ_1..θ_N (fewer if
/// the run stops early), the final θ and the termination reason.
pub fn trajectory<Mo, Lo, Me>(
    problem: FitProblem<Mo, Lo, Me>,
    solver: NaturalGradient,
    theta0: &[f64],
    iters: u64,
) -> (Vec<Vec<f64>>, Vec<f64>, String)
where
    Mo: Model + 'static,
    Lo: Loss + 'static,
    Me: Metric + 'static,
{
    let obs = Iterates::default();
    let res = Executor::new(problem, solver)
        .configure(|s| s.param(theta0.to_vec()).max_iters(iters))
        .add_observer(obs.clone(), ObserverMode::Always)
        .run()
        .unwrap();
    let reason = format!("{:?}", res.state().get_termination_reason());
    let last = res.state().get_param().unwrap().clone();
    let its = obs.get();
    (its, last, reason)
}

/// `k` natgrad steps on `problem` from `theta0` with λ = 0, α = 1, no stopping test and
/// the given linear solver: Gauss–Newton steps (natural-gradient steps in the metric).
pub fn plain_steps<Mo, Lo, Me>(
    problem: FitProblem<Mo, Lo, Me>,
    theta0: &[f64],
    solver: natgrad::LinearSolver,
    k: u64,
) -> Vec<f64>
where
    Mo: Model + 'static,
    Lo: Loss + 'static,
    Me: Metric + 'static,
{
    let ng = NaturalGradient::new()
        .with_step_size(1.0)
        .unwrap()
        .with_damping(0.0)
        .unwrap()
        .with_linear_solver(solver)
        .unwrap()
        .with_tolerances(natgrad::Tolerances::NONE)
        .unwrap();
    let res = Executor::new(problem, ng)
        .configure(|s| s.param(theta0.to_vec()).max_iters(k))
        .run()
        .unwrap();
    res.state().get_param().unwrap().clone()
}

/// [`plain_steps`] on the argmin least-squares problem `problem` (`least_squares`).
pub fn gauss_newton_steps<O>(
    problem: O,
    theta0: &[f64],
    solver: natgrad::LinearSolver,
    k: u64,
) -> Vec<f64>
where
    O: argmin::core::Operator
        + argmin::core::Jacobian<Param = <O as argmin::core::Operator>::Param>
        + Send
        + Sync
        + 'static,
    <O as argmin::core::Operator>::Param: natgrad::argmin_adapter::ArgminVector,
    <O as argmin::core::Operator>::Output: natgrad::argmin_adapter::ArgminVector,
    <O as argmin::core::Jacobian>::Jacobian: natgrad::argmin_adapter::AsDenseJacobian,
{
    let problem = natgrad::argmin_adapter::least_squares(problem, theta0).unwrap();
    plain_steps(problem, theta0, solver, k)
}

/// The text of a run's `TerminationReason::SolverExit` (the cause natgrad names); panics
/// on any other reason.
pub fn exit_reason<S: State>(state: &S) -> String {
    match state.get_termination_reason() {
        Some(TerminationReason::SolverExit(s)) => s.clone(),
        other => panic!("expected SolverExit, got {other:?}"),
    }
}

/// The text of a finished run's termination reason, whatever it is.
pub fn reason_text<S: State>(state: &S) -> String {
    state.get_termination_reason().unwrap().text().to_string()
}

/// Every iteration's KV, in order (an observer: `add_observer(log.clone(), ObserverMode::Always)`).
#[derive(Clone, Default)]
pub struct KvLog(pub Arc<Mutex<Vec<KV>>>);

impl KvLog {
    /// The KVs observed so far.
    pub fn get(&self) -> Vec<KV> {
        self.0.lock().unwrap().clone()
    }
}

impl Observe<NgState> for KvLog {
    fn observe_iter(&mut self, _: &NgState, kv: &KV) -> Result<(), argmin::core::Error> {
        self.0.lock().unwrap().push(kv.clone());
        Ok(())
    }
}
