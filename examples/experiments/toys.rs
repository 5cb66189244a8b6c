//! The toy problems of docs/math.md §4 with every step rule: final losses, and trajectories in
//! parameter space (the seed's toy slides).

use crate::plot::write_csv;
use crate::report::{csv_field, Quartiles, Row};
use crate::Budget;
use argmin::core::observers::{Observe, ObserverMode};
use argmin::core::{Error, Executor, State, KV};
use natgrad::problems::toys;
use natgrad::{DampingRule, LevenbergMarquardt, NaturalGradient, NgState, StepControl, StepRule};
use plotters::prelude::*;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The rules with their settings: natural-gradient rules α = 0.5, β = 0.5 (β = 0.8 on
/// the local-minima toy, the seed's setting; lagged gradient β = −0.3, used with β < 0 in
/// the seed); gradient descent with Armijo backtracking (a fixed step small enough for the
/// anisotropic toys is too slow for the others).
fn rules(problem: &str) -> Vec<(&'static str, StepRule, f64)> {
    let beta = if problem == "local_minima" { 0.8 } else { 0.5 };
    vec![
        ("gd", StepRule::GradientDescent, 1.0),
        ("plain", StepRule::Plain, 0.5),
        ("heavy_ball", StepRule::HeavyBall { beta }, 0.5),
        (
            "finite_difference",
            StepRule::FiniteDifference { beta },
            0.5,
        ),
        (
            "lagged_gradient",
            StepRule::LaggedGradient { beta: -0.3 },
            0.5,
        ),
        ("nesterov", StepRule::Nesterov { beta }, 0.5),
        ("param_heavy_ball", StepRule::ParamHeavyBall { beta }, 0.5),
        ("param_nesterov", StepRule::ParamNesterov { beta }, 0.5),
    ]
}

/// The solver for one rule on one toy: no damping, except on the non-L² toy where fixed
/// steps from θ₀ diverge for every rule and Levenberg–Marquardt damping (from λ = 1e-3)
/// is what makes them converge (docs/math.md §4, issue on step control).
fn solver(
    problem: &str,
    rule: StepRule,
    alpha: f64,
) -> Result<NaturalGradient, argmin::core::Error> {
    let s = NaturalGradient::new()
        .with_step_rule(rule)?
        .with_step_size(alpha)?;
    let s = if matches!(rule, StepRule::GradientDescent) {
        s.with_step_control(StepControl::armijo())?
    } else {
        s
    };
    if problem == "non_l2" {
        // The threshold rule of the runs recorded in docs/experiments.md.
        s.with_damping(1e-3)?
            .with_levenberg_marquardt(LevenbergMarquardt {
                min: 1e-6,
                max: 1e6,
                rule: DampingRule::Threshold,
            })
    } else {
        s.with_damping(0.0)
    }
}

struct Path2(Arc<Mutex<Vec<Vec<f64>>>>);

impl Observe<NgState> for Path2 {
    fn observe_iter(&mut self, state: &NgState, _kv: &KV) -> Result<(), Error> {
        if let Some(p) = state.get_param() {
            self.0.lock().unwrap().push(p.clone());
        }
        Ok(())
    }
}

/// Runs every rule on every toy, writes `toys.csv` and `toys_<problem>.svg`.
pub fn run(out: &Path, budget: Budget) -> Result<(Vec<Row>, Value), Box<dyn std::error::Error>> {
    let iters = if budget.quick { 100 } else { 300 };
    let mut rows = Vec::new();
    let mut csv = Vec::new();
    let mut table = serde_json::Map::new();
    for toy in toys::all() {
        let mut paths = Vec::new();
        for (name, rule, alpha) in rules(toy.name) {
            let toy_run = toys::by_name(toy.name).expect("known toy");
            let init = toy_run.problem.loss_at(&toy_run.theta0)?;
            let path = Arc::new(Mutex::new(vec![toy_run.theta0.clone()]));
            let res = Executor::new(toy_run.problem, solver(toy.name, rule, alpha)?)
                .configure(|s| s.param(toy_run.theta0.clone()).max_iters(iters))
                .add_observer(Path2(path.clone()), ObserverMode::Always)
                .run()?;
            let fin = res.state().get_cost();
            let q = Quartiles {
                q1: fin,
                median: fin,
                q3: fin,
            };
            rows.push(Row {
                optimiser: format!("{} / {name}", toy.name),
                settings: format!("α = {alpha}, {rule:?}"),
                train: q,
                test: q,
                final_test: q,
                at_time: None,
                to_target: None,
                extra: None,
                iters: res.state().get_iter(),
                total_iters: res.state().get_iter(),
                seconds_per_iter: 0.0,
                seconds: 0.0,
                initial_train: init,
            });
            table.insert(format!("{}/{name}", toy.name), json!(fin));
            let pts = path.lock().unwrap().clone();
            for (k, th) in pts.iter().enumerate() {
                let coords: Vec<String> = th.iter().map(|v| format!("{v:.6e}")).collect();
                csv.push(format!(
                    "{},{},{k},{}",
                    csv_field(toy.name),
                    csv_field(name),
                    coords.join(";")
                ));
            }
            paths.push((name, pts));
        }
        trajectories(
            &out.join(format!("toys_{}.svg", toy.name)),
            toy.name,
            &paths,
        )?;
    }
    write_csv(
        &out.join("toys.csv"),
        "problem,rule,iter,theta(;-separated)",
        csv,
    )?;
    // one line per problem, one column per rule
    let names: Vec<&str> = rules("").iter().map(|r| r.0).collect();
    println!("\n## Toys: final loss after {iters} steps\n");
    println!(
        "| problem | {} |\n|---|{}",
        names.join(" | "),
        "---|".repeat(names.len())
    );
    for chunk in rows.chunks(names.len()) {
        let problem = chunk[0].optimiser.split(" / ").next().unwrap_or_default();
        let cells: Vec<String> = chunk
            .iter()
            .map(|r| format!("{:.2e}", r.train.median))
            .collect();
        println!("| {problem} | {} |", cells.join(" | "));
    }
    Ok((rows, Value::Object(table)))
}

/// Trajectories in parameter space (θ₁, θ₂), or θ against the iteration for `p = 1`.
fn trajectories(
    path: &Path,
    name: &str,
    paths: &[(&str, Vec<Vec<f64>>)],
) -> Result<(), Box<dyn std::error::Error>> {
    let p = paths[0].1[0].len();
    let pts: Vec<Vec<(f64, f64)>> = paths
        .iter()
        .map(|(_, th)| {
            th.iter()
                .enumerate()
                .filter(|(_, t)| t.iter().all(|v| v.is_finite() && v.abs() < 1e3))
                .map(|(k, t)| {
                    if p == 1 {
                        (k as f64, t[0])
                    } else {
                        (t[0], t[1])
                    }
                })
                .collect()
        })
        .collect();
    let all = pts.iter().flatten();
    let (x0, x1, y0, y1) = all.fold((f64::MAX, f64::MIN, f64::MAX, f64::MIN), |a, &(x, y)| {
        (a.0.min(x), a.1.max(x), a.2.min(y), a.3.max(y))
    });
    let (dx, dy) = ((x1 - x0).max(1e-3) * 0.05, (y1 - y0).max(1e-3) * 0.05);
    let root = SVGBackend::new(path, (760, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{name}: trajectories"), ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(x0 - dx..x1 + dx, y0 - dy..y1 + dy)?;
    let (xd, yd) = if p == 1 {
        ("iteration", "θ")
    } else {
        ("θ₁", "θ₂")
    };
    chart.configure_mesh().x_desc(xd).y_desc(yd).draw()?;
    for (i, ((label, _), line)) in paths.iter().zip(&pts).enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(line.iter().copied(), color.stroke_width(2)))?
            .label(*label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        chart.draw_series(
            line.iter()
                .map(|&(x, y)| Circle::new((x, y), 2, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
