//! Matrix-free preconditioned CG on the Gram operator (faer's `conjugate_gradient`).

use super::{CgSettings, Preconditioner, SolveFailure, SolveInfo};
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::Linearized;
use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::matrix_free::conjugate_gradient::{
    conjugate_gradient, conjugate_gradient_scratch, CgError, CgParams,
};
use faer::matrix_free::{IdentityPrecond, InitialGuessStatus, LinOp, Precond};
use faer::{ColMut, ColRef, MatMut, MatRef, Par};

/// The CG preconditioner actually used.
#[derive(Debug)]
enum CgPrecond {
    Identity(IdentityPrecond),
    Jacobi(Diag<f64>),
}

impl CgPrecond {
    fn name(&self) -> &'static str {
        match self {
            CgPrecond::Identity(_) => "none",
            CgPrecond::Jacobi(_) => "jacobi",
        }
    }
}

impl LinOp<f64> for CgPrecond {
    fn apply_scratch(&self, k: usize, par: Par) -> faer::dyn_stack::StackReq {
        match self {
            CgPrecond::Identity(p) => LinOp::<f64>::apply_scratch(p, k, par),
            CgPrecond::Jacobi(d) => d.apply_scratch(k, par),
        }
    }
    fn nrows(&self) -> usize {
        match self {
            CgPrecond::Identity(p) => p.dim,
            CgPrecond::Jacobi(d) => d.dim(),
        }
    }
    fn ncols(&self) -> usize {
        self.nrows()
    }
    fn apply(&self, out: MatMut<'_, f64>, rhs: MatRef<'_, f64>, par: Par, st: &mut MemStack) {
        match self {
            CgPrecond::Identity(p) => p.apply(out, rhs, par, st),
            CgPrecond::Jacobi(d) => d.apply(out, rhs, par, st),
        }
    }
    fn conj_apply(&self, out: MatMut<'_, f64>, rhs: MatRef<'_, f64>, par: Par, st: &mut MemStack) {
        self.apply(out, rhs, par, st)
    }
}

impl Precond<f64> for CgPrecond {}

pub(super) fn solve_cg<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut Linearized<'_, Mo, Lo, Me>,
    rhs: &[f64],
    x: &mut [f64],
    damping: f64,
    s: &CgSettings,
    par: Par,
) -> Result<SolveInfo, SolveFailure> {
    let p = rhs.len();
    let precond = match s.preconditioner {
        Preconditioner::Jacobi => match lin.gram_diagonal(damping) {
            Some(d) if d.iter().all(|&v| v > 0.0 && v.is_finite()) => {
                CgPrecond::Jacobi(faer::Col::from_fn(p, |i| 1.0 / d[i]).into_diagonal())
            }
            _ => CgPrecond::Identity(IdentityPrecond { dim: p }),
        },
        Preconditioner::None => CgPrecond::Identity(IdentityPrecond { dim: p }),
    };
    let op = lin.gram(damping);
    // Always `MaybeNonZero`: faer 0.24.4's CG leaves its residual uninitialised when told
    // the guess is `Zero` (it never copies `b` into `r`). A cold start is a zero guess,
    // whose product `G·0` the Gram operator short-circuits, so this costs nothing.
    if !s.warm_start {
        x.fill(0.0);
    }
    let initial_guess = InitialGuessStatus::MaybeNonZero;
    let params = CgParams::<f64> {
        rel_tolerance: s.rel_tol,
        abs_tolerance: s.abs_tol,
        max_iters: s.max_iters,
        initial_guess,
        ..CgParams::default()
    };
    let mut mem = MemBuffer::new(conjugate_gradient_scratch(&precond, &op, 1, par));
    let mut iters = 0usize;
    let result = conjugate_gradient(
        ColMut::from_slice_mut(x).as_mat_mut(),
        &precond,
        &op,
        ColRef::from_slice(rhs).as_mat(),
        params,
        |_| iters += 1,
        par,
        MemStack::new(&mut mem),
    );
    let pname = precond.name();
    match result {
        Ok(info) => Ok(SolveInfo {
            method: "cg",
            iters: info.iter_count,
            rel_residual: info.rel_residual,
            preconditioner: pname,
            truncated: false,
        }),
        Err(CgError::NoConvergence { rel_residual, .. }) if s.accept_truncated => Ok(SolveInfo {
            method: "cg",
            iters,
            rel_residual,
            preconditioner: pname,
            truncated: true,
        }),
        Err(CgError::NoConvergence { rel_residual, .. }) => Err(SolveFailure::NoConvergence {
            iters,
            rel_residual,
            rel_tol: s.rel_tol,
        }),
        Err(CgError::NonPositiveDefiniteOperator) => {
            Err(SolveFailure::OperatorNotPositiveDefinite {
                iteration: iters,
                damping,
            })
        }
        Err(CgError::NonPositiveDefinitePreconditioner) => {
            Err(SolveFailure::PreconditionerNotPositiveDefinite { iteration: iters })
        }
    }
}
