//! Levenberg–Marquardt and a direction solve that fails in a way damping does not cure
//! (docs of `LevenbergMarquardt`: "Not a non-finite value, a metric that cannot be used, a
//! preconditioner or a sketch that failed"): the run ends at that step naming the cause,
//! instead of rejecting steps and raising λ up to its maximum. A survivor of cargo-mutants
//! on `src/step_control.rs` (`damping_cures → true`; issue 20 acceptance 2).

mod common;

use common::runs::trajectory;
use faer::Mat;
use natgrad::model::LinearModel;
use natgrad::{
    FitProblem, LevenbergMarquardt, LinearSolver, NaturalGradient, SquaredError, WeightedL2,
};

#[test]
fn an_incurable_solve_failure_ends_a_levenberg_marquardt_run_at_once() {
    // K-FAC on a linear model: the model has no Kronecker factors, an `Unsupported` error
    // whatever λ is.
    let a = Mat::from_fn(4, 2, |i, j| 1.0 + (i * 2 + j) as f64);
    let pb = FitProblem::new(
        LinearModel::dense(a).unwrap(),
        SquaredError::l2(vec![1.0, 0.0, 2.0, 1.0]).unwrap(),
        WeightedL2::uniform(4).unwrap(),
    )
    .unwrap();
    let solver = NaturalGradient::new()
        .with_linear_solver(LinearSolver::Kfac {
            refresh_every: 1,
            decay: 0.0,
        })
        .and_then(|s| s.with_damping(1e-3))
        .and_then(|s| s.with_levenberg_marquardt(LevenbergMarquardt::new(1e-8, 1e12)))
        .unwrap();
    let (its, last, reason) = trajectory(pb, solver, &[0.5, -0.5], 200);
    assert_eq!(last, [0.5, -0.5], "θ₀ kept");
    assert!(its.len() <= 1, "no rejected steps: {} iterates", its.len());
    assert!(reason.contains("layer structure"), "{reason}");
    assert!(!reason.contains("maximum damping"), "{reason}");
}
