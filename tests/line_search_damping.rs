//! Levenberg–Marquardt damping that follows the line search
//! (`NaturalGradient::with_line_search_damping`): after a step of which Armijo kept
//! `t < t_max`, `λ ← max(λ', λ·t_max/t)`, against the step and the rule worked by hand on
//! a saturated scalar model.

mod common;

use argmin::core::KV;
use common::twin::{kv_float, recorded};
use faer::MatMut;
use natgrad::model::ClosureModel;
use natgrad::{
    DampingRule, Euclidean, FitProblem, LevenbergMarquardt, LinearSolver, Model, NaturalGradient,
    SquaredError, StepControl,
};

/// Target of the scalar fit `y = tanh θ`.
const TARGET: f64 = 0.5;
/// Saturated start: `J = 1 − tanh²5 ≈ 1.8e-4`, so the Gauss–Newton step is ≈ −2 800.
const THETA0: f64 = 5.0;
const LAMBDA0: f64 = 1e-10;
const T_MAX: f64 = 1.0 / 256.0;

fn problem() -> FitProblem<impl Model + 'static, SquaredError<Euclidean>, Euclidean> {
    let model = ClosureModel::new(
        1,
        1,
        |t: &[f64], y: &mut [f64]| y[0] = t[0].tanh(),
        |t: &[f64], mut j: MatMut<'_, f64>| j[(0, 0)] = 1.0 - t[0].tanh().powi(2),
    );
    let loss = SquaredError::new(vec![TARGET], Euclidean).unwrap();
    FitProblem::new(model, loss, Euclidean).unwrap()
}

fn solver(follow: Option<f64>) -> NaturalGradient {
    let s = NaturalGradient::new()
        .with_linear_solver(LinearSolver::Cholesky)
        .and_then(|s| s.with_damping(LAMBDA0))
        .and_then(|s| {
            s.with_levenberg_marquardt(LevenbergMarquardt {
                min: 1e-12,
                max: 1e2,
                rule: DampingRule::Threshold,
            })
        })
        .and_then(|s| s.with_step_control(StepControl::armijo()))
        .unwrap();
    match follow {
        Some(t_max) => s.with_line_search_damping(t_max).unwrap(),
        None => s,
    }
}

fn steps(follow: Option<f64>, iters: u64) -> Vec<(Vec<f64>, KV)> {
    recorded(problem(), solver(follow), &[THETA0], iters)
}

/// The first step by hand: `δ = −Jr/(J² + λ₀)`, Armijo's `t` (halving from 1 until
/// `L(θ + tδ) ≤ L(θ) + 10⁻⁴ t gδ`), and the threshold rule's λ' from
/// `ρ = (L(θ) − L(θ + tδ)) / −(t gδ + ½ t² (Jδ)²)`.
fn first_step_by_hand() -> (f64, f64) {
    let loss = |th: f64| 0.5 * (th.tanh() - TARGET).powi(2);
    let (r, j) = (THETA0.tanh() - TARGET, 1.0 - THETA0.tanh().powi(2));
    let g = j * r;
    let delta = -g / (j * j + LAMBDA0);
    let mut t = 1.0;
    while loss(THETA0 + t * delta) > loss(THETA0) + 1e-4 * t * g * delta {
        t *= 0.5;
    }
    let actual = loss(THETA0) - loss(THETA0 + t * delta);
    let predicted = -(t * g * delta + 0.5 * t * t * (j * delta).powi(2));
    let rho = actual / predicted;
    let factor = if rho < 0.25 {
        1.5
    } else if rho > 0.75 {
        2.0 / 3.0
    } else {
        1.0
    };
    (t, LAMBDA0 * factor)
}

#[test]
fn damping_follows_a_short_line_search_step_by_t_max_over_t() {
    let (t, lm_update) = first_step_by_hand();
    // θ must stay above 0 for tanh θ to approach ½ from above: t ≤ 5/2 800 ≈ 2⁻⁹.
    assert!(
        t < T_MAX,
        "the hand step must backtrack below t_max: t = {t}"
    );
    let expected = (LAMBDA0 * T_MAX / t).max(lm_update);
    let with = steps(Some(T_MAX), 2);
    assert_eq!(kv_float(&with[0].1, "step_scale"), t);
    assert_eq!(kv_float(&with[0].1, "damping_follows"), T_MAX / t);
    let next = kv_float(&with[1].1, "damping");
    assert!(
        (next - expected).abs() <= 1e-12 * expected,
        "λ₁ = {next:e}, by hand {expected:e}"
    );
    // Without it, the threshold rule alone decides λ₁.
    let without = steps(None, 2);
    assert!(without[0].1.get("damping_follows").is_none());
    let next = kv_float(&without[1].1, "damping");
    assert!(
        (next - lm_update).abs() <= 1e-12 * lm_update,
        "λ₁ = {next:e}, rule {lm_update:e}"
    );
}

#[test]
fn damping_follows_only_below_t_max() {
    // t_max = 1/2 … 1: the first step backtracks far below, so λ follows; t_max at or
    // below the accepted t: λ does not follow.
    let (t, lm_update) = first_step_by_hand();
    for t_max in [t, t / 2.0] {
        let run = steps(Some(t_max), 2);
        assert!(run[0].1.get("damping_follows").is_none(), "t_max = {t_max}");
        assert_eq!(kv_float(&run[1].1, "damping"), lm_update);
    }
}

#[test]
fn line_search_damping_threshold_outside_zero_one_is_refused() {
    for bad in [0.0, -0.5, 1.5, f64::NAN] {
        let err = NaturalGradient::new()
            .with_line_search_damping(bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("t_max must be in (0, 1]"), "{bad}: {err}");
    }
    assert!(NaturalGradient::new().with_line_search_damping(1.0).is_ok());
}
