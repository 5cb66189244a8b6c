//! Pointwise passes over sample blocks: activations and derivative multiplies.
//!
//! Work is split in fixed chunks (independent of the thread count) and has no
//! reductions, so the result is the same bitwise whatever rayon does with the chunks.

use crate::model::activation::Activation;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Samples per parallel task of [`activate`].
const CHUNK_SAMPLES: usize = 64;
/// Floats per parallel task of [`mul_by`].
const CHUNK_FLOATS: usize = 1 << 14;
/// Below this many flops a GEMM runs sequentially: splitting it costs more than it saves
/// (the S benchmark size is all such GEMMs). The choice depends on the shape only.
const PAR_MIN_FLOPS: usize = 1 << 21;
/// Below this many floats a pointwise pass runs sequentially.
const PAR_MIN_FLOATS: usize = 1 << 15;

/// `c = a·b` (`Accum::Replace`) or `c += a·b` (`Accum::Add`) by faer, with `par` only
/// when the product is large enough to gain from it.
pub(super) fn gemm(
    c: MatMut<'_, f64>,
    accum: Accum,
    a: MatRef<'_, f64>,
    b: MatRef<'_, f64>,
    par: Par,
) {
    let flops = 2 * c.nrows() * c.ncols() * a.ncols();
    let par = if flops < PAR_MIN_FLOPS { Par::Seq } else { par };
    // followed by elementwise passes (libm's exp/ln for sigmoid and softplus): clear the
    // upper SIMD state faer's kernels may leave dirty
    crate::linalg::matmul_then_scalar(c, accum, a, b, par);
}

/// A `rows × m` block of sample columns stored with column stride `ld ≥ rows` in `data`
/// (its first column at `data[0]`; `m` follows from the other operand): where the
/// pointwise passes below write.
pub(super) struct Strided<'a> {
    pub(super) data: &'a mut [f64],
    pub(super) ld: usize,
    pub(super) rows: usize,
}

impl<'a> Strided<'a> {
    /// The block of `rows`-long columns at stride `ld` in `data`.
    pub(super) fn new(data: &'a mut [f64], ld: usize, rows: usize) -> Self {
        Self { data, ld, rows }
    }
}

/// `par`, or `Par::Seq` for a pointwise pass over `len` floats.
fn pointwise_par(len: usize, par: Par) -> Par {
    if len < PAR_MIN_FLOATS {
        Par::Seq
    } else {
        par
    }
}

/// For each of the `m` columns of the block `z`: `z ← σ(z)` and, column by column into the contiguous `rows × m` block `d`,
/// `d ← σ'(z)`; with `d = None` only `z ← σ(z)` (a forward pass without derivatives). The
/// identity is a no-op (`d` is then empty).
pub(super) fn activate(act: Activation, z: Strided<'_>, d: Option<&mut [f64]>, par: Par) {
    let Strided { data: z, ld, rows } = z;
    if act.is_identity() {
        return;
    }
    let cz = ld * CHUNK_SAMPLES;
    let seq = pointwise_par(z.len(), par) == Par::Seq;
    match d {
        Some(d) => {
            let body = |(zc, dc): (&mut [f64], &mut [f64])| {
                for (zcol, dcol) in zc.chunks_mut(ld).zip(dc.chunks_mut(rows)) {
                    act.value_and_derivative_slice(&mut zcol[..rows], dcol);
                }
            };
            let cd = rows * CHUNK_SAMPLES;
            match seq {
                true => z.chunks_mut(cz).zip(d.chunks_mut(cd)).for_each(body),
                false => z
                    .par_chunks_mut(cz)
                    .zip(d.par_chunks_mut(cd))
                    .for_each(body),
            }
        }
        None => {
            let body = |zc: &mut [f64]| {
                zc.chunks_mut(ld)
                    .for_each(|zcol| act.value_slice(&mut zcol[..rows]))
            };
            match seq {
                true => z.chunks_mut(cz).for_each(body),
                false => z.par_chunks_mut(cz).for_each(body),
            }
        }
    }
}

/// Runs `body(j, dst_j, d_j)` over the fixed chunks (`CHUNK_SAMPLES` columns each, chunk
/// `j` from column `j·CHUNK_SAMPLES`) of the `rows × m` block `dst`, together with the same columns of the
/// contiguous `rows × m` block `d` when given; in parallel when the block is large enough
/// and `par` allows. The chunking does not depend on the thread count.
fn by_sample_chunks<F>(dst: Strided<'_>, m: usize, d: Option<&[f64]>, par: Par, body: F)
where
    F: Fn(usize, &mut [f64], Option<&[f64]>) + Sync + Send,
{
    let Strided {
        data: dst,
        ld,
        rows,
    } = dst;
    if m == 0 {
        return;
    }
    let dst = &mut dst[..(m - 1) * ld + rows];
    let (cdst, cd) = (ld * CHUNK_SAMPLES, rows * CHUNK_SAMPLES);
    let d_chunk = |j: usize| d.map(|d| &d[j * cd..((j + 1) * cd).min(rows * m)]);
    match pointwise_par(rows * m, par) {
        Par::Seq => dst
            .chunks_mut(cdst)
            .enumerate()
            .for_each(|(j, o)| body(j, o, d_chunk(j))),
        _ => dst
            .par_chunks_mut(cdst)
            .enumerate()
            .for_each(|(j, o)| body(j, o, d_chunk(j))),
    }
}

/// `dst ← src ⊙ d` (or `dst ← src` for `d = None`) for a `rows × m` block: `src` and `d`
/// contiguous, `dst` strided. One pass, the
/// derivative multiply of a product fused with the copy into where the next GEMM reads.
pub(super) fn mul_into(dst: Strided<'_>, src: &[f64], d: Option<&[f64]>, par: Par) {
    let (ld, rows) = (dst.ld, dst.rows);
    let csrc = rows * CHUNK_SAMPLES;
    let body = |j: usize, dc: &mut [f64], wc: Option<&[f64]>| {
        let sc = &src[j * csrc..((j + 1) * csrc).min(src.len())];
        for (i, (o, s)) in dc.chunks_mut(ld).zip(sc.chunks(rows)).enumerate() {
            let o = &mut o[..rows];
            match wc {
                None => o.copy_from_slice(s),
                Some(w) => o
                    .iter_mut()
                    .zip(s.iter().zip(&w[i * rows..(i + 1) * rows]))
                    .for_each(|(o, (s, w))| *o = s * w),
            }
        }
    };
    by_sample_chunks(dst, src.len() / rows, d, par, body);
}

/// Largest inner dimension that [`thin_product`] takes.
pub(super) const THIN_K: usize = 4;

/// `dst[:, i] ← d[:, i] ⊙ (A b[:, i])` (or `A b[:, i]` for `d = None`) for a `rows × k`
/// matrix `A` with contiguous columns and `k ≤ THIN_K`; `b` is `k × m`, `d` contiguous
/// `rows × m`, `dst` strided with `dst.rows = rows`. Returns `false`,
/// touching nothing, when `A` does not qualify.
///
/// One pass that writes each output once, where a GEMM followed by a derivative multiply
/// writes it, reads it back and writes it again: the jvp of a thin first layer
/// (`[Ẇ_0|ḃ_0]·[x; 1]` with `d + 1 ≤ 4`) and the step below a scalar output
/// (`σ' ⊙ (wᵀ z̄)`, rank one). Each entry sums `c = 0, 1, …, k−1` in that order, with
/// no reduction across samples, so the result does not depend on the thread count.
pub(super) fn thin_product(
    dst: Strided<'_>,
    a: MatRef<'_, f64>,
    b: MatRef<'_, f64>,
    d: Option<&[f64]>,
    par: Par,
) -> bool {
    let (rows, k, ld) = (a.nrows(), a.ncols(), dst.ld);
    debug_assert_eq!(dst.rows, rows);
    if k == 0 || k > THIN_K {
        return false;
    }
    let mut cols: [&[f64]; THIN_K] = [&[]; THIN_K];
    for (c, col) in cols.iter_mut().enumerate().take(k) {
        match a.col(c).try_as_col_major() {
            Some(v) => *col = v.as_slice(),
            None => return false,
        }
    }
    let cols = &cols[..k];
    let body = |chunk: usize, dc: &mut [f64], wc: Option<&[f64]>| {
        for (i, o) in dc.chunks_mut(ld).enumerate() {
            let s = chunk * CHUNK_SAMPLES + i;
            let o = &mut o[..rows];
            let b0 = b[(0, s)];
            o.iter_mut().zip(cols[0]).for_each(|(o, a)| *o = a * b0);
            for (c, col) in cols.iter().enumerate().skip(1) {
                let bc = b[(c, s)];
                o.iter_mut().zip(*col).for_each(|(o, a)| *o += a * bc);
            }
            if let Some(w) = wc {
                let w = &w[i * rows..(i + 1) * rows];
                o.iter_mut().zip(w).for_each(|(o, w)| *o *= w);
            }
        }
    };
    by_sample_chunks(dst, b.ncols(), d, par, body);
    true
}

/// `x ← x ⊙ d`, with `d` repeated over the blocks of `x` (`x.len()` a multiple of
/// `d.len()`: one block per tangent of a block product).
pub(super) fn mul_by(x: &mut [f64], d: &[f64], par: Par) {
    let body = |(x, d): (&mut [f64], &[f64])| x.iter_mut().zip(d).for_each(|(x, d)| *x *= d);
    for xb in x.chunks_mut(d.len()) {
        match pointwise_par(d.len(), par) {
            Par::Seq => body((xb, d)),
            _ => xb
                .par_chunks_mut(CHUNK_FLOATS)
                .zip(d.par_chunks(CHUNK_FLOATS))
                .for_each(body),
        }
    }
}

/// The backward pass's seed for output component `j`: `x = σ'_L ⊙ e_j` on every sample
/// (`x` is `q × m`, sample-major columns), as the dense Jacobian and the Gram diagonal
/// both need it.
pub(super) fn seed_output_unit(model: &super::Mlp, derivs: &[Vec<f64>], j: usize, x: &mut [f64]) {
    let nl = model.n_layers();
    let q = model.widths[nl];
    x.fill(0.0);
    x.iter_mut().skip(j).step_by(q).for_each(|v| *v = 1.0);
    if !model.activations[nl - 1].is_identity() {
        mul_by(x, &derivs[nl - 1], model.par);
    }
}
