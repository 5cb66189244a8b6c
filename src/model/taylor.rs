//! Taylor-mode forward propagation through a tanh MLP: the value `v`, the gradient
//! `∇_x v` and the Laplacian `Δ_x v` at a batch of points, with Jacobian products with
//! respect to the parameters θ on one cached forward pass.
//!
//! A point carries `C = d + 2` channels through the network: channel 0 the value, channels
//! `1..=d` the partial derivatives `∂_k`, channel `d + 1` the Laplacian. With
//! `a = W z + b` and `h = tanh(a)` (derivatives `s₁ = σ'`, `s₂ = σ''`, `s₃ = σ'''` at `a₀`):
//!
//! ```text
//! a₀ = W z₀ + b     a_k = W z_k     a_Δ = W z_Δ
//! h₀ = σ(a₀)        h_k = s₁ a_k    h_Δ = s₂ Σ_k a_k² + s₁ a_Δ
//! ```
//!
//! so one layer is one GEMM over all channels of all points (`W` times an
//! `n_in × (C·m)` block) plus elementwise work. The θ-tangent (jvp) differentiates these
//! formulas forward; the θ-cotangent (vjp) runs them backward, and the weight gradient is
//! one GEMM `Ā Zᵀ` over all channels.
//!
//! Parameter layout: for each layer `l` in order, `W_l` (`n_{l+1} × n_l`, column-major),
//! then `b_l` (`n_{l+1}`). The last layer is affine (no activation), scalar output.

use crate::error::{check_finite, Error, Result};
use crate::linalg::matmul_then_scalar as matmul;
use crate::model::activation::Activation;
use faer::{Accum, Mat, MatMut, MatRef, Par};

/// The architecture of a tanh MLP `R^d → R` used in Taylor mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaylorMlp {
    widths: Vec<usize>,
}

impl TaylorMlp {
    /// Widths `[d, h₁, …, h_L, 1]`: input dimension, hidden widths (tanh), scalar output.
    pub fn new(widths: Vec<usize>) -> Result<Self> {
        if widths.len() < 2 || widths.contains(&0) || *widths.last().unwrap() != 1 {
            return Err(Error::InvalidSetting(format!(
                "TaylorMlp: widths must be [d, hidden.., 1] with positive entries, got {widths:?}"
            )));
        }
        Ok(Self { widths })
    }

    /// The widths `[d, h₁, …, 1]`.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    /// Input dimension `d`.
    pub fn input_dim(&self) -> usize {
        self.widths[0]
    }

    /// Number of parameters `Σ n_{l+1}(n_l + 1)`.
    pub fn n_params(&self) -> usize {
        self.widths.windows(2).map(|w| w[1] * (w[0] + 1)).sum()
    }

    /// Number of channels `C = d + 2` (value, gradient, Laplacian).
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

    /// Glorot-uniform weights and zero biases from a seed (deterministic).
    pub fn init(&self, seed: u64) -> Vec<f64> {
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

    /// Runs the Taylor-mode forward pass at θ on the points `x` (`d × m`, one column per
    /// point) and keeps what the θ-products need.
    pub fn forward(&self, theta: &[f64], x: MatRef<'_, f64>, par: Par) -> Result<TaylorPass> {
        crate::error::check_len("TaylorMlp: theta", self.n_params(), theta.len())?;
        crate::error::check_len(
            "TaylorMlp: rows of the point matrix",
            self.input_dim(),
            x.nrows(),
        )?;
        let (d, m, c) = (self.input_dim(), x.ncols(), self.channels());
        let mut z0 = Mat::<f64>::zeros(d, c * m);
        for i in 0..m {
            for k in 0..d {
                z0[(k, i)] = x[(k, i)];
                z0[(k, (1 + k) * m + i)] = 1.0;
            }
        }
        let n_layers = self.widths.len() - 1;
        let mut zs = vec![z0];
        let mut hidden = Vec::with_capacity(n_layers - 1);
        for l in 0..n_layers {
            let (w, b) = self.layer(theta, l);
            let zin = zs.last().unwrap();
            let mut a = Mat::<f64>::zeros(w.nrows(), c * m);
            matmul(a.as_mut(), Accum::Replace, w, zin.as_ref(), 1.0, par);
            for i in 0..m {
                a.col_as_slice_mut(i)
                    .iter_mut()
                    .zip(b)
                    .for_each(|(a, b)| *a += b);
            }
            if l + 1 == n_layers {
                zs.push(a);
            } else {
                let layer = HiddenLayer::new(a, d, m);
                zs.push(layer.outputs(d, m));
                hidden.push(layer);
            }
        }
        let out = zs.pop().unwrap();
        check_finite("TaylorMlp outputs", out.col_as_slice(0))?;
        Ok(TaylorPass {
            net: self.clone(),
            theta: theta.to_vec(),
            m,
            zs,
            hidden,
            out,
            par,
        })
    }
}

/// One hidden layer's cache: pre-activations of every channel and `σ', σ'', σ'''` at `a₀`.
#[derive(Debug, Clone)]
struct HiddenLayer {
    /// Pre-activations, `n × (C·m)`.
    a: Mat<f64>,
    /// `σ(a₀)`, `σ'(a₀)`, `σ''(a₀)`, `σ'''(a₀)` and `S = Σ_k a_k²`, each `n × m`.
    h0: Mat<f64>,
    s1: Mat<f64>,
    s2: Mat<f64>,
    s3: Mat<f64>,
    sq: Mat<f64>,
}

impl HiddenLayer {
    fn new(a: Mat<f64>, d: usize, m: usize) -> Self {
        let n = a.nrows();
        let (mut h0, mut s1, mut s2, mut s3, mut sq) = (
            Mat::zeros(n, m),
            Mat::zeros(n, m),
            Mat::zeros(n, m),
            Mat::zeros(n, m),
            Mat::zeros(n, m),
        );
        for i in 0..m {
            // σ and σ' by the crate's vectorised tanh (channel 0 is the first m columns).
            let (t, d1) = (h0.col_as_slice_mut(i), s1.col_as_slice_mut(i));
            t.copy_from_slice(a.col_as_slice(i));
            Activation::Tanh.value_and_derivative_slice(t, d1);
            for u in 0..n {
                let (t, d1) = (h0[(u, i)], s1[(u, i)]);
                s2[(u, i)] = -2.0 * t * d1;
                s3[(u, i)] = -2.0 * d1 * d1 + 4.0 * t * t * d1;
                sq[(u, i)] = (1..=d).map(|k| a[(u, k * m + i)].powi(2)).sum();
            }
        }
        Self {
            a,
            h0,
            s1,
            s2,
            s3,
            sq,
        }
    }

    /// `h₀ = σ(a₀)`, `h_k = s₁ a_k`, `h_Δ = s₂ S + s₁ a_Δ`.
    fn outputs(&self, d: usize, m: usize) -> Mat<f64> {
        let a = &self.a;
        Mat::from_fn(a.nrows(), a.ncols(), |u, col| {
            let (ch, i) = (col / m, col % m);
            match ch {
                0 => self.h0[(u, i)],
                k if k <= d => self.s1[(u, i)] * a[(u, col)],
                _ => self.s2[(u, i)] * self.sq[(u, i)] + self.s1[(u, i)] * a[(u, col)],
            }
        })
    }

    /// Tangent through the activation: `ȧ ↦ ḣ` (in place on `dot`).
    fn tangent(&self, mut dot: MatMut<'_, f64>, d: usize, m: usize) {
        let a = &self.a;
        for i in 0..m {
            for u in 0..a.nrows() {
                let (s1, s2, s3) = (self.s1[(u, i)], self.s2[(u, i)], self.s3[(u, i)]);
                let da0 = dot[(u, i)];
                let mut cross = 0.0;
                for k in 1..=d {
                    let col = k * m + i;
                    cross += a[(u, col)] * dot[(u, col)];
                    dot[(u, col)] = s2 * da0 * a[(u, col)] + s1 * dot[(u, col)];
                }
                let lc = (d + 1) * m + i;
                dot[(u, lc)] = s3 * da0 * self.sq[(u, i)]
                    + 2.0 * s2 * cross
                    + s2 * da0 * a[(u, lc)]
                    + s1 * dot[(u, lc)];
                dot[(u, i)] = s1 * da0;
            }
        }
    }

    /// Cotangent through the activation: `h̄ ↦ ā` (in place on `bar`).
    fn cotangent(&self, mut bar: MatMut<'_, f64>, d: usize, m: usize) {
        let a = &self.a;
        for i in 0..m {
            for u in 0..a.nrows() {
                let (s1, s2, s3) = (self.s1[(u, i)], self.s2[(u, i)], self.s3[(u, i)]);
                let lc = (d + 1) * m + i;
                let hl = bar[(u, lc)];
                let mut a0 = s1 * bar[(u, i)] + (s3 * self.sq[(u, i)] + s2 * a[(u, lc)]) * hl;
                for k in 1..=d {
                    let col = k * m + i;
                    a0 += s2 * a[(u, col)] * bar[(u, col)];
                    bar[(u, col)] = s1 * bar[(u, col)] + 2.0 * s2 * a[(u, col)] * hl;
                }
                bar[(u, lc)] = s1 * hl;
                bar[(u, i)] = a0;
            }
        }
    }
}

/// The result of [`TaylorMlp::forward`]: the output channels and the cache for products.
#[derive(Debug, Clone)]
pub struct TaylorPass {
    net: TaylorMlp,
    theta: Vec<f64>,
    m: usize,
    /// Inputs of each layer, `n_l × (C·m)`.
    zs: Vec<Mat<f64>>,
    hidden: Vec<HiddenLayer>,
    /// Output channels `1 × (C·m)`.
    out: Mat<f64>,
    par: Par,
}

impl TaylorPass {
    /// Number of points.
    pub fn n_points(&self) -> usize {
        self.m
    }

    /// `v(x_i)`.
    pub fn value(&self, i: usize) -> f64 {
        self.out[(0, i)]
    }

    /// `∂_k v(x_i)` (k < d).
    pub fn partial(&self, i: usize, k: usize) -> f64 {
        self.out[(0, (1 + k) * self.m + i)]
    }

    /// `Δ v(x_i)`.
    pub fn laplacian(&self, i: usize) -> f64 {
        self.out[(0, (self.net.input_dim() + 1) * self.m + i)]
    }

    /// θ-tangent of all output channels: `out` (length `C·m`, channel-major) `= ∂(channels)/∂θ · t`.
    /// `work` holds one `n_l × C·m` buffer per layer ([`TaylorPass::work_buffers`]).
    pub fn jvp(&self, t: &[f64], out: &mut [f64], work: &mut [Mat<f64>]) {
        let (d, m) = (self.net.input_dim(), self.m);
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
                1.0,
                self.par,
            );
            if l > 0 {
                matmul(
                    dot.as_mut(),
                    Accum::Add,
                    w,
                    prev[l - 1].as_ref(),
                    1.0,
                    self.par,
                );
            }
            for i in 0..m {
                dot.col_as_slice_mut(i)
                    .iter_mut()
                    .zip(db)
                    .for_each(|(a, b)| *a += b);
            }
            if l + 1 < n_layers {
                self.hidden[l].tangent(dot.as_mut(), d, m);
            }
        }
        let top = &work[n_layers - 1];
        for (col, o) in out.iter_mut().enumerate() {
            *o = top[(0, col)];
        }
    }

    /// Backward pass of the channel cotangent `s` (length `C·m`, channel-major): leaves
    /// `Ā_l` (the cotangent of layer `l`'s pre-activations) in `work[l]` for every layer.
    fn backward(&self, s: &[f64], work: &mut [Mat<f64>]) {
        let (d, m) = (self.net.input_dim(), self.m);
        let n_layers = self.zs.len();
        let top = &mut work[n_layers - 1];
        for (col, &v) in s.iter().enumerate() {
            top[(0, col)] = v;
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
                1.0,
                self.par,
            );
            self.hidden[l - 1].cotangent(zbar.as_mut(), d, m);
        }
    }

    /// θ-cotangent: `out = (∂(channels)/∂θ)ᵀ s` for `s` of length `C·m` (channel-major).
    /// The weight gradient of each layer is one GEMM `Ā_l Z_lᵀ` over all channels.
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
                1.0,
                self.par,
            );
            for (u, gb) in out[bo..bo + no].iter_mut().enumerate() {
                *gb = (0..self.m).map(|i| bar[(u, i)]).sum();
            }
        }
    }

    /// The per-point Jacobian: row `i` of `out` (`m × p`) is `∂/∂θ` of
    /// `Σ_ch s[ch·m + i] · channel_ch(x_i)`. Points do not interact in the network, so one
    /// backward pass of `s` gives every point's own cotangent and each row is a sum of `C`
    /// outer products per layer: `O(m·C·p)` work, against `p` jvps for the generic path.
    pub fn point_jacobian(&self, s: &[f64], mut out: MatMut<'_, f64>, work: &mut [Mat<f64>]) {
        self.backward(s, work);
        let (m, c) = (self.m, self.net.channels());
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
        let cm = self.net.channels() * self.m;
        self.net.widths[1..]
            .iter()
            .map(|&n| Mat::zeros(n, cm))
            .collect()
    }
}

/// Scalars the reference Taylor pass runs on: `f64`, and `Complex64` for complex-step
/// derivative checks.
pub trait TaylorScalar:
    Copy
    + From<f64>
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
{
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
}

impl TaylorScalar for f64 {
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
}

impl TaylorScalar for num_complex::Complex64 {
    fn tanh(self) -> Self {
        num_complex::Complex64::tanh(self)
    }
}

impl TaylorMlp {
    /// Reference Taylor pass at one point, written plainly over any [`TaylorScalar`]:
    /// returns `(v, ∇v, Δv)`. Used to check the batched pass and, over `Complex64`, for
    /// complex-step derivatives in θ.
    pub fn point_channels<T: TaylorScalar>(&self, theta: &[T], x: &[f64]) -> (T, Vec<T>, T) {
        let d = self.input_dim();
        let zero = T::from(0.0);
        let mut z0: Vec<T> = x.iter().map(|&v| T::from(v)).collect();
        let mut zk: Vec<Vec<T>> = (0..d)
            .map(|k| {
                (0..d)
                    .map(|j| T::from(if j == k { 1.0 } else { 0.0 }))
                    .collect()
            })
            .collect();
        let mut zl: Vec<T> = vec![zero; d];
        let n_layers = self.widths.len() - 1;
        for (l, (wo, bo)) in self.layout().into_iter().enumerate() {
            let (ni, no) = (self.widths[l], self.widths[l + 1]);
            let w = |r: usize, c: usize| theta[wo + c * no + r];
            let lin = |z: &[T], r: usize| (0..ni).fold(zero, |acc, c| acc + w(r, c) * z[c]);
            let a0: Vec<T> = (0..no).map(|r| lin(&z0, r) + theta[bo + r]).collect();
            let ak: Vec<Vec<T>> = zk
                .iter()
                .map(|z| (0..no).map(|r| lin(z, r)).collect())
                .collect();
            let al: Vec<T> = (0..no).map(|r| lin(&zl, r)).collect();
            if l + 1 == n_layers {
                z0 = a0;
                zk = ak;
                zl = al;
                break;
            }
            let one = T::from(1.0);
            let t: Vec<T> = a0.iter().map(|a| a.tanh()).collect();
            let s1: Vec<T> = t.iter().map(|&t| one - t * t).collect();
            let s2: Vec<T> = t
                .iter()
                .zip(&s1)
                .map(|(&t, &s)| T::from(-2.0) * t * s)
                .collect();
            zl = (0..no)
                .map(|r| {
                    let sq = ak.iter().fold(zero, |acc, a| acc + a[r] * a[r]);
                    s2[r] * sq + s1[r] * al[r]
                })
                .collect();
            zk = ak
                .iter()
                .map(|a| (0..no).map(|r| s1[r] * a[r]).collect())
                .collect();
            z0 = t;
        }
        (z0[0], zk.iter().map(|z| z[0]).collect(), zl[0])
    }
}
