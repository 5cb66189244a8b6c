//! XOR classification (MATH.md §4): 1 800 noisy points, 2-8-1 network with tanh hidden
//! layer and sigmoid output, cross-entropy loss, Fisher (GGN) metric.

use crate::plot::{bands, write_csv, Band};
use crate::report::{band, csv_lines, print_table, row, Row};
use crate::suite::{evaluate, select, standard_candidates, Rule};
use crate::Budget;
use indicatif::{ProgressBar, ProgressStyle};
use natgrad::model::{Activation, Mlp, Model};
use natgrad::problems::xor::{dataset, Xor};
use natgrad::Momentum;
use natgrad::{CrossEntropy, Ggn, Problem};
use plotters::prelude::*;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

/// Widths: 2 inputs, 8 tanh, 1 sigmoid output (33 parameters).
pub const WIDTHS: [usize; 3] = [2, 8, 1];
const ACTS: [Activation; 2] = [Activation::Tanh, Activation::Sigmoid];

type XorProblem = Problem<Mlp, CrossEntropy, Ggn>;

fn net(x: &faer::Mat<f64>) -> Mlp {
    let flat: Vec<f64> = (0..x.ncols())
        .flat_map(|j| [x[(0, j)], x[(1, j)]])
        .collect();
    Mlp::new(&WIDTHS, &ACTS, &flat)
        .expect("valid network")
        .with_parallelism(faer::Par::Seq)
}

fn problem(d: &Xor) -> XorProblem {
    Problem::new(
        net(&d.inputs),
        CrossEntropy::new(d.labels.clone()).expect("labels"),
        Ggn,
    )
    .expect("sizes")
}

/// Test cross-entropy and accuracy of θ.
fn scores(model: &Mlp, labels: &[f64], theta: &[f64]) -> (f64, f64) {
    let mut v = vec![0.0; labels.len()];
    if model.forward(theta, &mut v).is_err() {
        return (f64::NAN, 0.0);
    }
    let loss = natgrad::Loss::value(&CrossEntropy::new(labels.to_vec()).expect("labels"), &v);
    let correct = v
        .iter()
        .zip(labels)
        .filter(|(v, u)| (**v > 0.5) == (**u > 0.5))
        .count();
    (loss, correct as f64 / labels.len() as f64)
}

/// Runs the experiment, writes `xor.csv`, `xor.svg` and `xor_boundary.svg`.
pub fn run(out: &Path, budget: Budget) -> Result<(Vec<Row>, Value), Box<dyn std::error::Error>> {
    let (n_inits, iters, grid_iters) = if budget.quick {
        (3, 15, 0)
    } else {
        (10, 200, 60)
    };
    let train = dataset(1800, 1);
    let test_data = dataset(1800, 2);
    let make = || problem(&train);
    let proto = net(&train.inputs);
    let inits: Vec<Vec<f64>> = (0..n_inits).map(|s| proto.init_params(s)).collect();
    let grid_inits: Vec<Vec<f64>> = (100..102).map(|s| proto.init_params(s)).collect();
    let test_model = Arc::new(net(&test_data.inputs));
    let labels = Arc::new(test_data.labels.clone());
    let (tm, tl) = (test_model.clone(), labels.clone());
    let test = Arc::new(move |th: &[f64]| scores(&tm, &tl, th).0);
    let rules: [Rule; 4] = [
        ("NGD heavy ball", |b| Momentum::HeavyBall { beta: b }),
        ("NGD Nesterov", |b| Momentum::Nesterov { beta: b }),
        ("NGD finite difference", |b| Momentum::FiniteDifference {
            beta: b,
        }),
        ("NGD param. heavy ball", |b| Momentum::ParamHeavyBall {
            beta: b,
        }),
    ];
    let mut cands = standard_candidates(&rules, 1e-6, &[0.05, 0.2, 0.5, 1.0]);
    if budget.quick {
        cands.iter_mut().for_each(|c| c.grid.truncate(1));
    }
    let bar = ProgressBar::new((cands.len() * n_inits as usize) as u64);
    bar.set_style(ProgressStyle::with_template("xor          {bar:40} {pos}/{len} {msg}").unwrap());
    let (mut rows, mut figure, mut csv) = (Vec::new(), Vec::new(), Vec::new());
    let mut best: Option<(f64, Vec<f64>, &str)> = None;
    for cand in &cands {
        bar.set_message(format!("{} (grid)", cand.label));
        let (settings, opt) = if grid_iters > 0 {
            select(&make, cand, &grid_inits, grid_iters)?
        } else {
            cand.grid[0].clone()
        };
        bar.set_message(cand.label.to_string());
        let runs = evaluate(
            &make,
            &opt,
            &inits,
            iters,
            (iters / 100).max(1),
            test.clone(),
            || bar.inc(1),
        )?;
        let acc: Vec<f64> = runs
            .iter()
            .map(|r| scores(&test_model, &labels, &r.theta).1)
            .collect();
        for r in &runs {
            if best.as_ref().is_none_or(|b| r.last().train < b.0) {
                best = Some((r.last().train, r.theta.clone(), cand.label));
            }
        }
        figure.push(Band {
            label: cand.label.into(),
            points: band(&runs, |p| p.train, false),
        });
        csv.extend(csv_lines(cand.label, &runs));
        rows.push(row(
            cand.label,
            settings,
            &runs,
            Some(("test_accuracy", acc)),
        ));
    }
    bar.finish_and_clear();
    bands(
        &out.join("xor.svg"),
        "XOR: training cross-entropy (median, quartile band)",
        "iteration",
        "cross-entropy",
        &figure,
    )?;
    write_csv(
        &out.join("xor.csv"),
        "optimiser,run,iter,seconds,train_loss,test_loss",
        csv,
    )?;
    if let Some((_, theta, label)) = &best {
        boundary(&out.join("xor_boundary.svg"), theta, label, &test_data)?;
    }
    print_table(
        "XOR (1 800 points, 2-8-1, cross-entropy, Fisher metric)",
        "train loss",
        "test loss",
        &rows,
    );
    Ok((
        rows,
        json!({"iterations": iters, "initialisations": n_inits, "best_run": best.map(|b| b.2)}),
    ))
}

/// The decision boundary `v = ½` of θ over [−3, 3]², with the test points.
fn boundary(
    path: &Path,
    theta: &[f64],
    label: &str,
    data: &Xor,
) -> Result<(), Box<dyn std::error::Error>> {
    let g = 120;
    let pts: Vec<f64> = (0..g * g)
        .flat_map(|j| {
            [
                -3.0 + 6.0 * (j % g) as f64 / (g - 1) as f64,
                -3.0 + 6.0 * (j / g) as f64 / (g - 1) as f64,
            ]
        })
        .collect();
    let grid = Mlp::new(&WIDTHS, &ACTS, &pts)?.with_parallelism(faer::Par::Seq);
    let mut v = vec![0.0; g * g];
    grid.forward(theta, &mut v)?;
    let root = SVGBackend::new(path, (640, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("XOR decision boundary, best run ({label})"),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(30)
        .build_cartesian_2d(-3.0..3.0, -3.0..3.0)?;
    chart.configure_mesh().disable_mesh().draw()?;
    let h = 6.0 / (g - 1) as f64;
    chart.draw_series((0..g * g).map(|j| {
        let (x, y) = (pts[2 * j], pts[2 * j + 1]);
        let c = if v[j] > 0.5 {
            RGBColor(255, 220, 200)
        } else {
            RGBColor(200, 220, 255)
        };
        Rectangle::new(
            [(x - h / 2.0, y - h / 2.0), (x + h / 2.0, y + h / 2.0)],
            c.filled(),
        )
    }))?;
    chart.draw_series((0..data.labels.len()).step_by(3).map(|j| {
        let c = if data.labels[j] > 0.5 { RED } else { BLUE };
        Circle::new((data.inputs[(0, j)], data.inputs[(1, j)]), 2, c.filled())
    }))?;
    root.present()?;
    Ok(())
}
