//! The quadratic manifold `c_j(θ) = (Bᵀθ)_j + ½ θᵀ Q_j θ` of docs/math.md §4.

use super::{ClosureLinearization, Model};
use crate::error::{check_finite, check_len, Error, Result};
use faer::Mat;
use num_complex::Complex64;
use std::ops::{Add, Mul};

/// `y_j(θ) = (Bᵀθ)_j + ½ θᵀ Q_j θ` for `j < n`, with `B` p×n and symmetric `Q_j` p×p.
///
/// With all `Q_j = 0` it is the biased linear model; docs/math.md §4's quadratic manifold and
/// local-minima curve (`p = 1`, `c(θ) = θ b + θ² b⊥`) are instances. The Jacobian
/// `J_{j,i} = B_{i,j} + (Q_j θ)_i` is formed at each linearisation (n and p are small).
#[derive(Debug, Clone)]
pub struct QuadraticModel {
    b: Mat<f64>,
    q: Vec<Mat<f64>>,
}

impl QuadraticModel {
    /// `b` is p×n; `q` holds `n` symmetric p×p matrices. Fails on size mismatch, non-finite
    /// entries or an asymmetric `Q_j`, and with [`crate::Error::Empty`] when `p` or `n`
    /// is 0.
    pub fn new(b: Mat<f64>, q: Vec<Mat<f64>>) -> Result<Self> {
        let (p, n) = (b.nrows(), b.ncols());
        crate::error::check_nonempty("QuadraticModel: rows of B (parameters p)", p)?;
        crate::error::check_nonempty("QuadraticModel: columns of B (outputs n)", n)?;
        check_len(
            "QuadraticModel: number of Q_j vs outputs (columns of B)",
            n,
            q.len(),
        )?;
        crate::error::check_finite_mat("QuadraticModel: B", b.as_ref())?;
        for (j, qj) in q.iter().enumerate() {
            check_len(
                &format!("QuadraticModel: rows of Q_{j} vs p"),
                p,
                qj.nrows(),
            )?;
            check_len(
                &format!("QuadraticModel: columns of Q_{j} vs p"),
                p,
                qj.ncols(),
            )?;
            crate::error::check_finite_mat(&format!("QuadraticModel: Q_{j}"), qj.as_ref())?;
            for a in 0..p {
                for c in 0..a {
                    if qj[(a, c)] != qj[(c, a)] {
                        return Err(Error::InvalidSetting(format!(
                            "QuadraticModel: Q_{j} is not symmetric at ({a}, {c})"
                        )));
                    }
                }
            }
        }
        Ok(Self { b, q })
    }

    /// `B` (p×n).
    pub fn b(&self) -> &Mat<f64> {
        &self.b
    }

    /// The `Q_j`.
    pub fn q(&self) -> &[Mat<f64>] {
        &self.q
    }

    /// `y(θ)` over any scalar that mixes with `f64` (used with `f64` and, for complex-step
    /// derivative checks, `Complex64`).
    pub fn value_generic<T>(&self, theta: &[T], out: &mut [T])
    where
        T: Copy + From<f64> + Add<Output = T> + Mul<Output = T>,
    {
        let p = self.b.nrows();
        for (j, o) in out.iter_mut().enumerate() {
            let mut acc = T::from(0.0);
            for i in 0..p {
                acc = acc + T::from(self.b[(i, j)]) * theta[i];
                let mut qt = T::from(0.0);
                for (k, &tk) in theta.iter().enumerate().take(p) {
                    qt = qt + T::from(self.q[j][(i, k)]) * tk;
                }
                acc = acc + T::from(0.5) * theta[i] * qt;
            }
            *o = acc;
        }
    }

    /// The complex extension of `y(θ)` (for complex-step checks).
    pub fn value_complex(&self, theta: &[Complex64], out: &mut [Complex64]) {
        self.value_generic(theta, out);
    }

    /// The dense Jacobian at θ (n×p).
    pub fn jacobian(&self, theta: &[f64]) -> Mat<f64> {
        let (p, n) = (self.b.nrows(), self.b.ncols());
        Mat::from_fn(n, p, |j, i| {
            self.b[(i, j)] + (0..p).map(|k| self.q[j][(i, k)] * theta[k]).sum::<f64>()
        })
    }
}

impl Model for QuadraticModel {
    type Linearization<'a> = ClosureLinearization;

    fn n_params(&self) -> usize {
        self.b.nrows()
    }

    fn n_outputs(&self) -> usize {
        self.b.ncols()
    }

    fn linearize(&self, theta: &[f64]) -> Result<ClosureLinearization> {
        let mut y = vec![0.0; self.n_outputs()];
        self.forward(theta, &mut y)?;
        check_finite("model outputs", &y)?;
        ClosureLinearization::new(y, self.jacobian(theta))
    }

    fn forward(&self, theta: &[f64], out: &mut [f64]) -> Result<()> {
        check_len("theta vs model parameters", self.n_params(), theta.len())?;
        check_len(
            "forward output buffer vs model outputs",
            self.n_outputs(),
            out.len(),
        )?;
        self.value_generic(theta, out);
        Ok(())
    }
}
