//! Per-step cost of the general PDE path (`natgrad::pde::PdeModel`, residual through
//! num-dual, one Taylor pass per term) against the specialised `Pinn` on Poisson 2D
//! (900 interior, 120 boundary points, 2-64-1 tanh; issue 16, acceptance 4).
//!
//! ```text
//! cargo run --release --example pde_bench -- [--reps 15] [--steps 10]
//! ```
//!
//! `--reps` interleaved repetitions after one warm-up, sequential: each repetition times
//! both models back to back (the order alternating) on one linearisation, the dense
//! Jacobian from it, one jvp + vjp pair (each the median of 5 calls), and one
//! natural-gradient step of the Poisson record's setting (least squares, rcond 1e-8, log
//! grid 2⁻³⁰), timed as `--steps` steps of an argmin run divided by the steps. Prints the
//! medians and the median and range of the per-repetition ratios general / specialised.
//! Timings are wall time: quote the machine's load with them.

use argmin::core::{Executor, State};
use natgrad::model::{Collocation, DiffOperator, Model, Pinn, TaylorMlp};
use natgrad::problems::pinn::{poisson_2d, poisson_exact};
use natgrad::{
    Euclidean, FitProblem, LinearSolver, Linearization, NaturalGradient, SquaredError, StepControl,
};
use std::f64::consts::PI;

#[path = "../benches/common/mod.rs"]
mod common;

use common::median_time;
use std::time::Instant;

/// The specialised model of the same problem (the points of `poisson_2d`).
fn specialised(case: &natgrad::problems::pinn::PinnCase) -> Pinn {
    let terms = case.problem.model().terms();
    let (interior, boundary) = (terms[0].points(), terms[1].points());
    let source = (0..interior.ncols())
        .map(|j| 2.0 * PI * PI * poisson_exact(interior[(0, j)], interior[(1, j)]))
        .collect();
    let op = DiffOperator {
        laplacian: -1.0,
        gradient: vec![0.0, 0.0],
        value: 0.0,
    };
    let net = TaylorMlp::new(vec![2, 64, 1]).expect("valid widths");
    Pinn::new(
        net,
        op,
        Collocation::new(interior, source),
        Collocation::new(boundary, vec![0.0; boundary.ncols()]),
        1.0,
    )
    .expect("valid PINN")
}

fn solver() -> NaturalGradient {
    NaturalGradient::new()
        .with_linear_solver(LinearSolver::LeastSquares { rcond: 1e-8 })
        .and_then(|s| s.with_damping(0.0))
        .and_then(|s| s.with_step_control(StepControl::LogGrid { max_halvings: 30 }))
        .expect("valid settings")
}

/// One repetition for one model: seconds of (linearise, dense Jacobian, jvp + vjp, NG
/// step), the first three as the median of `inner` calls, the step as `steps` steps of an
/// argmin run divided by `steps`.
fn once<M: Model + Clone + 'static>(
    model: &M,
    theta: &[f64],
    inner: usize,
    steps: u64,
) -> [f64; 4] {
    let (n, p) = (model.n_outputs(), model.n_params());
    let lin_t = median_time(inner, || {
        model.linearize(theta).expect("finite");
    });
    let mut lin = model.linearize(theta).expect("finite");
    let jac_t = median_time(inner, || {
        lin.dense_jacobian();
    });
    let (t, s) = (vec![0.1; p], vec![0.1; n]);
    let (mut jt, mut js) = (vec![0.0; n], vec![0.0; p]);
    let pair_t = median_time(inner, || {
        lin.jvp(&t, &mut jt);
        lin.vjp(&s, &mut js);
    });
    drop(lin);
    let problem = FitProblem::new(
        model.clone(),
        SquaredError::new(vec![0.0; n], Euclidean).expect("valid"),
        Euclidean,
    )
    .expect("valid");
    let clock = Instant::now();
    let res = Executor::new(problem, solver())
        .configure(|s| s.param(theta.to_vec()).max_iters(steps))
        .run()
        .expect("runs");
    let step_t = clock.elapsed().as_secs_f64() / steps as f64;
    assert!(res.state().get_iter() == steps, "the run stopped early");
    [lin_t, jac_t, pair_t, step_t]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut reps = 15;
    let mut steps = 10;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let v = it.next().and_then(|v| v.parse().ok());
        match (a.as_str(), v) {
            ("--reps", Some(v)) => reps = v,
            ("--steps", Some(v)) => steps = v as u64,
            _ => {
                eprintln!("usage: pde_bench [--reps N] [--steps N]");
                std::process::exit(2);
            }
        }
    }
    let case = poisson_2d(30, 120, &[64], 1.0).expect("valid case");
    let pinn = specialised(&case);
    let general = case.problem.model().clone();
    let theta = general.net().init_params(0);
    // Interleaved: each repetition times both models back to back, the order alternating,
    // so that a change of the machine's load hits both alike; the ratio is the median of
    // the per-repetition ratios.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for rep in 0..=reps {
        let (x, y) = if rep % 2 == 0 {
            let x = once(&pinn, &theta, 5, steps);
            (x, once(&general, &theta, 5, steps))
        } else {
            let y = once(&general, &theta, 5, steps);
            (once(&pinn, &theta, 5, steps), y)
        };
        // Repetition 0 warms up.
        if rep > 0 {
            a.push(x);
            b.push(y);
        }
    }
    println!(
        "| Poisson 2D, 2-64-1, n = 1 020 | specialised Pinn | general PdeModel | ratio (median of pairs) | ratio range |"
    );
    println!("|---|---|---|---|---|");
    for (k, name) in [
        "linearise",
        "dense Jacobian",
        "jvp + vjp",
        "NG step (least squares, log grid)",
    ]
    .iter()
    .enumerate()
    {
        let ratios: Vec<f64> = a.iter().zip(&b).map(|(x, y)| y[k] / x[k]).collect();
        let (lo, hi) = ratios
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(l, h), &r| (l.min(r), h.max(r)));
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} | {lo:.2}–{hi:.2} |",
            median(a.iter().map(|x| x[k]).collect()) * 1e3,
            median(b.iter().map(|y| y[k]).collect()) * 1e3,
            median(ratios),
        );
    }
}
