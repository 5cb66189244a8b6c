//! Models `y(θ) ∈ Rⁿ` with Jacobian–vector products (docs/math.md §1).
//!
//! A [`Model`] is linearised once at θ ([`Model::linearize`]); the returned
//! [`Linearization`] caches whatever the forward pass produced (activations, a dense
//! Jacobian, ...) and answers [`jvp`](Linearization::jvp) `J t` and
//! [`vjp`](Linearization::vjp) `Jᵀ s` as often as conjugate gradients asks, without
//! recomputing the forward pass. This is the shape of `jax.linearize`.
//!
//! Outputs are laid out sample-major: with `m` sample points and `q` values per point,
//! `n = m·q` and output `i·q + j` is value `j` at sample `i`.

pub mod activation;
mod checked;
mod closure;
mod kfac;
mod linear;
pub mod mlp;
mod pinn;
mod quadratic;
pub mod taylor;

pub use activation::Activation;
pub use checked::CheckedLinearization;
pub use closure::{ClosureLinearization, ClosureModel};
pub use kfac::KfacFactors;
pub use linear::{Design, LinearLinearization, LinearModel};
pub use mlp::{Mlp, MlpLinearization};
pub use pinn::{Collocation, DiffOperator, Pinn, PinnLinearization};
pub use quadratic::QuadraticModel;
pub use taylor::{ChannelSet, SecondOrder, Smooth, TaylorActivation, TaylorMlp};

use crate::error::{check_finite, check_len, Result};
use faer::{Mat, MatMut, MatRef};

/// A differentiable map `θ ∈ Rᵖ ↦ y(θ) ∈ Rⁿ`.
pub trait Model: Send + Sync {
    /// The object returned by [`Model::linearize`]; it may borrow the model's data.
    type Linearization<'a>: Linearization
    where
        Self: 'a;

    /// Number of parameters `p`.
    fn n_params(&self) -> usize;

    /// Number of outputs `n = m·q`.
    fn n_outputs(&self) -> usize;

    /// Number of sample points `m` (so `q = n / m` outputs per sample). Defaults to `n`.
    fn n_samples(&self) -> usize {
        self.n_outputs()
    }

    /// Runs the forward pass at `theta` and keeps what the Jacobian products need.
    ///
    /// Implementations may assume `theta.len() == n_params()`; [`crate::FitProblem`] checks it
    /// (and that θ is finite) before calling.
    fn linearize(&self, theta: &[f64]) -> Result<Self::Linearization<'_>>;

    /// Writes `y(θ)` into `out` (length `n`). The default linearises and copies; models
    /// whose forward pass is cheaper without caching override it. The default fails with
    /// [`crate::Error::DimensionMismatch`] when the linearisation's
    /// [`outputs`](Linearization::outputs) do not have `n` entries.
    fn forward(&self, theta: &[f64], out: &mut [f64]) -> Result<()> {
        check_len(
            "forward output buffer vs model outputs",
            self.n_outputs(),
            out.len(),
        )?;
        let lin = self.linearize(theta)?;
        check_len(
            "Linearization::outputs (model outputs y(θ), by the default Model::forward) vs \
             Model::n_outputs",
            self.n_outputs(),
            lin.outputs().len(),
        )?;
        out.copy_from_slice(lin.outputs());
        Ok(())
    }

    /// Whether this model holds only one shard of the samples, the others being held by
    /// other processes (`natgrad::distributed`, feature `mpi`): then every sum over
    /// samples that the solver forms itself (a dense Gram matrix, an output-space inner
    /// product) must be completed by [`Model::sum_over_shards`], and solvers whose unknown
    /// lives on the samples cannot be used. Default `false`.
    fn is_sharded(&self) -> bool {
        false
    }

    /// Number of outputs over all shards (equal to [`Model::n_outputs`], the default,
    /// unless [`Model::is_sharded`]).
    fn n_outputs_global(&self) -> usize {
        self.n_outputs()
    }

    /// Completes sums over samples: replaces `partial` (this shard's partial sums) by the
    /// sums over all shards, bitwise identical on every shard. Collective on a sharded
    /// model: every shard calls it with the same length. The default (all samples are
    /// here) leaves `partial` unchanged.
    fn sum_over_shards(&self, partial: &mut [f64]) {
        let _ = partial;
    }

    /// The same model restricted to the given sample points (mini-batches). The default
    /// says the model does not support it.
    fn select_samples(&self, samples: &[usize]) -> Result<Self>
    where
        Self: Sized,
    {
        let _ = samples;
        Err(crate::Error::Unsupported(
            "this model cannot be restricted to a mini-batch of samples".into(),
        ))
    }
}

/// A model linearised at one θ: its outputs and its Jacobian products there.
///
/// `jvp` and `vjp` take `&mut self` so that implementations can keep scratch buffers and
/// never allocate per product. Both panic if a slice has the wrong length (the crate's own
/// callers check sizes once, up front).
pub trait Linearization: Send {
    /// Number of parameters `p`.
    fn n_params(&self) -> usize;

    /// The outputs `y(θ)` (length `n`).
    fn outputs(&self) -> &[f64];

    /// Jacobian–vector product `out = J(θ) t` (forward mode); `t ∈ Rᵖ`, `out ∈ Rⁿ`.
    fn jvp(&mut self, t: &[f64], out: &mut [f64]);

    /// Vector–Jacobian product `out = J(θ)ᵀ s` (reverse mode); `s ∈ Rⁿ`, `out ∈ Rᵖ`.
    fn vjp(&mut self, s: &[f64], out: &mut [f64]);

    /// `out = J T` for a block of `k` tangents (`T` is p×k, `out` n×k). The default loops
    /// over columns; models with a batched product (one GEMM) override it.
    fn jvp_block(&mut self, t: MatRef<'_, f64>, mut out: MatMut<'_, f64>) {
        for j in 0..t.ncols() {
            let tj = col_as_vec(t, j);
            let oj = col_slice_mut(out.rb_mut(), j);
            self.jvp(&tj, oj);
        }
    }

    /// `out = Jᵀ S` for a block of `k` cotangents (`S` is n×k, `out` p×k).
    fn vjp_block(&mut self, s: MatRef<'_, f64>, mut out: MatMut<'_, f64>) {
        for j in 0..s.ncols() {
            let sj = col_as_vec(s, j);
            let oj = col_slice_mut(out.rb_mut(), j);
            self.vjp(&sj, oj);
        }
    }

    /// The Gram product `out = Jᵀ diag(w) J t` for a metric that is diagonal on the outputs
    /// (block-diagonal over samples with diagonal blocks: weighted L², Euclidean, the
    /// Hessian of a pointwise loss; docs/math.md §2). `t`, `out ∈ Rᵖ`; `w`, `scratch ∈ Rⁿ`.
    ///
    /// Since samples do not interact, `G t = Σ_c J_cᵀ W_c J_c t` over any partition of the
    /// samples into chunks `c`, and a model may compute it chunk by chunk while each
    /// chunk's activations and tangents are in cache ([`Mlp`] does). The default is the
    /// unfused jvp → `w ⊙` → vjp through `scratch` (which then holds `W J t`), so every
    /// model supports it; an override may leave `scratch` with any contents. Panics if a
    /// slice has the wrong length, like [`jvp`](Linearization::jvp).
    fn gram_product(&mut self, w: &[f64], t: &[f64], scratch: &mut [f64], out: &mut [f64]) {
        self.jvp(t, scratch);
        scratch.iter_mut().zip(w).for_each(|(s, w)| *s *= w);
        self.vjp(scratch, out);
    }

    /// The block Gram product `out = Jᵀ diag(w) J T` for `k` tangents at once (`T` p×k,
    /// `out` p×k; `w` ∈ Rⁿ as for [`gram_product`](Linearization::gram_product); `scratch`
    /// n×k). `out` and `scratch` must have contiguous columns (column-major). This is how
    /// the Nyström sketch takes its `k` Gram products (`src/linsolve/nystrom.rs`).
    ///
    /// The default is [`jvp_block`](Linearization::jvp_block) → `w ⊙` (column by column)
    /// → [`vjp_block`](Linearization::vjp_block) through `scratch` (which then holds
    /// `W J T`), so a model with batched block products (one GEMM) keeps them; [`Mlp`]
    /// overrides it with one sample-chunked pass that carries all `k` tangents through
    /// each chunk (GEMMs `k` times as tall, `mlp/fused_block.rs`). An override may leave
    /// `scratch` with any contents. Panics if a shape is wrong.
    fn gram_product_block(
        &mut self,
        w: &[f64],
        t: MatRef<'_, f64>,
        scratch: MatMut<'_, f64>,
        out: MatMut<'_, f64>,
    ) {
        unfused_gram_block(self, w, t, scratch, out);
    }

    /// The sample-space Gram product `out = J Jᵀ s` (`s`, `out ∈ Rⁿ`; `scratch ∈ Rᵖ`),
    /// the kernel operator of the sample-space solvers (docs/math.md §2). The default is
    /// the vjp then the jvp through `scratch` (which then holds `Jᵀ s`); [`Mlp`] sums `Jᵀ s`
    /// over chunks of samples and applies `J` chunk by chunk, like
    /// [`gram_product`](Linearization::gram_product); an override may leave `scratch`
    /// with any contents. Panics if a slice has the wrong length.
    fn sample_gram_product(&mut self, s: &[f64], scratch: &mut [f64], out: &mut [f64]) {
        self.vjp(s, scratch);
        self.jvp(scratch, out);
    }

    /// The dense n×p Jacobian if the model has it at hand (closure models, linear models);
    /// `None` otherwise, in which case the direct solver builds it from products.
    fn dense_jacobian(&mut self) -> Option<Mat<f64>> {
        None
    }

    /// `diag(Jᵀ diag(w) J)` for a diagonal metric `w`, written into `out` (length `p`),
    /// when the model can compute it cheaply. Returns `false` when it cannot (the default).
    /// Used by the Jacobi preconditioner.
    fn gram_diagonal(&mut self, metric_diagonal: &[f64], out: &mut [f64]) -> bool {
        let _ = (metric_diagonal, out);
        false
    }

    /// The K-FAC factors of every layer for a diagonal metric `w` (length `n`, entries
    /// `≥ 0` with a positive sum; the caller checks), when the model has a layer structure
    /// (docs/math.md §5). `None` (the default) when it has not. Used by the K-FAC
    /// preconditioner and direction ([`crate::linsolve::kfac`]).
    fn kfac_factors(&mut self, metric_diagonal: &[f64]) -> Option<Vec<KfacFactors>> {
        let _ = metric_diagonal;
        None
    }
}

use faer::prelude::{Reborrow, ReborrowMut};

/// `out = Jᵀ diag(w) J T` as `jvp_block` → `w ⊙` → `vjp_block` through `scratch` (n×k,
/// contiguous columns): the default of [`Linearization::gram_product_block`], and the
/// path of models that override it where their fused product does not apply.
pub(crate) fn unfused_gram_block<L: Linearization + ?Sized>(
    lin: &mut L,
    w: &[f64],
    t: MatRef<'_, f64>,
    mut scratch: MatMut<'_, f64>,
    mut out: MatMut<'_, f64>,
) {
    lin.jvp_block(t, scratch.rb_mut());
    for j in 0..t.ncols() {
        let sj = col_slice_mut(scratch.rb_mut(), j);
        sj.iter_mut().zip(w).for_each(|(s, w)| *s *= w);
    }
    lin.vjp_block(scratch.rb(), out.rb_mut());
}

/// Column `j` of `m` as an owned vector (columns of faer matrices may be strided).
fn col_as_vec(m: MatRef<'_, f64>, j: usize) -> Vec<f64> {
    m.col(j).iter().copied().collect()
}

/// Column `j` of a column-major, contiguous `MatMut` as a slice.
///
/// # Panics
/// If the column is not contiguous (faer matrices created by the crate always are).
pub(crate) fn col_slice_mut(m: MatMut<'_, f64>, j: usize) -> &mut [f64] {
    m.col_mut(j)
        .try_as_col_major_mut()
        .expect("natgrad: column-major output block required")
        .as_slice_mut()
}

/// Checks θ against a model: length `p`, all finite.
pub fn check_theta<M: Model + ?Sized>(model: &M, theta: &[f64]) -> Result<()> {
    check_len("theta vs model parameters", model.n_params(), theta.len())?;
    check_finite("theta", theta)
}
