//! The fused, point-chunked Gram product of a residual that is linear in the channels at
//! each point (docs/math.md §2): with `r_i = g_i · c(x_i)` (`c(x_i)` the `K = q·C` output
//! channels at point `i`, `g_i` the residual's channel gradient) and weights `w_i`,
//!
//! ```text
//!   G t = Σ_i w_i ∇_θ r_i (∇_θ r_i · t) = Σ_chunks J_cᵀ W_c J_c t.
//! ```
//!
//! Points do not interact in the network, so for each chunk of points the θ-tangent of
//! every channel runs forward through all layers, the residual's metric `w_i g_i g_iᵀ`
//! is applied at each point and the cotangent runs back, while the chunk's channels are
//! in cache; the weight gradients of the chunk are accumulated. The unfused product
//! instead writes every layer's `n_l × C·m` tangent block for all points, then reads it
//! back in the vjp.
//!
//! **Determinism.** The chunks are grouped into at most [`MAX_GROUPS`] groups of
//! consecutive chunks, fixed by `m` and the chunk size alone; each group sums its chunks
//! in order into its own `p`-vector (faer GEMMs with `Par::Seq`), the groups run in
//! parallel, and the group sums are added to the output in group order. 1 and 2 threads
//! give bitwise identical products (`tests/taylor_fused.rs`).

use super::layer::col_mut;
use super::TaylorPass;
use crate::linalg::matmul_then_scalar as matmul;
use faer::prelude::ReborrowMut;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Most groups of chunks (parallel tasks, each with its own `p`-vector sum).
const MAX_GROUPS: usize = 8;
/// Bytes of one chunk's tangent blocks (`Σ_l n_l · C · c` floats) targeted by
/// [`auto_chunk`] (a quarter of a 1 MiB L2: the cached activations, derivatives and
/// pre-activations of the chunk are read beside them).
const CHUNK_BYTES: usize = 1 << 18;

/// Up to this many bytes of whole-batch tangent blocks the product runs on the whole
/// batch as one chunk (one GEMM per layer over all channels, faer's parallel GEMMs).
/// Measured (one thread, CPU time under load 7–9, a Poisson term with the Laplacian's
/// four channels): 2-32-32-1 on 1 000 points (2.1 MB) 1.55–1.6 ms unfused against
/// 1.85–2.0 ms in chunks of 32–120; 2-64-64-1 on 4 000 points (16.5 MB) 25–27 ms
/// unfused against 18–19.5 ms in chunks of 16–56 (23.5 ms at 256).
const WHOLE_BYTES: usize = 1 << 22;

/// Points per automatic chunk for `m` points of a network of `widths` carrying
/// `channels` channels: `m` when the whole batch's tangent blocks fit [`WHOLE_BYTES`],
/// otherwise the largest multiple of 8 whose tangent blocks fit [`CHUNK_BYTES`], at
/// least 8.
pub(super) fn auto_chunk(widths: &[usize], channels: usize, m: usize) -> usize {
    let per_point: usize = widths[1..].iter().sum::<usize>() * channels.max(1);
    if m * per_point * 8 <= WHOLE_BYTES {
        return m;
    }
    let c = CHUNK_BYTES / (8 * per_point.max(1));
    (c / 8 * 8).max(8)
}

/// A residual linear in the channels at each point, with its weights: `r_i = g_i · c(x_i)`
/// where `g_i` is row `i` of `grad` (`m × K` row-major, `K = q·C`, entry `k = c·q + o` for
/// channel `c` of output `o`), weighted by `weights[i]` in the metric.
#[derive(Debug, Clone, Copy)]
pub struct ChannelFunctional<'a> {
    /// `∂r_i/∂c`, `m × K` row-major.
    pub grad: &'a [f64],
    /// The metric's weight `w_i` of each residual (`m`).
    pub weights: &'a [f64],
}

impl TaylorPass {
    /// `out += Σ_i w_i ∇_θ r_i (∇_θ r_i · t)` for the residual `f` (`G t = Σ_c J_cᵀ W_c J_c
    /// t`, docs/math.md §2): for each chunk of [`super::TaylorMlp::gram_chunk`] points the
    /// channels' θ-tangent runs forward, the metric `w_i g_i g_iᵀ` is applied at each point
    /// and the cotangent runs back while the chunk is in cache; chunks grouped in a fixed
    /// order (1 and 2 threads bitwise equal). The result is
    /// equal to [`TaylorPass::jvp`] → contraction with `g_i`, `w_i`, `g_i` →
    /// [`TaylorPass::vjp`] up to rounding. `t` and `out` have length `p`; `work` is
    /// [`TaylorPass::work_buffers`] (the first group of chunks runs in it).
    ///
    /// # Panics
    /// If `t` or `out` is not of length `p`, or `f` does not have `m` rows of `K` entries.
    pub fn functional_gram_product(
        &self,
        t: &[f64],
        f: ChannelFunctional<'_>,
        work: &mut [Mat<f64>],
        out: &mut [f64],
    ) {
        let (m, p) = (self.m, self.net.n_params());
        let k = self.out.nrows() * self.set.len();
        assert!(
            t.len() == p && out.len() == p && f.grad.len() == m * k && f.weights.len() == m,
            "natgrad: TaylorPass::functional_gram_product lengths"
        );
        let c = self.net.gram_chunk(m, self.set.len());
        let n_chunks = m.div_ceil(c);
        let per_group = n_chunks.div_ceil(n_chunks.clamp(1, MAX_GROUPS));
        let groups = n_chunks.div_ceil(per_group.max(1));
        // One chunk: faer's own parallel GEMMs (their sums do not depend on the threads).
        let par = if n_chunks == 1 { self.par } else { Par::Seq };
        let run = |g: usize, bufs: &mut [Mat<f64>]| {
            let mut sum = vec![0.0; p];
            for ch in g * per_group..((g + 1) * per_group).min(n_chunks) {
                let j0 = ch * c;
                self.chunk_product((t, f), (j0, c.min(m - j0)), bufs, (&mut sum, par));
            }
            sum
        };
        // Group 0 in the caller's buffers, the others in their own.
        let others = |g: usize| run(g, &mut self.chunk_buffers(c));
        let (first, rest): (Vec<f64>, Vec<Vec<f64>>) = match self.par {
            Par::Seq => (run(0, work), (1..groups).map(others).collect()),
            _ => rayon::join(
                || run(0, work),
                || (1..groups).into_par_iter().map(others).collect(),
            ),
        };
        for s in std::iter::once(&first).chain(&rest) {
            out.iter_mut().zip(s).for_each(|(o, s)| *o += s);
        }
    }

    /// One `n_l × C·c` block per layer `l = 1 … L` for a chunk of `c` points.
    fn chunk_buffers(&self, c: usize) -> Vec<Mat<f64>> {
        let cc = self.set.len() * c;
        self.net.widths[1..]
            .iter()
            .map(|&n| Mat::zeros(n, cc))
            .collect()
    }

    /// Columns `j0 … j0+c` of every channel of `zs[l]`, channel `ch` as a view.
    fn input_cols(&self, l: usize, ch: usize, (j0, c): (usize, usize)) -> MatRef<'_, f64> {
        self.zs[l].as_ref().subcols(ch * self.m + j0, c)
    }

    /// `dst (=|+=) a · [z_l]_c` (`transpose`: `a · [z_l]_cᵀ`) over the channels of the
    /// chunk `j0 … j0+c` of `zs[l]`: one GEMM per channel, or one over all channels for
    /// the whole batch.
    fn channel_gemm(
        &self,
        (mut dst, accum): (MatMut<'_, f64>, Accum),
        a: MatRef<'_, f64>,
        (l, j0, c): (usize, usize, usize),
        (transpose, par): (bool, Par),
    ) {
        if c == self.m {
            let z = self.zs[l].as_ref();
            let z = if transpose { z.transpose() } else { z };
            return matmul(dst, accum, a, z, par);
        }
        for ch in 0..self.set.len() {
            let z = self.input_cols(l, ch, (j0, c));
            match transpose {
                true => matmul(
                    dst.rb_mut(),
                    accum,
                    a.subcols(ch * c, c),
                    z.transpose(),
                    par,
                ),
                false => matmul(dst.rb_mut().subcols_mut(ch * c, c), accum, a, z, par),
            }
        }
    }

    /// `sum += J_cᵀ W_c J_c t` on the points `j0 … j0+c`; `bufs` from
    /// [`TaylorPass::chunk_buffers`] (at least `c` points wide); GEMMs with `par`.
    fn chunk_product(
        &self,
        (t, f): (&[f64], ChannelFunctional<'_>),
        (j0, c): (usize, usize),
        bufs: &mut [Mat<f64>],
        (sum, par): (&mut [f64], Par),
    ) {
        let (n_ch, nl) = (self.set.len(), self.zs.len());
        // Forward: ȧ_l = Ẇ z_l + W ż_l (+ ḃ on the value channel), ż_{l+1} = tangent(ȧ_l).
        for l in 0..nl {
            let (dw, db) = self.net.layer(t, l);
            let (w, _) = self.net.layer(&self.theta, l);
            let (prev, rest) = bufs.split_at_mut(l);
            let mut dot = rest[0].as_mut().subcols_mut(0, n_ch * c);
            let into = (dot.rb_mut(), Accum::Replace);
            self.channel_gemm(into, dw, (l, j0, c), (false, par));
            if l > 0 {
                let below = prev[l - 1].as_ref().subcols(0, n_ch * c);
                matmul(dot.rb_mut(), Accum::Add, w, below, par);
            }
            for i in 0..c {
                col_mut(dot.rb_mut(), i)
                    .iter_mut()
                    .zip(db)
                    .for_each(|(a, b)| *a += b);
            }
            if l + 1 < nl {
                self.hidden[l].tangent_cols(dot, j0);
            }
        }
        apply_metric(bufs[nl - 1].as_mut().subcols_mut(0, n_ch * c), f, j0);
        // Backward: Θ̄_l += Ā_l z_lᵀ (per channel), Ā_{l−1} = cotangent(W_lᵀ Ā_l).
        let layout = self.net.layout();
        for l in (0..nl).rev() {
            let (ni, no) = (self.net.widths[l], self.net.widths[l + 1]);
            let (wo, bo) = layout[l];
            let (below, rest) = bufs.split_at_mut(l);
            let bar = rest[0].as_ref().subcols(0, n_ch * c);
            let gw = MatMut::from_column_major_slice_mut(&mut sum[wo..wo + ni * no], no, ni);
            self.channel_gemm((gw, Accum::Add), bar, (l, j0, c), (true, par));
            for (u, gb) in sum[bo..bo + no].iter_mut().enumerate() {
                *gb += (0..c).map(|i| bar[(u, i)]).sum::<f64>();
            }
            if l > 0 {
                let (w, _) = self.net.layer(&self.theta, l);
                let mut zbar = below[l - 1].as_mut().subcols_mut(0, n_ch * c);
                matmul(zbar.rb_mut(), Accum::Replace, w.transpose(), bar, par);
                self.hidden[l - 1].cotangent_cols(zbar, j0);
            }
        }
    }
}

/// The residual's metric at each point of the chunk, in place on the top block (`q × C·c`,
/// channel-major): `v ↦ w_i g_i (g_i · v)` with `v` the point's `K = q·C` channel values.
fn apply_metric(mut top: MatMut<'_, f64>, f: ChannelFunctional<'_>, j0: usize) {
    let q = top.nrows();
    let c = top.ncols() / (f.grad.len() / f.weights.len() / q);
    let k = f.grad.len() / f.weights.len();
    for i in 0..c {
        let g = &f.grad[(j0 + i) * k..(j0 + i + 1) * k];
        let dot: f64 = (0..k)
            .map(|kk| g[kk] * top[(kk % q, (kk / q) * c + i)])
            .sum();
        let s = f.weights[j0 + i] * dot;
        for (kk, gk) in g.iter().enumerate() {
            top[(kk % q, (kk / q) * c + i)] = s * gk;
        }
    }
}
