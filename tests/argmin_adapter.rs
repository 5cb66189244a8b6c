//! argmin least-squares problems (`Operator` + `Jacobian`) under `NaturalGradient`
//! (`natgrad::argmin_adapter`): one step with λ = 0, α = 1 is argmin's own `GaussNewton`
//! step; with momentum and damping the run reaches the published minimiser.

mod common;

use argmin::core::{Error, Executor, Jacobian, Operator, State};
use argmin::solver::gaussnewton::GaussNewton;
use common::max_diff;
use natgrad::argmin_adapter::{least_squares, JacobianMatrix};
use natgrad::{LinearSolver, NaturalGradient, StepRule};

/// Michaelis–Menten rate data (the Gauss–Newton example of Wikipedia and of argmin):
/// `r_i(β) = β₁ x_i / (β₂ + x_i) − y_i`.
const X: [f64; 7] = [0.038, 0.194, 0.425, 0.626, 1.253, 2.5, 3.74];
const Y: [f64; 7] = [0.05, 0.127, 0.094, 0.2122, 0.2729, 0.2665, 0.3317];

#[derive(Clone, Copy)]
struct Rate;

impl Operator for Rate {
    type Param = Vec<f64>;
    type Output = Vec<f64>;
    fn apply(&self, b: &Vec<f64>) -> Result<Vec<f64>, Error> {
        Ok(X.iter()
            .zip(&Y)
            .map(|(x, y)| b[0] * x / (b[1] + x) - y)
            .collect())
    }
}

fn rows(b: &[f64]) -> Vec<Vec<f64>> {
    X.iter()
        .map(|x| vec![x / (b[1] + x), -b[0] * x / ((b[1] + x) * (b[1] + x))])
        .collect()
}

impl Jacobian for Rate {
    type Param = Vec<f64>;
    type Jacobian = JacobianMatrix;
    fn jacobian(&self, b: &Vec<f64>) -> Result<JacobianMatrix, Error> {
        Ok(JacobianMatrix::from_rows(&rows(b))?)
    }
}

/// The same problem with argmin's `Vec<Vec<f64>>` Jacobian rows.
struct RateRows;

impl Operator for RateRows {
    type Param = Vec<f64>;
    type Output = Vec<f64>;
    fn apply(&self, b: &Vec<f64>) -> Result<Vec<f64>, Error> {
        Rate.apply(b)
    }
}

impl Jacobian for RateRows {
    type Param = Vec<f64>;
    type Jacobian = Vec<Vec<f64>>;
    fn jacobian(&self, b: &Vec<f64>) -> Result<Vec<Vec<f64>>, Error> {
        Ok(rows(b))
    }
}

const THETA0: [f64; 2] = [0.9, 0.2];

fn gauss_newton_steps(k: u64) -> Vec<f64> {
    let res = Executor::new(Rate, GaussNewton::<f64>::new())
        .configure(|s| s.param(THETA0.to_vec()).max_iters(k))
        .run()
        .unwrap();
    res.state().get_param().unwrap().clone()
}

fn natgrad_steps<O>(problem: O, solver: LinearSolver, k: u64) -> Vec<f64>
where
    O: Operator<Param = Vec<f64>, Output = Vec<f64>>
        + Jacobian<Param = Vec<f64>>
        + Send
        + Sync
        + 'static,
    <O as Jacobian>::Jacobian: natgrad::argmin_adapter::AsDenseJacobian,
{
    common::runs::gauss_newton_steps(problem, &THETA0, solver, k)
}

#[test]
fn one_step_with_no_damping_is_argmins_gauss_newton_step() {
    let gn = gauss_newton_steps(1);
    // The step moves θ by O(0.1): the comparison is not between two unmoved θ₀.
    assert!(max_diff(&gn, &THETA0) > 1e-2);
    let ng = natgrad_steps(Rate, LinearSolver::Cholesky, 1);
    let d = max_diff(&ng, &gn);
    assert!(d <= 1e-12, "natgrad {ng:?} vs GaussNewton {gn:?}: {d:e}");
}

#[test]
fn vec_of_rows_jacobian_gives_the_same_steps() {
    for k in [1, 3] {
        let gn = gauss_newton_steps(k);
        let ng = natgrad_steps(RateRows, LinearSolver::Cholesky, k);
        let d = max_diff(&ng, &gn);
        assert!(
            d <= 1e-12,
            "{k} steps: natgrad {ng:?} vs GaussNewton {gn:?}: {d:e}"
        );
    }
}

#[test]
fn heavy_ball_with_adaptive_damping_reaches_the_published_minimiser() {
    // β̂ = (0.362, 0.556) to three digits (Wikipedia, "Gauss–Newton algorithm", example).
    let problem = least_squares(Rate, &THETA0).unwrap();
    let ng = NaturalGradient::new()
        .with_step_rule(StepRule::HeavyBall { beta: 0.3 })
        .unwrap()
        .with_adaptive_damping(1e-10, 1e6)
        .unwrap()
        .with_damping(1e-3)
        .unwrap();
    let res = Executor::new(problem, ng)
        .configure(|s| s.param(THETA0.to_vec()).max_iters(200))
        .run()
        .unwrap();
    let b = res.state().get_best_param().unwrap();
    assert!(
        (b[0] - 0.362).abs() < 5e-4 && (b[1] - 0.556).abs() < 5e-4,
        "{b:?} ({:?})",
        res.state().get_termination_reason()
    );
}

/// A problem whose `apply` fails away from θ₀.
struct Failing;

impl Operator for Failing {
    type Param = Vec<f64>;
    type Output = Vec<f64>;
    fn apply(&self, b: &Vec<f64>) -> Result<Vec<f64>, Error> {
        if b[0] == THETA0[0] {
            Rate.apply(b)
        } else {
            Err(argmin::core::ArgminError::InvalidParameter {
                text: "model undefined here".into(),
            }
            .into())
        }
    }
}

impl Jacobian for Failing {
    type Param = Vec<f64>;
    type Jacobian = JacobianMatrix;
    fn jacobian(&self, b: &Vec<f64>) -> Result<JacobianMatrix, Error> {
        Rate.jacobian(b)
    }
}

#[test]
fn a_failing_argmin_problem_ends_the_run_with_its_own_error() {
    let problem = least_squares(Failing, &THETA0).unwrap();
    let err = Executor::new(problem, NaturalGradient::new())
        .configure(|s| s.param(THETA0.to_vec()).max_iters(5))
        .run()
        .err()
        .expect("apply fails after the first step");
    assert!(err.to_string().contains("model undefined here"), "{err}");
}

#[test]
fn ragged_jacobian_rows_are_a_size_error() {
    use natgrad::argmin_adapter::AsDenseJacobian;
    let e = vec![vec![1.0, 2.0], vec![3.0]].to_dense().unwrap_err();
    assert!(matches!(e, natgrad::Error::DimensionMismatch { .. }), "{e}");
}
