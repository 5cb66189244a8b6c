//! The output metrics' contracts by their definitions (docs/math.md §1), where the rest of
//! the suite only sees them through results that a wrong answer would not change: a
//! metric that hides its diagonal still gives the right Gram products (only the Jacobi
//! preconditioner and the fast paths lose it), and names and sizes appear only in
//! messages. Each expected value is written down from the metric's matrix, not read back
//! from the code (the survivors of cargo-mutants on `src/metric.rs`, docs/testing.md).

mod common;

use faer::Mat;
use natgrad::loss::CrossEntropy;
use natgrad::metric::{
    DenseMetric, Euclidean, LossHessian, Metric, OutputPoint, SparseMetric, WeightedL2,
};
use natgrad::model::LinearModel;
use natgrad::{Error, FitProblem, SquaredError};

/// A tridiagonal SPD `K` (not diagonal): 2 on the diagonal, −½ beside it.
fn tridiagonal(n: usize) -> Mat<f64> {
    Mat::from_fn(n, n, |i, j| match i.abs_diff(j) {
        0 => 2.0,
        1 => -0.5,
        _ => 0.0,
    })
}

/// `Metric::diagonal` writes `diag(M)` and says `true` exactly when `M` is diagonal:
/// `diag(w)` for `WeightedL2`, all ones for `Euclidean` on any size, `w/(v(1−v))` for the
/// loss Hessian of a cross-entropy; `false` for a dense or sparse `K` with off-diagonal
/// entries and for the loss Hessian of a squared error in such a `K`.
#[test]
fn metric_diagonal_is_reported_exactly_when_the_metric_is_diagonal() {
    let n = 4;
    let y = [0.3, 0.6, 0.2, 0.9];
    let l2 = SquaredError::l2(vec![0.0; n]).unwrap();
    let at = OutputPoint {
        outputs: &y,
        loss: &l2,
    };
    let mut out = vec![f64::NAN; n];

    let w = vec![0.5, 1.5, 2.0, 0.25];
    assert!(Metric::diagonal(
        &WeightedL2::new(w.clone()).unwrap(),
        &at,
        &mut out
    ));
    assert_eq!(out, w, "diag(diag(w)) = w");

    out.fill(f64::NAN);
    assert!(Metric::diagonal(&Euclidean, &at, &mut out), "I is diagonal");
    assert_eq!(out, vec![1.0; n], "diag(I) on n = {n} outputs");

    out.fill(f64::NAN);
    let dense = DenseMetric::new(tridiagonal(n)).unwrap();
    assert!(
        !Metric::diagonal(&dense, &at, &mut out),
        "dense K has K[0,1] = −½"
    );
    let sparse = SparseMetric::new(common::sparse_spd(n)).unwrap();
    assert!(
        !Metric::diagonal(&sparse, &at, &mut out),
        "sparse K has K[0,1] = −1"
    );

    // Fisher metric of the cross-entropy: ∂²/∂v² of −w(u ln v + (1−u) ln(1−v)) in
    // expectation over u ~ Bernoulli(v) is w/(v(1−v)).
    let ce = CrossEntropy::weighted(vec![0.0, 1.0, 0.25, 1.0], w.clone()).unwrap();
    let at_ce = OutputPoint {
        outputs: &y,
        loss: &ce,
    };
    out.fill(f64::NAN);
    assert!(Metric::diagonal(&LossHessian, &at_ce, &mut out));
    for i in 0..n {
        let fisher = w[i] / (y[i] * (1.0 - y[i]));
        assert!(
            (out[i] - fisher).abs() <= 1e-14 * fisher,
            "{i}: {} vs {fisher}",
            out[i]
        );
    }
    let squared_in_k = SquaredError::new(vec![0.0; n], dense).unwrap();
    let at_k = OutputPoint {
        outputs: &y,
        loss: &squared_in_k,
    };
    assert!(!Metric::diagonal(&LossHessian, &at_k, &mut out), "∇²ℓ = K");
}

/// With a diagonal metric the problem offers the Jacobi diagonal `diag(AᵀWA) + λ` of a
/// linear model `y = Aθ` (the source of `Preconditioner::Jacobi`), for `Euclidean` too.
#[test]
fn diagonal_metrics_give_the_jacobi_diagonal_of_the_gram_matrix() {
    let a = Mat::from_fn(3, 2, |i, j| [[1.0, 2.0], [-1.0, 0.5], [3.0, -2.0]][i][j]);
    let lambda = 0.125;
    // Column sums of squares: 1 + 1 + 9 = 11, 4 + ¼ + 4 = 8.25.
    let euclid = FitProblem::new(
        LinearModel::dense(a.clone()).unwrap(),
        SquaredError::new(vec![0.0; 3], Euclidean).unwrap(),
        Euclidean,
    )
    .unwrap();
    let d = euclid.linearize(&[0.1, 0.2]).unwrap().gram_diagonal(lambda);
    assert_eq!(d, Some(vec![11.0 + lambda, 8.25 + lambda]));
    // W = diag(1, 2, ½): 1 + 2 + 4.5 = 7.5, 4 + ½ + 2 = 6.5.
    let w = WeightedL2::new(vec![1.0, 2.0, 0.5]).unwrap();
    let weighted = FitProblem::new(
        LinearModel::dense(a).unwrap(),
        SquaredError::l2(vec![0.0; 3]).unwrap(),
        w,
    )
    .unwrap();
    let d = weighted
        .linearize(&[0.1, 0.2])
        .unwrap()
        .gram_diagonal(lambda);
    assert_eq!(d, Some(vec![7.5 + lambda, 6.5 + lambda]));
}

/// A user metric that does not implement `solve` has no inverse: the default refuses with
/// `Error::Unsupported` naming it (the sample-space direction needs `M⁻¹`), instead of
/// leaving `out` as it was.
#[test]
fn a_metric_without_an_inverse_refuses_to_solve() {
    struct Doubled;
    impl Metric for Doubled {
        fn name(&self) -> &'static str {
            "Doubled"
        }
        fn dim(&self) -> Option<usize> {
            None
        }
        fn apply(&self, _at: &OutputPoint<'_>, v: &[f64], out: &mut [f64]) {
            out.iter_mut().zip(v).for_each(|(o, v)| *o = 2.0 * v);
        }
        fn diagonal(&self, _at: &OutputPoint<'_>, _out: &mut [f64]) -> bool {
            false
        }
        fn select_samples(&self, _s: &[usize], _q: usize, _m: usize) -> natgrad::Result<Self> {
            Ok(Doubled)
        }
    }
    let l2 = SquaredError::l2(vec![0.0; 2]).unwrap();
    let at = OutputPoint {
        outputs: &[0.0, 0.0],
        loss: &l2,
    };
    let mut out = vec![0.0; 2];
    match Metric::solve(&Doubled, &at, &[1.0, 2.0], &mut out) {
        Err(Error::Unsupported(msg)) => {
            assert!(
                msg.contains("Doubled metric cannot apply its inverse"),
                "{msg}"
            )
        }
        other => panic!("expected Unsupported, got {other:?} with out = {out:?}"),
    }
}

/// Names (used in every message about a metric) are the type names, and the metrics that
/// act on any number of outputs say so (`dim = None`).
#[test]
fn every_metric_is_named_by_its_type_and_the_unsized_ones_have_no_dim() {
    let n = 3;
    let w = WeightedL2::uniform(n).unwrap();
    let dense = DenseMetric::new(tridiagonal(n)).unwrap();
    let sparse = SparseMetric::new(common::sparse_spd(n)).unwrap();
    let named: [(&dyn Metric, &str, Option<usize>); 5] = [
        (&w, "WeightedL2", Some(n)),
        (&Euclidean, "Euclidean", None),
        (&dense, "DenseMetric", Some(n)),
        (&sparse, "SparseMetric", Some(n)),
        (&LossHessian, "LossHessian", None),
    ];
    for (metric, name, dim) in named {
        assert_eq!(metric.name(), name);
        assert_eq!(metric.dim(), dim, "{name}");
    }
    // Euclidean and the loss Hessian take the size of whatever outputs they meet.
    for size in [1, 5] {
        let l2 = SquaredError::l2(vec![0.0; size]).unwrap();
        assert!(Metric::validate(&Euclidean, size, &l2).is_ok());
        assert!(LossHessian.validate(size, &l2).is_ok());
    }
}

/// `DenseMetric` and `SparseMetric` hand back the `K` they were built from, and the sparse
/// one prints its size and number of stored entries (`Debug`, for logs).
#[test]
fn dense_and_sparse_metrics_keep_their_matrix() {
    let n = 3;
    let k = tridiagonal(n);
    assert!(DenseMetric::new(k.clone()).unwrap().matrix() == &k);
    let ks = common::sparse_spd(n);
    let sparse = SparseMetric::new(ks.clone()).unwrap();
    assert_eq!(sparse.matrix(), &ks);
    // The 1D stencil on 3 points: 3 diagonal and 2 × 2 off-diagonal entries.
    assert_eq!(format!("{sparse:?}"), "SparseMetric { n: 3, nnz: 7 }");
}
