//! The direct solvers of `src/linsolve/` against dense twins written here from docs/math.md
//! §2, on the paths the rest of the suite does not reach: the sum over shards of the dense
//! Gram matrix (a sharded model, without MPI), and what `SolveInfo` reports (the survivors
//! of cargo-mutants on `src/linsolve/`, docs/testing.md).

mod common;

use common::{dense_solve, gram_twin, rel_diff, rng, solve_fresh, vec};
use faer::Mat;
use natgrad::linsolve::DirectionSolver;
use natgrad::linsolve::{CgSettings, Preconditioner, Rhs};
use natgrad::model::{LinearModel, Linearization};
use natgrad::{FitProblem, LinearSolver, Model, SquaredError, WeightedL2};

/// One of two shards that hold the same samples: every sum over samples that a solver
/// completes with [`Model::sum_over_shards`] is twice this shard's (what two MPI ranks with
/// equal data would add up to), so the Gram matrix of the whole problem is `2 AᵀWA`.
struct TwoEqualShards(LinearModel);

impl Model for TwoEqualShards {
    type Linearization<'a> = <LinearModel as Model>::Linearization<'a>;
    fn n_params(&self) -> usize {
        self.0.n_params()
    }
    fn n_outputs(&self) -> usize {
        self.0.n_outputs()
    }
    fn linearize(&self, theta: &[f64]) -> natgrad::Result<Self::Linearization<'_>> {
        self.0.linearize(theta)
    }
    fn is_sharded(&self) -> bool {
        true
    }
    fn n_outputs_global(&self) -> usize {
        2 * self.0.n_outputs()
    }
    fn sum_over_shards(&self, partial: &mut [f64]) {
        partial.iter_mut().for_each(|v| *v *= 2.0);
    }
}

/// `y = Aθ` with the squared error to `u` in `W = diag(w)` and the metric `W`.
fn weighted_linear(
    a: Mat<f64>,
    w: &[f64],
    u: Vec<f64>,
) -> FitProblem<LinearModel, SquaredError, WeightedL2> {
    let metric = WeightedL2::new(w.to_vec()).unwrap();
    FitProblem::new(
        LinearModel::dense(a).unwrap(),
        SquaredError::new(u, metric.clone()).unwrap(),
        metric,
    )
    .unwrap()
}

/// `diag(w)` as a dense matrix.
fn diagonal(w: &[f64]) -> Mat<f64> {
    Mat::from_fn(w.len(), w.len(), |i, j| if i == j { w[i] } else { 0.0 })
}

/// `LinearSolver::Cholesky` on a sharded model factors `Σ_r J_rᵀ M_r J_r + λI` — the Gram
/// matrix summed over the shards entry by entry, the damping added once — so with two
/// equal shards the direction is `(2AᵀWA + λI)⁻¹ b` (docs/math.md §2; the dense twin by
/// Gaussian elimination). Unsharded, the same data gives `(AᵀWA + λI)⁻¹ b`.
#[test]
fn cholesky_sums_the_gram_matrix_over_shards_and_damps_once() {
    let (n, p, lambda) = (6, 3, 0.25);
    let mut r = rng(7);
    let a = common::mat(&mut r, n, p);
    let w = vec![0.5, 1.0, 2.0, 0.25, 1.5, 0.75];
    let wm = diagonal(&w);
    let b = vec(&mut r, p);
    let theta = vec(&mut r, p);
    let u = vec(&mut r, n);

    let local = gram_twin(&a, &wm, 0.0);
    let twice = Mat::from_fn(p, p, |i, j| {
        2.0 * local[(i, j)] + if i == j { lambda } else { 0.0 }
    });
    let once = Mat::from_fn(p, p, |i, j| {
        local[(i, j)] + if i == j { lambda } else { 0.0 }
    });

    let sharded = FitProblem::new(
        TwoEqualShards(LinearModel::dense(a.clone()).unwrap()),
        SquaredError::new(u.clone(), WeightedL2::new(w.clone()).unwrap()).unwrap(),
        WeightedL2::new(w.clone()).unwrap(),
    )
    .unwrap();
    let mut lin = sharded.linearize(&theta).unwrap();
    let (d, info) = solve_fresh(&mut lin, Rhs::Params(&b), lambda, &LinearSolver::Cholesky)
        .unwrap_or_else(|e| panic!("{e}"));
    let e = rel_diff(&d, &dense_solve(&twice, &b));
    assert!(e <= 1e-12, "sharded: {d:?} vs (2AᵀWA + λI)⁻¹b: {e:e}");
    assert_eq!(info.method.to_string(), "cholesky");

    let plain = weighted_linear(a, &w, u);
    let mut lin = plain.linearize(&theta).unwrap();
    let (d, _) = solve_fresh(&mut lin, Rhs::Params(&b), lambda, &LinearSolver::Cholesky)
        .unwrap_or_else(|e| panic!("{e}"));
    let e = rel_diff(&d, &dense_solve(&once, &b));
    assert!(e <= 1e-12, "unsharded: {e:e}");
}

/// `SolveInfo::rel_residual` of the Cholesky path is the true `‖b − (G + λI)d‖ / ‖b‖`
/// ("exact for the direct paths"): for a well-conditioned `G` (`λ = ½`) a backward-stable
/// solve leaves a residual of a few ε, not zero (the computed `d` is not exact in
/// binary64) and not more, whatever the scale of `b` (here `‖b‖ ≈ 10⁶`); `b = 0` gives
/// `d = 0` with residual 0, not 0/0.
#[test]
fn cholesky_reports_the_true_relative_residual() {
    let (n, p, lambda) = (6, 4, 0.5);
    let mut r = rng(11);
    let a = common::mat(&mut r, n, p);
    let w = vec![0.5, 1.0, 2.0, 0.25, 1.5, 0.75];
    let wm = diagonal(&w);
    let g = gram_twin(&a, &wm, lambda);
    let b: Vec<f64> = vec(&mut r, p).iter().map(|v| 1e6 * v).collect();
    let pb = weighted_linear(a, &w, vec(&mut r, n));
    let mut lin = pb.linearize(&vec(&mut r, p)).unwrap();
    let (d, info) = solve_fresh(&mut lin, Rhs::Params(&b), lambda, &LinearSolver::Cholesky)
        .unwrap_or_else(|e| panic!("{e}"));
    let e = rel_diff(&d, &dense_solve(&g, &b));
    assert!(e <= 1e-12, "{e:e}");
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let gd = common::matvec(&g, &d);
    let twin: Vec<f64> = b.iter().zip(&gd).map(|(b, gd)| b - gd).collect();
    let twin_residual = norm(&twin) / norm(&b);
    assert!(
        twin_residual <= 1e-14,
        "residual of d in the twin: {twin_residual:e}"
    );
    assert!(
        info.rel_residual > 0.0 && info.rel_residual <= 1e-14,
        "reported {:e} (twin {twin_residual:e})",
        info.rel_residual
    );

    let zero = vec![0.0; p];
    let (d, info) = solve_fresh(
        &mut lin,
        Rhs::Params(&zero),
        lambda,
        &LinearSolver::Cholesky,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d, zero);
    assert_eq!(info.rel_residual, 0.0);
}

/// The same for `LinearSolver::SampleCholesky`, whose system is the `n×n` kernel
/// `K = JJᵀ + λM⁻¹` with right-hand side `M⁻¹r` (docs/math.md §2, push-through): the
/// direction `d = Jᵀ K⁻¹ M⁻¹ r` against the twin, and the reported residual a few ε of a
/// right-hand side of size 10⁶; `r = 0` gives residual 0.
#[test]
fn sample_cholesky_reports_the_true_relative_residual() {
    let (n, p, lambda) = (4, 6, 0.5);
    let mut r = rng(13);
    let a = common::mat(&mut r, n, p);
    let w = vec![0.5, 1.0, 2.0, 0.25];
    let k = Mat::from_fn(n, n, |i, j| {
        (0..p).map(|c| a[(i, c)] * a[(j, c)]).sum::<f64>()
            + if i == j { lambda / w[i] } else { 0.0 }
    });
    let cot: Vec<f64> = vec(&mut r, n).iter().map(|v| 1e6 * v).collect();
    let rhs: Vec<f64> = cot.iter().zip(&w).map(|(r, w)| r / w).collect();
    let s = dense_solve(&k, &rhs);
    let expected: Vec<f64> = (0..p)
        .map(|c| (0..n).map(|i| a[(i, c)] * s[i]).sum())
        .collect();
    let pb = weighted_linear(a, &w, vec(&mut r, n));
    let mut lin = pb.linearize(&vec(&mut r, p)).unwrap();
    let solver = LinearSolver::SampleCholesky;
    let rhs_of = |r| Rhs::Cotangent { r, jt_r: None };
    let (d, info) =
        solve_fresh(&mut lin, rhs_of(&cot), lambda, &solver).unwrap_or_else(|e| panic!("{e}"));
    let e = rel_diff(&d, &expected);
    assert!(e <= 1e-12, "{e:e}");
    assert_eq!(info.method.to_string(), "sample-cholesky");
    assert!(
        info.rel_residual > 0.0 && info.rel_residual <= 1e-14,
        "reported {:e}",
        info.rel_residual
    );
    let zero = vec![0.0; n];
    let (d, info) =
        solve_fresh(&mut lin, rhs_of(&zero), lambda, &solver).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d, vec![0.0; p]);
    assert_eq!(info.rel_residual, 0.0);
}

/// `LinearSolver::LeastSquares` with a cut-off on a Gram matrix with an exact null vector
/// drops that direction and reports what it leaves unsolved: `A = [a₁, a₂, a₁ + a₂]`
/// (integers, so `v = (1, 1, −1)/√3` spans the null space exactly), `b = 2e₁` in parameter
/// space (the eigen path), `λ = ¼`. The kept eigenpairs are solved exactly, so
/// `(G + λI)d = b − v vᵀb = 2(e₁ − v/√3)` and `‖(G + λI)d − b‖/‖b‖ = 1/√3`, whatever `λ`.
#[test]
fn least_squares_reports_the_residual_of_the_direction_it_drops() {
    let cols = [[1.0, 0.0, 1.0, 2.0, 0.0], [0.0, 1.0, 1.0, -1.0, 3.0]];
    let a = Mat::from_fn(5, 3, |i, j| match j {
        2 => cols[0][i] + cols[1][i],
        _ => cols[j][i],
    });
    let lambda = 0.25;
    let g = gram_twin(&a, &Mat::identity(5, 5), lambda);
    let pb = FitProblem::new(
        LinearModel::dense(a).unwrap(),
        SquaredError::new(vec![0.0; 5], natgrad::Euclidean).unwrap(),
        natgrad::Euclidean,
    )
    .unwrap();
    let mut lin = pb.linearize(&[0.0; 3]).unwrap();
    let solver = LinearSolver::LeastSquares { rcond: 1e-6 };
    let b = [2.0, 0.0, 0.0];
    let (d, info) =
        solve_fresh(&mut lin, Rhs::Params(&b), lambda, &solver).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.method.to_string(), "least-squares");
    let kept = [4.0 / 3.0, -2.0 / 3.0, 2.0 / 3.0];
    let e = rel_diff(&common::matvec(&g, &d), &kept);
    assert!(
        e <= 1e-12,
        "(G + λI)d = {:?}: {e:e}",
        common::matvec(&g, &d)
    );
    let expected = 1.0 / 3f64.sqrt();
    assert!(
        (info.rel_residual - expected).abs() <= 1e-12,
        "reported {} vs 1/√3",
        info.rel_residual
    );
    let (d, info) = solve_fresh(&mut lin, Rhs::Params(&[0.0; 3]), lambda, &solver)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((d, info.rel_residual), (vec![0.0; 3], 0.0));
}

/// The Cholesky path's test for a pivot cancelled to rounding, `L_ii² ≤ p·ε·G_ii`, is
/// relative to the diagonal, so it does not depend on the units of the metric:
/// `G = s·½[[1, 1], [1, 1 + 2⁻⁵²]]` (`A = [[1, 1], [0, 2⁻²⁶]]`, `W = (s/2) I`, every entry
/// exact) leaves the pivot `s·2⁻⁵³`, half an ulp of `G₂₂`, refused at `s = 2²¹` as at
/// `s = 1` (`linsolve_numerics::cholesky_threshold_refuses_what_faer_factors`); and
/// `G = 2⁻⁴⁰ I`, perfectly conditioned, is factored: `d = 2⁴⁰ b`.
#[test]
fn cholesky_threshold_is_relative_to_the_diagonal() {
    let tiny = 2f64.powi(-26);
    let a = Mat::from_fn(2, 2, |i, j| match (i, j) {
        (0, _) => 1.0,
        (1, 1) => tiny,
        _ => 0.0,
    });
    let half_s = 2f64.powi(20);
    let w = WeightedL2::new(vec![half_s; 2]).unwrap();
    let pb = FitProblem::new(
        LinearModel::dense(a).unwrap(),
        SquaredError::new(vec![1.0, 2.0], w.clone()).unwrap(),
        w,
    )
    .unwrap();
    let mut lin = pb.linearize(&[0.0, 0.0]).unwrap();
    match solve_fresh(
        &mut lin,
        Rhs::Params(&[1.0, 1.0]),
        0.0,
        &LinearSolver::Cholesky,
    ) {
        Err(e) => assert!(e.to_string().contains("pivot 1"), "{e}"),
        Ok((d, _)) => panic!("accepted d = {d:?}"),
    }

    let w = WeightedL2::new(vec![2f64.powi(-40); 2]).unwrap();
    let pb = FitProblem::new(
        LinearModel::dense(Mat::identity(2, 2)).unwrap(),
        SquaredError::new(vec![1.0, 2.0], w.clone()).unwrap(),
        w,
    )
    .unwrap();
    let mut lin = pb.linearize(&[0.0, 0.0]).unwrap();
    let (d, _) = solve_fresh(
        &mut lin,
        Rhs::Params(&[1.0, -3.0]),
        0.0,
        &LinearSolver::Cholesky,
    )
    .unwrap_or_else(|e| panic!("G = 2⁻⁴⁰ I refused: {e}"));
    assert_eq!(d, vec![2f64.powi(40), -3.0 * 2f64.powi(40)]);
}

/// `LinearSolver::SampleCg` warm-starts from the last sample-space solution kept in the
/// cache (`CgSettings::warm_start`): solving the same system again starts at its solution
/// and needs no iteration, while a solve of another size (a mini-batch of other length)
/// starts from zero and still reaches its own twin `Jᵀ(JJᵀ + λM⁻¹)⁻¹M⁻¹r`.
#[test]
fn sample_cg_warm_starts_only_from_a_solution_of_the_same_size() {
    let (p, lambda) = (5, 0.5);
    let settings = CgSettings {
        rel_tol: 1e-10,
        preconditioner: Preconditioner::None,
        warm_start: true,
        ..CgSettings::default()
    };
    let solver = LinearSolver::SampleCg(settings);
    let mut cache = DirectionSolver::default();
    let mut r = rng(17);
    for (n, repeat) in [(3, true), (4, false)] {
        let a = common::mat(&mut r, n, p);
        let cot = vec(&mut r, n);
        let k = Mat::from_fn(n, n, |i, j| {
            (0..p).map(|c| a[(i, c)] * a[(j, c)]).sum::<f64>() + if i == j { lambda } else { 0.0 }
        });
        let s = dense_solve(&k, &cot);
        let expected: Vec<f64> = (0..p)
            .map(|c| (0..n).map(|i| a[(i, c)] * s[i]).sum())
            .collect();
        let pb = FitProblem::new(
            LinearModel::dense(a).unwrap(),
            SquaredError::new(vec![0.0; n], natgrad::Euclidean).unwrap(),
            natgrad::Euclidean,
        )
        .unwrap();
        let mut lin = pb.linearize(&[0.0; 5]).unwrap();
        let mut d = vec![0.0; p];
        let mut solve = |d: &mut [f64]| {
            let rhs = Rhs::Cotangent {
                r: &cot,
                jt_r: None,
            };
            cache
                .set_linear_solver(solver.clone())
                .solve_from(&mut lin, rhs, lambda, d)
                .unwrap_or_else(|e| panic!("n = {n}: {e}"))
        };
        let first = solve(&mut d);
        assert!(
            first.cg_iters().unwrap() > 0,
            "n = {n}: a cold start from s = 0 iterates"
        );
        let e = rel_diff(&d, &expected);
        assert!(e <= 1e-8, "n = {n}: {e:e}");
        if repeat {
            let again = solve(&mut d);
            assert_eq!(again.cg_iters(), Some(0), "warm start at the solution");
            assert!(rel_diff(&d, &expected) <= 1e-8);
        }
    }
}

/// A model with `n = 2¹³` outputs and `p = 2¹³ + 1` parameters, whose linearisation must
/// never be asked for its dense Jacobian (2²⁶ + 2¹³ entries, over 512 MiB).
struct TooBigToForm;

struct TooBigLinearization(Vec<f64>);

impl Linearization for TooBigLinearization {
    fn n_params(&self) -> usize {
        (1 << 13) + 1
    }
    fn outputs(&self) -> &[f64] {
        &self.0
    }
    fn jvp(&mut self, _t: &[f64], out: &mut [f64]) {
        out.fill(0.0);
    }
    fn vjp(&mut self, _s: &[f64], out: &mut [f64]) {
        out.fill(0.0);
    }
    fn dense_jacobian(&mut self) -> Option<Mat<f64>> {
        panic!(
            "the dense Jacobian of {} entries was formed",
            self.0.len() * self.n_params()
        )
    }
}

impl Model for TooBigToForm {
    type Linearization<'a> = TooBigLinearization;
    fn n_params(&self) -> usize {
        (1 << 13) + 1
    }
    fn n_outputs(&self) -> usize {
        1 << 13
    }
    fn linearize(&self, _theta: &[f64]) -> natgrad::Result<TooBigLinearization> {
        Ok(TooBigLinearization(vec![0.0; 1 << 13]))
    }
}

/// `LinearSolver::LeastSquares` refuses, before forming anything, a Jacobian of more than
/// `MAX_JACOBIAN_ENTRIES = 2²⁶` entries, naming the limit and the way out.
#[test]
fn least_squares_refuses_a_jacobian_over_its_size_limit_before_forming_it() {
    let (n, p) = (1 << 13, (1 << 13) + 1);
    let pb = FitProblem::new(
        TooBigToForm,
        SquaredError::new(vec![0.0; n], natgrad::Euclidean).unwrap(),
        natgrad::Euclidean,
    )
    .unwrap();
    let mut lin = pb.linearize(&vec![0.0; p]).unwrap();
    let b = vec![1.0; p];
    let solver = LinearSolver::LeastSquares { rcond: 0.0 };
    match solve_fresh(&mut lin, Rhs::Params(&b), 1.0, &solver) {
        Err(e) => assert!(e.to_string().contains("more than 67108864 entries"), "{e}"),
        Ok((_, info)) => panic!("accepted: {info:?}"),
    }
}

/// `LinearSolver::LeastSquares` takes the SVD of `W^{1/2}J` only when every weight of the
/// diagonal metric is positive: the loss Hessian of a logit cross-entropy at a saturated
/// logit (`z = 800`, `σ(z)(1 − σ(z)) = 0` in binary64) has a zero weight, and the direction
/// must still be `(Aᵀ diag(h) A + λI)⁻¹ Aᵀ r` with `h_i = σ(z_i)(1 − σ(z_i))/3` by hand
/// (the eigen path), not the NaN of `r/√0`.
#[test]
fn least_squares_with_a_zero_metric_weight_takes_the_eigen_path() {
    let a = Mat::from_fn(3, 2, |i, j| [[1.0, 0.0], [0.0, -1.0], [400.0, 400.0]][i][j]);
    let theta = [1.0, 1.0]; // z = (1, −1, 800)
    let fisher = |z: f64| {
        let s = 1.0 / (1.0 + (-z).exp());
        s * (1.0 - s) / 3.0
    };
    let h = [fisher(1.0), fisher(-1.0), 0.0];
    let lambda = 0.5;
    let g = gram_twin(
        &a,
        &Mat::from_fn(3, 3, |i, j| if i == j { h[i] } else { 0.0 }),
        lambda,
    );
    let cot = [0.5, -1.0, 2.0];
    let b: Vec<f64> = (0..2)
        .map(|c| (0..3).map(|i| a[(i, c)] * cot[i]).sum())
        .collect();
    let pb = FitProblem::new(
        LinearModel::dense(a).unwrap(),
        natgrad::LogitCrossEntropy::new(vec![1.0, 0.0, 1.0]).unwrap(),
        natgrad::LossHessian,
    )
    .unwrap();
    let mut lin = pb.linearize(&theta).unwrap();
    let solver = LinearSolver::LeastSquares { rcond: 0.0 };
    let rhs = Rhs::Cotangent {
        r: &cot,
        jt_r: None,
    };
    let (d, _) = solve_fresh(&mut lin, rhs, lambda, &solver).unwrap_or_else(|e| panic!("{e}"));
    let e = rel_diff(&d, &dense_solve(&g, &b));
    assert!(e <= 1e-12, "d = {d:?}: {e:e}");
}

/// `y = Jθ` with `J = diag(x, y)`, a squared error and the Euclidean metric.
fn diagonal_problem(
    x: f64,
    y: f64,
) -> FitProblem<LinearModel, SquaredError<natgrad::Euclidean>, natgrad::Euclidean> {
    let j = Mat::from_fn(2, 2, |i, k| match (i, k) {
        (0, 0) => x,
        (1, 1) => y,
        _ => 0.0,
    });
    FitProblem::new(
        LinearModel::dense(j).unwrap(),
        SquaredError::new(vec![0.0; 2], natgrad::Euclidean).unwrap(),
        natgrad::Euclidean,
    )
    .unwrap()
}

/// With a diagonal metric and an output-space right-hand side, `LinearSolver::LeastSquares`
/// works on `W^{1/2}J` by SVD, which resolves singular values down to `max(n, p)·ε·σ_max`;
/// forming `G = JᵀWJ` would square them and lose `σ = 10⁻⁹` below `G`'s rounding level
/// (module docs). `J = diag(1, 10⁻⁹)`, `W = I`, `r = (1, 10⁻⁹)`, `λ = 0`: `d = J⁺r = (1, 1)`;
/// the eigen path would give `(1, 0)`. The cut-off scales with `σ_max`.
#[test]
fn least_squares_keeps_a_singular_value_that_forming_the_gram_matrix_would_lose() {
    let solver = LinearSolver::LeastSquares { rcond: 0.0 };
    for (x, y) in [(1.0, 1e-9), (1e-8, 1e-9)] {
        // J = diag(x, y), r = (x, y): d = J⁺r = (1, 1). The second is a well-conditioned
        // J = 10⁻⁸ diag(1, 10⁻¹) of small scale (the cut-off is relative to σ_max).
        let pb = diagonal_problem(x, y);
        let mut lin = pb.linearize(&[0.0, 0.0]).unwrap();
        let cot = [x, y];
        let rhs = Rhs::Cotangent {
            r: &cot,
            jt_r: None,
        };
        let (d, _) = solve_fresh(&mut lin, rhs, 0.0, &solver).unwrap_or_else(|e| panic!("{e}"));
        let e = rel_diff(&d, &[1.0, 1.0]);
        assert!(
            e <= 1e-12,
            "J = diag({x:e}, {y:e}): d = {d:?}, J⁺r = (1, 1): {e:e}"
        );
    }
}

/// The cut-off keeps `σ > rcond·σ_max` only (module docs; `μ > max(rcond², p·ε)·μ_max` for
/// the eigenvalues of `G`): `J = diag(2, 1)`, `rcond = ½` puts `σ₂ = 1` exactly on the cut
/// `½·2`, so it is dropped — `d = (1, 0)` for `r = (2, 1)` (SVD path) and for
/// `b = Jᵀr = (4, 1)` (eigen path, `μ₂ = 1 = ¼·4`), at `λ = 0`. With `rcond = 0` the eigen
/// path's floor is `p·ε·μ_max`: `J = diag(2¹⁰, 2⁻²⁰)` has `μ₂ = 2⁻⁴⁰ < 2·2⁻⁵²·2²⁰`, dropped:
/// `d = (1, 0)` for `b = (2²⁰, 2⁻⁴⁰)`. Every number is exact in binary64.
#[test]
fn least_squares_drops_singular_values_at_or_below_the_cut_off() {
    let pb = diagonal_problem(2.0, 1.0);
    let mut lin = pb.linearize(&[0.0, 0.0]).unwrap();
    let solver = LinearSolver::LeastSquares { rcond: 0.5 };
    let cot = [2.0, 1.0];
    let rhs = Rhs::Cotangent {
        r: &cot,
        jt_r: None,
    };
    let (d, _) = solve_fresh(&mut lin, rhs, 0.0, &solver).unwrap_or_else(|e| panic!("{e}"));
    assert!(rel_diff(&d, &[1.0, 0.0]) <= 1e-15, "SVD path: d = {d:?}");
    let (d, _) = solve_fresh(&mut lin, Rhs::Params(&[4.0, 1.0]), 0.0, &solver)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(rel_diff(&d, &[1.0, 0.0]) <= 1e-15, "eigen path: d = {d:?}");
    // Just above the cut, kept: J = diag(2, 9/8), μ₂ = 81/64 > ¼·4.
    let pb = diagonal_problem(2.0, 1.125);
    let mut lin = pb.linearize(&[0.0, 0.0]).unwrap();
    let (d, _) = solve_fresh(&mut lin, Rhs::Params(&[4.0, 1.265625]), 0.0, &solver)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        rel_diff(&d, &[1.0, 1.0]) <= 1e-14,
        "eigen path, kept: d = {d:?}"
    );

    let pb = diagonal_problem(2f64.powi(10), 2f64.powi(-20));
    let mut lin = pb.linearize(&[0.0, 0.0]).unwrap();
    let solver = LinearSolver::LeastSquares { rcond: 0.0 };
    let b = [2f64.powi(20), 2f64.powi(-40)];
    let (d, _) =
        solve_fresh(&mut lin, Rhs::Params(&b), 0.0, &solver).unwrap_or_else(|e| panic!("{e}"));
    assert!(rel_diff(&d, &[1.0, 0.0]) <= 1e-15, "noise floor: d = {d:?}");
}

/// The eigen path's noise floor `p·ε·μ_max` (module docs of `linsolve::least_squares`): with
/// `rcond = 0` and `λ` *above* it nothing is dropped; at `λ` exactly on it the eigenvalues at
/// or below the floor are. `J = diag(2²⁵, ½)`: `μ = (2⁵⁰, ¼)`, floor `2·2⁻⁵²·2⁵⁰ = ½` (exact in
/// binary). At `λ = ½`, `b = (2⁵⁰ + ½, ¾)`: `μ₂ = ¼` is below the floor, so `d = (1, 0)`;
/// just above (`λ = ½ + 2⁻⁵²`, the next double) it is kept, `d₂ = ¾/(¼ + λ) ≈ 1`.
#[test]
fn least_squares_eigen_path_keeps_all_only_when_damping_is_above_the_noise_floor() {
    let pb = diagonal_problem(2f64.powi(25), 0.5);
    let mut lin = pb.linearize(&[0.0, 0.0]).unwrap();
    let solver = LinearSolver::LeastSquares { rcond: 0.0 };
    let b = [2f64.powi(50) + 0.5, 0.75];
    let (d, _) =
        solve_fresh(&mut lin, Rhs::Params(&b), 0.5, &solver).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        rel_diff(&d, &[1.0, 0.0]) <= 1e-15,
        "λ on the floor: d = {d:?}"
    );
    let above = 0.5 + f64::EPSILON / 2.0;
    assert!(above > 0.5);
    let (d, _) =
        solve_fresh(&mut lin, Rhs::Params(&b), above, &solver).unwrap_or_else(|e| panic!("{e}"));
    let want = [
        (2f64.powi(50) + 0.5) / (2f64.powi(50) + above),
        0.75 / (0.25 + above),
    ];
    assert!(
        rel_diff(&d, &want) <= 1e-15,
        "λ above the floor: d = {d:?}, want {want:?}"
    );
}
