//! Levenberg–Marquardt treats a direction solve that more damping cures (a Cholesky
//! factor refused at a tiny λ) as a rejected step: λ grows, θ stays, and the run goes
//! on to the minimiser instead of ending (issue 16's Nesterov failures on PINNs, in a
//! problem small enough to know the answer).

mod common;

use common::runs::trajectory;
use faer::Mat;
use natgrad::model::LinearModel;
use natgrad::{
    FitProblem, LevenbergMarquardt, LinearSolver, NaturalGradient, SquaredError, WeightedL2,
};

/// `‖Aθ − u‖²/(2n)` for a 6×2 design whose two columns are the same vector `c·v`
/// (`c = 1e8`), and `u = A(1, 2)ᵀ`: `G = AᵀA/n = a·[[1, 1], [1, 1]]` with `a ≈ 1e16`, so
/// `G + λI` has eigenvalues `2a + λ` and `λ`. Its Cholesky factor has the second pivot
/// `2λ − λ²/(a + λ)` in exact arithmetic, but it is computed with an error of order
/// `ε·a ≈ 2`, so the factor is refused for λ = 1e-8 and accepted once λ is well above
/// `ε·a`. The minimum is loss 0 on the line `θ₁ + θ₂ = 3`; every gradient lies in
/// `range(G) = span(1, 1)`, so from `θ₀ = 0` the run moves along `(1, 1)` up to rounding
/// (which `(G + λI)⁻¹` amplifies by `2a/λ` in the null direction `(1, −1)`).
fn twin_columns() -> FitProblem<LinearModel, SquaredError, WeightedL2> {
    let v = [0.3, -1.2, 0.7, 2.1, -0.4, 1.0];
    let a = Mat::from_fn(6, 2, |i, _| 1e8 * v[i]);
    let u: Vec<f64> = v.iter().map(|x| 1e8 * x * 3.0).collect();
    FitProblem::new(
        LinearModel::dense(a).unwrap(),
        SquaredError::l2(u).unwrap(),
        WeightedL2::uniform(6).unwrap(),
    )
    .unwrap()
}

fn lm() -> NaturalGradient {
    NaturalGradient::new()
        .with_linear_solver(LinearSolver::Cholesky)
        .and_then(|s| s.with_damping(1e-8))
        .and_then(|s| s.with_levenberg_marquardt(LevenbergMarquardt::new(1e-8, 1e12)))
        .unwrap()
}

#[test]
fn a_refused_cholesky_is_a_rejected_step_under_levenberg_marquardt() {
    let (its, last, reason) = trajectory(twin_columns(), lm(), &[0.0, 0.0], 100);
    // The first steps are rejections (θ stays at θ₀) while λ grows past ε·a.
    let rejected = its
        .iter()
        .take_while(|t| t.as_slice() == [0.0, 0.0])
        .count();
    assert!(
        rejected >= 1,
        "the first solve at λ = 1e-8 must fail: {its:?}"
    );
    assert!(
        !reason.contains("not positive definite"),
        "the run must not end on the failed factor: {reason}"
    );
    assert!(
        !reason.contains("Cholesky"),
        "the run must not end on the failed factor: {reason}"
    );
    let sum = last[0] + last[1];
    assert!((sum - 3.0).abs() <= 1e-12, "θ = {last:?}, reason {reason}");
    let pb = twin_columns();
    let (l0, l) = (pb.loss_at(&[0.0, 0.0]).unwrap(), pb.loss_at(&last).unwrap());
    assert!(l <= 1e-24 * l0, "loss {l:e} from {l0:e}");
}

/// Without Levenberg–Marquardt the same failure ends the run at its first step, with
/// θ₀ kept and the reason naming the factor.
#[test]
fn a_refused_cholesky_ends_a_fixed_damping_run() {
    let fixed = NaturalGradient::new()
        .with_linear_solver(LinearSolver::Cholesky)
        .and_then(|s| s.with_damping(1e-8))
        .unwrap();
    let (its, last, reason) = trajectory(twin_columns(), fixed, &[0.0, 0.0], 100);
    assert!(
        its.is_empty() || its.iter().all(|t| t == &[0.0, 0.0]),
        "{its:?}"
    );
    assert_eq!(last, [0.0, 0.0]);
    assert!(reason.contains("SolverExit"), "{reason}");
}

/// At the maximum damping a failed solve ends the run with a reason that says so.
#[test]
fn a_solve_failing_at_the_maximum_damping_ends_the_run() {
    let capped = NaturalGradient::new()
        .with_linear_solver(LinearSolver::Cholesky)
        .and_then(|s| s.with_damping(1e-8))
        .and_then(|s| s.with_levenberg_marquardt(LevenbergMarquardt::new(1e-8, 1e-6)))
        .unwrap();
    let (_, last, reason) = trajectory(twin_columns(), capped, &[0.0, 0.0], 100);
    assert_eq!(last, [0.0, 0.0]);
    assert!(
        reason.contains("maximum damping") && reason.contains("direction solve still fails"),
        "{reason}"
    );
}
