//! The linear model `y = A θ + b` with a dense (faer) or sparse (sprs) design matrix.

use super::{Linearization, Model};
use crate::error::{check_finite, check_len, check_nonempty, Error, Result};
use crate::linalg::gemv;
use faer::{Mat, Par};
use sprs::CsMat;

/// The design matrix `A` (n×p) of a [`LinearModel`].
#[derive(Debug, Clone)]
pub enum Design {
    /// Dense, stored by faer.
    Dense(Mat<f64>),
    /// Sparse, stored by sprs in CSR form (a CSC matrix is converted on construction).
    Sparse(CsMat<f64>),
}

impl Design {
    fn nrows(&self) -> usize {
        match self {
            Design::Dense(a) => a.nrows(),
            Design::Sparse(a) => a.rows(),
        }
    }
    fn ncols(&self) -> usize {
        match self {
            Design::Dense(a) => a.ncols(),
            Design::Sparse(a) => a.cols(),
        }
    }
}

/// `y(θ) = A θ + b`: a linear model in θ with a fixed design matrix `A` and offset `b`.
///
/// With features `Φ(x_i)` stacked as rows, `A = Φ Bᵀ`-style designs cover least squares,
/// finite-element and spectral models, and the biased linear toy of docs/math.md §4
/// (`A = Bᵀ`). Its Jacobian is `A` itself, so `jvp` and `vjp` are one (sparse) GEMV each.
#[derive(Debug, Clone)]
pub struct LinearModel {
    design: Design,
    offset: Option<Vec<f64>>,
    outputs_per_sample: usize,
    par: Par,
}

impl LinearModel {
    /// A model with dense design `a` (n×p). Fails on non-finite entries, and with
    /// [`Error::Empty`] when `n = 0` (no data) or `p = 0` (no parameters).
    pub fn dense(a: Mat<f64>) -> Result<Self> {
        check_shape(a.nrows(), a.ncols())?;
        crate::error::check_finite_mat("design matrix", a.as_ref())?;
        Ok(Self::from_design(Design::Dense(a)))
    }

    /// A model with a sparse design `a` (n×p, CSR or CSC). Fails on non-finite entries,
    /// and with [`Error::Empty`] when `n = 0` or `p = 0`.
    pub fn sparse(a: CsMat<f64>) -> Result<Self> {
        check_shape(a.rows(), a.cols())?;
        check_finite("sparse design matrix (stored entries)", a.data())?;
        let a = if a.is_csr() { a } else { a.to_csr() };
        Ok(Self::from_design(Design::Sparse(a)))
    }

    fn from_design(design: Design) -> Self {
        Self {
            design,
            offset: None,
            outputs_per_sample: 1,
            par: Par::Seq,
        }
    }

    /// Adds a constant offset `b` (length n).
    pub fn with_offset(mut self, b: Vec<f64>) -> Result<Self> {
        check_len("offset vs model outputs", self.design.nrows(), b.len())?;
        check_finite("offset", &b)?;
        self.offset = Some(b);
        Ok(self)
    }

    /// Declares `q` outputs per sample point (rows `i·q..(i+1)·q` belong to sample `i`).
    pub fn with_outputs_per_sample(mut self, q: usize) -> Result<Self> {
        if q == 0 || !self.design.nrows().is_multiple_of(q) {
            return Err(Error::InvalidSetting(format!(
                "LinearModel: outputs per sample q = {q} must divide n = {}",
                self.design.nrows()
            )));
        }
        self.outputs_per_sample = q;
        Ok(self)
    }

    /// Parallelism of the dense products (faer `Par`); sequential by default.
    #[must_use]
    pub fn with_parallelism(mut self, par: Par) -> Self {
        self.par = par;
        self
    }

    /// The design matrix.
    pub fn design(&self) -> &Design {
        &self.design
    }

    fn apply(&self, theta: &[f64], out: &mut [f64]) {
        match &self.design {
            Design::Dense(a) => gemv(out, a.as_ref(), theta, self.par),
            Design::Sparse(a) => {
                out.fill(0.0);
                sprs::prod::mul_acc_mat_vec_csr(a.view(), theta, &mut *out);
            }
        }
    }

    fn apply_transpose(&self, s: &[f64], out: &mut [f64]) {
        match &self.design {
            Design::Dense(a) => gemv(out, a.transpose(), s, self.par),
            Design::Sparse(a) => {
                out.fill(0.0);
                sprs::prod::mul_acc_mat_vec_csc(a.transpose_view(), s, &mut *out);
            }
        }
    }
}

/// A design matrix must have rows (samples) and columns (parameters).
fn check_shape(n: usize, p: usize) -> Result<()> {
    check_nonempty("LinearModel: rows of the design matrix (outputs n)", n)?;
    check_nonempty(
        "LinearModel: columns of the design matrix (parameters p)",
        p,
    )
}

impl Model for LinearModel {
    type Linearization<'a> = LinearLinearization<'a>;

    fn n_params(&self) -> usize {
        self.design.ncols()
    }

    fn n_outputs(&self) -> usize {
        self.design.nrows()
    }

    fn n_samples(&self) -> usize {
        self.design.nrows() / self.outputs_per_sample
    }

    fn linearize(&self, theta: &[f64]) -> Result<LinearLinearization<'_>> {
        let mut y = vec![0.0; self.n_outputs()];
        self.forward(theta, &mut y)?;
        Ok(LinearLinearization { model: self, y })
    }

    fn forward(&self, theta: &[f64], out: &mut [f64]) -> Result<()> {
        check_len("theta vs model parameters", self.n_params(), theta.len())?;
        check_len(
            "forward output buffer vs model outputs",
            self.n_outputs(),
            out.len(),
        )?;
        self.apply(theta, out);
        if let Some(b) = &self.offset {
            out.iter_mut().zip(b).for_each(|(o, b)| *o += b);
        }
        Ok(())
    }

    fn select_samples(&self, samples: &[usize]) -> Result<Self> {
        let q = self.outputs_per_sample;
        let m = self.n_samples();
        if let Some(&bad) = samples.iter().find(|&&i| i >= m) {
            return Err(Error::InvalidSetting(format!(
                "LinearModel: sample index {bad} out of range for {m} samples"
            )));
        }
        let rows: Vec<usize> = samples.iter().flat_map(|&i| (i * q)..(i * q + q)).collect();
        let design = match &self.design {
            Design::Dense(a) => {
                Design::Dense(Mat::from_fn(rows.len(), a.ncols(), |i, j| a[(rows[i], j)]))
            }
            Design::Sparse(a) => {
                let mut tri = sprs::TriMat::new((rows.len(), a.cols()));
                for (new_i, &old_i) in rows.iter().enumerate() {
                    if let Some(row) = a.outer_view(old_i) {
                        for (j, &v) in row.iter() {
                            tri.add_triplet(new_i, j, v);
                        }
                    }
                }
                Design::Sparse(tri.to_csr())
            }
        };
        Ok(Self {
            design,
            offset: self
                .offset
                .as_ref()
                .map(|b| rows.iter().map(|&i| b[i]).collect()),
            outputs_per_sample: q,
            par: self.par,
        })
    }
}

/// [`LinearModel`] linearised at θ: the outputs, and `A` for the products.
#[derive(Debug)]
pub struct LinearLinearization<'a> {
    model: &'a LinearModel,
    y: Vec<f64>,
}

impl Linearization for LinearLinearization<'_> {
    fn n_params(&self) -> usize {
        self.model.n_params()
    }

    fn outputs(&self) -> &[f64] {
        &self.y
    }

    fn jvp(&mut self, t: &[f64], out: &mut [f64]) {
        self.model.apply(t, out);
    }

    fn vjp(&mut self, s: &[f64], out: &mut [f64]) {
        self.model.apply_transpose(s, out);
    }

    fn dense_jacobian(&mut self) -> Option<Mat<f64>> {
        Some(match &self.model.design {
            Design::Dense(a) => a.clone(),
            Design::Sparse(a) => {
                let mut d = Mat::zeros(a.rows(), a.cols());
                for (v, (i, j)) in a.iter() {
                    d[(i, j)] = *v;
                }
                d
            }
        })
    }

    fn gram_diagonal(&mut self, w: &[f64], out: &mut [f64]) -> bool {
        out.fill(0.0);
        match &self.model.design {
            Design::Dense(a) => crate::linalg::weighted_column_norms_sq(a.as_ref(), w, out),
            Design::Sparse(a) => {
                for (v, (i, j)) in a.iter() {
                    out[j] += w[i] * v * v;
                }
            }
        }
        true
    }
}
