//! A model built from user closures: value and dense Jacobian, for small problems.

use super::{Linearization, Model};
use crate::error::{check_finite, Result};
use crate::linalg::gemv;
use faer::{Mat, MatMut, Par};
use num_complex::Complex64;
use std::fmt;

/// Complex extension of a model's value map, used by complex-step derivative checks.
pub type ComplexValueFn = dyn Fn(&[Complex64], &mut [Complex64]) + Send + Sync;

/// A model given by two closures: `value(θ, y)` writes `y(θ)` and `jacobian(θ, J)` writes
/// the dense n×p Jacobian. Good for small `p` and `n` (the Jacobian is formed).
///
/// An optional complex extension of `value` ([`ClosureModel::with_complex_value`]) lets
/// [`crate::check::complex_step_jvp`] verify the Jacobian to machine precision.
///
/// ```
/// use natgrad::model::{ClosureModel, Model, Linearization};
/// // y(θ) = (θ₀², θ₀θ₁)
/// let model = ClosureModel::new(
///     2,
///     2,
///     |t: &[f64], y: &mut [f64]| { y[0] = t[0] * t[0]; y[1] = t[0] * t[1]; },
///     |t: &[f64], mut j: faer::MatMut<'_, f64>| {
///         j[(0, 0)] = 2.0 * t[0]; j[(0, 1)] = 0.0;
///         j[(1, 0)] = t[1];       j[(1, 1)] = t[0];
///     },
/// );
/// let mut lin = model.linearize(&[1.0, 2.0]).unwrap();
/// let mut jt = [0.0; 2];
/// lin.jvp(&[1.0, 0.0], &mut jt);
/// assert_eq!(jt, [2.0, 2.0]);
/// ```
pub struct ClosureModel<F, Jf> {
    n_params: usize,
    n_outputs: usize,
    value: F,
    jacobian: Jf,
    complex_value: Option<Box<ComplexValueFn>>,
}

impl<F, Jf> fmt::Debug for ClosureModel<F, Jf> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClosureModel")
            .field("n_params", &self.n_params)
            .field("n_outputs", &self.n_outputs)
            .field("has_complex_value", &self.complex_value.is_some())
            .finish()
    }
}

impl<F, Jf> ClosureModel<F, Jf>
where
    F: Fn(&[f64], &mut [f64]) + Send + Sync,
    Jf: Fn(&[f64], MatMut<'_, f64>) + Send + Sync,
{
    /// A model with `n_params` parameters and `n_outputs` outputs.
    pub fn new(n_params: usize, n_outputs: usize, value: F, jacobian: Jf) -> Self {
        Self {
            n_params,
            n_outputs,
            value,
            jacobian,
            complex_value: None,
        }
    }

    /// Adds the complex extension of `value` (same formula over `Complex64`), enabling
    /// complex-step derivative checks of the Jacobian.
    #[must_use]
    pub fn with_complex_value(
        mut self,
        f: impl Fn(&[Complex64], &mut [Complex64]) + Send + Sync + 'static,
    ) -> Self {
        self.complex_value = Some(Box::new(f));
        self
    }

    /// The complex extension of the value map, if given.
    pub fn complex_value(&self) -> Option<&ComplexValueFn> {
        self.complex_value.as_deref()
    }
}

impl<F, Jf> Model for ClosureModel<F, Jf>
where
    F: Fn(&[f64], &mut [f64]) + Send + Sync,
    Jf: Fn(&[f64], MatMut<'_, f64>) + Send + Sync,
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

    fn linearize(&self, theta: &[f64]) -> Result<ClosureLinearization> {
        let mut y = vec![0.0; self.n_outputs];
        (self.value)(theta, &mut y);
        let mut jac = Mat::zeros(self.n_outputs, self.n_params);
        (self.jacobian)(theta, jac.as_mut());
        check_finite("ClosureModel value closure: model outputs y(θ)", &y)?;
        crate::error::check_finite_mat("ClosureModel jacobian closure: J(θ)", jac.as_ref())?;
        Ok(ClosureLinearization { y, jac })
    }

    fn forward(&self, theta: &[f64], out: &mut [f64]) -> Result<()> {
        crate::error::check_len(
            "forward output buffer vs model outputs",
            self.n_outputs,
            out.len(),
        )?;
        (self.value)(theta, out);
        Ok(())
    }
}

/// A [`ClosureModel`] linearised at θ: outputs and dense Jacobian.
#[derive(Debug, Clone)]
pub struct ClosureLinearization {
    y: Vec<f64>,
    jac: Mat<f64>,
}

impl ClosureLinearization {
    /// Builds a linearisation from outputs and a dense Jacobian (n×p); useful to wrap a
    /// Jacobian computed elsewhere.
    pub fn new(outputs: Vec<f64>, jacobian: Mat<f64>) -> Result<Self> {
        crate::error::check_len("Jacobian rows vs outputs", outputs.len(), jacobian.nrows())?;
        Ok(Self {
            y: outputs,
            jac: jacobian,
        })
    }
}

impl Linearization for ClosureLinearization {
    fn n_params(&self) -> usize {
        self.jac.ncols()
    }

    fn outputs(&self) -> &[f64] {
        &self.y
    }

    fn jvp(&mut self, t: &[f64], out: &mut [f64]) {
        gemv(out, self.jac.as_ref(), t, Par::Seq);
    }

    fn vjp(&mut self, s: &[f64], out: &mut [f64]) {
        gemv(out, self.jac.transpose(), s, Par::Seq);
    }

    fn dense_jacobian(&mut self) -> Option<Mat<f64>> {
        Some(self.jac.clone())
    }

    fn gram_diagonal(&mut self, w: &[f64], out: &mut [f64]) -> bool {
        crate::linalg::weighted_column_norms_sq(self.jac.as_ref(), w, out);
        true
    }
}
