//! Taylor-mode forward propagation through an MLP: the value and chosen derivatives in x
//! of every output (first partials, Hessian entries, the Laplacian) at a batch of points,
//! with Jacobian products with respect to the parameters θ on one cached forward pass.
//!
//! A point carries the `C` channels of a [`ChannelSet`] through the network: channel 0
//! the value, then the requested first partials `∂_k`, then the requested second-order
//! channels (Hessian entries `∂_i∂_j` or the Laplacian). With `a = W z + b`, `h = σ(a)`
//! (`sₙ = σ⁽ⁿ⁾(a₀)`) and `q_s = Σ c·a_i a_j` the quadratic form of a second-order channel
//! (`q = a_i a_j` for an entry, `Σ_k a_k²` for the Laplacian):
//!
//! ```text
//! a₀ = W z₀ + b     a_c = W z_c                  (every other channel c)
//! h₀ = σ(a₀)        h_k = s₁ a_k      h_s = s₂ q_s + s₁ a_s
//! ```
//!
//! so one layer is one GEMM over all channels of all points (`W` times an
//! `n_in × (C·m)` block) plus elementwise work, and the cost grows with `C`. The θ-tangent
//! (jvp) differentiates these formulas forward; the θ-cotangent (vjp) runs them backward,
//! and the weight gradient is one GEMM `Ā Zᵀ` over all channels.
//!
//! Parameter layout: for each layer `l` in order, `W_l` (`n_{l+1} × n_l`, column-major),
//! then `b_l` (`n_{l+1}`). The last layer is affine (no activation) with `q ≥ 1` outputs.
//! Output channels are laid out `q × (C·m)` column-major: entry `(o, c·m + i)` at index
//! `(c·m + i)·q + o` — for a scalar output simply `c·m + i`, channel-major.

mod channels;
mod fused;
mod layer;
mod smooth;

pub use channels::{ChannelSet, SecondOrder};
pub use fused::ChannelFunctional;
pub use smooth::{Smooth, TaylorActivation};

use crate::error::{check_finite, Error, Result};
use crate::linalg::matmul_then_scalar as matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use layer::HiddenLayer;
use std::sync::Arc;

/// The architecture of an MLP `R^d → R^q` used in Taylor mode: widths and a smooth
/// activation of the hidden layers.
#[derive(Debug, Clone)]
pub struct TaylorMlp {
    widths: Vec<usize>,
    activation: Arc<dyn TaylorActivation>,
    /// Points per chunk of the fused Gram product (`None`: [`fused::auto_chunk`]).
    gram_chunk: Option<usize>,
}

impl TaylorMlp {
    /// Widths `[d, h₁, …, h_L, q]`: input dimension, hidden widths (tanh), outputs, as a
    /// slice, array or `Vec` (`TaylorMlp::new([2, 32, 1])`, like [`crate::model::Mlp::new`]).
    /// Errors on fewer than two widths or a zero width.
    pub fn new(widths: impl Into<Vec<usize>>) -> Result<Self> {
        Self::with_activation(widths, Arc::new(Smooth::Tanh))
    }

    /// Like [`TaylorMlp::new`] with any activation with three derivatives: a [`Smooth`]
    /// one or the user's own [`TaylorActivation`].
    pub fn with_activation(
        widths: impl Into<Vec<usize>>,
        activation: Arc<dyn TaylorActivation>,
    ) -> Result<Self> {
        let widths = widths.into();
        if widths.len() < 2 || widths.contains(&0) {
            return Err(Error::InvalidSetting(format!(
                "TaylorMlp: widths must be [d, hidden.., q] with positive entries, got {widths:?}"
            )));
        }
        Ok(Self {
            widths,
            activation,
            gram_chunk: None,
        })
    }

    /// Points per chunk of the fused Gram product ([`TaylorPass::functional_gram_product`]):
    /// each chunk's channel tangents run forward, through the residual's metric and back
    /// while they are in cache. `0` is taken as 1. By default
    /// ([`TaylorMlp::gram_chunk`]) the chunk is chosen from the widths, the channel count
    /// and a cache budget. The product does not depend on the thread count for any chunk
    /// size; it depends on the chunk size only through the rounding of its sums.
    #[must_use]
    pub fn with_gram_chunk(mut self, points: usize) -> Self {
        self.gram_chunk = Some(points.max(1));
        self
    }

    /// The chunk of the fused Gram product on `m` points carrying `channels` channels:
    /// the one set by [`TaylorMlp::with_gram_chunk`], otherwise `m` when the whole batch's
    /// tangent blocks fit within 4 MiB, else as many points (a multiple of 8, at least 8)
    /// as keep a chunk's tangents within 256 KiB; at most `m`.
    pub fn gram_chunk(&self, m: usize, channels: usize) -> usize {
        self.gram_chunk
            .unwrap_or_else(|| fused::auto_chunk(&self.widths, channels, m))
            .min(m)
            .max(1)
    }

    /// The widths `[d, h₁, …, q]`.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    /// The activation of the hidden layers.
    pub fn activation(&self) -> &dyn TaylorActivation {
        &*self.activation
    }

    /// Input dimension `d`.
    pub fn input_dim(&self) -> usize {
        self.widths[0]
    }

    /// Number of outputs `q`.
    pub fn output_dim(&self) -> usize {
        *self.widths.last().expect("at least two widths")
    }

    /// Number of parameters `Σ n_{l+1}(n_l + 1)`.
    pub fn n_params(&self) -> usize {
        self.widths.windows(2).map(|w| w[1] * (w[0] + 1)).sum()
    }

    /// Number of channels `C = d + 2` of [`TaylorMlp::forward`] (value, gradient,
    /// Laplacian).
    pub fn channels(&self) -> usize {
        self.input_dim() + 2
    }

    /// Offsets of `W_l` and `b_l` in θ.
    fn layout(&self) -> Vec<(usize, usize)> {
        let mut off = 0;
        self.widths
            .windows(2)
            .map(|w| {
                let wo = off;
                off += w[0] * w[1];
                let bo = off;
                off += w[1];
                (wo, bo)
            })
            .collect()
    }

    /// `W_l` and `b_l` as views into θ.
    fn layer<'a>(&self, theta: &'a [f64], l: usize) -> (MatRef<'a, f64>, &'a [f64]) {
        let (wo, bo) = self.layout()[l];
        let (ni, no) = (self.widths[l], self.widths[l + 1]);
        (
            MatRef::from_column_major_slice(&theta[wo..wo + ni * no], no, ni),
            &theta[bo..bo + no],
        )
    }

    /// Glorot-uniform weights and zero biases from a seed (deterministic): `p` entries in
    /// the parameter layout of the [module docs](self). Named like
    /// [`crate::model::Mlp::init_params`].
    pub fn init_params(&self, seed: u64) -> Vec<f64> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut theta = vec![0.0; self.n_params()];
        for (l, (wo, _)) in self.layout().into_iter().enumerate() {
            let (ni, no) = (self.widths[l], self.widths[l + 1]);
            let a = (6.0 / (ni + no) as f64).sqrt();
            for w in &mut theta[wo..wo + ni * no] {
                *w = rng.random_range(-a..a);
            }
        }
        theta
    }

    /// The network's values `v(θ; x)` at the points `x`, stored point-major as in
    /// [`crate::model::Mlp::evaluate`] (`x[i·d + k]` = coordinate `k` of point `i`, which is
    /// the `d × m` column-major layout of [`TaylorMlp::forward`]): `m = x.len() / d` points,
    /// `m·q` values point-major (`[i·q + o]` = output `o` at point `i`). One value-only
    /// forward pass on the calling thread — for predictions and error measurements after
    /// training, without choosing channels or a [`Par`].
    ///
    /// # Errors
    /// [`Error::Empty`] for no points; [`Error::DimensionMismatch`] when θ does not have `p`
    /// entries or `x.len()` is not a multiple of `d`; [`Error::NonFinite`] for a non-finite
    /// coordinate or output.
    pub fn evaluate(&self, theta: &[f64], x: &[f64]) -> Result<Vec<f64>> {
        let d = self.input_dim();
        crate::error::check_nonempty("TaylorMlp::evaluate: the point coordinates", x.len())?;
        crate::error::check_len(
            "TaylorMlp::evaluate: point coordinates vs a multiple of the input dimension",
            x.len().div_ceil(d) * d,
            x.len(),
        )?;
        check_finite("TaylorMlp::evaluate: points", x)?;
        let points = MatRef::from_column_major_slice(x, d, x.len() / d);
        // `q × m` column-major is the point-major order of the docs.
        let values = self.values(theta, points, Par::Seq)?;
        Ok(values.col_iter().flat_map(|c| c.iter().copied()).collect())
    }

    /// The values `q × m` at the points `x` (`d × m`): a value-only Taylor pass. Shared by
    /// [`TaylorMlp::evaluate`] and the PDE models' `evaluate`.
    pub(crate) fn values(&self, theta: &[f64], x: MatRef<'_, f64>, par: Par) -> Result<Mat<f64>> {
        let pass = self.forward_channels(theta, x, &ChannelSet::value(self.input_dim()), par)?;
        Ok(Mat::from_fn(self.output_dim(), x.ncols(), |o, i| {
            pass.channel(o, 0, i)
        }))
    }

    /// Runs the Taylor-mode forward pass at θ on the points `x` (`d × m`, one column per
    /// point) with the classic channels value, gradient and Laplacian
    /// ([`ChannelSet::laplacian`]) and keeps what the θ-products need.
    pub fn forward(&self, theta: &[f64], x: MatRef<'_, f64>, par: Par) -> Result<TaylorPass> {
        let set = ChannelSet::laplacian(self.input_dim());
        self.forward_channels(theta, x, &set, par)
    }

    /// The Taylor-mode forward pass with the channels of `set`. Errors on a θ or a point
    /// matrix of the wrong size, a channel set for another dimension, or non-finite
    /// output channels.
    pub fn forward_channels(
        &self,
        theta: &[f64],
        x: MatRef<'_, f64>,
        set: &ChannelSet,
        par: Par,
    ) -> Result<TaylorPass> {
        let d = self.input_dim();
        crate::error::check_len("TaylorMlp: theta", self.n_params(), theta.len())?;
        crate::error::check_len("TaylorMlp: rows of the point matrix", d, x.nrows())?;
        crate::error::check_len(
            "TaylorMlp: dimension of the channel set",
            d,
            set.input_dim(),
        )?;
        let (m, c) = (x.ncols(), set.len());
        let mut z0 = Mat::<f64>::zeros(d, c * m);
        for i in 0..m {
            for k in 0..d {
                z0[(k, i)] = x[(k, i)];
            }
            for (p, &k) in set.first().iter().enumerate() {
                z0[(k, (1 + p) * m + i)] = 1.0;
            }
        }
        let n_layers = self.widths.len() - 1;
        let mut zs = vec![z0];
        let mut hidden = Vec::with_capacity(n_layers - 1);
        for l in 0..n_layers {
            let (w, b) = self.layer(theta, l);
            let zin = zs.last().expect("the input block is there");
            let mut a = Mat::<f64>::zeros(w.nrows(), c * m);
            matmul(a.as_mut(), Accum::Replace, w, zin.as_ref(), par);
            for i in 0..m {
                a.col_as_slice_mut(i)
                    .iter_mut()
                    .zip(b)
                    .for_each(|(a, b)| *a += b);
            }
            if l + 1 == n_layers {
                zs.push(a);
            } else {
                let layer = HiddenLayer::new(a, &*self.activation, set, m);
                zs.push(layer.outputs());
                hidden.push(layer);
            }
        }
        let out = zs.pop().expect("the output block is there");
        for j in 0..out.ncols() {
            check_finite("TaylorMlp output channels", out.col_as_slice(j))?;
        }
        Ok(TaylorPass {
            net: self.clone(),
            set: set.clone(),
            theta: theta.to_vec(),
            m,
            zs,
            hidden,
            out,
            par,
        })
    }
}

/// The result of [`TaylorMlp::forward_channels`]: the output channels and the cache for
/// the θ-products.
#[derive(Debug, Clone)]
pub struct TaylorPass {
    net: TaylorMlp,
    set: ChannelSet,
    theta: Vec<f64>,
    m: usize,
    /// Inputs of each layer, `n_l × (C·m)`.
    zs: Vec<Mat<f64>>,
    hidden: Vec<HiddenLayer>,
    /// Output channels `q × (C·m)`.
    out: Mat<f64>,
    par: Par,
}

impl TaylorPass {
    /// Number of points.
    pub fn n_points(&self) -> usize {
        self.m
    }

    /// The channels carried.
    pub fn channel_set(&self) -> &ChannelSet {
        &self.set
    }

    /// Channel `c` of output `o` at point `i`.
    pub fn channel(&self, o: usize, c: usize, i: usize) -> f64 {
        self.out[(o, c * self.m + i)]
    }

    /// `v(x_i)` (output 0).
    pub fn value(&self, i: usize) -> f64 {
        self.out[(0, i)]
    }

    /// `∂_k v(x_i)` (output 0). Panics if `∂_k` is not carried.
    pub fn partial(&self, i: usize, k: usize) -> f64 {
        let c = self.set.partial_channel(k).expect("∂_k is carried");
        self.channel(0, c, i)
    }

    /// `Δ v(x_i)` (output 0). Panics if the Laplacian is not carried.
    pub fn laplacian(&self, i: usize) -> f64 {
        let c = self
            .set
            .second_channel(SecondOrder::Laplacian)
            .expect("the Laplacian is carried");
        self.channel(0, c, i)
    }

    /// θ-tangent of all output channels: `out` (length `q·C·m`, layout of the
    /// [module docs](self)) `= ∂(channels)/∂θ · t`. `work` holds one `n_l × C·m` buffer
    /// per layer ([`TaylorPass::work_buffers`]).
    pub fn jvp(&self, t: &[f64], out: &mut [f64], work: &mut [Mat<f64>]) {
        let m = self.m;
        let n_layers = self.zs.len();
        for l in 0..n_layers {
            let (dw, db) = self.net.layer(t, l);
            let (w, _) = self.net.layer(&self.theta, l);
            let (prev, rest) = work.split_at_mut(l);
            let dot = &mut rest[0];
            matmul(
                dot.as_mut(),
                Accum::Replace,
                dw,
                self.zs[l].as_ref(),
                self.par,
            );
            if l > 0 {
                matmul(dot.as_mut(), Accum::Add, w, prev[l - 1].as_ref(), self.par);
            }
            for i in 0..m {
                dot.col_as_slice_mut(i)
                    .iter_mut()
                    .zip(db)
                    .for_each(|(a, b)| *a += b);
            }
            if l + 1 < n_layers {
                self.hidden[l].tangent(dot);
            }
        }
        let top = &work[n_layers - 1];
        let q = top.nrows();
        for (j, o) in out.chunks_exact_mut(q).enumerate() {
            o.copy_from_slice(top.col_as_slice(j));
        }
    }

    /// Backward pass of the channel cotangent `s` (length `q·C·m`): leaves `Ā_l` (the
    /// cotangent of layer `l`'s pre-activations) in `work[l]` for every layer.
    fn backward(&self, s: &[f64], work: &mut [Mat<f64>]) {
        let n_layers = self.zs.len();
        let top = &mut work[n_layers - 1];
        let q = top.nrows();
        for (j, sj) in s.chunks_exact(q).enumerate() {
            top.col_as_slice_mut(j).copy_from_slice(sj);
        }
        for l in (1..n_layers).rev() {
            let (w, _) = self.net.layer(&self.theta, l);
            let (below, rest) = work.split_at_mut(l);
            let zbar = &mut below[l - 1];
            matmul(
                zbar.as_mut(),
                Accum::Replace,
                w.transpose(),
                rest[0].as_ref(),
                self.par,
            );
            self.hidden[l - 1].cotangent(zbar);
        }
    }

    /// θ-cotangent: `out = (∂(channels)/∂θ)ᵀ s` for `s` of length `q·C·m` (layout of the
    /// [module docs](self)). The weight gradient of each layer is one GEMM `Ā_l Z_lᵀ` over
    /// all channels.
    pub fn vjp(&self, s: &[f64], out: &mut [f64], work: &mut [Mat<f64>]) {
        self.backward(s, work);
        for (l, (wo, bo)) in self.net.layout().into_iter().enumerate() {
            let (ni, no) = (self.net.widths[l], self.net.widths[l + 1]);
            let bar = &work[l];
            let gw = MatMut::from_column_major_slice_mut(&mut out[wo..wo + ni * no], no, ni);
            matmul(
                gw,
                Accum::Replace,
                bar.as_ref(),
                self.zs[l].transpose(),
                self.par,
            );
            for (u, gb) in out[bo..bo + no].iter_mut().enumerate() {
                *gb = (0..self.m).map(|i| bar[(u, i)]).sum();
            }
        }
    }

    /// The per-point Jacobian: row `i` of `out` (`m × p`) is `∂/∂θ` of
    /// `Σ_{o,c} s[(c·m + i)·q + o] · channel_c(output o)(x_i)`. Points do not interact in
    /// the network, so one backward pass of `s` gives every point's own cotangent and each
    /// row is a sum of `C` outer products per layer: `O(m·C·p)` work, against `p` jvps for
    /// the generic path.
    pub fn point_jacobian(&self, s: &[f64], mut out: MatMut<'_, f64>, work: &mut [Mat<f64>]) {
        self.backward(s, work);
        let (m, c) = (self.m, self.set.len());
        for (l, (wo, bo)) in self.net.layout().into_iter().enumerate() {
            let (ni, no) = (self.net.widths[l], self.net.widths[l + 1]);
            let (bar, z) = (&work[l], &self.zs[l]);
            for i in 0..m {
                for col_in in 0..ni {
                    for u in 0..no {
                        let v: f64 = (0..c)
                            .map(|ch| bar[(u, ch * m + i)] * z[(col_in, ch * m + i)])
                            .sum();
                        out[(i, wo + col_in * no + u)] = v;
                    }
                }
                for u in 0..no {
                    out[(i, bo + u)] = bar[(u, i)];
                }
            }
        }
    }

    /// One buffer per layer for [`TaylorPass::jvp`] and [`TaylorPass::vjp`].
    pub fn work_buffers(&self) -> Vec<Mat<f64>> {
        let cm = self.set.len() * self.m;
        self.net.widths[1..]
            .iter()
            .map(|&n| Mat::zeros(n, cm))
            .collect()
    }
}
