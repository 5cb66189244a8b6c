//! [`MlpLinearization`]: the cached forward pass and the batched Jacobian products.
//!
//! With `ȧ_l`, `ż_l` the tangents of `a_l`, `z_l` and `Θ̇_l = [Ẇ_l | ḃ_l]`:
//!
//! * jvp: `ż_{l+1} = Θ̇_l [a_l; 1] + W_l ȧ_l` (two GEMMs, one for `l = 0` where `ȧ_0 = 0`),
//!   `ȧ_{l+1} = σ'_l ⊙ ż_{l+1}`;
//! * vjp: `z̄_L = σ'_{L-1} ⊙ s`, then `Θ̄_l = z̄_{l+1} [a_l; 1]ᵀ` (weight and bias gradient in
//!   one GEMM, inner dimension `m`) and `z̄_l = σ'_{l-1} ⊙ (W_lᵀ z̄_{l+1})`.
//!
//! The jvp keeps `ȧ_l` in the rows below `[a_l; 1]`, so that its two terms are one GEMM
//! `[Ẇ_l | ḃ_l | W_l] · [a_l; 1; ȧ_l]` (inner dimension `2 n_l + 1`), and applies `σ'`
//! in the same pass that writes `ȧ_{l+1}` there. Block products run column by column:
//! every GEMM is already `m` wide.
//!
//! A scalar output (`q = 1`) takes neither: its products go through the sensitivities `δ`
//! (`mlp/sensitivity.rs`, one GEMM per layer for each of jvp and vjp), which then occupy
//! the rows of `ȧ_l`.

use super::pointwise::{activate, gemm, mul_by, mul_into, thin_product, Strided};
use super::sensitivity::{jvp_cols, vjp_cols, Cached};
use super::workspace::Workspace;
use super::Mlp;
use crate::model::{col_slice_mut, Linearization, Model};
use faer::linalg::matmul::matmul;
use faer::prelude::ReborrowMut;
use faer::{Accum, ColMut, ColRef, Mat, MatMut, MatRef, Par};

/// A single-vector product (`jvp` or `vjp`), applied column by column to a block.
type ColumnProduct<'a> = fn(&mut MlpLinearization<'a>, &[f64], &mut [f64]);

/// [`Mlp`] linearised at θ: activations `a_l` (with their row of ones and room for the
/// tangent `ȧ_l`), `σ'(z_l)`, the outputs, and scratch blocks. Products allocate nothing.
///
/// When `n·p` is at most the model's dense limit ([`Mlp::with_dense_limit`]) the
/// linearisation also forms `J` (`n × p`, from `q` backward passes) and answers products
/// as one faer matrix–vector product each: for tiny networks this beats the per-layer
/// GEMMs, whose fixed cost dominates there. The memory is bounded by the limit.
#[derive(Debug)]
pub struct MlpLinearization<'a> {
    model: &'a Mlp,
    /// θ, the cached forward pass, scratch and (when small) `J`: see [`Workspace`]. The
    /// hidden activations are stored `(2 n_l + 1) × m` with rows `[a_l; 1; ȧ_l]` (the
    /// cached activation, its row of ones, and the jvp tangent), so a jvp layer is the
    /// single GEMM `[Ẇ_l | ḃ_l | W_l] · [a_l; 1; ȧ_l]`; for an output width `q > 1` the
    /// sample-major copies `[a_l; 1]ᵀ` are the right factor of the vjp's weight gradient
    /// `z̄_{l+1} [a_l; 1]ᵀ` (≈ 1.4× the strided transpose on the Xeon host where that was
    /// measured). A scalar output makes no copies: its `δ` products take the strided
    /// transpose, which runs at the copy's rate on this host (`mlp/sensitivity.rs`), and
    /// the copies were 40 % of an L linearisation. Returned to the model's pool on drop.
    ws: Workspace,
}

pub(super) fn view(v: &[f64], rows: usize, cols: usize) -> MatRef<'_, f64> {
    MatRef::from_column_major_slice(&v[..rows * cols], rows, cols)
}

pub(super) fn view_mut(v: &mut [f64], rows: usize, cols: usize) -> MatMut<'_, f64> {
    MatMut::from_column_major_slice_mut(&mut v[..rows * cols], rows, cols)
}

/// The input of layer `l`: `[a_l; 1]`, `(n_l + 1) × m` (column stride `2 n_l + 1` for
/// the hidden layers).
pub(super) fn layer_input<'s>(model: &'s Mlp, acts: &'s [Vec<f64>], l: usize) -> MatRef<'s, f64> {
    if l == 0 {
        model.inputs.as_ref()
    } else {
        let (n, m) = (model.widths[l], model.n_samples());
        MatRef::from_column_major_slice_with_stride(&acts[l - 1], n + 1, m, 2 * n + 1)
    }
}

/// The network at θ with the activation derivatives `σ'_l` of its forward pass: what a
/// step of back-propagation reads.
#[derive(Clone, Copy)]
pub(super) struct NetAt<'a> {
    pub(super) model: &'a Mlp,
    pub(super) theta: &'a [f64],
    pub(super) derivs: &'a [Vec<f64>],
}

/// One step of back-propagation below layer `l ≥ 1`: `y ← σ'_{l-1} ⊙ (W_lᵀ z̄_{l+1})`,
/// the `n_l × m` cotangent `z̄_l` (the derivative multiply skipped for the identity).
pub(super) fn back_through(net: NetAt<'_>, l: usize, zbar: MatRef<'_, f64>, y: &mut [f64]) {
    let NetAt {
        model,
        theta,
        derivs,
    } = net;
    let (n_in, m, par) = (model.widths[l], model.n_samples(), model.par);
    let wl = model.layer(theta, l).subcols(0, n_in);
    let d = (!model.activations[l - 1].is_identity()).then(|| derivs[l - 1].as_slice());
    if thin_product(
        Strided::new(&mut y[..n_in * m], n_in, n_in),
        wl.transpose(),
        zbar,
        d,
        par,
    ) {
        return;
    }
    gemm(
        view_mut(y, n_in, m),
        Accum::Replace,
        wl.transpose(),
        zbar,
        par,
    );
    if !model.activations[l - 1].is_identity() {
        mul_by(&mut y[..n_in * m], &derivs[l - 1], par);
    }
}

impl<'a> MlpLinearization<'a> {
    /// One forward pass at θ (length already checked), caching what the products need.
    pub(super) fn new(model: &'a Mlp, theta: &[f64]) -> Self {
        let (m, w, nl) = (model.n_samples(), &model.widths, model.n_layers());
        let mut ws = model.workspace.take(model);
        ws.theta.copy_from_slice(theta);
        ws.deltas_ready = false;
        for l in 0..nl {
            let n_out = w[l + 1];
            let (done, rest) = ws.acts.split_at_mut(l);
            let (target, ld) = match rest.first_mut() {
                Some(a) => (a.as_mut_slice(), 2 * n_out + 1),
                None => (ws.outputs.as_mut_slice(), n_out),
            };
            let z = MatMut::from_column_major_slice_with_stride_mut(target, n_out, m, ld);
            let input = layer_input(model, done, l);
            gemm(z, Accum::Replace, model.layer(theta, l), input, model.par);
            let act = model.activations[l];
            activate(
                act,
                Strided::new(target, ld, n_out),
                Some(&mut ws.derivs[l]),
                model.par,
            );
        }
        for (l, t) in ws.acts_t.iter_mut().enumerate() {
            let input = layer_input(model, &ws.acts, l);
            view_mut(t, m, w[l] + 1).copy_from(input.transpose());
        }
        let mut lin = Self { model, ws };
        if let Some(mut jac) = lin.ws.dense.take() {
            super::jacobian::dense_jacobian(&mut lin, jac.as_mut());
            lin.ws.dense = Some(jac);
        }
        lin
    }

    /// `out = J t` by layers: per layer one GEMM and one fused derivative multiply.
    fn jvp_layers(&mut self, t: &[f64], out: &mut [f64]) {
        let model = self.model;
        let (m, par, nl) = (model.n_samples(), model.par, model.n_layers());
        let z = &mut self.ws.bufs[0];
        for l in 0..nl {
            let (n_in, n_out) = (model.widths[l], model.widths[l + 1]);
            let last = l + 1 == nl;
            let d = &self.ws.derivs[l];
            let d = (!model.activations[l].is_identity()).then_some(d.as_slice());
            if l == 0 {
                // A thin first layer: σ' ⊙ ([Ẇ_0|ḃ_0]·[x; 1]) in one pass.
                let (dst, ld) = match last {
                    true => (&mut out[..], n_out),
                    false => (&mut self.ws.acts[0][n_out + 1..], 2 * n_out + 1),
                };
                let (dt, x) = (model.layer(t, 0), model.inputs.as_ref());
                if thin_product(Strided::new(dst, ld, n_out), dt, x, d, par) {
                    continue;
                }
            }
            let target: &mut [f64] = if last { &mut *out } else { &mut *z };
            let zl = view_mut(target, n_out, m);
            if l == 0 {
                gemm(
                    zl,
                    Accum::Replace,
                    model.layer(t, 0),
                    model.inputs.as_ref(),
                    par,
                );
            } else {
                // [Ẇ_l | ḃ_l | W_l] · [a_l; 1; ȧ_l]: tangent and weight term in one GEMM.
                let k = 2 * n_in + 1;
                let lhs = &mut self.ws.lhs[..n_out * k];
                let split = n_out * (n_in + 1);
                lhs[..split].copy_from_slice(&t[model.layer_range(l)]);
                lhs[split..].copy_from_slice(&self.ws.theta[model.layer_range(l)][..n_out * n_in]);
                let rhs = view(&self.ws.acts[l - 1], k, m);
                gemm(zl, Accum::Replace, view(lhs, n_out, k), rhs, par);
            }
            if last {
                if let Some(d) = d {
                    mul_by(&mut out[..n_out * m], d, par);
                }
            } else {
                // ȧ_{l+1} = σ' ⊙ ż_{l+1}, straight into the rows the next GEMM reads.
                let dst = &mut self.ws.acts[l][n_out + 1..];
                mul_into(
                    Strided::new(dst, 2 * n_out + 1, n_out),
                    &z[..n_out * m],
                    d,
                    par,
                );
            }
        }
    }

    /// `out = Jᵀ s` by layers: per layer the gradient GEMM `z̄ [a; 1]ᵀ`, and below the top
    /// the GEMM `Wᵀ z̄` and the derivative multiply.
    fn vjp_layers(&mut self, s: &[f64], out: &mut [f64]) {
        let model = self.model;
        let (m, par, nl) = (model.n_samples(), model.par, model.n_layers());
        let [x, y] = &mut self.ws.bufs;
        let (mut x, mut y) = (x, y);
        let q = model.widths[nl];
        // z̄_L = σ' ⊙ s, or s itself for the identity (no copy).
        let mut in_s = model.activations[nl - 1].is_identity();
        if !in_s {
            mul_into(Strided::new(x, q, q), s, Some(&self.ws.derivs[nl - 1]), par);
        }
        for l in (0..nl).rev() {
            let (n_in, n_out) = (model.widths[l], model.widths[l + 1]);
            let input_t = view(&self.ws.acts_t[l], m, n_in + 1);
            let zbar = if in_s {
                view(s, n_out, m)
            } else {
                view(x, n_out, m)
            };
            let g = view_mut(&mut out[model.layer_range(l)], n_out, n_in + 1);
            gemm(g, Accum::Replace, zbar, input_t, par);
            if l > 0 {
                let net = NetAt {
                    model,
                    theta: &self.ws.theta,
                    derivs: &self.ws.derivs,
                };
                back_through(net, l, zbar, y);
                std::mem::swap(&mut x, &mut y);
                in_s = false;
            }
        }
    }

    /// Applies `f` to each column of `t` into the same column of `out` (which must be
    /// column-major); a strided input column is copied first.
    fn by_columns(&mut self, t: MatRef<'_, f64>, mut out: MatMut<'_, f64>, f: ColumnProduct<'a>) {
        let mut tmp = Vec::new();
        for j in 0..t.ncols() {
            let col = t.col(j);
            let tj: &[f64] = match col.try_as_col_major() {
                Some(c) => c.as_slice(),
                None => {
                    tmp.clear();
                    tmp.extend(col.iter().copied());
                    &tmp
                }
            };
            f(self, tj, col_slice_mut(out.rb_mut(), j));
        }
    }

    /// `J` as a matrix, when held.
    fn dense(&self) -> Option<MatRef<'_, f64>> {
        self.ws.dense.as_ref().map(Mat::as_ref)
    }

    fn jvp_one(&mut self, t: &[f64], out: &mut [f64]) {
        match self.dense() {
            Some(j) => dense_product(j, t, out),
            None => self.jvp_matrix_free(t, out),
        }
    }

    fn vjp_one(&mut self, s: &[f64], out: &mut [f64]) {
        match self.dense() {
            Some(j) => dense_product(j.transpose(), s, out),
            None => self.vjp_matrix_free(s, out),
        }
    }

    /// Whether the output is scalar, so that products go through the sensitivities `δ`
    /// (`mlp/sensitivity.rs`: half the GEMM flops of the tangent passes).
    pub(super) fn scalar_output(&self) -> bool {
        self.model.widths[self.model.n_layers()] == 1
    }

    /// Computes the sensitivities `δ` once per linearisation (scalar output only).
    pub(super) fn ensure_deltas(&mut self) {
        super::sensitivity::ensure_deltas(self.model, &mut self.ws);
    }

    /// `out = J t` without `J`: through `δ` for a scalar output, else by layers.
    fn jvp_matrix_free(&mut self, t: &[f64], out: &mut [f64]) {
        if !self.scalar_output() {
            return self.jvp_layers(t, out);
        }
        self.ensure_deltas();
        let (m, par) = (self.model.n_samples(), self.model.par);
        let (cache, [z, _]) = Cached::with_bufs(self.model, &mut self.ws);
        jvp_cols(cache.chunk(0, m), t, z, out, par);
    }

    /// `out = Jᵀ s` without `J`: through `δ` for a scalar output, else by layers.
    fn vjp_matrix_free(&mut self, s: &[f64], out: &mut [f64]) {
        if !self.scalar_output() {
            return self.vjp_layers(s, out);
        }
        self.ensure_deltas();
        let (m, par) = (self.model.n_samples(), self.model.par);
        let (cache, [e, _]) = Cached::with_bufs(self.model, &mut self.ws);
        vjp_cols(cache.chunk(0, m), s, e, out, (Accum::Replace, par));
    }
}

/// `out = a v` for the dense path (sequential: the dense path is only taken when tiny).
fn dense_product(a: MatRef<'_, f64>, v: &[f64], out: &mut [f64]) {
    crate::linalg::matmul_then_scalar(
        ColMut::from_slice_mut(out).as_mat_mut(),
        Accum::Replace,
        a,
        ColRef::from_slice(v).as_mat(),
        Par::Seq,
    );
}

impl Linearization for MlpLinearization<'_> {
    fn n_params(&self) -> usize {
        self.ws.theta.len()
    }

    fn outputs(&self) -> &[f64] {
        &self.ws.outputs
    }

    fn jvp(&mut self, t: &[f64], out: &mut [f64]) {
        assert_eq!(
            t.len(),
            self.ws.theta.len(),
            "natgrad: Mlp jvp tangent length"
        );
        self.jvp_one(t, out);
    }

    fn vjp(&mut self, s: &[f64], out: &mut [f64]) {
        assert_eq!(
            s.len(),
            self.ws.outputs.len(),
            "natgrad: Mlp vjp cotangent length"
        );
        self.vjp_one(s, out);
    }

    fn jvp_block(&mut self, t: MatRef<'_, f64>, out: MatMut<'_, f64>) {
        match self.dense() {
            Some(j) => matmul(out, Accum::Replace, j, t, 1.0, Par::Seq),
            None => self.by_columns(t, out, Self::jvp_matrix_free),
        }
    }

    fn vjp_block(&mut self, s: MatRef<'_, f64>, out: MatMut<'_, f64>) {
        match self.dense() {
            Some(j) => matmul(out, Accum::Replace, j.transpose(), s, 1.0, Par::Seq),
            None => self.by_columns(s, out, Self::vjp_matrix_free),
        }
    }

    /// Sample-chunked and fused (`mlp/fused.rs`): per chunk of samples the tangent through
    /// every layer, `w` and the backward pass while the chunk is in cache, the chunks'
    /// parameter-space sums added in a fixed order. Whole-batch jvp → `w` → vjp when the
    /// chunk is the whole batch ([`Mlp::gram_chunk`]) or the linearisation holds `J`.
    fn gram_product(&mut self, w: &[f64], t: &[f64], scratch: &mut [f64], out: &mut [f64]) {
        let (n, p) = (self.ws.outputs.len(), self.ws.theta.len());
        assert!(
            t.len() == p && out.len() == p && w.len() == n && scratch.len() == n,
            "natgrad: Mlp gram_product lengths"
        );
        super::fused::gram_product(self, w, t, scratch, out);
    }

    /// One sample-chunked pass for all `k` tangents (`mlp/fused_block.rs`): for a scalar
    /// output the chunk's GEMMs are `k` times as tall; other widths run each tangent's
    /// chunk pass while the chunk is in cache; networks too wide to stack two tangents
    /// (`p > 2¹⁶`) take `k` single fused products. Unfused `jvp_block` → `w` → `vjp_block`
    /// when the chunk is the whole batch ([`Mlp::gram_chunk`]) or the linearisation
    /// holds `J` (two GEMMs).
    fn gram_product_block(
        &mut self,
        w: &[f64],
        t: MatRef<'_, f64>,
        scratch: MatMut<'_, f64>,
        out: MatMut<'_, f64>,
    ) {
        let (n, p, k) = (self.ws.outputs.len(), self.ws.theta.len(), t.ncols());
        assert!(
            w.len() == n
                && t.nrows() == p
                && (out.nrows(), out.ncols()) == (p, k)
                && (scratch.nrows(), scratch.ncols()) == (n, k),
            "natgrad: Mlp gram_product_block shapes"
        );
        if self.model.gram_chunk() >= self.model.n_samples() || self.holds_jacobian() {
            return crate::model::unfused_gram_block(self, w, t, scratch, out);
        }
        if super::fused_block::max_batch(self.model) < 2 {
            // Too wide to stack: one fused product per tangent.
            let (mut scratch, mut out, mut tj) = (scratch, out, vec![0.0; p]);
            for j in 0..k {
                tj.iter_mut()
                    .zip(t.col(j).iter())
                    .for_each(|(a, b)| *a = *b);
                let sj = col_slice_mut(scratch.rb_mut(), 0);
                self.gram_product(w, &tj, sj, col_slice_mut(out.rb_mut(), j));
            }
            return;
        }
        super::fused_block::gram_product_block(self, w, t, out);
    }

    /// Supported for any output width `q` and diagonal metric `w`: one backward pass per
    /// output component `j` (cotangent `e_j` at every sample) gives the per-sample
    /// back-propagated `δ`, and `diag(Jᵀ diag(w) J)` of layer `l` is the GEMM of squares
    /// `Σ_j (w_j ⊙ δ_j²) ([a_l; 1]²)ᵀ`. Cost: `q` vjps.
    ///
    /// A scalar output takes the sensitivities `δ` instead (no backward pass beyond the
    /// one `δ` costs once per linearisation), chunked like the Gram product.
    fn gram_diagonal(&mut self, w: &[f64], out: &mut [f64]) -> bool {
        if self.scalar_output() && !self.holds_jacobian() {
            self.ensure_deltas();
            super::fused::gram_diagonal(self, w, out);
        } else {
            super::gram_diag::gram_diagonal(self, w, out);
        }
        true
    }

    /// For a scalar output, `Jᵀ s` summed chunk by chunk (fixed order) and then `J`
    /// chunk by chunk, at the model's Gram chunk (`mlp/fused.rs`); otherwise vjp → jvp.
    fn sample_gram_product(&mut self, s: &[f64], scratch: &mut [f64], out: &mut [f64]) {
        let (n, p) = (self.ws.outputs.len(), self.ws.theta.len());
        assert!(
            s.len() == n && out.len() == n && scratch.len() == p,
            "natgrad: Mlp sample_gram_product lengths"
        );
        super::fused::sample_gram_product(self, s, scratch, out);
    }

    /// Exact Kronecker factors for a scalar output, a per-output sum for `q > 1`: one GEMM
    /// per layer for `A`, `q` backward passes for `B` (see `mlp/kfac.rs`).
    fn kfac_factors(&mut self, w: &[f64]) -> Option<Vec<crate::model::KfacFactors>> {
        Some(super::kfac::kfac_factors(self, w))
    }

    /// From `q` backward passes, `O(q·m·p)` (see `mlp/jacobian.rs`); a copy when the
    /// linearisation already holds `J`.
    fn dense_jacobian(&mut self) -> Option<Mat<f64>> {
        if let Some(j) = self.dense() {
            return Some(j.to_owned());
        }
        let mut jac = Mat::zeros(self.ws.outputs.len(), self.ws.theta.len());
        super::jacobian::dense_jacobian(self, jac.as_mut());
        Some(jac)
    }
}

impl Drop for MlpLinearization<'_> {
    /// Hands the buffers to the model for its next linearisation.
    fn drop(&mut self) {
        self.model.workspace.put(std::mem::take(&mut self.ws));
    }
}

/// The pieces [`super::gram_diag`], [`super::kfac`] and [`super::fused`] need.
impl<'a> MlpLinearization<'a> {
    /// The linearised model.
    pub(super) fn model(&self) -> &'a Mlp {
        self.model
    }

    /// Whether this linearisation holds `J` (the dense path of tiny networks).
    pub(super) fn holds_jacobian(&self) -> bool {
        self.ws.dense.is_some()
    }

    /// The buffers.
    pub(super) fn workspace_mut(&mut self) -> &mut Workspace {
        &mut self.ws
    }

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
            &self.ws.theta,
            &self.ws.acts,
            &self.ws.derivs,
            &mut self.ws.bufs,
        )
    }
}
