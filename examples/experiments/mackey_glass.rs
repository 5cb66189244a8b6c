//! Mackey–Glass one-step-ahead prediction (MATH.md §4): 4-10-1 tanh network, 61
//! parameters, L² loss; 7 optimisers from the same 10 initialisations.

use crate::plot::{bands, write_csv, Band};
use crate::report::{band, csv_lines, print_table, row, Row};
use crate::runner::TestFn;
use crate::suite::{evaluate, select, standard_candidates, Rule};
use crate::Budget;
use indicatif::{ProgressBar, ProgressStyle};
use natgrad::model::{Activation, Mlp, Model};
use natgrad::problems::mackey_glass::{dataset, MackeyGlass};
use natgrad::Momentum;
use natgrad::{Problem, SquaredError, WeightedL2};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

/// Network widths: 4 inputs, 10 tanh, 1 linear output (61 parameters).
pub const WIDTHS: [usize; 3] = [4, 10, 1];

type MgProblem = Problem<Mlp, SquaredError, WeightedL2>;

fn sample_major(x: &faer::Mat<f64>) -> Vec<f64> {
    (0..x.ncols())
        .flat_map(|j| (0..x.nrows()).map(move |k| x[(k, j)]))
        .collect()
}

fn net(x: &faer::Mat<f64>) -> Mlp {
    Mlp::with_hidden(&WIDTHS, Activation::Tanh, &sample_major(x))
        .expect("valid network")
        .with_parallelism(faer::Par::Seq)
}

fn problem(d: &MackeyGlass) -> MgProblem {
    let m = d.train_targets.len();
    Problem::new(
        net(&d.train_inputs),
        SquaredError::l2(d.train_targets.clone()).expect("finite targets"),
        WeightedL2::uniform(m),
    )
    .expect("consistent sizes")
}

/// Mean squared error of the network on the test pairs.
fn test_mse(d: &MackeyGlass) -> TestFn {
    let model = net(&d.test_inputs);
    let targets = d.test_targets.clone();
    Arc::new(move |theta: &[f64]| {
        let mut y = vec![0.0; targets.len()];
        if model.forward(theta, &mut y).is_err() {
            return f64::NAN;
        }
        y.iter()
            .zip(&targets)
            .map(|(y, u)| (y - u) * (y - u))
            .sum::<f64>()
            / targets.len() as f64
    })
}

/// Runs the experiment, writes `mackey_glass.csv` and `mackey_glass.svg`.
pub fn run(out: &Path, budget: Budget) -> Result<(Vec<Row>, Value), Box<dyn std::error::Error>> {
    let (n_inits, iters, grid_iters) = if budget.quick {
        (3, 15, 0)
    } else {
        (10, 500, 100)
    };
    let data = dataset(500, 500);
    let make = || problem(&data);
    let proto = net(&data.train_inputs);
    let inits: Vec<Vec<f64>> = (0..n_inits).map(|s| proto.init_params(s)).collect();
    let grid_inits: Vec<Vec<f64>> = (100..102).map(|s| proto.init_params(s)).collect();
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
    bar.set_style(ProgressStyle::with_template("mackey_glass {bar:40} {pos}/{len} {msg}").unwrap());
    let test = test_mse(&data);
    let (mut rows, mut figure, mut csv) = (Vec::new(), Vec::new(), Vec::new());
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
        // the training loss is ½·MSE; report MSE for both
        let mse_runs: Vec<_> = runs
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.curve.iter_mut().for_each(|p| p.train *= 2.0);
                r
            })
            .collect();
        figure.push(Band {
            label: cand.label.into(),
            points: band(&mse_runs, |p| p.test, false),
        });
        csv.extend(csv_lines(cand.label, &mse_runs));
        rows.push(row(cand.label, settings, &mse_runs, None));
    }
    bar.finish_and_clear();
    bands(
        &out.join("mackey_glass.svg"),
        "Mackey–Glass: test MSE (median, quartile band over 10 initialisations)",
        "iteration",
        "test MSE",
        &figure,
    )?;
    write_csv(
        &out.join("mackey_glass.csv"),
        "optimiser,run,iter,seconds,train_mse,test_mse",
        csv,
    )?;
    print_table(
        "Mackey–Glass (500 train / 500 test pairs, 4-10-1 tanh)",
        "train MSE",
        "test MSE",
        &rows,
    );
    Ok((
        rows,
        json!({"iterations": iters, "initialisations": n_inits, "grid_iterations": grid_iters}),
    ))
}
