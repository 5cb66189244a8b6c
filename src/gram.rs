//! The Gram operator `G + λI = JᵀMJ + λI` (MATH.md §2), never formed: each product is
//! one jvp, one metric product and one vjp on a single linearisation.
//!
//! [`GramOperator`] is a faer [`LinOp`], so faer's `conjugate_gradient` solves with it
//! directly. [`dense_jacobian`] and [`dense_gram`] build the dense twins used by the
//! direct (Cholesky) path and by the tests.

use crate::metric::{Metric, OutputPoint};
use crate::model::{col_slice_mut, Linearization};
use crate::problem::Counters;
use faer::dyn_stack::{MemStack, StackReq};
use faer::linalg::matmul::matmul;
use faer::matrix_free::LinOp;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Mutable state of one Gram product: the linearisation and two n-vectors of scratch.
struct Work<'a, L> {
    lin: &'a mut L,
    jt: Vec<f64>,
    mjt: Vec<f64>,
    x: Vec<f64>,
}

/// `t ↦ (JᵀMJ + λI) t` at one linearisation.
///
/// The linearisation sits behind a mutex because faer's `LinOp::apply` takes `&self` and
/// must be `Sync`; CG calls it from one thread at a time, so the lock is never contended.
/// No allocation happens per product.
pub struct GramOperator<'a, L, Me> {
    work: Mutex<Work<'a, L>>,
    metric: &'a Me,
    at: OutputPoint<'a>,
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
            .finish()
    }
}

impl<'a, L: Linearization, Me: Metric> GramOperator<'a, L, Me> {
    pub(crate) fn new(
        lin: &'a mut L,
        metric: &'a Me,
        at: OutputPoint<'a>,
        damping: f64,
        counters: &'a Counters,
    ) -> Self {
        let n = at.outputs.len();
        let p = lin.n_params();
        Self {
            work: Mutex::new(Work {
                lin,
                jt: vec![0.0; n],
                mjt: vec![0.0; n],
                x: vec![0.0; p],
            }),
            metric,
            at,
            damping,
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

    /// `out = (JᵀMJ + λI) t` for one vector.
    pub fn apply_vec(&self, t: &[f64], out: &mut [f64]) {
        let mut w = self.work.lock().unwrap_or_else(|e| e.into_inner());
        let Work { lin, jt, mjt, .. } = &mut *w;
        self.product(lin, t, jt, mjt, out);
    }

    fn product(&self, lin: &mut L, t: &[f64], jt: &mut [f64], mjt: &mut [f64], out: &mut [f64]) {
        if t.iter().all(|&v| v == 0.0) {
            // G·0 = 0: CG's initial residual for a cold start costs no product.
            out.fill(0.0);
            return;
        }
        lin.jvp(t, jt);
        self.metric.apply(&self.at, jt, mjt);
        lin.vjp(mjt, out);
        if self.damping != 0.0 {
            out.iter_mut()
                .zip(t)
                .for_each(|(o, t)| *o += self.damping * t);
        }
        self.counters.jvp.fetch_add(1, Relaxed);
        self.counters.vjp.fetch_add(1, Relaxed);
        self.applied.fetch_add(1, Relaxed);
    }
}

impl<L: Linearization, Me: Metric> LinOp<f64> for GramOperator<'_, L, Me> {
    fn apply_scratch(&self, _rhs_ncols: usize, _par: Par) -> StackReq {
        StackReq::EMPTY
    }

    fn nrows(&self) -> usize {
        self.p
    }

    fn ncols(&self) -> usize {
        self.p
    }

    fn apply(&self, mut out: MatMut<'_, f64>, rhs: MatRef<'_, f64>, _par: Par, _: &mut MemStack) {
        let mut w = self.work.lock().unwrap_or_else(|e| e.into_inner());
        let Work { lin, jt, mjt, x } = &mut *w;
        for j in 0..rhs.ncols() {
            x.iter_mut()
                .zip(rhs.col(j).iter())
                .for_each(|(x, r)| *x = *r);
            let oj = col_slice_mut(out.rb_mut(), j);
            self.product(lin, x, jt, mjt, oj);
        }
    }

    fn conj_apply(&self, out: MatMut<'_, f64>, rhs: MatRef<'_, f64>, par: Par, st: &mut MemStack) {
        // Real symmetric: the conjugate is the operator itself.
        self.apply(out, rhs, par, st)
    }
}

use faer::prelude::ReborrowMut;

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
pub fn dense_gram<Me: Metric + ?Sized>(
    jac: MatRef<'_, f64>,
    metric: &Me,
    at: &OutputPoint<'_>,
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
        metric.apply(at, &col, col_slice_mut(mj.as_mut(), j));
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
