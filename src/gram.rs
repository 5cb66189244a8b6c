//! The Gram operator `G + λI = JᵀMJ + λI` (docs/math.md §2), never formed. One type,
//! [`GramOperator`], for the three products the solver needs, each one jvp, one metric
//! product and one vjp:
//!
//! * parameter space, `t ↦ (JᵀMJ + λI) t` on one linearisation — for a diagonal metric the
//!   model's fused, sample-chunked [`Linearization::gram_product`];
//! * sample space, the kernel operator `s ↦ (JJᵀ + λM⁻¹) s` on `Rⁿ` (one vjp, one jvp, one
//!   `M⁻¹` product), whose system gives the same direction by the Woodbury push-through;
//! * the mixed Gram (transport) product `t ↦ G_{k,k−1} t = J_kᵀ M J_{k−1} t` of
//!   docs/math.md §3 on two linearisations (a jvp at the previous one).
//!
//! The operator is built from what it works on — the linearisation(s), the metric at the
//! current outputs (checked, `CheckedMetric`) and the problem's evaluation counters —
//! handed to it by [`crate::LinearizedProblem`]; it does not know the problem type, so
//! `problem` imports `gram` and not the other way round. Every product is counted in one
//! place (`GramOperator::count`).
//!
//! [`GramOperator`] is a faer [`LinOp`], so faer's `conjugate_gradient` solves with it
//! directly; a block of `k` columns is applied with one `jvp_block` and one `vjp_block`
//! (one GEMM for batched models) — for a diagonal metric with the model's
//! [`Linearization::gram_product_block`] (one sample-chunked pass for an `Mlp`) — which
//! is how the Nyström sketch is taken; the block's
//! intermediate matrices live in the scratch declared by [`LinOp::apply_scratch`].
//! [`dense_jacobian`] and [`dense_gram`] build the dense twins used by the direct
//! (Cholesky) path and by the tests.

use crate::counters::Counters;
use crate::error::Error;
use crate::metric::{Metric, OutputPoint};
use crate::model::{col_slice_mut, Linearization};
use faer::dyn_stack::{MemBuffer, MemStack, StackReq};
use faer::linalg::matmul::matmul;
use faer::linalg::{temp_mat_scratch, temp_mat_zeroed};
use faer::mat::AsMatMut;
use faer::matrix_free::LinOp;
use faer::prelude::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};

/// The metric at one point, checked as it is applied: a user-written [`Metric`] is not
/// validated at construction as the crate's own are, so the first non-finite value it
/// returns for a finite input is kept in `fault` as [`Error::NonFiniteMetric`] (naming the
/// metric, the method and the output index), which the linearisation reports
/// ([`crate::LinearizedProblem::fault`]) before any solver blames the operator. One scan of the
/// result per product (the input is scanned only when the result is not finite).
pub(crate) struct CheckedMetric<'a, Me: ?Sized> {
    pub(crate) metric: &'a Me,
    pub(crate) at: OutputPoint<'a>,
    pub(crate) fault: &'a OnceLock<Error>,
}

impl<Me: Metric + ?Sized> CheckedMetric<'_, Me> {
    /// `out = M v`.
    pub(crate) fn apply(&self, v: &[f64], out: &mut [f64]) {
        self.metric.apply(&self.at, v, out);
        self.check("apply", v, out);
    }

    /// `diag(M)` into `out` when `M` is diagonal.
    pub(crate) fn diagonal(&self, out: &mut [f64]) -> bool {
        let diagonal = self.metric.diagonal(&self.at, out);
        if diagonal {
            self.check("diagonal", &[], out);
        }
        diagonal
    }

    /// `out = M⁻¹ v`.
    pub(crate) fn solve(&self, v: &[f64], out: &mut [f64]) -> crate::Result<()> {
        self.metric.solve(&self.at, v, out)?;
        self.check("solve", v, out);
        Ok(())
    }

    fn check(&self, method: &'static str, input: &[f64], out: &[f64]) {
        if self.fault.get().is_some() {
            return;
        }
        if let Some(index) = out.iter().position(|x| !x.is_finite())
            && input.iter().all(|x| x.is_finite())
        {
            let _ = self.fault.set(Error::NonFiniteMetric {
                metric: self.metric.name(),
                method,
                index,
                value: out[index],
            });
        }
    }
}

/// Mutable state of the single-vector products: the linearisation (and, for the transport
/// product, the one at the previous iterate) and scratch vectors allocated once per
/// operator: `jt` of the inner space (`Jt ∈ Rⁿ` or `Jᵀs ∈ Rᵖ`), `mjt ∈ Rⁿ` (`MJt` or
/// `M⁻¹s`), `x` of the outer space.
struct Work<'a, L> {
    lin: &'a mut L,
    previous: Option<&'a mut L>,
    jt: Vec<f64>,
    mjt: Vec<f64>,
    x: Vec<f64>,
}

/// Which Gram operator: the p×p one of parameter space or the n×n one of sample space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Space {
    /// `t ↦ (JᵀMJ + λI) t`, `t ∈ Rᵖ`.
    Params,
    /// `s ↦ (JJᵀ + λM⁻¹) s`, `s ∈ Rⁿ` (the push-through system of docs/math.md §2).
    Samples,
}

/// `t ↦ (JᵀMJ + λI) t` (parameter space) or `s ↦ (JJᵀ + λM⁻¹) s` (sample space) at one
/// linearisation, or the mixed Gram (transport) product `t ↦ J_kᵀ M J_{k−1} t` at two
/// ([`crate::LinearizedProblem::transport_gram`]; p×p, not symmetric, undamped).
///
/// The transport product carries a tangent vector `t` at `θ_{k−1}` (a function `J_{k−1} t`)
/// to the right-hand side of its projection onto the tangent space at `θ_k`; with a solve by
/// `G_k` this is the transport `G_k⁻¹ G_{k,k−1} t` ([`crate::step_rule::transport`]). Its
/// metric is evaluated at the current outputs (it matters only for the loss-Hessian metric).
///
/// The linearisation sits behind a mutex because faer's `LinOp::apply` takes `&self` and
/// must be `Sync`; CG calls it from one thread at a time, so the lock is never contended.
/// No allocation happens per single-vector product.
pub struct GramOperator<'a, L, Me> {
    work: Mutex<Work<'a, L>>,
    space: Space,
    /// The transport product (`work.previous` is set).
    transport: bool,
    metric_failed: AtomicBool,
    metric: CheckedMetric<'a, Me>,
    /// `diag(M)` when the metric is diagonal (parameter space only): the products are then
    /// the model's fused [`Linearization::gram_product`].
    weights: Option<Vec<f64>>,
    damping: f64,
    counters: &'a Counters,
    applied: AtomicU64,
    n: usize,
    p: usize,
}

impl<L, Me> std::fmt::Debug for GramOperator<'_, L, Me> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GramOperator")
            .field("n", &self.n)
            .field("p", &self.p)
            .field("damping", &self.damping)
            .field("space", &self.space)
            .finish()
    }
}

impl<'a, L: Linearization, Me: Metric> GramOperator<'a, L, Me> {
    /// The operator in the given space. In sample space `M⁻¹` comes from
    /// [`Metric::solve`]; a metric that cannot solve makes [`Self::metric_failed`] true.
    pub(crate) fn in_space(
        lin: &'a mut L,
        metric: CheckedMetric<'a, Me>,
        damping: f64,
        counters: &'a Counters,
        space: Space,
    ) -> Self {
        let n = metric.at.outputs.len();
        let p = lin.n_params();
        let (inner, outer) = match space {
            Space::Params => (n, p),
            Space::Samples => (p, n),
        };
        let weights = (space == Space::Params)
            .then(|| {
                let mut w = vec![0.0; n];
                metric.diagonal(&mut w).then_some(w)
            })
            .flatten();
        Self {
            work: Mutex::new(Work {
                lin,
                previous: None,
                jt: vec![0.0; inner],
                mjt: vec![0.0; n],
                x: vec![0.0; outer],
            }),
            space,
            transport: false,
            metric_failed: AtomicBool::new(false),
            metric,
            weights,
            damping,
            counters,
            applied: AtomicU64::new(0),
            n,
            p,
        }
    }

    /// The mixed Gram (transport) product `t ↦ J_kᵀ M J_{k−1} t` from the linearisations
    /// at `θ_k` (`current`) and `θ_{k−1}` (`previous`), with the metric at `θ_k`; the caller
    /// has checked that both have the same numbers of parameters and outputs.
    pub(crate) fn transport(
        current: &'a mut L,
        previous: &'a mut L,
        metric: CheckedMetric<'a, Me>,
        counters: &'a Counters,
    ) -> Self {
        let (n, p) = (metric.at.outputs.len(), current.n_params());
        Self {
            work: Mutex::new(Work {
                lin: current,
                previous: Some(previous),
                jt: vec![0.0; n],
                mjt: vec![0.0; n],
                x: vec![0.0; p],
            }),
            space: Space::Params,
            transport: true,
            metric_failed: AtomicBool::new(false),
            metric,
            weights: None,
            damping: 0.0,
            counters,
            applied: AtomicU64::new(0),
            n,
            p,
        }
    }

    /// The damping λ.
    pub fn damping(&self) -> f64 {
        self.damping
    }

    /// Number of Gram products applied so far (each is one jvp and one vjp).
    pub fn products(&self) -> u64 {
        self.applied.load(Relaxed)
    }

    /// Parameter or sample space.
    pub fn space(&self) -> Space {
        self.space
    }

    /// The dimension the operator acts on (`p` or `n`).
    pub fn dim(&self) -> usize {
        match self.space {
            Space::Params => self.p,
            Space::Samples => self.n,
        }
    }

    /// `true` for the mixed Gram (transport) product on two linearisations.
    pub fn is_transport(&self) -> bool {
        self.transport
    }

    /// `true` once a sample-space product could not apply `M⁻¹` (the metric has no
    /// inverse); the products made since are then meaningless.
    pub fn metric_failed(&self) -> bool {
        self.metric_failed.load(Relaxed)
    }

    /// `out = A t` for one vector, `A` the operator of this space (or the transport
    /// product).
    pub fn apply_vec(&self, t: &[f64], out: &mut [f64]) {
        let mut w = self.work.lock().unwrap_or_else(|e| e.into_inner());
        self.product(&mut w, Some(t), out);
    }

    /// `out = A t` for one vector: `t` itself, or (`None`) the copy in `w.x`.
    fn product(&self, w: &mut Work<'_, L>, t: Option<&[f64]>, out: &mut [f64]) {
        let Work {
            lin,
            previous,
            jt,
            mjt,
            x,
        } = w;
        let t = t.unwrap_or(x.as_slice());
        if let Some(previous) = previous {
            // J_kᵀ M J_{k−1} t: never short-circuited (counted as one jvp and one vjp).
            previous.jvp(t, jt);
            self.metric.apply(jt, mjt);
            lin.vjp(mjt, out);
            return self.count(1);
        }
        if t.iter().all(|&v| v == 0.0) {
            // G·0 = 0: CG's initial residual for a cold start costs no product.
            out.fill(0.0);
            return;
        }
        match self.space {
            Space::Params => {
                match &self.weights {
                    // Sample-chunked and fused where the model can (jvp, W, vjp per chunk).
                    Some(w) => lin.gram_product(w, t, jt, out),
                    None => {
                        lin.jvp(t, jt);
                        self.metric.apply(jt, mjt);
                        lin.vjp(mjt, out);
                    }
                }
                if self.damping != 0.0 {
                    out.iter_mut()
                        .zip(t)
                        .for_each(|(o, t)| *o += self.damping * t);
                }
            }
            Space::Samples => {
                // Here `jt` is the p-vector Jᵀs and `mjt` the n-vector M⁻¹s.
                lin.sample_gram_product(t, jt, out);
                self.add_damped_inverse(t, mjt, out);
            }
        }
        self.count(1);
    }

    /// `k` products made: `k` jvps and `k` vjps on the problem's counters and this
    /// operator's own count. The one place where products are counted.
    fn count(&self, k: u64) {
        self.counters.products(k, k);
        self.applied.fetch_add(k, Relaxed);
    }

    /// `out += λ M⁻¹ s` (sample space); `buf` is n-vector scratch.
    fn add_damped_inverse(&self, s: &[f64], buf: &mut [f64], out: &mut [f64]) {
        if self.damping == 0.0 {
            return;
        }
        if self.metric.solve(s, buf).is_err() {
            self.metric_failed.store(true, Relaxed);
            return;
        }
        out.iter_mut()
            .zip(buf.iter())
            .for_each(|(o, b)| *o += self.damping * b);
    }

    /// The scratch of [`Self::apply_block`] for `k` columns: `J T` and `M J T` (two `n×k`)
    /// in parameter space, `Jᵀ S` (`p×k`) in sample space.
    fn block_scratch(&self, k: usize) -> StackReq {
        match self.space {
            Space::Params => {
                temp_mat_scratch::<f64>(self.n, k).and(temp_mat_scratch::<f64>(self.n, k))
            }
            Space::Samples => temp_mat_scratch::<f64>(self.p, k),
        }
    }

    /// `out = A T` for a block of `k` columns: one `jvp_block` and one `vjp_block`
    /// (`k` Gram products, counted as `k` jvps and `k` vjps); the intermediate matrices
    /// come from `stack` ([`Self::block_scratch`]).
    fn apply_block(
        &self,
        w: &mut Work<'_, L>,
        mut out: MatMut<'_, f64>,
        rhs: MatRef<'_, f64>,
        stack: &mut MemStack,
    ) {
        let k = rhs.ncols();
        match self.space {
            Space::Params => {
                let (mut jt, stack) = temp_mat_zeroed::<f64, _, _>(self.n, k, stack);
                let mut jt = jt.as_mat_mut();
                if let Some(wd) = &self.weights {
                    // Diagonal metric: the model's block product (fused for an `Mlp`).
                    w.lin.gram_product_block(wd, rhs, jt.rb_mut(), out.rb_mut());
                } else {
                    w.lin.jvp_block(rhs, jt.rb_mut());
                    let (mut mjt, _) = temp_mat_zeroed::<f64, _, _>(self.n, k, stack);
                    let mut mjt = mjt.as_mat_mut();
                    for j in 0..k {
                        let (src, dst) = (col_slice(jt.rb(), j), col_slice_mut(mjt.rb_mut(), j));
                        self.metric.apply(src, dst);
                    }
                    w.lin.vjp_block(mjt.rb(), out.rb_mut());
                }
                for j in 0..k {
                    out.rb_mut()
                        .col_mut(j)
                        .iter_mut()
                        .zip(rhs.col(j).iter())
                        .for_each(|(o, t)| *o += self.damping * t);
                }
            }
            Space::Samples => {
                let (mut jts, _) = temp_mat_zeroed::<f64, _, _>(self.p, k, stack);
                let mut jts = jts.as_mat_mut();
                w.lin.vjp_block(rhs, jts.rb_mut());
                w.lin.jvp_block(jts.rb(), out.rb_mut());
                for j in 0..k {
                    w.x.iter_mut()
                        .zip(rhs.col(j).iter())
                        .for_each(|(x, r)| *x = *r);
                    let oj = col_slice_mut(out.rb_mut(), j);
                    self.add_damped_inverse(&w.x, &mut w.mjt, oj);
                }
            }
        }
        self.count(k as u64);
    }
}

/// Column `j` of a column-major, contiguous matrix as a slice.
fn col_slice(m: MatRef<'_, f64>, j: usize) -> &[f64] {
    m.col(j)
        .try_as_col_major()
        .expect("natgrad: column-major block required")
        .as_slice()
}

impl<L: Linearization, Me: Metric> LinOp<f64> for GramOperator<'_, L, Me> {
    /// The block product's intermediate matrices for `k > 1` columns (none for one column,
    /// whose vectors the operator holds, nor for the transport product, column by column).
    fn apply_scratch(&self, rhs_ncols: usize, _par: Par) -> StackReq {
        match rhs_ncols > 1 && !self.is_transport() {
            true => self.block_scratch(rhs_ncols),
            false => StackReq::EMPTY,
        }
    }

    fn nrows(&self) -> usize {
        self.dim()
    }

    fn ncols(&self) -> usize {
        self.dim()
    }

    fn apply(&self, mut out: MatMut<'_, f64>, rhs: MatRef<'_, f64>, _par: Par, st: &mut MemStack) {
        let mut w = self.work.lock().unwrap_or_else(|e| e.into_inner());
        let k = rhs.ncols();
        if k > 1 && !self.is_transport() && out.as_ref().try_as_col_major().is_some() {
            let req = self.block_scratch(k);
            if st.can_hold(req) {
                return self.apply_block(&mut w, out, rhs, st);
            }
            // A caller that declared no scratch: allocate it here rather than panic.
            let mut mem = MemBuffer::new(req);
            return self.apply_block(&mut w, out, rhs, MemStack::new(&mut mem));
        }
        for j in 0..k {
            w.x.iter_mut()
                .zip(rhs.col(j).iter())
                .for_each(|(x, r)| *x = *r);
            self.product(&mut w, None, col_slice_mut(out.rb_mut(), j));
        }
    }

    fn conj_apply(&self, out: MatMut<'_, f64>, rhs: MatRef<'_, f64>, par: Par, st: &mut MemStack) {
        // Real symmetric: the conjugate is the operator itself.
        self.apply(out, rhs, par, st)
    }
}

/// How a dense Jacobian was obtained, with the products it cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JacobianSource {
    /// The model had it at hand.
    Model,
    /// Built column by column from this many jvps.
    Jvps(usize),
    /// Built row by row from this many vjps.
    Vjps(usize),
}

/// The dense n×p Jacobian at a linearisation: the model's own if it has one, otherwise
/// built from `p` jvps or `n` vjps, whichever is fewer (one block product).
pub fn dense_jacobian<L: Linearization>(lin: &mut L, n: usize) -> (Mat<f64>, JacobianSource) {
    if let Some(j) = lin.dense_jacobian() {
        return (j, JacobianSource::Model);
    }
    let p = lin.n_params();
    if p <= n {
        let mut j = Mat::zeros(n, p);
        lin.jvp_block(Mat::<f64>::identity(p, p).as_ref(), j.as_mut());
        (j, JacobianSource::Jvps(p))
    } else {
        let mut jt = Mat::zeros(p, n);
        lin.vjp_block(Mat::<f64>::identity(n, n).as_ref(), jt.as_mut());
        (jt.transpose().to_owned(), JacobianSource::Vjps(n))
    }
}

/// The dense Gram matrix `JᵀMJ + λI` (p×p) from a dense Jacobian: `M` is applied to each
/// column of `J`, then one faer GEMM.
///
/// Fails with [`Error::NonFiniteMetric`] (naming the metric, `apply` and the output index)
/// when the metric returns a non-finite value for a finite column of `J` — the check the
/// matrix-free [`GramOperator`] makes on every product.
pub fn dense_gram<Me: Metric + ?Sized>(
    jac: MatRef<'_, f64>,
    metric: &Me,
    at: &OutputPoint<'_>,
    damping: f64,
    par: Par,
) -> crate::Result<Mat<f64>> {
    let fault = OnceLock::new();
    let checked = CheckedMetric {
        metric,
        at: *at,
        fault: &fault,
    };
    let g = checked_dense_gram(jac, &checked, damping, par);
    fault.into_inner().map_or(Ok(g), Err)
}

/// [`dense_gram`] with the metric's faults kept in `metric.fault` (the linearisation's,
/// so that the solver reports them as it does for the matrix-free products).
pub(crate) fn checked_dense_gram<Me: Metric + ?Sized>(
    jac: MatRef<'_, f64>,
    metric: &CheckedMetric<'_, Me>,
    damping: f64,
    par: Par,
) -> Mat<f64> {
    let (n, p) = (jac.nrows(), jac.ncols());
    let mut mj = Mat::<f64>::zeros(n, p);
    let mut col = vec![0.0; n];
    for j in 0..p {
        col.iter_mut()
            .zip(jac.col(j).iter())
            .for_each(|(c, x)| *c = *x);
        metric.apply(&col, col_slice_mut(mj.as_mut(), j));
    }
    let mut g = Mat::<f64>::zeros(p, p);
    matmul(
        g.as_mut(),
        Accum::Replace,
        jac.transpose(),
        mj.as_ref(),
        1.0,
        par,
    );
    for i in 0..p {
        g[(i, i)] += damping;
    }
    g
}
