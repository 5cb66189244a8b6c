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
//! A scalar-output network runs each chunk through its sensitivities `δ`
//! (`mlp/sensitivity.rs`: one GEMM per layer for `J_c t`, one for `J_cᵀ s`); other output
//! widths through the tangent and back-propagation passes. The same chunked sweeps give
//! the sample-space product `J Jᵀ s` ([`sample_gram_product`]: the chunk sums of `Jᵀ s`,
//! then `J` chunk by chunk) and the Gram diagonal ([`gram_diagonal`]).
//!
//! **Chunk size** ([`auto_chunk`]): as many samples as keep one chunk's working set —
//! `[a_l; 1]`, `[a_l; 1]ᵀ`, `σ'_l`, the tangent and two cotangent blocks — within
//! [`CHUNK_BYTES`], but never fewer than [`MIN_CHUNK`] samples; networks whose parameters
//! alone exceed [`MAX_CHUNKED_PARAMS`] run the
//! whole batch as one chunk (the whole-batch products, parallel inside faer's GEMMs),
//! since every chunk adds its `p`-sized weight gradient and the wide GEMMs already run at
//! the GEMM rate. The constants were chosen by measurement (docs/performance.md).

use super::linearization::{view, view_mut, MlpLinearization};
use super::pointwise::{gemm, mul_by, thin_product, Strided};
use super::sensitivity::{gram_diagonal_cols, jvp_cols, vjp_cols, Cached, Chunk};
use super::workspace::Workspace;
use super::Mlp;
use crate::model::{Linearization, Model};
use faer::{Accum, Par};
use rayon::prelude::*;

/// Most groups of chunks (parallel tasks, each with its own `p`-vector sum).
pub(super) const MAX_GROUPS: usize = 8;
/// Bytes of one chunk's working set targeted by [`auto_chunk`] (half of a 1 MiB L2).
pub(super) const CHUNK_BYTES: usize = 1 << 19;
/// Above this many parameters (`2¹⁸`, 2 MiB of weights, re-read by every chunk) the
/// product runs on the whole batch (one chunk). Measured on a quiet machine
/// (`ng_step_bench --gram-only --chunk C`, docs/performance.md): at L (`p = 132 609`)
/// chunks of 64–256 samples take 25.5–25.9 ms per product against 28.6–30.8 ms for the
/// whole batch; at XL (`p = 2 103 297`) every chunk size loses (180–218 ms against 174 ms).
pub(super) const MAX_CHUNKED_PARAMS: usize = 1 << 18;
/// Fewest samples per automatic chunk: below 64 the chunk's GEMMs have too short an inner
/// dimension (at L, chunks of 8 / 16 / 32 samples take 34.4 / 29.7 / 28.0 ms per product
/// against 25.5 ms at 64).
pub(super) const MIN_CHUNK: usize = 64;

/// The chunk size for `model` (see the [module docs](self)): `m` for wide networks,
/// otherwise the largest multiple of 8 samples whose working set fits [`CHUNK_BYTES`]
/// (at least [`MIN_CHUNK`], at most `m`).
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
    (c / 8 * 8).clamp(MIN_CHUNK, m.max(MIN_CHUNK)).min(m)
}

/// Scratch of one group: the hidden tangents `ȧ_l` (`n_l × c`, `l = 1 … L−1`; output
/// widths above 1 only), two `max n_l × c` blocks (`ż`, then the cotangents `z̄`
/// ping-pong), `c` values of `J_c t` and a `c × max (n_l + 1)` block (the squares of the
/// Gram diagonal).
#[derive(Debug, Default)]
pub(super) struct GroupScratch {
    tangents: Vec<Vec<f64>>,
    bufs: [Vec<f64>; 2],
    jt: Vec<f64>,
    sq: Vec<f64>,
}

impl GroupScratch {
    /// The scratch of one group for chunks of `c` samples.
    pub(super) fn new(model: &Mlp, c: usize) -> Self {
        let (w, nl) = (&model.widths, model.n_layers());
        let nmax = w[1..].iter().copied().max().unwrap_or(1);
        let in_max = w[..nl].iter().copied().max().unwrap_or(0) + 1;
        let tangents = match w[nl] {
            1 => 1..1,
            _ => 1..nl,
        };
        Self {
            tangents: tangents.map(|l| vec![0.0; w[l] * c]).collect(),
            bufs: [vec![0.0; nmax * c], vec![0.0; nmax * c]],
            jt: vec![0.0; c],
            sq: vec![0.0; in_max * c],
        }
    }
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
        let p = model.n_params();
        if self.chunk != c || self.groups.len() != groups {
            self.groups = (0..groups).map(|_| GroupScratch::new(model, c)).collect();
            self.chunk = c;
        }
        self.sums.resize_with(groups.saturating_sub(1), Vec::new);
        self.sums.iter_mut().for_each(|s| s.resize(p, 0.0));
    }
}

/// The work of one chunk `(j0, c)` into its group's sum `target` (`accum`: the group's
/// first chunk replaces, the others add).
type ChunkFn<'f> =
    dyn Fn(&Cached<'_>, (usize, usize), &mut GroupScratch, &mut [f64], Accum) + Sync + 'f;

/// Chunks of `c` samples, grouped: `(chunks, chunks per group, groups)`, fixed by `m`
/// and `c` alone.
fn layout(m: usize, c: usize) -> (usize, usize, usize) {
    let n_chunks = m.div_ceil(c);
    let per_group = n_chunks.div_ceil(n_chunks.min(MAX_GROUPS));
    (n_chunks, per_group, n_chunks.div_ceil(per_group))
}

/// The read-only cache and the fused scratch of a workspace, borrowed apart.
fn split<'s>(model: &'s Mlp, ws: &'s mut Workspace) -> (Cached<'s>, &'s mut FusedScratch) {
    let Workspace {
        theta,
        acts,
        acts_t,
        derivs,
        fused,
        ..
    } = ws;
    let cache = Cached {
        model,
        theta,
        acts,
        acts_t,
        derivs,
    };
    (cache, fused)
}

/// `out = Σ_chunks chunk(…)`: each group runs its chunks in order into its own sum (group
/// 0 into `out`), the groups in parallel, then the group sums are added in group order —
/// a fixed order, whatever ran where.
fn sum_over_chunks(lin: &mut MlpLinearization<'_>, c: usize, out: &mut [f64], chunk: &ChunkFn) {
    let model = lin.model();
    let m = model.n_samples();
    let (n_chunks, per_group, groups) = layout(m, c);
    let (cache, fused) = split(model, lin.workspace_mut());
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
        for k in first..((*g + 1) * per_group).min(n_chunks) {
            let accum = if k == first {
                Accum::Replace
            } else {
                Accum::Add
            };
            chunk(&cache, (k * c, c.min(m - k * c)), sc, target, accum);
        }
    };
    match model.par {
        Par::Seq => tasks.iter_mut().for_each(run),
        _ => tasks.par_iter_mut().for_each(run),
    }
    drop(tasks);
    add_group_sums(out, sums, model.par);
}

/// Entries of `out` per task of [`add_group_sums`] (32 KiB, so that a block of `out`
/// stays in L1 while every group's sum is added to it).
const SUM_BLOCK: usize = 1 << 12;

/// `out += sums[0] + sums[1] + …`, each entry summed in group order, `out + s_1` first,
/// then `s_2` and so on (the same order for any blocking), block by block of `out` in
/// one pass over every sum — in parallel over the blocks when `par` allows and `p` is
/// large. At L (`p = 132 609`, 7 sums) this pass was sequential and re-read and
/// re-wrote `out` once per group.
fn add_group_sums(out: &mut [f64], sums: &[Vec<f64>], par: Par) {
    if sums.is_empty() {
        return;
    }
    let add = |(k, o): (usize, &mut [f64])| {
        for s in sums {
            let s = &s[k * SUM_BLOCK..k * SUM_BLOCK + o.len()];
            o.iter_mut().zip(s).for_each(|(o, s)| *o += s);
        }
    };
    match par {
        Par::Seq => out.chunks_mut(SUM_BLOCK).enumerate().for_each(add),
        _ if out.len() < 4 * SUM_BLOCK => out.chunks_mut(SUM_BLOCK).enumerate().for_each(add),
        _ => out.par_chunks_mut(SUM_BLOCK).enumerate().for_each(add),
    }
}

/// `out[j0 … j0+c] = J_c v` chunk by chunk (scalar output, `δ` ready), the groups of
/// [`layout`] in parallel; no sums across chunks.
fn jvp_by_chunks(lin: &mut MlpLinearization<'_>, c: usize, v: &[f64], out: &mut [f64]) {
    let model = lin.model();
    let m = model.n_samples();
    let (_, per_group, groups) = layout(m, c);
    let (cache, fused) = split(model, lin.workspace_mut());
    fused.ensure(model, groups, c);
    let mut tasks: Vec<_> = out
        .chunks_mut(per_group * c)
        .zip(fused.groups.iter_mut())
        .enumerate()
        .collect();
    let run = |(g, (o, sc)): &mut (usize, (&mut [f64], &mut GroupScratch))| {
        for (k, ok) in o.chunks_mut(c).enumerate() {
            let j0 = (*g * per_group + k) * c;
            jvp_cols(cache.chunk(j0, ok.len()), v, &mut sc.bufs[0], ok, Par::Seq);
        }
    };
    match model.par {
        Par::Seq => tasks.iter_mut().for_each(run),
        _ => tasks.par_iter_mut().for_each(run),
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
    let c = model.gram_chunk();
    if c >= model.n_samples() || lin.holds_jacobian() {
        lin.jvp(t, scratch);
        scratch.iter_mut().zip(w).for_each(|(s, w)| *s *= w);
        lin.vjp(scratch, out);
        return;
    }
    let q = model.widths[model.n_layers()];
    if q == 1 {
        lin.ensure_deltas();
        let chunk = |cache: &Cached<'_>,
                     (j0, c): (usize, usize),
                     sc: &mut GroupScratch,
                     target: &mut [f64],
                     accum: Accum| {
            let GroupScratch { bufs, jt, .. } = sc;
            let [z, e] = bufs;
            let jt = &mut jt[..c];
            jvp_cols(cache.chunk(j0, c), t, z, jt, Par::Seq);
            jt.iter_mut().zip(&w[j0..j0 + c]).for_each(|(s, w)| *s *= w);
            vjp_cols(cache.chunk(j0, c), jt, e, target, (accum, Par::Seq));
        };
        return sum_over_chunks(lin, c, out, &chunk);
    }
    let chunk = |cache: &Cached<'_>,
                 (j0, c): (usize, usize),
                 sc: &mut GroupScratch,
                 target: &mut [f64],
                 accum: Accum| {
        chunk_product(cache.chunk(j0, c), (w, t), sc, target, accum);
    };
    sum_over_chunks(lin, c, out, &chunk);
}

/// `out = J Jᵀ s` (`s`, `out ∈ Rⁿ`, `scratch ∈ Rᵖ` then holds `Jᵀ s`): for a scalar output
/// and a chunk below `m`, `Jᵀ s` summed over chunks like [`gram_product`], then `J`
/// chunk by chunk; otherwise the whole-batch vjp and jvp.
pub(super) fn sample_gram_product(
    lin: &mut MlpLinearization<'_>,
    s: &[f64],
    scratch: &mut [f64],
    out: &mut [f64],
) {
    let model = lin.model();
    let (c, m) = (model.gram_chunk(), model.n_samples());
    if c >= m || lin.holds_jacobian() || model.widths[model.n_layers()] != 1 {
        lin.vjp(s, scratch);
        lin.jvp(scratch, out);
        return;
    }
    lin.ensure_deltas();
    let chunk = |cache: &Cached<'_>,
                 (j0, c): (usize, usize),
                 sc: &mut GroupScratch,
                 target: &mut [f64],
                 accum: Accum| {
        let e = &mut sc.bufs[1];
        vjp_cols(
            cache.chunk(j0, c),
            &s[j0..j0 + c],
            e,
            target,
            (accum, Par::Seq),
        );
    };
    sum_over_chunks(lin, c, scratch, &chunk);
    jvp_by_chunks(lin, c, scratch, out);
}

/// `out = diag(Jᵀ diag(w) J)` for a scalar output (`δ` ready): the chunk sums of
/// `(w ⊙ δ_l²)([a_l; 1]²)ᵀ`, at the model's Gram chunk (the whole batch as one chunk
/// with faer's parallel GEMMs when that is `m`).
pub(super) fn gram_diagonal(lin: &mut MlpLinearization<'_>, w: &[f64], out: &mut [f64]) {
    let model = lin.model();
    let (c, m) = (model.gram_chunk(), model.n_samples());
    let par = if c >= m { model.par } else { Par::Seq };
    let chunk = |cache: &Cached<'_>,
                 (j0, c): (usize, usize),
                 sc: &mut GroupScratch,
                 target: &mut [f64],
                 accum: Accum| {
        let bufs = (&mut sc.bufs[0][..], &mut sc.sq[..]);
        let at = cache.chunk(j0, c);
        gram_diagonal_cols(at, &w[j0..j0 + c], bufs, target, (accum, par));
    };
    sum_over_chunks(lin, c, out, &chunk);
}

/// `target (=|+=) J_cᵀ W_c J_c t` for the chunk of `c` samples from column `j0` of a
/// network with `q > 1` outputs: the tangent through every layer, `W_c`, the backward
/// pass, all on `c`-wide blocks.
pub(super) fn chunk_product(
    chunk: Chunk<'_, '_>,
    (w_all, t): (&[f64], &[f64]),
    sc: &mut GroupScratch,
    target: &mut [f64],
    accum: Accum,
) {
    let Chunk { cache: sh, j0, c } = chunk;
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
        let (dt, input) = (model.layer(t, l), sh.input(l, j0, c));
        if l == 0 && thin_product(Strided::new(dst, n_out, n_out), dt, input, d, Par::Seq) {
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
    let (zl, wc) = (&mut zb[..q * c], &w_all[q * j0..q * (j0 + c)]);
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
            if !thin_product(Strided::new(dst, n_in, n_in), wt, zbar, d, Par::Seq) {
                gemm(view_mut(dst, n_in, c), Accum::Replace, wt, zbar, Par::Seq);
                if let Some(d) = d {
                    mul_by(dst, d, Par::Seq);
                }
            }
            std::mem::swap(&mut x, &mut y);
        }
    }
}
