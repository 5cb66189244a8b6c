//! The solver's step (`src/solver.rs`, `src/solver/{step,prepare,control,memory}.rs`)
//! where cargo-mutants found it unguarded (issue 20): each expected value is worked by
//! hand on a one-parameter linear model, or is the documented contract.

mod common;

use argmin::core::observers::ObserverMode;
use argmin::core::{Executor, State, TerminationReason, KV};
use common::runs::KvLog;
use faer::mat;
use natgrad::model::LinearModel;
use natgrad::{
    converged_by, FitProblem, LinearSolver, NaturalGradient, SquaredError, StepControl, StepRule,
    Tolerances, WeightedL2,
};

/// `y = θ` (one parameter), `ℓ = ½(y − 1)²`, `M = 1`: `J = 1`, `G = 1`, `g = θ − 1`.
fn line() -> FitProblem<LinearModel, SquaredError<WeightedL2>, WeightedL2> {
    let w = WeightedL2::new(vec![1.0]).unwrap();
    FitProblem::new(
        LinearModel::dense(mat![[1.0]]).unwrap(),
        SquaredError::new(vec![1.0], w.clone()).unwrap(),
        w,
    )
    .unwrap()
}

fn float(kv: &KV, key: &str) -> f64 {
    kv.get(key)
        .and_then(|v| v.get_float())
        .unwrap_or_else(|| panic!("no float `{key}` in {kv:?}"))
}

/// Runs `ng` on [`line`] from θ₀ = 0 for at most `iters` steps: the termination reason,
/// the iterations made and every step's KV.
fn run_line(ng: NaturalGradient, iters: u64) -> (TerminationReason, u64, Vec<KV>) {
    let log = KvLog::default();
    let res = Executor::new(line(), ng)
        .configure(|s| s.param(vec![0.0]).max_iters(iters))
        .add_observer(log.clone(), ObserverMode::Always)
        .run()
        .unwrap();
    let state = res.state();
    let reason = state.get_termination_reason().unwrap().clone();
    (reason, state.get_iter(), log.get())
}

/// Only the relative-step test, with `xtol = 2`: on [`line`] from θ₀ = 0 it fires on any
/// step `‖s‖ ≤ 2·(0 + 2) = 4` whose damping does not dominate (the column-cosine guard is
/// `max(gtol, √ftol, √xtol) = √2 > 1 ≥ c`, so it never holds a step back).
fn step_test_only(
    rule: StepRule,
    control: StepControl,
    alpha: f64,
    lambda: f64,
) -> NaturalGradient {
    NaturalGradient::new()
        .with_step_size(alpha)
        .and_then(|s| s.with_damping(lambda))
        .and_then(|s| s.with_linear_solver(LinearSolver::Cholesky))
        .and_then(|s| s.with_step_rule(rule))
        .and_then(|s| s.with_step_control(control))
        .and_then(|s| {
            s.with_tolerances(Tolerances {
                cost: 0.0,
                step: 2.0,
                grad: 0.0,
            })
        })
        .unwrap()
}

/// crate::stopping: "a test fires only on a step whose damping does not dominate the
/// curvature, `λ‖s‖² ≤ ‖Js‖²_M`" (`s = tδ`). On [`line`] (`J = M = 1`) the ratio of the two
/// sides is λ whatever the step, so with λ = ½ the step test fires at step 1 and with
/// λ = 3/2 never. Steps: `δ = −α(1 + λ)⁻¹g = α/(1 + λ)` from θ₀ = 0.
/// - fixed step, α/(1 + λ) = ½: `s = ½` (`‖s‖² = ¼`);
/// - Armijo, α/(1 + λ) = 3: θ = 3 has loss 2 > ½, so `t = ½` (θ = 1.5, loss ⅛ ≤ ½ − 10⁻⁴·½·3):
///   `step_scale = ½`, `step_norm = t‖δ‖ = 1.5`;
/// - gradient descent, α = ½: `δ = −αg = ½`; no λ enters its step (`G = I`), so its
///   damping side is 0 whatever `with_damping` says, and the test fires at step 1.
#[test]
fn stopping_tests_fire_only_on_steps_whose_damping_does_not_dominate() {
    let fixed = StepControl::default();
    let armijo = StepControl::armijo();
    let cases = [
        (
            "plain λ = ½",
            StepRule::Plain,
            fixed,
            0.75,
            0.5,
            true,
            1.0,
            0.5,
        ),
        (
            "plain λ = 3/2",
            StepRule::Plain,
            fixed,
            1.25,
            1.5,
            false,
            1.0,
            0.5,
        ),
        (
            "Armijo λ = ½",
            StepRule::Plain,
            armijo,
            4.5,
            0.5,
            true,
            0.5,
            1.5,
        ),
        (
            "Armijo λ = 3/2",
            StepRule::Plain,
            armijo,
            7.5,
            1.5,
            false,
            0.5,
            1.5,
        ),
        (
            "gd λ = 3/2",
            StepRule::GradientDescent,
            fixed,
            0.5,
            1.5,
            true,
            1.0,
            0.5,
        ),
    ];
    for (name, rule, control, alpha, lambda, fires, t, s) in cases {
        let (reason, iters, kvs) = run_line(step_test_only(rule, control, alpha, lambda), 4);
        assert_eq!(float(&kvs[0], "step_scale"), t, "{name}");
        let step_norm = float(&kvs[0], "step_norm");
        assert!(
            (step_norm - s).abs() <= 1e-14 * s,
            "{name}: step_norm {step_norm} ≠ {s}"
        );
        if fires {
            assert_eq!(
                converged_by(&reason),
                Some("relative step"),
                "{name}: {reason:?}"
            );
            assert_eq!(iters, 1, "{name}");
        } else {
            assert_eq!(reason, TerminationReason::MaxItersReached, "{name}");
            assert_eq!(iters, 4, "{name}");
        }
    }
}
