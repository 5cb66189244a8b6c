//! Levenberg–Marquardt's reduction ratio and damping against the dense Gauss–Newton model
//! (docs/math.md §3, step control), and mini-batch steps at λ > 0 against a dense solve of
//! the system rescaled by `m/b` — both by hand (`common::twin`), on the logistic (Fisher)
//! and the linear least-squares problems.

mod common;

use argmin::core::{Executor, State};
use common::runs::trajectory;
use common::twin::{
    axpby, dot, gram, kv_float, mat_t_vec, mat_vec, recorded, rule_step, step_fraction, Design,
    Kind, LogisticModel,
};
use common::{dense_solve, gram_twin, matvec, rel_diff, rng, spd};
use faer::{Mat, MatMut};
use natgrad::batch::MiniBatch;
use natgrad::model::{ClosureModel, LinearModel};
use natgrad::{
    CrossEntropy, DampingRule, DampingScale, DenseMetric, Euclidean, FitProblem,
    LevenbergMarquardt, LinearSolver, Loss, LossHessian, Metric, Model, NaturalGradient,
    SquaredError, StepControl, StepRule, Tolerances, WeightedL2,
};

fn logistic(d: &Design) -> FitProblem<LogisticModel, CrossEntropy, LossHessian> {
    let loss = CrossEntropy::weighted(d.u.clone(), d.w.clone()).unwrap();
    FitProblem::new(d.logistic_model(), loss, LossHessian).unwrap()
}

fn linear(d: &Design) -> FitProblem<LinearModel, SquaredError<WeightedL2>, WeightedL2> {
    let w = WeightedL2::new(d.w.clone()).unwrap();
    let loss = SquaredError::new(d.u.clone(), w.clone()).unwrap();
    FitProblem::new(LinearModel::dense(d.a.clone()).unwrap(), loss, w).unwrap()
}

fn lm_solver(
    rule: StepRule,
    alpha: f64,
    lambda: f64,
    control: StepControl,
    damping_rule: DampingRule,
) -> NaturalGradient {
    let lm = LevenbergMarquardt {
        min: 1e-6,
        max: 1e3,
        rule: damping_rule,
    };
    NaturalGradient::new()
        .with_step_size(alpha)
        .and_then(|s| s.with_damping(lambda))
        .and_then(|s| s.with_linear_solver(LinearSolver::Cholesky))
        .and_then(|s| s.with_step_rule(rule))
        .and_then(|s| s.with_step_control(control))
        .and_then(|s| s.with_levenberg_marquardt(lm))
        .unwrap()
}

#[test]
fn lm_ratio_is_one_on_linear_least_squares_and_damping_shrinks_by_the_rules_factor() {
    // y = Aθ, ℓ = ½‖y − u‖²_W, M = W: the Gauss–Newton model m(tδ) = L + t gᵀδ +
    // ½t²‖Jδ‖²_M is the loss itself, so ρ = 1 for every step, whatever δ (momentum
    // included), λ and t. α = 2.5 with Armijo takes t = 1/2 (t = 1 overshoots).
    // At ρ = 1 the threshold rule multiplies λ by 2/3, Nielsen's by
    // max(1/3, 1 − (2·1 − 1)³) = max(1/3, 0) = 1/3.
    let d = Design::random(Kind::Linear, 20, 4, 5);
    let cases = [
        (StepRule::Plain, DampingRule::Threshold, 2.0 / 3.0),
        (
            StepRule::HeavyBall { beta: 0.5 },
            DampingRule::Threshold,
            2.0 / 3.0,
        ),
        (StepRule::Plain, DampingRule::Nielsen, 1.0 / 3.0),
        (
            StepRule::HeavyBall { beta: 0.5 },
            DampingRule::Nielsen,
            1.0 / 3.0,
        ),
    ];
    for (rule, damping_rule, factor) in cases {
        let s = lm_solver(rule, 2.5, 0.1, StepControl::armijo(), damping_rule);
        let steps = recorded(linear(&d), s, &[0.0; 4], 5);
        assert_eq!(steps.len(), 5);
        let mut lambda = 0.1;
        for (k, (_, kv)) in steps.iter().enumerate() {
            let rho = kv_float(kv, "lm_rho");
            assert!((rho - 1.0).abs() <= 1e-9, "{rule:?} step {k}: ρ = {rho}");
            let logged = kv_float(kv, "damping");
            assert!(
                (logged - lambda).abs() <= 1e-15 * lambda,
                "step {k}: λ {logged}"
            );
            lambda = (lambda * factor).max(1e-6);
        }
        let scales: Vec<f64> = steps
            .iter()
            .map(|(_, kv)| kv_float(kv, "step_scale"))
            .collect();
        assert!(scales.iter().any(|&t| t < 1.0), "{rule:?}: t = {scales:?}");
    }
}

/// What the damping (and Nielsen's ν) become after a step with ratio ρ (docs/math.md §3,
/// step control; Madsen–Nielsen–Tingleff 2004 eq. (3.16) for Nielsen's rule).
fn lm_update(rule: DampingRule, lambda: f64, nu: f64, rho: f64, increased: bool) -> (f64, f64) {
    let (factor, nu) = match rule {
        DampingRule::Threshold if increased || rho < 0.25 => (1.5, nu),
        DampingRule::Threshold if rho > 0.75 => (2.0 / 3.0, nu),
        DampingRule::Threshold => (1.0, nu),
        DampingRule::ThresholdNarrow if increased || rho < 0.25 => (1.5, nu),
        DampingRule::ThresholdNarrow if rho > 0.5 => (2.0 / 3.0, nu),
        DampingRule::ThresholdNarrow => (1.0, nu),
        DampingRule::Nielsen if increased => (nu, 2.0 * nu),
        DampingRule::Nielsen => {
            let c = 2.0 * rho - 1.0;
            ((1.0 - c * c * c).max(1.0 / 3.0), 2.0)
        }
    };
    ((lambda * factor).clamp(1e-6, 1e3), nu)
}

#[test]
fn lm_ratio_and_damping_follow_the_dense_gauss_newton_model_on_the_fisher_problem() {
    // Each step k: δ_k by the dense twin at the logged λ_k, t_k by the twin line search,
    // ρ_k = (L(θ_k) − L(θ_k + tδ)) / (−t gᵀδ − ½t² δᵀJᵀMJδ) with J, M = diag(w/(v(1−v)))
    // at θ_k; then θ_{k+1} (θ_k on a loss increase) and λ_{k+1} from ρ_k.
    let d = Design::random(Kind::Logistic, 8, 3, 11);
    let theta0 = [2.0, -2.0, 1.5];
    for damping_rule in [
        DampingRule::Threshold,
        DampingRule::ThresholdNarrow,
        DampingRule::Nielsen,
    ] {
        lm_follows_the_dense_model(&d, &theta0, damping_rule);
    }
}

fn lm_follows_the_dense_model(d: &Design, theta0: &[f64], damping_rule: DampingRule) {
    let (mut rejected, mut scaled, mut rhos) = (0, 0, vec![]);
    let mut doubled = false;
    for (alpha, control) in [(1.8, StepControl::Fixed), (2.0, StepControl::armijo())] {
        let s = lm_solver(StepRule::Plain, alpha, 1e-2, control, damping_rule);
        let steps = recorded(logistic(d), s, theta0, 10);
        let mut theta = theta0.to_vec();
        let (mut lambda, mut nu) = (1e-2, 2.0);
        for (k, (next, kv)) in steps.iter().enumerate() {
            // Nielsen's factor is continuous in ρ: equal to rounding of ρ.
            let logged = kv_float(kv, "damping");
            assert!(
                (logged - lambda).abs() <= 1e-12 * lambda,
                "step {k}: λ_k {logged} vs {lambda}"
            );
            let note = kv.get("line_search").and_then(|v| v.get_string());
            let expected_note = match control {
                StepControl::Fixed => "fixed",
                _ => "armijo",
            };
            assert_eq!(note.as_deref(), Some(expected_note), "step {k}");
            let at = |t: &[f64]| d.at(t);
            let delta = rule_step(&at, StepRule::Plain, alpha, lambda, &theta, None);
            let pt = d.at(&theta);
            let t = step_fraction(control, &|x| d.loss(x), &theta, &pt.g, &delta);
            let jd = mat_vec(&pt.j, &delta);
            let jd_m_sq: f64 = jd.iter().zip(&pt.m).map(|(j, m)| m * j * j).sum();
            let predicted = -(t * dot(&pt.g, &delta) + 0.5 * t * t * jd_m_sq);
            let proposed = axpby(1.0, &theta, t, &delta);
            let actual = pt.loss - d.loss(&proposed);
            let rho = actual / predicted;
            let logged = kv_float(kv, "lm_rho");
            // The actual decrease loses digits to cancellation near the minimum: rounding
            // of L (and of θ, equal to 1e-10 below) relative to the predicted decrease.
            let cancellation = 1e-10 * pt.loss / predicted.abs();
            assert!(
                (logged - rho).abs() <= 1e-8 * rho.abs().max(1.0) + cancellation,
                "step {k}: ρ {logged} vs dense model {rho} (L/pred = {:e})",
                pt.loss / predicted
            );
            let expected = if actual < 0.0 { &theta } else { &proposed };
            assert!(rel_diff(next, expected) <= 1e-10, "step {k}: θ_(k+1)");
            rejected += usize::from(actual < 0.0);
            scaled += usize::from(t < 1.0);
            rhos.push(rho);
            doubled |= actual < 0.0 && nu > 2.0;
            (lambda, nu) = lm_update(damping_rule, lambda, nu, rho, actual < 0.0);
            theta = next.clone();
        }
    }
    println!("{damping_rule:?}: ρ_k: {rhos:?}; {rejected} rejected, {scaled} with t < 1");
    // Every branch of the update was exercised and t ≠ 1 occurred.
    assert!(
        rejected > 0 && scaled > 0,
        "{rejected} rejected, {scaled} scaled"
    );
    match damping_rule {
        // A rejection after a rejection: ν was doubled.
        DampingRule::Nielsen => assert!(doubled, "ν-doubling not exercised"),
        DampingRule::Threshold => assert!(
            rhos.iter().any(|&r| r > 0.75) && rhos.iter().any(|&r| (0.25..=0.75).contains(&r))
        ),
        DampingRule::ThresholdNarrow => assert!(
            rhos.iter().any(|&r| r > 0.5) && rhos.iter().any(|&r| (0.25..=0.5).contains(&r))
        ),
    }
}

#[test]
fn mini_batch_steps_at_positive_damping_solve_the_rescaled_system() {
    // With λ > 0 the scaling m/b of loss and metric on the batch does not cancel:
    // ((m/b) J_IᵀW_IJ_I + λI) δ = −α (m/b) J_IᵀW_I∇… . Each step against the dense twin on
    // the batch the solver drew (same seed), previous outputs re-evaluated on it.
    let (m, b, seed, alpha, lambda) = (12, 4, 3, 0.5, 0.1);
    for kind in [Kind::Logistic, Kind::Linear] {
        let d = Design::random(kind, m, 3, 17);
        let theta0 = [0.5, -1.0, 0.8];
        for rule in [StepRule::Plain, StepRule::HeavyBall { beta: 0.5 }] {
            let s = NaturalGradient::new()
                .with_step_size(alpha)
                .and_then(|s| s.with_damping(lambda))
                .and_then(|s| s.with_linear_solver(LinearSolver::Cholesky))
                .and_then(|s| s.with_step_rule(rule))
                .and_then(|s| s.with_batch_size(b))
                .unwrap()
                .with_seed(seed);
            let got = match kind {
                Kind::Logistic => trajectory(logistic(&d), s, &theta0, 6).0,
                Kind::Linear => trajectory(linear(&d), s, &theta0, 6).0,
            };
            assert_eq!(got.len(), 6);
            let mut batches = MiniBatch::new(b, seed).unwrap();
            let mut all = vec![theta0.to_vec()];
            all.extend(got.iter().cloned());
            for k in 0..got.len() {
                let on = d.select(&batches.draw(m).unwrap());
                let at = |t: &[f64]| on.at(t);
                let dp = (k > 0).then(|| axpby(1.0, &all[k], -1.0, &all[k - 1]));
                let prev = dp.as_ref().map(|dp| (all[k - 1].as_slice(), dp.as_slice()));
                let delta = rule_step(&at, rule, alpha, lambda, &all[k], prev);
                let expected = axpby(1.0, &all[k], 1.0, &delta);
                let e = rel_diff(&all[k + 1], &expected);
                assert!(e <= 1e-10, "{kind:?} {rule:?} step {}: {e:e}", k + 1);
                if k == 0 {
                    // The test can fail: without the m/b the first step differs.
                    let mut unscaled = on.clone();
                    unscaled
                        .w
                        .iter_mut()
                        .for_each(|w| *w *= b as f64 / m as f64);
                    let pt = unscaled.at(&all[0]);
                    let rhs: Vec<f64> = pt.g.iter().map(|g| -alpha * g).collect();
                    let wrong = common::dense_solve(&gram(&pt, lambda), &rhs);
                    assert!(
                        rel_diff(&wrong, &delta) > 0.05,
                        "{kind:?}: scaling invisible"
                    );
                }
            }
        }
    }
}

#[test]
fn step_norm_cap_scales_the_dense_step_onto_the_cap() {
    // δ_k ← δ_k · min(1, c/‖δ_k‖₂) on plain natural gradient (Fisher metric): far from the
    // minimiser the step is longer than the cap and lands on it, near it the step is free.
    let d = Design::random(Kind::Logistic, 8, 3, 11);
    let (theta0, cap, lambda) = ([2.0, -2.0, 1.5], 0.5, 1e-3);
    let s = NaturalGradient::new()
        .with_damping(lambda)
        .and_then(|s| s.with_linear_solver(LinearSolver::Cholesky))
        .and_then(|s| s.with_max_step_norm(cap))
        .unwrap();
    let (got, _, _) = trajectory(logistic(&d), s, &theta0, 8);
    assert_eq!(got.len(), 8);
    let (mut capped, mut free) = (0, 0);
    let mut theta = theta0.to_vec();
    for (k, next) in got.iter().enumerate() {
        let delta = rule_step(&|t| d.at(t), StepRule::Plain, 1.0, lambda, &theta, None);
        let len = dot(&delta, &delta).sqrt();
        let scale = (cap / len).min(1.0);
        let expected = axpby(1.0, &theta, scale, &delta);
        assert!(rel_diff(next, &expected) <= 1e-12, "step {k}: ‖δ‖ = {len}");
        capped += usize::from(scale < 1.0);
        free += usize::from(scale == 1.0);
        theta = next.clone();
    }
    assert!(capped > 0 && free > 0, "{capped} capped, {free} free steps");
}

#[test]
fn lm_update_at_the_thresholds_and_without_predicted_decrease() {
    let lm = LevenbergMarquardt {
        min: 1e-4,
        max: 10.0,
        rule: DampingRule::Threshold,
    };
    // ρ = 1/4 and ρ = 3/4 exactly: neither "< 1/4" nor "> 3/4", λ stays.
    for actual in [0.25, 0.75] {
        let u = lm.update(1.0, 2.0, actual, 1.0);
        assert_eq!((u.rho, u.damping, u.accepted), (actual, 1.0, true));
    }
    // No predicted decrease: ρ is NaN, λ changes only if the loss went up.
    let u = lm.update(1.0, 2.0, 0.5, 0.0);
    assert!(u.rho.is_nan());
    assert_eq!((u.damping, u.accepted), (1.0, true));
    let u = lm.update(1.0, 2.0, -0.5, -1.0);
    assert_eq!((u.damping, u.accepted), (1.5, false));
    let u = lm.update(1.0, 2.0, f64::NAN, 1.0);
    assert_eq!((u.damping, u.accepted), (1.5, false));
    // The clip: 2/3 of the minimum stays at the minimum.
    assert_eq!(lm.update(1e-4, 2.0, 1.0, 1.0).damping, 1e-4);
}

#[test]
fn step_control_and_damping_bounds_refuse_the_open_interval_ends() {
    let armijo = |c, shrink| StepControl::Armijo {
        c,
        shrink,
        max_halvings: 3,
    };
    let ok = |s: StepControl| NaturalGradient::new().with_step_control(s).is_ok();
    for (c, shrink) in [
        (0.0, 0.5),
        (1.0, 0.5),
        (0.5, 0.0),
        (0.5, 1.0),
        (f64::NAN, 0.5),
    ] {
        assert!(!ok(armijo(c, shrink)), "c = {c}, shrink = {shrink}");
    }
    assert!(ok(armijo(0.5, 0.5)) && ok(armijo(1e-12, 1.0 - 1e-12)));
    let lm = |min, max| {
        NaturalGradient::new()
            .with_adaptive_damping(min, max)
            .is_ok()
    };
    assert!(lm(1e-3, 1e-3) && lm(1e-9, 1e9));
    for (min, max) in [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0), (1.0, f64::INFINITY)] {
        assert!(!lm(min, max), "[{min}, {max}]");
    }
}

#[test]
fn lm_update_accepts_an_unchanged_loss_unless_nielsen_sees_a_predicted_decrease() {
    // "A step that increases the loss (or makes it non-finite) is rejected": a loss that
    // stays exactly the same is not an increase. The threshold rule keeps it (ρ = 0 < ¼
    // grows λ by 3/2); Nielsen rejects it only through ρ = 0, so with no predicted
    // decrease (ρ undefined) the step stays and λ does not move.
    let threshold = LevenbergMarquardt {
        min: 1e-4,
        max: 10.0,
        rule: DampingRule::Threshold,
    };
    let u = threshold.update(1.0, 2.0, 0.0, 1.0);
    assert_eq!((u.rho, u.damping, u.accepted), (0.0, 1.5, true));
    let u = LevenbergMarquardt::new(1e-4, 10.0).update(1.0, 4.0, 0.0, 0.0);
    assert!(u.rho.is_nan());
    assert_eq!((u.damping, u.nu, u.accepted), (1.0, 2.0, true));
}

/// Runs two Cholesky steps with relative damping `μ` (`DampingScale::GramTrace`) and
/// returns what step 0 logged as λ and `θ₁`.
fn relative_first_step<Mo, Lo, Me>(
    problem: FitProblem<Mo, Lo, Me>,
    mu: f64,
    theta0: &[f64],
) -> (f64, Vec<f64>)
where
    Mo: Model + 'static,
    Lo: Loss + 'static,
    Me: Metric + 'static,
{
    let s = NaturalGradient::new()
        .with_damping(mu)
        .and_then(|s| s.with_linear_solver(LinearSolver::Cholesky))
        .and_then(|s| s.with_tolerances(Tolerances::NONE))
        .unwrap()
        .with_damping_scale(DampingScale::GramTrace);
    let steps = recorded(problem, s, theta0, 2);
    assert_eq!(steps.len(), 2);
    (kv_float(&steps[0].1, "damping"), steps[0].0.clone())
}

#[test]
fn relative_damping_is_mu_times_the_mean_gram_eigenvalue_or_the_rayleigh_quotient() {
    // DampingScale::GramTrace (docs/math.md §3): λ_k = μ·tr(G_k)/p when the metric is
    // diagonal, μ·‖J_k g_k‖²_M / ‖g_k‖² when it is not, and λ_k = μ when that scale is
    // zero. By hand on y = Aθ: G = AᵀMA, g = AᵀM(Aθ − u), θ₁ = θ₀ − (G + λI)⁻¹g.
    let (mu, theta0) = (0.05, [0.3, -0.2, 0.1]);
    let d = Design::random(Kind::Linear, 12, 3, 41);
    let pt = d.at(&theta0);
    let trace = (0..3).map(|i| gram(&pt, 0.0)[(i, i)]).sum::<f64>() / 3.0;
    let (lambda, theta1) = relative_first_step(linear(&d), mu, &theta0);
    assert!(
        (lambda - mu * trace).abs() <= 1e-14 * mu * trace,
        "λ {lambda} vs μ·tr(G)/p {}",
        mu * trace
    );
    let delta = dense_solve(&gram(&pt, mu * trace), &axpby(-1.0, &pt.g, 0.0, &pt.g));
    assert!(rel_diff(&theta1, &axpby(1.0, &theta0, 1.0, &delta)) <= 1e-12);

    // A dense SPD K (no diagonal): the Rayleigh quotient along g.
    let k = spd(&mut rng(42), 12, 0.5);
    let r = axpby(1.0, &matvec(&d.a, &theta0), -1.0, &d.u);
    let g = mat_t_vec(&d.a, &matvec(&k, &r));
    let ag = matvec(&d.a, &g);
    let rayleigh = dot(&ag, &matvec(&k, &ag)) / dot(&g, &g);
    let metric = DenseMetric::new(k.clone()).unwrap();
    let loss = SquaredError::new(d.u.clone(), metric.clone()).unwrap();
    let dense = FitProblem::new(LinearModel::dense(d.a.clone()).unwrap(), loss, metric).unwrap();
    let (lambda, theta1) = relative_first_step(dense, mu, &theta0);
    assert!(
        (lambda - mu * rayleigh).abs() <= 1e-13 * mu * rayleigh,
        "λ {lambda} vs μ·Rayleigh {}",
        mu * rayleigh
    );
    let g_mat = gram_twin(&d.a, &k, mu * rayleigh);
    let delta = dense_solve(&g_mat, &axpby(-1.0, &g, 0.0, &g));
    assert!(rel_diff(&theta1, &axpby(1.0, &theta0, 1.0, &delta)) <= 1e-12);

    // G = 0 (A = 0): the scale falls back to 1, λ = μ, and the step is δ = 0.
    let mut flat = d.clone();
    flat.a = Mat::zeros(12, 3);
    let (lambda, theta1) = relative_first_step(linear(&flat), mu, &theta0);
    assert_eq!((lambda, theta1), (mu, theta0.to_vec()));
}

#[test]
fn lm_stuck_at_its_maximum_damping_reports_the_models_predicted_decrease() {
    // y = θ with a Jacobian of the wrong sign (J = −I), ℓ = ½‖y − u‖², M = I: every step
    // δ = −(JᵀJ + λI)⁻¹g = r/(1 + λ), r = θ − u, moves away from u, so every step is
    // rejected and λ climbs to its maximum λ_max = 100. The model's predicted decrease
    // at λ is −(gᵀδ + ½‖Jδ‖²) = ‖r‖²/(1 + λ) − ½‖r‖²/(1 + λ)², i.e. the fraction
    // 2/(1 + λ) − 1/(1 + λ)² of the loss ½‖r‖² (by hand: 1.970e-2 at λ = 100).
    let u = vec![1.0, -2.0];
    let model = ClosureModel::new(
        2,
        2,
        |t: &[f64], y: &mut [f64]| y.copy_from_slice(t),
        |_: &[f64], mut j: MatMut<'_, f64>| {
            for i in 0..2 {
                for k in 0..2 {
                    j[(i, k)] = if i == k { -1.0 } else { 0.0 };
                }
            }
        },
    );
    let loss = SquaredError::new(u.clone(), Euclidean).unwrap();
    let problem = FitProblem::new(model, loss, Euclidean).unwrap();
    let theta0 = vec![0.5, 0.5];
    let s = NaturalGradient::new()
        .with_linear_solver(LinearSolver::Cholesky)
        .and_then(|s| s.with_damping(1e-3))
        .and_then(|s| s.with_adaptive_damping(1e-6, 100.0))
        .unwrap();
    let res = Executor::new(problem, s)
        .configure(|st| st.param(theta0.clone()).max_iters(100))
        .run()
        .unwrap();
    let reason = res
        .state()
        .get_termination_reason()
        .unwrap()
        .text()
        .to_string();
    let number_after = |key: &str| -> f64 {
        let rest = &reason[reason
            .find(key)
            .unwrap_or_else(|| panic!("{key}: {reason}"))
            + key.len()..];
        let end = rest.find([',', ')', ' ']).unwrap_or(rest.len());
        rest[..end]
            .parse()
            .unwrap_or_else(|e| panic!("{key} {:?}: {e}", &rest[..end]))
    };
    let half_r2 = 0.5 * ((0.5f64 - 1.0).powi(2) + (0.5f64 + 2.0).powi(2));
    let fraction = 2.0 / 101.0 - 1.0 / (101.0 * 101.0);
    assert!(
        reason.contains("stuck at its maximum damping λ = 1e2"),
        "{reason}"
    );
    assert_eq!(number_after("(loss "), half_r2, "{reason}");
    let predicted = number_after("predicted decrease ");
    assert!(
        (predicted - fraction * half_r2).abs() <= 1e-12 * predicted,
        "{reason}"
    );
    // The fraction of the loss, printed to two digits.
    assert!(
        reason.contains(&format!(", {fraction:.1e} of the loss")),
        "{reason}"
    );
    assert!(
        reason.contains("does not decrease the loss even when damped"),
        "{reason}"
    );
    assert_eq!(res.state().get_best_param().unwrap(), &theta0);
}
