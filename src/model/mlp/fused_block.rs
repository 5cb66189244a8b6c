//! The block Gram product `Jᵀ diag(w) J T` of an [`Mlp`] for `k` tangents `T = [t_1 … t_k]`
//! at once, sample-chunked like the single product (`mlp/fused.rs`, docs/math.md §2): the
//! `k` Gram products of a Nyström sketch in one pass over the cached activations instead
//! of `k` passes.
//!
//! **Scalar output** (through the sensitivities `δ`, `mlp/sensitivity.rs`). The tangents'
//! layer blocks `Θ̇_l^{(j)}` are stacked once into a `(k n_{l+1}) × (n_l + 1)` matrix
//! `Θ̇_l^{stack}`; per chunk of `c` samples and layer, one GEMM
//! `Z = Θ̇_l^{stack} [a_l; 1]_c` (`k` times as tall as the single product's) gives every
//! tangent's `ż`, and the column dots with `δ_l` accumulate `(J_c t_j)_i`. After the metric
//! weights, each layer's weight gradients of all `k` tangents are one GEMM
//! `E [a_l; 1]_cᵀ` with `E` the stacked `s_j(i) δ_l[:, i]`, accumulated over the chunks
//! into a stacked sum that is unstacked into the `k` columns of the result at the end.
//!
//! **Other output widths** run the single product's chunk pass (`fused::chunk_product`)
//! for each tangent while the chunk's activations are in cache.
//!
//! Networks too wide for two stacked tangents within [`STACK_BYTES`] take `k` single
//! fused products (`mlp/fused.rs`) instead.
//!
//! **Determinism.** The tangents are cut into [`batches`] fixed by `k` and the model; each batch
//! runs every chunk in order, sequentially, into its own columns (no sum across batches),
//! and the batches run in parallel on rayon's threads. Nothing depends on the thread
//! count, so 1 and 2 threads give bitwise identical blocks (`tests/gram_fused_block.rs`).

use super::fused::{chunk_product, GroupScratch};
use super::linearization::{view, view_mut, MlpLinearization};
use super::pointwise::{gemm, thin_product, Strided};
use super::sensitivity::{column_dot, Cached, Chunk};
use super::Mlp;
use crate::model::Model;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;
use std::ops::Range;

/// Most tangents carried together through a chunk (the stacked GEMMs are then at most
/// `16 n_{l+1}` rows tall).
const MAX_BATCH: usize = 16;
/// Bytes of a batch's stacked tangents and stacked sums (`2·kb·p` floats), which every
/// chunk reads and updates: the batch is cut so that they stay within this budget (twice
/// the chunk budget of the single product). Networks with fewer than two tangents per
/// batch (`p > 2¹⁶`) take `k` single fused products instead: at L (`p = 132 609`, one
/// thread, CPU time under load 7) a rank-20 block took 1 168 ms stacked against 978 ms
/// as single fused products (its products are GEMM-bound, docs/performance.md); at M
/// (`p = 4 353`) 19–20 ms against 21–24 ms.
const STACK_BYTES: usize = 1 << 21;

/// Most tangents per batch for `model` ([`MAX_BATCH`], [`STACK_BYTES`]).
pub(super) fn max_batch(model: &Mlp) -> usize {
    (STACK_BYTES / (16 * model.n_params().max(1))).min(MAX_BATCH)
}

/// The tangents `0 … k−1` cut into batches of at most `max` (at least two batches when
/// `k ≥ 2`, so that two threads have work) of balanced sizes — fixed by `k` and the model.
fn batches(k: usize, max: usize) -> Vec<Range<usize>> {
    let n = k.div_ceil(max.max(1)).max(k.min(2));
    (0..n).map(|b| b * k / n..(b + 1) * k / n).collect()
}

/// `out = Jᵀ diag(w) J T` (`T` p×k, `out` p×k with contiguous columns) for a matrix-free
/// linearisation with a Gram chunk below `m` (see the [module docs](self)).
pub(super) fn gram_product_block(
    lin: &mut MlpLinearization<'_>,
    w: &[f64],
    t: MatRef<'_, f64>,
    out: MatMut<'_, f64>,
) {
    let scalar = lin.scalar_output();
    if scalar {
        lin.ensure_deltas();
    }
    let model = lin.model();
    let c = model.gram_chunk();
    let (cache, _) = Cached::with_bufs(model, lin.workspace_mut());
    let mut cols: Vec<&mut [f64]> = out
        .col_iter_mut()
        .map(|o| {
            o.try_as_col_major_mut()
                .expect("natgrad: column-major Gram block required")
                .as_slice_mut()
        })
        .collect();
    let mut tasks: Vec<(Range<usize>, &mut [&mut [f64]])> = Vec::new();
    let mut rest = cols.as_mut_slice();
    for b in batches(t.ncols(), max_batch(model)) {
        let (head, tail) = rest.split_at_mut(b.len());
        tasks.push((b, head));
        rest = tail;
    }
    let run = |(b, o): &mut (Range<usize>, &mut [&mut [f64]])| {
        let tb = t.subcols(b.start, b.len());
        match scalar {
            true => scalar_batch(&cache, w, tb, c, o),
            false => tangent_batch(&cache, w, tb, c, o),
        }
    };
    match model.par {
        Par::Seq => tasks.iter_mut().for_each(run),
        _ => tasks.par_iter_mut().for_each(run),
    }
}

/// The chunks `(j0, c_k)` of `m` samples in order, with the accumulation of each (the
/// first replaces, the others add).
fn chunks(m: usize, c: usize) -> impl Iterator<Item = ((usize, usize), Accum)> {
    (0..m.div_ceil(c)).map(move |k| {
        let accum = if k == 0 { Accum::Replace } else { Accum::Add };
        ((k * c, c.min(m - k * c)), accum)
    })
}

/// The columns of `t` as vectors (one copy of the `p × kb` block per product).
fn owned_columns(t: MatRef<'_, f64>) -> Vec<Vec<f64>> {
    t.col_iter().map(|c| c.iter().copied().collect()).collect()
}

/// Converts between the `kb` columns of a parameter block (`cols[j]`, length `p`) and the
/// stacked layout (`stack`, `kb·p`: for each layer the `(kb n_{l+1}) × (n_l + 1)` matrix
/// whose rows `j n_{l+1} …` are tangent `j`'s `Θ_l`): `to_stack` packs, otherwise unpacks.
fn restack(model: &Mlp, stack: &mut [f64], cols: &mut [&mut [f64]], to_stack: bool) {
    let kb = cols.len();
    for l in 0..model.n_layers() {
        let (n_in, n_out, r) = (model.widths[l], model.widths[l + 1], model.layer_range(l));
        let s = &mut stack[kb * r.start..kb * r.end];
        for col in 0..=n_in {
            for (j, cj) in cols.iter_mut().enumerate() {
                let st = &mut s[(col * kb + j) * n_out..(col * kb + j + 1) * n_out];
                let cj = &mut cj[r.start + col * n_out..r.start + (col + 1) * n_out];
                match to_stack {
                    true => st.copy_from_slice(cj),
                    false => cj.copy_from_slice(st),
                }
            }
        }
    }
}

/// A batch of `kb = t.ncols()` tangents of a scalar-output network into `out` (see the
/// [module docs](self)).
fn scalar_batch(
    cache: &Cached<'_>,
    w: &[f64],
    t: MatRef<'_, f64>,
    c: usize,
    out: &mut [&mut [f64]],
) {
    let model = cache.model;
    let (kb, p, m) = (t.ncols(), model.n_params(), model.n_samples());
    let mut tstack = vec![0.0; kb * p];
    let mut tcopy = owned_columns(t);
    let mut tcols: Vec<&mut [f64]> = tcopy.iter_mut().map(Vec::as_mut_slice).collect();
    restack(model, &mut tstack, &mut tcols, true);
    let nmax = model.widths[1..].iter().copied().max().unwrap_or(1);
    let mut sums = vec![0.0; kb * p];
    let (mut z, mut jt) = (vec![0.0; kb * nmax * c], vec![0.0; kb * c]);
    for ((j0, cc), accum) in chunks(m, c) {
        let jt = &mut jt[..kb * cc];
        stacked_jvp(cache.chunk(j0, cc), (&tstack, kb), &mut z, jt);
        for jj in jt.chunks_mut(cc) {
            jj.iter_mut()
                .zip(&w[j0..j0 + cc])
                .for_each(|(s, w)| *s *= w);
        }
        stacked_vjp(cache.chunk(j0, cc), (jt, kb), &mut z, (&mut sums, accum));
    }
    restack(model, &mut sums, out, false);
}

/// `jt[j c + i] = (J t_j)_{j0 + i}` for the `kb` stacked tangents `tstack` on the chunk
/// `j0 … j0+c`; `z` holds `kb · max n_l · c` floats. Sums layer after layer, like
/// `jvp_cols`.
fn stacked_jvp(chunk: Chunk<'_, '_>, (tstack, kb): (&[f64], usize), z: &mut [f64], jt: &mut [f64]) {
    let Chunk { cache, j0, c } = chunk;
    let model = cache.model;
    for l in 0..model.n_layers() {
        let (n_in, n_out, r) = (model.widths[l], model.widths[l + 1], model.layer_range(l));
        let rows = kb * n_out;
        let tl = view(&tstack[kb * r.start..], rows, n_in + 1);
        let input = cache.input(l, j0, c);
        let zl = &mut z[..rows * c];
        if !(l == 0 && thin_product(Strided::new(zl, rows, rows), tl, input, None, Par::Seq)) {
            gemm(view_mut(zl, rows, c), Accum::Replace, tl, input, Par::Seq);
        }
        let delta = cache.delta(l, j0);
        for (i, zi) in zl.chunks(rows).enumerate() {
            for (j, zc) in zi.chunks(n_out).enumerate() {
                let dot = match delta {
                    None => zc.iter().sum::<f64>(),
                    Some((d, ld)) => column_dot(&d[i * ld..i * ld + n_out], zc),
                };
                let o = &mut jt[j * c + i];
                *o = if l == 0 { dot } else { *o + dot };
            }
        }
    }
}

/// `sums (=|+=) J_cᵀ S` in the stacked layout, `S` the `kb` columns `s_j = jt[j c …]` on
/// the chunk `j0 … j0+c`; `e` holds `kb · max n_l · c` floats. Top layer first, like
/// `vjp_cols`.
fn stacked_vjp(
    chunk: Chunk<'_, '_>,
    (jt, kb): (&[f64], usize),
    e: &mut [f64],
    (sums, accum): (&mut [f64], Accum),
) {
    let Chunk { cache, j0, c } = chunk;
    let model = cache.model;
    for l in (0..model.n_layers()).rev() {
        let (n_in, n_out, r) = (model.widths[l], model.widths[l + 1], model.layer_range(l));
        let rows = kb * n_out;
        let el = &mut e[..rows * c];
        let delta = cache.delta(l, j0);
        for (i, ei) in el.chunks_mut(rows).enumerate() {
            for (j, ej) in ei.chunks_mut(n_out).enumerate() {
                let s = jt[j * c + i];
                match delta {
                    None => ej.fill(s),
                    Some((d, ld)) => ej
                        .iter_mut()
                        .zip(&d[i * ld..i * ld + n_out])
                        .for_each(|(e, d)| *e = s * d),
                }
            }
        }
        let g = view_mut(&mut sums[kb * r.start..kb * r.end], rows, n_in + 1);
        let input_t = cache.input(l, j0, c).transpose();
        gemm(g, accum, view(el, rows, c), input_t, Par::Seq);
    }
}

/// A batch of tangents of a network with `q > 1` outputs: per chunk, the single product's
/// chunk pass for each tangent in turn, into its own column.
fn tangent_batch(
    cache: &Cached<'_>,
    w: &[f64],
    t: MatRef<'_, f64>,
    c: usize,
    out: &mut [&mut [f64]],
) {
    let model = cache.model;
    let m = model.n_samples();
    let mut sc = GroupScratch::new(model, c);
    let tcols = owned_columns(t);
    for ((j0, cc), accum) in chunks(m, c) {
        for (tj, o) in tcols.iter().zip(out.iter_mut()) {
            chunk_product(cache.chunk(j0, cc), (w, tj), &mut sc, o, accum);
        }
    }
}
