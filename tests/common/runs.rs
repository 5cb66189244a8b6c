//! Running a natgrad solver and recording every iterate.

use argmin::core::observers::ObserverMode;
use argmin::core::{Executor, State};
use natgrad::observe::Iterates;
use natgrad::{Loss, Metric, Model, NaturalGradient, Problem};

/// Runs `solver` for `iters` steps from `theta0`; returns the iterates θ_1..θ_N (fewer if
/// the run stops early), the final θ and the termination reason.
pub fn trajectory<Mo, Lo, Me>(
    problem: Problem<Mo, Lo, Me>,
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
