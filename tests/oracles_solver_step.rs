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
    converged_by, CgSettings, DampingScale, DenseMetric, FitProblem, LinearSolver, NaturalGradient,
    Preconditioner, SquaredError, StepControl, StepRule, Tolerances, WeightedL2,
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

/// A step that Levenberg–Marquardt rejected leaves θ where it was, so the next step starts
/// from the gradient already formed there ([`NaturalGradient`]'s KV: "the state's … gradient
/// `g(θ_{k+1})` on all samples"; `start`: "formed at the end of the previous step on all
/// samples, else one vjp"): no new gradient. `y = θ`, `ℓ = ½θ²`, α = 3, θ₀ = 1, λ₀ = 0.4:
/// step 1 goes to `1 − 3/1.4 ≈ −1.14` (loss 0.65 > ½, rejected; λ at least doubles), step 2
/// with `λ > ½` goes to `|1 − 3/(1 + λ)| < 1` (accepted). Gradients formed: at θ₀ in `init`
/// and at θ₂ after the accepted step: `gradient_count = 2`.
#[test]
fn a_step_after_a_rejection_reuses_the_gradient_at_its_iterate() {
    let w = WeightedL2::new(vec![1.0]).unwrap();
    let problem = FitProblem::new(
        LinearModel::dense(mat![[1.0]]).unwrap(),
        SquaredError::new(vec![0.0], w.clone()).unwrap(),
        w,
    )
    .unwrap();
    let ng = NaturalGradient::new()
        .with_step_size(3.0)
        .and_then(|s| s.with_damping(0.4))
        .and_then(|s| s.with_adaptive_damping(1e-9, 1e9))
        .and_then(|s| s.with_linear_solver(LinearSolver::Cholesky))
        .and_then(|s| s.with_tolerances(Tolerances::NONE))
        .unwrap();
    let log = KvLog::default();
    let res = Executor::new(problem, ng)
        .configure(|s| s.param(vec![1.0]).max_iters(2).counting(true))
        .add_observer(log.clone(), ObserverMode::Always)
        .run()
        .unwrap();
    let kvs = log.get();
    assert!(
        kvs[0].get("momentum_restart").is_some(),
        "step 1 rejected: {kvs:?}"
    );
    assert!(
        kvs[1].get("momentum_restart").is_none(),
        "step 2 accepted: {kvs:?}"
    );
    let theta = res.state().get_param().unwrap()[0];
    assert!(theta.abs() < 1.0 && theta != 1.0, "θ₂ = {theta}");
    assert_eq!(res.state().get_func_counts()["gradient_count"], 2);
}

/// Relative damping (`DampingScale::GramTrace`, docs/math.md §3): `λ_k = μ·tr(G_k)/p`. On
/// `y = 2θ` (one parameter, `M = 1`) `G = 4`, so with μ = 10⁻³ the KV reports `damping`
/// = 4·10⁻³ and `damping_relative` = μ = 10⁻³, and the step is `δ = −(4 + 4μ)⁻¹·g`; with
/// the absolute scale `damping` = μ and no `damping_relative`. Every key a run reports is
/// documented in `NaturalGradient`'s KV table (`tests/observe.rs` checks the keys of runs
/// without relative damping).
#[test]
fn relative_damping_reports_its_setting_and_the_damping_it_used() {
    let run = |scale: DampingScale| {
        let w = WeightedL2::new(vec![1.0]).unwrap();
        let problem = FitProblem::new(
            LinearModel::dense(mat![[2.0]]).unwrap(),
            SquaredError::new(vec![1.0], w.clone()).unwrap(),
            w,
        )
        .unwrap();
        let ng = NaturalGradient::new()
            .with_damping(1e-3)
            .and_then(|s| s.with_linear_solver(LinearSolver::Cholesky))
            .and_then(|s| s.with_tolerances(Tolerances::NONE))
            .unwrap()
            .with_damping_scale(scale);
        let log = KvLog::default();
        let res = Executor::new(problem, ng)
            .configure(|s| s.param(vec![0.0]).max_iters(1))
            .add_observer(log.clone(), ObserverMode::Always)
            .run()
            .unwrap();
        (log.get().remove(0), res.state().get_param().unwrap()[0])
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-14 * b.abs();
    // g = Jᵀ(y − u) = 2·(0 − 1) = −2
    let (kv, theta) = run(DampingScale::GramTrace);
    assert!(close(float(&kv, "damping"), 4e-3), "{kv:?}");
    assert_eq!(float(&kv, "damping_relative"), 1e-3);
    assert!(close(theta, 2.0 / (4.0 + 4e-3)), "θ₁ = {theta}");
    let (kv, theta) = run(DampingScale::Absolute);
    assert_eq!(float(&kv, "damping"), 1e-3);
    assert!(kv.get("damping_relative").is_none(), "{kv:?}");
    assert!(close(theta, 2.0 / (4.0 + 1e-3)), "θ₁ = {theta}");
    let doc = include_str!("../src/solver.rs");
    for (key, _) in kv.keys() {
        assert!(
            doc.contains(&format!("/// | `{key}` |")),
            "KV key `{key}` undocumented"
        );
    }
    let (kv, _) = run(DampingScale::GramTrace);
    for (key, _) in kv.keys() {
        assert!(
            doc.contains(&format!("/// | `{key}` |")),
            "KV key `{key}` undocumented"
        );
    }
}

/// argmin's counters hold the run's evaluations only (`record_counts`: what the solver did
/// since it was called), also when the problem was evaluated before the run (here three
/// losses at θ₀ through `FitProblem::loss_at`). When `L(θ₀)` is already at argmin's target
/// cost, argmin stops before the first iteration, so `init` makes no step ahead
/// (`step::Ahead`: "not when argmin is about to stop"): it forms the loss at θ₀ and the
/// gradient there, nothing else — `cost_count = 2` (the loss, the linearisation),
/// `gradient_count = vjp_count = 1`, `jvp_count = 0` (a CG solve made ahead would count its
/// Gram products).
#[test]
fn a_run_counts_its_own_evaluations_only() {
    let cg = CgSettings {
        preconditioner: Preconditioner::None,
        ..CgSettings::default()
    };
    let ng = NaturalGradient::new()
        .with_linear_solver(LinearSolver::Cg(cg))
        .and_then(|s| s.with_tolerances(Tolerances::NONE))
        .unwrap();
    let problem = line();
    for _ in 0..3 {
        assert_eq!(problem.loss_at(&[0.0]).unwrap(), 0.5);
    }
    let res = Executor::new(problem, ng)
        .configure(|s| {
            s.param(vec![0.0])
                .max_iters(5)
                .target_cost(0.5)
                .counting(true)
        })
        .run()
        .unwrap();
    let state = res.state();
    assert_eq!(state.get_iter(), 0);
    let counts = state.get_func_counts();
    assert_eq!(counts["cost_count"], 2, "{counts:?}");
    assert_eq!(counts["gradient_count"], 1, "{counts:?}");
    assert_eq!(counts["vjp_count"], 1, "{counts:?}");
    assert_eq!(
        counts.get("jvp_count").copied().unwrap_or(0),
        0,
        "{counts:?}"
    );
}

/// `y = (θ, 0)`, `ℓ = ½‖y − (1, 1)‖²` in `M = I` given as a dense metric (no diagonal, so no
/// column cosine: the gradient test reads the plain solve, crate::stopping).
fn corner() -> FitProblem<LinearModel, SquaredError<DenseMetric>, DenseMetric> {
    let m = DenseMetric::new(mat![[1.0, 0.0], [0.0, 1.0]]).unwrap();
    FitProblem::new(
        LinearModel::dense(mat![[1.0], [0.0]]).unwrap(),
        SquaredError::new(vec![1.0, 1.0], m.clone()).unwrap(),
        m,
    )
    .unwrap()
}

/// The gradient test of crate::stopping, `c_k = √(g_kᵀ(G_k + λI)⁻¹g_k / (2|L_k|)) ≤ gtol`,
/// "read off the plain natural-gradient solve (`gᵀ(G + λI)⁻¹g = −gᵀδ/α`) … on steps that
/// are such a solve (the plain rule, and the first step of the momentum rules)". On
/// [`corner`] from θ₀ = 0 with α = ½ (`G = 1`, λ = 10⁻⁸ negligible): `θ_k = 1 − 2^{−k}`,
/// residual `(−2^{−k}, −1)`, `g_k = −2^{−k}`, so `c_k = √(g_k² / (g_k² + 1))`: `c₀ = 0.707`,
/// `c₁ = 0.447`, `c₂ = 0.243` (the cosine between the residual and the range `(1, 0)`).
/// - Plain, gtol = 0.75: fires at step 1; gtol = 0.5: at step 2, not before.
/// - Heavy ball (β = ½), gtol = 0.65: only its first step is a plain solve (`c₀ = 0.707`
///   does not fire); later steps are never tested by the gradient test (their
///   `−gᵀδ/α = g²/G − gβδ_{k−1}/α` is no `gᵀG⁻¹g`: 0.5 at step 2, whose "cosine" 0.632
///   would fire), so the run reaches `max_iters`.
#[test]
fn gradient_test_reads_the_plain_solve_only() {
    let run = |rule: StepRule, gtol: f64| {
        let ng = NaturalGradient::new()
            .with_step_size(0.5)
            .and_then(|s| s.with_linear_solver(LinearSolver::Cholesky))
            .and_then(|s| s.with_step_rule(rule))
            .and_then(|s| {
                s.with_tolerances(Tolerances {
                    cost: 0.0,
                    step: 0.0,
                    grad: gtol,
                })
            })
            .unwrap();
        let res = Executor::new(corner(), ng)
            .configure(|s| s.param(vec![0.0]).max_iters(4))
            .run()
            .unwrap();
        let state = res.state();
        (
            state.get_termination_reason().unwrap().clone(),
            state.get_iter(),
        )
    };
    let (reason, iters) = run(StepRule::Plain, 0.75);
    assert_eq!(
        (converged_by(&reason), iters),
        (Some("gradient"), 1),
        "{reason:?}"
    );
    let (reason, iters) = run(StepRule::Plain, 0.5);
    assert_eq!(
        (converged_by(&reason), iters),
        (Some("gradient"), 2),
        "{reason:?}"
    );
    let (reason, iters) = run(StepRule::HeavyBall { beta: 0.5 }, 0.65);
    assert_eq!((reason, iters), (TerminationReason::MaxItersReached, 4));
}
