//! The seed's toy problems (docs/math.md §4) under every step rule of docs/math.md §3, with a fixed
//! step size, no damping and no line search — exactly the table of docs/math.md §3.
//!
//! ```text
//! cargo run --release --example toys -- [--problem P] [--variant V] [--alpha A]
//!     [--beta B] [--iters N] [--solver cg|cholesky] [--json] [--plot DIR]
//! ```
//!
//! * `--problem`: `linear_iso`, `linear_k`, `quadratic_k`, `local_minima`, `non_l2`
//!   (default: all);
//! * `--variant`: `gd`, `plain`, `heavy_ball`, `finite_difference`, `lagged_gradient`,
//!   `nesterov`, `param_heavy_ball`, `param_nesterov`, or a comma-separated list of them
//!   (default: all);
//! * `--alpha` (default 0.5), `--beta` (default 0.5; negative values parse, `--beta=-0.3`),
//!   `--iters` (default 100), `--solver` (default `cg`);
//! * `--json`: one JSON line per run,
//!   `{"problem","variant","alpha","beta","iters","final_loss","theta_final","theta_5"}`
//!   (`theta_5` after 5 steps, `theta_final` after the last step made; a run that
//!   overflows stops early and its non-finite numbers print as `null`);
//! * otherwise a table; `--plot DIR` also writes one SVG per problem with the
//!   trajectories in parameter space and in coefficient space.

use argmin::core::observers::ObserverMode;
use argmin::core::{Executor, State};
use natgrad::observe::Iterates;
use natgrad::problems::toys::{self, Toy};
use natgrad::{CgSettings, LinearSolver, NaturalGradient, StepRule};
use plotters::prelude::*;
use std::error::Error;

struct Args {
    problems: Vec<String>,
    variants: Vec<String>,
    alpha: f64,
    beta: f64,
    iters: u64,
    solver: LinearSolver,
    json: bool,
    plot: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        problems: toys::all().iter().map(|t| t.name.to_string()).collect(),
        variants: StepRule::NAMES.iter().map(|s| s.to_string()).collect(),
        alpha: 0.5,
        beta: 0.5,
        iters: 100,
        solver: LinearSolver::Cg(CgSettings::default()),
        json: false,
        plot: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        if flag == "--json" {
            a.json = true;
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().ok_or(format!("{flag} needs a value"))?,
        };
        let number = |v: &str| v.parse::<f64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--problem" => {
                toys::by_name(&value).ok_or(format!("unknown problem {value}"))?;
                a.problems = vec![value];
            }
            "--variant" => {
                a.variants = value.split(',').map(str::to_string).collect();
                for v in &a.variants {
                    StepRule::from_name(v, 0.0).ok_or(format!("unknown variant {v}"))?;
                }
            }
            "--alpha" => a.alpha = number(&value)?,
            "--beta" => a.beta = number(&value)?,
            "--iters" => a.iters = value.parse().map_err(|e| format!("--iters {value}: {e}"))?,
            "--solver" => {
                a.solver = match value.as_str() {
                    "cg" => LinearSolver::Cg(CgSettings::default()),
                    "cholesky" => LinearSolver::Cholesky,
                    _ => return Err(format!("unknown solver {value} (cg, cholesky)")),
                }
            }
            "--plot" => a.plot = Some(value),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

/// One run: the iterates θ_0..θ_N (θ_0 included) and how it ended.
struct Run {
    variant: String,
    thetas: Vec<Vec<f64>>,
    reason: String,
}

fn run(toy_name: &str, variant: &str, a: &Args) -> Result<Run, Box<dyn Error>> {
    let toy = toys::by_name(toy_name).ok_or("unknown toy")?;
    let rule = StepRule::from_name(variant, a.beta).ok_or("unknown variant")?;
    let solver = NaturalGradient::new()
        .with_step_size(a.alpha)?
        .with_damping(0.0)?
        .with_linear_solver(a.solver.clone())?
        .with_step_rule(rule)?;
    let iterates = Iterates::default();
    let res = Executor::new(toy.problem, solver)
        .configure(|s| s.param(toy.theta0.clone()).max_iters(a.iters))
        .add_observer(iterates.clone(), ObserverMode::Always)
        .run()?;
    let mut thetas = vec![toy.theta0.clone()];
    thetas.extend(iterates.get());
    let reason = match res.state().get_termination_reason() {
        Some(r) => r.text().to_string(),
        None => String::new(),
    };
    Ok(Run {
        variant: variant.to_string(),
        thetas,
        reason,
    })
}

/// The coefficients `c(θ)` of a toy (its model outputs).
fn coefficients(toy: &Toy, theta: &[f64]) -> Vec<f64> {
    let mut c = vec![0.0; 2];
    toy.problem.model().value_generic(theta, &mut c);
    c
}

fn main() -> Result<(), Box<dyn Error>> {
    let a = parse().map_err(|e| format!("toys: {e}"))?;
    if !a.json {
        println!(
            "{:<13} {:<18} {:>12} {:>6}  {:<40} stop",
            "problem", "variant", "final loss", "steps", "θ final"
        );
    }
    for name in &a.problems {
        let toy = toys::by_name(name).ok_or("unknown toy")?;
        let mut runs = Vec::new();
        for variant in &a.variants {
            let r = run(name, variant, &a)?;
            let last = r.thetas.last().ok_or("no iterate")?;
            let loss = toy.problem.loss_at(last)?;
            if a.json {
                let line = serde_json::json!({
                    "problem": name,
                    "variant": variant,
                    "alpha": a.alpha,
                    "beta": a.beta,
                    "iters": a.iters,
                    "final_loss": loss,
                    "theta_final": last,
                    "theta_5": r.thetas.get(5),
                });
                println!("{line}");
            } else {
                let theta: Vec<String> = last.iter().map(|x| format!("{x:.6}")).collect();
                println!(
                    "{name:<13} {variant:<18} {loss:>12.4e} {:>6}  {:<40} {}",
                    r.thetas.len() - 1,
                    format!("[{}]", theta.join(", ")),
                    r.reason
                );
            }
            runs.push(r);
        }
        if let Some(dir) = &a.plot {
            let path = format!("{dir}/{name}.svg");
            plot(&toy, &runs, &a, &path)?;
            if !a.json {
                println!("wrote {path}");
            }
        }
    }
    Ok(())
}

/// Bounding box of points, padded by 10 %, clipped to ±`limit` (diverging runs).
fn bounds(points: impl Iterator<Item = (f64, f64)>, limit: f64) -> ((f64, f64), (f64, f64)) {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in points.filter(|(x, y)| x.abs() <= limit && y.abs() <= limit) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    let (px, py) = ((x1 - x0).max(1e-3) * 0.1, (y1 - y0).max(1e-3) * 0.1);
    ((x0 - px, x1 + px), (y0 - py, y1 + py))
}

/// Two panels: parameter space (θ₁, θ₂) — or (k, θ) for the one-parameter toy — and
/// coefficient space (c₁, c₂) with the target `c_u`.
fn plot(toy: &Toy, runs: &[Run], a: &Args, path: &str) -> Result<(), Box<dyn Error>> {
    let root = SVGBackend::new(path, (1200, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 2));
    let one_param = toy.theta0.len() == 1;
    let limit = 10.0;
    let param_points = |r: &Run| -> Vec<(f64, f64)> {
        r.thetas
            .iter()
            .enumerate()
            .map(|(k, t)| {
                if one_param {
                    (k as f64, t[0])
                } else {
                    (t[0], t[1])
                }
            })
            .collect()
    };
    let coef_points = |r: &Run| -> Vec<(f64, f64)> {
        r.thetas
            .iter()
            .map(|t| {
                let c = coefficients(toy, t);
                (c[0], c[1])
            })
            .collect()
    };
    let target = match toy.name {
        "local_minima" => toys::LOCAL_MINIMA_TARGET,
        _ => toys::TARGET,
    };
    let title = format!("{} (α = {}, β = {})", toy.name, a.alpha, a.beta);
    let labels = if one_param {
        ("parameter space: k", "θ")
    } else {
        ("parameter space: θ₁", "θ₂")
    };
    type Points<'a> = &'a dyn Fn(&Run) -> Vec<(f64, f64)>;
    /// Points of a run, axis labels, a marked point.
    type Panel<'a> = (Points<'a>, (&'a str, &'a str), Option<(f64, f64)>);
    let panel_specs: [Panel; 2] = [
        (&param_points, labels, None),
        (
            &coef_points,
            ("coefficient space: c₁", "c₂"),
            Some((target[0], target[1])),
        ),
    ];
    for (panel, (points, (xl, yl), mark)) in panels.iter().zip(panel_specs) {
        let all: Vec<(f64, f64)> = runs.iter().flat_map(points).chain(mark).collect();
        let ((x0, x1), (y0, y1)) = bounds(all.into_iter(), limit);
        let mut chart = ChartBuilder::on(panel)
            .caption(&title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart.configure_mesh().x_desc(xl).y_desc(yl).draw()?;
        for (i, r) in runs.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts: Vec<(f64, f64)> = points(r)
                .into_iter()
                .filter(|(x, y)| x.abs() <= limit && y.abs() <= limit)
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                .label(r.variant.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 15, y)], color));
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 2, color.filled())))?;
        }
        if let Some(m) = mark {
            chart.draw_series(std::iter::once(Cross::new(m, 6, BLACK.stroke_width(2))))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
