//! Step control: Levenberg–Marquardt damping (acceptance 5), Armijo and log-grid line
//! searches, the step-norm cap.

mod common;

use common::runs::trajectory;
use natgrad::problems::toys;
use natgrad::{
    DampingRule, LevenbergMarquardt, LinearSolver, NaturalGradient, StepControl, StepRule,
};

fn plain(alpha: f64, lambda: f64) -> NaturalGradient {
    NaturalGradient::new()
        .with_step_size(alpha)
        .unwrap()
        .with_damping(lambda)
        .unwrap()
        .with_linear_solver(LinearSolver::Cholesky)
        .unwrap()
}

/// Distance of the toy's coefficients `c(θ)` to the target `c_u`: the non-L² loss is zero
/// exactly when `f(c) = f(c_u)`, i.e. at `c = c_u` (docs/math.md §4).
fn distance_to_target(theta: &[f64]) -> f64 {
    let mut c = [0.0; 2];
    toys::non_l2().problem.model().value_generic(theta, &mut c);
    ((c[0] - toys::TARGET[0]).powi(2) + (c[1] - toys::TARGET[1]).powi(2)).sqrt()
}

fn run_non_l2(solver: NaturalGradient, iters: u64) -> (Vec<Vec<f64>>, Vec<f64>, String) {
    let toy = toys::non_l2();
    trajectory(toy.problem, solver, &toy.theta0, iters)
}

#[test]
fn adaptive_damping_converges_where_fixed_zero_damping_diverges() {
    // Acceptance 5: plain NGD, α = 0.5, on the non-L² toy from θ₀.
    let (its, last, reason) = run_non_l2(plain(0.5, 0.0), 300);
    println!("fixed λ = 0: {} steps, θ = {last:?}, {reason}", its.len());
    assert!(
        reason.contains("SolverExit") && reason.contains("not finite"),
        "{reason}"
    );
    assert!(its.len() < 5, "diverges within a few steps");

    for rule in [StepRule::Plain, StepRule::HeavyBall { beta: 0.5 }] {
        let lm = plain(0.5, 1e-3)
            .with_adaptive_damping(1e-6, 1e6)
            .unwrap()
            .with_step_rule(rule)
            .unwrap();
        let (_, last, reason) = run_non_l2(lm, 300);
        let loss = toys::non_l2().problem.loss_at(&last).unwrap();
        let dist = distance_to_target(&last);
        println!("adaptive λ, {rule:?}: loss {loss:e}, ‖c(θ) − c_u‖ = {dist:e}, {reason}");
        // Nielsen's update (the default) gets there within 300 steps and stops by itself.
        assert!(
            reason.contains("MaxIters") || reason.contains("converged: "),
            "{reason}"
        );
        assert!(
            loss < 1e-10 && dist < 1e-5,
            "{rule:?}: loss {loss:e}, distance {dist:e}"
        );
    }
}

#[test]
fn levenberg_marquardt_update_follows_the_ratio() {
    let lm = LevenbergMarquardt {
        min: 1e-4,
        max: 10.0,
        rule: DampingRule::Threshold,
    };
    let u = lm.update(1.0, 2.0, 0.1, 1.0); // ρ = 0.1 < 1/4
    assert_eq!((u.damping, u.accepted), (1.5, true));
    let u = lm.update(1.0, 2.0, 0.9, 1.0); // ρ = 0.9 > 3/4
    assert_eq!((u.damping, u.accepted), (2.0 / 3.0, true));
    let u = lm.update(1.0, 2.0, 0.5, 1.0); // in between
    assert_eq!((u.damping, u.rho), (1.0, 0.5));
    let u = lm.update(9.0, 2.0, -1.0, 1.0); // loss went up: reject, grow, clip
    assert_eq!((u.damping, u.accepted), (10.0, false));
    let u = lm.update(1e-4, 2.0, 1.0, 1.0); // clipped below
    assert_eq!(u.damping, 1e-4);
    let u = lm.update(1.0, 2.0, f64::NEG_INFINITY, 1.0); // non-finite loss
    assert!(!u.accepted);
}

#[test]
fn nielsen_update_matches_hand_computed_values() {
    // Madsen–Nielsen–Tingleff 2004, eq. (3.16): accepted, λ ← λ·max(1/3, 1 − (2ρ − 1)³),
    // ν ← 2; rejected, λ ← λν, ν ← 2ν. Values by hand: 2ρ − 1 = −1, −½, 0, ½, 0.8, 0.9.
    let lm = LevenbergMarquardt::new(1e-6, 1e6);
    assert_eq!(lm.rule, DampingRule::Nielsen);
    for (rho, factor) in [
        (1e-9, 2.0),       // 1 − (−1)³ as ρ → 0
        (0.25, 1.125),     // 1 − (−1/8)
        (0.5, 1.0),        // 1 − 0
        (0.75, 0.875),     // 1 − 1/8
        (0.9, 0.488),      // 1 − 0.512
        (0.95, 1.0 / 3.0), // 1 − 0.729 = 0.271 < 1/3
        (1.0, 1.0 / 3.0),  // 1 − 1 = 0 < 1/3
    ] {
        // ν = 8 from earlier rejections: an accepted step resets it to 2.
        let u = lm.update(1.0, 8.0, rho, 1.0);
        assert!(u.accepted);
        assert_eq!(u.rho, rho);
        assert!(
            (u.damping - factor).abs() <= 1e-8,
            "ρ = {rho}: λ {}",
            u.damping
        );
        assert_eq!(u.nu, 2.0, "ρ = {rho}: ν resets on acceptance");
    }
    // Rejections in a row: λ = 1 → 2 → 8 → 64, ν = 2 → 4 → 8 → 16.
    let (mut lambda, mut nu) = (1.0, 2.0);
    for (l, n) in [(2.0, 4.0), (8.0, 8.0), (64.0, 16.0)] {
        let u = lm.update(lambda, nu, -0.5, 1.0);
        assert!(!u.accepted);
        assert_eq!((u.damping, u.nu), (l, n));
        (lambda, nu) = (u.damping, u.nu);
    }
    // ρ = 0 (a predicted decrease, the loss unchanged) is a rejection (accept iff ρ > 0).
    let u = lm.update(1.0, 4.0, 0.0, 1.0);
    assert_eq!((u.damping, u.nu, u.accepted), (4.0, 8.0, false));
    // A non-finite loss is a rejection; no predicted decrease leaves λ alone.
    let u = lm.update(1.0, 4.0, f64::NAN, 1.0);
    assert_eq!((u.damping, u.nu, u.accepted), (4.0, 8.0, false));
    let u = lm.update(3.0, 4.0, 0.5, 0.0);
    assert!(u.rho.is_nan());
    assert_eq!((u.damping, u.nu, u.accepted), (3.0, 2.0, true));
    // Clipped to the bounds.
    assert_eq!(lm.update(1e6, 2.0, -1.0, 1.0).damping, 1e6);
    assert_eq!(lm.update(1e-6, 2.0, 1.0, 1.0).damping, 1e-6);
}

#[test]
fn line_searches_decrease_the_loss_and_converge() {
    for control in [
        StepControl::armijo(),
        StepControl::LogGrid { max_halvings: 20 },
    ] {
        let s = plain(0.5, 0.0).with_step_control(control).unwrap();
        let (its, last, reason) = run_non_l2(s, 300);
        let problem = toys::non_l2().problem;
        let losses: Vec<f64> = its.iter().map(|t| problem.loss_at(t).unwrap()).collect();
        let start = problem.loss_at(&toys::THETA0).unwrap();
        assert!(
            losses[0] < start,
            "{control:?}: first step does not decrease"
        );
        assert!(
            losses.windows(2).all(|w| w[1] <= w[0]),
            "{control:?}: loss increased"
        );
        let dist = distance_to_target(&last);
        println!(
            "{control:?}: {} steps, ‖c(θ) − c_u‖ = {dist:e}, {reason}",
            its.len()
        );
        assert!(dist < 1e-8, "{control:?}: distance {dist:e}");
    }
}

#[test]
fn armijo_step_satisfies_sufficient_decrease() {
    // One step from θ₀: L(θ₁) ≤ L(θ₀) + c t g₀ᵀδ₀ with the plain step δ₀ = −α G⁻¹g₀, and
    // t = 1/2 would fail it or t is 1 (backtracking takes the largest admissible t).
    let toy = toys::non_l2();
    let c = 1e-4;
    let control = StepControl::Armijo {
        c,
        shrink: 0.5,
        max_halvings: 40,
    };
    let s = plain(0.5, 0.0).with_step_control(control).unwrap();
    let (its, _, _) = trajectory(toy.problem, s, &toy.theta0, 1);
    let problem = toys::non_l2().problem;
    let (l0, g0) = (
        problem.loss_at(&toy.theta0).unwrap(),
        problem.gradient_at(&toy.theta0).unwrap(),
    );
    let step: Vec<f64> = its[0].iter().zip(&toy.theta0).map(|(a, b)| a - b).collect();
    let gd: f64 = g0.iter().zip(&step).map(|(g, d)| g * d).sum();
    assert!(gd < 0.0);
    assert!(problem.loss_at(&its[0]).unwrap() <= l0 + c * gd);
    let twice: Vec<f64> = toy
        .theta0
        .iter()
        .zip(&step)
        .map(|(t, d)| t + 2.0 * d)
        .collect();
    assert!(
        problem.loss_at(&twice).unwrap() > l0 + c * 2.0 * gd,
        "t was not the largest"
    );
}

#[test]
fn step_norm_cap_bounds_every_step() {
    // On the quadratic manifold (K = diag(1, 10)), where plain NGD with α = 0.5 converges
    // (on the non-L² toy it is locally unstable at the minimiser: the L² metric
    // underestimates the loss curvature about 20-fold).
    let cap = 0.1;
    // Stopping tests off: the zero-residual toy would stop at a relative step of 1e-10,
    // before the loss reaches the 1e-20 checked here.
    let s = plain(0.5, 0.0)
        .with_max_step_norm(cap)
        .unwrap()
        .with_tolerances(natgrad::Tolerances::NONE)
        .unwrap();
    let toy = toys::quadratic_manifold();
    let (its, last, _) = trajectory(toy.problem, s, &toy.theta0, 500);
    let mut prev = toy.theta0.clone();
    let mut capped = 0;
    for t in &its {
        let len: f64 = t
            .iter()
            .zip(&prev)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(len <= cap * (1.0 + 1e-12), "step of length {len}");
        capped += usize::from(len >= cap * (1.0 - 1e-12));
        prev = t.clone();
    }
    let loss = toys::quadratic_manifold().problem.loss_at(&last).unwrap();
    println!("capped steps: {capped}, final loss {loss:e}");
    assert!(capped > 0, "the cap was never active");
    assert!(loss < 1e-20, "capped run converges: loss {loss:e}");
}

#[test]
fn a_rejected_momentum_step_restarts_the_momentum() {
    // Heavy ball (β = 0.3) with Levenberg–Marquardt damping and Armijo on the ε = 0.02
    // advection–diffusion PINN, m = 100. After the first (plain) step the transported
    // momentum term dominates, the step is no descent direction and is rejected. Were the
    // momentum memory kept, θ_k and the momentum term would be proposed again with only a
    // larger λ — which scales every term alike — and every later step would be rejected
    // too. With the restart the next step is plain natural gradient from θ_k.
    let case = natgrad::problems::pinn::advection_diffusion(0.02, 100, &[32, 32], 1.0).unwrap();
    let theta0 = case.problem.model().net().init_params(0);
    let e0 = case.errors(&theta0).unwrap().rel_l2;
    let solver = NaturalGradient::new()
        .with_step_rule(StepRule::HeavyBall { beta: 0.3 })
        .and_then(|s| s.with_linear_solver(LinearSolver::SampleCholesky))
        .and_then(|s| s.with_damping(1e-3))
        .and_then(|s| s.with_adaptive_damping(1e-9, 1e2))
        .and_then(|s| s.with_step_control(StepControl::armijo()))
        .unwrap();
    let (its, last, reason) = trajectory(case.problem.clone(), solver, &theta0, 60);
    let moved = its.windows(2).filter(|w| w[0] != w[1]).count();
    let e = case.errors(&last).unwrap().rel_l2;
    println!("relative L² error {e0:e} → {e:e}, {moved} of 59 steps moved, {reason}");
    assert!(moved >= 30, "only {moved} of 59 steps moved θ");
    assert!(e < 0.1 * e0, "error {e0:e} → {e:e}");
}
