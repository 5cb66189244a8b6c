//! The Kronecker factors of one layer's block of the Gram matrix (K-FAC, docs/math.md §5),
//! as a model hands them to [`crate::linsolve::kfac`].

use faer::Mat;
use std::ops::Range;

/// K-FAC factors `A`, `B` of one layer: its block of `G = JᵀMJ` (the rows and columns
/// `range` of θ) is approximated by `A ⊗ B`.
///
/// The layer's parameters are the column-major `r × c` matrix `Θ` with `B` of size `r × r`
/// (output side) and `A` of size `c × c` (input side, bias column included), so that
/// `(A ⊗ B) vec(V) = vec(B V A)` for a `r × c` block `V` of a vector (`A` symmetric).
/// Conventions (weights, normalisation) in docs/math.md §5.
#[derive(Debug, Clone, PartialEq)]
pub struct KfacFactors {
    /// The layer's parameters in θ (length `r·c`).
    pub range: Range<usize>,
    /// Input-side factor `A = Σ_i ω_i [a_i; 1][a_i; 1]ᵀ`, `c × c`, symmetric positive
    /// semi-definite.
    pub a: Mat<f64>,
    /// Output-side factor `B = Σ_i Σ_j w_ij δ_ij δ_ijᵀ`, `r × r`, symmetric positive
    /// semi-definite.
    pub b: Mat<f64>,
}
