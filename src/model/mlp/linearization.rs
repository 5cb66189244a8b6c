//! [`MlpLinearization`]: the cached forward pass and the batched Jacobian products.
//!
//! With `ȧ_l`, `ż_l` the tangents of `a_l`, `z_l` and `Θ̇_l = [Ẇ_l | ḃ_l]`:
//!
//! * jvp: `ż_{l+1} = Θ̇_l [a_l; 1] + W_l ȧ_l` (two GEMMs, one for `l = 0` where `ȧ_0 = 0`),
//!   `ȧ_{l+1} = σ'_l ⊙ ż_{l+1}`;
//! * vjp: `z̄_L = σ'_{L-1} ⊙ s`, then `Θ̄_l = z̄_{l+1} [a_l; 1]ᵀ` (weight and bias gradient in
//!   one GEMM, inner dimension `m`) and `z̄_l = σ'_{l-1} ⊙ (W_lᵀ z̄_{l+1})`.
//!
//! Block products run `k` tangents side by side: the `W_l` GEMMs are `k·m` wide.

use super::pointwise::{activate, gemm, mul_by};
use super::Mlp;
use crate::model::Linearization;
use crate::model::Model;
use faer::prelude::ReborrowMut;
use faer::{Accum, MatMut, MatRef};

/// A product on a few columns at once (`jvp_cols` or `vjp_cols`).
type ColumnsProduct<'a> = fn(&mut MlpLinearization<'a>, &[&[f64]], &mut [&mut [f64]]);

/// Floats per scratch block that a block product may use (chunks of tangents beyond).
const BLOCK_FLOATS: usize = 1 << 22;

/// [`Mlp`] linearised at θ: activations `a_l` (with their row of ones), `σ'(z_l)`, the
/// outputs, and two scratch blocks. Products allocate nothing.
#[derive(Debug)]
pub struct MlpLinearization<'a> {
    model: &'a Mlp,
    theta: Vec<f64>,
    /// Hidden activations `a_1 … a_{L-1}`, each `(n_l + 1) × m` column-major.
    acts: Vec<Vec<f64>>,
    /// `σ'_l(z_{l+1})` for `l = 0 … L-1`, each `n_{l+1} × m` (empty for the identity).
    derivs: Vec<Vec<f64>>,
    outputs: Vec<f64>,
    bufs: [Vec<f64>; 2],
    /// Largest layer width `n_1 … n_L`.
    nmax: usize,
}

pub(super) fn view(v: &[f64], rows: usize, cols: usize) -> MatRef<'_, f64> {
    MatRef::from_column_major_slice(&v[..rows * cols], rows, cols)
}

pub(super) fn view_mut(v: &mut [f64], rows: usize, cols: usize) -> MatMut<'_, f64> {
    MatMut::from_column_major_slice_mut(&mut v[..rows * cols], rows, cols)
}

/// The input of layer `l`: `[a_l; 1]`, `(n_l + 1) × m`.
pub(super) fn layer_input<'s>(model: &'s Mlp, acts: &'s [Vec<f64>], l: usize) -> MatRef<'s, f64> {
    if l == 0 {
        model.inputs.as_ref()
    } else {
        view(&acts[l - 1], model.widths[l] + 1, model.n_samples())
    }
}

impl<'a> MlpLinearization<'a> {
    /// One forward pass at θ (length already checked), caching what the products need.
    pub(super) fn new(model: &'a Mlp, theta: &[f64]) -> Self {
        let (m, w, nl) = (model.n_samples(), &model.widths, model.n_layers());
        let mut acts: Vec<Vec<f64>> = (1..nl)
            .map(|l| {
                let mut a = vec![0.0; (w[l] + 1) * m];
                a.iter_mut()
                    .skip(w[l])
                    .step_by(w[l] + 1)
                    .for_each(|x| *x = 1.0);
                a
            })
            .collect();
        let mut derivs: Vec<Vec<f64>> = (0..nl)
            .map(|l| match model.activations[l].is_identity() {
                true => Vec::new(),
                false => vec![0.0; w[l + 1] * m],
            })
            .collect();
        let mut outputs = vec![0.0; model.n_outputs()];
        for l in 0..nl {
            let n_out = w[l + 1];
            let (done, rest) = acts.split_at_mut(l);
            let (target, ld) = match rest.first_mut() {
                Some(a) => (a.as_mut_slice(), n_out + 1),
                None => (outputs.as_mut_slice(), n_out),
            };
            let z = MatMut::from_column_major_slice_with_stride_mut(target, n_out, m, ld);
            let input = layer_input(model, done, l);
            gemm(z, Accum::Replace, model.layer(theta, l), input, model.par);
            activate(
                model.activations[l],
                target,
                ld,
                n_out,
                &mut derivs[l],
                model.par,
            );
        }
        let nmax = w[1..].iter().copied().max().unwrap_or(1);
        Self {
            model,
            theta: theta.to_vec(),
            acts,
            derivs,
            outputs,
            bufs: [vec![0.0; nmax * m], vec![0.0; nmax * m]],
            nmax,
        }
    }

    /// Tangents a scratch block holds at once.
    fn block_width(&self) -> usize {
        (BLOCK_FLOATS / (self.nmax * self.model.n_samples())).max(1)
    }

    fn reserve(&mut self, k: usize) {
        let need = self.nmax * self.model.n_samples() * k;
        for b in &mut self.bufs {
            if b.len() < need {
                b.resize(need, 0.0);
            }
        }
    }

    /// `outs[j] = J ts[j]` for a few tangents at once.
    fn jvp_cols(&mut self, ts: &[&[f64]], outs: &mut [&mut [f64]]) {
        let k = ts.len();
        self.reserve(k);
        let (model, theta, acts, derivs, bufs) = self.parts();
        let (m, par) = (model.n_samples(), model.par);
        let [x, y] = bufs;
        let (mut x, mut y) = (x, y);
        for (l, dl) in derivs.iter().enumerate() {
            let (n_in, n_out) = (model.widths[l], model.widths[l + 1]);
            let input = layer_input(model, acts, l);
            let mut z = view_mut(y, n_out, m * k);
            for (j, t) in ts.iter().enumerate() {
                let tl = model.layer(t, l);
                gemm(
                    z.rb_mut().subcols_mut(j * m, m),
                    Accum::Replace,
                    tl,
                    input,
                    par,
                );
            }
            if l > 0 {
                let wl = model.layer(theta, l).subcols(0, n_in);
                gemm(z, Accum::Add, wl, view(x, n_in, m * k), par);
            }
            if !model.activations[l].is_identity() {
                mul_by(&mut y[..n_out * m * k], dl, par);
            }
            std::mem::swap(&mut x, &mut y);
        }
        let n = model.n_outputs();
        for (j, out) in outs.iter_mut().enumerate() {
            out.copy_from_slice(&x[j * n..(j + 1) * n]);
        }
    }

    /// `outs[j] = Jᵀ ss[j]` for a few cotangents at once.
    fn vjp_cols(&mut self, ss: &[&[f64]], outs: &mut [&mut [f64]]) {
        let k = ss.len();
        self.reserve(k);
        let (model, theta, acts, derivs, bufs) = self.parts();
        let (m, n, par, nl) = (
            model.n_samples(),
            model.n_outputs(),
            model.par,
            model.n_layers(),
        );
        let [x, y] = bufs;
        let (mut x, mut y) = (x, y);
        for (j, s) in ss.iter().enumerate() {
            x[j * n..(j + 1) * n].copy_from_slice(s);
        }
        if !model.activations[nl - 1].is_identity() {
            mul_by(&mut x[..n * k], &derivs[nl - 1], par);
        }
        for l in (0..nl).rev() {
            let (n_in, n_out) = (model.widths[l], model.widths[l + 1]);
            let input = layer_input(model, acts, l);
            let zbar = view(x, n_out, m * k);
            for (j, out) in outs.iter_mut().enumerate() {
                let g = view_mut(&mut out[model.layer_range(l)], n_out, n_in + 1);
                let zj = zbar.subcols(j * m, m);
                gemm(g, Accum::Replace, zj, input.transpose(), par);
            }
            if l > 0 {
                let wl = model.layer(theta, l).subcols(0, n_in);
                let abar = view_mut(y, n_in, m * k);
                gemm(abar, Accum::Replace, wl.transpose(), zbar, par);
                if !model.activations[l - 1].is_identity() {
                    mul_by(&mut y[..n_in * m * k], &derivs[l - 1], par);
                }
                std::mem::swap(&mut x, &mut y);
            }
        }
    }

    /// Runs `f` on chunks of the columns of `t` (copied into slices, once per block call)
    /// and of `out` (which must be column-major).
    fn by_columns(&mut self, t: MatRef<'_, f64>, mut out: MatMut<'_, f64>, f: ColumnsProduct<'a>) {
        let kc = self.block_width();
        let mut j0 = 0;
        while j0 < t.ncols() {
            let j1 = (j0 + kc).min(t.ncols());
            let owned: Vec<Vec<f64>> = (j0..j1)
                .map(|j| t.col(j).iter().copied().collect())
                .collect();
            let ins: Vec<&[f64]> = owned.iter().map(|v| v.as_slice()).collect();
            let mut outs: Vec<&mut [f64]> = out
                .rb_mut()
                .subcols_mut(j0, j1 - j0)
                .col_iter_mut()
                .map(|c| {
                    c.try_as_col_major_mut()
                        .expect("natgrad: column-major output block required")
                        .as_slice_mut()
                })
                .collect();
            f(self, &ins, &mut outs);
            j0 = j1;
        }
    }
}

impl Linearization for MlpLinearization<'_> {
    fn n_params(&self) -> usize {
        self.theta.len()
    }

    fn outputs(&self) -> &[f64] {
        &self.outputs
    }

    fn jvp(&mut self, t: &[f64], out: &mut [f64]) {
        assert_eq!(t.len(), self.theta.len(), "natgrad: Mlp jvp tangent length");
        self.jvp_cols(&[t], &mut [out]);
    }

    fn vjp(&mut self, s: &[f64], out: &mut [f64]) {
        assert_eq!(
            s.len(),
            self.outputs.len(),
            "natgrad: Mlp vjp cotangent length"
        );
        self.vjp_cols(&[s], &mut [out]);
    }

    fn jvp_block(&mut self, t: MatRef<'_, f64>, out: MatMut<'_, f64>) {
        self.by_columns(t, out, Self::jvp_cols);
    }

    fn vjp_block(&mut self, s: MatRef<'_, f64>, out: MatMut<'_, f64>) {
        self.by_columns(s, out, Self::vjp_cols);
    }

    /// Supported for any output width `q` and diagonal metric `w`: one backward pass per
    /// output component `j` (cotangent `e_j` at every sample) gives the per-sample
    /// back-propagated `δ`, and `diag(Jᵀ diag(w) J)` of layer `l` is the GEMM of squares
    /// `Σ_j (w_j ⊙ δ_j²) ([a_l; 1]²)ᵀ`. Cost: `q` vjps.
    fn gram_diagonal(&mut self, w: &[f64], out: &mut [f64]) -> bool {
        super::gram_diag::gram_diagonal(self, w, out);
        true
    }

    /// From `q` backward passes, `O(q·m·p)` (see `mlp/jacobian.rs`).
    fn dense_jacobian(&mut self) -> Option<faer::Mat<f64>> {
        self.reserve(1);
        Some(super::jacobian::dense_jacobian(self))
    }
}

/// The pieces [`super::gram_diag`] needs.
impl<'a> MlpLinearization<'a> {
    #[allow(clippy::type_complexity)]
    pub(super) fn parts(
        &mut self,
    ) -> (
        &'a Mlp,
        &[f64],
        &[Vec<f64>],
        &[Vec<f64>],
        &mut [Vec<f64>; 2],
    ) {
        (
            self.model,
            &self.theta,
            &self.acts,
            &self.derivs,
            &mut self.bufs,
        )
    }
}
