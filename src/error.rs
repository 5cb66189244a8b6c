//! One error type for the crate.
//!
//! Programmer misuse that the type system cannot catch (mismatched sizes, non-finite input)
//! and numerical failure of a direct solve are typed variants here. Inside an argmin run,
//! [`Error::into_argmin`] turns them into argmin errors: size and input errors become
//! `ArgminError::InvalidParameter`, so that argmin users can match on them as they do for
//! argmin's own solvers.

use argmin::core::ArgminError;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `natgrad`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two sizes that must agree do not.
    #[error("{what}: expected length {expected}, found {found}")]
    DimensionMismatch {
        /// What was being checked, e.g. `"theta vs model parameters"`.
        what: String,
        /// The size required by the other side.
        expected: usize,
        /// The size that was given.
        found: usize,
    },
    /// A value that must be finite is NaN or infinite.
    #[error("{what}: non-finite value {value} at index {index}")]
    NonFinite {
        /// What was being checked, e.g. `"theta"` or `"model outputs"`.
        what: String,
        /// Index of the first bad entry.
        index: usize,
        /// The bad value.
        value: f64,
    },
    /// A metric that must be symmetric positive definite is not.
    #[error("{what} is not symmetric positive definite: {detail}")]
    IndefiniteMetric {
        /// Which metric.
        what: String,
        /// Where it failed (asymmetric entry or non-positive pivot).
        detail: String,
    },
    /// The dense Gram matrix `JᵀMJ + λI` (or the sample-space kernel) could not be
    /// Cholesky-factored, or is singular to working precision: a pivot `d_i = L_ii²` at or
    /// below `dim·ε` times its own diagonal entry `k_ii` (elimination cancelled it to
    /// rounding).
    #[error(
        "Cholesky factorisation of the Gram matrix G + λI failed at pivot {index} \
         (damping λ = {damping:e}): the Gram matrix is singular (to working precision) or \
         indefinite at this θ; add damping with `with_damping(λ > 0)`, or use \
         `LinearSolver::LeastSquares` for the minimum-norm direction"
    )]
    GramNotPositiveDefinite {
        /// Index of the first refused pivot (non-positive in faer's factorisation, or
        /// cancelled to rounding as above).
        index: usize,
        /// The damping in use.
        damping: f64,
    },
    /// A metric returned a non-finite value for a finite input: a user-written
    /// [`crate::metric::Metric`] (the crate's own metrics are validated at construction).
    #[error(
        "the metric `{metric}` returned {value} at output index {index} from \
         `Metric::{method}` for a finite input"
    )]
    NonFiniteMetric {
        /// [`crate::metric::Metric::name`].
        metric: &'static str,
        /// The trait method: `apply`, `diagonal` or `solve`.
        method: &'static str,
        /// The first non-finite entry of its result (an output index).
        index: usize,
        /// That entry.
        value: f64,
    },
    /// A setting is outside its valid range.
    #[error("{0}")]
    InvalidSetting(String),
    /// Nothing to fit: a data set without samples (`n = 0` outputs) or a model without
    /// parameters (`p = 0`). The text says which object is empty.
    #[error("empty problem: {0}")]
    Empty(String),
    /// A user problem's own code failed (e.g. `Operator::apply` of an argmin problem
    /// wrapped by [`crate::argmin_adapter`]); the text carries its error.
    #[error("{0}")]
    Problem(String),
    /// An argmin line search used as step control failed mid-run (e.g. no point
    /// satisfying its conditions); inside a run it ends the run with the reason.
    #[error("line search failed: {0}")]
    LineSearch(String),
    /// The operation is not supported by this model, loss or metric.
    #[error("not supported: {0}")]
    Unsupported(String),
}

impl Error {
    /// Builds a [`Error::DimensionMismatch`].
    pub fn dims(what: impl Into<String>, expected: usize, found: usize) -> Self {
        Error::DimensionMismatch {
            what: what.into(),
            expected,
            found,
        }
    }

    /// Converts into an argmin error. Input errors (sizes, non-finite data, settings) map to
    /// `ArgminError::InvalidParameter`, unsupported operations to `NotImplemented`, numerical
    /// failures and failures of the user problem's own code to `ConditionViolated`. The text is prefixed with `context` (the solver name).
    pub fn into_argmin(self, context: &str) -> argmin::core::Error {
        let text = format!("`{context}`: {self}");
        let e = match self {
            Error::DimensionMismatch { .. }
            | Error::NonFinite { .. }
            | Error::IndefiniteMetric { .. }
            | Error::InvalidSetting(_)
            | Error::Empty(_) => ArgminError::InvalidParameter { text },
            Error::Unsupported(_) => ArgminError::NotImplemented { text },
            Error::GramNotPositiveDefinite { .. }
            | Error::NonFiniteMetric { .. }
            | Error::Problem(_)
            | Error::LineSearch(_) => ArgminError::ConditionViolated { text },
        };
        e.into()
    }
}

/// Returns an error naming the first non-finite entry of `v`.
pub fn check_finite(what: &str, v: &[f64]) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(index) => Err(Error::NonFinite {
            what: what.to_string(),
            index,
            value: v[index],
        }),
    }
}

/// Returns [`Error::Empty`] when a size that counts data (`what`, e.g. `"rows of the
/// design matrix (samples)"`) is zero.
pub fn check_nonempty(what: &str, size: usize) -> Result<()> {
    if size == 0 {
        Err(Error::Empty(format!("{what} is 0")))
    } else {
        Ok(())
    }
}

/// Returns an error when `found != expected`.
pub fn check_len(what: &str, expected: usize, found: usize) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::dims(what, expected, found))
    }
}

/// Returns an error naming the first non-finite entry of a matrix (column-major index).
pub fn check_finite_mat(what: &str, m: faer::MatRef<'_, f64>) -> Result<()> {
    for j in 0..m.ncols() {
        for i in 0..m.nrows() {
            let value = m[(i, j)];
            if !value.is_finite() {
                return Err(Error::NonFinite {
                    what: format!("{what} (row {i}, column {j})"),
                    index: i + j * m.nrows(),
                    value,
                });
            }
        }
    }
    Ok(())
}
