//! Kronecker-factored (K-FAC) approximation of the Gram matrix, as a CG preconditioner
//! ([`Preconditioner::Kfac`](super::Preconditioner::Kfac)) and as a direction of its own
//! ([`LinearSolver::Kfac`](super::LinearSolver::Kfac)); docs/math.md §5.
//!
//! **Factors.** The model gives, per layer `l`, `A_l` (input side) and `B_l` (output side)
//! with `G_l ≈ A_l ⊗ B_l` ([`crate::model::Linearization::kfac_factors`]; for
//! [`crate::model::Mlp`] from the cached activations and `q` backward passes), for a
//! diagonal metric `w` (weighted L², Euclidean, the loss Hessian of a pointwise loss). A
//! metric that couples outputs has no such factorisation and is refused with a typed
//! error. The factors are kept in the [`SolveCache`] with their eigendecompositions (faer's
//! `self_adjoint_evd`, run sequentially so that the result does not depend on the thread
//! count) and recomputed every `refresh_every` solves, optionally as an exponential
//! average `A ← ρ A_old + (1 − ρ) A_new` (`decay = ρ`).
//!
//! **Inverse.** With the Martens–Grosse π-correction (Martens & Grosse 2015, §6.3)
//!
//! ```text
//!   π_l = √( (tr A_l / c_l) / (tr B_l / r_l) ),
//!   P_l⁻¹ = (A_l + π_l √λ I)⁻¹ ⊗ (B_l + √λ/π_l I)⁻¹,
//!   P_l⁻¹ vec(V) = vec( (B_l + √λ/π_l I)⁻¹ V (A_l + π_l √λ I)⁻¹ ),
//! ```
//!
//! both inverses formed once per solve from the eigendecompositions
//! (`U diag(1/(μ_i + shift)) Uᵀ`, one GEMM each), then applied with two small GEMMs per
//! layer. Eigenvalues are clipped at 0 (the factors are sums of outer products, positive
//! semi-definite up to rounding), so for `λ > 0` every `P_l⁻¹` is symmetric positive
//! definite. Parameters outside every layer block (none for `Mlp`) get the identity.
//!
//! (A hand-written loop only where faer has no routine: the π factor, the clipping and
//! the column scaling of `U`.)

use super::{Direction, SolveCache, SolveCtx, SolveFailure, SolveInfo, SolveMethod};
use crate::error::Error;
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::{KfacFactors, Linearization, Model};
use crate::problem::LinearizedProblem;
use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack, StackReq};
use faer::linalg::evd::{self_adjoint_evd, self_adjoint_evd_scratch, ComputeEigenvectors};
use faer::linalg::matmul::matmul;
use faer::matrix_free::{LinOp, Precond};
use faer::prelude::ReborrowMut;
use faer::{Accum, Mat, MatMut, MatRef, Par};

/// The K-FAC factors of one layer and their eigendecompositions.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
struct KfacBlock {
    /// First index of the layer's block in θ.
    start: usize,
    /// `r`: size of `B` (rows of the layer's parameter matrix).
    rows: usize,
    /// `c`: size of `A` (columns, bias included).
    cols: usize,
    /// `A`, `c × c` column-major.
    a: Vec<f64>,
    /// `B`, `r × r` column-major.
    b: Vec<f64>,
    /// Eigenvectors of `A` (`c × c`) and its eigenvalues, clipped at 0.
    a_vectors: Vec<f64>,
    a_values: Vec<f64>,
    /// Eigenvectors of `B` (`r × r`) and its eigenvalues, clipped at 0.
    b_vectors: Vec<f64>,
    b_values: Vec<f64>,
}

/// The K-FAC factors of every layer at the last refresh, kept in the [`SolveCache`].
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct KfacState {
    blocks: Vec<KfacBlock>,
    /// Parameters `p` the factors were computed for.
    dim: usize,
    /// Value of `SolveCache::solves` at the last refresh.
    built_at: u64,
    /// Number of refreshes so far.
    refreshes: u64,
}

impl KfacState {
    /// Number of times the factors were (re)computed.
    pub fn refreshes(&self) -> u64 {
        self.refreshes
    }

    /// The factors of every layer, as the model gave them (or their exponential average).
    pub fn factors(&self) -> Vec<KfacFactors> {
        self.blocks
            .iter()
            .map(|bl| KfacFactors {
                range: bl.start..bl.start + bl.rows * bl.cols,
                a: mat(&bl.a, bl.cols, bl.cols).to_owned(),
                b: mat(&bl.b, bl.rows, bl.rows).to_owned(),
            })
            .collect()
    }

    /// The preconditioner `P⁻¹ = ⊕_l (A_l + π_l√λ I)⁻¹ ⊗ (B_l + √λ/π_l I)⁻¹` at damping
    /// `λ`, applying its GEMMs with `par`. Fails with [`SolveFailure::Kfac`] when a damped
    /// factor is singular (`λ = 0` and a rank-deficient factor) or not finite.
    pub fn preconditioner(&self, damping: f64, par: Par) -> Result<KfacPrecond, SolveFailure> {
        let sqrt_lambda = damping.max(0.0).sqrt();
        let blocks = self
            .blocks
            .iter()
            .map(|bl| {
                let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
                let (ta, tb) = (mean(&bl.a_values), mean(&bl.b_values));
                let pi = match ta > 0.0 && tb > 0.0 {
                    true => (ta / tb).sqrt(),
                    false => 1.0,
                };
                let a_inv = damped_inverse(&bl.a_vectors, &bl.a_values, pi * sqrt_lambda, par);
                let b_inv = damped_inverse(&bl.b_vectors, &bl.b_values, sqrt_lambda / pi, par);
                match (a_inv, b_inv) {
                    (Some(a_inv), Some(b_inv)) => Ok(PreconBlock {
                        start: bl.start,
                        a_inv,
                        b_inv,
                    }),
                    _ => Err(SolveFailure::Kfac {
                        reason: format!(
                            "the damped factors of the layer at θ[{}..] are singular \
                             (damping λ = {damping:e})",
                            bl.start
                        ),
                    }),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(KfacPrecond {
            dim: self.dim,
            blocks,
            par,
        })
    }
}

/// `A` as a faer view of a column-major slice.
fn mat(v: &[f64], rows: usize, cols: usize) -> MatRef<'_, f64> {
    MatRef::from_column_major_slice(v, rows, cols)
}

/// `U diag(1/(μ_i + shift)) Uᵀ`, or `None` when a denominator is not positive and finite.
fn damped_inverse(vectors: &[f64], values: &[f64], shift: f64, par: Par) -> Option<Mat<f64>> {
    let n = values.len();
    let inv: Vec<f64> = values.iter().map(|&mu| 1.0 / (mu + shift)).collect();
    if inv.iter().any(|v| !v.is_finite() || *v <= 0.0) {
        return None;
    }
    let u = mat(vectors, n, n);
    let scaled = Mat::from_fn(n, n, |i, j| u[(i, j)] * inv[j]);
    let mut out = Mat::zeros(n, n);
    matmul(
        out.as_mut(),
        Accum::Replace,
        scaled.as_ref(),
        u.transpose(),
        1.0,
        par,
    );
    Some(out)
}

/// Symmetric eigendecomposition by faer (sequential): eigenvectors column-major and
/// eigenvalues clipped at 0. The lower triangle of `a` is used.
fn eigen(a: &[f64], n: usize) -> Result<(Vec<f64>, Vec<f64>), SolveFailure> {
    let par = Par::Seq;
    let mut u = Mat::<f64>::zeros(n, n);
    let mut s = Diag::<f64>::zeros(n);
    let scratch =
        self_adjoint_evd_scratch::<f64>(n, ComputeEigenvectors::Yes, par, Default::default());
    let mut mem = MemBuffer::new(scratch);
    self_adjoint_evd(
        mat(a, n, n),
        s.as_mut(),
        Some(u.as_mut()),
        par,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|e| SolveFailure::Kfac {
        reason: format!("eigendecomposition of a {n}×{n} factor failed ({e:?})"),
    })?;
    let values = s.column_vector().iter().map(|&v| v.max(0.0)).collect();
    let vectors = (0..n).flat_map(|j| u.col(j).iter().copied().collect::<Vec<_>>());
    Ok((vectors.collect(), values))
}

/// Makes sure `cache.kfac` holds factors at most `refresh_every − 1` solves old,
/// recomputing them (and averaging with the old ones when `decay > 0`) if not. The model's
/// backward passes are counted as vjps.
///
/// Fails with [`SolveFailure::Direct`] (an [`Error::Unsupported`]) for a metric that is
/// not diagonal or a model without factors, and with [`SolveFailure::Kfac`] for negative
/// or non-finite metric weights or a failed eigendecomposition.
pub(super) fn refresh<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    refresh_every: usize,
    decay: f64,
    cache: &mut SolveCache,
) -> Result<(), SolveFailure> {
    let p = lin.problem().n_params();
    let fresh = cache
        .kfac
        .as_ref()
        .is_some_and(|st| st.dim == p && cache.solves - st.built_at < refresh_every as u64);
    if fresh {
        return Ok(());
    }
    let w = metric_weights(lin)?;
    let q = (w.len() / lin.problem().model().n_samples().max(1)).max(1);
    let factors = lin.linearization_mut().kfac_factors(&w).ok_or_else(|| {
        SolveFailure::Direct(Error::Unsupported(
            "K-FAC needs a model with layer structure (`Mlp`); this model provides no \
                 Kronecker factors — use `Preconditioner::Nystrom` or `None`"
                .into(),
        ))
    })?;
    lin.count_products(0, q as u64);
    let old = cache.kfac.take().filter(|st| st.dim == p);
    let refreshes = old.as_ref().map_or(0, |st| st.refreshes) + 1;
    let blocks = factors
        .into_iter()
        .enumerate()
        .map(|(l, f)| {
            let prev = old.as_ref().and_then(|st| st.blocks.get(l));
            new_block(f, prev.filter(|_| decay > 0.0), decay)
        })
        .collect::<Result<Vec<_>, _>>()?;
    cache.kfac = Some(KfacState {
        blocks,
        dim: p,
        built_at: cache.solves,
        refreshes,
    });
    Ok(())
}

/// `diag(M)` at this point, checked to be finite, `≥ 0` and not all zero.
fn metric_weights<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &LinearizedProblem<'_, Mo, Lo, Me>,
) -> Result<Vec<f64>, SolveFailure> {
    let mut w = vec![0.0; lin.outputs().len()];
    let metric = lin.problem().metric();
    if !metric.diagonal(&lin.point(), &mut w) {
        return Err(SolveFailure::Direct(Error::Unsupported(format!(
            "K-FAC needs a diagonal metric (WeightedL2, Euclidean, the loss Hessian of a \
             pointwise loss); the {} metric couples outputs — use `Preconditioner::Nystrom` \
             or `None`",
            metric.name()
        ))));
    }
    if let Some(i) = w.iter().position(|v| !v.is_finite() || *v < 0.0) {
        return Err(SolveFailure::Kfac {
            reason: format!(
                "metric weight {} at output {i} is negative or not finite",
                w[i]
            ),
        });
    }
    if w.iter().sum::<f64>() <= 0.0 {
        return Err(SolveFailure::Kfac {
            reason: "the metric weights are all zero".into(),
        });
    }
    Ok(w)
}

/// One layer's block from fresh factors, averaged with `prev` (same shape) when given.
fn new_block(
    f: KfacFactors,
    prev: Option<&KfacBlock>,
    decay: f64,
) -> Result<KfacBlock, SolveFailure> {
    let (rows, cols) = (f.b.nrows(), f.a.nrows());
    let flat = |m: &Mat<f64>| -> Vec<f64> {
        let n = m.nrows();
        // symmetrised: the GEMM `X Xᵀ` is symmetric only up to rounding
        (0..n * n)
            .map(|k| 0.5 * (m[(k % n, k / n)] + m[(k / n, k % n)]))
            .collect()
    };
    let (mut a, mut b) = (flat(&f.a), flat(&f.b));
    if let Some(prev) = prev.filter(|pb| pb.rows == rows && pb.cols == cols) {
        let avg = |new: &mut [f64], old: &[f64]| {
            new.iter_mut()
                .zip(old)
                .for_each(|(n, o)| *n = decay * o + (1.0 - decay) * *n)
        };
        avg(&mut a, &prev.a);
        avg(&mut b, &prev.b);
    }
    if let Some(i) = a.iter().chain(&b).position(|v| !v.is_finite()) {
        return Err(SolveFailure::Kfac {
            reason: format!(
                "non-finite factor entry {i} in the layer at θ[{}..]",
                f.range.start
            ),
        });
    }
    let (a_vectors, a_values) = eigen(&a, cols)?;
    let (b_vectors, b_values) = eigen(&b, rows)?;
    Ok(KfacBlock {
        start: f.range.start,
        rows,
        cols,
        a,
        b,
        a_vectors,
        a_values,
        b_vectors,
        b_values,
    })
}

/// One layer's damped inverse factors.
#[derive(Debug)]
struct PreconBlock {
    start: usize,
    a_inv: Mat<f64>,
    b_inv: Mat<f64>,
}

/// `P⁻¹ = ⊕_l (A_l + π_l√λ I)⁻¹ ⊗ (B_l + √λ/π_l I)⁻¹` as a faer `LinOp` / `Precond`
/// (symmetric positive definite for `λ > 0`), built by [`KfacState::preconditioner`].
#[derive(Debug)]
pub struct KfacPrecond {
    dim: usize,
    blocks: Vec<PreconBlock>,
    par: Par,
}

impl KfacPrecond {
    /// `out = P⁻¹ v` for one vector (both of length `p`).
    pub fn apply_vec(&self, v: &[f64], out: &mut [f64]) {
        out.copy_from_slice(v);
        let rmax = self
            .blocks
            .iter()
            .map(|b| b.b_inv.nrows())
            .max()
            .unwrap_or(0);
        let cmax = self
            .blocks
            .iter()
            .map(|b| b.a_inv.nrows())
            .max()
            .unwrap_or(0);
        let mut tmp = vec![0.0; rmax * cmax];
        for bl in &self.blocks {
            let (r, c) = (bl.b_inv.nrows(), bl.a_inv.nrows());
            let range = bl.start..bl.start + r * c;
            let t = MatMut::from_column_major_slice_mut(&mut tmp[..r * c], r, c);
            let vb = mat(&v[range.clone()], r, c);
            matmul(t, Accum::Replace, vb, bl.a_inv.as_ref(), 1.0, self.par);
            let ob = MatMut::from_column_major_slice_mut(&mut out[range], r, c);
            let t = mat(&tmp[..r * c], r, c);
            matmul(ob, Accum::Replace, bl.b_inv.as_ref(), t, 1.0, self.par);
        }
    }
}

impl LinOp<f64> for KfacPrecond {
    fn apply_scratch(&self, _k: usize, _par: Par) -> StackReq {
        StackReq::EMPTY
    }
    fn nrows(&self) -> usize {
        self.dim
    }
    fn ncols(&self) -> usize {
        self.dim
    }
    fn apply(&self, mut out: MatMut<'_, f64>, rhs: MatRef<'_, f64>, _par: Par, _st: &mut MemStack) {
        let mut v = vec![0.0; self.dim];
        let mut o = vec![0.0; self.dim];
        for j in 0..rhs.ncols() {
            v.iter_mut()
                .zip(rhs.col(j).iter())
                .for_each(|(v, r)| *v = *r);
            self.apply_vec(&v, &mut o);
            out.rb_mut()
                .col_mut(j)
                .iter_mut()
                .zip(&o)
                .for_each(|(d, s)| *d = *s);
        }
    }
    fn conj_apply(&self, out: MatMut<'_, f64>, rhs: MatRef<'_, f64>, par: Par, st: &mut MemStack) {
        self.apply(out, rhs, par, st)
    }
}

impl Precond<f64> for KfacPrecond {}

/// [`LinearSolver::Kfac`](super::LinearSolver::Kfac) with `(refresh_every, decay)`:
/// `x = P⁻¹ b` (`b` given or `Jᵀ r`, one vjp), no CG. The residual is not computed (that
/// would cost a Gram product): `rel_residual` is NaN.
pub(super) fn solve<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    dir: Direction<'_>,
    (refresh_every, decay): (usize, f64),
    ctx: &mut SolveCtx<'_>,
) -> Result<SolveInfo, SolveFailure> {
    let b = dir.rhs.param_rhs(lin);
    let (x, damping, par, cache) = (dir.x, ctx.damping, ctx.par, &mut *ctx.cache);
    refresh(lin, refresh_every, decay, cache)?;
    let state = cache.kfac.as_ref().ok_or_else(|| SolveFailure::Kfac {
        reason: "no factors after a refresh".into(),
    })?;
    state.preconditioner(damping, par)?.apply_vec(&b, x);
    Ok(SolveInfo::direct(SolveMethod::Kfac, f64::NAN))
}

/// The model's factors at this linearisation, for the diagonal metric of the problem (the
/// input of [`KfacState`]; for tests and benchmarks). Fails as `refresh` does.
pub fn factors<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
) -> Result<Vec<KfacFactors>, SolveFailure> {
    let mut cache = SolveCache::default();
    refresh(lin, 1, 0.0, &mut cache)?;
    Ok(cache.kfac.map(|st| st.factors()).unwrap_or_default())
}
