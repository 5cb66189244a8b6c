//! Quadrature points and weights for energy (Deep Ritz) terms.

use crate::error::{Error, Result};
use faer::Mat;

/// The composite 3-point Gauss–Legendre rule on `(a, b)` with `cells` equal cells: nodes
/// (`1 × 3·cells`, one column per point, for [`super::EnergyTerm::new`]) and weights
/// (summing to `b − a`). Exact for polynomials of degree 5 on each cell, error
/// `O(h⁶)` for smooth integrands (nodes `±√(3/5)`, `0`; weights `5/9`, `8/9`, `5/9` on
/// `(−1, 1)`). Errors when `cells = 0` or `a < b` fails.
pub fn gauss_legendre_3(a: f64, b: f64, cells: usize) -> Result<(Mat<f64>, Vec<f64>)> {
    let ordered = a < b && (b - a).is_finite();
    if cells == 0 || !ordered {
        return Err(Error::InvalidSetting(format!(
            "gauss_legendre_3: need a < b (finite) and cells > 0, got ({a}, {b}), {cells}"
        )));
    }
    let (h, s) = ((b - a) / cells as f64, 0.6f64.sqrt());
    let (mut x, mut w) = (Vec::with_capacity(3 * cells), Vec::with_capacity(3 * cells));
    for c in 0..cells {
        let mid = a + h * (c as f64 + 0.5);
        for (t, wt) in [(-s, 5.0 / 9.0), (0.0, 8.0 / 9.0), (s, 5.0 / 9.0)] {
            x.push(mid + 0.5 * h * t);
            w.push(0.5 * h * wt);
        }
    }
    Ok((Mat::from_fn(1, x.len(), |_, j| x[j]), w))
}
