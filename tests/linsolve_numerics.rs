//! Issue 14, items 1–7: the default preconditioner, `Auto`'s choice, the accuracy
//! promises of the dense paths, CG's reported residual, scale-invariant breakdown and
//! the Nyström floor — each against a value from mathematics (a dense twin, a known
//! minimiser) or a bound from the measurements in docs/performance-solvers.md.

mod common;

use common::solve_fresh;
use faer::Mat;
use natgrad::linsolve::{CgSettings, LinearSolver, Preconditioner, Rhs, SolveFailure};
use natgrad::metric::WeightedL2;
use natgrad::model::{Activation, LinearModel, Mlp};
use natgrad::problems::grids;
use natgrad::{FitProblem, NaturalGradient, SquaredError};

fn mlp(widths: &[usize], x: &[f64]) -> Mlp {
    Mlp::with_hidden(widths, Activation::Tanh, x)
        .unwrap()
        .with_parallelism(faer::Par::Seq)
}

/// CG iterations of one natural-gradient direction at the network's initial θ (`None`
/// when CG fails, e.g. does not converge within `max_iters`).
fn cg_iters<Me: natgrad::Metric>(
    pb: &FitProblem<Mlp, SquaredError, Me>,
    lambda: f64,
    s: CgSettings,
) -> Option<usize> {
    let theta = pb.model().init_params(1);
    let mut lin = pb.linearize(&theta).unwrap();
    let r = lin.output_gradient().to_vec();
    let rhs = Rhs::Cotangent { r: &r, jt_r: None };
    solve_fresh(&mut lin, rhs, lambda, &LinearSolver::Cg(s))
        .ok()
        .and_then(|(_, info)| info.cg_iters())
}

/// Item 1: with default settings, CG on the 2-20-20-1 tanh network (p = 501) over a 20×20
/// grid needs few iterations — measured 20 (L²) and 39 (H¹) at λ = 1e-4, where Jacobi
/// needs 730 (L²) and does not converge within 5000 at λ = 1e-7 — in the L² metric (where
/// Jacobi applies) and in the sparse H¹ metric (mass + 5-point Laplacian).
#[test]
fn default_cg_is_fast_on_a_network() {
    let (x, u) = grids::unit_square_sine(20).unwrap();
    let n = u.len();
    let l2 = FitProblem::new(
        mlp(&[2, 20, 20, 1], &x),
        SquaredError::l2(u.clone()).unwrap(),
        WeightedL2::new(vec![1.0 / n as f64; n]).unwrap(),
    )
    .unwrap();
    let h1 = FitProblem::new(
        mlp(&[2, 20, 20, 1], &x),
        SquaredError::l2(u).unwrap(),
        grids::h1_metric(20).unwrap(),
    )
    .unwrap();
    for lambda in [1e-4, 1e-7] {
        let s = CgSettings {
            max_iters: 5000,
            ..CgSettings::default()
        };
        let jacobi = CgSettings {
            preconditioner: Preconditioner::Jacobi,
            ..s.clone()
        };
        let (d_l2, d_h1) = (cg_iters(&l2, lambda, s.clone()), cg_iters(&h1, lambda, s));
        eprintln!(
            "λ = {lambda:e}: default L² {d_l2:?}, H¹ {d_h1:?}; Jacobi L² {:?}",
            cg_iters(&l2, lambda, jacobi)
        );
        for (metric, iters) in [("L²", d_l2), ("H¹", d_h1)] {
            let iters = iters.unwrap_or(usize::MAX);
            assert!(
                iters <= 150,
                "{metric}, λ = {lambda:e}: {iters} CG iterations"
            );
        }
    }
}

/// A dense linear least-squares problem `‖A θ − u‖²/(2n)` in its own metric `I/n`
/// (Gauss–Newton).
fn linear_problem(a: &Mat<f64>, u: Vec<f64>) -> FitProblem<LinearModel, SquaredError, WeightedL2> {
    let n = u.len();
    FitProblem::new(
        LinearModel::dense(a.clone()).unwrap(),
        SquaredError::l2(u).unwrap(),
        WeightedL2::uniform(n).unwrap(),
    )
    .unwrap()
}

/// `‖b − (G + λI) d‖ / ‖b‖` from the dense twin `G = AᵀMA` (plain loops).
fn twin_residual(a: &Mat<f64>, m: &Mat<f64>, lambda: f64, b: &[f64], d: &[f64]) -> f64 {
    let g = common::gram_twin(a, m, lambda);
    let gd = common::matvec(&g, d);
    let res: Vec<f64> = b.iter().zip(&gd).map(|(b, g)| b - g).collect();
    common::rel_diff(&res, &vec![0.0; b.len()]) / common::rel_diff(b, &vec![0.0; b.len()])
}

/// Item 5: a truncated CG solve reports the true residual of the direction it returns
/// (faer 0.24 hands back the initial one, 1.0), in the solve info and in the error.
#[test]
fn truncated_cg_reports_the_true_residual() {
    let (n, p, lambda) = (40, 25, 1e-6);
    let mut r = common::rng(5);
    let a = Mat::from_fn(n, p, |i, j| {
        common::mat(&mut r, 1, 1)[(0, 0)] * 0.7_f64.powi((i + j) as i32 % 9)
    });
    let pb = linear_problem(&a, common::vec(&mut r, n));
    let theta = vec![0.0; p];
    let mut lin = pb.linearize(&theta).unwrap();
    let g = lin.output_gradient().to_vec();
    let mut b = vec![0.0; p];
    lin.vjp(&g, &mut b);
    let rhs = Rhs::Params(&b);
    let m = Mat::<f64>::identity(n, n) * faer::Scale(1.0 / n as f64);
    let (d, info) = solve_fresh(
        &mut lin,
        rhs,
        lambda,
        &LinearSolver::Cg(CgSettings::fixed_iterations(6)),
    )
    .unwrap();
    let truth = twin_residual(&a, &m, lambda, &b, &d);
    let cg = info.cg.unwrap();
    assert!(cg.truncated && cg.iters == 6, "{info:?}");
    assert!(
        truth < 0.5,
        "the test needs a partly solved system: {truth:e}"
    );
    assert!(
        (info.rel_residual - truth).abs() <= 1e-8 * truth,
        "reported {:e}, true {truth:e}",
        info.rel_residual
    );
    let strict = CgSettings {
        max_iters: 6,
        ..CgSettings::default()
    };
    let err = solve_fresh(&mut lin, rhs, lambda, &LinearSolver::Cg(strict)).unwrap_err();
    match &err {
        SolveFailure::NoConvergence { rel_residual, .. } => {
            assert!(
                (rel_residual - truth).abs() <= 1e-8 * truth,
                "error reports {rel_residual:e}, true {truth:e}"
            )
        }
        e => panic!("expected NoConvergence, got {e}"),
    }
    assert!(
        err.to_string().contains(&format!("{truth:.1e}")[..3]),
        "{err}"
    );
}

/// The least-squares coefficients `c = (BᵀB)⁻¹ Bᵀu` of a full-rank design `B` (plain
/// loops and the tests' independent dense solve).
fn normal_equations(basis: &Mat<f64>, u: &[f64]) -> Vec<f64> {
    let (n, q) = (basis.nrows(), basis.ncols());
    let btb = Mat::from_fn(q, q, |i, j| {
        (0..n).map(|k| basis[(k, i)] * basis[(k, j)]).sum()
    });
    let btu: Vec<f64> = (0..q)
        .map(|i| (0..n).map(|k| basis[(k, i)] * u[k]).sum())
        .collect();
    common::dense_solve(&btb, &btu)
}

/// The 8×3 polynomial design `[1, x, x²]` at 8 points of `[−1, 1]`.
fn poly_design(n: usize, degree: usize) -> Mat<f64> {
    Mat::from_fn(n, degree + 1, |i, j| {
        (-1.0 + 2.0 * i as f64 / (n - 1) as f64).powi(j as i32)
    })
}

/// Item 6: CG's stopping and breakdown tests are scale-invariant — the direction for
/// `10⁻¹⁶⁰ r` is `10⁻¹⁶⁰` times the direction for `r`, and a zero right-hand side is
/// convergence at `d = 0`, not a breakdown.
#[test]
fn cg_is_scale_invariant_in_the_right_hand_side() {
    let a = poly_design(8, 2);
    let pb = linear_problem(&a, vec![0.0; 8]);
    let theta = [0.5, -1.0, 2.0];
    let mut lin = pb.linearize(&theta).unwrap();
    let r = lin.output_gradient().to_vec();
    let cg = LinearSolver::Cg(CgSettings::default());
    let (d, _) = solve_fresh(&mut lin, Rhs::Cotangent { r: &r, jt_r: None }, 1e-8, &cg).unwrap();
    for scale in [1e-160, 1e-300, 1e150] {
        let rs: Vec<f64> = r.iter().map(|v| v * scale).collect();
        let (ds, info) = solve_fresh(&mut lin, Rhs::Cotangent { r: &rs, jt_r: None }, 1e-8, &cg)
            .unwrap_or_else(|e| panic!("scale {scale:e}: {e}"));
        let back: Vec<f64> = ds.iter().map(|v| v / scale).collect();
        let e = common::rel_diff(&back, &d);
        assert!(e <= 1e-10, "scale {scale:e}: {e:e} ({info:?})");
    }
    let zero = vec![0.0; 8];
    let (d0, info) = solve_fresh(
        &mut lin,
        Rhs::Cotangent {
            r: &zero,
            jt_r: None,
        },
        1e-8,
        &cg,
    )
    .unwrap();
    assert!(
        d0.iter().all(|&v| v == 0.0) && info.cg_iters() == Some(0) && info.rel_residual == 0.0,
        "{info:?}"
    );
}

/// Item 6 as a run: fitting the zero function with the 8×3 polynomial design, default
/// settings (λ = 1e-8), from `θ₀ = 10⁻¹⁵⁰·(0.5, −1, 2)` and from `(0.5, −1, 2)`. Each
/// step maps `θ ↦ λ (G + λI)⁻¹ θ`, so θ goes to 0 and the right-hand side vanishes; the run
/// must never report a breakdown. (Before: "CG breakdown … not positive definite" at
/// iteration 2, and after ~30 steps from the second start.)
#[test]
fn vanishing_residuals_are_not_a_breakdown() {
    for scale in [1e-150, 1.0] {
        let theta0 = [0.5 * scale, -scale, 2.0 * scale];
        let pb = linear_problem(&poly_design(8, 2), vec![0.0; 8]);
        let (_, last, reason) = common::runs::trajectory(pb, NaturalGradient::new(), &theta0, 60);
        assert!(
            !reason.contains("breakdown") && !reason.contains("SolverExit"),
            "from {theta0:?}: {reason}"
        );
        let norm = last.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!(norm <= 1e-12 * scale, "from {theta0:?}: ‖θ‖ = {norm:e}");
    }
}

/// Item 7: Nyström on a rank-deficient Gram. 40 points of `[−1, 1]`, 8 columns repeating
/// `[1, x, x²]` (rank 3), `u = cos 2x`, λ = 0, rank-5 sketch refreshed every solve: one
/// natural-gradient step (α = 1) reaches the least-squares loss, computed here from the
/// 3×3 normal equations of `[1, x, x²]` (issue: 1.0553e-3).
#[test]
fn nystrom_truncates_noise_eigenvalues() {
    let n = 40;
    let x: Vec<f64> = (0..n)
        .map(|i| -1.0 + 2.0 * i as f64 / (n - 1) as f64)
        .collect();
    let u: Vec<f64> = x.iter().map(|x| (2.0 * x).cos()).collect();
    let a = Mat::from_fn(n, 8, |i, j| x[i].powi((j % 3) as i32));
    let pb = linear_problem(&a, u.clone());
    // Least squares in the 3 independent columns: (BᵀB) c = Bᵀu.
    let basis = poly_design(n, 2);
    let c = normal_equations(&basis, &u);
    let mut best = vec![0.0; 8];
    best[..3].copy_from_slice(&c);
    let loss_min = pb.loss_at(&best).unwrap();
    assert!(
        (loss_min - 1.0553e-3).abs() <= 1e-7,
        "least-squares loss {loss_min:e}"
    );
    let cg = CgSettings {
        preconditioner: Preconditioner::Nystrom {
            rank: 5,
            refresh_every: 1,
            seed: 0,
        },
        ..CgSettings::default()
    };
    let solver = NaturalGradient::new()
        .with_damping(0.0)
        .unwrap()
        .with_linear_solver(LinearSolver::Cg(cg))
        .unwrap();
    let pb = linear_problem(&a, u);
    let (_, last, reason) = common::runs::trajectory(pb, solver, &[0.0; 8], 1);
    let pb = linear_problem(&a, x.iter().map(|x| (2.0 * x).cos()).collect());
    let loss = pb.loss_at(&last).unwrap();
    assert!(!reason.contains("SolverExit"), "{reason}");
    assert!(
        (loss - loss_min).abs() <= 1e-9 * loss_min,
        "loss {loss:e}, least squares {loss_min:e}"
    );
}

/// The 30×4 design `[1, x, x², B v]` at `x_i = i/29`, `v = (0.3, −0.7, 0.2)`: its last
/// column equals a combination of the first three up to rounding (`σ_min` at rounding
/// level), and `u = eˣ`. Returns the design, `u`, and the minimum-norm least-squares
/// solution of the exactly rank-3 design `B [I | v]` from mathematics:
/// `θ = [I | v]⁺ c = [I; vᵀ] (I + v vᵀ)⁻¹ c` with `c = (BᵀB)⁻¹ Bᵀ u` (3×3 solves).
fn dependent_design() -> (Mat<f64>, Vec<f64>, Vec<f64>) {
    let n = 30;
    let v = [0.3, -0.7, 0.2];
    let basis = Mat::from_fn(n, 3, |i, j| (i as f64 / (n - 1) as f64).powi(j as i32));
    let a = Mat::from_fn(n, 4, |i, j| match j {
        3 => (0..3).map(|k| basis[(i, k)] * v[k]).sum(),
        _ => basis[(i, j)],
    });
    let u: Vec<f64> = (0..n).map(|i| (i as f64 / (n - 1) as f64).exp()).collect();
    let c = normal_equations(&basis, &u);
    let ivv = Mat::from_fn(3, 3, |i, j| v[i] * v[j] + if i == j { 1.0 } else { 0.0 });
    let w = common::dense_solve(&ivv, &c);
    let theta = vec![w[0], w[1], w[2], (0..3).map(|k| v[k] * w[k]).sum()];
    (a, u, theta)
}

/// Item 3: `LeastSquares { rcond: 0 }` at λ = 0 on a design with a column dependent up to
/// rounding drops the noise singular value: one step (α = 1) from θ = 0 lands on the
/// minimum-norm least-squares solution (SVD path, the run), and so does the eigen path
/// (a parameter-space right-hand side), to the accuracy it documents (`√(p ε)`); the
/// Cholesky paths refuse.
#[test]
fn least_squares_cutoff_is_relative_to_machine_precision() {
    let (a, u, expected) = dependent_design();
    let ls = LinearSolver::LeastSquares { rcond: 0.0 };
    let solver = NaturalGradient::new()
        .with_damping(0.0)
        .unwrap()
        .with_linear_solver(ls.clone())
        .unwrap();
    let (_, theta, _) =
        common::runs::trajectory(linear_problem(&a, u.clone()), solver, &[0.0; 4], 1);
    let e = common::rel_diff(&theta, &expected);
    assert!(e <= 1e-9, "θ = {theta:?}, minimum norm {expected:?}: {e:e}");
    // The eigen path: G d = Jᵀ(−r) from θ = 0 is solved for d = θ*.
    let pb = linear_problem(&a, u);
    let mut lin = pb.linearize(&[0.0; 4]).unwrap();
    let g = lin.output_gradient().to_vec();
    let mut b = vec![0.0; 4];
    lin.vjp(&g, &mut b);
    b.iter_mut().for_each(|v| *v = -*v);
    let (d, _) = solve_fresh(&mut lin, Rhs::Params(&b), 0.0, &ls).unwrap();
    let e = common::rel_diff(&d, &expected);
    assert!(
        e <= 1e-6,
        "eigen path: d = {d:?}, minimum norm {expected:?}: {e:e}"
    );
    // The Cholesky paths cannot meet their promise on this Gram matrix (singular to
    // working precision at λ = 0): they refuse, naming the way out.
    for solver in [LinearSolver::Cholesky, LinearSolver::SampleCholesky] {
        let rhs = Rhs::Cotangent { r: &g, jt_r: None };
        match solve_fresh(&mut lin, rhs, 0.0, &solver) {
            Err(e) => assert!(e.to_string().contains("LeastSquares"), "{solver:?}: {e}"),
            Ok((d, _)) => panic!("{solver:?}: accepted d = {d:?}"),
        }
    }
}

/// Item 3, the Cholesky path: `J = [u, u + δv]` (`u = 1`, `v = ±1`, `δ = 1.7e-8`) has
/// `G = [[1, 1], [1, 1 + δ²]]` in the metric `I/n`; elimination leaves the pivot `δ² ≈
/// 3e-16`, at the rounding level of `G₂₂ = 1`, which faer factors without complaint. The
/// direction would have no correct digit along `v`; the path refuses instead.
#[test]
fn cholesky_refuses_a_gram_matrix_singular_to_working_precision() {
    let (n, delta) = (10, 1.7e-8);
    let sign = |i: usize| 1.0 - 2.0 * (i % 2) as f64;
    let a = Mat::from_fn(n, 2, |i, j| 1.0 + j as f64 * delta * sign(i));
    let pb = linear_problem(&a, (0..n).map(|i| i as f64).collect());
    let mut lin = pb.linearize(&[0.0, 0.0]).unwrap();
    let g = lin.output_gradient().to_vec();
    let rhs = Rhs::Cotangent { r: &g, jt_r: None };
    match solve_fresh(&mut lin, rhs, 0.0, &LinearSolver::Cholesky) {
        Err(e) => assert!(e.to_string().contains("LeastSquares"), "{e}"),
        Ok((d, _)) => panic!("accepted d = {d:?}"),
    }
}

/// Item 3, natgrad's own threshold: `A = [[1, 1], [0, 2⁻²⁶]]` in the metric `I/2` has
/// `G = AᵀA/2 = ½[[1, 1], [1, 1 + 2⁻⁵²]]`, every entry exact in binary64 (so natgrad's
/// Gram equals the one built here). Elimination leaves the pivot `2⁻⁵³ = ε/2 > 0`
/// exactly, so faer's `llt` factors `G` (checked below); the pivot is at `½ε` of the
/// diagonal entry `G₂₂ ≈ ½`, below natgrad's `dim·ε·G₂₂ = ε`, so the path refuses:
/// the direction along `e₂` would be the rounding error of `G₂₂` amplified 2⁵³ times.
#[test]
fn cholesky_threshold_refuses_what_faer_factors() {
    let tiny = 2f64.powi(-26);
    let a = Mat::from_fn(2, 2, |i, j| match (i, j) {
        (0, _) => 1.0,
        (1, 1) => tiny,
        _ => 0.0,
    });
    let g = Mat::from_fn(2, 2, |i, j| {
        0.5 * if i == 1 && j == 1 {
            1.0 + tiny * tiny
        } else {
            1.0
        }
    });
    assert!(g[(1, 1)] > 0.5, "1 + 2⁻⁵² is representable");
    let llt = g.llt(faer::Side::Lower).expect("faer factors G");
    let l = llt.L();
    let pivot = l[(1, 1)] * l[(1, 1)];
    assert!(
        pivot > 0.0 && pivot <= 2.0 * f64::EPSILON * g[(1, 1)],
        "pivot {pivot:e}"
    );

    let pb = linear_problem(&a, vec![1.0, 2.0]);
    let mut lin = pb.linearize(&[0.0, 0.0]).unwrap();
    let r = lin.output_gradient().to_vec();
    let rhs = Rhs::Cotangent { r: &r, jt_r: None };
    match solve_fresh(&mut lin, rhs, 0.0, &LinearSolver::Cholesky) {
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.contains("pivot 1") && text.contains("singular (to working precision)"),
                "{text}"
            );
            assert!(text.contains("LinearSolver::LeastSquares"), "{text}");
        }
        Ok((d, _)) => panic!("accepted d = {d:?}"),
    }
    // With damping the same matrix is well conditioned and factored, and the direction is
    // the solution of the damped system (G + λI) d = Aᵀr, solved here by elimination (was
    // only `is_ok()`, which a wrong damping, e.g. 2λ on the diagonal, also passed).
    let lambda = 1e-6;
    let rhs = Rhs::Cotangent { r: &r, jt_r: None };
    let (d, _) = solve_fresh(&mut lin, rhs, lambda, &LinearSolver::Cholesky)
        .unwrap_or_else(|e| panic!("damped: {e}"));
    let damped = Mat::from_fn(2, 2, |i, j| g[(i, j)] + if i == j { lambda } else { 0.0 });
    let at_r = common::matvec(&a.transpose().to_owned(), &r);
    let expected = common::dense_solve(&damped, &at_r);
    let e = common::rel_diff(&d, &expected);
    assert!(e <= 1e-8, "d = {d:?}, by elimination {expected:?}: {e:e}");
}
