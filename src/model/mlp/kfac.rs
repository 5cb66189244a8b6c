//! K-FAC factors of an [`Mlp`](super::Mlp) from the linearisation's cached buffers
//! (docs/math.md §5).
//!
//! Row `(i, j)` of `J` restricted to layer `l` is `vec(δ_ij [a_i; 1]ᵀ) = [a_i; 1] ⊗ δ_ij`
//! (column-major θ), where `δ_ij` is the back-propagated pre-activation cotangent of
//! output component `j` at sample `i` (see `mlp/jacobian.rs`). So the exact layer block
//! of `Jᵀ diag(w) J` is `Σ_i [a_i;1][a_i;1]ᵀ ⊗ (Σ_j w_ij δ_ij δ_ijᵀ)`, and K-FAC replaces
//! the sum of Kronecker products by the Kronecker product of the sums
//!
//! ```text
//!   A_l = Σ_i ω_i [a_i;1][a_i;1]ᵀ,   ω_i = (Σ_j w_ij) / Σ_{i,j} w_ij,
//!   B_l = Σ_i Σ_j w_ij δ_ij δ_ijᵀ = S Sᵀ,   S = [√w_ij δ_ij]_{i,j},
//! ```
//!
//! exact when one sample is present, or when all samples share their input to the layer.
//! `A_l` is one GEMM `(X D_ω^{1/2})(X D_ω^{1/2})ᵀ` of the cached `X = [a_l; 1]`; `B_l`
//! is one backward pass per output component `j` (the cotangent `e_j` at every sample,
//! the passes of `mlp/gram_diag.rs`), scaled by `√w` and accumulated with one GEMM per
//! layer. Cost: `q` backward passes and `Σ_l m((n_l+1)² + q·n_{l+1}²)` multiply–adds.

use super::linearization::{back_through, layer_input, view, view_mut, MlpLinearization, NetAt};
use super::pointwise::{gemm, seed_output_unit};
use crate::model::{KfacFactors, Model};
use faer::{Accum, Mat};

/// The factors of every layer for the diagonal metric `w` (length `n`, entries `≥ 0`,
/// positive sum, checked by the caller).
pub(super) fn kfac_factors(lin: &mut MlpLinearization<'_>, w: &[f64]) -> Vec<KfacFactors> {
    let (model, theta, acts, derivs, bufs) = lin.parts();
    let (m, par, nl) = (model.n_samples(), model.par, model.n_layers());
    let widths = &model.widths;
    let q = widths[nl];
    let total: f64 = w.iter().sum();
    let sqrt_omega: Vec<f64> = w
        .chunks(q)
        .map(|wi| (wi.iter().sum::<f64>() / total).sqrt())
        .collect();
    let wmax = widths.iter().copied().max().unwrap_or(1);
    let mut scaled = vec![0.0; (wmax + 1) * m];
    let mut factors: Vec<KfacFactors> = (0..nl)
        .map(|l| {
            let (n_in, n_out) = (widths[l], widths[l + 1]);
            let x = layer_input(model, acts, l);
            let xs = view_mut(&mut scaled, n_in + 1, m);
            let mut xs = xs;
            for i in 0..m {
                for r in 0..=n_in {
                    xs[(r, i)] = x[(r, i)] * sqrt_omega[i];
                }
            }
            let xs = view(&scaled, n_in + 1, m);
            let mut a = Mat::zeros(n_in + 1, n_in + 1);
            gemm(a.as_mut(), Accum::Replace, xs, xs.transpose(), par);
            KfacFactors {
                range: model.layer_range(l),
                a,
                b: Mat::zeros(n_out, n_out),
            }
        })
        .collect();
    let [x, y] = bufs;
    for j in 0..q {
        let (mut x, mut y) = (&mut *x, &mut *y);
        seed_output_unit(model, derivs, j, &mut x[..q * m]);
        for l in (0..nl).rev() {
            let n_out = widths[l + 1];
            for i in 0..m {
                let sw = w[i * q + j].sqrt();
                for r in 0..n_out {
                    scaled[r + i * n_out] = sw * x[r + i * n_out];
                }
            }
            let s = view(&scaled, n_out, m);
            gemm(factors[l].b.as_mut(), Accum::Add, s, s.transpose(), par);
            if l > 0 {
                let net = NetAt {
                    model,
                    theta,
                    derivs,
                };
                back_through(net, l, view(x, n_out, m), y);
                std::mem::swap(&mut x, &mut y);
            }
        }
    }
    factors
}
