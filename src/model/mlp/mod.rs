//! A multilayer perceptron whose Jacobian products are GEMMs over the whole batch.
//!
//! # Layout
//!
//! Widths `n_0 = d, n_1, …, n_L = q`; layer `l` (0-based) maps `n_l → n_{l+1}`:
//! `z_{l+1} = W_l a_l + b_l`, `a_{l+1} = σ_l(z_{l+1})`, `a_0 = x`, `y = a_L`.
//!
//! **Parameters**: layer after layer, each layer the column-major `n_{l+1} × (n_l + 1)`
//! matrix `[W_l | b_l]` — i.e. `W_l` column-major (entry `(i, k)` at `i + k·n_{l+1}`)
//! followed by `b_l`. So a layer's block of θ *is* a faer matrix, and with activations
//! stored with a trailing row of ones, `[W|b]·[a; 1]` is one GEMM with the bias folded in.
//!
//! **Samples are columns**: activations of layer `l` are an `(n_l + 1) × m` column-major
//! matrix, so every product is a GEMM of width `m`. Outputs are sample-major
//! (`y[i·q + j]` = output `j` at sample `i`), which is the column-major `q × m` matrix.
//!
//! # Initialisation
//!
//! [`Mlp::init_params`]: Glorot/Xavier normal, `W_l ~ N(0, 2 / (n_l + n_{l+1}))`, `b_l = 0`,
//! drawn from a `Xoshiro256PlusPlus` seeded with the given seed (layer by layer, `W`
//! column-major), so a seed fixes θ on every platform.
//!
//! # Parallelism and determinism
//!
//! GEMMs run through faer with the model's [`Par`] (default `Par::rayon(0)`: all of
//! rayon's threads); pointwise passes split the samples in fixed chunks with rayon. faer
//! parallelises a GEMM over blocks of the *output* and never splits its inner dimension
//! (checked for our shapes, including the weight gradient whose inner dimension is `m`), and
//! pointwise work has no reductions, so results are bitwise identical for any thread count
//! (`tests/mlp.rs` checks 1 against 2 threads).
//!
//! # Memory
//!
//! A linearisation holds `a_l`, room for the tangent `ȧ_l` (for a scalar output: the
//! sensitivities `δ_l`, `mlp/sensitivity.rs`) and `σ'(z_l)` for every layer
//! (`≈ 3·m·Σ n_l` floats), a copy of θ, two `m · max n_l` scratch blocks and one
//! `max n_{l+1}(2 n_l + 1)` block for the jvp's left factor — never an `n × p` Jacobian,
//! except below the small dense limit of [`Mlp::with_dense_limit`] (`n·p ≤ 2¹⁶` floats by
//! default), where forming `J` is cheaper than the per-layer products.
//!
//! A dropped linearisation hands its buffers back to the model, and the next one reuses
//! them (one set is kept; a clone starts without): a run that linearises every step
//! allocates once. The model therefore holds one linearisation's memory between steps.

mod fused;
mod fused_block;
mod gram_diag;
mod jacobian;
mod kfac;
mod linearization;
mod pointwise;
mod sensitivity;
mod workspace;

pub use linearization::MlpLinearization;

use super::activation::{Activation, Scalar};
use super::Model;
use crate::error::{check_finite, check_len, Error, Result};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;

/// A fully connected network `y(θ) = σ_{L-1}(W_{L-1} ⋯ σ_0(W_0 x + b_0) ⋯ + b_{L-1})`
/// evaluated on a fixed batch of `m` inputs (see the [module docs](self) for the layout).
#[derive(Debug, Clone)]
pub struct Mlp {
    widths: Vec<usize>,
    activations: Vec<Activation>,
    /// `(d + 1) × m`: the inputs as columns, with a trailing row of ones.
    inputs: Mat<f64>,
    /// Offset of layer `l`'s parameter block in θ (length `L + 1`, last = `p`).
    offsets: Vec<usize>,
    par: Par,
    /// Largest `n·p` for which a linearisation forms `J` and uses it for products.
    dense_limit: usize,
    /// Samples per chunk of the fused Gram product (`None`: [`fused::auto_chunk`]).
    gram_chunk: Option<usize>,
    /// The buffers of the last dropped linearisation, reused by the next.
    workspace: workspace::WorkspacePool,
}

/// Default of [`Mlp::with_dense_limit`]: `2¹⁶` floats (512 KiB).
pub const DENSE_LIMIT: usize = 1 << 16;

impl Mlp {
    /// A network with the given widths `[d, n_1, …, q]`, one activation per layer
    /// (`widths.len() − 1` of them), on the inputs `x` stored sample-major
    /// (`x[i·d + k]` = coordinate `k` of sample `i`, so `m = x.len() / d`).
    ///
    /// Fails with [`Error::InvalidSetting`] for fewer than two widths, a zero width, a
    /// wrong number of activations, or no samples; with [`Error::DimensionMismatch`] when
    /// `x.len()` is not a multiple of `d`; with [`Error::NonFinite`] naming the first
    /// non-finite input.
    pub fn new(widths: &[usize], activations: &[Activation], x: &[f64]) -> Result<Self> {
        if widths.len() < 2 || widths.contains(&0) {
            return Err(Error::InvalidSetting(format!(
                "Mlp: need at least two widths, all positive, got {widths:?}"
            )));
        }
        check_len(
            "Mlp: activations vs layers",
            widths.len() - 1,
            activations.len(),
        )?;
        let d = widths[0];
        if x.is_empty() {
            return Err(Error::InvalidSetting("Mlp: no input samples".into()));
        }
        check_len(
            "Mlp: inputs length vs a multiple of the input dimension",
            x.len().div_ceil(d) * d,
            x.len(),
        )?;
        check_finite("Mlp: inputs", x)?;
        let m = x.len() / d;
        let inputs = Mat::from_fn(d + 1, m, |k, i| if k < d { x[i * d + k] } else { 1.0 });
        let mut offsets = vec![0];
        for l in 0..widths.len() - 1 {
            offsets.push(offsets[l] + widths[l + 1] * (widths[l] + 1));
        }
        Ok(Self {
            widths: widths.to_vec(),
            activations: activations.to_vec(),
            inputs,
            offsets,
            par: Par::rayon(0),
            dense_limit: DENSE_LIMIT,
            gram_chunk: None,
            workspace: Default::default(),
        })
    }

    /// A network with activation `hidden` on every hidden layer and the identity on the
    /// output layer (the usual regression network).
    pub fn with_hidden(widths: &[usize], hidden: Activation, x: &[f64]) -> Result<Self> {
        let layers = widths.len().saturating_sub(1);
        let mut acts = vec![hidden; layers];
        if let Some(last) = acts.last_mut() {
            *last = Activation::Identity;
        }
        Self::new(widths, &acts, x)
    }

    /// Parallelism of the GEMMs and pointwise passes (default `Par::rayon(0)`).
    #[must_use]
    pub fn with_parallelism(mut self, par: Par) -> Self {
        self.par = par;
        self
    }

    /// Form the dense Jacobian at each linearisation, and answer jvp and vjp as one
    /// matrix–vector product each, when `n·p ≤ floats` (default [`DENSE_LIMIT`]; `0` never
    /// does). For tiny networks (the S benchmark: `n·p = 30 500`) that is several times
    /// cheaper than the per-layer GEMMs; the memory is bounded by `floats`, so large
    /// networks stay matrix-free.
    #[must_use]
    pub fn with_dense_limit(mut self, floats: usize) -> Self {
        self.dense_limit = floats;
        self.workspace = Default::default();
        self
    }

    /// Samples per chunk of the fused Gram product
    /// ([`Linearization::gram_product`](crate::Linearization::gram_product)): each chunk's
    /// tangent, metric weights and backward pass run back to back on `samples`-wide blocks
    /// (clamped to `1 … m`; `m` means the whole-batch jvp → metric → vjp). The default
    /// ([`Mlp::gram_chunk`]) is chosen from the widths and a cache budget. The result does
    /// not depend on the thread count for any chunk size; it depends on the chunk size only
    /// through rounding.
    #[must_use]
    pub fn with_gram_chunk(mut self, samples: usize) -> Self {
        self.gram_chunk = Some(samples);
        self
    }

    /// The chunk size the fused Gram product uses: the one set by
    /// [`Mlp::with_gram_chunk`], otherwise as many samples (a multiple of 8) as keep one
    /// chunk's activations, derivatives, tangent and cotangents within 512 KiB but at least
    /// 64 (or `m` if smaller), or `m` (the whole batch) for networks with more than 2¹⁸
    /// parameters. Between 1 and `m`.
    pub fn gram_chunk(&self) -> usize {
        let m = self.n_samples();
        self.gram_chunk
            .unwrap_or_else(|| fused::auto_chunk(self))
            .clamp(1, m)
    }

    /// Whether a linearisation forms `J` (`n·p` within the dense limit).
    pub(super) fn forms_jacobian(&self) -> bool {
        self.n_outputs() * self.n_params() <= self.dense_limit
    }

    /// The widths `[d, n_1, …, q]`.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    /// The activation of each layer.
    pub fn activations(&self) -> &[Activation] {
        &self.activations
    }

    /// Number of layers `L` (weight matrices).
    pub fn n_layers(&self) -> usize {
        self.widths.len() - 1
    }

    /// The range of θ holding layer `l`'s block `[W_l | b_l]`.
    pub fn layer_range(&self, l: usize) -> std::ops::Range<usize> {
        self.offsets[l]..self.offsets[l + 1]
    }

    /// Forward floating-point work `2·m·Σ n_l n_{l+1}` (GEMM flops of one forward pass,
    /// biases not counted); a jvp or a vjp costs about twice that.
    pub fn forward_flops(&self) -> f64 {
        let s: usize = self.widths.windows(2).map(|w| w[0] * w[1]).sum();
        2.0 * self.inputs.ncols() as f64 * s as f64
    }

    /// The network's predictions `y(θ; x)` at new inputs `x`, stored sample-major as in
    /// [`Mlp::new`] (`x[i·d + k]` = coordinate `k` of sample `i`): `m' = x.len() / d`
    /// samples, `m'·q` outputs sample-major. One forward pass, with this model's
    /// parallelism. Fails like [`Mlp::new`] on bad inputs (none, not a multiple of `d`,
    /// non-finite), and when `θ` does not have `p` entries.
    pub fn evaluate(&self, theta: &[f64], x: &[f64]) -> Result<Vec<f64>> {
        let at = Self::new(&self.widths, &self.activations, x)?
            .with_parallelism(self.par)
            .with_dense_limit(0);
        let mut y = vec![0.0; at.n_outputs()];
        at.forward(theta, &mut y)?;
        Ok(y)
    }

    /// Seeded Glorot-normal parameters (see the [module docs](self)).
    pub fn init_params(&self, seed: u64) -> Vec<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut theta = vec![0.0; self.n_params()];
        for l in 0..self.n_layers() {
            let (n_in, n_out) = (self.widths[l], self.widths[l + 1]);
            let std = (2.0 / (n_in + n_out) as f64).sqrt();
            let normal = Normal::new(0.0, std).expect("finite positive standard deviation");
            let block = &mut theta[self.layer_range(l)];
            for w in &mut block[..n_in * n_out] {
                *w = normal.sample(&mut rng);
            }
        }
        theta
    }

    /// Layer `l`'s block `[W_l | b_l]` of θ as an `n_{l+1} × (n_l + 1)` matrix.
    pub(super) fn layer<'t>(&self, theta: &'t [f64], l: usize) -> MatRef<'t, f64> {
        let (n_in, n_out) = (self.widths[l], self.widths[l + 1]);
        MatRef::from_column_major_slice(&theta[self.layer_range(l)], n_out, n_in + 1)
    }

    /// The reference forward pass with plain loops, generic over the scalar: on `f64` a
    /// check of the GEMM path, on `Complex64` the complex-step derivative
    /// ([`crate::check::complex_step_jvp`]). `out` has `n = m·q` entries.
    pub fn forward_reference<T: Scalar>(&self, theta: &[T], out: &mut [T]) {
        let m = self.inputs.ncols();
        let d = self.widths[0];
        let q = *self.widths.last().unwrap_or(&0);
        let mut a: Vec<T> = Vec::new();
        let mut z: Vec<T> = Vec::new();
        for i in 0..m {
            a.clear();
            a.extend((0..d).map(|k| T::from_f64(self.inputs[(k, i)])));
            for l in 0..self.n_layers() {
                let (n_in, n_out) = (self.widths[l], self.widths[l + 1]);
                let w = &theta[self.layer_range(l)];
                z.clear();
                z.extend((0..n_out).map(|r| {
                    (0..n_in).fold(w[r + n_in * n_out], |s, k| s + w[r + k * n_out] * a[k])
                }));
                a.clear();
                a.extend(z.iter().map(|&v| self.activations[l].apply(v)));
            }
            out[i * q..(i + 1) * q].copy_from_slice(&a);
        }
    }
}

impl Model for Mlp {
    type Linearization<'a> = MlpLinearization<'a>;

    fn n_params(&self) -> usize {
        *self.offsets.last().unwrap_or(&0)
    }

    fn n_outputs(&self) -> usize {
        self.n_samples() * self.widths[self.widths.len() - 1]
    }

    fn n_samples(&self) -> usize {
        self.inputs.ncols()
    }

    /// A forward pass without derivatives or caches: per layer one GEMM and one pass of
    /// σ over two ping-pong blocks (what line searches call).
    fn forward(&self, theta: &[f64], out: &mut [f64]) -> Result<()> {
        check_len("theta vs model parameters", self.n_params(), theta.len())?;
        check_len(
            "forward output buffer vs model outputs",
            self.n_outputs(),
            out.len(),
        )?;
        let (m, nl, w) = (self.n_samples(), self.n_layers(), &self.widths);
        let hidden = w[1..nl].iter().map(|n| (n + 1) * m).max().unwrap_or(0);
        let mut bufs = [vec![0.0; hidden], vec![0.0; hidden]];
        for l in 0..nl {
            let (n_in, n_out) = (w[l], w[l + 1]);
            let [prev, next] = &mut bufs;
            let input = match l {
                0 => self.inputs.as_ref(),
                _ => linearization::view(prev, n_in + 1, m),
            };
            let (target, ld) = match l + 1 == nl {
                true => (&mut *out, n_out),
                false => (&mut next[..(n_out + 1) * m], n_out + 1),
            };
            let z = MatMut::from_column_major_slice_with_stride_mut(target, n_out, m, ld);
            pointwise::gemm(z, Accum::Replace, self.layer(theta, l), input, self.par);
            let z = pointwise::Strided::new(target, ld, n_out);
            pointwise::activate(self.activations[l], z, None, self.par);
            if ld > n_out {
                target
                    .iter_mut()
                    .skip(n_out)
                    .step_by(ld)
                    .for_each(|v| *v = 1.0);
            }
            bufs.swap(0, 1);
        }
        Ok(())
    }

    fn linearize(&self, theta: &[f64]) -> Result<MlpLinearization<'_>> {
        check_len("theta vs model parameters", self.n_params(), theta.len())?;
        Ok(MlpLinearization::new(self, theta))
    }

    fn select_samples(&self, samples: &[usize]) -> Result<Self> {
        let m = self.n_samples();
        if let Some(&bad) = samples.iter().find(|&&i| i >= m) {
            return Err(Error::InvalidSetting(format!(
                "Mlp: sample index {bad} out of range for {m} samples"
            )));
        }
        if samples.is_empty() {
            return Err(Error::InvalidSetting("Mlp: empty mini-batch".into()));
        }
        let inputs = Mat::from_fn(self.inputs.nrows(), samples.len(), |k, i| {
            self.inputs[(k, samples[i])]
        });
        Ok(Self {
            inputs,
            ..self.clone()
        })
    }
}
