//! The dense Jacobian of an [`Mlp`](super::Mlp) from `q` backward passes.
//!
//! Samples do not interact in the network, so a backward pass whose cotangent is 1 on
//! output component `j` of every sample gives, at once, every sample's own back-propagated
//! `z̄_{l+1}[:, i]`. Row `(i, j)` of `J` for layer `l` is then the outer product
//! `z̄_{l+1}[:, i] [a_l; 1][:, i]ᵀ` (column-major, like θ). Cost `O(q·m·p)`, against `p`
//! jvps (each a full forward-like pass) for the generic construction.

use super::linearization::{layer_input, view, view_mut, MlpLinearization};
use super::pointwise::mul_by;
use crate::model::Model;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat};

pub(super) fn dense_jacobian(lin: &mut MlpLinearization<'_>) -> Mat<f64> {
    let (model, theta, acts, derivs, bufs) = lin.parts();
    let (m, nl, par) = (model.n_samples(), model.n_layers(), model.par);
    let q = model.widths[nl];
    let mut jac = Mat::<f64>::zeros(m * q, model.n_params());
    let [x, y] = bufs;
    for j in 0..q {
        let (mut x, mut y) = (&mut *x, &mut *y);
        // z̄_L: 1 on component j of every sample, times σ'.
        x[..q * m].fill(0.0);
        for i in 0..m {
            x[i * q + j] = 1.0;
        }
        if !model.activations[nl - 1].is_identity() {
            mul_by(&mut x[..q * m], &derivs[nl - 1], par);
        }
        for l in (0..nl).rev() {
            let (n_in, n_out) = (model.widths[l], model.widths[l + 1]);
            let input = layer_input(model, acts, l);
            let zbar = view(x, n_out, m);
            let off = model.layer_range(l).start;
            for i in 0..m {
                let row = i * q + j;
                for c in 0..=n_in {
                    let a = input[(c, i)];
                    for u in 0..n_out {
                        jac[(row, off + c * n_out + u)] = zbar[(u, i)] * a;
                    }
                }
            }
            if l > 0 {
                let wl = model.layer(theta, l).subcols(0, n_in);
                matmul(
                    view_mut(y, n_in, m),
                    Accum::Replace,
                    wl.transpose(),
                    zbar,
                    1.0,
                    par,
                );
                if !model.activations[l - 1].is_identity() {
                    mul_by(&mut y[..n_in * m], &derivs[l - 1], par);
                }
                std::mem::swap(&mut x, &mut y);
            }
        }
    }
    jac
}
