//! argmin's least-squares problems under [`crate::NaturalGradient`]: Gauss–Newton with
//! momentum and damping (docs/math.md §2 with `ℓ(y) = ½‖y‖²` and `M = I`).
//!
//! A problem written for argmin's `GaussNewton` / `GaussNewtonLS` implements
//! [`Operator`] (the residual `r(θ) ∈ Rⁿ`) and [`Jacobian`] (the dense n×p matrix
//! `∂r/∂θ`). [`least_squares`] wraps it, unchanged, as a natgrad [`FitProblem`] whose model
//! is the residual, whose loss is `½‖r‖²` and whose metric is the identity: the Gram
//! matrix is `JᵀJ`, the gradient `Jᵀr`, and with damping λ = 0 and step size α = 1 a
//! [`crate::NaturalGradient`] step is the Gauss–Newton step `θ − (JᵀJ)⁻¹Jᵀr` of argmin's
//! `GaussNewton`. Momentum, Levenberg–Marquardt damping, line searches and the matrix-free
//! solvers then apply as to any natgrad problem.
//!
//! Parameters and residuals are argmin's `Vec<f64>`. The Jacobian may be any type that
//! implements [`AsDenseJacobian`]: `Vec<Vec<f64>>` (one row per residual) or
//! [`JacobianMatrix`], a faer matrix that also implements the argmin-math traits argmin's
//! Gauss–Newton solvers need (argmin's `Vec` backend has no matrix inverse), so that one
//! problem value runs under both.
//!
//! ```
//! use argmin::core::{Executor, Jacobian, Operator, State};
//! use natgrad::argmin_adapter::{least_squares, JacobianMatrix};
//! use natgrad::NaturalGradient;
//!
//! /// r(θ) = (θ₀ − 1, 10 (θ₁ − θ₀²)): Rosenbrock's residuals, minimiser (1, 1).
//! struct Rosenbrock;
//! impl Operator for Rosenbrock {
//!     type Param = Vec<f64>;
//!     type Output = Vec<f64>;
//!     fn apply(&self, t: &Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> {
//!         Ok(vec![t[0] - 1.0, 10.0 * (t[1] - t[0] * t[0])])
//!     }
//! }
//! impl Jacobian for Rosenbrock {
//!     type Param = Vec<f64>;
//!     type Jacobian = JacobianMatrix;
//!     fn jacobian(&self, t: &Vec<f64>) -> Result<JacobianMatrix, argmin::core::Error> {
//!         Ok(JacobianMatrix::from_rows(&[vec![1.0, 0.0], vec![-20.0 * t[0], 10.0]])?)
//!     }
//! }
//!
//! let theta0 = vec![-1.2, 1.0];
//! let problem = least_squares(Rosenbrock, &theta0)?;
//! let res = Executor::new(problem, NaturalGradient::new())
//!     .configure(|s| s.param(theta0).max_iters(20))
//!     .run()?;
//! let theta = res.state().get_best_param().unwrap();
//! assert!((theta[0] - 1.0).abs() < 1e-8 && (theta[1] - 1.0).abs() < 1e-8);
//! # Ok::<(), argmin::core::Error>(())
//! ```

use crate::error::{check_finite, check_len, Error, Result};
use crate::loss::SquaredError;
use crate::metric::Euclidean;
use crate::model::{ClosureLinearization, Model};
use crate::problem::FitProblem;
use argmin::core::{Jacobian, Operator};
use argmin_math::{ArgminDot, ArgminInv, ArgminTranspose};
use faer::linalg::solvers::DenseSolveCore;
use faer::{Mat, MatRef, Par};

/// A natgrad problem made from an argmin least-squares problem `O` by [`least_squares`]:
/// model `r(θ)`, loss `½‖r‖²`, metric `I`.
pub type LeastSquaresProblem<O> = FitProblem<ResidualModel<O>, SquaredError<Euclidean>, Euclidean>;

/// Wraps an argmin problem with residual `r(θ)` ([`Operator`]) and dense Jacobian
/// ([`Jacobian`]) as the natgrad problem `min ½‖r(θ)‖²` with the Euclidean metric, i.e.
/// Gauss–Newton (docs/math.md §2, `M = I`).
///
/// `theta0` (length `p`, the number of parameters) is where the residual is evaluated
/// once to learn its length `n`. Fails with the problem's own error (as
/// [`Error::Problem`]) when `apply` fails there, with [`Error::NonFinite`] when θ₀ or
/// `r(θ₀)` is not finite, and with [`Error::Empty`] for `p = 0` or `n = 0`.
pub fn least_squares<O>(operator: O, theta0: &[f64]) -> Result<LeastSquaresProblem<O>>
where
    O: Operator + Jacobian<Param = <O as Operator>::Param> + Send + Sync,
    <O as Operator>::Param: ArgminVector,
    <O as Operator>::Output: ArgminVector,
    <O as Jacobian>::Jacobian: AsDenseJacobian,
{
    check_finite("least_squares: θ₀", theta0)?;
    let r = operator
        .apply(&ArgminVector::from_slice(theta0))
        .map_err(|e| problem_error("Operator::apply at θ₀", e))?
        .into_vec();
    check_finite("least_squares: r(θ₀) from Operator::apply", &r)?;
    let n = r.len();
    let model = ResidualModel {
        operator,
        n_params: theta0.len(),
        n_outputs: n,
    };
    FitProblem::new(
        model,
        SquaredError::new(vec![0.0; n], Euclidean)?,
        Euclidean,
    )
}

/// A Jacobian type that can be read as a dense n×p matrix (row `i`: `∂r_i/∂θ`).
pub trait AsDenseJacobian {
    /// The dense matrix. Fails with [`Error::DimensionMismatch`] on ragged rows.
    fn to_dense(&self) -> Result<Mat<f64>>;
}

impl AsDenseJacobian for Vec<Vec<f64>> {
    /// One inner vector per residual (argmin's row convention for `Vec`).
    fn to_dense(&self) -> Result<Mat<f64>> {
        JacobianMatrix::from_rows(self).map(|j| j.0)
    }
}

impl AsDenseJacobian for JacobianMatrix {
    fn to_dense(&self) -> Result<Mat<f64>> {
        Ok(self.0.clone())
    }
}

/// A parameter or residual vector of an argmin problem, converted to and from natgrad's
/// `&[f64]` at the boundary (one copy per call, as for `Vec<f64>`): `Vec<f64>`, and with
/// the cargo features `ndarray` / `nalgebra`, `ndarray::Array1<f64>` and
/// `nalgebra::DVector<f64>` (the versions argmin-math 0.5's `ndarray_latest` and
/// `nalgebra_latest` use).
pub trait ArgminVector {
    /// The vector with entries `x`.
    fn from_slice(x: &[f64]) -> Self;
    /// Its entries in order.
    fn into_vec(self) -> Vec<f64>;
}

impl ArgminVector for Vec<f64> {
    fn from_slice(x: &[f64]) -> Self {
        x.to_vec()
    }
    fn into_vec(self) -> Vec<f64> {
        self
    }
}

#[cfg(feature = "ndarray")]
impl ArgminVector for ndarray::Array1<f64> {
    fn from_slice(x: &[f64]) -> Self {
        ndarray::Array1::from(x.to_vec())
    }
    fn into_vec(self) -> Vec<f64> {
        self.into_iter().collect()
    }
}

#[cfg(feature = "ndarray")]
impl AsDenseJacobian for ndarray::Array2<f64> {
    /// Row `i`: `∂r_i/∂θ` (argmin-math's convention for ndarray).
    fn to_dense(&self) -> Result<Mat<f64>> {
        let (n, p) = self.dim();
        Ok(Mat::from_fn(n, p, |i, j| self[(i, j)]))
    }
}

#[cfg(feature = "nalgebra")]
impl ArgminVector for nalgebra::DVector<f64> {
    fn from_slice(x: &[f64]) -> Self {
        nalgebra::DVector::from_column_slice(x)
    }
    fn into_vec(self) -> Vec<f64> {
        self.as_slice().to_vec()
    }
}

#[cfg(feature = "nalgebra")]
impl AsDenseJacobian for nalgebra::DMatrix<f64> {
    /// Row `i`: `∂r_i/∂θ` (argmin-math's convention for nalgebra).
    fn to_dense(&self) -> Result<Mat<f64>> {
        Ok(Mat::from_fn(self.nrows(), self.ncols(), |i, j| {
            self[(i, j)]
        }))
    }
}

/// The residual of an argmin least-squares problem as a natgrad [`Model`]: outputs
/// `r(θ)`, dense Jacobian from [`Jacobian::jacobian`]. Made by [`least_squares`].
pub struct ResidualModel<O> {
    operator: O,
    n_params: usize,
    n_outputs: usize,
}

impl<O> std::fmt::Debug for ResidualModel<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResidualModel")
            .field("n_params", &self.n_params)
            .field("n_outputs", &self.n_outputs)
            .finish()
    }
}

impl<O> ResidualModel<O>
where
    O: Operator + Jacobian<Param = <O as Operator>::Param> + Send + Sync,
    <O as Operator>::Param: ArgminVector,
    <O as Operator>::Output: ArgminVector,
    <O as Jacobian>::Jacobian: AsDenseJacobian,
{
    /// The wrapped argmin problem.
    pub fn operator(&self) -> &O {
        &self.operator
    }

    /// `r(θ)`, checked to have `n` entries.
    fn residual(&self, theta: &[f64]) -> Result<Vec<f64>> {
        let r = self
            .operator
            .apply(&ArgminVector::from_slice(theta))
            .map_err(|e| problem_error("Operator::apply", e))?
            .into_vec();
        check_len(
            "Operator::apply (residual r(θ)) vs its length at θ₀",
            self.n_outputs,
            r.len(),
        )?;
        Ok(r)
    }
}

impl<O> Model for ResidualModel<O>
where
    O: Operator + Jacobian<Param = <O as Operator>::Param> + Send + Sync,
    <O as Operator>::Param: ArgminVector,
    <O as Operator>::Output: ArgminVector,
    <O as Jacobian>::Jacobian: AsDenseJacobian,
{
    type Linearization<'a>
        = ClosureLinearization
    where
        Self: 'a;

    fn n_params(&self) -> usize {
        self.n_params
    }

    fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    /// `r(θ)` and the dense Jacobian `J(θ)` (one `apply`, one `jacobian`).
    fn linearize(&self, theta: &[f64]) -> Result<ClosureLinearization> {
        let r = self.residual(theta)?;
        let jac = self
            .operator
            .jacobian(&ArgminVector::from_slice(theta))
            .map_err(|e| problem_error("Jacobian::jacobian", e))?
            .to_dense()?;
        check_len(
            "Jacobian::jacobian rows vs residuals",
            self.n_outputs,
            jac.nrows(),
        )?;
        check_len(
            "Jacobian::jacobian columns vs parameters",
            self.n_params,
            jac.ncols(),
        )?;
        crate::error::check_finite_mat("Jacobian::jacobian: J(θ)", jac.as_ref())?;
        ClosureLinearization::new(r, jac)
    }

    /// `r(θ)` (one `apply`).
    fn forward(&self, theta: &[f64], out: &mut [f64]) -> Result<()> {
        let r = self.residual(theta)?;
        check_len(
            "forward output buffer vs residuals",
            self.n_outputs,
            out.len(),
        )?;
        out.copy_from_slice(&r);
        Ok(())
    }
}

fn problem_error(method: &str, e: argmin::core::Error) -> Error {
    Error::Problem(format!("{method} of the argmin problem failed: {e}"))
}

/// A dense Jacobian (n×p faer matrix) for argmin problems on `Vec<f64>`.
///
/// argmin's `Vec` backend has no matrix inverse, so argmin's `GaussNewton` and
/// `GaussNewtonLS` cannot run on `Vec<f64>` with `Vec<Vec<f64>>` Jacobians. This type
/// implements the argmin-math traits they need — transpose, product with a matrix or a
/// `Vec<f64>`, and inverse (faer's LU with partial pivoting) — so one problem runs under
/// argmin's Gauss–Newton and under natgrad ([`AsDenseJacobian`]).
#[derive(Debug, Clone, PartialEq)]
pub struct JacobianMatrix(pub Mat<f64>);

impl JacobianMatrix {
    /// From rows (row `i`: `∂r_i/∂θ`). Fails with [`Error::DimensionMismatch`] when the
    /// rows differ in length.
    pub fn from_rows(rows: &[Vec<f64>]) -> Result<Self> {
        let p = rows.first().map_or(0, Vec::len);
        for (i, row) in rows.iter().enumerate() {
            check_len(&format!("Jacobian row {i} vs row 0"), p, row.len())?;
        }
        Ok(Self(Mat::from_fn(rows.len(), p, |i, j| rows[i][j])))
    }

    /// The matrix.
    pub fn as_ref(&self) -> MatRef<'_, f64> {
        self.0.as_ref()
    }
}

impl ArgminTranspose<JacobianMatrix> for JacobianMatrix {
    fn t(self) -> JacobianMatrix {
        JacobianMatrix(self.0.transpose().to_owned())
    }
}

impl ArgminDot<JacobianMatrix, JacobianMatrix> for JacobianMatrix {
    fn dot(&self, other: &JacobianMatrix) -> JacobianMatrix {
        JacobianMatrix(&self.0 * &other.0)
    }
}

impl ArgminDot<Vec<f64>, Vec<f64>> for JacobianMatrix {
    fn dot(&self, other: &Vec<f64>) -> Vec<f64> {
        let mut out = vec![0.0; self.0.nrows()];
        crate::linalg::gemv(&mut out, self.0.as_ref(), other, Par::Seq);
        out
    }
}

impl ArgminInv<JacobianMatrix> for JacobianMatrix {
    /// The inverse by faer's LU with partial pivoting; an error for a matrix that is not
    /// square or whose inverse is not finite (singular).
    fn inv(&self) -> std::result::Result<JacobianMatrix, argmin::core::Error> {
        let (n, m) = (self.0.nrows(), self.0.ncols());
        if n != m {
            return Err(argmin::core::ArgminError::InvalidParameter {
                text: format!("JacobianMatrix::inv: the matrix is {n}×{m}, not square"),
            }
            .into());
        }
        let inv = self.0.partial_piv_lu().inverse();
        crate::error::check_finite_mat(
            "JacobianMatrix::inv: the inverse (singular matrix?)",
            inv.as_ref(),
        )
        .map_err(|e| e.into_argmin("JacobianMatrix::inv"))?;
        Ok(JacobianMatrix(inv))
    }
}
