//! Physics-informed models: the outputs are PDE residuals of a tanh network (docs/math.md §4).
//!
//! For a linear differential operator of order ≤ 2 with constant coefficients
//! `𝓛v = a Δv + b·∇v + c v`, interior collocation points `x_i` (source `f`) and boundary
//! points `x_j` (data `g`, weight `β`), the outputs are
//!
//! ```text
//! R_i = (𝓛v_θ(x_i) − f(x_i)) / √m_Ω          (interior)
//! B_j = √(β / m_∂) (v_θ(x_j) − g(x_j))        (boundary)
//! ```
//!
//! so that `½‖(R, B)‖²` is the usual PINN loss and natural gradient with the Euclidean
//! metric on these outputs is energy natural gradient (Gauss–Newton on the residual). The
//! Jacobian needs derivatives in x and in θ at once: [`TaylorMlp`] propagates
//! `(v, ∇v, Δv)` and differentiates that pass in θ.

use super::taylor::{TaylorMlp, TaylorPass};
use super::{Linearization, Model};
use crate::error::{check_finite, check_len, Error, Result};
use faer::{Mat, MatRef, Par};

/// `𝓛v = a Δv + b·∇v + c v` with constant coefficients.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffOperator {
    /// Coefficient of the Laplacian.
    pub laplacian: f64,
    /// Advection vector `b` (length `d`).
    pub gradient: Vec<f64>,
    /// Reaction coefficient `c`.
    pub value: f64,
}

/// Points `x_j` (`d × m`, one per column) and a value `v_j` at each: the interior
/// collocation points with the source `f(x_i)`, or the boundary points with the data
/// `g(x_j)`, of [`Pinn::new`].
#[derive(Debug, Clone)]
pub struct Collocation<'a> {
    /// The points, `d × m`.
    pub points: MatRef<'a, f64>,
    /// One value per point (length `m`).
    pub values: Vec<f64>,
}

impl<'a> Collocation<'a> {
    /// Points and their values (sizes checked by [`Pinn::new`]).
    pub fn new(points: MatRef<'a, f64>, values: Vec<f64>) -> Self {
        Self { points, values }
    }
}

/// A PINN: tanh network, differential operator, collocation and boundary data.
#[derive(Debug, Clone)]
pub struct Pinn {
    net: TaylorMlp,
    op: DiffOperator,
    /// Interior points then boundary points, `d × (m_Ω + m_∂)`.
    points: Mat<f64>,
    m_interior: usize,
    source: Vec<f64>,
    boundary_values: Vec<f64>,
    interior_scale: f64,
    boundary_scale: f64,
    boundary_weight: f64,
    par: Par,
}

impl Pinn {
    /// Builds the model. `interior` is `d × m_Ω` with the source values `f(x_i)`,
    /// `boundary` is `d × m_∂` with data `g(x_j)`; `boundary_weight` is `β > 0`.
    /// Fails with a typed error on mismatched sizes, non-finite points or values, no
    /// interior point, or `β ≤ 0`.
    pub fn new(
        net: TaylorMlp,
        op: DiffOperator,
        interior: Collocation<'_>,
        boundary: Collocation<'_>,
        boundary_weight: f64,
    ) -> Result<Self> {
        let (interior, source) = (interior.points, interior.values);
        let (boundary, boundary_values) = (boundary.points, boundary.values);
        let d = net.input_dim();
        check_len(
            "Pinn: advection vector vs input dimension",
            d,
            op.gradient.len(),
        )?;
        check_len("Pinn: rows of interior points vs d", d, interior.nrows())?;
        check_len("Pinn: rows of boundary points vs d", d, boundary.nrows())?;
        check_len(
            "Pinn: source values vs interior points",
            interior.ncols(),
            source.len(),
        )?;
        check_len(
            "Pinn: boundary values vs boundary points",
            boundary.ncols(),
            boundary_values.len(),
        )?;
        crate::error::check_finite_mat("Pinn: interior points", interior)?;
        crate::error::check_finite_mat("Pinn: boundary points", boundary)?;
        check_finite("Pinn: source values", &source)?;
        check_finite("Pinn: boundary values", &boundary_values)?;
        if !(boundary_weight > 0.0 && boundary_weight.is_finite()) || interior.ncols() == 0 {
            return Err(Error::InvalidSetting(format!(
                "Pinn: need interior points and a boundary weight > 0, got {} points and β = {boundary_weight}",
                interior.ncols()
            )));
        }
        let (mi, mb) = (interior.ncols(), boundary.ncols());
        let points = Mat::from_fn(d, mi + mb, |k, j| {
            if j < mi {
                interior[(k, j)]
            } else {
                boundary[(k, j - mi)]
            }
        });
        Ok(Self {
            net,
            op,
            points,
            m_interior: mi,
            source,
            boundary_values,
            interior_scale: 1.0 / (mi as f64).sqrt(),
            boundary_scale: if mb > 0 {
                (boundary_weight / mb as f64).sqrt()
            } else {
                0.0
            },
            boundary_weight,
            par: Par::Seq,
        })
    }

    /// Parallelism of the GEMMs (faer `Par`); sequential by default.
    #[must_use]
    pub fn with_parallelism(mut self, par: Par) -> Self {
        self.par = par;
        self
    }

    /// The network.
    pub fn net(&self) -> &TaylorMlp {
        &self.net
    }

    /// Number of interior points `m_Ω`.
    pub fn n_interior(&self) -> usize {
        self.m_interior
    }

    /// The network's value `v_θ` at arbitrary points (`d × k`).
    pub fn evaluate(&self, theta: &[f64], x: MatRef<'_, f64>) -> Result<Vec<f64>> {
        let pass = self.net.forward(theta, x, self.par)?;
        Ok((0..x.ncols()).map(|i| pass.value(i)).collect())
    }

    /// `𝓛v` at point `i` of a pass.
    fn apply_op(&self, pass: &TaylorPass, i: usize) -> f64 {
        let grad: f64 = (0..self.net.input_dim())
            .map(|k| self.op.gradient[k] * pass.partial(i, k))
            .sum();
        self.op.laplacian * pass.laplacian(i) + grad + self.op.value * pass.value(i)
    }

    /// Maps channel tangents (channel-major, `C·M`) to output tangents.
    fn channels_to_outputs(&self, ch: &[f64], out: &mut [f64]) {
        let (d, mt) = (self.net.input_dim(), self.points.ncols());
        for (i, o) in out.iter_mut().enumerate() {
            *o = if i < self.m_interior {
                let grad: f64 = (0..d)
                    .map(|k| self.op.gradient[k] * ch[(1 + k) * mt + i])
                    .sum();
                self.interior_scale
                    * (self.op.laplacian * ch[(d + 1) * mt + i] + grad + self.op.value * ch[i])
            } else {
                self.boundary_scale * ch[i]
            };
        }
    }

    /// The adjoint of [`Pinn::channels_to_outputs`].
    fn outputs_to_channels(&self, s: &[f64], ch: &mut [f64]) {
        let (d, mt) = (self.net.input_dim(), self.points.ncols());
        ch.fill(0.0);
        for (i, &si) in s.iter().enumerate() {
            if i < self.m_interior {
                let w = self.interior_scale * si;
                ch[i] = self.op.value * w;
                for k in 0..d {
                    ch[(1 + k) * mt + i] = self.op.gradient[k] * w;
                }
                ch[(d + 1) * mt + i] = self.op.laplacian * w;
            } else {
                ch[i] = self.boundary_scale * si;
            }
        }
    }
}

impl Model for Pinn {
    type Linearization<'a> = PinnLinearization<'a>;

    fn n_params(&self) -> usize {
        self.net.n_params()
    }

    fn n_outputs(&self) -> usize {
        self.points.ncols()
    }

    fn linearize(&self, theta: &[f64]) -> Result<PinnLinearization<'_>> {
        let pass = self.net.forward(theta, self.points.as_ref(), self.par)?;
        let outputs = (0..self.points.ncols())
            .map(|i| {
                if i < self.m_interior {
                    self.interior_scale * (self.apply_op(&pass, i) - self.source[i])
                } else {
                    let j = i - self.m_interior;
                    self.boundary_scale * (pass.value(i) - self.boundary_values[j])
                }
            })
            .collect();
        let work = pass.work_buffers();
        let channels = vec![0.0; self.net.channels() * self.points.ncols()];
        Ok(PinnLinearization {
            model: self,
            pass,
            work,
            channels,
            outputs,
        })
    }

    fn select_samples(&self, samples: &[usize]) -> Result<Self> {
        let m = self.points.ncols();
        if let Some(&bad) = samples.iter().find(|&&i| i >= m) {
            return Err(Error::InvalidSetting(format!(
                "Pinn: sample index {bad} out of range for {m} points"
            )));
        }
        let (int, bnd): (Vec<usize>, Vec<usize>) =
            samples.iter().partition(|&&i| i < self.m_interior);
        if int.is_empty() {
            return Err(Error::InvalidSetting(
                "Pinn: a mini-batch needs at least one interior point".into(),
            ));
        }
        let d = self.net.input_dim();
        let pick = |idx: &[usize]| Mat::from_fn(d, idx.len(), |k, j| self.points[(k, idx[j])]);
        let (int_points, bnd_points) = (pick(&int), pick(&bnd));
        let interior = Collocation::new(
            int_points.as_ref(),
            int.iter().map(|&i| self.source[i]).collect(),
        );
        let boundary = Collocation::new(
            bnd_points.as_ref(),
            bnd.iter()
                .map(|&i| self.boundary_values[i - self.m_interior])
                .collect(),
        );
        let mut sub = Pinn::new(
            self.net.clone(),
            self.op.clone(),
            interior,
            boundary,
            self.boundary_weight,
        )?;
        sub.par = self.par;
        Ok(sub)
    }
}

/// [`Pinn`] linearised at θ: the Taylor pass and product buffers.
#[derive(Debug)]
pub struct PinnLinearization<'a> {
    model: &'a Pinn,
    pass: TaylorPass,
    work: Vec<Mat<f64>>,
    channels: Vec<f64>,
    outputs: Vec<f64>,
}

impl Linearization for PinnLinearization<'_> {
    fn n_params(&self) -> usize {
        self.model.n_params()
    }

    fn outputs(&self) -> &[f64] {
        &self.outputs
    }

    fn jvp(&mut self, t: &[f64], out: &mut [f64]) {
        self.pass.jvp(t, &mut self.channels, &mut self.work);
        self.model.channels_to_outputs(&self.channels, out);
    }

    fn vjp(&mut self, s: &[f64], out: &mut [f64]) {
        self.model.outputs_to_channels(s, &mut self.channels);
        self.pass.vjp(&self.channels, out, &mut self.work);
    }

    /// Output `i` depends on point `i` only: one backward pass with a unit cotangent on
    /// every output gives all rows at once (see `TaylorPass::point_jacobian`).
    fn dense_jacobian(&mut self) -> Option<Mat<f64>> {
        let n = self.outputs.len();
        self.model
            .outputs_to_channels(&vec![1.0; n], &mut self.channels);
        let mut j = Mat::zeros(n, self.model.n_params());
        self.pass
            .point_jacobian(&self.channels, j.as_mut(), &mut self.work);
        Some(j)
    }
}
