//! The randomized Nyström preconditioner against the mathematics it stands for: exact
//! Nyström approximation at full rank, `P⁻¹ = μ (A₀ + μI)⁻¹` when `rank A₀ < r`, the dense
//! formula twin, and PCG with it converging to the Cholesky direction in both spaces.

mod common;

use common::{gram_twin, matvec, rel_diff, rng, spd, vec};
use faer::{Mat, Par};
use natgrad::check::{jacobian_by_jvps, max_rel_diff, metric_matrix};
use natgrad::gram::Space;
use natgrad::linsolve::DirectionSolver;
use natgrad::linsolve::{
    CgSettings, LinearSolver, NystromSketch, Preconditioner, PreconditionerKind, Rhs,
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
    let sk = NystromSketch::build(&op, p, 7, 1.0, Par::Seq).unwrap();
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
    let sk = NystromSketch::build(&op, r, 8, 1.0, Par::Seq).unwrap();
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
    let sk = NystromSketch::build(&op, r, 9, 1.0, Par::Seq).unwrap();
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
            DirectionSolver::new(solver.clone())
                .solve_from(lin, Rhs::Cotangent { r: &r, jt_r: None }, 1e-4, d)
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
        let info = DirectionSolver::new(LinearSolver::Cg(s))
            .solve_from(&mut lin, Rhs::Params(&g), 1e-6, &mut d)
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
    let mut cache = DirectionSolver::default();
    let mut products = Vec::new();
    for _ in 0..7 {
        let mut lin = pb.linearize(&theta).unwrap();
        let g = lin.gradient();
        let mut d = vec![0.0; p];
        let info = cache
            .set_linear_solver(LinearSolver::Cg(nystrom_cg(5, 3)))
            .solve_from(&mut lin, Rhs::Params(&g), 1e-3, &mut d)
            .unwrap();
        products.push(info.cg.unwrap().sketch_products);
    }
    assert_eq!(products, [5, 0, 0, 5, 0, 0, 5]);
    assert_eq!(
        cache.cache().nystrom().map(|s| s.space()),
        Some(Space::Params)
    );
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
    let sk = NystromSketch::build(&op, n, 1, 0.0, Par::Seq).unwrap();
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
    let sk = NystromSketch::build(&op, n, 1, 1.0, Par::Seq).unwrap();
    let jjt = Mat::from_fn(n, n, |a, b| {
        (0..p).map(|t| j[(a, t)] * j[(b, t)]).sum::<f64>()
    });
    assert!(max_rel_diff(&approximation(&sk), &jjt) <= 1e-10);
}

#[test]
fn sketch_counts_only_its_own_gram_products() {
    // `products()` is the sketch's cost (`r`), not the operator's running total: an
    // operator that has already applied one product still reports `r` for the sketch.
    let (n, p, r) = (30, 10, 4);
    let (pb, _a, theta) = weighted_problem(n, p, 69);
    let mut lin = pb.linearize(&theta).unwrap();
    let op = lin.gram(0.0);
    let mut out = vec![0.0; p];
    op.apply_vec(&vec(&mut rng(70), p), &mut out);
    assert_eq!(op.products(), 1);
    let sk = NystromSketch::build(&op, r, 7, 1.0, Par::Seq).unwrap();
    assert_eq!(op.products(), 1 + r as u64);
    assert_eq!(sk.products(), r as u64);
}

#[test]
fn sketch_does_not_depend_on_the_units_of_the_operator() {
    // Full rank reproduces G (module docs) at every scale: the shift ν = ε√N‖Y‖_F and the
    // noise floor N·ε·λ̂₁ scale with G. G = s²AᵀWA with s = 2⁻⁶⁰ (‖G‖ ≈ 2⁻¹²⁰) and 2⁶⁰.
    let (n, p) = (30, 10);
    let (pb, a, theta) = weighted_problem(n, p, 71);
    let lin = pb.linearize(&theta).unwrap();
    let m = metric_matrix(pb.metric(), &lin.point(), n);
    let w: Vec<f64> = (0..n).map(|i| m[(i, i)]).collect();
    for s in [2f64.powi(-60), 2f64.powi(60)] {
        let scaled = Mat::from_fn(n, p, |i, j| s * a[(i, j)]);
        let pb = FitProblem::new(
            LinearModel::dense(scaled.clone()).unwrap(),
            SquaredError::l2(vec(&mut rng(72), n)).unwrap(),
            WeightedL2::new(w.clone()).unwrap(),
        )
        .unwrap();
        let mut lin = pb.linearize(&theta).unwrap();
        let g = gram_twin(&scaled, &m, 0.0);
        let sk = NystromSketch::build(&lin.gram(0.0), p, 7, 1.0, Par::Seq).unwrap();
        let e = max_rel_diff(&approximation(&sk), &g);
        assert!(e <= 1e-10, "s = {s:e}: ‖Â − G‖ / ‖G‖ = {e:e}");
        assert!(sk.eigenvalues().iter().all(|&l| l > 0.0), "s = {s:e}");
    }
}

#[test]
fn zero_eigenvalue_of_an_exactly_singular_gram_is_zero() {
    // J = [I₃ | 0] (3 × 4), M = I: G = diag(1, 1, 1, 0). A full-rank sketch gives
    // λ̂ = (1, 1, 1, 0): the shift ν is subtracted again (Λ̂ = Σ² − νI, module docs step 5)
    // and what is left of the zero eigenvalue is rounding, set to 0 below N·ε·λ̂₁.
    let (n, p) = (3, 4);
    let j = Mat::from_fn(n, p, |a, b| if a == b { 1.0 } else { 0.0 });
    let pb = FitProblem::new(
        LinearModel::dense(j).unwrap(),
        SquaredError::l2(vec(&mut rng(73), n)).unwrap(),
        Euclidean,
    )
    .unwrap();
    let mut lin = pb.linearize(&vec(&mut rng(74), p)).unwrap();
    for seed in 0..20 {
        let sk = NystromSketch::build(&lin.gram(0.0), p, seed, 1.0, Par::Seq).unwrap();
        let l = sk.eigenvalues();
        assert!(l[..3].iter().all(|&x| (x - 1.0).abs() <= 1e-12), "{l:?}");
        assert_eq!(l[3], 0.0, "seed {seed}: {l:?}");
    }
}

#[test]
fn sketch_of_a_gram_of_rank_far_below_the_sketch_rank_is_exact() {
    // J random 3 × 120, M = I: G = JᵀJ has rank 3 < r = 60, so QᵀG Q is singular and only
    // the shift ν = ε√N‖Y‖_F makes its Cholesky succeed (module docs step 3); the Nyström
    // approximation is then G itself (range Q ⊇ range G), with exactly 3 nonzero λ̂.
    let (n, p, r) = (3, 120, 60);
    let j = common::mat(&mut rng(75), n, p);
    let pb = FitProblem::new(
        LinearModel::dense(j.clone()).unwrap(),
        SquaredError::l2(vec(&mut rng(76), n)).unwrap(),
        Euclidean,
    )
    .unwrap();
    let mut lin = pb.linearize(&vec(&mut rng(77), p)).unwrap();
    let g = gram_twin(&j, &Mat::identity(n, n), 0.0);
    for seed in 0..3 {
        let sk = NystromSketch::build(&lin.gram(0.0), r, seed, 1.0, Par::Seq)
            .unwrap_or_else(|e| panic!("seed {seed}: {e:?}"));
        let nonzero = sk.eigenvalues().iter().filter(|&&l| l > 0.0).count();
        assert_eq!(nonzero, n, "seed {seed}");
        let e = max_rel_diff(&approximation(&sk), &g);
        assert!(e <= 1e-10, "seed {seed}: ‖Â − G‖ / ‖G‖ = {e:e}");
    }
}

#[test]
fn coefficients_follow_the_formula_with_and_without_damping() {
    // J = [diag(2, 1, ½) | 0] (3 × 4), M = I: G = diag(4, 1, ¼, 0), λ̂ = (4, 1, ¼, 0).
    // c_i = (λ̂_r + μ)/(λ̂_i + μ) − 1 (module docs); for μ = 0, λ̂_r + μ = 0 and the
    // smallest positive λ̂_i + μ = ¼ replaces it, the zero direction gets c = 0.
    let (n, p) = (3, 4);
    let d = [2.0, 1.0, 0.5];
    let j = Mat::from_fn(n, p, |a, b| if a == b { d[a] } else { 0.0 });
    let pb = FitProblem::new(
        LinearModel::dense(j).unwrap(),
        SquaredError::l2(vec(&mut rng(78), n)).unwrap(),
        Euclidean,
    )
    .unwrap();
    let mut lin = pb.linearize(&vec(&mut rng(79), p)).unwrap();
    // shift_per_damping = 4: μ = 4λ.
    let sk = NystromSketch::build(&lin.gram(0.0), p, 5, 4.0, Par::Seq).unwrap();
    assert_eq!(sk.shift(0.0625), 0.25);
    let l = sk.eigenvalues();
    let lam = [4.0, 1.0, 0.25, 0.0];
    assert!(
        l.iter().zip(&lam).all(|(a, b)| (a - b).abs() <= 1e-12),
        "{l:?}"
    );
    for (mu, want) in [
        (0.0, [0.25 / 4.0 - 1.0, 0.25 - 1.0, 0.0, 0.0]),
        (
            0.25,
            [0.25 / 4.25 - 1.0, 0.25 / 1.25 - 1.0, 0.25 / 0.5 - 1.0, 0.0],
        ),
    ] {
        let c = sk.coefficients(mu);
        assert!(
            c.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-12),
            "μ = {mu}: {c:?} vs {want:?}"
        );
    }
}

#[test]
fn preconditioner_is_a_square_operator_equal_to_its_transpose() {
    // P⁻¹ = I + U diag(c) Uᵀ is N × N and symmetric: as a faer `LinOp`, `conj_apply`
    // (P⁻ᵀ, real) gives the same block as `apply`.
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::matrix_free::LinOp;
    let (n, p, r) = (40, 20, 8);
    let (pb, _a, theta) = weighted_problem(n, p, 80);
    let mut lin = pb.linearize(&theta).unwrap();
    let sk = NystromSketch::build(&lin.gram(0.0), r, 9, 1.0, Par::Seq).unwrap();
    let pinv = sk.preconditioner(1e-3);
    assert_eq!((pinv.nrows(), pinv.ncols()), (p, p));
    let v = common::mat(&mut rng(81), p, 2);
    let mut mem = MemBuffer::new(pinv.apply_scratch(2, Par::Seq));
    let (mut a, mut t) = (Mat::<f64>::zeros(p, 2), Mat::<f64>::zeros(p, 2));
    pinv.apply(a.as_mut(), v.as_ref(), Par::Seq, MemStack::new(&mut mem));
    pinv.conj_apply(t.as_mut(), v.as_ref(), Par::Seq, MemStack::new(&mut mem));
    assert!(max_rel_diff(&a, &t) <= 1e-15);
    // …and P⁻¹v is not v (c ≠ 0 on range U): the check above compares two real products.
    assert!(max_rel_diff(&a, &v) >= 1e-3);
}
