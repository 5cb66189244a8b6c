//! The step of `src/solver/step.rs` where cargo-mutants found it unguarded (issue 20):
//! each expected value is worked by hand on a one- or two-parameter linear model.

mod common;

use argmin::core::observers::ObserverMode;
use argmin::core::{Executor, State};
use common::runs::KvLog;
use faer::mat;
use natgrad::loss::FnLoss;
use natgrad::model::LinearModel;
use natgrad::{
    CgSettings, FitProblem, LinearSolver, NaturalGradient, Preconditioner, SquaredError, StepRule,
    Tolerances, WeightedL2,
};

fn reason<S: State>(state: &S) -> String {
    format!("{:?}", state.get_termination_reason())
}

/// `y = θ` (one parameter), the linear loss `ℓ(y) = −y` (`g = −1`) and the metric
/// `M = 10⁻³⁰⁸`: at λ = 0 the step is `δ = −G⁻¹g = 10³⁰⁸`, finite, but from
/// `θ₀ = 10³⁰⁸` the new iterate `θ₀ + δ = 2·10³⁰⁸` overflows. The run must end naming
/// that (θ₀ kept), not the non-finite loss the step control would meet at `θ = ∞`.
#[test]
fn a_step_that_overflows_theta_is_named_and_theta_kept() {
    let loss = FnLoss::new(
        Some(1),
        |y: &[f64]| -y[0],
        |_: &[f64], out: &mut [f64]| out[0] = -1.0,
    )
    .unwrap();
    let problem = FitProblem::new(
        LinearModel::dense(mat![[1.0]]).unwrap(),
        loss,
        WeightedL2::new(vec![1e-308]).unwrap(),
    )
    .unwrap();
    let ng = NaturalGradient::new()
        .with_damping(0.0)
        .unwrap()
        .with_linear_solver(LinearSolver::Cholesky)
        .unwrap()
        .with_tolerances(Tolerances::NONE)
        .unwrap();
    let res = Executor::new(problem, ng)
        .configure(|s| s.param(vec![1e308]).max_iters(3))
        .run()
        .unwrap();
    let why = reason(res.state());
    assert!(
        why.contains("θ_k + δ_k (the step overflows θ) is not finite"),
        "{why}"
    );
    assert_eq!(res.state().get_param().unwrap(), &vec![1e308]);
}

/// When the cost after a step is exactly argmin's target cost, argmin stops, so the solver
/// must not prepare a next step (docs of `step::Ahead`: "not when argmin is about to
/// stop"): the run does exactly the evaluations of a run limited to that one iteration.
/// `y = θ ∈ R²`, `ℓ = ½‖y − u‖²`, α = ½, CG (whose products are counted); the target is
/// the cost the one-iteration run ends with, which the longer run reaches at its first
/// step (the same arithmetic).
#[test]
fn reaching_the_target_cost_exactly_prepares_no_next_step() {
    let run = |target: Option<f64>, iters: u64| {
        let problem = FitProblem::new(
            LinearModel::dense(mat![[1.0, 0.0], [0.0, 1.0]]).unwrap(),
            SquaredError::new(vec![1.0, 2.0], WeightedL2::new(vec![1.0, 1.0]).unwrap()).unwrap(),
            WeightedL2::new(vec![1.0, 1.0]).unwrap(),
        )
        .unwrap();
        let cg = CgSettings {
            preconditioner: Preconditioner::None,
            ..CgSettings::default()
        };
        let ng = NaturalGradient::new()
            .with_step_size(0.5)
            .unwrap()
            .with_linear_solver(LinearSolver::Cg(cg))
            .unwrap()
            .with_tolerances(Tolerances::NONE)
            .unwrap();
        let res = Executor::new(problem, ng)
            .configure(|s| {
                let s = s.param(vec![0.0, 0.0]).max_iters(iters).counting(true);
                match target {
                    Some(t) => s.target_cost(t),
                    None => s,
                }
            })
            .run()
            .unwrap();
        let state = res.state();
        assert_eq!(state.get_iter(), 1, "{}", reason(state));
        (state.get_cost(), state.get_func_counts().clone())
    };
    let (cost, one_step) = run(None, 1);
    // G + λI = (1 + λ)I with the default λ = 1e-8, so CG is exact in one iteration: δ =
    // αu/(1 + λ) from θ = 0 leaves the residual (1 − α/(1 + λ))u, and the cost is
    // ½‖u‖²(1 − α/(1 + λ))² = 2.5 (½ + λ)²/(1 + λ)² (≈ 0.625: the step halves the residual).
    // (Was `0 < cost < 2.5`, which a step ignoring α (cost 2.5e-16) also passed.)
    let lambda = 1e-8;
    let expected = 2.5 * (0.5 + lambda) * (0.5 + lambda) / ((1.0 + lambda) * (1.0 + lambda));
    assert!(
        (cost - expected).abs() <= 1e-14 * expected,
        "the step halves the residual: cost {cost:e}, by hand {expected:e}"
    );
    let (at_target, counts) = run(Some(cost), 10);
    assert_eq!(at_target, cost);
    assert_eq!(counts, one_step);
}

/// The KV's `momentum_restart` on a rejected Levenberg–Marquardt step: `true` exactly when
/// the step had a momentum memory and the rule uses one. `y = θ`, `ℓ = ½θ²`, `M = 1`
/// (`G = 1`), α = 3, Nielsen's update, θ₀ = 1:
/// - λ₀ = 1: step 1 is `δ = −3θ/(1 + λ) = −1.5`, θ₁ = −½ (ρ = 1 exactly: accepted, λ₁ = ⅓).
///   Heavy ball (β = 0.1) then solves `(1 + ⅓)δ = β·Jδ₁ − 3y₁ = −0.15 + 1.5`, δ₂ = 1.0125,
///   θ = 0.5125 > |θ₁|: the loss rises, rejected with a memory → `true`. Plain: δ₂ =
///   −3θ₁/(4/3) = 1.125, θ = 0.625, rejected → `false` (no momentum to restart).
/// - λ₀ = 0.1: step 1 is `θ = 1 − 3/1.1 < −1`, rejected before any memory → `false`.
#[test]
fn a_rejected_step_reports_a_momentum_restart_only_when_there_was_momentum() {
    let restarts = |rule: StepRule, lambda0: f64| {
        let problem = FitProblem::new(
            LinearModel::dense(mat![[1.0]]).unwrap(),
            SquaredError::new(vec![0.0], WeightedL2::new(vec![1.0]).unwrap()).unwrap(),
            WeightedL2::new(vec![1.0]).unwrap(),
        )
        .unwrap();
        let ng = NaturalGradient::new()
            .with_step_size(3.0)
            .unwrap()
            .with_damping(lambda0)
            .unwrap()
            .with_adaptive_damping(1e-9, 1e9)
            .unwrap()
            .with_step_rule(rule)
            .unwrap()
            .with_tolerances(Tolerances::NONE)
            .unwrap();
        let kvs = KvLog::default();
        Executor::new(problem, ng)
            .configure(|s| s.param(vec![1.0]).max_iters(2))
            .add_observer(kvs.clone(), ObserverMode::Always)
            .run()
            .unwrap();
        let kvs = kvs.get();
        kvs.iter()
            .map(|kv| kv.get("momentum_restart").map(|v| v.get_bool().unwrap()))
            .collect::<Vec<_>>()
    };
    let heavy_ball = StepRule::HeavyBall { beta: 0.1 };
    assert_eq!(restarts(heavy_ball, 1.0), [None, Some(true)]);
    assert_eq!(restarts(StepRule::Plain, 1.0), [None, Some(false)]);
    assert_eq!(restarts(heavy_ball, 0.1)[0], Some(false));
}

/// A step made ahead (on the linearisation that formed the gradient) whose direction solve
/// fails is reported by the next iteration as it is, not made again: `y = diag(1, 2)θ`
/// needs two CG iterations, `max_iters = 1` fails the first direction (no
/// Levenberg–Marquardt, so the run ends). Forward passes: the initial loss and the
/// linearisation at θ₀, nothing else (`cost_count = 2`).
#[test]
fn a_failed_solve_made_ahead_is_not_repeated() {
    let problem = FitProblem::new(
        LinearModel::dense(mat![[1.0, 0.0], [0.0, 2.0]]).unwrap(),
        SquaredError::new(vec![1.0, 1.0], WeightedL2::new(vec![1.0, 1.0]).unwrap()).unwrap(),
        WeightedL2::new(vec![1.0, 1.0]).unwrap(),
    )
    .unwrap();
    let cg = CgSettings {
        max_iters: 1,
        preconditioner: Preconditioner::None,
        ..CgSettings::default()
    };
    let ng = NaturalGradient::new()
        .with_linear_solver(LinearSolver::Cg(cg))
        .unwrap();
    let res = Executor::new(problem, ng)
        .configure(|s| s.param(vec![0.0, 0.0]).max_iters(5).counting(true))
        .run()
        .unwrap();
    let why = reason(res.state());
    assert!(why.contains("CG did not converge"), "{why}");
    assert_eq!(res.state().get_func_counts()["cost_count"], 2);
}
