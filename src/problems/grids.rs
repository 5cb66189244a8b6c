//! Issue 14's H¹ regression, in pieces: the uniform `k×k` grid of `[0, 1]²`, the target
//! `u = sin πx · sin πy` on it, and the H¹-type metric `K = h²·I + L` (lumped mass plus
//! the 5-point graph Laplacian `L` of the grid) that couples neighbouring samples.
//!
//! Shared by the preconditioner and solver-choice benchmarks and the tests that measure
//! them (`examples/solver_choice.rs`, `examples/precond_bench/`, `tests/linsolve_numerics.rs`).
//!
//! ```
//! use natgrad::problems::grids;
//!
//! let (x, u) = grids::unit_square_sine(20).unwrap(); // 400 points, sample-major
//! assert_eq!((x.len(), u.len()), (800, 400));
//! let k = grids::h1_metric(20).unwrap(); // a `SparseMetric` on those 400 outputs
//! # let _ = k;
//! ```

use crate::error::{Error, Result};
use crate::metric::SparseMetric;
use sprs::{CsMat, TriMat};
use std::f64::consts::PI;

/// The `k×k` grid of `[0, 1]²` with spacing `h = 1/(k − 1)`, sample-major (`x[2s]`,
/// `x[2s + 1]` are the coordinates of sample `s = i·k + j`, at `(i h, j h)`), and
/// `u = sin πx · sin πy` at its points (length `k²`).
///
/// # Errors
/// [`Error::InvalidSetting`] when `k < 2` (no spacing).
pub fn unit_square_sine(k: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let h = spacing(k)?;
    let (mut x, mut u) = (Vec::with_capacity(2 * k * k), Vec::with_capacity(k * k));
    for i in 0..k {
        for j in 0..k {
            let (a, b) = (i as f64 * h, j as f64 * h);
            x.extend([a, b]);
            u.push((PI * a).sin() * (PI * b).sin());
        }
    }
    Ok((x, u))
}

/// The H¹-type matrix `K = h²·I + L` on the `k×k` grid (`k² × k²`, CSR, samples
/// numbered as in [`unit_square_sine`]): `L` is the 5-point graph Laplacian with only the
/// existing neighbours (a Neumann-like boundary: the diagonal is the number of neighbours,
/// `−1` per neighbour), `h = 1/(k − 1)`. Symmetric positive definite: `L` is positive
/// semi-definite (its null space is the constants) and the mass term shifts it by `h²`.
///
/// # Errors
/// [`Error::InvalidSetting`] when `k < 2`.
pub fn h1_matrix(k: usize) -> Result<CsMat<f64>> {
    spacing(k)?;
    // `1/(k − 1)²` rounded once (not `h·h`), as the copies this module replaced had it.
    let mass = 1.0 / ((k - 1) * (k - 1)) as f64;
    let n = k * k;
    let mut tri = TriMat::new((n, n));
    for i in 0..k {
        for j in 0..k {
            let s = i * k + j;
            let mut neighbours = 0.0;
            for (di, dj) in [(0i64, 1i64), (1, 0), (0, -1), (-1, 0)] {
                let (ni, nj) = (i as i64 + di, j as i64 + dj);
                if ni >= 0 && nj >= 0 && (ni as usize) < k && (nj as usize) < k {
                    tri.add_triplet(s, ni as usize * k + nj as usize, -1.0);
                    neighbours += 1.0;
                }
            }
            tri.add_triplet(s, s, neighbours + mass);
        }
    }
    Ok(tri.to_csr())
}

/// [`h1_matrix`] as a [`SparseMetric`] (issue 14: the metric of the H¹ regression).
///
/// # Errors
/// [`Error::InvalidSetting`] when `k < 2`.
pub fn h1_metric(k: usize) -> Result<SparseMetric> {
    SparseMetric::new(h1_matrix(k)?)
}

/// `h = 1/(k − 1)`, or an error for fewer than two points per side.
fn spacing(k: usize) -> Result<f64> {
    match k {
        0 | 1 => Err(Error::InvalidSetting(format!(
            "grids: a k×k grid of [0, 1]² needs k ≥ 2 points per side, got {k}"
        ))),
        _ => Ok(1.0 / (k - 1) as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the 3×3 grid: the corners, the target's zeros on the boundary and its value 1
    /// at the centre; `K`'s rows sum to `h²` (the Laplacian's rows sum to zero), the
    /// centre has 4 neighbours and a corner 2.
    #[test]
    fn three_by_three_grid_and_stencil() {
        let (x, u) = unit_square_sine(3).unwrap();
        assert_eq!(&x[..4], &[0.0, 0.0, 0.0, 0.5]);
        assert_eq!(&x[16..], &[1.0, 1.0]);
        assert!((u[4] - 1.0).abs() < 1e-15);
        assert!(u.iter().enumerate().all(|(s, v)| s == 4 || v.abs() < 1e-15));
        let k = h1_matrix(3).unwrap();
        for (s, row) in k.outer_iterator().enumerate() {
            let sum: f64 = row.iter().map(|(_, v)| v).sum();
            assert!((sum - 0.25).abs() < 1e-15, "row {s} sums to {sum}");
        }
        assert_eq!(k.get(4, 4), Some(&4.25));
        assert_eq!(k.get(0, 0), Some(&2.25));
        assert_eq!(k.get(0, 4), None, "diagonal neighbours are not coupled");
        assert!(unit_square_sine(1).is_err() && h1_metric(0).is_err());
    }
}
