//! The fused, sample-chunked Gram product `G t = Σ_c J_cᵀ W_c J_c t` of an [`Mlp`] for a
//! diagonal metric `W = diag(w)` (docs/math.md §2).
//!
//! Samples do not interact, so the samples `0 … m−1` are cut into chunks of `c` columns
//! and, for each chunk, the forward tangent through every layer, the metric weights and
//! the backward pass run back to back while that chunk's activations, tangents and
//! cotangents are in cache; the chunk's parameter-space contribution `J_cᵀ W_c J_c t` is
//! accumulated by the weight-gradient GEMMs themselves (`Accum::Add`). The whole-batch
//! path instead writes every layer's `m`-wide tangent to memory in the jvp and reads it
//! back in the vjp.
//!
//! **Determinism.** The chunks are grouped into at most [`MAX_GROUPS`] groups of
//! consecutive chunks, a number fixed by `m` and `c` alone. Each group runs its chunks in
//! order, sequentially (faer GEMMs with `Par::Seq`), into its own parameter-space sum —
//! group 0 straight into the output — and the group sums are added in group order. The
//! groups run in parallel on rayon's threads, but no sum depends on which thread ran
//! what, so 1 and 2 threads give bitwise identical products (`tests/gram_fused.rs`).
//!
//! **Chunk size** ([`auto_chunk`]): as many samples as keep one chunk's working set —
//! `[a_l; 1]`, `[a_l; 1]ᵀ`, `σ'_l`, the tangent and two cotangent blocks — within
//! [`CHUNK_BYTES`]; networks whose parameters alone exceed [`MAX_CHUNKED_PARAMS`] run the
//! whole batch as one chunk (the whole-batch products, parallel inside faer's GEMMs),
//! since every chunk adds its `p`-sized weight gradient and the wide GEMMs already run at
//! the GEMM rate. The constants were chosen by measurement (docs/performance.md).

use super::linearization::{view, view_mut, MlpLinearization};
use super::pointwise::{gemm, mul_by, thin_product};
use super::Mlp;
use crate::model::{Linearization, Model};
use faer::{Accum, MatRef, Par};
use rayon::prelude::*;

/// Most groups of chunks (parallel tasks, each with its own `p`-vector sum).
pub(super) const MAX_GROUPS: usize = 8;
/// Bytes of one chunk's working set targeted by [`auto_chunk`] (half of a 1 MiB L2).
pub(super) const CHUNK_BYTES: usize = 1 << 19;
/// Above this many parameters the product runs on the whole batch (one chunk).
pub(super) const MAX_CHUNKED_PARAMS: usize = 1 << 16;

/// The chunk size for `model` (see the [module docs](self)): `m` for wide networks,
/// otherwise the largest multiple of 8 samples whose working set fits [`CHUNK_BYTES`]
/// (at least 8, at most `m`).
pub(super) fn auto_chunk(model: &Mlp) -> usize {
    let (w, m) = (&model.widths, model.n_samples());
    if model.n_params() > MAX_CHUNKED_PARAMS {
        return m;
    }
    // Per sample: [a_l; 1] and its sample-major copy, σ'_l, tangent, two cotangents.
    let per_sample: usize = w
        .windows(2)
        .map(|l| 2 * (l[0] + 1) + 4 * l[1])
        .sum::<usize>();
    let c = CHUNK_BYTES / (8 * per_sample.max(1));
    (c / 8 * 8).clamp(8, m.max(8)).min(m)
}

/// Scratch of one group: the hidden tangents `ȧ_l` (`n_l × c`, `l = 1 … L−1`) and two
/// `max n_l × c` blocks (`ż`, then the cotangents `z̄` ping-pong).
#[derive(Debug, Default)]
pub(super) struct GroupScratch {
    tangents: Vec<Vec<f64>>,
    bufs: [Vec<f64>; 2],
}

/// The fused product's buffers: one [`GroupScratch`] per group and a `p`-vector sum for
/// every group but the first. Allocated on the first chunked product, kept with the
/// linearisation's workspace.
#[derive(Debug, Default)]
pub(super) struct FusedScratch {
    groups: Vec<GroupScratch>,
    sums: Vec<Vec<f64>>,
    chunk: usize,
}

impl FusedScratch {
    /// Sizes the buffers for `groups` groups of chunks of `c` samples.
    fn ensure(&mut self, model: &Mlp, groups: usize, c: usize) {
        let (w, nl, p) = (&model.widths, model.n_layers(), model.n_params());
        if self.chunk != c || self.groups.len() != groups {
            let nmax = w[1..].iter().copied().max().unwrap_or(1);
            self.groups = (0..groups)
                .map(|_| GroupScratch {
                    tangents: (1..nl).map(|l| vec![0.0; w[l] * c]).collect(),
                    bufs: [vec![0.0; nmax * c], vec![0.0; nmax * c]],
                })
                .collect();
            self.chunk = c;
        }
        self.sums.resize_with(groups.saturating_sub(1), Vec::new);
        self.sums.iter_mut().for_each(|s| s.resize(p, 0.0));
    }
}

/// What every chunk reads: the cached forward pass, `t` and `w`.
struct Shared<'s> {
    model: &'s Mlp,
    theta: &'s [f64],
    acts: &'s [Vec<f64>],
    acts_t: &'s [Vec<f64>],
    derivs: &'s [Vec<f64>],
    w: &'s [f64],
    t: &'s [f64],
}

impl Shared<'_> {
    /// `σ'_l` on the columns `j0 … j0+c` (`None` for the identity).
    fn deriv(&self, l: usize, j0: usize, c: usize) -> Option<&[f64]> {
        let n = self.model.widths[l + 1];
        (!self.model.activations[l].is_identity()).then(|| &self.derivs[l][n * j0..n * (j0 + c)])
    }

    /// `[a_l; 1]` on the columns `j0 … j0+c`, `(n_l + 1) × c`.
    fn input(&self, l: usize, j0: usize, c: usize) -> MatRef<'_, f64> {
        let model = self.model;
        if l == 0 {
            return model.inputs.as_ref().subcols(j0, c);
        }
        let n = model.widths[l];
        let ld = 2 * n + 1;
        MatRef::from_column_major_slice_with_stride(&self.acts[l - 1][ld * j0..], n + 1, c, ld)
    }

    /// `[a_l; 1]ᵀ` on the rows `j0 … j0+c`, `c × (n_l + 1)` (contiguous columns).
    fn input_t(&self, l: usize, j0: usize, c: usize) -> MatRef<'_, f64> {
        let m = self.model.n_samples();
        let n = self.model.widths[l];
        MatRef::from_column_major_slice_with_stride(&self.acts_t[l][j0..], c, n + 1, m)
    }
}

/// `out = Jᵀ diag(w) J t` (see the [module docs](self)); `scratch` (length `n`) is used
/// by the whole-batch path only.
pub(super) fn gram_product(
    lin: &mut MlpLinearization<'_>,
    w: &[f64],
    t: &[f64],
    scratch: &mut [f64],
    out: &mut [f64],
) {
    let model = lin.model();
    let m = model.n_samples();
    let c = model.gram_chunk();
    if c >= m || lin.holds_jacobian() {
        lin.jvp(t, scratch);
        scratch.iter_mut().zip(w).for_each(|(s, w)| *s *= w);
        lin.vjp(scratch, out);
        return;
    }
    let n_chunks = m.div_ceil(c);
    let per_group = n_chunks.div_ceil(n_chunks.min(MAX_GROUPS));
    let groups = n_chunks.div_ceil(per_group);
    let (fused, sh) = lin.fused_parts(w, t);
    fused.ensure(model, groups, c);
    let FusedScratch {
        groups: scratch_g,
        sums,
        ..
    } = fused;
    let targets = std::iter::once(&mut *out).chain(sums.iter_mut().map(Vec::as_mut_slice));
    let mut tasks: Vec<_> = targets.zip(scratch_g.iter_mut()).enumerate().collect();
    let run = |(g, (target, sc)): &mut (usize, (&mut [f64], &mut GroupScratch))| {
        let first = *g * per_group;
        let last = ((*g + 1) * per_group).min(n_chunks);
        for k in first..last {
            let j0 = k * c;
            let accum = if k == first {
                Accum::Replace
            } else {
                Accum::Add
            };
            chunk_product(&sh, j0, c.min(m - j0), sc, target, accum);
        }
    };
    match model.par {
        Par::Seq => tasks.iter_mut().for_each(run),
        _ => tasks.par_iter_mut().for_each(run),
    }
    drop(tasks);
    // The group sums in group order: a fixed order, whatever ran where.
    for s in sums.iter() {
        out.iter_mut().zip(s).for_each(|(o, s)| *o += s);
    }
}

/// `target (=|+=) J_cᵀ W_c J_c t` for the chunk of `c` samples from column `j0`: the
/// tangent through every layer, `W_c`, the backward pass, all on `c`-wide blocks.
fn chunk_product(
    sh: &Shared<'_>,
    j0: usize,
    c: usize,
    sc: &mut GroupScratch,
    target: &mut [f64],
    accum: Accum,
) {
    let model = sh.model;
    let (w, nl) = (&model.widths, model.n_layers());
    let q = w[nl];
    let [zb, yb] = &mut sc.bufs;
    // Forward tangent: ż_{l+1} = Θ̇_l [a_l; 1] + W_l ȧ_l, ȧ_{l+1} = σ'_l ⊙ ż_{l+1}.
    for l in 0..nl {
        let (n_in, n_out) = (w[l], w[l + 1]);
        let last = l + 1 == nl;
        let (done, rest) = sc.tangents.split_at_mut(l);
        let dst: &mut [f64] = match last {
            true => &mut zb[..n_out * c],
            false => &mut rest[0][..n_out * c],
        };
        // The top layer's σ' is applied with the weights below.
        let d = (!last).then(|| sh.deriv(l, j0, c)).flatten();
        let (dt, input) = (model.layer(sh.t, l), sh.input(l, j0, c));
        if l == 0 && thin_product(dst, n_out, dt, input, d, Par::Seq) {
            continue;
        }
        gemm(view_mut(dst, n_out, c), Accum::Replace, dt, input, Par::Seq);
        if l > 0 {
            let wl = model.layer(sh.theta, l).subcols(0, n_in);
            let tangent = view(&done[l - 1], n_in, c);
            gemm(view_mut(dst, n_out, c), Accum::Add, wl, tangent, Par::Seq);
        }
        if let Some(d) = d {
            mul_by(dst, d, Par::Seq);
        }
    }
    // The metric, with the top layer's derivative on both sides: z̄_L = σ' ⊙ w ⊙ σ' ⊙ ż_L.
    let (zl, wc) = (&mut zb[..q * c], &sh.w[q * j0..q * (j0 + c)]);
    match sh.deriv(nl - 1, j0, c) {
        Some(d) => zl
            .iter_mut()
            .zip(wc.iter().zip(d))
            .for_each(|(z, (w, d))| *z *= w * d * d),
        None => zl.iter_mut().zip(wc).for_each(|(z, w)| *z *= w),
    }
    // Backward: Θ̄_l (+)= z̄_{l+1} [a_l; 1]ᵀ, z̄_l = σ'_{l-1} ⊙ (W_lᵀ z̄_{l+1}).
    let (mut x, mut y) = (zb, yb);
    for l in (0..nl).rev() {
        let (n_in, n_out) = (w[l], w[l + 1]);
        let zbar = view(x, n_out, c);
        let g = view_mut(&mut target[model.layer_range(l)], n_out, n_in + 1);
        gemm(g, accum, zbar, sh.input_t(l, j0, c), Par::Seq);
        if l > 0 {
            let wt = model.layer(sh.theta, l).subcols(0, n_in).transpose();
            let d = sh.deriv(l - 1, j0, c);
            let dst = &mut y[..n_in * c];
            if !thin_product(dst, n_in, wt, zbar, d, Par::Seq) {
                gemm(view_mut(dst, n_in, c), Accum::Replace, wt, zbar, Par::Seq);
                if let Some(d) = d {
                    mul_by(dst, d, Par::Seq);
                }
            }
            std::mem::swap(&mut x, &mut y);
        }
    }
}

/// The pieces [`gram_product`] needs from a linearisation.
impl<'a> MlpLinearization<'a> {
    fn fused_parts<'s>(
        &'s mut self,
        w: &'s [f64],
        t: &'s [f64],
    ) -> (&'s mut FusedScratch, Shared<'s>) {
        let model = self.model();
        let ws = self.workspace_mut();
        let sh = Shared {
            model,
            theta: &ws.theta,
            acts: &ws.acts,
            acts_t: &ws.acts_t,
            derivs: &ws.derivs,
            w,
            t,
        };
        (&mut ws.fused, sh)
    }
}
