//! Deep Ritz: the energy `E(θ) = Σ_t Σ_i w_i e_t(x_i, c_i(θ))` as a [`Model`] whose
//! outputs are the channels `c_i` at the quadrature points and a [`Loss`] on them.
//!
//! With `y` the channels, `ℓ(y) = Σ_i w_i e(x_i, y_i)` has the gradient `w_i ∂e/∂c` and the
//! block-diagonal Hessian `w_i ∂²e/∂c∂c` (`K × K` per point, `K` channels). The loss-Hessian metric
//! ([`LossHessian`]) on it gives the Gram `JᵀHJ = Σ_i w_i J_iᵀ ∂²e/∂c∂c J_i`: the Hessian of the
//! energy in function space pulled back to θ — energy natural gradient for the Ritz method
//! (Müller & Zeinhofer 2023, docs/math.md §1 with `M = ∇²_y ℓ`). For `e = ½|∇u|² − f u` it
//! is the H¹-seminorm Gram `Σ_i w_i ∇_θ∇u(x_i) ∇_θ∇u(x_i)ᵀ`.

use super::energy::{density_derivatives, density_value, EnergyTerm};
use super::residual::Channels;
use crate::error::{check_len, Error, Result};
use crate::loss::Loss;
use crate::metric::LossHessian;
use crate::model::taylor::{TaylorMlp, TaylorPass};
use crate::model::{Linearization, Model};
use crate::problem::FitProblem;
use faer::{Mat, MatRef, Par, Side};
use std::sync::{Arc, Mutex};

/// The energy's terms and the Hessian blocks of the last linearisation, shared by the
/// model (which computes and checks them) and the loss (which applies them).
#[derive(Debug)]
struct Energy {
    terms: Vec<EnergyTerm>,
    /// First output of each term, and the total at the end.
    offsets: Vec<usize>,
    q: usize,
    /// `(y, w_i ∂²e/∂c∂c per point)` at the last linearisation.
    hessian: Mutex<Option<(Vec<f64>, Vec<f64>)>>,
}

impl Energy {
    fn k(&self, t: usize) -> usize {
        self.q * self.terms[t].set.len()
    }

    /// Calls `f(term, point, its channels y_i, its output offset)` for every point.
    fn for_points(&self, y: &[f64], mut f: impl FnMut(usize, usize, &[f64], usize)) {
        for (t, w) in self.offsets.windows(2).enumerate() {
            let k = self.k(t);
            for (i, yi) in y[w[0]..w[1]].chunks_exact(k).enumerate() {
                f(t, i, yi, w[0] + i * k);
            }
        }
    }

    /// Gradient (into `grad`, if given) and Hessian blocks of the weighted densities at
    /// `y`; an error names the term and point of a non-finite derivative.
    fn derivatives(&self, y: &[f64], mut grad: Option<&mut [f64]>) -> Result<Vec<f64>> {
        let mut blocks = Vec::new();
        let mut failure = None;
        self.for_points(y, |t, i, yi, off| {
            if failure.is_some() {
                return;
            }
            let term = &self.terms[t];
            let k = yi.len();
            let (mut g, mut h) = (vec![0.0; k], vec![0.0; k * k]);
            let wi = term.weights[i];
            let at = Channels {
                values: yi,
                q: self.q,
                set: &term.set,
            };
            match density_derivatives(&*term.density, &term.point(i), at, &mut g, &mut h) {
                Err(missing) => {
                    failure = Some(Error::InvalidSetting(format!(
                        "energy term `{}`: the density read {missing} at point {i}, which the \
                     term does not carry",
                        term.name
                    )))
                }
                Ok(_) => match g.iter().chain(&h).find(|v| !v.is_finite()) {
                    Some(&value) => {
                        failure = Some(Error::NonFinite {
                            what: format!(
                                "energy term `{}`: derivative of the density at point {i}, x = \
                             {:?}; check the density's domain",
                                term.name,
                                term.point(i).x
                            ),
                            index: i,
                            value,
                        })
                    }
                    None => {
                        if let Some(gr) = grad.as_deref_mut() {
                            gr[off..off + k]
                                .iter_mut()
                                .zip(&g)
                                .for_each(|(o, v)| *o = wi * v);
                        }
                        blocks.extend(h.iter().map(|v| wi * v));
                    }
                },
            }
        });
        failure.map_or(Ok(blocks), Err)
    }

    /// Computes, checks (positive semidefinite, per point) and caches the Hessian blocks
    /// at `y`. An indefinite block is [`Error::IndefiniteMetric`] naming the term, the
    /// point and the eigenvalue: the energy is not convex there, so its Hessian is no
    /// metric.
    fn check_hessian(&self, y: &[f64]) -> Result<()> {
        let blocks = self.derivatives(y, None)?;
        let mut at = 0;
        for (t, w) in self.offsets.windows(2).enumerate() {
            let k = self.k(t);
            for i in 0..(w[1] - w[0]) / k {
                let h = Mat::from_fn(k, k, |a, b| blocks[at + a * k + b]);
                at += k * k;
                let eig = h.self_adjoint_eigenvalues(Side::Lower).map_err(|e| {
                    Error::IndefiniteMetric {
                        what: format!(
                            "energy Hessian of term `{}` at point {i}",
                            self.terms[t].name
                        ),
                        detail: format!("eigenvalues failed: {e:?}"),
                    }
                })?;
                let scale = eig.iter().fold(0.0f64, |s, v| s.max(v.abs()));
                let min = eig.iter().copied().fold(f64::INFINITY, f64::min);
                if min < -1e-12 * scale.max(f64::MIN_POSITIVE) {
                    return Err(Error::IndefiniteMetric {
                        what: format!(
                            "the Hessian ∂²e/∂c∂c of the energy density of term `{}` at point \
                             {i} (x = {:?})",
                            self.terms[t].name,
                            self.terms[t].point(i).x
                        ),
                        detail: format!(
                            "eigenvalue {min:e} < 0: the energy is not convex in the channels \
                             there, so energy natural gradient has no metric; use a convex \
                             density or the residual form (PdeModel)"
                        ),
                    });
                }
            }
        }
        *self.hessian.lock().expect("not poisoned") = Some((y.to_vec(), blocks));
        Ok(())
    }
}

/// A Deep Ritz model: a Taylor-mode network and the terms of an energy. Its outputs are
/// the channels of every quadrature point (term by term; point `i` of a term with `K`
/// channels at `i·K + c·q + o`), and [`RitzModel::energy`] is the loss on them; with
/// [`LossHessian`] as the metric, natural gradient is energy natural gradient in the energy's own
/// Hessian. The metric is block-diagonal, not diagonal, so the direct solves run in
/// parameter space (`LinearSolver::Cholesky`, CG); the sample-space solvers need `M⁻¹`.
#[derive(Debug, Clone)]
pub struct RitzModel {
    net: TaylorMlp,
    energy: Arc<Energy>,
    par: Par,
}

impl RitzModel {
    /// Builds the model. Typed errors at construction: no terms, an empty term, points of
    /// the wrong dimension, weights not one per point or negative, data not one column per
    /// point, non-finite points, a density that reads a channel its term did not request.
    pub fn new(net: TaylorMlp, terms: Vec<EnergyTerm>) -> Result<Self> {
        if terms.is_empty() {
            return Err(Error::InvalidSetting("RitzModel: no terms".into()));
        }
        let (d, q) = (net.input_dim(), net.output_dim());
        let mut offsets = vec![0];
        for t in &terms {
            t.validate(d, q)?;
            offsets.push(offsets.last().unwrap() + t.n_points() * q * t.set.len());
        }
        let energy = Energy {
            terms,
            offsets,
            q,
            hessian: Mutex::new(None),
        };
        Ok(Self {
            net,
            energy: Arc::new(energy),
            par: Par::Seq,
        })
    }

    /// The energy `Σ_t Σ_i w_i e_t(x_i, y_i)` on this model's outputs, as a [`Loss`].
    pub fn energy(&self) -> RitzEnergy {
        RitzEnergy {
            energy: self.energy.clone(),
        }
    }

    /// The problem of energy natural gradient: this model, its energy, the [`LossHessian`] metric.
    pub fn into_problem(self) -> Result<FitProblem<RitzModel, RitzEnergy, LossHessian>> {
        let energy = self.energy();
        FitProblem::new(self, energy, LossHessian)
    }

    /// The network.
    pub fn net(&self) -> &TaylorMlp {
        &self.net
    }

    /// The network's outputs `u_θ` at arbitrary points `x` (`d × k`): a `q × k` matrix.
    pub fn evaluate(&self, theta: &[f64], x: MatRef<'_, f64>) -> Result<Mat<f64>> {
        self.net.values(theta, x, self.par)
    }

    /// One Taylor pass per term, the channels written point-major into `out`.
    fn passes(&self, theta: &[f64], out: &mut [f64]) -> Result<Vec<TaylorPass>> {
        let q = self.energy.q;
        let mut passes = Vec::with_capacity(self.energy.terms.len());
        for (t, w) in self.energy.terms.iter().zip(self.energy.offsets.windows(2)) {
            let pass = self
                .net
                .forward_channels(theta, t.points.as_ref(), &t.set, self.par)?;
            let k = q * t.set.len();
            for (i, yi) in out[w[0]..w[1]].chunks_exact_mut(k).enumerate() {
                for (kk, v) in yi.iter_mut().enumerate() {
                    *v = pass.channel(kk % q, kk / q, i);
                }
            }
            passes.push(pass);
        }
        Ok(passes)
    }
}

impl Model for RitzModel {
    type Linearization<'a> = RitzLinearization;

    fn n_params(&self) -> usize {
        self.net.n_params()
    }

    fn n_outputs(&self) -> usize {
        *self.energy.offsets.last().expect("offsets start at 0")
    }

    /// The channels, and the energy's Hessian blocks checked positive semidefinite
    /// ([`Error::IndefiniteMetric`] otherwise, which ends a run cleanly).
    fn linearize(&self, theta: &[f64]) -> Result<RitzLinearization> {
        let mut outputs = vec![0.0; self.n_outputs()];
        let passes = self.passes(theta, &mut outputs)?;
        self.energy.check_hessian(&outputs)?;
        let terms = passes
            .into_iter()
            .map(|pass| TermPass {
                work: pass.work_buffers(),
                channels: vec![0.0; self.energy.q * pass.channel_set().len() * pass.n_points()],
                param: vec![0.0; self.net.n_params()],
                pass,
            })
            .collect();
        Ok(RitzLinearization {
            terms,
            offsets: self.energy.offsets.clone(),
            q: self.energy.q,
            outputs,
            p: self.net.n_params(),
        })
    }

    fn forward(&self, theta: &[f64], out: &mut [f64]) -> Result<()> {
        check_len("RitzModel: output buffer", self.n_outputs(), out.len())?;
        match self.passes(theta, out) {
            Ok(_) => Ok(()),
            Err(Error::NonFinite { .. }) => {
                out.fill(f64::NAN);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// The energy of a [`RitzModel`] as a [`Loss`] on its outputs (the channels): value
/// `Σ_i w_i e(x_i, y_i)`, gradient `w_i ∂e/∂c`, Hessian the blocks `w_i ∂²e/∂c∂c` (for the
/// [`LossHessian`] metric). The value may be negative (it is an energy, not a misfit).
#[derive(Debug, Clone)]
pub struct RitzEnergy {
    energy: Arc<Energy>,
}

impl Loss for RitzEnergy {
    fn dim(&self) -> Option<usize> {
        self.energy.offsets.last().copied()
    }

    /// A density that reads a channel its term lacks is rejected at construction; a
    /// NaN density makes the value NaN (a line search rejects the point).
    fn value(&self, y: &[f64]) -> f64 {
        let mut total = 0.0;
        self.energy.for_points(y, |t, i, yi, _| {
            let term = &self.energy.terms[t];
            let set = (self.energy.q, &term.set);
            total += term.weights[i]
                * density_value(&*term.density, &term.point(i), yi, set).unwrap_or(f64::NAN);
        });
        total
    }

    /// Non-finite derivatives come out as NaN (the problem's linearisation reports them).
    fn gradient(&self, y: &[f64], out: &mut [f64]) {
        if self.energy.derivatives(y, Some(out)).is_err() {
            out.fill(f64::NAN);
        }
    }

    /// The block-diagonal Hessian, from the blocks cached by the last linearisation when
    /// `y` is its output (recomputed otherwise).
    fn hessian_apply(&self, y: &[f64], v: &[f64], out: &mut [f64]) -> Result<()> {
        let mut cache = self.energy.hessian.lock().expect("not poisoned");
        if cache.as_ref().is_none_or(|(cy, _)| cy.as_slice() != y) {
            *cache = Some((y.to_vec(), self.energy.derivatives(y, None)?));
        }
        let blocks = &cache.as_ref().expect("filled above").1;
        let mut at = 0;
        for (t, w) in self.energy.offsets.windows(2).enumerate() {
            let k = self.energy.k(t);
            for (vi, oi) in v[w[0]..w[1]]
                .chunks_exact(k)
                .zip(out[w[0]..w[1]].chunks_exact_mut(k))
            {
                for (a, o) in oi.iter_mut().enumerate() {
                    let row = &blocks[at + a * k..at + (a + 1) * k];
                    *o = row.iter().zip(vi).map(|(h, x)| h * x).sum();
                }
                at += k * k;
            }
        }
        Ok(())
    }

    fn has_hessian(&self) -> bool {
        true
    }
}

/// One term's pass at θ and its buffers.
#[derive(Debug)]
struct TermPass {
    pass: TaylorPass,
    work: Vec<Mat<f64>>,
    /// Channel-major tangents/cotangents, `(c·m + i)·q + o`.
    channels: Vec<f64>,
    param: Vec<f64>,
}

/// [`RitzModel`] linearised at θ: one Taylor pass per term.
#[derive(Debug)]
pub struct RitzLinearization {
    terms: Vec<TermPass>,
    offsets: Vec<usize>,
    q: usize,
    outputs: Vec<f64>,
    p: usize,
}

/// Index in the pass's channel-major layout of output entry `i·K + kk` (`kk = c·q + o`).
fn channel_major(i: usize, kk: usize, m: usize, q: usize) -> usize {
    ((kk / q) * m + i) * q + kk % q
}

impl Linearization for RitzLinearization {
    fn n_params(&self) -> usize {
        self.p
    }

    fn outputs(&self) -> &[f64] {
        &self.outputs
    }

    fn jvp(&mut self, t: &[f64], out: &mut [f64]) {
        for (tp, w) in self.terms.iter_mut().zip(self.offsets.windows(2)) {
            tp.pass.jvp(t, &mut tp.channels, &mut tp.work);
            let m = tp.pass.n_points();
            let k = (w[1] - w[0]) / m;
            for (j, o) in out[w[0]..w[1]].iter_mut().enumerate() {
                *o = tp.channels[channel_major(j / k, j % k, m, self.q)];
            }
        }
    }

    fn vjp(&mut self, s: &[f64], out: &mut [f64]) {
        out.fill(0.0);
        for (tp, w) in self.terms.iter_mut().zip(self.offsets.windows(2)) {
            let m = tp.pass.n_points();
            let k = (w[1] - w[0]) / m;
            for (j, &sj) in s[w[0]..w[1]].iter().enumerate() {
                tp.channels[channel_major(j / k, j % k, m, self.q)] = sj;
            }
            tp.pass.vjp(&tp.channels, &mut tp.param, &mut tp.work);
            out.iter_mut().zip(&tp.param).for_each(|(o, v)| *o += v);
        }
    }

    /// One backward pass per channel of each term (a unit cotangent on that channel at
    /// every point gives its rows).
    fn dense_jacobian(&mut self) -> Option<Mat<f64>> {
        let mut j = Mat::zeros(self.outputs.len(), self.p);
        for (tp, w) in self.terms.iter_mut().zip(self.offsets.windows(2)) {
            let m = tp.pass.n_points();
            let k = (w[1] - w[0]) / m;
            let mut rows = Mat::zeros(m, self.p);
            for kk in 0..k {
                tp.channels.fill(0.0);
                (0..m).for_each(|i| tp.channels[channel_major(i, kk, m, self.q)] = 1.0);
                tp.pass
                    .point_jacobian(&tp.channels, rows.as_mut(), &mut tp.work);
                for i in 0..m {
                    j.row_mut(w[0] + i * k + kk).copy_from(rows.row(i));
                }
            }
        }
        Some(j)
    }
}
