//! XOR classification (docs/math.md §4): 1 800 noisy points, 2-8-1 network with tanh hidden
//! layer and a linear output (the logit z; the probability is σ(z)), cross-entropy on the
//! logits (`LogitCrossEntropy`, exact where σ(z) rounds to 0 or 1), Fisher (GGN) metric.

use crate::plot::{bands, write_csv, Band};
use crate::report::{band, csv_lines, print_table, row_at, Row};
use crate::suite::{compare, equal_time, standard_candidates, Plan, MOMENTUM_RULES};
use crate::Budget;
use indicatif::{ProgressBar, ProgressStyle};
use natgrad::model::{Activation, Mlp, Model};
use natgrad::problems::xor::{dataset, Xor};
use natgrad::{FitProblem, LogitCrossEntropy, LossHessian};
use plotters::prelude::*;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

/// Widths: 2 inputs, 8 tanh, 1 linear output, the logit (33 parameters).
pub const WIDTHS: [usize; 3] = [2, 8, 1];
const ACTS: [Activation; 2] = [Activation::Tanh, Activation::Identity];

type XorProblem = FitProblem<Mlp, LogitCrossEntropy, LossHessian>;

fn net(x: &faer::Mat<f64>) -> Mlp {
    let flat: Vec<f64> = (0..x.ncols())
        .flat_map(|j| [x[(0, j)], x[(1, j)]])
        .collect();
    Mlp::new(&WIDTHS, &ACTS, &flat)
        .expect("valid network")
        .with_parallelism(faer::Par::Seq)
}

fn problem(d: &Xor) -> XorProblem {
    FitProblem::new(
        net(&d.inputs),
        LogitCrossEntropy::new(d.labels.clone()).expect("labels"),
        LossHessian,
    )
    .expect("sizes")
}

/// Test cross-entropy and accuracy of θ (class 1 where the logit is positive, σ(z) > ½).
fn scores(model: &Mlp, labels: &[f64], theta: &[f64]) -> (f64, f64) {
    let mut z = vec![0.0; labels.len()];
    if model.forward(theta, &mut z).is_err() {
        return (f64::NAN, 0.0);
    }
    let loss = natgrad::Loss::value(
        &LogitCrossEntropy::new(labels.to_vec()).expect("labels"),
        &z,
    );
    let correct = z
        .iter()
        .zip(labels)
        .filter(|(z, u)| (**z > 0.0) == (**u > 0.5))
        .count();
    (loss, correct as f64 / labels.len() as f64)
}

/// Runs the experiment, writes `xor.csv`, `xor.svg` (training loss against iteration),
/// `xor_time.svg` (against wall time) and `xor_boundary.svg`.
pub fn run(out: &Path, budget: Budget) -> Result<(Vec<Row>, Value), Box<dyn std::error::Error>> {
    let train = dataset(1800, 1);
    let test_data = dataset(1800, 2);
    let proto = net(&train.inputs);
    let (n_inits, iters, grid_iters, first_order) = if budget.quick {
        (3, 15, 0, 1)
    } else {
        (10, 200, 60, 4)
    };
    let plan = Plan {
        inits: (0..n_inits).map(|s| proto.init_params(s)).collect(),
        grid_inits: (100..102).map(|s| proto.init_params(s)).collect(),
        iters,
        grid_iters,
    };
    let test_model = Arc::new(net(&test_data.inputs));
    let labels = Arc::new(test_data.labels.clone());
    let (tm, tl) = (test_model.clone(), labels.clone());
    let test = Arc::new(move |th: &[f64]| scores(&tm, &tl, th).0);
    let mut cands = standard_candidates(&MOMENTUM_RULES, 1e-6, &[0.05, 0.2, 0.5, 1.0], first_order);
    if budget.quick {
        cands.iter_mut().for_each(|c| c.grid.truncate(1));
    }
    let bar = ProgressBar::new((cands.len() * plan.inits.len()) as u64);
    bar.set_style(ProgressStyle::with_template("xor          {bar:40} {pos}/{len} {msg}").unwrap());
    let outcomes = compare(&|| problem(&train), &cands, &plan, test, &bar)?;
    bar.finish_and_clear();
    let t_eq = equal_time(&outcomes);
    let rows: Vec<Row> = outcomes
        .iter()
        .map(|o| {
            // accuracy of the final θ (first-order methods: after their longer budget)
            let acc: Vec<f64> = o
                .runs
                .iter()
                .map(|r| scores(&test_model, &labels, &r.theta).1)
                .collect();
            row_at(
                o.label,
                o.settings.clone(),
                &o.runs,
                iters,
                Some(("final test accuracy", acc)),
            )
            .with_time(&o.runs, t_eq, None)
        })
        .collect();
    // the best run, by final training loss
    let best = outcomes
        .iter()
        .flat_map(|o| o.runs.iter().map(move |r| (o.label, r)))
        .min_by(|a, b| a.1.last().train.total_cmp(&b.1.last().train));
    let title = "XOR: training cross-entropy (median and quartiles over the initialisations)";
    let figure = |by_time| -> Vec<Band> {
        outcomes
            .iter()
            .map(|o| Band {
                label: o.label.into(),
                points: band(&o.runs, |p| p.train, by_time),
            })
            .collect()
    };
    bands(
        &out.join("xor.svg"),
        title,
        "iteration",
        "cross-entropy",
        &figure(false),
    )?;
    bands(
        &out.join("xor_time.svg"),
        title,
        "seconds",
        "cross-entropy",
        &figure(true),
    )?;
    write_csv(
        &out.join("xor.csv"),
        "optimiser,run,iter,seconds,train_loss,test_loss",
        outcomes.iter().flat_map(|o| csv_lines(o.label, &o.runs)),
    )?;
    if let Some((label, r)) = best {
        boundary(&out.join("xor_boundary.svg"), &r.theta, label, &test_data)?;
    }
    print_table(
        "XOR (1 800 points, 2-8-1, cross-entropy, Fisher metric)",
        "train loss",
        "test loss",
        &rows,
    );
    Ok((
        rows,
        json!({"iterations": iters, "initialisations": n_inits, "grid_iterations": grid_iters,
               "first_order_budget_factor": first_order, "equal_time_seconds": t_eq,
               "best_run": best.map(|b| b.0)}),
    ))
}

/// The decision boundary `σ(z) = ½` (logit `z = 0`) of θ over [−3, 3]², with the test
/// points.
fn boundary(
    path: &Path,
    theta: &[f64],
    label: &str,
    data: &Xor,
) -> Result<(), Box<dyn std::error::Error>> {
    let g = 60;
    let pts: Vec<f64> = (0..g * g)
        .flat_map(|j| {
            [
                -3.0 + 6.0 * (j % g) as f64 / (g - 1) as f64,
                -3.0 + 6.0 * (j / g) as f64 / (g - 1) as f64,
            ]
        })
        .collect();
    let grid = Mlp::new(&WIDTHS, &ACTS, &pts)?.with_parallelism(faer::Par::Seq);
    let mut z = vec![0.0; g * g];
    grid.forward(theta, &mut z)?;
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
        let c = if z[j] > 0.0 {
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
