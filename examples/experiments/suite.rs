//! Comparing optimisers fairly: settings chosen by a small grid on the training loss
//! (from initialisations that are not the evaluation ones), then every optimiser run from
//! the same evaluation initialisations. Independent runs go to rayon's threads, two at a
//! time on a 2-core machine; every run is sequential inside, so the iterates do not depend
//! on the scheduling.

use crate::report::quantile;
use crate::runner::{run, Optimiser, Run, TestFn};
use argmin::core::{CostFunction, Error, Gradient};
use indicatif::ProgressBar;
use natgrad::{LinearSolver, NaturalGradient, NgState, StepControl, StepRule};
use rayon::prelude::*;
use std::sync::Arc;

/// What the runner needs of a problem: argmin's cost and gradient on `Vec<f64>`.
pub trait Problem:
    CostFunction<Param = Vec<f64>, Output = f64>
    + Gradient<Param = Vec<f64>, Gradient = Vec<f64>>
    + 'static
{
}

impl<P> Problem for P where
    P: CostFunction<Param = Vec<f64>, Output = f64>
        + Gradient<Param = Vec<f64>, Gradient = Vec<f64>>
        + 'static
{
}

/// A momentum rule with its label, parametrised by β.
pub type Rule = (&'static str, fn(f64) -> StepRule);

/// An optimiser with its grid of candidate settings.
pub struct Candidate {
    /// Label in tables and figures.
    pub label: &'static str,
    /// `(settings description, optimiser)`; a single entry means nothing to choose.
    pub grid: Vec<(String, Optimiser)>,
    /// Iteration budget as a multiple of the plan's (first-order methods are run longer,
    /// so that they can be compared with natural gradient at equal wall time too).
    pub budget_factor: u64,
}

/// The budgets of one comparison.
pub struct Plan {
    /// Evaluation initialisations (the table's quartiles are over these).
    pub inits: Vec<Vec<f64>>,
    /// Initialisations of the settings grid (disjoint from `inits`).
    pub grid_inits: Vec<Vec<f64>>,
    /// Iterations of the comparison at equal iterations.
    pub iters: u64,
    /// Iterations of each grid run (0: take the first grid point).
    pub grid_iters: u64,
}

/// What one optimiser did: the settings the grid chose and one run per initialisation.
pub struct Outcome {
    /// The candidate's label.
    pub label: &'static str,
    /// The settings chosen.
    pub settings: String,
    /// One run per evaluation initialisation, in order.
    pub runs: Vec<Run>,
}

/// Chooses each candidate's settings on the grid, then runs it from every initialisation;
/// ticks `bar` once per evaluation run.
pub fn compare<P, F>(
    make: &F,
    cands: &[Candidate],
    plan: &Plan,
    test: TestFn,
    bar: &ProgressBar,
) -> Result<Vec<Outcome>, Error>
where
    F: Fn() -> P + Sync,
    P: Problem,
    NaturalGradient: argmin::core::Solver<P, NgState>,
{
    let every = (plan.iters / 100).max(1);
    cands
        .iter()
        .map(|cand| {
            bar.set_message(format!("{} (grid)", cand.label));
            let (settings, opt) = select(make, cand, plan)?;
            bar.set_message(cand.label.to_string());
            let iters = plan.iters * cand.budget_factor;
            let runs = plan
                .inits
                .par_iter()
                .map(|th| {
                    let r = run(make(), th, &opt, iters, every, test.clone());
                    bar.inc(1);
                    r
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Outcome {
                label: cand.label,
                settings,
                runs,
            })
        })
        .collect()
}

/// Median final training loss of each grid point over the grid initialisations; returns
/// the best `(settings, optimiser)` (non-finite losses rank last, ties to the first).
fn select<P, F>(make: &F, cand: &Candidate, plan: &Plan) -> Result<(String, Optimiser), Error>
where
    F: Fn() -> P + Sync,
    P: Problem,
    NaturalGradient: argmin::core::Solver<P, NgState>,
{
    if cand.grid.len() == 1 || plan.grid_iters == 0 {
        return Ok(cand.grid[0].clone());
    }
    let no_test: TestFn = Arc::new(|_| 0.0);
    let n = plan.grid_inits.len();
    let it = plan.grid_iters;
    let finals = (0..cand.grid.len() * n)
        .into_par_iter()
        .map(|k| {
            let (opt, th) = (&cand.grid[k / n].1, &plan.grid_inits[k % n]);
            run(make(), th, opt, it, it, no_test.clone())
                .map(|r| r.last().train)
                .map(|v| if v.is_finite() { v } else { f64::INFINITY })
        })
        .collect::<Result<Vec<f64>, _>>()?;
    let scores: Vec<f64> = finals.chunks(n).map(|f| quantile(f, 0.5)).collect();
    let best = (0..scores.len()).fold(0, |b, i| if scores[i] < scores[b] { i } else { b });
    Ok(cand.grid[best].clone())
}

/// A natgrad optimiser: rule, step control, fixed damping, the automatic linear solver.
pub fn ng(momentum: StepRule, control: StepControl, alpha: f64, damping: f64) -> Optimiser {
    Optimiser::Natgrad(Box::new(
        NaturalGradient::new()
            .with_step_rule(momentum)
            .and_then(|s| s.with_step_size(alpha))
            .and_then(|s| s.with_step_control(control))
            .and_then(|s| s.with_damping(damping))
            .and_then(|s| s.with_linear_solver(LinearSolver::Auto(Default::default())))
            .expect("valid settings"),
    ))
}

/// The standard comparison set of the seed: gradient descent, L-BFGS (both run
/// `first_order_factor` times longer), and natural gradient with its momentum rules;
/// momentum rules get a grid over β and step control.
pub fn standard_candidates(
    rules: &[Rule],
    damping: f64,
    gd_steps: &[f64],
    first_order_factor: u64,
) -> Vec<Candidate> {
    let log_grid = StepControl::LogGrid { max_halvings: 10 };
    let mut c = vec![
        Candidate {
            label: "gradient descent",
            grid: gd_steps
                .iter()
                .map(|&a| {
                    let opt = ng(StepRule::GradientDescent, StepControl::Fixed, a, 0.0);
                    (format!("α = {a}"), opt)
                })
                .collect(),
            budget_factor: first_order_factor,
        },
        Candidate {
            label: "L-BFGS (argmin)",
            grid: vec![("m = 10, Moré–Thuente".into(), Optimiser::Lbfgs { m: 10 })],
            budget_factor: first_order_factor,
        },
        Candidate {
            label: "NGD plain",
            grid: vec![(
                format!("log-grid line search, λ = {damping:e}"),
                ng(StepRule::Plain, log_grid, 1.0, damping),
            )],
            budget_factor: 1,
        },
    ];
    for &(label, rule) in rules {
        let mut grid = Vec::new();
        for beta in [0.3, 0.6, 0.9] {
            grid.push((
                format!("β = {beta}, log-grid, λ = {damping:e}"),
                ng(rule(beta), log_grid, 1.0, damping),
            ));
            for alpha in [0.5, 1.0] {
                grid.push((
                    format!("β = {beta}, α = {alpha} fixed, λ = {damping:e}"),
                    ng(rule(beta), StepControl::Fixed, alpha, damping),
                ));
            }
        }
        c.push(Candidate {
            label,
            grid,
            budget_factor: 1,
        });
    }
    c
}

/// The four momentum rules of the Mackey–Glass and XOR comparisons.
pub const MOMENTUM_RULES: [Rule; 4] = [
    ("NGD heavy ball", |b| StepRule::HeavyBall { beta: b }),
    ("NGD Nesterov", |b| StepRule::Nesterov { beta: b }),
    ("NGD finite difference", |b| StepRule::FiniteDifference {
        beta: b,
    }),
    ("NGD param. heavy ball", |b| StepRule::ParamHeavyBall {
        beta: b,
    }),
];

/// The wall time at which optimisers are compared: the shortest median run time among
/// them, so that every optimiser's curve reaches it.
pub fn equal_time(outcomes: &[Outcome]) -> f64 {
    outcomes
        .iter()
        .map(|o| {
            quantile(
                &o.runs.iter().map(|r| r.last().seconds).collect::<Vec<_>>(),
                0.5,
            )
        })
        .fold(f64::INFINITY, f64::min)
}
