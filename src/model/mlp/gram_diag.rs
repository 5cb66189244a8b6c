//! `diag(Jᵀ diag(w) J)` of an [`Mlp`](super::Mlp) as GEMMs of squares (for the Jacobi
//! preconditioner).
//!
//! The Jacobian entry of output `(i, j)` (sample `i`, component `j`) with respect to
//! `Θ_l[r, c]` is `δ^{(j)}_l[r, i] · [a_l; 1][c, i]`, where `δ^{(j)}` is back-propagated
//! from the cotangent `e_j` at every sample (samples do not interact). So
//! `diag_l = Σ_j (w_{·j} ⊙ δ^{(j)}_l ²) ([a_l; 1]²)ᵀ`: one backward pass and one GEMM per
//! layer for each output component.

use super::linearization::{back_through, layer_input, view, view_mut, MlpLinearization, NetAt};
use super::pointwise::{gemm, seed_output_unit};
use crate::model::Model;
use faer::Accum;

/// Writes `diag(Jᵀ diag(w) J)` into `out` (length `p`); `w` has length `n`.
pub(super) fn gram_diagonal(lin: &mut MlpLinearization<'_>, w: &[f64], out: &mut [f64]) {
    out.fill(0.0);
    let (model, theta, acts, derivs, bufs) = lin.parts();
    let (m, par, nl) = (model.n_samples(), model.par, model.n_layers());
    let widths = &model.widths;
    let q = widths[nl];
    let wmax = widths.iter().copied().max().unwrap_or(1);
    let mut sq_in = vec![0.0; (wmax + 1) * m];
    let mut e = vec![0.0; wmax * m];
    let [x, y] = bufs;
    for j in 0..q {
        let (mut x, mut y) = (&mut *x, &mut *y);
        seed_output_unit(model, derivs, j, &mut x[..q * m]);
        for l in (0..nl).rev() {
            let (n_in, n_out) = (widths[l], widths[l + 1]);
            let input = layer_input(model, acts, l);
            for i in 0..m {
                let wi = w[i * q + j];
                for r in 0..n_out {
                    let d = x[r + i * n_out];
                    e[r + i * n_out] = wi * d * d;
                }
                for r in 0..=n_in {
                    let a = input[(r, i)];
                    sq_in[r + i * (n_in + 1)] = a * a;
                }
            }
            let g = view_mut(&mut out[model.layer_range(l)], n_out, n_in + 1);
            let sq = view(&sq_in, n_in + 1, m);
            gemm(g, Accum::Add, view(&e, n_out, m), sq.transpose(), par);
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
}
