//! The randomized Nyström preconditioner against the mathematics it stands for: exact
//! Nyström approximation at full rank, `P⁻¹ = μ (A₀ + μI)⁻¹` when `rank A₀ < r`, the dense
//! formula twin, and PCG with it converging to the Cholesky direction in both spaces.

mod common;

use common::{gram_twin, matvec, rel_diff, rng, spd, vec};
use faer::{Mat, Par};
use natgrad::check::{jacobian_by_jvps, max_rel_diff, metric_matrix};
use natgrad::gram::Space;
use natgrad::linsolve::{
    solve_direction, CgSettings, LinearSolver, NystromSketch, Preconditioner, PreconditionerKind,
    Rhs, SolveCache,
};
use natgrad::metric::{DenseMetric, Euclidean, WeightedL2};
use natgrad::model::{LinearModel, Model};
use natgrad::{FitProblem, SquaredError};

fn weighted_problem(
    n: usize,
    p: usize,
    seed: u64,
) -> (
    FitProblem<LinearModel, SquaredError, WeightedL2>,
    Mat<f64>,
    Vec<f64>,
) {
    let mut r = rng(seed);
    // Columns scaled geometrically: a Gram matrix with a decaying spectrum.
    let a = Mat::from_fn(n, p, |i, j| {
        let x = common::mat(&mut rng(seed + (i * p + j) as u64), 1, 1)[(0, 0)];
        x * 0.8_f64.powi(j as i32)
    });
    let w: Vec<f64> = (0..n).map(|i| 0.5 + (i as f64) / n as f64).collect();
    let pb = FitProblem::new(
        LinearModel::dense(a.clone()).unwrap(),
        SquaredError::l2(vec(&mut r, n)).unwrap(),
        WeightedL2::new(w).unwrap(),
    )
    .unwrap();
    (pb, a, vec(&mut r, p))
}

/// `U Λ̂ Uᵀ` with plain loops.
fn approximation(sk: &NystromSketch) -> Mat<f64> {
    let u = sk.basis();
    let l = sk.eigenvalues();
    Mat::from_fn(sk.dim(), sk.dim(), |a, b| {
        (0..sk.rank()).map(|k| u[(a, k)] * l[k] * u[(b, k)]).sum()
    })
}

#[test]
fn full_rank_nystrom_reproduces_the_gram_matrix() {
    let (n, p) = (30, 10);
    let (pb, a, theta) = weighted_problem(n, p, 60);
    let mut lin = pb.linearize(&theta).unwrap();
    let m = metric_matrix(pb.metric(), &lin.point(), n);
    let g = gram_twin(&a, &m, 0.0);
    let op = lin.gram(0.0);
    let sk = NystromSketch::build(&op, p, 7, 1.0, 0, Par::Seq).unwrap();
    assert_eq!(op.products(), p as u64);
    assert_eq!(sk.rank(), p);
    // Q square orthogonal: A Q (QᵀAQ)⁻¹ QᵀA = A.
    let e = max_rel_diff(&approximation(&sk), &g);
    assert!(e <= 1e-10, "‖Â − G‖ / ‖G‖ = {e:e}");
    assert!(sk.eigenvalues().windows(2).all(|w| w[0] >= w[1]));
}

#[test]
fn low_rank_operator_gives_the_exact_inverse_up_to_scale() {
    // p > n: G = JᵀMJ (p×p) has rank n < r, so λ̂_r ≈ 0 and
    // P = (G + μI)/μ exactly, P⁻¹ = μ (G + μI)⁻¹.
    let (n, p, r) = (6, 25, 10);
    let (pb, a, theta) = weighted_problem(n, p, 61);
    let mut lin = pb.linearize(&theta).unwrap();
    let m = metric_matrix(pb.metric(), &lin.point(), n);
    let mu = 1e-2;
    let g = gram_twin(&a, &m, mu);
    let op = lin.gram(0.0);
    let sk = NystromSketch::build(&op, r, 8, 1.0, 0, Par::Seq).unwrap();
    assert!(sk.eigenvalues()[r - 1] <= 1e-12 * sk.eigenvalues()[0]);
    let pinv = sk.preconditioner(mu);
    let v = vec(&mut rng(62), p);
    let mut out = vec![0.0; p];
    pinv.apply_vec(&v, &mut out);
    let want: Vec<f64> = common::dense_solve(&g, &v).iter().map(|x| mu * x).collect();
    let e = rel_diff(&out, &want);
    assert!(e <= 1e-8, "P⁻¹v vs μ(G + μI)⁻¹v: {e:e}");
}

#[test]
fn preconditioner_equals_its_dense_formula() {
    let (n, p, r) = (40, 20, 8);
    let (pb, _a, theta) = weighted_problem(n, p, 63);
    let mut lin = pb.linearize(&theta).unwrap();
    let op = lin.gram(0.0);
    let sk = NystromSketch::build(&op, r, 9, 1.0, 0, Par::Seq).unwrap();
    let mu = 1e-3;
    let (u, l) = (sk.basis(), sk.eigenvalues());
    // U has orthonormal columns.
    for i in 0..r {
        for j in 0..r {
            let d: f64 = (0..p).map(|k| u[(k, i)] * u[(k, j)]).sum();
            assert!((d - if i == j { 1.0 } else { 0.0 }).abs() <= 1e-12);
        }
    }
    // P = U(Λ̂ + μI)Uᵀ/(λ̂_r + μ) + (I − UUᵀ); then P⁻¹ P v = v.
    let floor = l[r - 1] + mu;
    let pmat = Mat::from_fn(p, p, |a, b| {
        let mut s = if a == b { 1.0 } else { 0.0 };
        for k in 0..r {
            s += u[(a, k)] * u[(b, k)] * ((l[k] + mu) / floor - 1.0);
        }
        s
    });
    let v = vec(&mut rng(64), p);
    let pv = matvec(&pmat, &v);
    let mut back = vec![0.0; p];
    sk.preconditioner(mu).apply_vec(&pv, &mut back);
    assert!(rel_diff(&back, &v) <= 1e-12);
}

fn nystrom_cg(rank: usize, refresh_every: usize) -> CgSettings {
    CgSettings {
        rel_tol: 1e-12,
        max_iters: 2000,
        preconditioner: Preconditioner::Nystrom {
            rank,
            refresh_every,
            seed: 3,
        },
        ..CgSettings::default()
    }
}

#[test]
fn nystrom_pcg_converges_to_the_cholesky_direction_in_both_spaces() {
    for &(n, p) in &[(60, 30), (20, 50)] {
        let (pb, _a, theta) = weighted_problem(n, p, 65);
        let mut lin = pb.linearize(&theta).unwrap();
        let r = lin.output_gradient().to_vec();
        let mut want = vec![0.0; p];
        let solve = |lin: &mut _, solver: &LinearSolver, d: &mut Vec<f64>| {
            solve_direction(
                lin,
                Rhs::Cotangent { r: &r, jt_r: None },
                d,
                1e-4,
                solver,
                &mut SolveCache::default(),
                Par::Seq,
            )
            .unwrap()
        };
        solve(&mut lin, &LinearSolver::Cholesky, &mut want);
        for solver in [
            LinearSolver::Cg(nystrom_cg(10, 10)),
            LinearSolver::SampleCg(nystrom_cg(10, 10)),
        ] {
            let mut d = vec![0.0; p];
            let info = solve(&mut lin, &solver, &mut d);
            let cg = info.cg.unwrap();
            assert_eq!(cg.preconditioner, PreconditionerKind::Nystrom);
            assert_eq!(cg.sketch_products, 10);
            let e = rel_diff(&d, &want);
            assert!(e <= 1e-8, "{} n={n} p={p}: {e:e}", info.method);
        }
    }
}

#[test]
fn nystrom_takes_fewer_iterations_than_plain_cg_on_a_decaying_spectrum() {
    let (n, p) = (200, 60);
    let (pb, _a, theta) = weighted_problem(n, p, 66);
    let mut lin = pb.linearize(&theta).unwrap();
    let g = lin.gradient();
    let mut iters = Vec::new();
    for pc in [Preconditioner::None, Preconditioner::nystrom(20)] {
        let s = CgSettings {
            preconditioner: pc,
            ..nystrom_cg(20, 10)
        };
        let mut d = vec![0.0; p];
        let info = solve_direction(
            &mut lin,
            Rhs::Params(&g),
            &mut d,
            1e-6,
            &LinearSolver::Cg(s),
            &mut SolveCache::default(),
            Par::Seq,
        )
        .unwrap();
        iters.push(info.cg_iters().unwrap());
    }
    // The 20 largest eigenvalues are deflated: the rest spans a smaller range.
    assert!(
        iters[1] < iters[0],
        "plain {} vs Nyström {}",
        iters[0],
        iters[1]
    );
}

#[test]
fn sketch_is_kept_and_refreshed_every_k_solves() {
    let (n, p) = (30, 12);
    let (pb, _a, theta) = weighted_problem(n, p, 67);
    let mut cache = SolveCache::default();
    let mut products = Vec::new();
    for _ in 0..7 {
        let mut lin = pb.linearize(&theta).unwrap();
        let g = lin.gradient();
        let mut d = vec![0.0; p];
        let info = solve_direction(
            &mut lin,
            Rhs::Params(&g),
            &mut d,
            1e-3,
            &LinearSolver::Cg(nystrom_cg(5, 3)),
            &mut cache,
            Par::Seq,
        )
        .unwrap();
        products.push(info.cg.unwrap().sketch_products);
    }
    assert_eq!(products, [5, 0, 0, 5, 0, 0, 5]);
    assert_eq!(cache.nystrom().map(|s| s.space()), Some(Space::Params));
}

#[test]
fn sample_space_nystrom_with_a_dense_metric_sketches_the_whole_operator() {
    // M not a multiple of I: A₀ = JJᵀ + λM⁻¹ and μ = 0; full rank reproduces A₀ exactly.
    let (n, p) = (12, 30);
    let mut r = rng(68);
    let a = common::mat(&mut r, n, p);
    let k = spd(&mut r, n, 0.5);
    let pb = FitProblem::new(
        LinearModel::dense(a).unwrap(),
        SquaredError::l2(vec(&mut r, n)).unwrap(),
        DenseMetric::new(k.clone()).unwrap(),
    )
    .unwrap();
    let theta = vec(&mut r, p);
    let mut lin = pb.linearize(&theta).unwrap();
    let j = jacobian_by_jvps(&mut pb.model().linearize(&theta).unwrap(), n);
    let lambda = 1e-2;
    let kinv = Mat::from_fn(n, n, |i, c| {
        let mut e = vec![0.0; n];
        e[c] = 1.0;
        common::dense_solve(&k, &e)[i]
    });
    let want = Mat::from_fn(n, n, |a, b| {
        (0..p).map(|t| j[(a, t)] * j[(b, t)]).sum::<f64>() + lambda * kinv[(a, b)]
    });
    let op = lin.gram_in(Space::Samples, lambda);
    let sk = NystromSketch::build(&op, n, 1, 0.0, 0, Par::Seq).unwrap();
    assert!(max_rel_diff(&approximation(&sk), &want) <= 1e-10);
    // And with Euclidean (M = I): A₀ = JJᵀ only.
    let pb = FitProblem::new(
        LinearModel::dense(Mat::from_fn(n, p, |a, b| j[(a, b)])).unwrap(),
        SquaredError::l2(vec(&mut r, n)).unwrap(),
        Euclidean,
    )
    .unwrap();
    let mut lin = pb.linearize(&vec(&mut r, p)).unwrap();
    let op = lin.gram_in(Space::Samples, 0.0);
    let sk = NystromSketch::build(&op, n, 1, 1.0, 0, Par::Seq).unwrap();
    let jjt = Mat::from_fn(n, n, |a, b| {
        (0..p).map(|t| j[(a, t)] * j[(b, t)]).sum::<f64>()
    });
    assert!(max_rel_diff(&approximation(&sk), &jjt) <= 1e-10);
}
