//! Comparing optimisers fairly: settings chosen by a small grid on the training loss
//! (from initialisations that are not the evaluation ones), then every optimiser run from
//! the same evaluation initialisations.

use crate::report::quantile;
use crate::runner::{run, Optimiser, Run, TestFn};

/// A momentum rule with its label, parametrised by β.
pub type Rule = (&'static str, fn(f64) -> Momentum);
use argmin::core::{CostFunction, Error, Gradient};
use natgrad::{NaturalGradient, NgState};
use std::sync::Arc;

/// An optimiser with its grid of candidate settings.
pub struct Candidate {
    /// Label in tables and figures.
    pub label: &'static str,
    /// `(settings description, optimiser)`; a single entry means nothing to choose.
    pub grid: Vec<(String, Optimiser)>,
}

/// Median final training loss of each grid point over `inits` after `iters` iterations;
/// returns the best `(settings, optimiser)` (non-finite losses rank last).
pub fn select<P, F>(
    make: &F,
    cand: &Candidate,
    inits: &[Vec<f64>],
    iters: u64,
) -> Result<(String, Optimiser), Error>
where
    F: Fn() -> P,
    P: CostFunction<Param = Vec<f64>, Output = f64>
        + Gradient<Param = Vec<f64>, Gradient = Vec<f64>>
        + 'static,
    NaturalGradient: argmin::core::Solver<P, NgState>,
{
    if cand.grid.len() == 1 {
        return Ok(cand.grid[0].clone());
    }
    let no_test: TestFn = Arc::new(|_| 0.0);
    let mut best: Option<(f64, usize)> = None;
    for (i, (_, opt)) in cand.grid.iter().enumerate() {
        let finals: Vec<f64> = inits
            .iter()
            .map(|th| {
                run(make(), th, opt, iters, iters, no_test.clone())
                    .map(|r| r.last().train)
                    .map(|v| if v.is_finite() { v } else { f64::INFINITY })
            })
            .collect::<Result<_, _>>()?;
        let score = quantile(&finals, 0.5);
        if best.is_none_or(|(b, _)| score < b) {
            best = Some((score, i));
        }
    }
    Ok(cand.grid[best.map_or(0, |b| b.1)].clone())
}

/// Runs `opt` from every initialisation.
pub fn evaluate<P, F>(
    make: &F,
    opt: &Optimiser,
    inits: &[Vec<f64>],
    iters: u64,
    every: u64,
    test: TestFn,
    mut tick: impl FnMut(),
) -> Result<Vec<Run>, Error>
where
    F: Fn() -> P,
    P: CostFunction<Param = Vec<f64>, Output = f64>
        + Gradient<Param = Vec<f64>, Gradient = Vec<f64>>
        + 'static,
    NaturalGradient: argmin::core::Solver<P, NgState>,
{
    inits
        .iter()
        .map(|th| {
            let r = run(make(), th, opt, iters, every, test.clone());
            tick();
            r
        })
        .collect()
}

use natgrad::LinearSolver;
use natgrad::Momentum;
use natgrad::StepControl;

/// A natgrad optimiser: rule, step control, fixed damping, the automatic linear solver.
pub fn ng(momentum: Momentum, control: StepControl, alpha: f64, damping: f64) -> Optimiser {
    Optimiser::Natgrad(Box::new(
        NaturalGradient::new()
            .with_momentum(momentum)
            .and_then(|s| s.with_step_size(alpha))
            .and_then(|s| s.with_step_control(control))
            .and_then(|s| s.with_damping(damping))
            .and_then(|s| s.with_linear_solver(LinearSolver::Auto(Default::default())))
            .expect("valid settings"),
    ))
}

/// The standard comparison set of the seed: gradient descent, L-BFGS, and natural
/// gradient with its momentum rules; momentum rules get a grid over β and step control.
pub fn standard_candidates(rules: &[Rule], damping: f64, gd_steps: &[f64]) -> Vec<Candidate> {
    let mut c = vec![
        Candidate {
            label: "gradient descent",
            grid: gd_steps
                .iter()
                .map(|&a| {
                    (
                        format!("α = {a}"),
                        ng(Momentum::GradientDescent, StepControl::Fixed, a, 0.0),
                    )
                })
                .collect(),
        },
        Candidate {
            label: "L-BFGS (argmin)",
            grid: vec![("m = 10, Moré–Thuente".into(), Optimiser::Lbfgs { m: 10 })],
        },
        Candidate {
            label: "NGD plain",
            grid: vec![(
                format!("log-grid line search, λ = {damping:e}"),
                ng(
                    Momentum::Plain,
                    StepControl::LogGrid { max_halvings: 10 },
                    1.0,
                    damping,
                ),
            )],
        },
    ];
    for &(label, rule) in rules {
        let mut grid = Vec::new();
        for beta in [0.3, 0.6, 0.9] {
            grid.push((
                format!("β = {beta}, log-grid, λ = {damping:e}"),
                ng(
                    rule(beta),
                    StepControl::LogGrid { max_halvings: 10 },
                    1.0,
                    damping,
                ),
            ));
            for alpha in [0.5, 1.0] {
                grid.push((
                    format!("β = {beta}, α = {alpha} fixed, λ = {damping:e}"),
                    ng(rule(beta), StepControl::Fixed, alpha, damping),
                ));
            }
        }
        c.push(Candidate { label, grid });
    }
    c
}
