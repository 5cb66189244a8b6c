//! Stopping tests (issue 14 items 8–9, issue 15 items 3–4): runs end by themselves with a
//! reason naming the test that fired, "converged" is true, a tolerance of 0 switches its
//! test off, and Levenberg–Marquardt stuck at its maximum damping says so.

mod common;

use argmin::core::{Executor, State, TerminationReason};
use common::runs::reason_text;
use faer::MatMut;
use natgrad::model::ClosureModel;
use natgrad::observe::Iterates;
use natgrad::problems::nist::{self, Certified};
use natgrad::{converged_by, Euclidean, FitProblem, LinearSolver, NaturalGradient, SquaredError};

struct Run {
    iters: u64,
    theta: Vec<f64>,
    reason: TerminationReason,
    /// Iterates θ_1, θ_2, … of the run.
    iterates: Vec<Vec<f64>>,
}

fn run(c: &Certified, start: &[f64], solver: NaturalGradient, max_iters: u64) -> Run {
    let rec = Iterates::default();
    let res = Executor::new(c.problem(), solver)
        .configure(|s| s.param(start.to_vec()).max_iters(max_iters))
        .add_observer(rec.clone(), argmin::core::observers::ObserverMode::Always)
        .run()
        .unwrap();
    Run {
        iters: res.state().get_iter(),
        theta: res.state().get_best_param().unwrap().clone(),
        reason: res.state().get_termination_reason().unwrap().clone(),
        iterates: rec.get(),
    }
}

/// Whether θ is a strict local minimum of the SSE: central second differences of the SSE
/// form a positive definite Hessian (Cholesky), and the gradient is small against it.
fn is_local_minimum(c: &Certified, theta: &[f64]) -> bool {
    let p = theta.len();
    let f = |d: &[(usize, f64)]| {
        let mut t = theta.to_vec();
        d.iter().for_each(|&(i, h)| t[i] += h);
        c.sse_at(&t)
    };
    let h: Vec<f64> = theta.iter().map(|t| 1e-4 * t.abs().max(1e-3)).collect();
    let mut hess = vec![vec![0.0; p]; p];
    for i in 0..p {
        for j in 0..p {
            hess[i][j] = (f(&[(i, h[i]), (j, h[j])])
                - f(&[(i, h[i]), (j, -h[j])])
                - f(&[(i, -h[i]), (j, h[j])])
                + f(&[(i, -h[i]), (j, -h[j])]))
                / (4.0 * h[i] * h[j]);
        }
    }
    // Cholesky by hand on a p ≤ 4 matrix: only its success matters here.
    let mut l = vec![vec![0.0; p]; p];
    for i in 0..p {
        for j in 0..=i {
            let s = hess[i][j] - (0..j).map(|k| l[i][k] * l[j][k]).sum::<f64>();
            if i == j {
                if s <= 0.0 {
                    return false;
                }
                l[i][i] = s.sqrt();
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    true
}

#[test]
fn certified_data_reproduce_the_certified_sse() {
    // Guards the typed-in data: the SSE at the certified minimiser is the certified SSE.
    for c in nist::all() {
        let rel = (c.sse_at(c.params) - c.sse).abs() / c.sse;
        assert!(rel < 1e-8, "{}: SSE at θ* off by {rel:e}", c.name);
    }
}

fn solvers() -> [(&'static str, NaturalGradient); 2] {
    [
        ("GN", NaturalGradient::new()),
        (
            "LM",
            NaturalGradient::new()
                .with_adaptive_damping(1e-12, 1e12)
                .unwrap(),
        ),
    ]
}

#[test]
fn certified_runs_stop_by_themselves_and_convergence_is_true() {
    // Acceptance of issue 14: with default settings a run that reaches the certified
    // minimiser ends by itself, within a few iterations of reaching it, with a reason
    // naming the test; a run that did not reach it never reports convergence (except at
    // another local minimum, which is a true convergence: checked by its Hessian).
    let mut solved = 0;
    for c in nist::all() {
        for start in c.starts {
            for (name, solver) in solvers() {
                let r = run(&c, start, solver, 1000);
                let test = converged_by(&r.reason);
                let d = c.digits(&r.theta);
                let sse_rel = (c.sse_at(&r.theta) - c.sse) / c.sse;
                let reached = r.iterates.iter().position(|t| c.digits(t) >= 6.0);
                let at = format!(
                    "{} {start:?} {name}: {} iters, {d:.1} digits, SSE rel {sse_rel:.1e}, {:?}",
                    c.name, r.iters, r.reason
                );
                println!("{at}");
                if let Some(k) = reached {
                    // Reached the minimiser at iteration k + 1: ends by a test soon after.
                    assert!(test.is_some(), "{at}");
                    assert!(r.iters <= k as u64 + 1 + 3, "{at}");
                    assert!(d >= 6.0 && sse_rel.abs() < 1e-10, "{at}");
                    solved += 1;
                } else if test.is_some() {
                    assert!(sse_rel > 1e-3 && is_local_minimum(&c, &r.theta), "{at}");
                }
            }
        }
    }
    // 24 runs; the failures are GN from far starts (BoxBOD diverges, Rat42 saturates,
    // Eckerle4 wanders off the peak), MGH09's far start, and GN from MGH09's near start
    // (another local minimum).
    assert!(
        solved >= 17,
        "{solved} of 24 runs reached the certified minimiser"
    );
}

#[test]
fn gaussian_peak_far_start_does_not_report_convergence() {
    // Issue 14.9: ‖g‖ ≤ 1e-6 reported "converged" at iteration 4 with SSE 0.70 (minimum
    // 1.46e-3). The former setter, now the scale-invariant test, and the defaults: no
    // convergence away from the minimiser.
    let c = nist::ECKERLE4;
    #[allow(deprecated)]
    let former = NaturalGradient::new()
        .with_gradient_tolerance(1e-6)
        .unwrap();
    for solver in [former, NaturalGradient::new()] {
        let r = run(&c, c.starts[0], solver, 300);
        let sse = c.sse_at(&r.theta);
        println!(
            "Eckerle4 far start: SSE {sse:e}, {} iters, {:?}",
            r.iters, r.reason
        );
        assert_ne!(r.reason, TerminationReason::SolverConverged);
        if converged_by(&r.reason).is_some() {
            assert!(
                (sse - c.sse).abs() < 1e-8 * c.sse,
                "SSE {sse:e}: {:?}",
                r.reason
            );
        }
    }
}

#[test]
fn solved_run_names_the_test_within_a_few_steps() {
    // Issue 14.8: a solved run used to spend ~980 of 1000 iterations rejecting rounding-
    // level steps. Misra1a from its near start: the minimiser to 6 digits at step 3.
    let c = nist::MISRA1A;
    for (name, solver) in solvers() {
        let r = run(&c, c.starts[1], solver, 1000);
        let test = converged_by(&r.reason);
        let text = r.reason.text().to_string();
        println!("{name}: {} iters, {text}", r.iters);
        assert_eq!(test, Some("relative reduction"), "{text}");
        assert!(text.contains("tolerance_cost 1e-12"), "{text}");
        assert!(r.iters <= 6, "{name}: {} iterations", r.iters);
        assert!(c.digits(&r.theta) >= 8.0);
    }
}

#[test]
fn zero_tolerances_switch_the_tests_off() {
    let c = nist::MISRA1A;
    let off = NaturalGradient::new()
        .with_tolerance_cost(0.0)
        .unwrap()
        .with_tolerance_step(0.0)
        .unwrap()
        .with_tolerance_grad(0.0)
        .unwrap();
    let r = run(&c, c.starts[1], off, 40);
    assert_eq!(r.reason, TerminationReason::MaxItersReached);
    // Each test alone fires, and is the one named.
    let only = |cost, step, grad| {
        NaturalGradient::new()
            .with_tolerances(natgrad::Tolerances { cost, step, grad })
            .unwrap()
    };
    for (solver, name) in [
        (only(1e-12, 0.0, 0.0), "relative reduction"),
        (only(0.0, 1e-10, 0.0), "relative step"),
        (only(0.0, 0.0, 1e-8), "gradient"),
    ] {
        let r = run(&c, c.starts[1], solver, 40);
        assert_eq!(converged_by(&r.reason), Some(name), "{:?}", r.reason);
        assert!(r.iters < 20);
    }
}

/// `y = σ(θ₀ + θ₁ x)` on x ∈ [0, 1] (10 points), target 1, squared error: at bias −800
/// the sigmoid and its derivative are exactly 0, so the gradient is exactly zero at loss
/// ½·10.
type Sigmoid = FitProblem<
    ClosureModel<
        Box<dyn Fn(&[f64], &mut [f64]) + Send + Sync>,
        Box<dyn Fn(&[f64], MatMut<'_, f64>) + Send + Sync>,
    >,
    SquaredError<Euclidean>,
    Euclidean,
>;

fn saturated_sigmoid() -> Sigmoid {
    let xs: Vec<f64> = (0..10).map(|i| i as f64 / 9.0).collect();
    let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
    let xv = xs.clone();
    let model = ClosureModel::new(
        2,
        10,
        Box::new(move |t: &[f64], y: &mut [f64]| {
            y.iter_mut()
                .zip(&xv)
                .for_each(|(y, x)| *y = sig(t[0] + t[1] * x));
        }) as Box<dyn Fn(&[f64], &mut [f64]) + Send + Sync>,
        Box::new(move |t: &[f64], mut j: MatMut<'_, f64>| {
            for (i, x) in xs.iter().enumerate() {
                let s = sig(t[0] + t[1] * x);
                j[(i, 0)] = s * (1.0 - s);
                j[(i, 1)] = s * (1.0 - s) * x;
            }
        }) as Box<dyn Fn(&[f64], MatMut<'_, f64>) + Send + Sync>,
    );
    let loss = SquaredError::new(vec![1.0; 10], Euclidean).unwrap();
    FitProblem::new(model, loss, Euclidean).unwrap()
}

#[test]
fn exactly_zero_gradient_at_high_loss_is_not_convergence() {
    // Issue 15.4: a saturated sigmoid (gradient exactly 0, loss 5) reported
    // `SolverConverged`, also with the gradient tolerance 0 whose docs say it disables the
    // test.
    let theta0 = vec![-800.0, 0.0];
    let cholesky = || {
        NaturalGradient::new()
            .with_linear_solver(LinearSolver::Cholesky)
            .unwrap()
    };
    let res = Executor::new(saturated_sigmoid(), cholesky())
        .configure(|s| s.param(theta0.clone()).max_iters(20))
        .run()
        .unwrap();
    let reason = res.state().get_termination_reason().unwrap();
    assert_ne!(reason, &TerminationReason::SolverConverged);
    assert_eq!(converged_by(reason), None);
    assert!(
        reason
            .text()
            .contains("gradient is exactly zero at loss 5e0")
            && reason.text().contains("LogitCrossEntropy"),
        "{reason:?}"
    );

    #[allow(deprecated)]
    let off = cholesky().with_gradient_tolerance(0.0).unwrap();
    let res = Executor::new(saturated_sigmoid(), off)
        .configure(|s| s.param(theta0.clone()).max_iters(20))
        .run()
        .unwrap();
    assert_eq!(
        res.state().get_termination_reason(),
        Some(&TerminationReason::MaxItersReached)
    );
}

#[test]
fn levenberg_marquardt_stuck_at_maximum_damping_says_so() {
    // Issue 15.3: y = exp(θ₀x) + θ₁, x = 0..50, target 1e10, adaptive damping in
    // [1e-6, 1e6]: every step overflows, λ reaches its cap, and the run used to end
    // `MaxItersReached` after 300 rejections with no word.
    let xs: Vec<f64> = (0..=50).map(f64::from).collect();
    let n = xs.len();
    let xv = xs.clone();
    let model = ClosureModel::new(
        2,
        n,
        move |t: &[f64], y: &mut [f64]| {
            y.iter_mut()
                .zip(&xv)
                .for_each(|(y, x)| *y = (t[0] * x).exp() + t[1]);
        },
        move |t: &[f64], mut j: MatMut<'_, f64>| {
            for (i, x) in xs.iter().enumerate() {
                j[(i, 0)] = x * (t[0] * x).exp();
                j[(i, 1)] = 1.0;
            }
        },
    );
    let loss = SquaredError::new(vec![1e10; n], Euclidean).unwrap();
    let problem = FitProblem::new(model, loss, Euclidean).unwrap();
    let theta0 = vec![0.0, 0.0];
    let lm = NaturalGradient::new()
        .with_linear_solver(LinearSolver::Cholesky)
        .unwrap()
        .with_adaptive_damping(1e-6, 1e6)
        .unwrap();
    let res = Executor::new(problem, lm)
        .configure(|s| s.param(theta0.clone()).max_iters(300))
        .run()
        .unwrap();
    let reason = reason_text(res.state());
    println!("{} iters: {reason}", res.state().get_iter());
    assert!(
        reason.contains("stuck at its maximum damping λ = 1e6"),
        "{reason}"
    );
    assert!(reason.contains("raise the upper bound"), "{reason}");
    assert!(res.state().get_iter() < 100);
    assert_eq!(res.state().get_best_param().unwrap(), &theta0);
}
