//! argmin's line searches as `NaturalGradient`'s step control (`with_line_search`), on
//! problems with a known minimiser.

use argmin::core::{Executor, Jacobian, Operator, State};
use argmin::solver::linesearch::{HagerZhangLineSearch, MoreThuenteLineSearch};
use natgrad::argmin_adapter::{least_squares, JacobianMatrix};
use natgrad::line_search::StepSearch;
use natgrad::problems::toys::{self, ToyMetric};
use natgrad::{LinearSolver, Momentum, NaturalGradient};

/// θ* of the biased linear toy (docs/math.md §4).
const STAR: [f64; 2] = [1.0, -4.0 / 3.0];

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

/// One step of twice the Gauss–Newton length on the quadratic toy: `t = 1` returns to
/// the starting loss, the exact line minimum is `t = ½`, i.e. θ*.
fn overshooting<S: StepSearch>(
    solver: impl FnOnce(NaturalGradient) -> NaturalGradient<S>,
) -> (Vec<f64>, f64)
where
    NaturalGradient<S>: argmin::core::Solver<
        natgrad::Problem<
            natgrad::model::LinearModel,
            natgrad::SquaredError<natgrad::DenseMetric>,
            natgrad::DenseMetric,
        >,
        natgrad::NgState,
    >,
{
    let toy = toys::biased_linear(ToyMetric::Anisotropic);
    let ng = NaturalGradient::new()
        .with_step_size(2.0)
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
    let (theta, cost) = overshooting(|s| s.with_line_search(MoreThuenteLineSearch::new()));
    assert!(max_diff(&theta, &STAR) < 1e-10, "{theta:?} (cost {cost:e})");
}

#[test]
fn hager_zhang_finds_the_exact_line_minimum_of_a_quadratic() {
    let (theta, cost) = overshooting(|s| s.with_line_search(HagerZhangLineSearch::new()));
    assert!(max_diff(&theta, &STAR) < 1e-8, "{theta:?} (cost {cost:e})");
}

/// r(θ) = (θ₀ − 1, 10 (θ₁ − θ₀²)): Rosenbrock's residuals, minimiser (1, 1).
struct Rosenbrock;

impl Operator for Rosenbrock {
    type Param = Vec<f64>;
    type Output = Vec<f64>;
    fn apply(&self, t: &Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> {
        Ok(vec![t[0] - 1.0, 10.0 * (t[1] - t[0] * t[0])])
    }
}

impl Jacobian for Rosenbrock {
    type Param = Vec<f64>;
    type Jacobian = JacobianMatrix;
    fn jacobian(&self, t: &Vec<f64>) -> Result<JacobianMatrix, argmin::core::Error> {
        Ok(JacobianMatrix::from_rows(&[
            vec![1.0, 0.0],
            vec![-20.0 * t[0], 10.0],
        ])?)
    }
}

#[test]
fn heavy_ball_with_argmin_line_searches_reaches_the_rosenbrock_minimum() {
    let theta0 = vec![-1.2, 1.0];
    let base = || {
        NaturalGradient::new()
            .with_momentum(Momentum::HeavyBall { beta: 0.3 })
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
