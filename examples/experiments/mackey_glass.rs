//! Mackey–Glass one-step-ahead prediction (docs/math.md §4): 4-10-1 tanh network, 61
//! parameters, L² loss; 7 optimisers from the same 10 initialisations.

use crate::plot::{bands, write_csv, Band};
use crate::report::{band, csv_lines, print_table, row_at, Row};
use crate::runner::TestFn;
use crate::suite::{compare, equal_time, standard_candidates, Plan, MOMENTUM_RULES};
use crate::Budget;
use indicatif::{ProgressBar, ProgressStyle};
use natgrad::model::{Activation, Mlp, Model};
use natgrad::problems::mackey_glass::{dataset, MackeyGlass};
use natgrad::{FitProblem, SquaredError, WeightedL2};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

/// Network widths: 4 inputs, 10 tanh, 1 linear output (61 parameters).
pub const WIDTHS: [usize; 3] = [4, 10, 1];

type MgProblem = FitProblem<Mlp, SquaredError, WeightedL2>;

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
    FitProblem::new(
        net(&d.train_inputs),
        SquaredError::l2(d.train_targets.clone()).expect("finite targets"),
        WeightedL2::uniform(m).expect("samples"),
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

/// Test MSE that the comparison times the optimisers to (the JAX Gauss–Newton reference
/// reaches 3.2e-5 in 500 iterations).
const TARGET_MSE: f64 = 1e-4;

/// Runs the experiment, writes `mackey_glass.csv`, `mackey_glass.svg` (test MSE against
/// iteration) and `mackey_glass_time.svg` (against wall time).
pub fn run(out: &Path, budget: Budget) -> Result<(Vec<Row>, Value), Box<dyn std::error::Error>> {
    let data = dataset(500, 500);
    let proto = net(&data.train_inputs);
    let (n_inits, iters, grid_iters, first_order) = if budget.quick {
        (3, 15, 0, 1)
    } else {
        (10, 500, 100, 4)
    };
    let plan = Plan {
        inits: (0..n_inits).map(|s| proto.init_params(s)).collect(),
        grid_inits: (100..102).map(|s| proto.init_params(s)).collect(),
        iters,
        grid_iters,
    };
    let mut cands = standard_candidates(&MOMENTUM_RULES, 1e-6, &[0.05, 0.2, 0.5, 1.0], first_order);
    if budget.quick {
        cands.iter_mut().for_each(|c| c.grid.truncate(1));
    }
    let bar = ProgressBar::new((cands.len() * plan.inits.len()) as u64);
    bar.set_style(ProgressStyle::with_template("mackey_glass {bar:40} {pos}/{len} {msg}").unwrap());
    let mut outcomes = compare(&|| problem(&data), &cands, &plan, test_mse(&data), &bar)?;
    bar.finish_and_clear();
    // the training loss is ½·MSE; report MSE for both
    for o in &mut outcomes {
        for r in &mut o.runs {
            r.curve.iter_mut().for_each(|p| p.train *= 2.0);
        }
    }
    let t_eq = equal_time(&outcomes);
    let rows: Vec<Row> = outcomes
        .iter()
        .map(|o| {
            row_at(o.label, o.settings.clone(), &o.runs, iters, None).with_time(
                &o.runs,
                t_eq,
                Some(TARGET_MSE),
            )
        })
        .collect();
    let title = "Mackey–Glass: test MSE (median and quartiles over the initialisations)";
    let figure = |by_time| -> Vec<Band> {
        outcomes
            .iter()
            .map(|o| Band {
                label: o.label.into(),
                points: band(&o.runs, |p| p.test, by_time),
            })
            .collect()
    };
    bands(
        &out.join("mackey_glass.svg"),
        title,
        "iteration",
        "test MSE",
        &figure(false),
    )?;
    bands(
        &out.join("mackey_glass_time.svg"),
        title,
        "seconds",
        "test MSE",
        &figure(true),
    )?;
    write_csv(
        &out.join("mackey_glass.csv"),
        "optimiser,run,iter,seconds,train_mse,test_mse",
        outcomes.iter().flat_map(|o| csv_lines(o.label, &o.runs)),
    )?;
    print_table(
        "Mackey–Glass (500 train / 500 test pairs, 4-10-1 tanh)",
        "train MSE",
        "test MSE",
        &rows,
    );
    Ok((
        rows,
        json!({"iterations": iters, "initialisations": n_inits, "grid_iterations": grid_iters,
               "first_order_budget_factor": first_order, "equal_time_seconds": t_eq,
               "target_test_mse": TARGET_MSE}),
    ))
}
