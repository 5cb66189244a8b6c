//! The Gram operator against its dense twin, for every metric kind (acceptance 3), and
//! CG against Cholesky (acceptance 4).

mod common;

use common::{gram_twin, rel_diff, rng, sparse_spd, spd, vec};
use faer::Mat;
use natgrad::check::{jacobian_by_jvps, max_rel_diff, metric_matrix};
use natgrad::linsolve::DirectionSolver;
use natgrad::linsolve::{CgSettings, LinearSolver, Preconditioner, Rhs};
use natgrad::loss::{CrossEntropy, Loss};
use natgrad::metric::{DenseMetric, Euclidean, LossHessian, Metric, SparseMetric, WeightedL2};
use natgrad::model::{LinearModel, Model};
use natgrad::{FitProblem, SquaredError};

/// Applies the operator to unit vectors (its columns) and compares with the twin.
fn check_gram<Mo: Model, Lo: Loss, Me: Metric>(
    problem: &FitProblem<Mo, Lo, Me>,
    theta: &[f64],
    lambda: f64,
) -> f64 {
    let n = problem.n_outputs();
    let p = problem.n_params();
    let mut lin = problem.linearize(theta).unwrap();
    let j = jacobian_by_jvps(&mut problem.model().linearize(theta).unwrap(), n);
    let m = metric_matrix(problem.metric(), &lin.point(), n);
    let twin = gram_twin(&j, &m, lambda);
    let op = lin.gram(lambda);
    let mut g = Mat::zeros(p, p);
    let mut e = vec![0.0; p];
    let mut col = vec![0.0; p];
    for c in 0..p {
        e[c] = 1.0;
        op.apply_vec(&e, &mut col);
        e[c] = 0.0;
        for r in 0..p {
            g[(r, c)] = col[r];
        }
    }
    assert_eq!(op.products(), p as u64);
    max_rel_diff(&g, &twin)
}

#[test]
fn gram_operator_equals_dense_twin_for_every_metric() {
    let (n, p) = (30, 12);
    let mut r = rng(21);
    let a = common::mat(&mut r, n, p);
    let u = vec(&mut r, n);
    let theta = vec(&mut r, p);
    let model = || LinearModel::dense(a.clone()).unwrap();
    for lambda in [0.0, 1e-3] {
        let w: Vec<f64> = (0..n).map(|i| 0.5 + (i as f64) / n as f64).collect();
        let pb = FitProblem::new(
            model(),
            SquaredError::l2(u.clone()).unwrap(),
            WeightedL2::new(w).unwrap(),
        )
        .unwrap();
        assert!(check_gram(&pb, &theta, lambda) <= 1e-12, "WeightedL2");

        let pb = FitProblem::new(model(), SquaredError::l2(u.clone()).unwrap(), Euclidean).unwrap();
        assert!(check_gram(&pb, &theta, lambda) <= 1e-12, "Euclidean");

        let k = spd(&mut r, n, 0.5);
        let pb = FitProblem::new(
            model(),
            SquaredError::l2(u.clone()).unwrap(),
            DenseMetric::new(k).unwrap(),
        )
        .unwrap();
        assert!(check_gram(&pb, &theta, lambda) <= 1e-12, "DenseMetric");

        let pb = FitProblem::new(
            model(),
            SquaredError::l2(u.clone()).unwrap(),
            SparseMetric::new(sparse_spd(n)).unwrap(),
        )
        .unwrap();
        assert!(check_gram(&pb, &theta, lambda) <= 1e-12, "SparseMetric");

        // GGN of a squared error in K is K itself.
        let k = spd(&mut r, n, 0.5);
        let loss = SquaredError::new(u.clone(), DenseMetric::new(k).unwrap()).unwrap();
        let pb = FitProblem::new(model(), loss, LossHessian).unwrap();
        assert!(
            check_gram(&pb, &theta, lambda) <= 1e-12,
            "LossHessian(SquaredError)"
        );

        // Fisher metric of the cross-entropy on probabilities in (0, 1).
        let labels: Vec<f64> = (0..n).map(|i| (i % 2) as f64).collect();
        let off: Vec<f64> = (0..n).map(|i| 0.5 + 0.3 * ((i as f64).sin())).collect();
        let small = Mat::from_fn(n, p, |i, j| 0.01 * a[(i, j)]);
        let lm = LinearModel::dense(small).unwrap().with_offset(off).unwrap();
        let pb = FitProblem::new(lm, CrossEntropy::new(labels).unwrap(), LossHessian).unwrap();
        assert!(
            check_gram(&pb, &theta, lambda) <= 1e-12,
            "LossHessian(CrossEntropy)"
        );
    }
}

#[test]
fn sparse_design_gram_equals_twin() {
    let (n, p) = (40, 15);
    let mut r = rng(22);
    let mut tri = sprs::TriMat::new((n, p));
    for i in 0..n {
        tri.add_triplet(i, i % p, 1.0 + vec(&mut r, 1)[0]);
        tri.add_triplet(i, (3 * i + 1) % p, vec(&mut r, 1)[0]);
    }
    let model = LinearModel::sparse(tri.to_csr()).unwrap();
    let pb = FitProblem::new(
        model,
        SquaredError::l2(vec(&mut r, n)).unwrap(),
        SparseMetric::new(sparse_spd(n)).unwrap(),
    )
    .unwrap();
    assert!(check_gram(&pb, &vec(&mut r, p), 1e-2) <= 1e-12);
}

fn cg_vs_cholesky(n: usize, p: usize, seed: u64, precond: Preconditioner) -> f64 {
    let mut r = rng(seed);
    let a = common::mat(&mut r, n, p);
    let w: Vec<f64> = (0..n).map(|_| 0.1 + vec(&mut r, 1)[0].abs()).collect();
    let pb = FitProblem::new(
        LinearModel::dense(a).unwrap(),
        SquaredError::l2(vec(&mut r, n)).unwrap(),
        WeightedL2::new(w).unwrap(),
    )
    .unwrap();
    let theta = vec(&mut r, p);
    let lambda = 1e-3;
    let mut lin = pb.linearize(&theta).unwrap();
    let g = lin.gradient();
    let mut d_chol = vec![0.0; p];
    let r = lin.output_gradient().to_vec();
    DirectionSolver::new(LinearSolver::Cholesky)
        .solve_from(
            &mut lin,
            Rhs::Cotangent { r: &r, jt_r: None },
            lambda,
            &mut d_chol,
        )
        .unwrap();
    let settings = CgSettings {
        rel_tol: 1e-12,
        max_iters: 20 * p,
        preconditioner: precond,
        ..CgSettings::default()
    };
    let mut d_cg = vec![0.0; p];
    let info = DirectionSolver::new(LinearSolver::Cg(settings))
        .solve_from(&mut lin, Rhs::Params(&g), lambda, &mut d_cg)
        .unwrap();
    assert!(!info.cg.unwrap().truncated);
    rel_diff(&d_cg, &d_chol)
}

#[test]
fn cg_matches_cholesky_on_random_spd_problems() {
    for (i, &(n, p)) in [(50, 10), (200, 60), (120, 200), (800, 500), (300, 500)]
        .iter()
        .enumerate()
    {
        for pc in [Preconditioner::None, Preconditioner::Jacobi] {
            let e = cg_vs_cholesky(n, p, 100 + i as u64, pc);
            assert!(e <= 1e-8, "n={n} p={p} {pc:?}: CG vs Cholesky {e:e}");
        }
    }
}

#[test]
fn cholesky_direction_solves_the_dense_system() {
    let mut r = rng(31);
    let (n, p) = (25, 8);
    let a = common::mat(&mut r, n, p);
    let k = spd(&mut r, n, 0.2);
    let pb = FitProblem::new(
        LinearModel::dense(a.clone()).unwrap(),
        SquaredError::l2(vec(&mut r, n)).unwrap(),
        DenseMetric::new(k.clone()).unwrap(),
    )
    .unwrap();
    let mut lin = pb.linearize(&vec(&mut r, p)).unwrap();
    let g = lin.gradient();
    let mut d = vec![0.0; p];
    DirectionSolver::new(LinearSolver::Cholesky)
        .solve_from(&mut lin, Rhs::Params(&g), 0.0, &mut d)
        .unwrap();
    let expected = common::dense_solve(&gram_twin(&a, &k, 0.0), &g);
    assert!(rel_diff(&d, &expected) <= 1e-10);
}

#[test]
fn cold_started_cg_matches_cholesky() {
    // Regression: a cold start must not rely on faer's `InitialGuessStatus::Zero` path.
    let toy = natgrad::problems::toys::quadratic_manifold();
    let mut lin = toy.problem.linearize(&toy.theta0).unwrap();
    let g = lin.gradient();
    let mut d_chol = vec![0.0; 2];
    DirectionSolver::new(LinearSolver::Cholesky)
        .solve_from(&mut lin, Rhs::Params(&g), 1e-8, &mut d_chol)
        .unwrap();
    for warm_start in [false, true] {
        let cg = CgSettings {
            warm_start,
            rel_tol: 1e-14,
            ..CgSettings::default()
        };
        let mut d = vec![123.0, -7.0];
        DirectionSolver::new(LinearSolver::Cg(cg))
            .solve_from(&mut lin, Rhs::Params(&g), 1e-8, &mut d)
            .unwrap();
        assert!(rel_diff(&d, &d_chol) <= 1e-12, "warm_start = {warm_start}");
    }
}
