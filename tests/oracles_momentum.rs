//! The step rules of docs/math.md §3 where the metric depends on θ: logistic regression
//! `v = σ(Aθ)` with cross-entropy and its Fisher metric `M(y) = diag(w/(v(1−v)))`
//! (`LossHessian`), against dense twins written by hand (`common::twin`), with a fixed step and
//! with both line searches (so that `t ≠ 1` and the memory `J_kδ_k`, `δ_k` is the step
//! actually taken). `tests/momentum.rs` runs the toys, whose metric is fixed.

mod common;

use argmin::core::State;
use common::rel_diff;
use common::runs::trajectory;
use common::twin::{
    axpby, check_mixed_gram_and_transport, gram, mat_t_vec, mat_vec, metric_times, rule_step,
    step_fraction, tight_cg, Design, Kind, LogisticModel,
};
use natgrad::{
    CrossEntropy, FitProblem, LinearSolver, LogitCrossEntropy, LossHessian, NaturalGradient,
    StepControl, StepRule,
};

/// Damping of every run here (the Fisher Gram of 8 samples is well conditioned with it).
const LAMBDA: f64 = 1e-3;
/// A start where `v = σ(Aθ)` ranges over about (0.02, 0.98): the metric changes by an
/// order of magnitude within a few steps.
const THETA0: [f64; 3] = [2.0, -2.0, 1.5];

type FisherProblem = FitProblem<LogisticModel, CrossEntropy, LossHessian>;

fn design() -> Design {
    Design::random(Kind::Logistic, 8, 3, 11)
}

fn problem(d: &Design) -> FisherProblem {
    let loss = CrossEntropy::weighted(d.u.clone(), d.w.clone()).unwrap();
    FitProblem::new(d.logistic_model(), loss, LossHessian).unwrap()
}

/// Every rule with coefficient β = 0.5; the lagged gradient's is −0.3 α (it multiplies a
/// gradient, as α does; with β > 0 it ascends, and here drives σ into saturation).
fn rules(alpha: f64) -> Vec<StepRule> {
    StepRule::NAMES
        .iter()
        .map(|n| match StepRule::from_name(n, 0.5).unwrap() {
            StepRule::LaggedGradient { .. } => StepRule::LaggedGradient { beta: -0.1 * alpha },
            r => r,
        })
        .collect()
}

/// Checks each iterate `θ_{k+1}` of a run against the twin applied to the run's own
/// `θ_k, θ_{k−1}`; returns the worst relative difference and the step fractions `t_k`.
fn check_steps(
    d: &Design,
    rule: StepRule,
    alpha: f64,
    control: StepControl,
    got: &[Vec<f64>],
) -> (f64, Vec<f64>) {
    let mut all = vec![THETA0.to_vec()];
    all.extend(got.iter().cloned());
    let (mut worst, mut fractions) = (0.0f64, vec![]);
    let at = |t: &[f64]| d.at(t);
    for k in 0..got.len() {
        let prev_delta = (k > 0).then(|| axpby(1.0, &all[k], -1.0, &all[k - 1]));
        let prev = prev_delta
            .as_ref()
            .map(|dp| (all[k - 1].as_slice(), dp.as_slice()));
        let delta = rule_step(&at, rule, alpha, LAMBDA, &all[k], prev);
        let g = d.at(&all[k]).g;
        let t = step_fraction(control, &|x| d.loss(x), &all[k], &g, &delta);
        let expected = axpby(1.0, &all[k], t, &delta);
        let e = rel_diff(&all[k + 1], &expected);
        assert!(
            e <= 1e-9,
            "{rule:?} {control:?}: step {}: {:?} vs twin {expected:?} ({e:e})",
            k + 1,
            all[k + 1]
        );
        worst = worst.max(e);
        fractions.push(t);
    }
    (worst, fractions)
}

#[test]
fn every_rule_matches_its_dense_twin_with_the_fisher_metric_and_line_searches() {
    let d = design();
    let mut worst = 0.0f64;
    // α = 2 with a line search: the full step overshoots the Newton-like step (α = 1 is
    // Fisher scoring), so the searches take t < 1.
    for (control, alpha) in [
        (StepControl::Fixed, 0.5),
        (StepControl::armijo(), 2.0),
        (StepControl::LogGrid { max_halvings: 6 }, 2.0),
    ] {
        for rule in rules(alpha) {
            for linear in [LinearSolver::Cholesky, tight_cg()] {
                let s = NaturalGradient::new()
                    .with_step_size(alpha)
                    .and_then(|s| s.with_damping(LAMBDA))
                    .and_then(|s| s.with_linear_solver(linear.clone()))
                    .and_then(|s| s.with_step_rule(rule))
                    .and_then(|s| s.with_step_control(control))
                    .unwrap();
                // 6 steps: after 7, plain NGD (α t = 1 is Fisher scoring) has converged,
                // the loss is flat to rounding along δ and the log grid's choice among
                // equal losses is decided by the last bit.
                let (got, _, reason) = trajectory(problem(&d), s, &THETA0, 6);
                assert_eq!(got.len(), 6, "{rule:?} {control:?}: stopped: {reason}");
                let (e, t) = check_steps(&d, rule, alpha, control, &got);
                worst = worst.max(e);
                if control != StepControl::Fixed && rule.uses_previous_outputs() {
                    // A step with t < 1 followed by a step that reads its memory.
                    assert!(
                        t[..t.len() - 1].iter().any(|&t| t < 1.0),
                        "{rule:?} {control:?}: t = 1 throughout ({t:?}); the test would not \
                         see the memory's scaling"
                    );
                }
            }
        }
    }
    println!("Fisher metric, 6 steps: worst relative difference to the twins {worst:e}");
}

#[test]
fn transport_and_mixed_gram_take_the_metric_at_the_current_iterate() {
    let d = design();
    let (theta_prev, theta) = (THETA0.to_vec(), vec![0.4, -0.3, 0.2]);
    let v = [0.8, -1.3, 0.5];
    let (pp, pk) = (d.at(&theta_prev), d.at(&theta));
    // G_{k,k−1} v = J_kᵀ M(y_k) J_{k−1} v; transport G_k⁻¹ G_{k,k−1} v.
    let jv = mat_vec(&pp.j, &v);
    let product = mat_t_vec(&pk.j, &metric_times(&pk, &jv));
    let transported = common::dense_solve(&gram(&pk, LAMBDA), &product);
    // The test can fail: with M(y_{k−1}) the product differs.
    let wrong = mat_t_vec(&pk.j, &metric_times(&pp, &jv));
    assert!(rel_diff(&wrong, &product) > 0.1);

    check_mixed_gram_and_transport(
        &problem(&d),
        (&theta, &theta_prev),
        &v,
        LAMBDA,
        (&product, &transported),
    );
}

#[test]
fn fisher_gram_operator_is_the_logistic_regression_fisher_matrix() {
    // For v = σ(Aθ), JᵀMJ = Aᵀ diag(w v(1 − v)) A: the classical Fisher information of
    // logistic regression, a formula that does not pass through M or J.
    let d = design();
    let theta = [0.7, -1.1, 0.4];
    let v: Vec<f64> = d.outputs_and_jacobian(&theta).0;
    let t = [0.3, 1.0, -0.6];
    let at: Vec<f64> = mat_vec(&d.a, &t);
    let weighted: Vec<f64> = (0..v.len())
        .map(|i| d.w[i] * v[i] * (1.0 - v[i]) * at[i])
        .collect();
    let expected = axpby(1.0, &mat_t_vec(&d.a, &weighted), LAMBDA, &t);
    let p = problem(&d);
    let mut lin = p.linearize(&theta).unwrap();
    let mut got = vec![0.0; 3];
    lin.gram(LAMBDA).apply_vec(&t, &mut got);
    let e = rel_diff(&got, &expected);
    assert!(e <= 1e-13, "Fisher Gram product: {e:e}");
    // The Jacobi diagonal `diag(G) + λ` of the same matrix.
    let diag = lin.gram_diagonal(LAMBDA).expect("diagonal metric, dense J");
    for (k, dk) in diag.iter().enumerate() {
        let expected: f64 = (0..v.len())
            .map(|i| d.w[i] * v[i] * (1.0 - v[i]) * d.a[(i, k)].powi(2))
            .sum::<f64>()
            + LAMBDA;
        assert!((dk - expected).abs() <= 1e-14 * expected, "diag {k}");
    }
}

#[test]
fn logistic_model_jacobian_matches_central_differences() {
    // The twin's own Jacobian, checked so that the oracle above rests on nothing unchecked.
    let d = design();
    let theta = [0.7, -1.1, 0.4];
    let (_, j) = d.outputs_and_jacobian(&theta);
    let h = 1e-6;
    for k in 0..3 {
        let shifted = |s: f64| {
            let mut t = theta.to_vec();
            t[k] += s;
            d.outputs_and_jacobian(&t).0
        };
        let fd = axpby(0.5 / h, &shifted(h), -0.5 / h, &shifted(-h));
        let col: Vec<f64> = (0..8).map(|i| j[(i, k)]).collect();
        assert!(rel_diff(&col, &fd) <= 1e-8, "column {k}");
    }
}

#[test]
fn every_rule_name_round_trips_with_its_coefficient() {
    let beta = 0.3;
    let expected = [
        ("gd", StepRule::GradientDescent, 0.0),
        ("plain", StepRule::Plain, 0.0),
        ("heavy_ball", StepRule::HeavyBall { beta }, beta),
        (
            "finite_difference",
            StepRule::FiniteDifference { beta },
            beta,
        ),
        ("lagged_gradient", StepRule::LaggedGradient { beta }, beta),
        ("nesterov", StepRule::Nesterov { beta }, beta),
        ("param_heavy_ball", StepRule::ParamHeavyBall { beta }, beta),
        ("param_nesterov", StepRule::ParamNesterov { beta }, beta),
    ];
    assert_eq!(StepRule::NAMES, expected.map(|(n, _, _)| n));
    for (name, rule, b) in expected {
        assert_eq!(StepRule::from_name(name, beta), Some(rule));
        assert_eq!((rule.name(), rule.beta()), (name, b));
    }
    assert_eq!(StepRule::from_name("xyzzy", beta), None);
}

#[test]
fn rules_cost_what_docs_math_says_under_mini_batches() {
    // Relative to Plain (docs/math.md §3): parameter heavy ball costs nothing more; the
    // output-space rules re-evaluate y_{k−1} on each new batch (one forward pass) and form
    // J_kᵀh (one vjp) from step 1 on; heavy ball also carries J_kδ_k (one jvp per step)
    // and re-evaluates it on a new batch (one more jvp). The same logistic regression on
    // its logits z = Aθ with `LogitCrossEntropy` (the same Fisher Gram): with fixed steps
    // α = 0.5 on batches of 4, σ(Aθ) rounds to exactly 1 within a few steps, where the
    // exact probability loss is infinite and the run rightly stops (tests/cross_entropy.rs).
    let d = design();
    let logits = || {
        FitProblem::new(
            natgrad::model::LinearModel::dense(d.a.clone()).unwrap(),
            LogitCrossEntropy::weighted(d.u.clone(), d.w.clone()).unwrap(),
            LossHessian,
        )
        .unwrap()
    };
    let (b, seed, steps) = (4, 5, 6u64);
    let mut batches = natgrad::batch::MiniBatch::new(b, seed).unwrap();
    let drawn: Vec<Vec<usize>> = (0..steps).map(|_| batches.draw(8).unwrap()).collect();
    let new_batches = drawn.windows(2).filter(|w| w[0] != w[1]).count() as u64;
    let counts = |rule| {
        let s = NaturalGradient::new()
            .with_step_size(0.5)
            .and_then(|s| s.with_damping(LAMBDA))
            .and_then(|s| s.with_linear_solver(LinearSolver::Cholesky))
            .and_then(|s| s.with_step_rule(rule))
            .and_then(|s| s.with_batch_size(b))
            // The stopping tests' jvp for J_kδ_k would be counted in every rule alike.
            .and_then(|s| s.with_tolerances(natgrad::Tolerances::NONE))
            .unwrap()
            .with_seed(seed);
        let res = argmin::core::Executor::new(logits(), s)
            .configure(|c| c.param(THETA0.to_vec()).max_iters(steps).counting(true))
            .run()
            .unwrap();
        let reason = res.state().get_termination_reason();
        assert_eq!(res.state().get_iter(), steps, "{rule:?}: {reason:?}");
        let c = res.state().get_func_counts().clone();
        [c["cost_count"], c["jvp_count"], c["vjp_count"]]
    };
    let [f, j, v] = counts(StepRule::Plain);
    assert_eq!(counts(StepRule::ParamHeavyBall { beta: 0.5 }), [f, j, v]);
    let fd = counts(StepRule::FiniteDifference { beta: 0.5 });
    assert_eq!(fd, [f + new_batches, j, v + steps - 1]);
    let hb = counts(StepRule::HeavyBall { beta: 0.5 });
    assert_eq!(
        hb,
        [f + new_batches, j + steps + new_batches, v + steps - 1]
    );
}
