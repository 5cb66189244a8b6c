//! Models and argmin problems shared by several test targets.

use argmin::core::{Jacobian, Operator};
use faer::MatMut;
use natgrad::argmin_adapter::JacobianMatrix;
use natgrad::model::{ClosureModel, Model};
use num_complex::Complex64;

/// A sparse n×p design with about a quarter of the entries set (a fixed pattern).
pub fn sparse_design(seed: u64, n: usize, p: usize) -> sprs::CsMat<f64> {
    let mut r = super::rng(seed);
    let mut tri = sprs::TriMat::new((n, p));
    for i in 0..n {
        for j in 0..p {
            if (i * 7 + j * 3) % 4 == 0 {
                tri.add_triplet(i, j, super::vec(&mut r, 1)[0]);
            }
        }
    }
    tri.to_csr()
}

/// A nonlinear closure model with its complex extension: y_i = sin(a_i·θ) + (b_i·θ)².
pub fn closure_model(
    seed: u64,
    n: usize,
    p: usize,
) -> (impl Model, impl Fn(&[Complex64], &mut [Complex64])) {
    let mut r = super::rng(seed);
    let a = super::mat(&mut r, n, p);
    let b = super::mat(&mut r, n, p);
    let (a1, b1, a2, b2, a3, b3) = (a.clone(), b.clone(), a.clone(), b.clone(), a, b);
    let model = ClosureModel::new(
        p,
        n,
        move |t: &[f64], y: &mut [f64]| {
            for i in 0..n {
                let at: f64 = (0..p).map(|j| a1[(i, j)] * t[j]).sum();
                let bt: f64 = (0..p).map(|j| b1[(i, j)] * t[j]).sum();
                y[i] = at.sin() + bt * bt;
            }
        },
        move |t: &[f64], mut jac: MatMut<'_, f64>| {
            for i in 0..n {
                let at: f64 = (0..p).map(|j| a2[(i, j)] * t[j]).sum();
                let bt: f64 = (0..p).map(|j| b2[(i, j)] * t[j]).sum();
                for j in 0..p {
                    jac[(i, j)] = at.cos() * a2[(i, j)] + 2.0 * bt * b2[(i, j)];
                }
            }
        },
    );
    let complex = move |t: &[Complex64], y: &mut [Complex64]| {
        for i in 0..n {
            let at: Complex64 = (0..p).map(|j| t[j] * a3[(i, j)]).sum();
            let bt: Complex64 = (0..p).map(|j| t[j] * b3[(i, j)]).sum();
            y[i] = at.sin() + bt * bt;
        }
    };
    (model, complex)
}

/// r(θ) = (θ₀ − 1, 10 (θ₁ − θ₀²)): Rosenbrock's residuals, minimiser (1, 1).
pub struct Rosenbrock;

impl Operator for Rosenbrock {
    type Param = Vec<f64>;
    type Output = Vec<f64>;
    fn apply(&self, t: &Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> {
        Ok(vec![t[0] - 1.0, 10.0 * (t[1] - t[0] * t[0])])
    }
}

impl Jacobian for Rosenbrock {
    type Param = Vec<f64>;
    type Jacobian = JacobianMatrix;
    fn jacobian(&self, t: &Vec<f64>) -> Result<JacobianMatrix, argmin::core::Error> {
        Ok(JacobianMatrix::from_rows(&[
            vec![1.0, 0.0],
            vec![-20.0 * t[0], 10.0],
        ])?)
    }
}
