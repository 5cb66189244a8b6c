//! [`PdeModel`]: the weighted residuals of every term as the outputs of a [`Model`].
//!
//! For term `t` with points `x_i`, the output is `R_i = √(w_t/m_t) r_t(x_i, c_i)` with
//! `c_i` the network's channels at `x_i`. Its θ-Jacobian is the chain
//! `∂R_i/∂θ = √(w_t/m_t) Σ_c ∂r_t/∂c · ∂c_i/∂θ`: the residual's channel gradient (dual
//! numbers, once per linearisation) times the Taylor pass's channel Jacobian (batched
//! GEMMs per product).

use super::residual::{value_and_gradient, value_only, Channels};
use super::term::Term;
use crate::error::{check_len, Error, Result};
use crate::model::taylor::{ChannelFunctional, TaylorMlp, TaylorPass};
use crate::model::{Linearization, Model};
use faer::{Mat, MatRef, Par};
use num_dual::Dual64;

/// A physics-informed model: a Taylor-mode network and a sum of [`Term`]s. The outputs
/// are the weighted residuals of all terms in order, so `½‖R‖²` is the PINN loss and
/// natural gradient with the Euclidean metric is energy natural gradient (Gauss–Newton).
#[derive(Debug, Clone)]
pub struct PdeModel {
    net: TaylorMlp,
    terms: Vec<Term>,
    /// First output of each term, and the total at the end.
    offsets: Vec<usize>,
    par: Par,
}

impl PdeModel {
    /// Builds the model. Typed errors at construction: no terms, an empty term, points or
    /// normals of the wrong dimension, data or normals not one column per point,
    /// non-finite points, a weight ≤ 0, a residual that reads a channel its term did not
    /// request.
    pub fn new(net: TaylorMlp, mut terms: Vec<Term>) -> Result<Self> {
        if terms.is_empty() {
            return Err(Error::InvalidSetting("PdeModel: no terms".into()));
        }
        let (d, q) = (net.input_dim(), net.output_dim());
        let mut offsets = vec![0];
        for t in &mut terms {
            t.validate(d, q)?;
            offsets.push(offsets.last().unwrap() + t.n_points());
        }
        Ok(Self {
            net,
            terms,
            offsets,
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

    /// The terms, in output order.
    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// The network's outputs `u_θ` at arbitrary points `x` (`d × k`): a `q × k` matrix.
    pub fn evaluate(&self, theta: &[f64], x: MatRef<'_, f64>) -> Result<Mat<f64>> {
        self.net.values(theta, x, self.par)
    }

    /// Channels `q × C` of point `i` of a pass, `c·q + o`.
    fn gather(pass: &TaylorPass, q: usize, i: usize, out: &mut [f64]) {
        for (k, v) in out.iter_mut().enumerate() {
            *v = pass.channel(k % q, k / q, i);
        }
    }
}

/// One term at θ: its pass, buffers and the scaled channel gradients of its residual.
#[derive(Debug)]
struct TermLinearization {
    pass: TaylorPass,
    work: Vec<Mat<f64>>,
    /// Channel tangents or cotangents, `q·C·m`.
    channels: Vec<f64>,
    /// `√(w/m) ∂r/∂c` at each point, `m × K` row-major (`K = q·C`).
    grad: Vec<f64>,
    /// Parameter-space buffer for the vjp.
    param: Vec<f64>,
}

impl TermLinearization {
    fn k(&self) -> usize {
        self.grad.len() / self.pass.n_points()
    }

    /// `out_i = Σ_k grad[i, k] · channels[(c·m + i)·q + o]`, `k = c·q + o`.
    fn contract(&self, out: &mut [f64]) {
        let (m, k) = (self.pass.n_points(), self.k());
        let q = k / self.pass.channel_set().len();
        for (i, o_i) in out.iter_mut().enumerate() {
            let g = &self.grad[i * k..(i + 1) * k];
            *o_i = g
                .iter()
                .enumerate()
                .map(|(kk, gk)| gk * self.channels[((kk / q) * m + i) * q + kk % q])
                .sum();
        }
    }

    /// The adjoint of [`TermLinearization::contract`], into `self.channels`.
    fn spread(&mut self, s: &[f64]) {
        let (m, k) = (self.pass.n_points(), self.k());
        let q = k / self.pass.channel_set().len();
        for (i, &si) in s.iter().enumerate() {
            let g = &self.grad[i * k..(i + 1) * k];
            for (kk, gk) in g.iter().enumerate() {
                self.channels[((kk / q) * m + i) * q + kk % q] = gk * si;
            }
        }
    }
}

impl PdeModel {
    /// The term's pass at θ, its outputs into `out`, and its channel gradients. A
    /// non-finite residual or gradient is an error naming the term and the point.
    fn linearize_term(
        &self,
        t: &Term,
        theta: &[f64],
        out: &mut [f64],
    ) -> Result<TermLinearization> {
        let pass = self
            .net
            .forward_channels(theta, t.points.as_ref(), &t.set, self.par)?;
        let (q, m) = (self.net.output_dim(), t.n_points());
        let k = q * t.set.len();
        let (mut ch, mut seeds) = (vec![0.0; k], vec![Dual64::from(0.0); k]);
        let mut grad = vec![0.0; m * k];
        for i in 0..m {
            Self::gather(&pass, q, i, &mut ch);
            let x = t.points.col_as_slice(i);
            let g = &mut grad[i * k..(i + 1) * k];
            let at = Channels {
                values: &ch,
                q,
                set: &t.set,
            };
            let r = value_and_gradient(&*t.residual, &t.point(i, x), at, &mut seeds, g).map_err(
                |missing| {
                    Error::InvalidSetting(format!(
                        "term `{}`: the residual read {missing} at point {i}, which the term \
                         does not carry",
                        t.name
                    ))
                },
            )?;
            let bad = std::iter::once(r)
                .chain(g.iter().copied())
                .find(|v| !v.is_finite());
            if let Some(value) = bad {
                return Err(Error::NonFinite {
                    what: format!(
                        "PdeModel: residual (or its channel derivative) of term `{}` at point \
                         {i}, x = {x:?}; check the residual's domain (a square root or \
                         logarithm of a negative value?) or restart from a smaller step",
                        t.name
                    ),
                    index: i,
                    value,
                });
            }
            out[i] = t.scale * r;
            g.iter_mut().for_each(|v| *v *= t.scale);
        }
        let work = pass.work_buffers();
        Ok(TermLinearization {
            channels: vec![0.0; k * m],
            param: vec![0.0; self.net.n_params()],
            pass,
            work,
            grad,
        })
    }
}

impl Model for PdeModel {
    type Linearization<'a> = PdeLinearization;

    fn n_params(&self) -> usize {
        self.net.n_params()
    }

    fn n_outputs(&self) -> usize {
        *self.offsets.last().expect("offsets start at 0")
    }

    fn linearize(&self, theta: &[f64]) -> Result<PdeLinearization> {
        let mut outputs = vec![0.0; self.n_outputs()];
        let terms = self
            .terms
            .iter()
            .zip(self.offsets.windows(2))
            .map(|(t, w)| self.linearize_term(t, theta, &mut outputs[w[0]..w[1]]))
            .collect::<Result<Vec<_>>>()?;
        Ok(PdeLinearization {
            terms,
            offsets: self.offsets.clone(),
            outputs,
            p: self.n_params(),
        })
    }

    /// The residuals without derivatives. A non-finite residual stays in `out` (so that a
    /// line search rejects the point) instead of being an error.
    fn forward(&self, theta: &[f64], out: &mut [f64]) -> Result<()> {
        check_len("PdeModel: output buffer", self.n_outputs(), out.len())?;
        let q = self.net.output_dim();
        for (t, w) in self.terms.iter().zip(self.offsets.windows(2)) {
            let pass = match self
                .net
                .forward_channels(theta, t.points.as_ref(), &t.set, self.par)
            {
                Ok(p) => p,
                Err(Error::NonFinite { .. }) => {
                    out[w[0]..w[1]].fill(f64::NAN);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut ch = vec![0.0; q * t.set.len()];
            for (i, o) in out[w[0]..w[1]].iter_mut().enumerate() {
                Self::gather(&pass, q, i, &mut ch);
                let x = t.points.col_as_slice(i);
                *o = t.scale
                    * value_only(&*t.residual, &t.point(i, x), &ch, q, &t.set).unwrap_or(f64::NAN);
            }
        }
        Ok(())
    }

    fn select_samples(&self, samples: &[usize]) -> Result<Self> {
        let n = self.n_outputs();
        if let Some(&bad) = samples.iter().find(|&&i| i >= n) {
            return Err(Error::InvalidSetting(format!(
                "PdeModel: sample index {bad} out of range for {n} points"
            )));
        }
        let mut terms = Vec::new();
        let mut offsets = vec![0];
        for (t, w) in self.terms.iter().zip(self.offsets.windows(2)) {
            let idx: Vec<usize> = samples
                .iter()
                .filter(|&&i| (w[0]..w[1]).contains(&i))
                .map(|&i| i - w[0])
                .collect();
            if !idx.is_empty() {
                offsets.push(offsets.last().unwrap() + idx.len());
                terms.push(t.select(&idx));
            }
        }
        if terms.is_empty() {
            return Err(Error::InvalidSetting(
                "PdeModel: an empty mini-batch".into(),
            ));
        }
        Ok(Self {
            net: self.net.clone(),
            terms,
            offsets,
            par: self.par,
        })
    }
}

/// [`PdeModel`] linearised at θ: one Taylor pass per term and the residuals' channel
/// gradients.
#[derive(Debug)]
pub struct PdeLinearization {
    terms: Vec<TermLinearization>,
    offsets: Vec<usize>,
    outputs: Vec<f64>,
    p: usize,
}

impl Linearization for PdeLinearization {
    fn n_params(&self) -> usize {
        self.p
    }

    fn outputs(&self) -> &[f64] {
        &self.outputs
    }

    fn jvp(&mut self, t: &[f64], out: &mut [f64]) {
        for (tl, w) in self.terms.iter_mut().zip(self.offsets.windows(2)) {
            tl.pass.jvp(t, &mut tl.channels, &mut tl.work);
            tl.contract(&mut out[w[0]..w[1]]);
        }
    }

    fn vjp(&mut self, s: &[f64], out: &mut [f64]) {
        out.fill(0.0);
        for (tl, w) in self.terms.iter_mut().zip(self.offsets.windows(2)) {
            tl.spread(&s[w[0]..w[1]]);
            tl.pass.vjp(&tl.channels, &mut tl.param, &mut tl.work);
            out.iter_mut().zip(&tl.param).for_each(|(o, v)| *o += v);
        }
    }

    /// Fused per term, chunk by chunk of points (`TaylorPass::functional_gram_product`).
    fn gram_product(&mut self, w: &[f64], t: &[f64], _scratch: &mut [f64], out: &mut [f64]) {
        out.fill(0.0);
        for (tl, o) in self.terms.iter_mut().zip(self.offsets.windows(2)) {
            let f = ChannelFunctional {
                grad: &tl.grad,
                weights: &w[o[0]..o[1]],
            };
            tl.pass.functional_gram_product(t, f, &mut tl.work, out);
        }
    }

    /// Output `i` depends on its own point only: one backward pass per term with the
    /// residual's channel gradient as cotangent gives all of the term's rows.
    fn dense_jacobian(&mut self) -> Option<Mat<f64>> {
        let mut j = Mat::zeros(self.outputs.len(), self.p);
        for (tl, w) in self.terms.iter_mut().zip(self.offsets.windows(2)) {
            tl.spread(&vec![1.0; w[1] - w[0]]);
            let rows = j.as_mut().subrows_mut(w[0], w[1] - w[0]);
            tl.pass.point_jacobian(&tl.channels, rows, &mut tl.work);
        }
        Some(j)
    }
}
