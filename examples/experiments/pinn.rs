//! PINNs: advection–diffusion (ε = 0.1, 0.02; m = 100, 1 000) and Poisson 2D; relative L²
//! and RMS error against the exact solution, against iteration and wall time.

use crate::plot::{bands, write_csv, Band};
use crate::report::{band, csv_lines, print_table, row, Row};
use crate::runner::{self, Optimiser, Run};
use crate::Budget;
use indicatif::{ProgressBar, ProgressStyle};
use natgrad::problems::pinn::{advection_diffusion, poisson_2d, PinnCase};
use natgrad::Momentum;
use natgrad::StepControl;
use natgrad::{LinearSolver, NaturalGradient};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

/// Fixed damping of the natural-gradient runs (as in the dense JAX reference).
const DAMPING: f64 = 1e-6;

struct Config {
    name: &'static str,
    /// Interior points: decides the budget.
    m: usize,
    build: fn() -> natgrad::Result<PinnCase>,
}

fn configs(budget: Budget, explicit: bool) -> Vec<Config> {
    let all = vec![
        Config {
            name: "ad_eps0.1_m100",
            m: 100,
            build: || advection_diffusion(0.1, 100, &[32, 32], 1.0),
        },
        Config {
            name: "ad_eps0.02_m100",
            m: 100,
            build: || advection_diffusion(0.02, 100, &[32, 32], 1.0),
        },
        Config {
            name: "ad_eps0.1_m1000",
            m: 1000,
            build: || advection_diffusion(0.1, 1000, &[32, 32], 1.0),
        },
        Config {
            name: "ad_eps0.02_m1000",
            m: 1000,
            build: || advection_diffusion(0.02, 1000, &[32, 32], 1.0),
        },
        Config {
            name: "poisson2d",
            m: 900,
            build: || poisson_2d(30, 120, &[64], 1.0),
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
    match (budget.quick, explicit, cfg.m) {
        (true, _, _) => (8, 60),
        (false, true, 1000) => (400, 2000),
        (false, true, _) => (1000, 5000),
        (false, false, _) => (100, 1000),
    }
}

fn ngd(momentum: Momentum, control: StepControl, alpha: f64) -> Optimiser {
    Optimiser::Natgrad(Box::new(
        NaturalGradient::new()
            .with_momentum(momentum)
            .and_then(|s| s.with_step_size(alpha))
            .and_then(|s| s.with_step_control(control))
            .and_then(|s| s.with_damping(DAMPING))
            .and_then(|s| s.with_linear_solver(LinearSolver::Auto(Default::default())))
            .expect("valid settings"),
    ))
}

/// (label, settings, optimiser, natural-gradient budget?)
fn optimisers() -> Vec<(&'static str, String, Optimiser, bool)> {
    let gd = NaturalGradient::new()
        .with_momentum(Momentum::GradientDescent)
        .and_then(|s| s.with_step_control(StepControl::armijo()))
        .expect("valid");
    let grid = StepControl::LogGrid { max_halvings: 15 };
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
            format!("log-grid 2^-j, j ≤ 15, λ = {DAMPING:e}"),
            ngd(Momentum::Plain, grid, 1.0),
            true,
        ),
        (
            "NGD plain, α = ½",
            format!("fixed α = 0.5, λ = {DAMPING:e}"),
            ngd(Momentum::Plain, StepControl::Fixed, 0.5),
            true,
        ),
        (
            "NGD Nesterov",
            format!("β = 0.3, fixed α = 0.5, λ = {DAMPING:e}"),
            ngd(Momentum::Nesterov { beta: 0.3 }, StepControl::Fixed, 0.5),
            true,
        ),
        (
            "NGD heavy ball",
            format!("β = 0.3, fixed α = 0.5, λ = {DAMPING:e}"),
            ngd(Momentum::HeavyBall { beta: 0.3 }, StepControl::Fixed, 0.5),
            true,
        ),
    ]
}

/// Runs the PINN experiment; `explicit` (the `pinn` command on its own) is the full
/// accuracy-record budget with the m = 1 000 cases, otherwise (inside `all`) the m = 100
/// cases and Poisson with a reduced budget.
pub fn run(
    out: &Path,
    budget: Budget,
    explicit: bool,
) -> Result<(Vec<Row>, Value), Box<dyn std::error::Error>> {
    let cfgs = configs(budget, explicit);
    let opts = optimisers();
    let bar = ProgressBar::new((cfgs.len() * opts.len()) as u64);
    bar.set_style(ProgressStyle::with_template("pinn         {bar:40} {pos}/{len} {msg}").unwrap());
    let mut rows = Vec::new();
    let mut details = serde_json::Map::new();
    let mut csv = Vec::new();
    for cfg in &cfgs {
        let mut bands_t = Vec::new();
        let mut cfg_rows = Vec::new();
        let (ng_iters, fo_iters) = iterations(budget, explicit, cfg);
        for (label, settings, opt, natural) in &opts {
            let iters = if *natural { ng_iters } else { fo_iters };
            bar.set_message(format!("{} / {label}", cfg.name));
            let case = Arc::new((cfg.build)()?);
            let theta0 = case.problem.model().net().init(0);
            let eval = case.clone();
            let test =
                Arc::new(move |th: &[f64]| eval.errors(th).map(|e| e.rel_l2).unwrap_or(f64::NAN));
            let problem = (cfg.build)()?.problem;
            let every = (iters / 100).max(1);
            let r: Run = runner::run(problem, &theta0, opt, iters, every, test)?;
            let rms = case.errors(&r.theta)?.rms;
            let name = format!("{} / {label}", cfg.name);
            csv.extend(csv_lines(&name, std::slice::from_ref(&r)));
            bands_t.push(Band {
                label: label.to_string(),
                points: band(std::slice::from_ref(&r), |p| p.test, true),
            });
            let mut rw = row(
                &name,
                settings.clone(),
                std::slice::from_ref(&r),
                Some(("rms_error", vec![rms])),
            );
            // the best error reached along the run, as the issue asks
            let best = r.curve.iter().map(|p| p.test).fold(f64::INFINITY, f64::min);
            details.insert(
                name.clone(),
                json!({"best_rel_l2": best, "final_rms": rms, "stop": r.stop}),
            );
            rw.optimiser = name;
            cfg_rows.push(rw);
            bar.inc(1);
        }
        bands(
            &out.join(format!("pinn_{}.svg", cfg.name)),
            &format!("PINN {}: relative L² error vs wall time", cfg.name),
            "seconds",
            "relative L² error",
            &bands_t,
        )?;
        rows.extend(cfg_rows);
    }
    bar.finish_and_clear();
    write_csv(
        &out.join("pinn.csv"),
        "config / optimiser,run,iter,seconds,train_loss,rel_l2_error",
        csv,
    )?;
    print_table("PINN", "loss ½‖R‖²", "relative L² error", &rows);
    Ok((rows, Value::Object(details)))
}
