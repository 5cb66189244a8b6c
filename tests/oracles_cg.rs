//! Independent oracles for the CG path (`src/linsolve/cg.rs`) and the race of
//! `Preconditioner::Auto` (`src/linsolve/precond_choice.rs`), written for the survivors of
//! cargo-mutants (issue 20, acceptance 2).
//!
//! The systems are small and built so that CG's behaviour is known by hand: a Gram matrix
//! `G = JᵀWJ` with `J` the rational orthogonal `Q̃ = [[1, 2, 2], [2, 1, −2], [2, −2, 1]]`
//! (`Q̃ᵀQ̃ = 9I`) and a diagonal user metric `W` with one negative weight has the
//! eigenvectors `q̃_k` (the columns of `Q̃`) with eigenvalues `9w_k`; plain CG on a
//! right-hand side in the span of two positive ones converges in exactly two iterations
//! (its Krylov space is that span, on which `G` is positive definite), while Jacobi's first
//! direction `diag(G)⁻¹b` can have negative curvature, a breakdown at iteration 0. The
//! expected directions are dense solves or Galerkin projections onto Krylov spaces worked
//! out in the test, never the crate's own CG.

use faer::Mat;
use natgrad::linsolve::{
    CgSettings, DirectionSolver, LinearSolver, Preconditioner, PreconditionerKind, Rhs,
    SolveFailure, SolveInfo,
};
use natgrad::metric::{Metric, OutputPoint};
use natgrad::model::LinearModel;
use natgrad::{FitProblem, SquaredError};
use std::sync::mpsc;
use std::time::Duration;

/// A diagonal metric `W = diag(w)` with any signs: a user metric that is not positive
/// definite on purpose (the crate's `WeightedL2` refuses such weights), so that CG meets
/// non-positive curvature. It reports its diagonal, so Jacobi is available.
#[derive(Debug, Clone)]
struct DiagMetric(Vec<f64>);

impl Metric for DiagMetric {
    fn name(&self) -> &'static str {
        "DiagMetric"
    }
    fn dim(&self) -> Option<usize> {
        Some(self.0.len())
    }
    fn apply(&self, _: &OutputPoint<'_>, v: &[f64], out: &mut [f64]) {
        for ((o, v), w) in out.iter_mut().zip(v).zip(&self.0) {
            *o = w * v;
        }
    }
    fn diagonal(&self, _: &OutputPoint<'_>, out: &mut [f64]) -> bool {
        out.copy_from_slice(&self.0);
        true
    }
    fn select_samples(&self, _: &[usize], _: usize, _: usize) -> natgrad::Result<Self> {
        Ok(self.clone())
    }
}

type Problem = FitProblem<LinearModel, SquaredError, DiagMetric>;

/// `y = Jθ`, the loss `½‖y‖²_W` (its value does not matter: the right-hand side is given),
/// in the metric `diag(w)`.
fn problem(j: Mat<f64>, w: Vec<f64>) -> Problem {
    let n = j.nrows();
    FitProblem::new(
        LinearModel::dense(j).unwrap(),
        SquaredError::l2(vec![0.0; n]).unwrap(),
        DiagMetric(w),
    )
    .unwrap()
}

/// `Q̃`, with `Q̃ᵀQ̃ = 9I`.
fn q() -> Mat<f64> {
    Mat::from_fn(3, 3, |i, j| {
        [[1.0, 2.0, 2.0], [2.0, 1.0, -2.0], [2.0, -2.0, 1.0]][i][j]
    })
}

/// `G = Q̃ diag(5, 4, −5) Q̃ᵀ = [[1, 38, −16], [38, 4, 22], [−16, 22, 31]]` (eigenvalues
/// 45, 36, −45) and `b = 3q̃₁ − 2q̃₂ = (−1, 4, 10)`. Plain CG: `bᵀGb = 9(3²·45 + 2²·36) > 0`,
/// and its Krylov space `span(q̃₁, q̃₂)` is invariant, so it converges in exactly 2
/// iterations to `G⁻¹b = 3q̃₁/45 − 2q̃₂/36 = (−2/45, 7/90, 11/45)`. Jacobi: `diag(G) =
/// (1, 4, 31)`, its first direction `y = (−1, 1, 10/31)` has `yᵀGy = −20 − 1520/31 +
/// 3100/961 < 0`: a breakdown at iteration 0.
fn indefinite() -> (Problem, Vec<f64>, Vec<f64>) {
    let pb = problem(q(), vec![5.0, 4.0, -5.0]);
    let b = vec![-1.0, 4.0, 10.0];
    let x = vec![-2.0 / 45.0, 7.0 / 90.0, 11.0 / 45.0];
    (pb, b, x)
}

fn cg(preconditioner: Preconditioner, max_iters: usize) -> LinearSolver {
    LinearSolver::Cg(CgSettings {
        max_iters,
        warm_start: false,
        preconditioner,
        ..CgSettings::default()
    })
}

fn auto(trial_above: usize) -> LinearSolver {
    cg(
        Preconditioner::Auto {
            trial_above,
            refresh_every: 1,
        },
        50,
    )
}

/// One solve of `(G + 0·I) d = b` at θ = 0 with `solver` on `cache`: the result, the
/// direction and the Gram products (jvps) it took.
fn solve(
    pb: &Problem,
    b: &[f64],
    solver: &LinearSolver,
    cache: &mut DirectionSolver,
) -> (Result<SolveInfo, SolveFailure>, Vec<f64>, u64) {
    let mut lin = pb.linearize(&vec![0.0; pb.n_params()]).unwrap();
    let before = pb.evaluations().jvp;
    let mut d = vec![0.0; pb.n_params()];
    let res =
        cache
            .set_linear_solver(solver.clone())
            .solve_from(&mut lin, Rhs::Params(b), 0.0, &mut d);
    (res, d, pb.evaluations().jvp - before)
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

/// The hand values of [`indefinite`] hold for the crate's CG with a fixed preconditioner:
/// plain CG converges in 2 iterations to `G⁻¹b`, Jacobi breaks down at iteration 0.
#[test]
fn indefinite_system_plain_cg_converges_and_jacobi_breaks_down() {
    let (pb, b, x) = indefinite();
    let (res, d, _) = solve(
        &pb,
        &b,
        &cg(Preconditioner::None, 50),
        &mut Default::default(),
    );
    let info = res.unwrap();
    assert_eq!(info.cg_iters(), Some(2));
    assert!(max_abs_diff(&d, &x) <= 1e-14, "{d:?} vs {x:?}");
    let (res, _, products) = solve(
        &pb,
        &b,
        &cg(Preconditioner::Jacobi, 50),
        &mut Default::default(),
    );
    match res {
        Err(SolveFailure::OperatorNotPositiveDefinite {
            iteration: 0,
            damping,
            ..
        }) => {
            assert_eq!(damping, 0.0)
        }
        other => panic!("Jacobi must break down at iteration 0: {other:?}"),
    }
    assert_eq!(products, 1, "the breakdown is seen on the first product");
}

/// A challenger that breaks down loses, and the incumbent then runs to `max_iters`
/// (precond_choice.rs, "Failures"). At the first trial the incumbent is no
/// preconditioner: capped at `trial_above = 1` it misses (it needs 2); Jacobi, capped at 2,
/// breaks down at iteration 0; plain CG runs again and converges in 2: the direction is
/// `G⁻¹b`, plain CG is kept, and the products are 1 + 1 + 2.
#[test]
fn a_challenger_that_breaks_down_loses_the_race() {
    let (pb, b, x) = indefinite();
    let (res, d, products, cache) = race(pb, b, auto(1), DirectionSolver::default());
    let info = res.expect("the challenger's breakdown must not end the solve");
    let report = info.cg.unwrap();
    assert_eq!(report.iters, 2);
    assert_eq!(report.preconditioner, PreconditionerKind::None);
    assert!(!report.truncated);
    assert!(max_abs_diff(&d, &x) <= 1e-14, "{d:?} vs {x:?}");
    assert_eq!(products, 4);
    let choice = cache.cache().precond_choice.unwrap();
    assert!(!choice.jacobi);
}

/// The incumbent's breakdown is returned as it would be without `Auto`
/// (precond_choice.rs, "Failures"). A first solve on `G = diag(1, 10², 10⁴)`, `b = 1`
/// makes Jacobi the choice (plain CG needs 3 iterations, Jacobi 1); at the next trial
/// (`refresh_every = 1`) Jacobi is the incumbent on [`indefinite`] and breaks down at
/// iteration 0: the solve fails with the error of the Jacobi solve alone, and no run of the
/// challenger (which would converge) is made.
#[test]
fn an_incumbent_that_breaks_down_fails_the_solve_as_without_auto() {
    let diag = problem(
        Mat::from_fn(3, 3, |i, j| if i == j { 10f64.powi(i as i32) } else { 0.0 }),
        vec![1.0; 3],
    );
    let (res, d, _, cache) = race(diag, vec![1.0; 3], auto(1), DirectionSolver::default());
    let report = res.unwrap().cg.unwrap();
    assert_eq!(report.preconditioner, PreconditionerKind::Jacobi);
    assert_eq!(report.iters, 1);
    assert!(max_abs_diff(&d, &[1.0, 1e-2, 1e-4]) <= 1e-15);
    assert!(cache.cache().precond_choice.unwrap().jacobi);

    let (pb, b, _) = indefinite();
    let (alone, _, _) = solve(
        &pb,
        &b,
        &cg(Preconditioner::Jacobi, 50),
        &mut Default::default(),
    );
    let alone = alone.unwrap_err();
    let (res, _, products, _) = race(pb, b, auto(1), cache);
    assert_eq!(res.unwrap_err(), alone);
    assert_eq!(products, 1, "only the incumbent's first product");
}

/// Runs `f` on a thread and fails if it has not returned within `secs` seconds: a race
/// that never ends (a hang) becomes a test failure in bounded time instead of a test that
/// never returns (the spinning thread is left behind and dies with the test process).
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|e| {
            panic!("the solve did not return within {secs} s ({e}): it hangs or panicked")
        })
}

/// [`solve`] with `cache` under [`within`] (every test that runs a race of `Auto` does: a
/// mutant race may never end); returns the cache with the result.
fn race(
    pb: Problem,
    b: Vec<f64>,
    solver: LinearSolver,
    mut cache: DirectionSolver,
) -> (
    Result<SolveInfo, SolveFailure>,
    Vec<f64>,
    u64,
    DirectionSolver,
) {
    within(RACE_SECS, move || {
        let (res, d, products) = solve(&pb, &b, &solver, &mut cache);
        (res, d, products, cache)
    })
}

/// The time limit of a race: these take milliseconds.
const RACE_SECS: u64 = 10;

/// `J` (4 × 3) with rows `e₁`, `10e₂`, `100e₃`, `(1, 10, 100)`: `G = JᵀWJ = S B S` for
/// `S = diag(1, 10, 100)` and `W = ½I` gives `B = ½(I + 𝟙𝟙ᵀ)`, unit diagonal, eigenvalues
/// ½, ½, 2.
fn two_level_j() -> Mat<f64> {
    Mat::from_fn(4, 3, |i, j| {
        let s = 10f64.powi(j as i32);
        match i {
            3 => s,
            _ if i == j => s,
            _ => 0.0,
        }
    })
}

/// `G = JᵀWJ` and `G x = b` by a dense solve (Gauss–Jordan on 3 × 3, independent of the
/// crate).
fn gram(j: &Mat<f64>, w: &[f64]) -> [[f64; 3]; 3] {
    let mut g = [[0.0; 3]; 3];
    for (a, row) in g.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = (0..j.nrows()).map(|i| j[(i, a)] * w[i] * j[(i, c)]).sum();
        }
    }
    g
}

fn mul(g: &[[f64; 3]; 3], v: &[f64]) -> Vec<f64> {
    g.iter()
        .map(|row| row.iter().zip(v).map(|(a, b)| a * b).sum())
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// The `k`-th iterate of CG preconditioned by `M⁻¹ = diag(m)` from zero, by its
/// definition: the minimiser of the `G`-norm error over the Krylov space
/// `span(M⁻¹b, (M⁻¹G)M⁻¹b, …)` (`k` vectors), i.e. the Galerkin solve `V (VᵀGV)⁻¹ Vᵀb`
/// (`k ≤ 2`, so the small system is solved by hand).
fn krylov_iterate(g: &[[f64; 3]; 3], m: &[f64], b: &[f64], k: usize) -> Vec<f64> {
    let v1: Vec<f64> = b.iter().zip(m).map(|(b, m)| b * m).collect();
    let gv1 = mul(g, &v1);
    if k == 1 {
        let a = dot(&v1, b) / dot(&v1, &gv1);
        return v1.iter().map(|v| a * v).collect();
    }
    assert_eq!(k, 2);
    let v2: Vec<f64> = gv1.iter().zip(m).map(|(v, m)| v * m).collect();
    let gv2 = mul(g, &v2);
    let (h11, h12, h22) = (dot(&v1, &gv1), dot(&v1, &gv2), dot(&v2, &gv2));
    let (r1, r2) = (dot(&v1, b), dot(&v2, b));
    let det = h11 * h22 - h12 * h12;
    let c1 = (h22 * r1 - h12 * r2) / det;
    let c2 = (h11 * r2 - h12 * r1) / det;
    v1.iter().zip(&v2).map(|(a, b)| c1 * a + c2 * b).collect()
}

fn rel_residual(g: &[[f64; 3]; 3], b: &[f64], x: &[f64]) -> f64 {
    let gx = mul(g, x);
    let r: Vec<f64> = b.iter().zip(&gx).map(|(b, g)| b - g).collect();
    dot(&r, &r).sqrt() / dot(b, b).sqrt()
}

/// A race that Jacobi wins in its first run ends (the caps grow, the runners alternate,
/// each run is made): on `G = S B S` (see [`two_level_j`]) Jacobi's CG is CG on `B`, two
/// distinct eigenvalues, so it converges in 2 iterations; plain CG needs 3. With
/// `trial_above = 1`: plain capped at 1 misses, Jacobi capped at 2 converges to `G⁻¹b`;
/// 1 + 2 products. Run under a time limit: a race whose caps stay at 0 or 1, or whose
/// runners are skipped, never ends.
#[test]
fn a_race_won_by_the_challenger_ends_with_its_solution() {
    let pb = problem(two_level_j(), vec![0.5; 4]);
    let (res, d, products, _) = race(pb, vec![1.0; 3], auto(1), DirectionSolver::default());
    let report = res.unwrap().cg.unwrap();
    assert_eq!(report.preconditioner, PreconditionerKind::Jacobi);
    assert_eq!(report.iters, 2);
    assert_eq!(products, 3);
    let g = gram(&two_level_j(), &[0.5; 4]);
    let jacobi: Vec<f64> = (0..3).map(|i| 1.0 / g[i][i]).collect();
    let x = krylov_iterate(&g, &jacobi, &[1.0; 3], 2);
    assert!(
        rel_residual(&g, &[1.0; 3], &x) <= 1e-12,
        "B has two eigenvalues"
    );
    assert!(max_abs_diff(&d, &x) <= 1e-12 * x.iter().fold(0.0, |m: f64, v| m.max(v.abs())));
}

/// A race that neither runner finishes: with `max_iters = 2` on `G = JᵀWJ`, `W =
/// diag(1, 2, 3, 4)` (three distinct eigenvalues, also after Jacobi's scaling) plain CG
/// capped at 1 misses, Jacobi capped at `max_iters` stops truncated (its last run), plain
/// then gets `max_iters` too, and the smaller true residual wins: the result is that
/// runner's 2-iteration Krylov iterate (by its definition, [`krylov_iterate`]), reported
/// truncated with its true residual. Run under a time limit: a runner whose run at
/// `max_iters` is not taken as its last runs again forever.
#[test]
fn a_race_that_neither_runner_finishes_returns_the_smaller_residual() {
    let w = vec![1.0, 2.0, 3.0, 4.0];
    let settings = LinearSolver::Cg(CgSettings {
        max_iters: 2,
        warm_start: false,
        accept_truncated: true,
        preconditioner: Preconditioner::Auto {
            trial_above: 1,
            refresh_every: 1,
        },
        ..CgSettings::default()
    });
    let pb = problem(two_level_j(), w.clone());
    let (res, d, _, _) = race(pb, vec![1.0; 3], settings, DirectionSolver::default());
    let info = res.unwrap();
    let report = info.cg.unwrap();
    assert!(report.truncated);
    assert_eq!(report.iters, 2);
    let g = gram(&two_level_j(), &w);
    let b = [1.0; 3];
    let plain = krylov_iterate(&g, &[1.0; 3], &b, 2);
    let jacobi_m: Vec<f64> = (0..3).map(|i| 1.0 / g[i][i]).collect();
    let jacobi = krylov_iterate(&g, &jacobi_m, &b, 2);
    let (rp, rj) = (rel_residual(&g, &b, &plain), rel_residual(&g, &b, &jacobi));
    assert!(rp > 1e-3 && rj > 1e-3, "neither converges in 2: {rp}, {rj}");
    let (x, kind, r) = match rj < rp {
        true => (jacobi, PreconditionerKind::Jacobi, rj),
        false => (plain, PreconditionerKind::None, rp),
    };
    assert_eq!(report.preconditioner, kind);
    let scale = x.iter().fold(0.0, |m: f64, v| m.max(v.abs()));
    assert!(max_abs_diff(&d, &x) <= 1e-10 * scale, "{d:?} vs {x:?}");
    assert!(
        (info.rel_residual - r).abs() <= 1e-10 * r,
        "{} vs {r}",
        info.rel_residual
    );
}

/// `G = diag(1, 100)` (`J = diag(1, 10)`, `W = I`) and `b = (1, 1/10)`, `‖b‖² = 1.01`.
/// CG's first iterate from zero is `x₁ = αb` with `α = bᵀb / bᵀGb = 1.01/2`, and its
/// residual `b − αGb = (0.495, −4.95)` has `‖r₁‖/‖b‖ = √(24.747525/1.01) = 4.95`: larger
/// than `‖b‖` (CG's residual is not monotone), which the reported residual must show.
fn stiff() -> (Problem, Vec<f64>) {
    let j = Mat::from_fn(2, 2, |i, k| match (i, k) {
        (0, 0) => 1.0,
        (1, 1) => 10.0,
        _ => 0.0,
    });
    (problem(j, vec![1.0, 1.0]), vec![1.0, 0.1])
}

/// A CG run stopped at `max_iters = 1` (docs of `CgSettings::accept_truncated`): accepted,
/// it returns the first iterate with its true relative residual 4.95 and `truncated`; not
/// accepted, `NoConvergence` carries the same numbers. Both by hand ([`stiff`]).
#[test]
fn a_truncated_cg_run_reports_its_iterate_and_true_residual() {
    let (pb, b) = stiff();
    let alpha = 1.01 / 2.0;
    let x1 = [alpha, alpha * 0.1];
    for accept_truncated in [true, false] {
        let solver = LinearSolver::Cg(CgSettings {
            max_iters: 1,
            warm_start: false,
            accept_truncated,
            preconditioner: Preconditioner::None,
            ..CgSettings::default()
        });
        let (res, d, products) = solve(&pb, &b, &solver, &mut Default::default());
        assert_eq!(products, 2, "one iteration and the true residual");
        match res {
            Ok(info) => {
                assert!(accept_truncated);
                let report = info.cg.unwrap();
                assert!(report.truncated);
                assert_eq!(report.iters, 1);
                assert_eq!(report.preconditioner, PreconditionerKind::None);
                assert!(
                    (info.rel_residual - 4.95).abs() <= 1e-13,
                    "{}",
                    info.rel_residual
                );
                assert!(max_abs_diff(&d, &x1) <= 1e-15, "{d:?}");
            }
            Err(SolveFailure::NoConvergence {
                iters,
                rel_residual,
                rel_tol,
            }) => {
                assert!(!accept_truncated);
                assert_eq!((iters, rel_tol), (1, 1e-10));
                assert!((rel_residual - 4.95).abs() <= 1e-13, "{rel_residual}");
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

/// CG stops at the first iterate whose residual meets `max(rel_tol‖b‖, abs_tol)`
/// (`CgSettings`): on `G = SBS` of [`two_level_j`] with `W = diag(1, 2, 3, 4)` (three
/// distinct eigenvalues) and `b = (10³, 10⁴, 10⁵)`, the relative residuals `ρ₁ > ρ₂` of the first
/// two Krylov iterates (by their definition, [`krylov_iterate`]) are bracketed by a
/// tolerance between them, given once relatively and once absolutely (`‖b‖ρ`): either way
/// CG stops after exactly 2 iterations at the second iterate.
#[test]
fn cg_stops_at_the_first_iterate_within_its_relative_or_absolute_tolerance() {
    let w = vec![1.0, 2.0, 3.0, 4.0];
    let pb = problem(two_level_j(), w.clone());
    let g = gram(&two_level_j(), &w);
    let b = [1e3, 1e4, 1e5];
    let b_norm = dot(&b, &b).sqrt();
    let x1 = krylov_iterate(&g, &[1.0; 3], &b, 1);
    let x2 = krylov_iterate(&g, &[1.0; 3], &b, 2);
    let (rho1, rho2) = (rel_residual(&g, &b, &x1), rel_residual(&g, &b, &x2));
    assert!(
        rho1 < 0.5 && rho2 < 0.2 * rho1 && rho2 > 1e-6,
        "{rho1} {rho2}"
    );
    let between = (rho1 * rho2).sqrt();
    for (rel_tol, abs_tol) in [(between, 0.0), (0.0, between * b_norm)] {
        let solver = LinearSolver::Cg(CgSettings {
            rel_tol,
            abs_tol,
            max_iters: 50,
            warm_start: false,
            preconditioner: Preconditioner::None,
            ..CgSettings::default()
        });
        let (res, d, _) = solve(&pb, &b, &solver, &mut Default::default());
        let info = res.unwrap_or_else(|e| panic!("rel_tol {rel_tol}, abs_tol {abs_tol}: {e:?}"));
        assert_eq!(
            info.cg_iters(),
            Some(2),
            "rel_tol {rel_tol}, abs_tol {abs_tol}"
        );
        let scale = x2.iter().fold(0.0, |m: f64, v| m.max(v.abs()));
        assert!(max_abs_diff(&d, &x2) <= 1e-10 * scale, "{d:?} vs {x2:?}");
        assert!((info.rel_residual - rho2).abs() <= 1e-8 * rho2);
    }
}

/// A breakdown once the true residual already meets the tolerance is convergence
/// (`run_faer_cg`'s docs), and a real breakdown reports the operator's scale seen so far.
/// `G = diag(1, −1)` (`J = I`, `W = diag(1, −1)`), `b = (4, 0)`, warm start `x₀ = (4, 1)`:
/// `r₀ = b − Gx₀ = (0, 1)`, `‖r₀‖/‖b‖ = ¼` exactly, and `r₀` has curvature −1. With
/// `rel_tol = ¼` the initial residual is not below it (CG's test is strict), CG breaks down
/// on its first direction `r₀`, and the true residual ¼ meets the tolerance: `x₀` is
/// returned after 0 iterations with residual ¼. With `rel_tol = ⅛` the same breakdown is
/// an error at iteration 0 whose scale is `‖G r₀‖/‖r₀‖ = 1` (the product `Gx₀` has ratio
/// `‖(4, −1)‖/‖(4, 1)‖ = 1` too).
#[test]
fn a_breakdown_within_the_tolerance_is_convergence_and_otherwise_reports_the_scale() {
    let j = Mat::from_fn(2, 2, |i, k| if i == k { 1.0 } else { 0.0 });
    let pb = problem(j, vec![1.0, -1.0]);
    let b = [4.0, 0.0];
    for (rel_tol, converged) in [(0.25, true), (0.125, false)] {
        let solver = LinearSolver::Cg(CgSettings {
            rel_tol,
            max_iters: 50,
            warm_start: true,
            preconditioner: Preconditioner::None,
            ..CgSettings::default()
        });
        let mut lin = pb.linearize(&[0.0, 0.0]).unwrap();
        let mut d = vec![4.0, 1.0];
        let res = DirectionSolver::new(solver).solve_from(&mut lin, Rhs::Params(&b), 0.0, &mut d);
        match res {
            Ok(info) => {
                assert!(converged, "{info:?}");
                assert_eq!(info.cg_iters(), Some(0));
                assert_eq!(info.rel_residual, 0.25);
                assert_eq!(d, [4.0, 1.0]);
            }
            Err(e) => {
                assert!(!converged, "rel_tol = ¼ is met: {e:?}");
                assert_eq!(
                    e,
                    SolveFailure::OperatorNotPositiveDefinite {
                        iteration: 0,
                        damping: 0.0,
                        scale: 1.0
                    }
                );
            }
        }
    }
}

/// The scale a breakdown reports is the largest `‖Gv‖/‖v‖` over CG's products
/// (`SolveFailure::OperatorNotPositiveDefinite`): Jacobi on [`indefinite`] from zero makes
/// one product (`G·0` is not one), with `y = diag(G)⁻¹b = (−1, 1, 10/31)`:
/// `Gy = (987, −834, 1488)/31`, so the scale is `‖(987, −834, 1488)‖/‖(31, 31, 10)‖`.
#[test]
fn a_breakdown_reports_the_largest_ratio_of_its_products() {
    let (pb, b, _) = indefinite();
    let (res, _, _) = solve(
        &pb,
        &b,
        &cg(Preconditioner::Jacobi, 50),
        &mut Default::default(),
    );
    let expected = (987f64.powi(2) + 834f64.powi(2) + 1488f64.powi(2)).sqrt()
        / (31f64.powi(2) + 31f64.powi(2) + 10f64.powi(2)).sqrt();
    match res {
        Err(SolveFailure::OperatorNotPositiveDefinite { scale, .. }) => {
            assert!(
                (scale - expected).abs() <= 1e-13 * expected,
                "{scale} vs {expected}"
            )
        }
        other => panic!("{other:?}"),
    }
}

/// What the cache reports (`SolveCache`'s accessors): the solve count (failed solves
/// included: it counts attempts), each system's last solution as its next initial guess,
/// and no sketch, factors or Auto measurement for a plain CG solve. On [`stiff`],
/// `G⁻¹b = (1, 1/1000)`.
#[test]
fn the_cache_counts_solves_and_keeps_each_systems_last_solution() {
    use natgrad::linsolve::WarmStart;
    let (pb, b) = stiff();
    let mut solver = DirectionSolver::new(cg(Preconditioner::None, 50))
        .with_warm_start(WarmStart::Extrapolation, vec![7.0, 8.0]);
    let cache = solver.cache();
    assert_eq!(cache.solves(), 0);
    assert_eq!(cache.warm_start(WarmStart::Direction), None);
    assert_eq!(
        cache.warm_start(WarmStart::Extrapolation),
        Some(&[7.0, 8.0][..])
    );
    let mut lin = pb.linearize(&[0.0, 0.0]).unwrap();
    let info = solver
        .solve_system(WarmStart::Direction, &mut lin, Rhs::Params(&b), 0.0)
        .unwrap();
    assert_eq!(info.cg_iters(), Some(2));
    let cache = solver.cache();
    assert_eq!(cache.solves(), 1);
    let x = cache.warm_start(WarmStart::Direction).unwrap();
    assert!(max_abs_diff(x, &[1.0, 1e-3]) <= 1e-15, "{x:?}");
    assert_eq!(
        cache.warm_start(WarmStart::Extrapolation),
        Some(&[7.0, 8.0][..])
    );
    assert!(cache.nystrom().is_none() && cache.kfac().is_none());
    assert_eq!(cache.auto_cg_iters(), None);
    solver.set_linear_solver(cg(Preconditioner::None, 1));
    let failed = solver.solve_system(WarmStart::Extrapolation, &mut lin, Rhs::Params(&b), 0.0);
    assert!(
        matches!(failed, Err(SolveFailure::NoConvergence { iters: 1, .. })),
        "{failed:?}"
    );
    assert_eq!(solver.cache().solves(), 2);
}

/// The Nyström sketch that CG keeps is of the operator of the space it solves in, with the
/// shift per unit damping of `refresh_sketch`'s contract: parameter space `A₀ = G`,
/// `μ = λ`; sample space with `M = wI`, `A₀ = JJᵀ` and `μ = λ/w`; with any other metric
/// `μ = 0`. A sketch of another space or shift is not reused, even when young: on one cache
/// (refresh every 10 solves) a sample-space solve with `M = ¼I` (shift per damping 4), one
/// with `M = diag(1, 2, 3, 4)` (0), one with `M = I` (1) and a parameter-space solve (1)
/// each sketch anew (2 products at rank 2); the same sample-space solve again reuses it.
#[test]
fn the_nystrom_sketch_follows_the_space_and_the_scalar_metric() {
    use natgrad::gram::Space;
    use natgrad::metric::WeightedL2;
    let j = Mat::from_fn(4, 6, |i, k| {
        ((i * 6 + k) % 5) as f64 - 2.0 + if i == k { 3.0 } else { 0.0 }
    });
    let fit = |w: Vec<f64>| {
        FitProblem::new(
            LinearModel::dense(j.clone()).unwrap(),
            SquaredError::l2(vec![1.0, -1.0, 0.5, 2.0]).unwrap(),
            WeightedL2::new(w).unwrap(),
        )
        .unwrap()
    };
    let settings = CgSettings {
        max_iters: 100,
        preconditioner: Preconditioner::Nystrom {
            rank: 2,
            refresh_every: 10,
            seed: 5,
        },
        ..CgSettings::default()
    };
    let mut solver = DirectionSolver::default();
    let cases = [
        (
            vec![0.25; 4],
            LinearSolver::SampleCg(settings.clone()),
            Space::Samples,
            4,
            4.0,
            2,
        ),
        (
            vec![0.25; 4],
            LinearSolver::SampleCg(settings.clone()),
            Space::Samples,
            4,
            4.0,
            0,
        ),
        (
            vec![1.0, 2.0, 3.0, 4.0],
            LinearSolver::SampleCg(settings.clone()),
            Space::Samples,
            4,
            0.0,
            2,
        ),
        (
            vec![1.0; 4],
            LinearSolver::SampleCg(settings.clone()),
            Space::Samples,
            4,
            1.0,
            2,
        ),
        (
            vec![1.0; 4],
            LinearSolver::Cg(settings.clone()),
            Space::Params,
            6,
            1.0,
            2,
        ),
        (
            vec![1.0; 4],
            LinearSolver::Cg(settings),
            Space::Params,
            6,
            1.0,
            0,
        ),
    ];
    for (k, (w, ls, space, dim, shift, products)) in cases.into_iter().enumerate() {
        let pb = fit(w);
        let mut lin = pb.linearize(&[0.1; 6]).unwrap();
        let r = lin.output_gradient().to_vec();
        let mut d = vec![0.0; 6];
        let info = solver
            .set_linear_solver(ls)
            .solve_from(&mut lin, Rhs::Cotangent { r: &r, jt_r: None }, 0.5, &mut d)
            .unwrap_or_else(|e| panic!("case {k}: {e:?}"));
        let report = info.cg.unwrap();
        assert_eq!(
            report.preconditioner,
            PreconditionerKind::Nystrom,
            "case {k}"
        );
        assert_eq!(report.sketch_products, products, "case {k}");
        let sk = solver.cache().nystrom().unwrap();
        assert_eq!(
            (sk.space(), sk.dim(), sk.rank()),
            (space, dim, 2),
            "case {k}"
        );
        assert_eq!(sk.shift(1.0), shift, "case {k}");
    }
}

/// Jacobi is `(diag(G) + λ)⁻¹` only when every entry is positive and finite
/// (`CgSettings`/`Preconditioner::Jacobi`: otherwise no preconditioner), and only in
/// parameter space. `J = [[1, 0, 0], [0, 2, 0]]`, `W = I`, λ = 0: `diag(G) = (1, 4, 0)`, so
/// plain CG solves `b = (1, 1, 0)` in 2 iterations to `(1, ¼, 0)`; `J = I`, `W = diag(1, −1)`:
/// `diag(G) = (1, −1)`, plain CG solves `b = (1, 0)` in one to `(1, 0)`. With
/// `W = diag(1, ¼)` on `J = diag(1, 4)` (`diag(G) = (1, 4)`) Jacobi is `G⁻¹` itself: one
/// iteration from any `b`. In sample space a Jacobi request runs plain CG.
#[test]
fn jacobi_needs_a_positive_finite_diagonal_and_the_parameter_space() {
    let j = Mat::from_fn(2, 3, |i, k| if i == k { (i + 1) as f64 } else { 0.0 });
    let singular = problem(j, vec![1.0, 1.0]);
    let indefinite = problem(Mat::identity(2, 2), vec![1.0, -1.0]);
    let scaled = problem(
        Mat::from_fn(2, 2, |i, k| if i == k { [1.0, 4.0][i] } else { 0.0 }),
        vec![1.0, 0.25],
    );
    let jacobi = cg(Preconditioner::Jacobi, 50);
    let (res, d, _) = solve(
        &singular,
        &[1.0, 1.0, 0.0],
        &jacobi,
        &mut Default::default(),
    );
    let report = res.unwrap().cg.unwrap();
    assert_eq!(
        (report.preconditioner, report.iters),
        (PreconditionerKind::None, 2)
    );
    assert!(max_abs_diff(&d, &[1.0, 0.25, 0.0]) <= 1e-15, "{d:?}");
    let (res, d, _) = solve(&indefinite, &[1.0, 0.0], &jacobi, &mut Default::default());
    let report = res.unwrap().cg.unwrap();
    assert_eq!(
        (report.preconditioner, report.iters),
        (PreconditionerKind::None, 1)
    );
    assert_eq!(d, [1.0, 0.0]);
    let (res, d, _) = solve(&scaled, &[3.0, -8.0], &jacobi, &mut Default::default());
    let report = res.unwrap().cg.unwrap();
    assert_eq!(
        (report.preconditioner, report.iters),
        (PreconditionerKind::Jacobi, 1)
    );
    assert!(max_abs_diff(&d, &[3.0, -2.0]) <= 1e-15, "{d:?}");

    let pb = FitProblem::new(
        LinearModel::dense(Mat::from_fn(2, 3, |i, k| (i + 2 * k) as f64 - 1.5)).unwrap(),
        SquaredError::l2(vec![1.0, 2.0]).unwrap(),
        natgrad::metric::WeightedL2::new(vec![1.0, 3.0]).unwrap(),
    )
    .unwrap();
    let mut lin = pb.linearize(&[0.0; 3]).unwrap();
    let r = lin.output_gradient().to_vec();
    let mut d = vec![0.0; 3];
    let info = DirectionSolver::new(LinearSolver::SampleCg(CgSettings {
        preconditioner: Preconditioner::Jacobi,
        ..CgSettings::default()
    }))
    .solve_from(&mut lin, Rhs::Cotangent { r: &r, jt_r: None }, 0.5, &mut d)
    .unwrap();
    assert_eq!(info.cg.unwrap().preconditioner, PreconditionerKind::None);
}

/// `M = I`, but not declared diagonal (so every Gram product applies it), returning NaN
/// from its `from`-th `apply` on: a user metric that fails in the middle of a solve.
#[derive(Debug)]
struct FailingMetric {
    from: usize,
    calls: std::sync::atomic::AtomicUsize,
}

impl Metric for FailingMetric {
    fn name(&self) -> &'static str {
        "FailingMetric"
    }
    fn dim(&self) -> Option<usize> {
        None
    }
    fn apply(&self, _: &OutputPoint<'_>, v: &[f64], out: &mut [f64]) {
        let call = 1 + self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for (o, v) in out.iter_mut().zip(v) {
            *o = if call >= self.from { f64::NAN } else { *v };
        }
    }
    fn diagonal(&self, _: &OutputPoint<'_>, _: &mut [f64]) -> bool {
        false
    }
    fn select_samples(&self, _: &[usize], _: usize, _: usize) -> natgrad::Result<Self> {
        Ok(FailingMetric {
            from: self.from,
            calls: Default::default(),
        })
    }
}

/// The scale a breakdown reports counts only the products that were finite
/// (`SolveFailure::OperatorNotPositiveDefinite`: "the largest `‖A v‖ / ‖v‖` over its
/// products"; a NaN product has no norm ratio). [`stiff`]'s `G = diag(1, 100)` with a metric
/// that returns NaN from its second product on: CG's first product `Gb̂` has the ratio
/// `‖(1, 10)‖/‖(1, 1/10)‖ = 10`; the second is NaN, which CG takes as a breakdown at
/// iteration 1; the scale reported is 10.
#[test]
fn a_breakdown_on_a_non_finite_product_reports_the_scale_of_the_finite_ones() {
    let j = Mat::from_fn(2, 2, |i, k| match (i, k) {
        (0, 0) => 1.0,
        (1, 1) => 10.0,
        _ => 0.0,
    });
    let pb = FitProblem::new(
        LinearModel::dense(j).unwrap(),
        SquaredError::l2(vec![0.0; 2]).unwrap(),
        FailingMetric {
            from: 2,
            calls: Default::default(),
        },
    )
    .unwrap();
    let mut lin = pb.linearize(&[0.0, 0.0]).unwrap();
    let mut d = vec![0.0; 2];
    let res = DirectionSolver::new(cg(Preconditioner::None, 50)).solve_from(
        &mut lin,
        Rhs::Params(&[1.0, 0.1]),
        0.0,
        &mut d,
    );
    match res {
        Err(SolveFailure::OperatorNotPositiveDefinite {
            iteration: 1,
            damping,
            scale,
        }) => {
            assert_eq!(damping, 0.0);
            assert!((scale - 10.0).abs() <= 1e-14, "{scale}");
        }
        other => panic!("{other:?}"),
    }
}

/// A right-hand side that is not finite is refused before any solve, naming its first bad
/// entry (`SolveFailure::NonFinite`: `what = "right-hand side"`, the first bad index),
/// whether it is given as `b` or as the cotangent `r` (`b = Jᵀr`), and for every solver.
#[test]
fn a_non_finite_right_hand_side_is_refused_naming_its_first_bad_entry() {
    let (pb, _) = stiff();
    let mut lin = pb.linearize(&[0.0, 0.0]).unwrap();
    let want = |index| SolveFailure::NonFinite {
        what: "right-hand side",
        index,
    };
    for solver in [
        cg(Preconditioner::None, 50),
        LinearSolver::Cholesky,
        LinearSolver::SampleCholesky,
    ] {
        let mut d = vec![0.0; 2];
        let mut ds = DirectionSolver::new(solver);
        for (rhs, index) in [
            (Rhs::Params(&[1.0, f64::NAN]), 1),
            (Rhs::Params(&[f64::INFINITY, f64::NAN]), 0),
            (
                Rhs::Cotangent {
                    r: &[0.5, f64::NEG_INFINITY],
                    jt_r: None,
                },
                1,
            ),
        ] {
            if matches!(rhs, Rhs::Params(_))
                && matches!(ds.linear_solver(), LinearSolver::SampleCholesky)
            {
                continue;
            }
            let res = ds.solve_from(&mut lin, rhs, 0.5, &mut d);
            assert_eq!(res.unwrap_err(), want(index), "{:?}", ds.linear_solver());
        }
    }
}
