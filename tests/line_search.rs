//! argmin's line searches as `NaturalGradient`'s step control (`with_line_search`), on
//! problems with a known minimiser.

mod common;

use argmin::core::{Executor, State};
use argmin::solver::linesearch::condition::ArmijoCondition;
use argmin::solver::linesearch::{
    BacktrackingLineSearch, HagerZhangLineSearch, MoreThuenteLineSearch,
};
use common::max_diff;
use common::models::Rosenbrock;
use natgrad::argmin_adapter::least_squares;
use natgrad::line_search::StepSearch;
use natgrad::problems::toys::{self, ToyMetric};
use natgrad::{LinearSolver, NaturalGradient, StepRule};

/// θ* of the biased linear toy (docs/math.md §4).
const STAR: [f64; 2] = [1.0, -4.0 / 3.0];

/// One step of `alpha` times the Gauss–Newton step `θ* − θ₀` on the quadratic toy (λ = 0,
/// Cholesky, so the step is exact): `θ₀ + t·alpha·(θ* − θ₀)` for the `t` the search takes.
/// At `alpha = 2`, `t = 1` returns to the starting loss and the exact line minimum is
/// `t = ½`, i.e. θ*.
fn stretched<S: StepSearch>(
    alpha: f64,
    solver: impl FnOnce(NaturalGradient) -> NaturalGradient<S>,
) -> (Vec<f64>, f64)
where
    NaturalGradient<S>: argmin::core::Solver<
        natgrad::FitProblem<
            natgrad::model::LinearModel,
            natgrad::SquaredError<natgrad::DenseMetric>,
            natgrad::DenseMetric,
        >,
        natgrad::NgState,
    >,
{
    let toy = toys::biased_linear(ToyMetric::Anisotropic);
    let ng = NaturalGradient::new()
        .with_step_size(alpha)
        .unwrap()
        .with_damping(0.0)
        .unwrap()
        .with_linear_solver(LinearSolver::Cholesky)
        .unwrap();
    let res = Executor::new(toy.problem, solver(ng))
        .configure(|s| s.param(toy.theta0.clone()).max_iters(1))
        .run()
        .unwrap();
    let st = res.state();
    (st.get_param().unwrap().clone(), st.get_cost())
}

#[test]
fn more_thuente_finds_the_exact_line_minimum_of_a_quadratic() {
    let (theta, cost) = stretched(2.0, |s| s.with_line_search(MoreThuenteLineSearch::new()));
    assert!(max_diff(&theta, &STAR) < 1e-10, "{theta:?} (cost {cost:e})");
}

#[test]
fn hager_zhang_finds_the_exact_line_minimum_of_a_quadratic() {
    let (theta, cost) = stretched(2.0, |s| s.with_line_search(HagerZhangLineSearch::new()));
    assert!(max_diff(&theta, &STAR) < 1e-8, "{theta:?} (cost {cost:e})");
}

/// Backtracking with Armijo's condition `φ(t) ≤ φ(0) + c t φ'(0)` and shrink factor ρ from
/// `t = 1` along a 4× Gauss–Newton step. On the quadratic, with `D = L(θ₀) − L(θ*)`,
/// `φ(t) = L* + (1 − 4t)² D` and `φ'(0) = −8D`, so the condition reads
/// `(1 − 4t)² ≤ 1 − 8ct`: the search must take the first `t = ρᵏ` satisfying it.
fn backtracking_lands_where_armijo_first_holds(rho: f64) {
    let c = 1e-4;
    let search = BacktrackingLineSearch::new(ArmijoCondition::new(c).unwrap())
        .rho(rho)
        .unwrap();
    let (theta, cost) = stretched(4.0, |s| s.with_line_search(search));
    let t = (0..)
        .map(|k| rho.powi(k))
        .find(|t| (1.0 - 4.0 * t).powi(2) <= 1.0 - 8.0 * c * t)
        .unwrap();
    assert!(t < 1.0, "the step must be shortened");
    let theta0 = toys::biased_linear(ToyMetric::Anisotropic).theta0;
    let want: Vec<f64> = theta0
        .iter()
        .zip(STAR)
        .map(|(a, s)| a + 4.0 * t * (s - a))
        .collect();
    assert!(
        max_diff(&theta, &want) < 1e-12,
        "ρ = {rho}: {theta:?} (cost {cost:e}), want t = {t}: {want:?}"
    );
}

#[test]
fn backtracking_halving_lands_on_the_minimiser() {
    // ρ = ½: t = 1 (φ = 9D) and ½ (φ = D, no decrease) fail, t = ¼ is θ*.
    backtracking_lands_where_armijo_first_holds(0.5);
}

#[test]
fn backtracking_with_argmins_default_shrink_factor() {
    // ρ = 0.9 (argmin's default): t = 0.9⁷ ≈ 0.478, past θ* (4t ≈ 1.91).
    backtracking_lands_where_armijo_first_holds(0.9);
}

#[test]
fn heavy_ball_with_argmin_line_searches_reaches_the_rosenbrock_minimum() {
    let theta0 = vec![-1.2, 1.0];
    let base = || {
        NaturalGradient::new()
            .with_step_rule(StepRule::HeavyBall { beta: 0.3 })
            .unwrap()
            .with_damping(1e-6)
            .unwrap()
    };
    let check = |name: &str, st: &natgrad::NgState| {
        let th = st.get_best_param().unwrap();
        assert!(
            max_diff(th, &[1.0, 1.0]) < 1e-8,
            "{name}: {th:?} after {} ({:?})",
            st.get_iter(),
            st.get_termination_reason()
        );
    };
    let res = Executor::new(
        least_squares(Rosenbrock, &theta0).unwrap(),
        base().with_line_search(MoreThuenteLineSearch::new()),
    )
    .configure(|s| s.param(theta0.clone()).max_iters(100))
    .run()
    .unwrap();
    check("Moré–Thuente", res.state());
    let res = Executor::new(
        least_squares(Rosenbrock, &theta0).unwrap(),
        base().with_line_search(HagerZhangLineSearch::new()),
    )
    .configure(|s| s.param(theta0.clone()).max_iters(100))
    .run()
    .unwrap();
    check("Hager–Zhang", res.state());
}
