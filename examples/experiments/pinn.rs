//! PINNs: advection–diffusion (ε = 0.1, 0.02; m = 100, 1 000), Poisson 2D, the heat
//! equation, a nonlinear equation (−Δu + u³ = f) and a Neumann problem, all posed through
//! `natgrad::pde`; relative L² and RMS error against the exact solution, against
//! iteration and wall time.
//!
//! Natural gradient runs in two settings per problem: the dense-Gram JAX reference's
//! (fixed damping λ = 1e-6, log-grid line search) and the best found for the problem
//! ([`Tuned`]); the momentum rules run on top of the tuned setting.

use crate::plot::{bands, write_csv, Band};
use crate::report::{band, csv_lines, print_table, row, Row};
use crate::runner::{self, Optimiser, Run};
use crate::Budget;
use indicatif::{ProgressBar, ProgressStyle};
use natgrad::problems::pinn::{
    advection_diffusion, default_solver, heat_1d, neumann_2d, nonlinear_2d, poisson_2d, PinnCase,
    RECIPE_BETA, RECIPE_DAMPING, RECIPE_DAMPING_RANGE, RECIPE_FOLLOW_T_MAX, RECIPE_WARM_UP,
};
use natgrad::StepControl;
use natgrad::StepRule;
use natgrad::{DampingRule, LevenbergMarquardt, LinearSolver, NaturalGradient};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

/// Fixed damping of the reference natural-gradient runs (as in the dense JAX reference).
const DAMPING: f64 = 1e-6;

/// The relative L² error of the goal for advection–diffusion.
const GOAL_REL_L2: f64 = 1e-7;

/// The natural-gradient setting chosen for a problem (from short runs at m = 1 000 and on
/// Poisson; see docs/pinn.md).
#[derive(Clone, Copy)]
enum Tuned {
    /// Fixed step α with fixed damping λ; a momentum rule with coefficient β takes
    /// `α(1 − β)`, so that its steady-state step `α(1 − β)/(1 − β)` stays α.
    Fixed { alpha: f64, damping: f64 },
    /// Levenberg–Marquardt damping in `[min, 100]` from λ = `start`, step α = 1, with
    /// Armijo backtracking or without a line search.
    Lm { start: f64, min: f64, armijo: bool },
    /// No damping: the minimum-norm least-squares direction (truncated pseudo-inverse,
    /// singular values below `rcond·σ_max` dropped) with the log-grid line search — the
    /// setting of the published energy natural gradient. The grid reaches 2⁻³⁰: the first
    /// pseudo-inverse steps are huge, and 2⁻¹⁵ is not small enough for them on Poisson.
    LeastSquares { rcond: f64 },
    /// Fixed damping λ with Armijo backtracking from α = 1 (heat, nonlinear, Neumann:
    /// the least-squares setting does not leave the start there, and λ stays where
    /// Levenberg–Marquardt would put it after the first steps).
    FixedArmijo { damping: f64 },
}

impl Tuned {
    fn describe(self, beta: f64) -> String {
        match self {
            Tuned::Fixed { alpha, damping } => {
                format!("fixed α = {}, λ = {damping:e}", alpha * (1.0 - beta))
            }
            Tuned::Lm { start, min, armijo } => format!(
                "LM damping λ ∈ [{min:e}, 1e2] from {start:e}, α = 1{}",
                if armijo { ", Armijo" } else { "" }
            ),
            Tuned::LeastSquares { rcond } => {
                format!("least squares, rcond = {rcond:e}, λ = 0, log-grid 2^-j, j ≤ 30")
            }
            Tuned::FixedArmijo { damping } => {
                format!("λ = {damping:e}, Armijo from α = 1")
            }
        }
    }

    fn solver(self, momentum: StepRule, linear: &LinearSolver) -> NaturalGradient {
        let base = NaturalGradient::new()
            .with_step_rule(momentum)
            .and_then(|s| s.with_linear_solver(linear.clone()));
        match self {
            Tuned::Fixed { alpha, damping } => base
                .and_then(|s| s.with_step_size(alpha * (1.0 - momentum.beta())))
                .and_then(|s| s.with_damping(damping)),
            Tuned::Lm { start, min, armijo } => base
                .and_then(|s| s.with_damping(start))
                // The threshold rule of the runs recorded in docs/pinn.md.
                .and_then(|s| {
                    s.with_levenberg_marquardt(LevenbergMarquardt {
                        min,
                        max: 1e2,
                        rule: DampingRule::Threshold,
                    })
                })
                .and_then(|s| {
                    s.with_step_control(if armijo {
                        StepControl::armijo()
                    } else {
                        StepControl::Fixed
                    })
                }),
            Tuned::LeastSquares { rcond } => NaturalGradient::new()
                .with_step_rule(momentum)
                .and_then(|s| s.with_linear_solver(LinearSolver::LeastSquares { rcond }))
                .and_then(|s| s.with_damping(0.0))
                .and_then(|s| s.with_step_control(StepControl::LogGrid { max_halvings: 30 })),
            Tuned::FixedArmijo { damping } => base
                .and_then(|s| s.with_damping(damping))
                .and_then(|s| s.with_step_control(StepControl::armijo())),
        }
        .expect("valid settings")
    }
}

struct Config {
    name: &'static str,
    /// Interior points: decides the budget.
    m: usize,
    build: fn() -> natgrad::Result<PinnCase>,
    tuned: Tuned,
    /// Sample-space Cholesky when `n < p` (advection–diffusion), parameter-space Cholesky
    /// otherwise (Poisson, p = 257 < n = 1 020).
    linear: LinearSolver,
    /// Iterations (natural gradient, first-order methods) of the accuracy records.
    records: (u64, u64),
}

fn configs(budget: Budget, explicit: bool) -> Vec<Config> {
    let ad_fixed = Tuned::Fixed {
        alpha: 1.0,
        damping: DAMPING,
    };
    let ad_lm = Tuned::Lm {
        start: 1e-3,
        min: 1e-9,
        armijo: true,
    };
    let all = vec![
        Config {
            name: "ad_eps0.1_m100",
            m: 100,
            build: || advection_diffusion(0.1, 100, &[32, 32], 1.0),
            // λ = 1e-8 with Armijo reaches 9.0e-9 here, but Nesterov on top of it stalls
            // above its initial loss (docs/pinn.md), so the records keep this setting.
            tuned: ad_fixed,
            linear: LinearSolver::SampleCholesky,
            records: (300, 3000),
        },
        Config {
            name: "ad_eps0.02_m100",
            m: 100,
            build: || advection_diffusion(0.02, 100, &[32, 32], 1.0),
            tuned: ad_lm,
            linear: LinearSolver::SampleCholesky,
            records: (300, 3000),
        },
        Config {
            name: "ad_eps0.1_m1000",
            m: 1000,
            build: || advection_diffusion(0.1, 1000, &[32, 32], 1.0),
            tuned: ad_fixed,
            linear: LinearSolver::SampleCholesky,
            records: (250, 2000),
        },
        Config {
            name: "ad_eps0.02_m1000",
            m: 1000,
            build: || advection_diffusion(0.02, 1000, &[32, 32], 1.0),
            tuned: ad_lm,
            linear: LinearSolver::SampleCholesky,
            // The tuned setting falls below 1e-7 after about 1 000 steps (seeds 0–2).
            records: (1500, 2000),
        },
        Config {
            name: "poisson2d",
            m: 900,
            build: || poisson_2d(30, 120, &[64], 1.0),
            tuned: Tuned::LeastSquares { rcond: 1e-8 },
            linear: LinearSolver::Cholesky,
            records: (1500, 3000),
        },
        Config {
            name: "heat1d",
            m: 900,
            build: || heat_1d(30, &[64]),
            // A fixed λ = 1e-8 crawls at 1.0e-6 from step 1 300 on; λ = 1e-12 keeps the
            // loss falling but Nesterov diverges with it; LM from 1e-8 down to 1e-12 does
            // both (docs/pinn.md).
            tuned: Tuned::Lm {
                start: 1e-8,
                min: 1e-12,
                armijo: true,
            },
            linear: LinearSolver::Cholesky,
            records: (2000, 3000),
        },
        Config {
            name: "nonlinear2d",
            m: 900,
            build: || nonlinear_2d(30, 120, &[64]),
            tuned: Tuned::FixedArmijo { damping: 1e-8 },
            linear: LinearSolver::Cholesky,
            records: (600, 3000),
        },
        Config {
            name: "neumann2d",
            m: 900,
            build: || neumann_2d(30, 120, &[64]),
            tuned: Tuned::FixedArmijo { damping: 1e-8 },
            linear: LinearSolver::Cholesky,
            records: (600, 3000),
        },
    ];
    if budget.quick {
        all.into_iter().take(1).collect()
    } else if explicit {
        all
    } else {
        all.into_iter().filter(|c| c.m != 1000).collect()
    }
}

/// Iterations for (natural gradient, first-order methods).
fn iterations(budget: Budget, explicit: bool, cfg: &Config) -> (u64, u64) {
    match (budget.quick, explicit) {
        (true, _) => (8, 60),
        (false, true) => cfg.records,
        (false, false) => (100, 1000),
    }
}

/// (label, settings, optimiser, natural-gradient budget?); `n` outputs and `p` parameters
/// pick the default recipe's space.
fn optimisers(cfg: &Config, n: usize, p: usize) -> Vec<(&'static str, String, Optimiser, bool)> {
    let gd = NaturalGradient::new()
        .with_step_rule(StepRule::GradientDescent)
        .and_then(|s| s.with_step_control(StepControl::armijo()))
        .expect("valid");
    let grid = NaturalGradient::new()
        .with_step_control(StepControl::LogGrid { max_halvings: 15 })
        .and_then(|s| s.with_damping(DAMPING))
        .and_then(|s| s.with_linear_solver(cfg.linear.clone()))
        .expect("valid");
    let tuned = |beta: f64| cfg.tuned.describe(beta);
    let ngd = |m: StepRule| Optimiser::Natgrad(Box::new(cfg.tuned.solver(m, &cfg.linear)));
    vec![
        (
            "gradient descent",
            "Armijo backtracking from α = 1".into(),
            Optimiser::Natgrad(Box::new(gd)),
            false,
        ),
        (
            "L-BFGS (argmin)",
            "m = 10, Moré–Thuente".into(),
            Optimiser::Lbfgs { m: 10 },
            false,
        ),
        (
            "NGD plain, grid",
            format!("log-grid 2^-j, j ≤ 15, λ = {DAMPING:e} (JAX reference)"),
            Optimiser::Natgrad(Box::new(grid)),
            true,
        ),
        ("NGD plain, tuned", tuned(0.0), ngd(StepRule::Plain), true),
        (
            "NGD Nesterov",
            format!("β = 0.3, {}", tuned(0.3)),
            ngd(StepRule::Nesterov { beta: 0.3 }),
            true,
        ),
        (
            "NGD heavy ball",
            format!("β = 0.3, {}", tuned(0.3)),
            ngd(StepRule::HeavyBall { beta: 0.3 }),
            true,
        ),
        (
            "NGD default recipe",
            format!(
                "pinn::default_solver: watchdog warm-up ({} plain full steps, λ = {:e}), then \
                 heavy ball β = {RECIPE_BETA}, LM damping (narrow threshold rule) λ ∈ \
                 [{:e}, {:e}] from {RECIPE_DAMPING:e} following Armijo below t = 2^{}, {}",
                RECIPE_WARM_UP.steps,
                RECIPE_WARM_UP.damping,
                RECIPE_DAMPING_RANGE.0,
                RECIPE_DAMPING_RANGE.1,
                RECIPE_FOLLOW_T_MAX.log2(),
                if p <= n {
                    "Cholesky"
                } else {
                    "sample-space Cholesky"
                }
            ),
            Optimiser::Natgrad(Box::new(default_solver(n, p))),
            true,
        ),
    ]
}

/// The best error along a run (relative L² and RMS, which differ by a constant factor on
/// a fixed grid), where it was reached, and when the run first got below the goal.
fn records(r: &Run, rms_per_rel: f64) -> Value {
    let best = r
        .curve
        .iter()
        .filter(|p| p.test.is_finite())
        .min_by(|a, b| a.test.total_cmp(&b.test));
    let goal = r.curve.iter().find(|p| p.test <= GOAL_REL_L2);
    json!({
        "best_rel_l2": best.map(|p| p.test),
        "best_rms": best.map(|p| p.test * rms_per_rel),
        "best_iter": best.map(|p| p.iter),
        "best_seconds": best.map(|p| p.seconds),
        "first_rel_l2_below_1e-7": goal.map(|p| json!({"iter": p.iter, "seconds": p.seconds})),
        "final_rel_l2": r.last().test,
        "final_rms": r.last().test * rms_per_rel,
        "iterations": r.last().iter,
        "seconds": r.last().seconds,
        "stop": r.stop,
    })
}

/// Runs the PINN experiment; `explicit` (the `pinn` command on its own) is the full
/// accuracy-record budget with the m = 1 000 cases, otherwise (inside `all`) the m = 100
/// cases and Poisson with a reduced budget. `only` keeps one configuration (by name).
pub fn run(
    out: &Path,
    budget: Budget,
    explicit: bool,
    only: Option<&str>,
    optimiser: Option<&str>,
) -> Result<(Vec<Row>, Value), Box<dyn std::error::Error>> {
    let cfgs: Vec<Config> = configs(budget, explicit)
        .into_iter()
        .filter(|c| only.is_none_or(|o| o == c.name))
        .collect();
    if cfgs.is_empty() {
        return Err(format!("no PINN configuration named {only:?} in this run").into());
    }
    let bar = ProgressBar::new((cfgs.len() * 7) as u64);
    bar.set_style(ProgressStyle::with_template("pinn         {bar:40} {pos}/{len} {msg}").unwrap());
    let mut rows = Vec::new();
    let mut details = serde_json::Map::new();
    let mut csv = Vec::new();
    for cfg in &cfgs {
        let (mut by_time, mut by_iter) = (Vec::new(), Vec::new());
        let (ng_iters, fo_iters) = iterations(budget, explicit, cfg);
        let sizes = (cfg.build)()?.problem;
        let opts: Vec<_> = optimisers(cfg, sizes.n_outputs(), sizes.n_params())
            .into_iter()
            .filter(|o| optimiser.is_none_or(|f| o.0.contains(f)))
            .collect();
        for (label, settings, opt, natural) in &opts {
            let iters = if *natural { ng_iters } else { fo_iters };
            bar.set_message(format!("{} / {label}", cfg.name));
            let case = Arc::new((cfg.build)()?);
            let theta0 = case.problem.model().net().init_params(0);
            // RMS = relative L² · ‖u‖₂ / √k on the k grid points.
            let u_norm = case.exact.iter().map(|u| u * u).sum::<f64>().sqrt();
            let rms_per_rel = u_norm / (case.exact.len() as f64).sqrt();
            let eval = case.clone();
            let test =
                Arc::new(move |th: &[f64]| eval.errors(th).map(|e| e.rel_l2).unwrap_or(f64::NAN));
            let problem = (cfg.build)()?.problem;
            // The error on the fine grid costs a Taylor pass over 10 000 points: the records
            // evaluate it at 1 % steps, the default run (inside `all`) at 4 % steps.
            let every = (iters / if explicit { 100 } else { 25 }).max(1);
            let r: Run = runner::run(problem, &theta0, opt, iters, every, test)?;
            let rms = case.errors(&r.theta)?.rms;
            let name = format!("{} / {label}", cfg.name);
            csv.extend(csv_lines(&name, std::slice::from_ref(&r)));
            by_time.push(Band {
                label: label.to_string(),
                points: band(std::slice::from_ref(&r), |p| p.test, true),
            });
            by_iter.push(Band {
                label: label.to_string(),
                points: band(std::slice::from_ref(&r), |p| p.test, false),
            });
            let mut rw = row(
                &name,
                settings.clone(),
                std::slice::from_ref(&r),
                Some(("rms_error", vec![rms])),
            );
            details.insert(name.clone(), records(&r, rms_per_rel));
            rw.optimiser = name;
            rows.push(rw);
            bar.inc(1);
        }
        for (curves, x, file) in [
            (&by_time, "seconds", "time"),
            (&by_iter, "iteration", "iter"),
        ] {
            bands(
                &out.join(format!("pinn_{}_{file}.svg", cfg.name)),
                &format!("PINN {}: relative L² error vs {x}", cfg.name),
                x,
                "relative L² error",
                curves,
            )?;
        }
    }
    bar.finish_and_clear();
    write_csv(
        &out.join("pinn.csv"),
        "config / optimiser,run,iter,seconds,train_loss,rel_l2_error",
        csv,
    )?;
    print_table("PINN", "loss ½‖R‖²", "relative L² error", &rows);
    print_records(&details);
    Ok((rows, Value::Object(details)))
}

/// The accuracy records: best error of every optimiser (markdown, for docs/pinn.md).
fn print_records(details: &serde_json::Map<String, Value>) {
    println!("\n### PINN accuracy records (best along each run)\n");
    println!(
        "| problem / optimiser | best rel. L² | best RMS | at iter | at s | rel. L² ≤ 1e-7 at |"
    );
    println!("|---|---|---|---|---|---|");
    let num = |v: &Value| v.as_f64().map_or("–".into(), |x| format!("{x:.2e}"));
    for (name, d) in details {
        let goal = match &d["first_rel_l2_below_1e-7"] {
            Value::Null => "–".to_string(),
            g => format!(
                "iter {}, {:.1} s",
                g["iter"],
                g["seconds"].as_f64().unwrap_or(0.0)
            ),
        };
        println!(
            "| {name} | {} | {} | {} | {:.1} | {goal} |",
            num(&d["best_rel_l2"]),
            num(&d["best_rms"]),
            d["best_iter"],
            d["best_seconds"].as_f64().unwrap_or(f64::NAN),
        );
    }
}
