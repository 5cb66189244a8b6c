//! The sample-space (Woodbury push-through) direction against the dense parameter-space
//! twin `(JᵀMJ + λI)⁻¹ Jᵀ r`, for every metric kind, `p > n` and `p < n`, and arbitrary
//! cotangents `r` (the momentum rules' right-hand sides); and `LinearSolver::Auto`.

mod common;

use common::{gram_twin, matvec, rel_diff, rng, sparse_spd, spd, vec};
use faer::Mat;
use natgrad::check::{jacobian_by_jvps, metric_matrix};
use natgrad::linsolve::DirectionSolver;
use natgrad::linsolve::{
    AutoSettings, CgSettings, CostModel, LinearSolver, Path, Preconditioner, Rhs, SolveFailure,
    SolveMethod,
};
use natgrad::loss::{CrossEntropy, Loss};
use natgrad::metric::{DenseMetric, Euclidean, LossHessian, Metric, SparseMetric, WeightedL2};
use natgrad::model::{LinearModel, Model};
use natgrad::{FitProblem, SquaredError};

fn tight_cg(dim: usize) -> CgSettings {
    CgSettings {
        rel_tol: 1e-13,
        max_iters: 50 * dim,
        preconditioner: Preconditioner::None,
        ..CgSettings::default()
    }
}

/// Largest relative difference between each solver's direction and the dense twin
/// `(JᵀMJ + λI)⁻¹ Jᵀ r`, for the loss gradient and for a random cotangent.
fn worst_error<Mo: Model, Lo: Loss, Me: Metric>(
    pb: &FitProblem<Mo, Lo, Me>,
    theta: &[f64],
    lambda: f64,
    seed: u64,
) -> f64 {
    let (n, p) = (pb.n_outputs(), pb.n_params());
    let mut lin = pb.linearize(theta).unwrap();
    let j = jacobian_by_jvps(&mut pb.model().linearize(theta).unwrap(), n);
    let m = metric_matrix(pb.metric(), &lin.point(), n);
    let g = gram_twin(&j, &m, lambda);
    let jt = Mat::from_fn(p, n, |a, b| j[(b, a)]);
    let solvers = [
        LinearSolver::SampleCg(tight_cg(n)),
        LinearSolver::SampleCholesky,
        LinearSolver::Cholesky,
        LinearSolver::Cg(tight_cg(p)),
    ];
    let mut worst = 0.0_f64;
    let rs = [lin.output_gradient().to_vec(), vec(&mut rng(seed), n)];
    for r in &rs {
        let expected = common::dense_solve(&g, &matvec(&jt, r));
        for solver in &solvers {
            let (d, info) =
                common::solve_fresh(&mut lin, Rhs::Cotangent { r, jt_r: None }, lambda, solver)
                    .unwrap_or_else(|e| panic!("{solver:?}: {e}"));
            let e = rel_diff(&d, &expected);
            assert!(e <= 1e-8, "{} (n={n}, p={p}): {e:e}", info.method);
            worst = worst.max(e);
        }
    }
    worst
}

#[test]
fn sample_space_direction_equals_parameter_space_for_every_metric() {
    let lambda = 1e-3;
    for (case, &(n, p)) in [(12, 30), (30, 12)].iter().enumerate() {
        let mut r = rng(40 + case as u64);
        let a = common::mat(&mut r, n, p);
        let u = vec(&mut r, n);
        let theta = vec(&mut r, p);
        let model = || LinearModel::dense(a.clone()).unwrap();
        let l2 = || SquaredError::l2(u.clone()).unwrap();
        let w: Vec<f64> = (0..n).map(|i| 0.5 + (i as f64) / n as f64).collect();
        let metrics: Vec<(&str, f64)> = vec![
            (
                "WeightedL2",
                worst_error(
                    &FitProblem::new(model(), l2(), WeightedL2::new(w).unwrap()).unwrap(),
                    &theta,
                    lambda,
                    1,
                ),
            ),
            (
                "WeightedL2 uniform",
                worst_error(
                    &FitProblem::new(model(), l2(), WeightedL2::uniform(n).unwrap()).unwrap(),
                    &theta,
                    lambda,
                    2,
                ),
            ),
            (
                "Euclidean",
                worst_error(
                    &FitProblem::new(model(), l2(), Euclidean).unwrap(),
                    &theta,
                    lambda,
                    3,
                ),
            ),
            (
                "DenseMetric",
                worst_error(
                    &FitProblem::new(
                        model(),
                        l2(),
                        DenseMetric::new(spd(&mut r, n, 0.5)).unwrap(),
                    )
                    .unwrap(),
                    &theta,
                    lambda,
                    4,
                ),
            ),
            (
                "SparseMetric",
                worst_error(
                    &FitProblem::new(model(), l2(), SparseMetric::new(sparse_spd(n)).unwrap())
                        .unwrap(),
                    &theta,
                    lambda,
                    5,
                ),
            ),
            (
                "LossHessian(SquaredError)",
                worst_error(
                    &FitProblem::new(model(), l2(), LossHessian).unwrap(),
                    &theta,
                    lambda,
                    6,
                ),
            ),
        ];
        // Fisher metric of the cross-entropy: a diagonal GGN that varies with the outputs.
        let labels: Vec<f64> = (0..n).map(|i| (i % 2) as f64).collect();
        let off: Vec<f64> = (0..n).map(|i| 0.5 + 0.3 * (i as f64).sin()).collect();
        let small = Mat::from_fn(n, p, |i, j| 0.01 * a[(i, j)]);
        let lm = LinearModel::dense(small).unwrap().with_offset(off).unwrap();
        let pb = FitProblem::new(lm, CrossEntropy::new(labels).unwrap(), LossHessian).unwrap();
        let ce = worst_error(&pb, &theta, lambda, 7);
        for (name, e) in metrics
            .iter()
            .chain([("LossHessian(CrossEntropy)", ce)].iter())
        {
            eprintln!("{name}, n={n}, p={p}: worst relative difference {e:.1e}");
            assert!(*e <= 1e-8, "{name}, n={n}, p={p}: {e:e}");
        }
    }
}

#[test]
fn sample_space_needs_an_output_space_rhs_and_an_inverse_metric() {
    let mut r = rng(50);
    let (n, p) = (6, 10);
    let pb = FitProblem::new(
        LinearModel::dense(common::mat(&mut r, n, p)).unwrap(),
        SquaredError::l2(vec(&mut r, n)).unwrap(),
        WeightedL2::uniform(n).unwrap(),
    )
    .unwrap();
    let mut lin = pb.linearize(&vec(&mut r, p)).unwrap();
    let g = lin.gradient();
    let mut d = vec![0.0; p];
    for solver in [
        LinearSolver::SampleCholesky,
        LinearSolver::SampleCg(tight_cg(n)),
    ] {
        let err = DirectionSolver::new(solver.clone())
            .solve_from(&mut lin, Rhs::Params(&g), 1e-3, &mut d)
            .unwrap_err();
        assert!(matches!(err, SolveFailure::Direct(_)), "{err}");
    }
    // GGN of a squared error in a dense K: M = K is not diagonal, LossHessian cannot invert it.
    let k = spd(&mut r, n, 0.5);
    let loss = SquaredError::new(vec(&mut r, n), DenseMetric::new(k).unwrap()).unwrap();
    let pb = FitProblem::new(
        LinearModel::dense(common::mat(&mut r, n, p)).unwrap(),
        loss,
        LossHessian,
    )
    .unwrap();
    let mut lin = pb.linearize(&vec(&mut r, p)).unwrap();
    let rr = lin.output_gradient().to_vec();
    let err = DirectionSolver::new(LinearSolver::SampleCholesky)
        .solve_from(
            &mut lin,
            Rhs::Cotangent { r: &rr, jt_r: None },
            1e-3,
            &mut d,
        )
        .unwrap_err();
    assert!(err.to_string().contains("LossHessian"), "{err}");
    // ... and Auto then stays in parameter space, still exact.
    let info = DirectionSolver::new(LinearSolver::Auto(AutoSettings::default()))
        .solve_from(
            &mut lin,
            Rhs::Cotangent { r: &rr, jt_r: None },
            1e-3,
            &mut d,
        )
        .unwrap();
    assert!(
        matches!(
            info.method,
            SolveMethod::Auto(Path::ParamCg | Path::ParamCholesky)
        ),
        "{}",
        info.method
    );
}

#[test]
fn auto_plans_by_its_cost_model() {
    let a = AutoSettings::default();
    let diag = |n, p| CostModel {
        n,
        p,
        metric_diagonal: true,
    };
    // Few CG iterations: CG in the smaller space.
    assert_eq!(a.plan(&diag(100, 5000), true, 10).0, Path::SampleCg);
    assert_eq!(a.plan(&diag(100, 5000), false, 10).0, Path::ParamCg);
    assert_eq!(a.plan(&diag(5000, 100), true, 10).0, Path::ParamCg);
    // Many: the direct path of the smaller space, while it fits.
    assert_eq!(a.plan(&diag(100, 5000), true, 500).0, Path::SampleCholesky);
    assert_eq!(a.plan(&diag(5000, 100), true, 500).0, Path::ParamCholesky);
    assert_eq!(
        a.plan(&diag(2048, 4417), true, 3000).0,
        Path::SampleCholesky
    );
    // Too large to form J or factor: CG whatever it costs.
    assert_eq!(a.plan(&diag(4096, 132_609), true, 5000).0, Path::SampleCg);
    assert_eq!(a.plan(&diag(1000, 100_000), true, 5000).0, Path::SampleCg);
    assert_eq!(a.plan(&diag(20_000, 4000), true, 5000).0, Path::ParamCg);
    // Tall and thin: the direct path is cheaper than even 10 CG iterations.
    assert_eq!(a.plan(&diag(2000, 4), true, 10).0, Path::ParamCholesky);
    // The break-even budget: CG iterations costing as much as the cheapest direct path.
    let m = diag(24, 60);
    let budget = a.cg_budget(&m, true, Path::SampleCg).unwrap();
    let direct = m.direct(true).min(m.direct(false));
    assert!(budget as f64 * m.cg_iteration(true) <= direct);
    assert!((budget + 1) as f64 * m.cg_iteration(true) > direct);
}

/// A problem whose Jacobian has geometrically graded rows (a kernel spectrum spread over
/// many decades, so CG needs about one iteration per decade).
fn graded(
    n: usize,
    p: usize,
    seed: u64,
) -> (Mat<f64>, FitProblem<LinearModel, SquaredError, WeightedL2>) {
    let mut r = rng(seed);
    let a = Mat::from_fn(n, p, |i, j| {
        0.7_f64.powi(i as i32) * common::mat(&mut r, 1, 1)[(0, 0)]
            + if i == j { 0.5_f64.powi(i as i32) } else { 0.0 }
    });
    let pb = FitProblem::new(
        LinearModel::dense(a.clone()).unwrap(),
        SquaredError::l2(vec(&mut r, n)).unwrap(),
        WeightedL2::uniform(n).unwrap(),
    )
    .unwrap();
    (a, pb)
}

fn auto_solve(
    pb: &FitProblem<LinearModel, SquaredError, WeightedL2>,
    a: &Mat<f64>,
    lambda: f64,
    cache: &mut DirectionSolver,
) -> (SolveMethod, u64) {
    let (n, p) = (pb.n_outputs(), pb.n_params());
    let mut lin = pb.linearize(&vec(&mut rng(9), p)).unwrap();
    let rr = vec(&mut rng(10), n);
    let mut d = vec![0.0; p];
    let before = pb.evaluations();
    let info = cache
        .set_linear_solver(LinearSolver::Auto(AutoSettings::default()))
        .solve_from(
            &mut lin,
            Rhs::Cotangent { r: &rr, jt_r: None },
            lambda,
            &mut d,
        )
        .unwrap();
    let jvps = (pb.evaluations() - before).jvp;
    let m = Mat::from_fn(n, n, |i, j| if i == j { 1.0 / n as f64 } else { 0.0 });
    let jt = Mat::from_fn(p, n, |i, j| a[(j, i)]);
    let want = common::dense_solve(&gram_twin(a, &m, lambda), &matvec(&jt, &rr));
    let e = rel_diff(&d, &want);
    assert!(e <= 1e-8, "{}: {e:e}", info.method);
    (info.method, jvps)
}

#[test]
fn auto_tries_cg_within_its_budget_then_goes_direct() {
    // Well conditioned (λ large against the spectrum): CG converges within max(k/8, 8).
    let (a, pb) = graded(24, 60, 53);
    let mut cache = DirectionSolver::default();
    let budget = AutoSettings::default()
        .cg_budget(
            &CostModel {
                n: 24,
                p: 60,
                metric_diagonal: true,
            },
            true,
            Path::SampleCg,
        )
        .unwrap() as u64;
    let (method, jvps) = auto_solve(&pb, &a, 10.0, &mut cache);
    assert_eq!(method, SolveMethod::Auto(Path::SampleCg));
    assert!(jvps <= budget, "{jvps} products");
    assert_eq!(cache.cache().auto_cg_iters(), Some(jvps));
    // Ill conditioned: CG misses its budget, Auto solves directly and remembers.
    let mut cache = DirectionSolver::default();
    let (method, jvps) = auto_solve(&pb, &a, 1e-6, &mut cache);
    assert_eq!(method, SolveMethod::Auto(Path::SampleCholesky));
    // The failed attempt costs its budget, plus one product for the true residual of the
    // iterate it stopped at (issue 14.5).
    assert_eq!(jvps, budget + 1, "the failed CG attempt costs its budget");
    assert_eq!(cache.cache().auto_cg_iters(), Some(budget + 1));
    let (method, jvps) = auto_solve(&pb, &a, 1e-6, &mut cache);
    assert_eq!((method, jvps), (SolveMethod::Auto(Path::SampleCholesky), 0));
    // p < n: parameter space.
    let (a, pb) = graded(60, 24, 54);
    let (method, _) = auto_solve(&pb, &a, 1e-6, &mut DirectionSolver::default());
    assert_eq!(method, SolveMethod::Auto(Path::ParamCholesky));
}

#[test]
fn natural_gradient_runs_identically_in_sample_space() {
    use argmin::core::{Executor, State};
    use natgrad::NaturalGradient;
    let mut r = rng(52);
    let (n, p) = (6, 15);
    let a = common::mat(&mut r, n, p);
    let u = vec(&mut r, n);
    let theta0 = vec(&mut r, p);
    let run = |solver: LinearSolver| {
        let pb = FitProblem::new(
            LinearModel::dense(a.clone()).unwrap(),
            SquaredError::l2(u.clone()).unwrap(),
            WeightedL2::uniform(n).unwrap(),
        )
        .unwrap();
        let ng = NaturalGradient::new()
            .with_step_size(0.5)
            .unwrap()
            .with_damping(1e-3)
            .unwrap()
            .with_linear_solver(solver)
            .unwrap();
        let res = Executor::new(pb, ng)
            .configure(|s| s.param(theta0.clone()).max_iters(5))
            .run()
            .unwrap();
        res.state().get_param().unwrap().clone()
    };
    let reference = run(LinearSolver::Cholesky);
    for solver in [
        LinearSolver::SampleCholesky,
        LinearSolver::SampleCg(tight_cg(n)),
        LinearSolver::Auto(AutoSettings::default()),
    ] {
        let th = run(solver.clone());
        let e = rel_diff(&th, &reference);
        assert!(e <= 1e-10, "{solver:?}: {e:e}");
    }
}

#[test]
fn auto_goes_direct_when_cg_misses_its_budget_even_if_truncated_cg_is_accepted() {
    // The user's CG settings accept a truncated solve, but Auto's budgeted attempt must not:
    // past the break-even budget the direct path is exact and cheaper (module docs of
    // `linsolve::auto`). Ill conditioned (λ = 1e-6): CG cannot converge within the budget.
    let (a, pb) = graded(24, 60, 53);
    let settings = AutoSettings {
        cg: CgSettings {
            accept_truncated: true,
            ..CgSettings::default()
        },
        ..AutoSettings::default()
    };
    let (n, p) = (pb.n_outputs(), pb.n_params());
    let mut lin = pb.linearize(&vec(&mut rng(9), p)).unwrap();
    let rr = vec(&mut rng(10), n);
    let mut d = vec![0.0; p];
    let info = DirectionSolver::new(LinearSolver::Auto(settings))
        .solve_from(
            &mut lin,
            Rhs::Cotangent { r: &rr, jt_r: None },
            1e-6,
            &mut d,
        )
        .unwrap();
    assert_eq!(info.method, SolveMethod::Auto(Path::SampleCholesky));
    let m = Mat::from_fn(n, n, |i, j| if i == j { 1.0 / n as f64 } else { 0.0 });
    let jt = Mat::from_fn(p, n, |i, j| a[(j, i)]);
    let want = common::dense_solve(&gram_twin(&a, &m, 1e-6), &matvec(&jt, &rr));
    let e = rel_diff(&d, &want);
    assert!(e <= 1e-8, "{e:e}");
}
