//! Products of a scalar-output [`Mlp`] through its sensitivities `δ` (docs/math.md §2).
//!
//! For a scalar output (`q = 1`) the Jacobian row of sample `i` with respect to layer
//! `l`'s block `Θ_l = [W_l | b_l]` is the outer product `δ_l[:, i] [a_l; 1][:, i]ᵀ`, where
//! `δ_l = ∂y/∂z_{l+1}` (`n_{l+1} × m`) is back-propagated from the output once per
//! linearisation: `δ_{L−1} = σ'_{L−1}`, `δ_{l−1} = σ'_{l−1} ⊙ (W_lᵀ δ_l)`. Hence
//!
//! * jvp: `(J t)_i = Σ_l δ_l[:, i] · (Θ̇_l [a_l; 1])[:, i]` — one GEMM per layer and a
//!   column dot;
//! * vjp: `Θ̄_l = (δ_l diag(s)) [a_l; 1]ᵀ` — a column scaling and one GEMM per layer;
//! * `diag(Jᵀ diag(w) J)_l = (w ⊙ δ_l²)([a_l; 1]²)ᵀ` — one GEMM per layer.
//!
//! The tangent/back-propagation products ([`super::linearization`]) need two GEMMs per
//! layer each (`[Θ̇_l | W_l][a_l; 1; ȧ_l]`, then `z̄ [a_l; 1]ᵀ` and `W_lᵀ z̄`), so a Gram
//! product `Jᵀ W J t` costs here half their GEMM flops: `2·forward_flops` instead of `4·`.
//! `δ` costs one backward pass, paid on the first product of a linearisation. Nothing
//! sums across samples except the weight-gradient GEMMs (inner dimension = samples, which
//! faer does not split), so results do not depend on the thread count.
//!
//! **Storage.** `δ_l` for the hidden layers lives in the rows `ȧ_{l+1}` of the cached
//! `[a_{l+1}; 1; ȧ_{l+1}]` (stride `2 n_{l+1} + 1`), which a scalar-output linearisation
//! never uses for a tangent: no memory beyond the tangent products'. `δ_{L−1}` is `σ'_{L−1}`
//! itself (all ones for the identity output).

use super::linearization::{back_through, view, view_mut, NetAt};
use super::pointwise::{gemm, mul_into, thin_product, Strided};
use super::workspace::Workspace;
use super::Mlp;
use crate::model::Model;
use faer::linalg::matmul::dot::inner_prod;
use faer::{Accum, ColRef, Conj, MatRef, Par, RowRef};
use rayon::prelude::*;

/// Samples per parallel task of the column passes (fixed: results do not depend on it
/// being run in parallel).
const COLS_PER_TASK: usize = 64;
/// Below this many floats a column pass runs sequentially.
const PAR_MIN_FLOATS: usize = 1 << 15;

/// What every product reads from a linearisation: the cached forward pass and `δ`.
pub(super) struct Cached<'s> {
    pub model: &'s Mlp,
    pub theta: &'s [f64],
    pub acts: &'s [Vec<f64>],
    pub acts_t: &'s [Vec<f64>],
    pub derivs: &'s [Vec<f64>],
}

impl<'s> Cached<'s> {
    /// The samples `j0 … j0+c` of this linearisation.
    pub fn chunk(&self, j0: usize, c: usize) -> Chunk<'_, 's> {
        Chunk { cache: self, j0, c }
    }

    /// The read-only parts of `ws`, and its two scratch blocks.
    pub fn with_bufs(model: &'s Mlp, ws: &'s mut Workspace) -> (Self, &'s mut [Vec<f64>; 2]) {
        let Workspace {
            theta,
            acts,
            acts_t,
            derivs,
            bufs,
            ..
        } = ws;
        let cache = Self {
            model,
            theta,
            acts,
            acts_t,
            derivs,
        };
        (cache, bufs)
    }

    /// `σ'_l` on the columns `j0 … j0+c` (`None` for the identity).
    pub fn deriv(&self, l: usize, j0: usize, c: usize) -> Option<&'s [f64]> {
        let n = self.model.widths[l + 1];
        (!self.model.activations[l].is_identity()).then(|| &self.derivs[l][n * j0..n * (j0 + c)])
    }

    /// `[a_l; 1]` on the columns `j0 … j0+c`, `(n_l + 1) × c`.
    pub fn input(&self, l: usize, j0: usize, c: usize) -> MatRef<'s, f64> {
        let model = self.model;
        if l == 0 {
            return model.inputs.as_ref().subcols(j0, c);
        }
        let n = model.widths[l];
        let ld = 2 * n + 1;
        MatRef::from_column_major_slice_with_stride(&self.acts[l - 1][ld * j0..], n + 1, c, ld)
    }

    /// `[a_l; 1]ᵀ` on the rows `j0 … j0+c`, `c × (n_l + 1)` (contiguous columns).
    pub fn input_t(&self, l: usize, j0: usize, c: usize) -> MatRef<'s, f64> {
        let m = self.model.n_samples();
        let n = self.model.widths[l];
        MatRef::from_column_major_slice_with_stride(&self.acts_t[l][j0..], c, n + 1, m)
    }

    /// `δ_l` on the columns `j0 … j0+c` as (first entry onward, column stride); `None`
    /// when it is all ones (the identity output layer). Valid once [`ensure_deltas`] ran.
    pub fn delta(&self, l: usize, j0: usize) -> Option<(&'s [f64], usize)> {
        let model = self.model;
        if l + 1 == model.n_layers() {
            return self.deriv(l, j0, 1).map(|_| (&self.derivs[l][j0..], 1));
        }
        let n = model.widths[l + 1];
        let ld = 2 * n + 1;
        Some((&self.acts[l][ld * j0 + n + 1..], ld))
    }
}

/// Computes `δ` into `ws` (one backward pass from the output) unless it is there already.
/// For scalar-output, matrix-free linearisations only.
pub(super) fn ensure_deltas(model: &Mlp, ws: &mut Workspace) {
    if ws.deltas_ready {
        return;
    }
    let (m, nl, par) = (model.n_samples(), model.n_layers(), model.par);
    let [buf, ones] = &mut ws.bufs;
    for l in (1..nl).rev() {
        let (n_in, n_out) = (model.widths[l], model.widths[l + 1]);
        let delta_l = match l + 1 == nl {
            // δ_{L−1} = σ'_{L−1} (1 × m), or ones for the identity.
            true if model.activations[l].is_identity() => {
                ones[..m].fill(1.0);
                view(ones, 1, m)
            }
            true => view(&ws.derivs[l], 1, m),
            false => {
                let ld = 2 * n_out + 1;
                MatRef::from_column_major_slice_with_stride(&ws.acts[l][n_out + 1..], n_out, m, ld)
            }
        };
        let net = NetAt {
            model,
            theta: &ws.theta,
            derivs: &ws.derivs,
        };
        back_through(net, l, delta_l, buf);
        let dst = &mut ws.acts[l - 1][n_in + 1..];
        mul_into(
            Strided::new(dst, 2 * n_in + 1, n_in),
            &buf[..n_in * m],
            None,
            par,
        );
    }
    ws.deltas_ready = true;
}

/// The samples `j0 … j0+c` of the cached linearisation ([`Cached::chunk`]): what the
/// chunk products below work on.
#[derive(Clone, Copy)]
pub(super) struct Chunk<'c, 's> {
    pub(super) cache: &'c Cached<'s>,
    pub(super) j0: usize,
    pub(super) c: usize,
}

/// `out = J t` on the samples `j0 … j0+c` of `chunk` (`out` has `c` entries); `z` is
/// scratch of `max n_l · c` floats. Sums layer after layer, each row in order.
pub(super) fn jvp_cols(chunk: Chunk<'_, '_>, t: &[f64], z: &mut [f64], out: &mut [f64], par: Par) {
    let Chunk { cache, j0, c } = chunk;
    let model = cache.model;
    for l in 0..model.n_layers() {
        let n_out = model.widths[l + 1];
        let (dt, input) = (model.layer(t, l), cache.input(l, j0, c));
        let zl = &mut z[..n_out * c];
        if !(l == 0 && thin_product(Strided::new(zl, n_out, n_out), dt, input, None, par)) {
            gemm(view_mut(zl, n_out, c), Accum::Replace, dt, input, par);
        }
        let (zl, delta): (&[f64], _) = (zl, cache.delta(l, j0));
        by_columns(&mut out[..c], (1, n_out), par, |i, o| {
            let zc = &zl[i * n_out..(i + 1) * n_out];
            let dot = match delta {
                None => zc.iter().sum::<f64>(),
                Some((d, ld)) => column_dot(&d[i * ld..i * ld + n_out], zc),
            };
            o[0] = if l == 0 { dot } else { o[0] + dot };
        });
    }
}

/// `out (=|+=) J_cᵀ s` on the samples `j0 … j0+c` of `chunk` (`s` has `c` entries, `out` `p`);
/// `e` is scratch of `max n_l · c` floats.
///
/// The layers are independent here, so they run from the top down: in a fused chunk the
/// top layers' `[a_l; 1]` and `δ_l`, which the chunk's jvp read last, are still in cache.
/// The right factor is the cached block `[a_l; 1]` itself as a transposed (strided) view:
/// no sample-major copy to make at each linearisation, and on a chunk no second read from
/// memory. On this host faer runs the two layouts at the same rate (one thread, 256 × 64
/// × 257 on hot data 54 GFLOP/s each; the whole-batch vjp at L 29–35 ms either way, at XL
/// 180–186 ms; docs/performance.md).
pub(super) fn vjp_cols(
    chunk: Chunk<'_, '_>,
    s: &[f64],
    e: &mut [f64],
    out: &mut [f64],
    (accum, par): (Accum, Par),
) {
    let Chunk { cache, j0, c } = chunk;
    let model = cache.model;
    for l in (0..model.n_layers()).rev() {
        let (n_in, n_out) = (model.widths[l], model.widths[l + 1]);
        let lhs = match cache.delta(l, j0) {
            None => view(s, 1, c),
            Some((d, ld)) => {
                scale_columns(&mut e[..n_out * c], (d, ld), n_out, s, par);
                view(e, n_out, c)
            }
        };
        let g = view_mut(&mut out[model.layer_range(l)], n_out, n_in + 1);
        gemm(g, accum, lhs, cache.input(l, j0, c).transpose(), par);
    }
}

/// `out (=|+=) diag(J_cᵀ diag(w_c) J_c)` on the samples `j0 … j0+c` of `chunk` (`w` has `c`
/// entries, `out` `p`); `e` holds `max n_l · c` and `sq` `max(n_l + 1) · c` floats (the
/// squares `[a_l; 1]²`, right factor as a transposed view like [`vjp_cols`]).
pub(super) fn gram_diagonal_cols(
    chunk: Chunk<'_, '_>,
    w: &[f64],
    (e, sq): (&mut [f64], &mut [f64]),
    out: &mut [f64],
    (accum, par): (Accum, Par),
) {
    let Chunk { cache, j0, c } = chunk;
    let model = cache.model;
    for l in 0..model.n_layers() {
        let (n_in, n_out) = (model.widths[l], model.widths[l + 1]);
        let e = &mut e[..n_out * c];
        match cache.delta(l, j0) {
            None => e.copy_from_slice(w),
            Some((d, ld)) => by_columns(e, (n_out, n_out), par, |i, ei| {
                let di = &d[i * ld..i * ld + n_out];
                ei.iter_mut().zip(di).for_each(|(e, d)| *e = w[i] * d * d);
            }),
        }
        let input = cache.input(l, j0, c);
        let sq = &mut sq[..(n_in + 1) * c];
        for (i, col) in sq.chunks_mut(n_in + 1).enumerate() {
            col.iter_mut()
                .zip(input.col(i).iter())
                .for_each(|(s, a)| *s = a * a);
        }
        let g = view_mut(&mut out[model.layer_range(l)], n_out, n_in + 1);
        let sq_t = view(sq, n_in + 1, c).transpose();
        gemm(g, accum, view(e, n_out, c), sq_t, par);
    }
}

/// `δ_l[:, i] · ż[:, i]` by faer's SIMD inner product (several accumulators, a summation
/// order fixed by the vector width alone). A plain `zip().sum()` is one dependent chain
/// of additions: at L it took 2.3 ms of a 55 ms one-thread Gram product per layer
/// (docs/performance.md, "Where a product's time goes").
pub(super) fn column_dot(d: &[f64], z: &[f64]) -> f64 {
    inner_prod(
        RowRef::from_slice(d),
        Conj::No,
        ColRef::from_slice(z),
        Conj::No,
    )
}

/// `e[:, i] = s_i · d[:, i]` for the `rows × c` block `e` (contiguous) and `d` (column
/// stride `ld`).
fn scale_columns(e: &mut [f64], (d, ld): (&[f64], usize), rows: usize, s: &[f64], par: Par) {
    by_columns(e, (rows, rows), par, |i, ei| {
        let di = &d[i * ld..i * ld + rows];
        ei.iter_mut().zip(di).for_each(|(e, d)| *e = s[i] * d);
    });
}

/// Runs `f(i, column i)` over the `rows`-long columns of `x` (`x.len() / rows` of them),
/// in fixed tasks of [`COLS_PER_TASK`] columns, in parallel when `par` allows and the
/// work (`work` floats per column) is large. No reductions: the result does not depend on
/// the threads.
fn by_columns(
    x: &mut [f64],
    (rows, work): (usize, usize),
    par: Par,
    f: impl Fn(usize, &mut [f64]) + Sync,
) {
    let task = |(k, xs): (usize, &mut [f64])| {
        for (i, xi) in xs.chunks_mut(rows).enumerate() {
            f(k * COLS_PER_TASK + i, xi);
        }
    };
    let per_task = rows * COLS_PER_TASK;
    let seq = par == Par::Seq || x.len() / rows * work < PAR_MIN_FLOATS;
    match seq {
        true => x.chunks_mut(per_task).enumerate().for_each(task),
        false => x.par_chunks_mut(per_task).enumerate().for_each(task),
    }
}
