//! Per-step cost of the general PDE path (`natgrad::pde::PdeModel`, residual through
//! num-dual, one Taylor pass per term) against the specialised `Pinn` on Poisson 2D
//! (900 interior, 120 boundary points, 2-64-1 tanh; issue 16, acceptance 4).
//!
//! ```text
//! cargo run --release --example pde_bench -- [--reps 15] [--steps 10]
//! ```
//!
//! Medians over `--reps` repetitions after one warm-up, sequential, of: one linearisation,
//! the dense Jacobian from it, one jvp + vjp pair, and one natural-gradient step of the
//! Poisson record's setting (least squares, rcond 1e-8, log grid 2⁻³⁰), timed as
//! `--steps` steps of an argmin run divided by the steps. Prints the ratio general /
//! specialised for each. Timings are wall time: quote the machine's load with them.

use argmin::core::{Executor, State};
use natgrad::model::{DiffOperator, Model, Pinn, TaylorMlp};
use natgrad::problems::pinn::{poisson_2d, poisson_exact};
use natgrad::{
    Euclidean, LinearSolver, Linearization, NaturalGradient, Problem, SquaredError, StepControl,
};
use std::f64::consts::PI;

#[path = "../benches/common/mod.rs"]
mod common;

use common::median_time;

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
        interior,
        source,
        boundary,
        vec![0.0; boundary.ncols()],
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

/// (linearise, dense Jacobian, jvp + vjp, NG step) medians in seconds.
fn times<M: Model + Clone + 'static>(
    model: &M,
    theta: &[f64],
    reps: usize,
    steps: u64,
) -> [f64; 4] {
    let (n, p) = (model.n_outputs(), model.n_params());
    let lin_t = median_time(reps, || {
        model.linearize(theta).expect("finite");
    });
    let mut lin = model.linearize(theta).expect("finite");
    let jac_t = median_time(reps, || {
        lin.dense_jacobian();
    });
    let (t, s) = (vec![0.1; p], vec![0.1; n]);
    let (mut jt, mut js) = (vec![0.0; n], vec![0.0; p]);
    let pair_t = median_time(reps, || {
        lin.jvp(&t, &mut jt);
        lin.vjp(&s, &mut js);
    });
    drop(lin);
    let step_t = median_time(reps.min(5), || {
        let problem = Problem::new(
            model.clone(),
            SquaredError::new(vec![0.0; n], Euclidean).expect("valid"),
            Euclidean,
        )
        .expect("valid");
        let res = Executor::new(problem, solver())
            .configure(|s| s.param(theta.to_vec()).max_iters(steps))
            .run()
            .expect("runs");
        assert!(res.state().get_iter() == steps, "the run stopped early");
    }) / steps as f64;
    [lin_t, jac_t, pair_t, step_t]
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
    let theta = general.net().init(0);
    let a = times(&pinn, &theta, reps, steps);
    let b = times(&general, &theta, reps, steps);
    println!("| Poisson 2D, 2-64-1, n = 1 020 | specialised Pinn | general PdeModel | ratio |");
    println!("|---|---|---|---|");
    for (k, name) in [
        "linearise",
        "dense Jacobian",
        "jvp + vjp",
        "NG step (least squares, log grid)",
    ]
    .iter()
    .enumerate()
    {
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} |",
            a[k] * 1e3,
            b[k] * 1e3,
            b[k] / a[k]
        );
    }
}
