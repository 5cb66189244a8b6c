//! Degenerate problems are typed errors at construction, and the small gaps of issue 15
//! item 9: a `Clone` sparse metric, `Mlp::evaluate` at new points, and the sparse
//! metric's failed pivot in the user's numbering.

use faer::{Mat, MatMut};
use natgrad::loss::FnLoss;
use natgrad::metric::FixedMetric;
use natgrad::model::{Activation, ClosureModel, LinearModel, Mlp, QuadraticModel};
use natgrad::{
    CrossEntropy, DenseMetric, Error, Euclidean, FitProblem, LogitCrossEntropy, Loss, SparseMetric,
    SquaredError, WeightedL2,
};
use sprs::{CsMat, TriMat};

fn empty_text<T: std::fmt::Debug>(r: natgrad::Result<T>) -> String {
    match r {
        Err(e @ Error::Empty(_)) => e.to_string(),
        other => panic!("expected Error::Empty, got {other:?}"),
    }
}

/// Item 5: no data (n = 0) or no parameters (p = 0) is refused by every constructor where
/// it can occur, and by `FitProblem::new` for any model (e.g. closures).
#[test]
fn empty_data_and_no_parameters_are_typed_errors() {
    let texts = [
        empty_text(LinearModel::dense(Mat::zeros(0, 3))),
        empty_text(LinearModel::dense(Mat::zeros(3, 0))),
        empty_text(LinearModel::sparse(CsMat::zero((0, 3)))),
        empty_text(LinearModel::sparse(CsMat::zero((3, 0)))),
        empty_text(SquaredError::l2(vec![])),
        empty_text(SquaredError::new(vec![], Euclidean)),
        empty_text(WeightedL2::uniform(0)),
        empty_text(LogitCrossEntropy::new(vec![])),
        empty_text(CrossEntropy::weighted(vec![], vec![])),
        empty_text(FnLoss::new(
            Some(0),
            |_: &[f64]| 0.0,
            |_: &[f64], _: &mut [f64]| {},
        )),
        empty_text(WeightedL2::new(vec![1.0; 4]).and_then(|w| w.select_samples(&[], 1, 4))),
        empty_text(
            CrossEntropy::new(vec![1.0; 4]).and_then(|l| Loss::select_samples(&l, &[], 1, 4)),
        ),
        empty_text(CrossEntropy::new(vec![])),
        empty_text(WeightedL2::new(vec![])),
        empty_text(DenseMetric::new(Mat::zeros(0, 0))),
        empty_text(SparseMetric::new(CsMat::zero((0, 0)))),
        empty_text(QuadraticModel::new(
            Mat::zeros(0, 1),
            vec![Mat::zeros(0, 0)],
        )),
        empty_text(QuadraticModel::new(Mat::zeros(2, 0), vec![])),
    ];
    for t in &texts {
        assert!(
            t.starts_with("empty problem: ") && t.ends_with(" is 0"),
            "{t}"
        );
    }
    assert!(
        texts[0].contains("rows of the design matrix"),
        "{}",
        texts[0]
    );
    assert!(texts[1].contains("parameters p"), "{}", texts[1]);

    let no_params = ClosureModel::new(
        0,
        2,
        |_: &[f64], y: &mut [f64]| y.fill(1.0),
        |_: &[f64], _: MatMut<'_, f64>| {},
    );
    let t = empty_text(FitProblem::new(
        no_params,
        SquaredError::l2(vec![0.0, 0.0]).unwrap(),
        Euclidean,
    ));
    assert!(t.contains("Model::n_params"), "{t}");

    let no_data = ClosureModel::new(
        2,
        0,
        |_: &[f64], _: &mut [f64]| {},
        |_: &[f64], _: MatMut<'_, f64>| {},
    );
    let loss = FnLoss::new(None, |_: &[f64]| 0.0, |_: &[f64], _: &mut [f64]| {}).unwrap();
    let t = empty_text(FitProblem::new(no_data, loss, Euclidean));
    assert!(t.contains("Model::n_outputs"), "{t}");
}

/// Item 9: `SparseMetric` is `Clone`, so a `FitProblem` using it is; a clone applies the
/// same `K` and `K⁻¹` (checked on `K⁻¹ K v = v`).
#[test]
fn sparse_metric_and_its_problem_clone() {
    let n = 6;
    let mut tri = TriMat::new((n, n));
    for i in 0..n {
        tri.add_triplet(i, i, 2.0);
        if i + 1 < n {
            tri.add_triplet(i, i + 1, -1.0);
            tri.add_triplet(i + 1, i, -1.0);
        }
    }
    let k = SparseMetric::new(tri.to_csr()).unwrap();
    let pb = FitProblem::new(
        LinearModel::dense(Mat::identity(n, 2)).unwrap(),
        SquaredError::l2(vec![1.0; n]).unwrap(),
        k,
    )
    .unwrap();
    let copy = pb.clone();
    let v: Vec<f64> = (0..n).map(|i| (i as f64 + 1.0).sin()).collect();
    let (mut kv, mut back) = (vec![0.0; n], vec![0.0; n]);
    FixedMetric::apply(copy.metric(), &v, &mut kv);
    FixedMetric::solve(copy.metric(), &kv, &mut back).unwrap();
    for (a, b) in back.iter().zip(&v) {
        assert!((a - b).abs() < 1e-14, "{back:?} vs {v:?}");
    }
    let mut kv0 = vec![0.0; n];
    FixedMetric::apply(pb.metric(), &v, &mut kv0);
    assert_eq!(kv, kv0);
}

/// Item 9: the non-positive pivot of an indefinite sparse `K` in the user's numbering.
/// The arrow matrix with `K₀₀ = −1`, `Kᵢᵢ = 4`, `K₀ᵢ = 0.1` (i ≥ 1): its leaves are SPD,
/// so in any elimination order the first non-positive pivot is row 0 (Schur complement
/// `−1 − Σ 0.01/4 < 0`), while the fill-reducing order eliminates row 0 last.
#[test]
fn sparse_metric_pivot_is_in_the_users_numbering() {
    let n = 6;
    let mut tri = TriMat::new((n, n));
    tri.add_triplet(0, 0, -1.0);
    for i in 1..n {
        tri.add_triplet(i, i, 4.0);
        tri.add_triplet(0, i, 0.1);
        tri.add_triplet(i, 0, 0.1);
    }
    let e = SparseMetric::new(tri.to_csr()).unwrap_err();
    assert!(
        e.to_string()
            .contains("non-positive pivot at index 0 (row and column 0 of K"),
        "{e}"
    );
}

/// Item 9: `Mlp::evaluate` at new points equals the network written out by hand,
/// `y = W₁ tanh(W₀ x + b₀) + b₁` (θ = [W₀ | b₀], [W₁ | b₁] column-major).
#[test]
fn mlp_evaluates_at_new_points() {
    let train = [0.0, 0.0, 1.0, 0.5];
    let net = Mlp::new(
        &[2, 3, 1],
        &[Activation::Tanh, Activation::Identity],
        &train,
    )
    .unwrap();
    let theta: Vec<f64> = (0..net_params(&[2, 3, 1]))
        .map(|i| 0.3 * (i as f64 + 0.5).cos())
        .collect();
    let x = [0.2, -0.7, 1.5, 0.1, -1.0, 2.0];
    let y = net.evaluate(&theta, &x).unwrap();
    assert_eq!(y.len(), 3);
    let (w0, b0) = (&theta[0..6], &theta[6..9]);
    let (w1, b1) = (&theta[9..12], theta[12]);
    for i in 0..3 {
        let h: Vec<f64> = (0..3)
            .map(|r| (w0[r] * x[2 * i] + w0[r + 3] * x[2 * i + 1] + b0[r]).tanh())
            .collect();
        let expected = (0..3).map(|r| w1[r] * h[r]).sum::<f64>() + b1;
        assert!(
            (y[i] - expected).abs() < 1e-14,
            "{i}: {} vs {expected}",
            y[i]
        );
    }
    assert!(net.evaluate(&theta, &[1.0, 2.0, 3.0]).is_err());
    assert!(net.evaluate(&theta[1..], &x).is_err());
}

fn net_params(widths: &[usize]) -> usize {
    widths.windows(2).map(|w| w[1] * (w[0] + 1)).sum()
}

/// `check::max_rel_diff` cannot pass by comparing less than it was given: shapes that
/// differ, or a NaN or infinite entry on either side, give +∞ (a NaN used to be skipped by
/// `f64::max`, and a smaller matrix compared on its own shape).
#[test]
fn max_rel_diff_fails_on_shapes_and_non_finite_entries() {
    use natgrad::check::max_rel_diff;
    let b = Mat::from_fn(3, 2, |i, j| (i + 2 * j) as f64 + 1.0);
    assert_eq!(max_rel_diff(&b, &b), 0.0);
    assert_eq!(max_rel_diff(&b.subrows(0, 2).to_owned(), &b), f64::INFINITY);
    assert_eq!(max_rel_diff(&b, &b.subrows(0, 2).to_owned()), f64::INFINITY);
    for bad in [f64::NAN, f64::INFINITY] {
        let mut a = b.clone();
        a[(1, 1)] = bad;
        assert_eq!(max_rel_diff(&a, &b), f64::INFINITY);
        assert_eq!(max_rel_diff(&b, &a), f64::INFINITY);
    }
    // The value: max |a − b| / max |b| = 0.5 / 5 (b ranges over 1..=5).
    let mut a = b.clone();
    a[(2, 0)] += 0.5;
    assert!((max_rel_diff(&a, &b) - 0.5 / 5.0).abs() < 1e-15);
}
