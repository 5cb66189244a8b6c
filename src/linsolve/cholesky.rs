//! The dense direct path: form `J`, then `G + λI`, and factor it (faer's `llt`).

use super::{SolveFailure, SolveInfo};
use crate::error::Error;
use crate::gram::{dense_gram, dense_jacobian, JacobianSource};
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::Linearized;
use faer::linalg::solvers::Solve;
use faer::{ColMut, Par, Side};

pub(super) fn solve_cholesky<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut Linearized<'_, Mo, Lo, Me>,
    rhs: &[f64],
    x: &mut [f64],
    damping: f64,
    par: Par,
) -> Result<SolveInfo, SolveFailure> {
    let jac = counted_jacobian(lin);
    let g = dense_gram(
        jac.as_ref(),
        lin.problem().metric(),
        &lin.point(),
        damping,
        par,
    );
    let llt = g.llt(Side::Lower).map_err(|e| {
        let faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index } = e;
        SolveFailure::Direct(Error::GramNotPositiveDefinite { index, damping })
    })?;
    x.copy_from_slice(rhs);
    llt.solve_in_place(ColMut::from_slice_mut(x).as_mat_mut());
    let mut r = vec![0.0; rhs.len()];
    crate::linalg::gemv(&mut r, g.as_ref(), x, par);
    let res: f64 = r
        .iter()
        .zip(rhs)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        .sqrt();
    let bn = crate::linalg::norm(rhs);
    Ok(SolveInfo {
        method: "cholesky",
        iters: 0,
        rel_residual: if bn > 0.0 { res / bn } else { 0.0 },
        preconditioner: "none",
        sketch_products: 0,
        truncated: false,
    })
}

/// The dense Jacobian (the model's, or from `min(n, p)` products, which are counted).
pub(super) fn counted_jacobian<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut Linearized<'_, Mo, Lo, Me>,
) -> faer::Mat<f64> {
    let n = lin.outputs().len();
    let (jac, source) = dense_jacobian(lin.linearization_mut(), n);
    match source {
        JacobianSource::Model => {}
        JacobianSource::Jvps(k) => lin.count_products(k as u64, 0),
        JacobianSource::Vjps(k) => lin.count_products(0, k as u64),
    }
    jac
}
