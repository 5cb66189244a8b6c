//! K-FAC (docs/math.md §5) against the mathematics it stands for: the Kronecker identity
//! for one sample (a hand-written Jacobian of a one-layer network), the Kronecker inverse
//! against a dense solve with the assembled damped factors, symmetric positive
//! definiteness, and PCG with K-FAC converging to the Cholesky direction.

mod common;

use common::{rel_diff, rng, vec};
use faer::linalg::solvers::SolveCore;
use faer::{Conj, Mat, Par, Side};
use natgrad::linsolve::DirectionSolver;
use natgrad::linsolve::{
    kfac, CgSettings, LinearSolver, Preconditioner, PreconditionerKind, Rhs, SolveFailure,
    SolveMethod,
};
use natgrad::metric::{DenseMetric, WeightedL2};
use natgrad::model::{Activation, KfacFactors, Mlp, Model};
use natgrad::{Error, FitProblem, SquaredError};

type MlpProblem = FitProblem<Mlp, SquaredError, WeightedL2>;

/// A tanh network (identity output) on `m` random inputs in `[-1, 1]^d`, random targets,
/// metric weights in `[0.5, 1.5)`, and a random θ (Glorot, then perturbed biases so that
/// the bias columns matter).
fn mlp_problem(widths: &[usize], m: usize, seed: u64) -> (MlpProblem, Vec<f64>) {
    let mut r = rng(seed);
    let (d, q) = (widths[0], widths[widths.len() - 1]);
    let x = vec(&mut r, m * d);
    let model = Mlp::with_hidden(widths, Activation::Tanh, &x)
        .unwrap()
        .with_parallelism(Par::Seq)
        .with_dense_limit(0);
    let mut theta = model.init_params(seed);
    theta.iter_mut().for_each(|t| *t += 0.1 * vec(&mut r, 1)[0]);
    let w: Vec<f64> = vec(&mut r, m * q).iter().map(|v| 1.0 + 0.5 * v).collect();
    let pb = FitProblem::new(
        model,
        SquaredError::l2(vec(&mut r, m * q)).unwrap(),
        WeightedL2::new(w).unwrap(),
    )
    .unwrap();
    (pb, theta)
}

/// `A ⊗ B` by loops: entry `(k·r + u, l·r + v) = A[k, l] B[u, v]`.
fn kron(a: &Mat<f64>, b: &Mat<f64>) -> Mat<f64> {
    let r = b.nrows();
    Mat::from_fn(a.nrows() * r, a.ncols() * r, |i, j| {
        a[(i / r, j / r)] * b[(i % r, j % r)]
    })
}

/// `max |a − b|`; different shapes fail, and a NaN gives NaN (`f64::max` would skip it).
fn max_abs_diff(a: &Mat<f64>, b: &Mat<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape(), "max_abs_diff: shapes differ");
    let mut d: f64 = 0.0;
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            let e = (a[(i, j)] - b[(i, j)]).abs();
            d = common::nan_max(d, e);
        }
    }
    d
}

fn max_abs(a: &Mat<f64>) -> f64 {
    max_abs_diff(a, &Mat::zeros(a.nrows(), a.ncols()))
}

fn factors(pb: &MlpProblem, theta: &[f64]) -> Vec<KfacFactors> {
    let mut lin = pb.linearize(theta).unwrap();
    kfac::factors(&mut lin).unwrap()
}

#[test]
fn factors_of_one_sample_reproduce_the_layer_block_of_the_gram_matrix() {
    // One layer y = tanh(W x + b), d = 3 inputs, q = 2 outputs, one sample: the Jacobian is
    // written by hand, ∂y_j/∂Θ[j, c] = (1 − y_j²) [x; 1]_c and 0 off row j (Θ = [W | b]
    // column-major, entry (j, c) at j + 2c).
    let (d, q) = (3, 2);
    let x = [0.3, -0.7, 0.45];
    let model = Mlp::new(&[d, q], &[Activation::Tanh], &x).unwrap();
    let theta = [0.2, -0.4, 0.9, 0.1, -0.3, 0.6, 0.25, -0.15];
    let w = [0.7, 1.3];
    let pb = FitProblem::new(
        model,
        SquaredError::l2(vec![0.0; q]).unwrap(),
        WeightedL2::new(w.to_vec()).unwrap(),
    )
    .unwrap();
    let xb = [x[0], x[1], x[2], 1.0];
    let p = q * (d + 1);
    let jac = Mat::from_fn(q, p, |j, k| {
        let (row, c) = (k % q, k / q);
        let z: f64 = (0..=d).map(|cc| theta[row + q * cc] * xb[cc]).sum();
        let y = z.tanh();
        if row == j {
            (1.0 - y * y) * xb[c]
        } else {
            0.0
        }
    });
    let g = Mat::from_fn(p, p, |a, b| {
        (0..q).map(|j| w[j] * jac[(j, a)] * jac[(j, b)]).sum()
    });
    let f = factors(&pb, &theta);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].range, 0..p);
    let err = max_abs_diff(&kron(&f[0].a, &f[0].b), &g) / max_abs(&g);
    assert!(err <= 1e-12, "one layer: ‖A⊗B − G‖/‖G‖ = {err:e}");
}

#[test]
fn factors_of_one_sample_reproduce_every_layer_block_of_a_deep_network() {
    // Two hidden layers, scalar output, one sample: each layer's block of JᵀMJ (J column by
    // column from forward-mode jvps, which share no code with the backward passes of the
    // factors) is A ⊗ B.
    let (pb, theta) = mlp_problem(&[2, 5, 4, 1], 1, 3);
    let jac = natgrad::check::jacobian_by_jvps(&mut pb.model().linearize(&theta).unwrap(), 1);
    let w = pb.metric().weights().to_vec();
    for f in factors(&pb, &theta) {
        let (s, n) = (f.range.start, f.range.len());
        let g = Mat::from_fn(n, n, |a, b| w[0] * jac[(0, s + a)] * jac[(0, s + b)]);
        let err = max_abs_diff(&kron(&f.a, &f.b), &g) / max_abs(&g);
        assert!(
            err <= 1e-12,
            "layer at θ[{s}..]: ‖A⊗B − G_l‖/‖G_l‖ = {err:e}"
        );
    }
}

/// The K-FAC direction `P⁻¹ b` (factors refreshed at every solve), with its solve info;
/// the factors stay in `cache`.
fn kfac_solve(
    pb: &MlpProblem,
    theta: &[f64],
    b: &[f64],
    damping: f64,
    decay: f64,
    cache: &mut DirectionSolver,
) -> (Vec<f64>, natgrad::linsolve::SolveInfo) {
    let mut lin = pb.linearize(theta).unwrap();
    let mut x = vec![0.0; b.len()];
    let solver = LinearSolver::Kfac {
        refresh_every: 1,
        decay,
    };
    let rhs = Rhs::Params(b);
    let info = cache
        .set_linear_solver(solver.clone())
        .solve_from(&mut lin, rhs, damping, &mut x)
        .unwrap();
    (x, info)
}

/// `(A + π√λ I) ⊗ (B + √λ/π I)` block-diagonal over the layers, π from the traces.
fn assembled_damped(f: &[KfacFactors], p: usize, damping: f64) -> Mat<f64> {
    let mut m = Mat::zeros(p, p);
    for fl in f {
        let (c, r) = (fl.a.nrows(), fl.b.nrows());
        let tr = |x: &Mat<f64>| (0..x.nrows()).map(|i| x[(i, i)]).sum::<f64>();
        let pi = ((tr(&fl.a) / c as f64) / (tr(&fl.b) / r as f64)).sqrt();
        let s = damping.sqrt();
        let a = Mat::from_fn(c, c, |i, j| {
            fl.a[(i, j)] + if i == j { pi * s } else { 0.0 }
        });
        let b = Mat::from_fn(r, r, |i, j| {
            fl.b[(i, j)] + if i == j { s / pi } else { 0.0 }
        });
        let k = kron(&a, &b);
        let o = fl.range.start;
        for j in 0..k.ncols() {
            for i in 0..k.nrows() {
                m[(o + i, o + j)] = k[(i, j)];
            }
        }
    }
    m
}

#[test]
fn kronecker_inverse_equals_a_dense_solve_with_the_damped_factors() {
    for (widths, m, damping) in [
        (vec![2, 6, 5, 1], 30, 1e-3),
        (vec![3, 4, 2], 10, 1e-6),
        (vec![1, 7, 3], 25, 0.5),
    ] {
        let (pb, theta) = mlp_problem(&widths, m, 11);
        let p = pb.n_params();
        let b = vec(&mut rng(12), p);
        let mut cache = DirectionSolver::default();
        let (x, info) = kfac_solve(&pb, &theta, &b, damping, 0.0, &mut cache);
        assert_eq!(info.method, SolveMethod::Kfac);
        assert_eq!(info.cg, None, "K-FAC as a solver runs no CG");
        let f = cache.cache().kfac().unwrap().factors();
        let dense = assembled_damped(&f, p, damping);
        let mut want = Mat::from_fn(p, 1, |i, _| b[i]);
        dense
            .partial_piv_lu()
            .solve_in_place_with_conj(Conj::No, want.as_mut());
        let want: Vec<f64> = (0..p).map(|i| want[(i, 0)]).collect();
        let err = rel_diff(&x, &want);
        assert!(err <= 1e-10, "{widths:?}, λ = {damping:e}: {err:e}");
    }
}

#[test]
fn kfac_preconditioner_is_symmetric_positive_definite() {
    for seed in 0..8u64 {
        let mut r = rng(100 + seed);
        let widths: Vec<usize> = (0..2 + seed as usize % 3)
            .map(|_| 1 + (vec(&mut r, 1)[0].abs() * 6.0) as usize)
            .chain([1 + seed as usize % 2])
            .collect();
        let m = 1 + seed as usize * 3;
        let (pb, theta) = mlp_problem(&widths, m, seed);
        let p = pb.n_params();
        let damping = [1e-6, 1e-3, 1.0][seed as usize % 3];
        let b = vec(&mut r, p);
        let mut cache = DirectionSolver::default();
        kfac_solve(&pb, &theta, &b, damping, 0.0, &mut cache);
        let pre = cache
            .cache()
            .kfac()
            .unwrap()
            .preconditioner(damping, Par::Seq)
            .unwrap();
        let mut dense = Mat::zeros(p, p);
        let mut col = vec![0.0; p];
        for j in 0..p {
            let e: Vec<f64> = (0..p).map(|i| f64::from(u8::from(i == j))).collect();
            pre.apply_vec(&e, &mut col);
            col.iter().enumerate().for_each(|(i, v)| dense[(i, j)] = *v);
        }
        let asym = max_abs_diff(&dense, &dense.transpose().to_owned()) / max_abs(&dense);
        assert!(asym <= 1e-12, "{widths:?} m = {m}: asymmetry {asym:e}");
        let sym = Mat::from_fn(p, p, |i, j| 0.5 * (dense[(i, j)] + dense[(j, i)]));
        let eig = sym.self_adjoint_eigenvalues(Side::Lower).unwrap();
        assert!(
            eig[0] > 0.0,
            "{widths:?} m = {m}: smallest eigenvalue {:e}",
            eig[0]
        );
    }
}

#[test]
fn pcg_with_kfac_reaches_the_cholesky_direction() {
    let (pb, theta) = mlp_problem(&[2, 8, 8, 1], 40, 21);
    let p = pb.n_params();
    for damping in [1e-3, 1e-6] {
        let mut lin = pb.linearize(&theta).unwrap();
        let r = lin.output_gradient().to_vec();
        let mut run = |solver: &LinearSolver| {
            let mut x = vec![0.0; p];
            let rhs = Rhs::Cotangent { r: &r, jt_r: None };
            let mut cache = DirectionSolver::default();
            let info = cache
                .set_linear_solver(solver.clone())
                .solve_from(&mut lin, rhs, damping, &mut x)
                .unwrap();
            (x, info)
        };
        let (want, _) = run(&LinearSolver::Cholesky);
        let cg = CgSettings {
            rel_tol: 1e-13,
            max_iters: 5000,
            preconditioner: Preconditioner::Kfac {
                refresh_every: 1,
                decay: 0.0,
            },
            warm_start: false,
            ..CgSettings::default()
        };
        let (got, info) = run(&LinearSolver::Cg(cg));
        assert_eq!(info.cg.unwrap().preconditioner, PreconditionerKind::Kfac);
        let err = rel_diff(&got, &want);
        assert!(
            err <= 1e-8,
            "λ = {damping:e}: {err:e} after {} iterations",
            info.cg_iters().unwrap()
        );
    }
}

#[test]
fn kfac_refuses_a_coupling_metric_and_bad_settings() {
    let (pb, theta) = mlp_problem(&[2, 3, 1], 4, 5);
    let (model, loss) = (pb.model().clone(), pb.loss().clone());
    let k = Mat::from_fn(4, 4, |i, j| if i == j { 2.0 } else { 0.5 });
    let coupled = FitProblem::new(model, loss, DenseMetric::new(k).unwrap()).unwrap();
    let p = pb.n_params();
    let b = vec![1.0; p];
    let kfac_solver = |refresh_every, decay| LinearSolver::Kfac {
        refresh_every,
        decay,
    };
    let mut lin = coupled.linearize(&theta).unwrap();
    let mut x = vec![0.0; p];
    let mut cache = DirectionSolver::default();
    let res = cache.set_linear_solver(kfac_solver(1, 0.0)).solve_from(
        &mut lin,
        Rhs::Params(&b),
        1e-3,
        &mut x,
    );
    assert!(
        matches!(res, Err(SolveFailure::Direct(Error::Unsupported(ref s))) if s.contains("diagonal metric")),
        "{res:?}"
    );
    for bad in [
        kfac_solver(0, 0.0),
        kfac_solver(1, 1.0),
        kfac_solver(1, -0.1),
    ] {
        let mut lin = pb.linearize(&theta).unwrap();
        let res = cache.set_linear_solver(bad.clone()).solve_from(
            &mut lin,
            Rhs::Params(&b),
            1e-3,
            &mut x,
        );
        assert!(
            matches!(res, Err(SolveFailure::Direct(Error::InvalidSetting(_)))),
            "{bad:?}: {res:?}"
        );
    }
}

#[test]
fn exponential_average_mixes_old_and_new_factors() {
    // decay ρ: after refreshes at θ₀ then θ₁, A = ρ A(θ₀) + (1 − ρ) A(θ₁).
    let (pb, theta0) = mlp_problem(&[2, 4, 1], 12, 8);
    let theta1: Vec<f64> = theta0.iter().map(|t| t * 1.3 - 0.05).collect();
    let (f0, f1) = (factors(&pb, &theta0), factors(&pb, &theta1));
    let rho = 0.25;
    let mut cache = DirectionSolver::default();
    let b = vec![1.0; pb.n_params()];
    for theta in [&theta0, &theta1] {
        kfac_solve(&pb, theta, &b, 1e-3, rho, &mut cache);
    }
    let got = cache.cache().kfac().unwrap();
    assert_eq!(got.refreshes(), 2);
    for ((g, a), b) in got.factors().iter().zip(&f0).zip(&f1) {
        let want = Mat::from_fn(g.a.nrows(), g.a.ncols(), |i, j| {
            rho * a.a[(i, j)] + (1.0 - rho) * b.a[(i, j)]
        });
        assert!(max_abs_diff(&g.a, &want) <= 1e-14 * max_abs(&want));
    }
}

#[test]
fn kfac_directions_are_bitwise_equal_at_one_and_two_threads() {
    // Large enough that the factor GEMMs and the products run in parallel (> 2²¹ flops).
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (pb, mut theta) = mlp_problem(&[2, 64, 64, 1], 512, 31);
            let model = pb.model().clone().with_parallelism(Par::rayon(threads));
            let pb = FitProblem::new(model, pb.loss().clone(), pb.metric().clone()).unwrap();
            let mut cache = DirectionSolver::default();
            let mut out = Vec::new();
            for solver in [
                LinearSolver::Cg(CgSettings {
                    rel_tol: 1e-6,
                    max_iters: 5000,
                    preconditioner: Preconditioner::kfac(),
                    ..CgSettings::default()
                }),
                LinearSolver::Kfac {
                    refresh_every: 2,
                    decay: 0.5,
                },
            ] {
                for _ in 0..3 {
                    let mut lin = pb.linearize(&theta).unwrap();
                    let r = lin.output_gradient().to_vec();
                    let mut d = vec![0.0; theta.len()];
                    let rhs = Rhs::Cotangent { r: &r, jt_r: None };
                    let par = Par::rayon(threads);
                    cache
                        .set_linear_solver(solver.clone())
                        .set_parallelism(par.into())
                        .solve_from(&mut lin, rhs, 1e-3, &mut d)
                        .unwrap();
                    theta.iter_mut().zip(&d).for_each(|(t, d)| *t -= 0.5 * d);
                    out.push(d);
                }
            }
            out
        })
    };
    let (one, two) = (run(1), run(2));
    assert_eq!(one.len(), 6);
    assert!(
        one == two,
        "K-FAC directions differ between 1 and 2 threads"
    );
}
