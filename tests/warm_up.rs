//! The watchdog warm-up (`NaturalGradient::with_warm_up`, `step_control::WarmUp`): plain,
//! full, unguarded steps first, then back to `θ₀` unless the loss went below `L(θ₀)`,
//! then the configured settings as at the start of a run — against Newton's iteration on
//! `y = atan θ`, `y* = 0`, worked by hand (Gauss–Newton with λ = 0 on one residual is
//! Newton's method for `atan θ = 0`: `θ ← θ − (1 + θ²) atan θ`, which converges for
//! `|θ| < 1.39` and moves away from 0 beyond).

mod common;

use argmin::core::{Executor, State, KV};
use common::twin::recorded;
use faer::MatMut;
use natgrad::model::ClosureModel;
use natgrad::step_control::WarmUp;
use natgrad::{
    Euclidean, FitProblem, LinearSolver, Model, NaturalGradient, SquaredError, StepControl,
    StepRule,
};

/// A scalar function `f64 → f64`.
type Scalar = fn(f64) -> f64;

/// The scalar fit `f(θ) = 0` (the model `y = f(θ)`, `J = f'(θ)`, target 0).
fn fit(
    f: Scalar,
    df: Scalar,
) -> FitProblem<impl Model + 'static, SquaredError<Euclidean>, Euclidean> {
    let model = ClosureModel::new(
        1,
        1,
        move |t: &[f64], y: &mut [f64]| y[0] = f(t[0]),
        move |t: &[f64], mut j: MatMut<'_, f64>| j[(0, 0)] = df(t[0]),
    );
    let loss = SquaredError::new(vec![0.0], Euclidean).unwrap();
    FitProblem::new(model, loss, Euclidean).unwrap()
}

fn d_atan(t: f64) -> f64 {
    1.0 / (1.0 + t * t)
}

fn problem() -> FitProblem<impl Model + 'static, SquaredError<Euclidean>, Euclidean> {
    fit(f64::atan, d_atan)
}

/// Newton's step for `atan θ = 0`.
fn newton(theta: f64) -> f64 {
    theta - (1.0 + theta * theta) * theta.atan()
}

/// A solver whose own steps are far from Newton's (α = ¼, heavy ball, Armijo, λ = 0),
/// with a warm-up of `k` steps at λ_w = 0.
fn solver(k: u64) -> NaturalGradient {
    NaturalGradient::new()
        .with_linear_solver(LinearSolver::Cholesky)
        .and_then(|s| s.with_damping(0.0))
        .and_then(|s| s.with_step_size(0.25))
        .and_then(|s| s.with_step_rule(StepRule::HeavyBall { beta: 0.9 }))
        .and_then(|s| s.with_step_control(StepControl::armijo()))
        .and_then(|s| {
            s.with_warm_up(WarmUp {
                steps: k,
                damping: 0.0,
            })
        })
        .unwrap()
}

fn run(k: u64, theta0: f64, iters: u64) -> Vec<(Vec<f64>, KV)> {
    run_on(problem(), k, theta0, iters)
}

fn run_on(
    problem: FitProblem<impl Model + 'static, SquaredError<Euclidean>, Euclidean>,
    k: u64,
    theta0: f64,
    iters: u64,
) -> Vec<(Vec<f64>, KV)> {
    recorded(problem, solver(k), &[theta0], iters)
}

fn watchdog(kv: &KV) -> Option<String> {
    kv.get("watchdog").and_then(|v| v.get_string())
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-14 * b.abs().max(1.0)
}

#[test]
fn warm_up_steps_are_full_newton_steps_and_the_watchdog_keeps_a_decrease() {
    // From θ₀ = 0.5 Newton converges: θ₁ = N(θ₀), θ₂ = N(θ₁), both full steps although
    // the solver's own setting is α = ¼ with heavy ball; |atan θ₂| < |atan θ₀|: kept.
    let theta0 = 0.5;
    let (t1, t2) = (newton(theta0), newton(newton(theta0)));
    let steps = run(2, theta0, 3);
    assert!(
        close(steps[0].0[0], t1),
        "θ₁ {} by hand {t1}",
        steps[0].0[0]
    );
    assert!(
        close(steps[1].0[0], t2),
        "θ₂ {} by hand {t2}",
        steps[1].0[0]
    );
    assert_eq!(watchdog(&steps[0].1), None);
    assert_eq!(watchdog(&steps[1].1).as_deref(), Some("kept"));
    // Step 3 is the configured one as at the start of a run: no momentum memory, so
    // the plain step θ₂ − ¼(1 + θ₂²) atan θ₂ (Armijo takes t = 1 on a quarter step
    // near the root).
    let t3 = t2 - 0.25 * (1.0 + t2 * t2) * t2.atan();
    assert!(
        close(steps[2].0[0], t3),
        "θ₃ {} by hand {t3}",
        steps[2].0[0]
    );
    assert_eq!(
        steps[2]
            .1
            .get("momentum")
            .and_then(|v| v.get_string())
            .as_deref(),
        Some("heavy_ball")
    );
}

#[test]
fn the_watchdog_goes_back_to_the_start_when_the_warm_up_raised_the_loss() {
    // From θ₀ = 2 Newton moves away: θ₁ = 2 − 5 atan 2 ≈ −3.54, θ₂ ≈ 14; the loss went
    // up, so after step 2 the run is back at θ₀ exactly, and step 3 is the configured
    // plain quarter step from there.
    let theta0 = 2.0;
    let steps = run(2, theta0, 3);
    assert!(close(steps[0].0[0], newton(theta0)));
    assert_eq!(steps[1].0[0], theta0, "back at θ₀");
    assert_eq!(watchdog(&steps[1].1).as_deref(), Some("back_to_start"));
    // Armijo halves the quarter step until it decreases enough.
    let expected = quarter_step_by_hand(f64::atan, d_atan, theta0);
    assert!(
        close(steps[2].0[0], expected),
        "θ₃ {} by hand {expected}",
        steps[2].0[0]
    );
}

/// The configured step from `θ` on the fit `f(θ) = 0`: a plain quarter Gauss–Newton step
/// `δ = −¼ f/f'`, halved by Armijo until `L(θ + tδ) ≤ L(θ) + 10⁻⁴ t gδ`.
fn quarter_step_by_hand(f: Scalar, df: Scalar, theta: f64) -> f64 {
    let loss = |th: f64| 0.5 * f(th).powi(2);
    let (g, delta) = (f(theta) * df(theta), -0.25 * f(theta) / df(theta));
    let mut t = 1.0;
    while loss(theta + t * delta) > loss(theta) + 1e-4 * t * g * delta {
        t *= 0.5;
    }
    theta + t * delta
}

#[test]
fn a_warm_up_step_that_fails_numerically_goes_back_to_the_start() {
    // y = ln θ from θ₀ = 3: Newton's step 3 − 3 ln 3 ≈ −0.30 leaves the domain, the loss
    // there is not finite. Without a warm-up that ends the run; in one, the watchdog takes
    // the run back to θ₀ and the configured steps follow.
    let (f, df): (Scalar, Scalar) = (f64::ln, |t| 1.0 / t);
    let steps = run_on(fit(f, df), 3, 3.0, 2);
    assert_eq!(
        steps.len(),
        2,
        "the run goes on after the failed warm-up step"
    );
    assert_eq!(steps[0].0[0], 3.0, "back at θ₀");
    assert_eq!(watchdog(&steps[0].1).as_deref(), Some("back_to_start"));
    assert!(steps[0].1.get("warm_up_failure").is_some());
    let expected = quarter_step_by_hand(f, df, 3.0);
    assert!(
        close(steps[1].0[0], expected),
        "θ₂ {} by hand {expected}",
        steps[1].0[0]
    );
}

#[test]
fn a_warm_up_of_zero_steps_or_a_bad_damping_is_refused() {
    for (steps, damping) in [(0, 1e-6), (3, -1.0), (3, f64::NAN), (3, f64::INFINITY)] {
        let err = NaturalGradient::new()
            .with_warm_up(WarmUp { steps, damping })
            .unwrap_err()
            .to_string();
        assert!(err.contains("warm-up"), "{steps} {damping}: {err}");
    }
    let w = WarmUp {
        steps: 1,
        damping: 0.0,
    };
    let with = NaturalGradient::new().with_warm_up(w).unwrap();
    assert_eq!(with.warm_up(), Some(w), "the setting is kept");
    assert_eq!(NaturalGradient::new().warm_up(), None, "off by default");
}

/// The watchdog keeps `θ_K` with the gradient the warm-up's last step formed there: argmin's
/// state after the warm-up holds `∇L(θ₂) = atan θ₂ / (1 + θ₂²)` by hand.
#[test]
fn the_kept_iterate_keeps_its_gradient_in_the_state() {
    let theta0 = 0.5;
    let t2 = newton(newton(theta0));
    let res = Executor::new(problem(), solver(2))
        .configure(|s| s.param(vec![theta0]).max_iters(2))
        .run()
        .unwrap();
    let state = res.state();
    assert!(close(state.get_param().unwrap()[0], t2));
    let g = state
        .get_gradient()
        .expect("the gradient at θ₂ is kept in the state");
    let by_hand = t2.atan() / (1.0 + t2 * t2);
    assert!(close(g[0], by_hand), "∇L(θ₂) {} by hand {by_hand}", g[0]);
}
