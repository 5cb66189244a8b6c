//! The argmin adapter on `ndarray::Array1<f64>` and `nalgebra::DVector<f64>` parameters
//! (cargo features `ndarray`, `nalgebra`): the same Michaelis–Menten problem on each
//! backend gives bitwise the iterates of the `Vec<f64>` problem (the conversion at the
//! boundary is exact), and on nalgebra, where argmin-math has a matrix inverse, one and
//! three natgrad steps with λ = 0, α = 1 equal argmin's own `GaussNewton` steps.

mod common;

use argmin::core::{Error, Executor, Jacobian, Operator, State};
use argmin::solver::gaussnewton::GaussNewton;
use nalgebra::{DMatrix, DVector};
use natgrad::argmin_adapter::{ArgminVector, AsDenseJacobian};
use natgrad::LinearSolver;
use ndarray::{Array1, Array2};

/// Michaelis–Menten rate data: `r_i(β) = β₁ x_i / (β₂ + x_i) − y_i`.
const X: [f64; 7] = [0.038, 0.194, 0.425, 0.626, 1.253, 2.5, 3.74];
const Y: [f64; 7] = [0.05, 0.127, 0.094, 0.2122, 0.2729, 0.2665, 0.3317];
const THETA0: [f64; 2] = [0.9, 0.2];

fn residual(b: &[f64]) -> Vec<f64> {
    X.iter()
        .zip(&Y)
        .map(|(x, y)| b[0] * x / (b[1] + x) - y)
        .collect()
}

/// Row `i`: `∂r_i/∂β`.
fn jacobian_rows(b: &[f64]) -> Vec<[f64; 2]> {
    X.iter()
        .map(|x| [x / (b[1] + x), -b[0] * x / ((b[1] + x) * (b[1] + x))])
        .collect()
}

struct OnVec;
impl Operator for OnVec {
    type Param = Vec<f64>;
    type Output = Vec<f64>;
    fn apply(&self, b: &Vec<f64>) -> Result<Vec<f64>, Error> {
        Ok(residual(b))
    }
}
impl Jacobian for OnVec {
    type Param = Vec<f64>;
    type Jacobian = Vec<Vec<f64>>;
    fn jacobian(&self, b: &Vec<f64>) -> Result<Vec<Vec<f64>>, Error> {
        Ok(jacobian_rows(b).iter().map(|r| r.to_vec()).collect())
    }
}

struct OnNdarray;
impl Operator for OnNdarray {
    type Param = Array1<f64>;
    type Output = Array1<f64>;
    fn apply(&self, b: &Array1<f64>) -> Result<Array1<f64>, Error> {
        Ok(Array1::from(residual(b.as_slice().unwrap())))
    }
}
impl Jacobian for OnNdarray {
    type Param = Array1<f64>;
    type Jacobian = Array2<f64>;
    fn jacobian(&self, b: &Array1<f64>) -> Result<Array2<f64>, Error> {
        let rows = jacobian_rows(b.as_slice().unwrap());
        Ok(Array2::from_shape_fn((rows.len(), 2), |(i, j)| rows[i][j]))
    }
}

struct OnNalgebra;
impl Operator for OnNalgebra {
    type Param = DVector<f64>;
    type Output = DVector<f64>;
    fn apply(&self, b: &DVector<f64>) -> Result<DVector<f64>, Error> {
        Ok(DVector::from_vec(residual(b.as_slice())))
    }
}
impl Jacobian for OnNalgebra {
    type Param = DVector<f64>;
    type Jacobian = DMatrix<f64>;
    fn jacobian(&self, b: &DVector<f64>) -> Result<DMatrix<f64>, Error> {
        let rows = jacobian_rows(b.as_slice());
        Ok(DMatrix::from_fn(rows.len(), 2, |i, j| rows[i][j]))
    }
}

/// `k` natgrad steps, λ = 0, α = 1, Cholesky: Gauss–Newton steps.
fn natgrad_steps<O>(problem: O, k: u64) -> Vec<f64>
where
    O: Operator + Jacobian<Param = <O as Operator>::Param> + Send + Sync + 'static,
    <O as Operator>::Param: ArgminVector,
    <O as Operator>::Output: ArgminVector,
    <O as Jacobian>::Jacobian: AsDenseJacobian,
{
    common::runs::gauss_newton_steps(problem, &THETA0, LinearSolver::Cholesky, k)
}

#[test]
fn ndarray_and_nalgebra_problems_take_the_vec_problems_steps_bitwise() {
    for k in [1, 3] {
        let on_vec = natgrad_steps(OnVec, k);
        assert!((on_vec[0] - THETA0[0]).abs() > 1e-2, "the step moves θ");
        assert_eq!(natgrad_steps(OnNdarray, k), on_vec, "ndarray, {k} steps");
        assert_eq!(natgrad_steps(OnNalgebra, k), on_vec, "nalgebra, {k} steps");
    }
}

#[test]
fn nalgebra_problem_matches_argmins_gauss_newton() {
    for k in [1, 3] {
        let res = Executor::new(OnNalgebra, GaussNewton::<f64>::new())
            .configure(|s| s.param(DVector::from_column_slice(&THETA0)).max_iters(k))
            .run()
            .unwrap();
        let gn = res.state().get_param().unwrap().as_slice().to_vec();
        let ng = natgrad_steps(OnNalgebra, k);
        let d = ng
            .iter()
            .zip(&gn)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, common::nan_max);
        assert!(
            d <= 1e-12,
            "{k} steps: natgrad {ng:?} vs GaussNewton {gn:?}: {d:e}"
        );
    }
}
