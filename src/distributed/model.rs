//! [`Sharded`]: a model on this rank's samples whose parameter-space products are summed
//! over ranks; [`ShardedLoss`]: a loss whose value is.

use super::Shards;
use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::model::{Linearization, Model};
use faer::{Mat, MatMut, MatRef};

/// A model restricted to this rank's block of samples, seen by the solver as the whole
/// model: outputs and [`jvp`](Linearization::jvp)s are local (θ and tangents are
/// replicated), while every product that lands in parameter space —
/// [`vjp`](Linearization::vjp), [`vjp_block`](Linearization::vjp_block),
/// [`gram_diagonal`](Linearization::gram_diagonal) — is `Σ_r J_rᵀ s_r`, summed over ranks
/// by [`Shards::sum`]. Built by [`super::sharded_problem`].
///
/// Forward passes are collective too: every rank learns whether any rank failed or
/// produced non-finite outputs, so that all ranks take the same branch (an error, or an
/// infinite loss that a line search rejects) and none is left waiting in a collective.
#[derive(Clone, Debug)]
pub struct Sharded<M> {
    inner: M,
    shards: Shards,
    samples: usize,
    offset: usize,
}

const OK: u64 = 0;
const FAILED: u64 = 1;
const NON_FINITE: u64 = 2;

/// A hash of θ's bits, to check that every rank holds the same θ.
fn fingerprint(theta: &[f64]) -> u64 {
    theta.iter().fold(0xcbf2_9ce4_8422_2325, |h, x| {
        (h ^ x.to_bits()).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl<M: Model> Sharded<M> {
    pub(crate) fn new(inner: M, shards: Shards, samples: usize, offset: usize) -> Self {
        Self {
            inner,
            shards,
            samples,
            offset,
        }
    }

    /// The model on this rank's samples.
    pub fn local(&self) -> &M {
        &self.inner
    }

    /// The shards.
    pub fn shards(&self) -> &Shards {
        &self.shards
    }

    /// Number of samples over all ranks.
    pub fn global_samples(&self) -> usize {
        self.samples
    }

    /// Index of this rank's first sample in the global numbering (blocks are contiguous
    /// and in rank order).
    pub fn sample_offset(&self) -> usize {
        self.offset
    }

    /// Every rank's status after a local forward pass; an error on every rank if any
    /// rank failed, θ differs between ranks, or any output is non-finite
    /// (`non_finite_is_error`; otherwise that case is reported as `Ok(false)`).
    fn agree(&self, theta: &[f64], local: Result<&[f64]>) -> Result<bool> {
        let status = match &local {
            Err(_) => FAILED,
            Ok(y) if y.iter().any(|v| !v.is_finite()) => NON_FINITE,
            Ok(_) => OK,
        };
        let all = self.shards.gather_u64(&[status, fingerprint(theta)]);
        let mine = fingerprint(theta);
        if let Some(r) = all.chunks(2).position(|s| s[1] != mine) {
            return Err(Error::InvalidSetting(format!(
                "sharded model: θ on rank {} differs from θ on rank {r}; every rank must \
                 start from the same θ₀ (broadcast it from rank 0)",
                self.shards.rank()
            )));
        }
        local?;
        if let Some(r) = all.chunks(2).position(|s| s[0] == FAILED) {
            return Err(Error::InvalidSetting(format!(
                "sharded model: the forward pass failed on rank {r} (see that rank's error)"
            )));
        }
        Ok(all.chunks(2).all(|s| s[0] == OK))
    }
}

impl<M: Model> Model for Sharded<M> {
    type Linearization<'a>
        = ShardedLinearization<'a, M::Linearization<'a>>
    where
        Self: 'a;

    fn n_params(&self) -> usize {
        self.inner.n_params()
    }

    /// The number of outputs on this rank.
    fn n_outputs(&self) -> usize {
        self.inner.n_outputs()
    }

    /// The number of samples on this rank.
    fn n_samples(&self) -> usize {
        self.inner.n_samples()
    }

    /// `true`: the samples of the other ranks are elsewhere.
    fn is_sharded(&self) -> bool {
        true
    }

    /// The number of outputs over all ranks.
    fn n_outputs_global(&self) -> usize {
        self.samples * (self.inner.n_outputs() / self.inner.n_samples().max(1))
    }

    /// `Σ_r partial_r` by [`Shards::sum`] (rank order, identical on every rank).
    fn sum_over_shards(&self, partial: &mut [f64]) {
        self.shards.sum(partial);
    }

    fn linearize(&self, theta: &[f64]) -> Result<Self::Linearization<'_>> {
        let lin = self.inner.linearize(theta);
        let finite = self.agree(
            theta,
            lin.as_ref().map(|l| l.outputs()).map_err(Clone::clone),
        )?;
        let lin = lin?;
        if !finite {
            let (index, value) = match lin.outputs().iter().position(|v| !v.is_finite()) {
                Some(i) => (i, lin.outputs()[i]),
                None => (0, f64::NAN),
            };
            return Err(Error::NonFinite {
                what: format!(
                    "model outputs (on some rank; this is rank {}, local index shown)",
                    self.shards.rank()
                ),
                index,
                value,
            });
        }
        Ok(ShardedLinearization {
            inner: lin,
            shards: &self.shards,
            buf: Vec::new(),
        })
    }

    /// The local forward pass; if any rank's outputs are non-finite, this rank's are
    /// marked non-finite too (`out[0] = NaN`), so that every rank sees an infinite loss.
    fn forward(&self, theta: &[f64], out: &mut [f64]) -> Result<()> {
        let local = self.inner.forward(theta, out).map(|()| &*out);
        if !self.agree(theta, local)?
            && let Some(o) = out.first_mut()
        {
            *o = f64::NAN;
        }
        Ok(())
    }

    /// Unsupported: a mini-batch of a sharded problem would have to be drawn across ranks.
    fn select_samples(&self, _samples: &[usize]) -> Result<Self> {
        Err(Error::Unsupported(
            "mini-batches of a sample-sharded problem (draw the batch on each rank's own \
             samples and build a new sharded problem instead)"
                .into(),
        ))
    }
}

/// The linearisation of a [`Sharded`] model: local outputs and jvps, vjps summed over
/// ranks.
pub struct ShardedLinearization<'a, L> {
    inner: L,
    shards: &'a Shards,
    buf: Vec<f64>,
}

impl<L: Linearization> Linearization for ShardedLinearization<'_, L> {
    fn n_params(&self) -> usize {
        self.inner.n_params()
    }

    fn outputs(&self) -> &[f64] {
        self.inner.outputs()
    }

    fn jvp(&mut self, t: &[f64], out: &mut [f64]) {
        self.inner.jvp(t, out);
    }

    /// `out = Σ_r J_rᵀ s_r`: the local vjp, then one [`Shards::sum`] of `p` values.
    fn vjp(&mut self, s: &[f64], out: &mut [f64]) {
        self.inner.vjp(s, out);
        self.shards.sum(out);
    }

    fn jvp_block(&mut self, t: MatRef<'_, f64>, out: MatMut<'_, f64>) {
        self.inner.jvp_block(t, out);
    }

    /// The local block product, then one [`Shards::sum`] of `p·k` values.
    fn vjp_block(&mut self, s: MatRef<'_, f64>, mut out: MatMut<'_, f64>) {
        self.inner.vjp_block(s, out.rb_mut());
        let (p, k) = (out.nrows(), out.ncols());
        self.buf.clear();
        for j in 0..k {
            self.buf.extend(out.rb().col(j).iter().copied());
        }
        self.shards.sum(&mut self.buf);
        for j in 0..k {
            for i in 0..p {
                out[(i, j)] = self.buf[i + j * p];
            }
        }
    }

    /// This rank's rows `J_r` (from the model, or built from local products; no
    /// communication). The Gram matrix built from it must still be summed over ranks.
    fn dense_jacobian(&mut self) -> Option<Mat<f64>> {
        if let Some(j) = self.inner.dense_jacobian() {
            return Some(j);
        }
        let (n, p) = (self.inner.outputs().len(), self.inner.n_params());
        let mut j = Mat::zeros(n, p);
        if p <= n {
            self.inner
                .jvp_block(Mat::<f64>::identity(p, p).as_ref(), j.as_mut());
        } else {
            let mut jt = Mat::zeros(p, n);
            self.inner
                .vjp_block(Mat::<f64>::identity(n, n).as_ref(), jt.as_mut());
            j = jt.transpose().to_owned();
        }
        Some(j)
    }

    /// `Σ_r diag(J_rᵀ W_r J_r)`, if every rank's model can compute its part (one
    /// [`Shards::sum`] of `p + 1` values, the last counting the ranks that could).
    fn gram_diagonal(&mut self, metric_diagonal: &[f64], out: &mut [f64]) -> bool {
        let p = out.len();
        self.buf.clear();
        self.buf.resize(p + 1, 0.0);
        let ok = self
            .inner
            .gram_diagonal(metric_diagonal, &mut self.buf[..p]);
        self.buf[p] = if ok { 1.0 } else { 0.0 };
        self.shards.sum(&mut self.buf);
        if self.buf[p] == self.shards.size() as f64 {
            out.copy_from_slice(&self.buf[..p]);
            true
        } else {
            false
        }
    }
}

use faer::prelude::{Reborrow, ReborrowMut};

/// A loss on this rank's outputs whose [`value`](Loss::value) is the sum over ranks (in
/// rank order, see [`Shards::sum`]); gradient and Hessian are per sample, hence local.
/// Built by [`super::sharded_problem`].
#[derive(Clone, Debug)]
pub struct ShardedLoss<L> {
    inner: L,
    shards: Shards,
}

impl<L: Loss> ShardedLoss<L> {
    pub(crate) fn new(inner: L, shards: Shards) -> Self {
        Self { inner, shards }
    }

    /// The loss on this rank's outputs.
    pub fn local(&self) -> &L {
        &self.inner
    }
}

impl<L: Loss> Loss for ShardedLoss<L> {
    fn dim(&self) -> Option<usize> {
        self.inner.dim()
    }

    /// `Σ_r ℓ_r(y_r)` (collective).
    fn value(&self, y: &[f64]) -> f64 {
        self.shards.sum_scalar(self.inner.value(y))
    }

    fn gradient(&self, y: &[f64], out: &mut [f64]) {
        self.inner.gradient(y, out)
    }

    fn check_outputs(&self, y: &[f64]) -> Result<()> {
        self.inner.check_outputs(y)
    }

    fn hessian_apply(&self, y: &[f64], v: &[f64], out: &mut [f64]) -> Result<()> {
        self.inner.hessian_apply(y, v, out)
    }

    fn hessian_diagonal(&self, y: &[f64], out: &mut [f64]) -> bool {
        self.inner.hessian_diagonal(y, out)
    }

    fn has_hessian(&self) -> bool {
        self.inner.has_hessian()
    }

    /// Unsupported, as for [`Sharded::select_samples`](Model::select_samples).
    fn select_samples(&self, _samples: &[usize], _q: usize, _m: usize) -> Result<Self> {
        Err(Error::Unsupported(
            "mini-batches of a sample-sharded loss".into(),
        ))
    }
}
