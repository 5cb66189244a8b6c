//! Metrics `M` on the output space: the geometry of the function space (docs/math.md §1).
//!
//! * [`WeightedL2`] — `M = diag(w)`, quadrature weights (default `1/m`);
//! * [`Euclidean`] — `M = I` on any number of outputs;
//! * [`DenseMetric`] — a user SPD matrix `K` (faer), e.g. an H¹ Gram matrix;
//! * [`SparseMetric`] — a sparse SPD `K` (sprs), e.g. finite-element stiffness + mass;
//! * [`LossHessian`] — the loss's own Hessian `∇²_y ℓ(y)` (Fisher metric for cross-entropy).
//!
//! The first four do not depend on where they are evaluated and implement
//! [`FixedMetric`]; every [`FixedMetric`] is a [`Metric`]. [`LossHessian`] depends on the outputs
//! and the loss, which [`Metric`] methods receive through an [`OutputPoint`].

use crate::error::{check_finite, check_len, check_nonempty, Error, Result};
use crate::loss::Loss;
use faer::linalg::solvers::Solve;
use faer::{Mat, Side};
use sprs::CsMat;

/// Where a metric is evaluated: the current outputs `y(θ)` and the loss.
#[derive(Clone, Copy)]
pub struct OutputPoint<'a> {
    /// The model outputs at θ.
    pub outputs: &'a [f64],
    /// The loss of the problem (the loss-Hessian metric reads its Hessian).
    pub loss: &'a dyn Loss,
}

/// An SPD operator on the output space `Rⁿ`, possibly depending on the outputs.
pub trait Metric: Send + Sync {
    /// A short name for messages.
    fn name(&self) -> &'static str;

    /// The size `n` this metric acts on, if fixed.
    fn dim(&self) -> Option<usize>;

    /// Checks that the metric can act on `n` outputs with this loss.
    fn validate(&self, n: usize, loss: &dyn Loss) -> Result<()> {
        let _ = loss;
        match self.dim() {
            Some(d) => check_len(&format!("{} metric vs model outputs", self.name()), n, d),
            None => Ok(()),
        }
    }

    /// `out = M v`.
    fn apply(&self, at: &OutputPoint<'_>, v: &[f64], out: &mut [f64]);

    /// Writes `diag(M)` into `out` and returns `true` when `M` is diagonal; `false` when it
    /// is not (the Jacobi preconditioner then needs another source for the diagonal).
    fn diagonal(&self, at: &OutputPoint<'_>, out: &mut [f64]) -> bool;

    /// `out = M⁻¹ v` (needed by the sample-space direction). Unsupported by default.
    fn solve(&self, at: &OutputPoint<'_>, v: &[f64], out: &mut [f64]) -> Result<()> {
        let _ = (at, v, out);
        Err(Error::Unsupported(format!(
            "the {} metric cannot apply its inverse",
            self.name()
        )))
    }

    /// The metric on a mini-batch of samples (`q` outputs per sample, `m` samples in all),
    /// rescaled to estimate the full metric. Metrics that couple samples refuse.
    fn select_samples(&self, samples: &[usize], q: usize, m: usize) -> Result<Self>
    where
        Self: Sized;
}

/// A metric that does not depend on the point: `M` is a fixed matrix.
pub trait FixedMetric: Send + Sync {
    /// A short name for messages.
    fn name(&self) -> &'static str;
    /// The size `n`, if fixed.
    fn dim(&self) -> Option<usize>;
    /// `out = M v`.
    fn apply(&self, v: &[f64], out: &mut [f64]);
    /// `diag(M)` when `M` is diagonal.
    fn diagonal(&self) -> Option<&[f64]>;
    /// `out = M⁻¹ v`.
    fn solve(&self, v: &[f64], out: &mut [f64]) -> Result<()>;
    /// The metric on a mini-batch of samples.
    fn select_samples(&self, samples: &[usize], q: usize, m: usize) -> Result<Self>
    where
        Self: Sized;
}

impl<K: FixedMetric> Metric for K {
    fn name(&self) -> &'static str {
        FixedMetric::name(self)
    }
    fn dim(&self) -> Option<usize> {
        FixedMetric::dim(self)
    }
    fn apply(&self, _at: &OutputPoint<'_>, v: &[f64], out: &mut [f64]) {
        FixedMetric::apply(self, v, out)
    }
    fn diagonal(&self, at: &OutputPoint<'_>, out: &mut [f64]) -> bool {
        match FixedMetric::diagonal(self) {
            Some(d) => {
                out.copy_from_slice(d);
                true
            }
            None if FixedMetric::dim(self).is_none() => {
                // Euclidean: the identity on whatever size the outputs have.
                let _ = at;
                out.fill(1.0);
                true
            }
            None => false,
        }
    }
    fn solve(&self, _at: &OutputPoint<'_>, v: &[f64], out: &mut [f64]) -> Result<()> {
        FixedMetric::solve(self, v, out)
    }
    fn select_samples(&self, samples: &[usize], q: usize, m: usize) -> Result<Self> {
        FixedMetric::select_samples(self, samples, q, m)
    }
}

/// Output rows of the given samples (`q` per sample), checking the indices.
/// An empty batch is [`Error::Empty`].
pub(crate) fn sample_rows(samples: &[usize], q: usize, m: usize) -> Result<Vec<usize>> {
    check_nonempty("mini-batch: number of samples", samples.len())?;
    if let Some(&bad) = samples.iter().find(|&&i| i >= m) {
        return Err(Error::InvalidSetting(format!(
            "sample index {bad} out of range for {m} samples"
        )));
    }
    Ok(samples.iter().flat_map(|&i| (i * q)..(i * q + q)).collect())
}

/// Fails unless every weight is finite and strictly positive.
pub(crate) fn check_weights(what: &str, w: &[f64]) -> Result<()> {
    check_finite(what, w)?;
    match w.iter().position(|&x| x <= 0.0) {
        None => Ok(()),
        Some(i) => Err(Error::IndefiniteMetric {
            what: what.to_string(),
            detail: format!("weight {} at index {i} is not positive", w[i]),
        }),
    }
}

/// `M = diag(w)`: the discrete L² metric with quadrature weights `w_i > 0`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct WeightedL2 {
    weights: Vec<f64>,
}

impl WeightedL2 {
    /// Weights `w` (all finite and positive; [`Error::Empty`] for none).
    pub fn new(weights: Vec<f64>) -> Result<Self> {
        check_nonempty("WeightedL2: number of weights (outputs n)", weights.len())?;
        check_weights("WeightedL2 weights", &weights)?;
        Ok(Self { weights })
    }

    /// Uniform weights `1/n` (the Monte-Carlo quadrature of docs/math.md §1); fails with
    /// [`Error::Empty`] for `n = 0`.
    pub fn uniform(n: usize) -> Result<Self> {
        check_nonempty("WeightedL2::uniform: number of outputs n", n)?;
        Ok(Self {
            weights: vec![1.0 / n as f64; n],
        })
    }

    /// The weights.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }
}

impl FixedMetric for WeightedL2 {
    fn name(&self) -> &'static str {
        "WeightedL2"
    }
    fn dim(&self) -> Option<usize> {
        Some(self.weights.len())
    }
    fn apply(&self, v: &[f64], out: &mut [f64]) {
        for ((o, v), w) in out.iter_mut().zip(v).zip(&self.weights) {
            *o = w * v;
        }
    }
    fn diagonal(&self) -> Option<&[f64]> {
        Some(&self.weights)
    }
    fn solve(&self, v: &[f64], out: &mut [f64]) -> Result<()> {
        for ((o, v), w) in out.iter_mut().zip(v).zip(&self.weights) {
            *o = v / w;
        }
        Ok(())
    }
    fn select_samples(&self, samples: &[usize], q: usize, m: usize) -> Result<Self> {
        let rows = sample_rows(samples, q, m)?;
        let scale = m as f64 / samples.len() as f64;
        Ok(Self {
            weights: rows.iter().map(|&i| self.weights[i] * scale).collect(),
        })
    }
}

/// `M = I` on any number of outputs (the plain Gauss–Newton metric).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Euclidean;

impl FixedMetric for Euclidean {
    fn name(&self) -> &'static str {
        "Euclidean"
    }
    fn dim(&self) -> Option<usize> {
        None
    }
    fn apply(&self, v: &[f64], out: &mut [f64]) {
        out.copy_from_slice(v);
    }
    fn diagonal(&self) -> Option<&[f64]> {
        None
    }
    fn solve(&self, v: &[f64], out: &mut [f64]) -> Result<()> {
        out.copy_from_slice(v);
        Ok(())
    }
    fn select_samples(&self, _samples: &[usize], _q: usize, _m: usize) -> Result<Self> {
        Ok(Euclidean)
    }
}

/// A dense SPD metric `K` (n×n), factored once by faer's Cholesky on construction (which
/// also proves it positive definite).
#[derive(Debug)]
pub struct DenseMetric {
    k: Mat<f64>,
    llt: faer::linalg::solvers::Llt<f64>,
}

impl Clone for DenseMetric {
    fn clone(&self) -> Self {
        Self::new(self.k.clone()).expect("natgrad: a valid DenseMetric refactors")
    }
}

impl DenseMetric {
    /// Checks `K` is square, not empty, finite, symmetric (to 1e-12 relative) and positive
    /// definite.
    pub fn new(k: Mat<f64>) -> Result<Self> {
        check_len("DenseMetric: columns vs rows", k.nrows(), k.ncols())?;
        check_nonempty("DenseMetric: size of K (outputs n)", k.nrows())?;
        crate::error::check_finite_mat("DenseMetric K", k.as_ref())?;
        let scale = (0..k.ncols())
            .flat_map(|j| k.col(j).iter().map(|x| x.abs()).collect::<Vec<_>>())
            .fold(0.0_f64, f64::max);
        for j in 0..k.ncols() {
            for i in 0..j {
                if (k[(i, j)] - k[(j, i)]).abs() > 1e-12 * scale {
                    return Err(Error::IndefiniteMetric {
                        what: "DenseMetric K".into(),
                        detail: format!(
                            "not symmetric: K[{i},{j}] = {} but K[{j},{i}] = {}",
                            k[(i, j)],
                            k[(j, i)]
                        ),
                    });
                }
            }
        }
        let llt = k.llt(Side::Lower).map_err(|e| Error::IndefiniteMetric {
            what: "DenseMetric K".into(),
            detail: match e {
                faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index } => {
                    format!("Cholesky found a non-positive pivot at index {index}")
                }
            },
        })?;
        Ok(Self { k, llt })
    }

    /// `K`.
    pub fn matrix(&self) -> &Mat<f64> {
        &self.k
    }
}

impl FixedMetric for DenseMetric {
    fn name(&self) -> &'static str {
        "DenseMetric"
    }
    fn dim(&self) -> Option<usize> {
        Some(self.k.nrows())
    }
    fn apply(&self, v: &[f64], out: &mut [f64]) {
        crate::linalg::gemv(out, self.k.as_ref(), v, faer::Par::Seq);
    }
    fn diagonal(&self) -> Option<&[f64]> {
        None
    }
    fn solve(&self, v: &[f64], out: &mut [f64]) -> Result<()> {
        out.copy_from_slice(v);
        self.llt
            .solve_in_place(faer::ColMut::from_slice_mut(out).as_mat_mut());
        Ok(())
    }
    fn select_samples(&self, _samples: &[usize], _q: usize, _m: usize) -> Result<Self> {
        Err(Error::Unsupported(
            "DenseMetric couples samples; mini-batches need a metric that is diagonal over \
             samples (WeightedL2, Euclidean, LossHessian)"
                .into(),
        ))
    }
}

/// A sparse SPD metric `K` (sprs CSR). Its sparse Cholesky factor (faer) is computed on
/// construction, which proves it positive definite and later applies `K⁻¹`. Clones share
/// the factor.
#[derive(Clone)]
pub struct SparseMetric {
    k: CsMat<f64>,
    llt: std::sync::Arc<faer::sparse::linalg::solvers::Llt<usize, f64>>,
}

impl std::fmt::Debug for SparseMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SparseMetric")
            .field("n", &self.k.rows())
            .field("nnz", &self.k.nnz())
            .finish()
    }
}

impl SparseMetric {
    /// Checks `K` is square, not empty, finite, symmetric (to 1e-12 relative) and positive
    /// definite.
    pub fn new(k: CsMat<f64>) -> Result<Self> {
        check_len("SparseMetric: columns vs rows", k.rows(), k.cols())?;
        check_nonempty("SparseMetric: size of K (outputs n)", k.rows())?;
        check_finite("SparseMetric K (stored entries)", k.data())?;
        let k = if k.is_csr() { k } else { k.to_csr() };
        let scale = k.data().iter().map(|x| x.abs()).fold(0.0_f64, f64::max);
        let kt = k.transpose_view().to_csr();
        let mut triplets = Vec::with_capacity(k.nnz());
        for (v, (i, j)) in k.iter() {
            let vt = kt.get(i, j).copied().unwrap_or(0.0);
            if (v - vt).abs() > 1e-12 * scale {
                return Err(Error::IndefiniteMetric {
                    what: "SparseMetric K".into(),
                    detail: format!("not symmetric: K[{i},{j}] = {v} but K[{j},{i}] = {vt}"),
                });
            }
            triplets.push(faer::sparse::Triplet::new(i, j, *v));
        }
        let fk = faer::sparse::SparseColMat::<usize, f64>::try_new_from_triplets(
            k.rows(),
            k.cols(),
            &triplets,
        )
        .map_err(|e| Error::InvalidSetting(format!("SparseMetric: {e:?}")))?;
        let llt = fk
            .sp_cholesky(Side::Lower)
            .map_err(|e| Error::IndefiniteMetric {
                what: "SparseMetric K".into(),
                detail: sparse_cholesky_failure(&fk, e),
            })?;
        Ok(Self {
            k,
            llt: std::sync::Arc::new(llt),
        })
    }

    /// `K`.
    pub fn matrix(&self) -> &CsMat<f64> {
        &self.k
    }
}

/// What a failed sparse Cholesky factorisation of `K` means, with a non-positive pivot
/// reported in `K`'s own numbering: faer factors `P K Pᵀ` for a fill-reducing
/// permutation `P` and reports the pivot's position in that order.
fn sparse_cholesky_failure(
    k: &faer::sparse::SparseColMat<usize, f64>,
    e: faer::sparse::linalg::LltError,
) -> String {
    use faer::linalg::cholesky::llt::factor::LltError as Numeric;
    let faer::sparse::linalg::LltError::Numeric(Numeric::NonPositivePivot { index }) = e else {
        return format!("sparse Cholesky failed ({e:?})");
    };
    use faer::sparse::linalg::cholesky::{factorize_symbolic_cholesky, SymbolicCholeskyRaw};
    // The same symbolic analysis as `sp_cholesky` (same defaults), for its permutation
    // and its kind: faer 0.24's simplicial factorisation reports the pivot 1-based, the
    // supernodal one 0-based.
    let Ok(symbolic) = factorize_symbolic_cholesky(
        k.symbolic(),
        Side::Lower,
        Default::default(),
        Default::default(),
    ) else {
        return format!("sparse Cholesky failed ({e:?})");
    };
    let step = match symbolic.raw() {
        SymbolicCholeskyRaw::Simplicial(_) => index.saturating_sub(1),
        SymbolicCholeskyRaw::Supernodal(_) => index,
    };
    let user_index = symbolic
        .perm()
        .and_then(|p| p.arrays().0.get(step).copied())
        .unwrap_or(step);
    format!(
        "Cholesky found a non-positive pivot at index {user_index} (row and column \
         {user_index} of K; step {step} of the fill-reducing order)"
    )
}

impl FixedMetric for SparseMetric {
    fn name(&self) -> &'static str {
        "SparseMetric"
    }
    fn dim(&self) -> Option<usize> {
        Some(self.k.rows())
    }
    fn apply(&self, v: &[f64], out: &mut [f64]) {
        out.fill(0.0);
        sprs::prod::mul_acc_mat_vec_csr(self.k.view(), v, &mut *out);
    }
    fn diagonal(&self) -> Option<&[f64]> {
        None
    }
    fn solve(&self, v: &[f64], out: &mut [f64]) -> Result<()> {
        out.copy_from_slice(v);
        self.llt
            .solve_in_place(faer::ColMut::from_slice_mut(out).as_mat_mut());
        Ok(())
    }
    fn select_samples(&self, _samples: &[usize], _q: usize, _m: usize) -> Result<Self> {
        Err(Error::Unsupported(
            "SparseMetric couples samples; mini-batches need a metric that is diagonal over \
             samples (WeightedL2, Euclidean, LossHessian)"
                .into(),
        ))
    }
}

/// The loss Hessian `M = ∇²_y ℓ(y)` of the problem's own loss as the output metric (the
/// Fisher metric for [`crate::loss::CrossEntropy`] and [`crate::loss::LogitCrossEntropy`]).
/// The Gram matrix `JᵀMJ` in this metric is the generalised Gauss–Newton (GGN) matrix
/// (Schraudolph 2002), so natural gradient here is the GGN / Levenberg–Marquardt method
/// (`docs/math.md` §1). Formerly named `Ggn`; the GGN is the Gram `JᵀMJ`, not `M`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LossHessian;

impl Metric for LossHessian {
    fn name(&self) -> &'static str {
        "LossHessian"
    }
    fn dim(&self) -> Option<usize> {
        None
    }
    fn validate(&self, _n: usize, loss: &dyn Loss) -> Result<()> {
        if loss.has_hessian() {
            Ok(())
        } else {
            Err(Error::Unsupported(
                "the LossHessian metric needs a loss with a Hessian (SquaredError, CrossEntropy, \
                 LogitCrossEntropy)"
                    .into(),
            ))
        }
    }
    fn apply(&self, at: &OutputPoint<'_>, v: &[f64], out: &mut [f64]) {
        // `validate` guarantees the Hessian exists.
        let _ = at.loss.hessian_apply(at.outputs, v, out);
    }
    fn diagonal(&self, at: &OutputPoint<'_>, out: &mut [f64]) -> bool {
        at.loss.hessian_diagonal(at.outputs, out)
    }
    fn solve(&self, at: &OutputPoint<'_>, v: &[f64], out: &mut [f64]) -> Result<()> {
        if !at.loss.hessian_diagonal(at.outputs, out) {
            return Err(Error::Unsupported(
                "LossHessian inverse needs a loss with a diagonal Hessian".into(),
            ));
        }
        if let Some(i) = out.iter().position(|&d| !(d > 0.0 && d.is_finite())) {
            return Err(Error::IndefiniteMetric {
                what: "LossHessian metric (the loss Hessian)".into(),
                detail: format!(
                    "diagonal entry {} at output {i} is not positive and finite, so M⁻¹ does \
                     not exist (e.g. a logit so large that σ(z)(1 − σ(z)) underflows); use \
                     a parameter-space solver, or a fixed metric",
                    out[i]
                ),
            });
        }
        for (o, v) in out.iter_mut().zip(v) {
            *o = v / *o;
        }
        Ok(())
    }
    fn select_samples(&self, _samples: &[usize], _q: usize, _m: usize) -> Result<Self> {
        Ok(LossHessian)
    }
}
