//! The dense Jacobian of an [`Mlp`](super::Mlp) from `q` backward passes.
//!
//! Samples do not interact in the network, so a backward pass whose cotangent is 1 on
//! output component `j` of every sample gives, at once, every sample's own back-propagated
//! `z̄_{l+1}[:, i]`. Row `(i, j)` of `J` for layer `l` is then the outer product
//! `z̄_{l+1}[:, i] [a_l; 1][:, i]ᵀ` (column-major, like θ): column `c·n_{l+1} + u` of the
//! layer's block is the sample-wise product of row `u` of `z̄` and row `c` of `[a_l; 1]`,
//! which after one transpose of each are contiguous. Cost `O(q·m·p)`, against `p` jvps
//! (each a full forward-like pass) for the generic construction.

use super::linearization::{back_through, layer_input, view, view_mut, MlpLinearization, NetAt};
use super::pointwise::seed_output_unit;
use crate::model::{col_slice_mut, Model};
use faer::prelude::ReborrowMut;
use faer::MatMut;

/// `J` (`n × p`) into `jac`, whose columns must be contiguous.
pub(super) fn dense_jacobian(lin: &mut MlpLinearization<'_>, mut jac: MatMut<'_, f64>) {
    let (model, theta, acts, derivs, bufs) = lin.parts();
    let (m, nl) = (model.n_samples(), model.n_layers());
    let q = model.widths[nl];
    let wmax = model.widths.iter().copied().max().unwrap_or(1);
    // Sample-major copies of z̄ and [a; 1]: column u of `zt` is row u of z̄.
    let (mut zt, mut at) = (vec![0.0; m * wmax], vec![0.0; m * (wmax + 1)]);
    let [x, y] = bufs;
    for j in 0..q {
        let (mut x, mut y) = (&mut *x, &mut *y);
        seed_output_unit(model, derivs, j, &mut x[..q * m]);
        for l in (0..nl).rev() {
            let (n_in, n_out) = (model.widths[l], model.widths[l + 1]);
            let zbar = view(x, n_out, m);
            view_mut(&mut zt, m, n_out).copy_from(zbar.transpose());
            view_mut(&mut at, m, n_in + 1).copy_from(layer_input(model, acts, l).transpose());
            let off = model.layer_range(l).start;
            for c in 0..=n_in {
                let a = &at[c * m..(c + 1) * m];
                for u in 0..n_out {
                    let z = &zt[u * m..(u + 1) * m];
                    let k = off + c * n_out + u;
                    let col = col_slice_mut(jac.rb_mut(), k);
                    let prods = a.iter().zip(z).map(|(a, z)| a * z);
                    match q {
                        1 => col.iter_mut().zip(prods).for_each(|(o, v)| *o = v),
                        _ => col
                            .iter_mut()
                            .skip(j)
                            .step_by(q)
                            .zip(prods)
                            .for_each(|(o, v)| *o = v),
                    }
                }
            }
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
