//! Pointwise passes over sample blocks: activations and derivative multiplies.
//!
//! Work is split in fixed chunks (independent of the thread count) and has no
//! reductions, so the result is the same bitwise whatever rayon does with the chunks.

use crate::model::activation::Activation;
use faer::Par;
use rayon::prelude::*;

/// Samples per parallel task of [`activate`].
const CHUNK_SAMPLES: usize = 64;
/// Floats per parallel task of [`mul_by`].
const CHUNK_FLOATS: usize = 1 << 14;

/// For each of the `m` columns of a `rows × m` block stored with column stride `ld` in
/// `z`: `z ← σ(z)` and, column by column into the contiguous `rows × m` block `d`,
/// `d ← σ'(z)`. The identity is a no-op (`d` is then empty).
pub(super) fn activate(
    act: Activation,
    z: &mut [f64],
    ld: usize,
    rows: usize,
    d: &mut [f64],
    par: Par,
) {
    if act.is_identity() {
        return;
    }
    let body = |(zc, dc): (&mut [f64], &mut [f64])| {
        for (zcol, dcol) in zc.chunks_mut(ld).zip(dc.chunks_mut(rows)) {
            for (z, d) in zcol[..rows].iter_mut().zip(dcol) {
                let (a, da) = act.value_and_derivative(*z);
                *z = a;
                *d = da;
            }
        }
    };
    let (cz, cd) = (ld * CHUNK_SAMPLES, rows * CHUNK_SAMPLES);
    match par {
        Par::Seq => z.chunks_mut(cz).zip(d.chunks_mut(cd)).for_each(body),
        _ => z
            .par_chunks_mut(cz)
            .zip(d.par_chunks_mut(cd))
            .for_each(body),
    }
}

/// `x ← x ⊙ d`, with `d` repeated over the blocks of `x` (`x.len()` a multiple of
/// `d.len()`: one block per tangent of a block product).
pub(super) fn mul_by(x: &mut [f64], d: &[f64], par: Par) {
    let body = |(x, d): (&mut [f64], &[f64])| x.iter_mut().zip(d).for_each(|(x, d)| *x *= d);
    for xb in x.chunks_mut(d.len()) {
        match par {
            Par::Seq => body((xb, d)),
            _ => xb
                .par_chunks_mut(CHUNK_FLOATS)
                .zip(d.par_chunks(CHUNK_FLOATS))
                .for_each(body),
        }
    }
}
