//! Cross-entropy that is honest at and beyond the ends of (0, 1) (issue 15 item 4).
//!
//! * `LogitCrossEntropy`: value, gradient and Hessian against dual-number derivatives
//!   (num-dual) of the definition `−u ln σ(z) − (1 − u) ln(1 − σ(z))`, and against its
//!   asymptotics at `|z| = 40, 800`, where `σ(z)` rounds to 1 or underflows.
//! * `CrossEntropy` on probabilities: exact (no clamp), loss and gradient consistent;
//!   predictions where the loss is infinite are a typed error at the start and a clean
//!   `SolverExit` naming the prediction and `LogitCrossEntropy` mid-run.
//! * The inputs: the identity link from θ₀ = (0, 1), a sigmoid saturated at bias
//!   ±40, ±800.

mod common;

use argmin::core::{ArgminError, Executor, State, TerminationReason};
use faer::MatMut;
use natgrad::model::ClosureModel;
use natgrad::stopping::converged_by;
use natgrad::{CrossEntropy, FitProblem, LogitCrossEntropy, Loss, LossHessian, NaturalGradient};
use num_dual::{second_derivative, Dual2_64, DualNum};

/// `ln(1 + e^x)` for a dual number, branch by the real part so that nothing overflows.
fn ln_one_plus_exp(x: Dual2_64) -> Dual2_64 {
    if x.re > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// The definition `−u ln σ(z) − (1 − u) ln(1 − σ(z))`, with `−ln σ(z) = ln(1 + e^{−z})`
/// and `−ln(1 − σ(z)) = ln(1 + e^{z})`.
fn term(z: Dual2_64, u: f64) -> Dual2_64 {
    ln_one_plus_exp(-z) * u + ln_one_plus_exp(z) * (1.0 - u)
}

/// `(ℓ, ℓ', ℓ'')` of one weighted term at `z`, by dual numbers.
fn by_duals(z: f64, u: f64, w: f64) -> [f64; 3] {
    let (f, d1, d2) = second_derivative(|z| term(z, u) * w, z);
    [f, d1, d2]
}

fn close(got: f64, expected: f64, tol: f64) -> bool {
    (got - expected).abs() <= tol * expected.abs() || (got == 0.0 && expected == 0.0)
}

#[test]
fn logit_loss_gradient_and_hessian_match_dual_numbers_at_every_scale() {
    let zs = [
        -800.0, -40.0, -36.9, -5.0, -0.3, 0.0, 0.7, 3.0, 36.9, 40.0, 800.0,
    ];
    let us = [0.0, 0.25, 1.0];
    let w = 0.3;
    for &u in &us {
        let loss = LogitCrossEntropy::weighted(vec![u; zs.len()], vec![w; zs.len()]).unwrap();
        let mut g = vec![0.0; zs.len()];
        let mut h = vec![0.0; zs.len()];
        loss.gradient(&zs, &mut g);
        assert!(loss.hessian_diagonal(&zs, &mut h));
        let mut hv = vec![0.0; zs.len()];
        let ones = vec![2.0; zs.len()];
        loss.hessian_apply(&zs, &ones, &mut hv).unwrap();
        let mut total = 0.0;
        for (i, &z) in zs.iter().enumerate() {
            let [f, d1, d2] = by_duals(z, u, w);
            total += f;
            let one = LogitCrossEntropy::weighted(vec![u], vec![w]).unwrap();
            assert!(
                close(one.value(&[z]), f, 1e-14),
                "ℓ({z}; u = {u}) {} vs {f}",
                one.value(&[z])
            );
            assert!(close(g[i], d1, 1e-14), "ℓ'({z}; u = {u}) {} vs {d1}", g[i]);
            assert!(close(h[i], d2, 1e-14), "ℓ''({z}; u = {u}) {} vs {d2}", h[i]);
            assert!(close(hv[i], 2.0 * d2, 1e-14), "Hessian product at {z}");
        }
        assert!(
            close(loss.value(&zs), total, 1e-14),
            "sum over outputs, u = {u}"
        );
    }
}

#[test]
fn logit_loss_keeps_its_relative_accuracy_where_the_sigmoid_rounds() {
    // Asymptotics, independent of both codes above: ln(1 + e^{−40}) = e^{−40}(1 − e^{−40}/2
    // + …), σ(−40) = e^{−40}/(1 + e^{−40}); at |z| = 800, e^{−800} is below the smallest
    // f64, so ℓ = 800 w exactly, the gradient ±w and the Hessian 0.
    let e40 = (-40.0f64).exp();
    let w = 0.5;
    let one = |u: f64| LogitCrossEntropy::weighted(vec![u], vec![w]).unwrap();
    let grad = |l: &LogitCrossEntropy, z: f64| {
        let mut g = [0.0];
        l.gradient(&[z], &mut g);
        g[0]
    };
    let hess = |l: &LogitCrossEntropy, z: f64| {
        let mut h = [0.0];
        l.hessian_diagonal(&[z], &mut h);
        h[0]
    };
    // Correct and confident: a tiny loss, not 0 (σ(40) rounds to 1).
    assert!(close(one(1.0).value(&[40.0]), w * e40, 1e-15));
    assert!(close(one(0.0).value(&[-40.0]), w * e40, 1e-15));
    assert!(close(grad(&one(1.0), 40.0), -w * e40, 1e-15));
    assert!(close(grad(&one(0.0), -40.0), w * e40, 1e-15));
    assert!(close(hess(&one(1.0), 40.0), w * e40, 1e-15));
    assert!(close(hess(&one(0.0), -40.0), w * e40, 1e-15));
    // Wrong and confident: loss w|z|, gradient ±w — never a zero gradient at a high loss.
    assert_eq!(one(0.0).value(&[800.0]), 800.0 * w);
    assert_eq!(one(1.0).value(&[-800.0]), 800.0 * w);
    assert!(close(one(0.0).value(&[40.0]), w * (40.0 + e40), 1e-15));
    assert_eq!(grad(&one(0.0), 800.0), w);
    assert_eq!(grad(&one(1.0), -800.0), -w);
    assert_eq!(hess(&one(0.0), 800.0), 0.0);
    // Soft label: the minimum is at z = logit(u), with value w·H(u) (the label's entropy).
    let u: f64 = 0.2;
    let z = (u / (1.0 - u)).ln();
    let entropy = -(u * u.ln() + (1.0 - u) * (1.0 - u).ln());
    assert!(close(one(u).value(&[z]), w * entropy, 1e-15));
    assert!(grad(&one(u), z).abs() <= 1e-16);
}

#[test]
fn probability_loss_is_exact_and_consistent_with_its_gradient() {
    // The former clamp at 1e-15 made the loss flat below it while its gradient was taken
    // at the clamped point: ℓ(1e-18) = ℓ(2e-18). Exactly, ℓ(v) − ℓ(2v) = w ln 2 for u = 1.
    let ce = CrossEntropy::weighted(vec![1.0], vec![0.5]).unwrap();
    let d = ce.value(&[1e-18]) - ce.value(&[2e-18]);
    assert!((d - 0.5 * 2f64.ln()).abs() < 1e-12, "ℓ(v) − ℓ(2v) = {d}");
    let mut g = [0.0];
    ce.gradient(&[1e-18], &mut g);
    assert!(close(g[0], -0.5e18, 1e-15), "{}", g[0]);
    // At the ends, with the matching label: 0 · ln 0 = 0, gradient w.
    let ce0 = CrossEntropy::weighted(vec![0.0], vec![0.5]).unwrap();
    assert_eq!(ce0.value(&[0.0]), 0.0);
    ce0.gradient(&[0.0], &mut g);
    assert_eq!(g[0], 0.5);
    assert!(ce0.check_outputs(&[0.0]).is_ok());
    // Where the loss is infinite, check_outputs says which output, why, and what to use.
    for (labels, v, why) in [
        (vec![0.0, 0.3], vec![0.5, 1.0], "saturated"),
        (vec![1.0, 1.0], vec![0.0, 0.5], "saturated"),
        (vec![0.0, 1.0], vec![0.5, 1.0 + 1e-9], "outside [0, 1]"),
        (vec![0.0, 1.0], vec![0.5, -1e-9], "outside [0, 1]"),
    ] {
        let ce = CrossEntropy::new(labels).unwrap();
        let i = v
            .iter()
            .position(|&x| x == 0.0 || !(0.0..1.0).contains(&x))
            .unwrap();
        assert_eq!(ce.value(&v), f64::INFINITY, "{v:?}");
        let e = ce.check_outputs(&v).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(why)
                && text.contains(&format!("output {i}"))
                && text.contains("LogitCrossEntropy"),
            "{text}"
        );
    }
}

/// `v = link(θ₀ + θ₁ x)` on the given points, with its Jacobian.
type Closure = ClosureModel<
    Box<dyn Fn(&[f64], &mut [f64]) + Send + Sync>,
    Box<dyn Fn(&[f64], MatMut<'_, f64>) + Send + Sync>,
>;

fn affine(xs: Vec<f64>, link: fn(f64) -> (f64, f64)) -> Closure {
    let xv = xs.clone();
    ClosureModel::new(
        2,
        xs.len(),
        Box::new(move |t: &[f64], y: &mut [f64]| {
            y.iter_mut()
                .zip(&xv)
                .for_each(|(y, x)| *y = link(t[0] + t[1] * x).0);
        }),
        Box::new(move |t: &[f64], mut j: MatMut<'_, f64>| {
            for (i, x) in xs.iter().enumerate() {
                let d = link(t[0] + t[1] * x).1;
                j[(i, 0)] = d;
                j[(i, 1)] = d * x;
            }
        }),
    )
}

fn identity(z: f64) -> (f64, f64) {
    (z, 1.0)
}

fn sigmoid(z: f64) -> (f64, f64) {
    let s = 1.0 / (1.0 + (-z).exp());
    (s, s * (1.0 - s))
}

/// `−Σ w (u ln v + (1 − u) ln(1 − v))` by hand, `0 · ln 0 = 0`, `+∞` outside [0, 1].
fn cross_entropy(v: &[f64], u: &[f64], w: f64) -> f64 {
    v.iter()
        .zip(u)
        .map(|(&v, &u)| {
            if !(0.0..=1.0).contains(&v) {
                return f64::INFINITY;
            }
            let a = if u > 0.0 { -u * v.ln() } else { 0.0 };
            let b = if u < 1.0 {
                -(1.0 - u) * (1.0 - v).ln()
            } else {
                0.0
            };
            w * (a + b)
        })
        .sum()
}

#[test]
fn identity_link_run_keeps_predictions_in_range_and_reports_the_true_loss() {
    // Issue input: v = θ₀ + θ₁ x (identity link) from θ₀ = (0, 1), predictions at exactly
    // 0 and 1. The clamped loss let θ run to ±1e15 with a reported loss of 1e-15.
    let xs = vec![0.0, 0.25, 0.5, 0.75, 1.0];
    let u = vec![0.0, 0.0, 1.0, 1.0, 1.0];
    let w = 1.0 / xs.len() as f64;
    let make = || {
        FitProblem::new(
            affine(xs.clone(), identity),
            CrossEntropy::new(u.clone()).unwrap(),
            LossHessian,
        )
        .unwrap()
    };
    for (name, solver) in [
        ("fixed step", NaturalGradient::new()),
        (
            "adaptive damping",
            NaturalGradient::new()
                .with_adaptive_damping(1e-8, 1e8)
                .unwrap(),
        ),
    ] {
        let res = Executor::new(make(), solver)
            .configure(|s| s.param(vec![0.0, 1.0]).max_iters(200))
            .run()
            .unwrap();
        let theta = res.state().get_best_param().unwrap().clone();
        let v: Vec<f64> = xs.iter().map(|x| theta[0] + theta[1] * x).collect();
        let cost = res.state().get_best_cost();
        let reason = res.state().get_termination_reason().unwrap().clone();
        assert!(
            theta.iter().all(|t| t.abs() < 10.0),
            "{name}: θ = {theta:?}"
        );
        let truth = cross_entropy(&v, &u, w);
        assert!(truth.is_finite(), "{name}: predictions {v:?}");
        assert!(
            (cost - truth).abs() <= 1e-12 * truth.max(1e-300),
            "{name}: reported {cost:e} vs true {truth:e}"
        );
        // (0, 1) is the minimiser over the θ whose predictions are probabilities
        // (θ₀ ≥ 0, θ₀ + θ₁ ≤ 1): there g = (−0.4, −0.5333) by hand, and gᵀd ≥ 0.1333 d₀ ≥ 0
        // for every feasible direction d (d₀ ≥ 0, d₀ + d₁ ≤ 0). No run may report less.
        let least = cross_entropy(&xs, &u, w);
        assert!(
            truth >= least * (1.0 - 1e-12),
            "{name}: {truth:e} < {least:e}"
        );
        // A run that ends early names the loss's domain and the logit loss.
        if converged_by(&reason).is_none() && reason != TerminationReason::MaxItersReached {
            let text = reason.text();
            assert!(
                text.contains("CrossEntropy") && text.contains("LogitCrossEntropy"),
                "{name}: {text}"
            );
        }
        println!("{name}: θ = {theta:?}, loss {cost:e}, {reason:?}");
    }
}

/// Ten points on [0, 1] with soft labels `0.2 + 0.6 x`: logistic regression with a finite
/// minimiser, where the fitted logit is `θ₀ + θ₁ x`.
fn soft_data() -> (Vec<f64>, Vec<f64>) {
    let xs: Vec<f64> = (0..10).map(|i| i as f64 / 9.0).collect();
    let u = xs.iter().map(|x| 0.2 + 0.6 * x).collect();
    (xs, u)
}

#[test]
fn saturated_sigmoid_probabilities_are_a_typed_error_naming_the_logit_loss() {
    // Issue input: a sigmoid output saturated by its bias. At bias 40 σ rounds to exactly
    // 1, at −800 to exactly 0; against soft labels the loss is +∞ there, and the clamped
    // loss had a zero gradient at a high loss and reported convergence.
    let (xs, u) = soft_data();
    for bias in [40.0, -800.0] {
        let pb = FitProblem::new(
            affine(xs.clone(), sigmoid),
            CrossEntropy::new(u.clone()).unwrap(),
            LossHessian,
        )
        .unwrap();
        let err = Executor::new(pb, NaturalGradient::new())
            .configure(|s| s.param(vec![bias, 0.0]).max_iters(20))
            .run()
            .err()
            .expect("a saturated start is an input error");
        let text = match err.downcast_ref::<ArgminError>() {
            Some(ArgminError::InvalidParameter { text }) => text.clone(),
            other => panic!("bias {bias}: {other:?}"),
        };
        assert!(
            text.contains("saturated") && text.contains("LogitCrossEntropy"),
            "bias {bias}: {text}"
        );
    }
}

/// The minimiser of the convex loss `Σ w ℓ(θ₀ + θ₁ x_i; u_i)` by Newton's method written
/// here (2×2 solves by Cramer's rule, from θ = 0 where σ is well conditioned), with the
/// loss there by the definition.
fn newton_minimiser(xs: &[f64], u: &[f64]) -> ([f64; 2], f64) {
    let w = 1.0 / xs.len() as f64;
    let mut t = [0.0; 2];
    for _ in 0..50 {
        let (mut g, mut h) = ([0.0; 2], [[0.0; 2]; 2]);
        for (x, u) in xs.iter().zip(u) {
            let (s, ds) = sigmoid(t[0] + t[1] * x);
            let f = [1.0, *x];
            for a in 0..2 {
                g[a] += w * (s - u) * f[a];
                for b in 0..2 {
                    h[a][b] += w * ds * f[a] * f[b];
                }
            }
        }
        let det = h[0][0] * h[1][1] - h[0][1] * h[1][0];
        t[0] -= (h[1][1] * g[0] - h[0][1] * g[1]) / det;
        t[1] -= (h[0][0] * g[1] - h[1][0] * g[0]) / det;
    }
    let v: Vec<f64> = xs.iter().map(|x| sigmoid(t[0] + t[1] * x).0).collect();
    (t, cross_entropy(&v, u, w))
}

#[test]
fn logit_loss_fits_from_saturated_starts_and_converges_honestly() {
    // The same data on the logits z = θ₀ + θ₁ x: from biases where σ rounds to 0 or 1 (and
    // at ±800 where its derivative underflows) the gradient is ±w per sample, never 0,
    // and Levenberg–Marquardt reaches the minimiser of the convex loss (Newton's, written
    // above) to the accuracy its stopping test claims (relative reduction 1e-12), and
    // reports the loss at the returned θ.
    let (xs, u) = soft_data();
    let (best, least) = newton_minimiser(&xs, &u);
    for bias in [-800.0, -40.0, 40.0, 800.0] {
        let pb = FitProblem::new(
            affine(xs.clone(), identity),
            LogitCrossEntropy::new(u.clone()).unwrap(),
            LossHessian,
        )
        .unwrap();
        let solver = NaturalGradient::new()
            .with_adaptive_damping(1e-8, 1e8)
            .unwrap();
        let res = Executor::new(pb, solver)
            .configure(|s| s.param(vec![bias, 0.0]).max_iters(300))
            .run()
            .unwrap();
        let theta = res.state().get_best_param().unwrap().clone();
        let reason = res.state().get_termination_reason().unwrap();
        assert!(converged_by(reason).is_some(), "bias {bias}: {reason:?}");
        let w = 1.0 / xs.len() as f64;
        let v: Vec<f64> = xs
            .iter()
            .map(|x| sigmoid(theta[0] + theta[1] * x).0)
            .collect();
        let truth = cross_entropy(&v, &u, w);
        let cost = res.state().get_best_cost();
        assert!(
            close(cost, truth, 1e-12),
            "bias {bias}: {cost:e} vs {truth:e}"
        );
        assert!(
            truth - least <= 1e-11 * least,
            "bias {bias}: gap {:e}",
            truth - least
        );
        let dist = (theta[0] - best[0]).abs().max((theta[1] - best[1]).abs());
        assert!(dist <= 1e-4, "bias {bias}: θ = {theta:?} vs {best:?}");
        println!(
            "bias {bias}: θ = {theta:?} (|θ − θ*| = {dist:.1e}), loss gap {:.1e}, {} iters",
            truth - least,
            res.state().get_iter()
        );
    }
}

#[test]
fn ggn_inverse_refuses_a_hessian_that_underflowed() {
    // At |z| = 800 the logit loss's Hessian w σ(z)σ(−z) is 0 in f64: the LossHessian metric has
    // no inverse there (the sample-space direction needs one), an error, not ∞ entries.
    use natgrad::metric::{Metric, OutputPoint};
    let loss = LogitCrossEntropy::new(vec![0.0, 1.0]).unwrap();
    let z = [0.5, 800.0];
    let at = OutputPoint {
        outputs: &z,
        loss: &loss,
    };
    let mut out = [0.0; 2];
    let e = LossHessian.solve(&at, &[1.0, 1.0], &mut out).unwrap_err();
    assert!(matches!(e, natgrad::Error::IndefiniteMetric { .. }), "{e}");
    assert!(e.to_string().contains("output 1"), "{e}");
    // Where it is positive, M⁻¹v = v / (w σ(z)σ(−z)).
    let z = [0.5, -2.0];
    let at = OutputPoint {
        outputs: &z,
        loss: &loss,
    };
    LossHessian.solve(&at, &[1.0, 3.0], &mut out).unwrap();
    let expected: Vec<f64> = [(0.5, 1.0), (-2.0, 3.0)]
        .iter()
        .map(|&(z, v)| {
            let s = sigmoid(z).0;
            v / (0.5 * s * (1.0 - s))
        })
        .collect();
    assert!(
        common::rel_diff(&out, &expected) <= 1e-14,
        "{out:?} vs {expected:?}"
    );
}

#[test]
fn both_cross_entropies_have_the_size_of_their_labels() {
    // A loss on 3 labels with a model of 2 outputs is a size error at FitProblem::new (a
    // loss without a fixed size would accept it, and index past its labels later).
    let labels = vec![0.0, 0.5, 1.0];
    let model = || affine(vec![0.0, 1.0], identity);
    let ce = CrossEntropy::new(labels.clone()).unwrap();
    let logit = LogitCrossEntropy::new(labels).unwrap();
    assert_eq!((ce.dim(), logit.dim()), (Some(3), Some(3)));
    for e in [
        FitProblem::new(model(), ce, LossHessian).err(),
        FitProblem::new(model(), logit, LossHessian).err(),
    ] {
        assert!(
            matches!(
                e,
                Some(natgrad::Error::DimensionMismatch {
                    expected: 2,
                    found: 3,
                    ..
                })
            ),
            "{e:?}"
        );
    }
}
