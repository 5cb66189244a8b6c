//! `LinearSolver::LeastSquares`: at moderate damping and no cut-off it is the Cholesky
//! direction `(JᵀMJ + λI)⁻¹ Jᵀ r` (SVD path and eigendecomposition path); without damping
//! it gives the minimum-norm least-squares solution of a rank-deficient problem; bad
//! settings are refused.

mod common;

use common::{mat, matvec, rel_diff, rng, spd, vec};
use faer::Mat;
use natgrad::linsolve::{LinearSolver, Rhs, SolveFailure};
use natgrad::loss::Loss;
use natgrad::metric::{DenseMetric, Euclidean, Metric, WeightedL2};
use natgrad::model::{LinearModel, Model};
use natgrad::{FitProblem, NaturalGradient, SquaredError};

fn direction<Mo: Model, Lo: Loss, Me: Metric>(
    pb: &FitProblem<Mo, Lo, Me>,
    theta: &[f64],
    rhs: Rhs<'_>,
    lambda: f64,
    solver: &LinearSolver,
) -> (Vec<f64>, f64) {
    let mut lin = pb.linearize(theta).unwrap();
    let (d, info) = common::solve_fresh(&mut lin, rhs, lambda, solver)
        .unwrap_or_else(|e| panic!("{solver:?}: {e}"));
    (d, info.rel_residual)
}

/// Least squares (rcond = 0) against Cholesky at λ = 1e-3, for a cotangent and a
/// parameter-space right-hand side.
fn agrees_with_cholesky<Mo: Model, Lo: Loss, Me: Metric>(pb: &FitProblem<Mo, Lo, Me>, seed: u64) {
    let (n, p) = (pb.n_outputs(), pb.n_params());
    let mut r = rng(seed);
    let theta = vec(&mut r, p);
    let cot = vec(&mut r, n);
    let b = vec(&mut r, p);
    let ls = LinearSolver::LeastSquares { rcond: 0.0 };
    for rhs in [
        Rhs::Cotangent {
            r: &cot,
            jt_r: None,
        },
        Rhs::Params(&b),
    ] {
        let (d_ls, res) = direction(pb, &theta, rhs, 1e-3, &ls);
        let (d_ch, _) = direction(pb, &theta, rhs, 1e-3, &LinearSolver::Cholesky);
        let e = rel_diff(&d_ls, &d_ch);
        assert!(e <= 1e-9, "n={n}, p={p}, {rhs:?}: {e:e}");
        assert!(res <= 1e-10, "residual {res:e}");
    }
}

#[test]
fn least_squares_with_damping_is_the_cholesky_direction() {
    for (case, &(n, p)) in [(12, 30), (30, 12)].iter().enumerate() {
        let mut r = rng(70 + case as u64);
        let a = mat(&mut r, n, p);
        let u = vec(&mut r, n);
        let model = || LinearModel::dense(a.clone()).unwrap();
        let l2 = || SquaredError::l2(u.clone()).unwrap();
        let w: Vec<f64> = (0..n).map(|i| 0.5 + (i as f64) / n as f64).collect();
        agrees_with_cholesky(&FitProblem::new(model(), l2(), Euclidean).unwrap(), 1);
        agrees_with_cholesky(
            &FitProblem::new(model(), l2(), WeightedL2::new(w).unwrap()).unwrap(),
            2,
        );
        agrees_with_cholesky(
            &FitProblem::new(
                model(),
                l2(),
                DenseMetric::new(spd(&mut r, n, 0.5)).unwrap(),
            )
            .unwrap(),
            3,
        );
    }
}

/// `J = B C` of rank 3 (`B`: 20×3, `C`: 3×8): its pseudo-inverse is
/// `J⁺ = Cᵀ(CCᵀ)⁻¹ (BᵀB)⁻¹Bᵀ`, so the minimum-norm minimiser of `‖J d − r‖` is `J⁺ r`.
/// Any other minimiser differs from it by a null-space vector of `J`, so `d` must also be
/// orthogonal to the null space (it lies in the row space of `C`).
#[test]
fn least_squares_gives_the_minimum_norm_solution_of_a_rank_deficient_problem() {
    let (n, p, k) = (20, 8, 3);
    let mut r = rng(5);
    let bm = mat(&mut r, n, k);
    let cm = mat(&mut r, k, p);
    let j = Mat::from_fn(n, p, |i, l| (0..k).map(|q| bm[(i, q)] * cm[(q, l)]).sum());
    let target = vec(&mut r, n);
    let theta = vec(&mut r, p);
    let pb = FitProblem::new(
        LinearModel::dense(j.clone()).unwrap(),
        SquaredError::l2(target).unwrap(),
        Euclidean,
    )
    .unwrap();
    let cot = vec(&mut r, n);
    let (d, _) = direction(
        &pb,
        &theta,
        Rhs::Cotangent {
            r: &cot,
            jt_r: None,
        },
        0.0,
        &LinearSolver::LeastSquares { rcond: 1e-10 },
    );
    // J⁺ r by the formula, with independent dense solves.
    let t = |m: &Mat<f64>| Mat::from_fn(m.ncols(), m.nrows(), |a, b| m[(b, a)]);
    let (bt, ct) = (t(&bm), t(&cm));
    let btb = Mat::from_fn(k, k, |a, b| (0..n).map(|i| bm[(i, a)] * bm[(i, b)]).sum());
    let cct = Mat::from_fn(k, k, |a, b| (0..p).map(|i| cm[(a, i)] * cm[(b, i)]).sum());
    let y = common::dense_solve(&btb, &matvec(&bt, &cot));
    let z = common::dense_solve(&cct, &y);
    let expected = matvec(&ct, &z);
    let e = rel_diff(&d, &expected);
    assert!(e <= 1e-10, "min-norm solution: {e:e}");
    // The normal equations JᵀJ d = Jᵀ r hold.
    let jt = t(&j);
    let lhs = matvec(&jt, &matvec(&j, &d));
    let rhs = matvec(&jt, &cot);
    assert!(rel_diff(&lhs, &rhs) <= 1e-10);
    // The Cholesky path cannot factor the singular Gram matrix without damping.
    let mut lin = pb.linearize(&theta).unwrap();
    let chol = common::solve_fresh(
        &mut lin,
        Rhs::Cotangent {
            r: &cot,
            jt_r: None,
        },
        0.0,
        &LinearSolver::Cholesky,
    );
    // Either faer's Cholesky meets the zero pivot (a typed failure naming λ = 0), or the
    // rounding lets it through and the solution is not the minimum-norm one.
    match chol {
        Err(SolveFailure::Direct(natgrad::Error::GramNotPositiveDefinite { damping, .. })) => {
            assert_eq!(damping, 0.0)
        }
        Err(other) => panic!("Cholesky on a singular Gram matrix: unexpected {other}"),
        Ok((x, _)) => assert!(rel_diff(&x, &expected) > 1e-6, "Cholesky found J⁺r"),
    }
}

#[test]
fn least_squares_refuses_bad_cut_offs() {
    for rcond in [-1e-12, 1.0, f64::NAN, f64::INFINITY] {
        assert!(LinearSolver::LeastSquares { rcond }.validate().is_err());
        assert!(NaturalGradient::new()
            .with_linear_solver(LinearSolver::LeastSquares { rcond })
            .is_err());
    }
    assert!(LinearSolver::LeastSquares { rcond: 1e-12 }
        .validate()
        .is_ok());
}
