//! Deep Ritz energy losses (issue 16, *Energy losses*): the density's channel gradient and
//! Hessian through num-dual against hand derivations, the energy's Gram against the
//! H¹-seminorm Gram of a dense twin, energy natural gradient against the exact minimiser,
//! and the failures (indefinite Hessian: clean exit; misuse: typed errors).

mod common;

use argmin::core::{Executor, State, TerminationReason};
use common::taylor_ref::{channels_by_duals, Act};
use common::{rng, vec};
use faer::Mat;
use faer::Par;
use natgrad::gram::{dense_gram, dense_jacobian};
use natgrad::model::{ChannelSet, Smooth, TaylorMlp};
use natgrad::pde::{
    energy_derivatives, gauss_legendre_3, DualNum, EnergyDensity, EnergyTerm, Fields, Point,
    RitzModel,
};
use natgrad::{Error, LinearSolver, Model, NaturalGradient, StepControl};
use num_dual::Dual64;
use rand::Rng;
use std::f64::consts::PI;

fn at(x: &[f64]) -> Point<'_> {
    Point {
        x,
        normal: &[],
        data: &[],
        index: 0,
    }
}

/// `e = ½|∇u|² + ¼u⁴ − f u` in 2D, `f = x₀ + 2x₁`.
struct Quartic;
impl EnergyDensity for Quartic {
    fn density<D: DualNum<Primitive = f64> + Copy>(&self, p: &Point, u: &Fields<D>) -> D {
        let f = p.x[0] + 2.0 * p.x[1];
        (u.dx(0, 0).powi(2) + u.dx(0, 1).powi(2)) * 0.5 + u.u(0).powi(4) * 0.25 - u.u(0) * f
    }
}

/// `e = (u₀ ∂₀u₀)² + u₀ u₁ + ½ (∂₀u₁)²`: off-diagonal and cross-output entries.
struct Coupled;
impl EnergyDensity for Coupled {
    fn density<D: DualNum<Primitive = f64> + Copy>(&self, _: &Point, u: &Fields<D>) -> D {
        (u.u(0) * u.dx(0, 0)).powi(2) + u.u(0) * u.u(1) + u.dx(1, 0).powi(2) * 0.5
    }
}

#[test]
fn density_gradient_and_hessian_match_the_hand_derivation() {
    let mut r = rng(3);
    let set = ChannelSet::value(2).with_gradient();
    for _ in 0..20 {
        let c = vec(&mut r, 3);
        let x = [r.random_range(-1.0..1.0), r.random_range(-1.0..1.0)];
        let (e, g, h) = energy_derivatives(&Quartic, &at(&x), &c, 1, &set).unwrap();
        let (u, ux, uy, f) = (c[0], c[1], c[2], x[0] + 2.0 * x[1]);
        let e_hand = 0.5 * (ux * ux + uy * uy) + 0.25 * u.powi(4) - f * u;
        let g_hand = [u.powi(3) - f, ux, uy];
        let h_hand = [3.0 * u * u, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        assert!((e - e_hand).abs() <= 1e-12 * (1.0 + e_hand.abs()));
        for (a, b) in g.iter().zip(&g_hand).chain(h.iter().zip(&h_hand)) {
            assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
    // Two outputs, channels (u, ∂₀u) each, at c·q + o: [u₀, u₁, a₀ = ∂₀u₀, a₁ = ∂₀u₁].
    let set = ChannelSet::value(1).with_gradient();
    for _ in 0..20 {
        let c = vec(&mut r, 4);
        let (_, g, h) = energy_derivatives(&Coupled, &at(&[0.3]), &c, 2, &set).unwrap();
        let (u0, u1, a0, a1) = (c[0], c[1], c[2], c[3]);
        let g_hand = [2.0 * u0 * a0 * a0 + u1, u0, 2.0 * u0 * u0 * a0, a1];
        #[rustfmt::skip]
        let h_hand = [
            2.0 * a0 * a0,       1.0, 4.0 * u0 * a0,  0.0,
            1.0,                 0.0, 0.0,            0.0,
            4.0 * u0 * a0,       0.0, 2.0 * u0 * u0,  0.0,
            0.0,                 0.0, 0.0,            1.0,
        ];
        for (a, b) in g.iter().zip(&g_hand).chain(h.iter().zip(&h_hand)) {
            assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}

/// `e = ½|∇u|² − f u` in 2D.
struct Dirichlet2d;
impl EnergyDensity for Dirichlet2d {
    fn density<D: DualNum<Primitive = f64> + Copy>(&self, p: &Point, u: &Fields<D>) -> D {
        (u.dx(0, 0).powi(2) + u.dx(0, 1).powi(2)) * 0.5 - u.u(0) * p.x[0].sin()
    }
}

#[test]
fn energy_gram_is_the_h1_seminorm_gram_of_a_dense_twin() {
    let widths = vec![2, 5, 4, 1];
    let m = 7;
    let mut r = rng(5);
    let pts = Mat::from_fn(2, m, |_, _| r.random_range(-1.0..1.0));
    let weights: Vec<f64> = (0..m).map(|_| r.random_range(0.1..1.0)).collect();
    let set = ChannelSet::value(2).with_gradient();
    let term = EnergyTerm::new(
        "interior",
        pts.as_ref(),
        weights.clone(),
        set.clone(),
        Dirichlet2d,
    );
    let net =
        TaylorMlp::with_activation(widths.clone(), std::sync::Arc::new(Smooth::Tanh)).unwrap();
    let problem = RitzModel::new(net, vec![term])
        .unwrap()
        .into_problem()
        .unwrap();
    let p = problem.n_params();
    let theta = vec(&mut r, p);
    // The twin: ∂c/∂θ by dual numbers through an independent network, one θ_j at a time.
    let mut twin = Mat::zeros(3 * m, p);
    for j in 0..p {
        let th: Vec<Dual64> = theta
            .iter()
            .enumerate()
            .map(|(k, &t)| Dual64::new(t, if k == j { 1.0 } else { 0.0 }))
            .collect();
        for i in 0..m {
            let xi = [pts[(0, i)], pts[(1, i)]];
            let ch = channels_by_duals(&widths, Act::Builtin(Smooth::Tanh), &th, &xi, &set);
            for (kk, c) in ch.iter().enumerate() {
                twin[(3 * i + kk, j)] = c.eps;
            }
        }
    }
    // H¹-seminorm Gram: Σ_i w_i (∇_θ∂₀u ∇_θ∂₀uᵀ + ∇_θ∂₁u ∇_θ∂₁uᵀ).
    let want = Mat::from_fn(p, p, |a, b| {
        (0..m)
            .map(|i| {
                weights[i]
                    * (1..3)
                        .map(|k| twin[(3 * i + k, a)] * twin[(3 * i + k, b)])
                        .sum::<f64>()
            })
            .sum::<f64>()
    });
    let mut lin = problem.linearize(&theta).unwrap();
    let mut model_lin = problem.model().linearize(&theta).unwrap();
    let (jac, _) = dense_jacobian(&mut model_lin, 3 * m);
    let got = dense_gram(jac.as_ref(), problem.metric(), &lin.point(), 0.0, Par::Seq).unwrap();
    let scale = want.norm_max();
    assert!((&got - &want).norm_max() <= 1e-10 * scale, "dense Gram");
    // Matrix-free: Jᵀ H J v through jvp, the LossHessian metric and vjp.
    let v = vec(&mut r, p);
    let (mut jv, mut hjv, mut g) = (vec![0.0; 3 * m], vec![0.0; 3 * m], vec![0.0; p]);
    lin.jvp(&v, &mut jv);
    lin.apply_metric(&jv, &mut hjv);
    lin.vjp(&hjv, &mut g);
    let gv = common::matvec(&want, &v);
    let err = g
        .iter()
        .zip(&gv)
        .fold(0.0f64, |s, (a, b)| s.max((a - b).abs()));
    assert!(err <= 1e-10 * scale * v.iter().fold(0.0f64, |s, x| s.max(x.abs())) * p as f64);
    // The gradient: Σ_i w_i (∇u·∇_θ∇u − f ∇_θu).
    let grad = lin.gradient();
    let ch0: Vec<Vec<f64>> = (0..m)
        .map(|i| {
            channels_by_duals(
                &widths,
                Act::Builtin(Smooth::Tanh),
                &theta,
                &[pts[(0, i)], pts[(1, i)]],
                &set,
            )
        })
        .collect();
    for a in 0..p {
        let want_a: f64 = (0..m)
            .map(|i| {
                let c = &ch0[i];
                weights[i]
                    * (c[1] * twin[(3 * i + 1, a)] + c[2] * twin[(3 * i + 2, a)]
                        - pts[(0, i)].sin() * twin[(3 * i, a)])
            })
            .sum();
        assert!(
            (grad[a] - want_a).abs() <= 1e-10 * (1.0 + want_a.abs()),
            "gradient {a}"
        );
    }
}

/// Composite 3-point Gauss–Legendre rule on (−1, 1) with `cells` cells.
fn gauss(cells: usize) -> (Mat<f64>, Vec<f64>) {
    gauss_legendre_3(-1.0, 1.0, cells).expect("a valid interval")
}

/// The example: E(v) = ∫ ½v'² + ¼v⁴ − f v on (−1, 1), f = π² cos πx + cos³ πx.
/// Its minimiser solves −u'' + u³ = f with the natural boundary condition u'(±1) = 0:
/// u = cos πx.
struct RitzQuartic;
impl EnergyDensity for RitzQuartic {
    fn density<D: DualNum<Primitive = f64> + Copy>(&self, p: &Point, u: &Fields<D>) -> D {
        let c = (PI * p.x[0]).cos();
        let f = PI * PI * c + c.powi(3);
        u.dx(0, 0).powi(2) * 0.5 + u.u(0).powi(4) * 0.25 - u.u(0) * f
    }
}

fn quartic_model(widths: Vec<usize>) -> RitzModel {
    let (x, w) = gauss(100);
    let term = EnergyTerm::new(
        "interior",
        x.as_ref(),
        w,
        ChannelSet::value(1).with_gradient(),
        RitzQuartic,
    );
    RitzModel::new(TaylorMlp::new(widths).unwrap(), vec![term]).unwrap()
}

#[test]
fn energy_natural_gradient_reaches_the_exact_minimiser() {
    let model = quartic_model(vec![1, 20, 1]);
    let theta0 = model.net().init_params(0);
    let problem = model.clone().into_problem().unwrap();
    let solver = NaturalGradient::new()
        .with_linear_solver(LinearSolver::Cholesky)
        .and_then(|s| s.with_damping(1e-8))
        .and_then(|s| s.with_step_control(StepControl::armijo()))
        .unwrap();
    let res = Executor::new(problem, solver)
        .configure(|s| s.param(theta0).max_iters(200))
        .run()
        .unwrap();
    let theta = res.state().get_best_param().unwrap().clone();
    let xs = Mat::from_fn(1, 1001, |_, j| -1.0 + 2.0 * j as f64 / 1000.0);
    let u = model.evaluate(&theta, xs.as_ref()).unwrap();
    let (mut num, mut den) = (0.0, 0.0);
    for j in 0..xs.ncols() {
        let exact = (PI * xs[(0, j)]).cos();
        num += (u[(0, j)] - exact).powi(2);
        den += exact * exact;
    }
    let rel = (num / den).sqrt();
    println!(
        "relative L² error {rel:e} after {} steps",
        res.state().get_iter()
    );
    // Measured 1.2e-6 (72 steps, 1-20-1 tanh, 300 Gauss points): a 10× margin.
    assert!(rel <= 1e-5, "relative L² error {rel:e}");
}

/// `e = ½u'² − 5u²`: concave in u, so the energy's Hessian is indefinite.
struct Concave;
impl EnergyDensity for Concave {
    fn density<D: DualNum<Primitive = f64> + Copy>(&self, _: &Point, u: &Fields<D>) -> D {
        u.dx(0, 0).powi(2) * 0.5 - u.u(0).powi(2) * 5.0
    }
}

#[test]
fn an_indefinite_energy_hessian_ends_the_run_cleanly() {
    let (x, w) = gauss(10);
    let term = EnergyTerm::new(
        "bulk",
        x.as_ref(),
        w,
        ChannelSet::value(1).with_gradient(),
        Concave,
    );
    let model = RitzModel::new(TaylorMlp::new(vec![1, 8, 1]).unwrap(), vec![term]).unwrap();
    let theta0 = model.net().init_params(0);
    let res = Executor::new(model.into_problem().unwrap(), NaturalGradient::new())
        .configure(|s| s.param(theta0.clone()).max_iters(5))
        .run()
        .unwrap();
    match res.state().get_termination_reason() {
        Some(TerminationReason::SolverExit(text)) => {
            assert!(
                text.contains("`bulk`") && text.contains("point 0"),
                "{text}"
            );
            assert!(text.contains("not convex"), "{text}");
        }
        other => panic!("expected a clean exit, got {other:?}"),
    }
    assert_eq!(res.state().get_best_param().unwrap(), &theta0);
}

#[test]
fn misuse_is_a_typed_error_at_construction() {
    let (x, w) = gauss(4);
    let net = || TaylorMlp::new(vec![1, 4, 1]).unwrap();
    let value_only = ChannelSet::value(1);
    // Reads u' but the term carries only the value.
    let t = EnergyTerm::new(
        "reads",
        x.as_ref(),
        w.clone(),
        value_only.clone(),
        RitzQuartic,
    );
    let e = RitzModel::new(net(), vec![t]).unwrap_err();
    assert!(
        matches!(&e, Error::InvalidSetting(s) if s.contains("`reads`") && s.contains("∂u_0/∂x_0")),
        "{e}"
    );
    let grad = ChannelSet::value(1).with_gradient();
    let t = EnergyTerm::new(
        "short",
        x.as_ref(),
        w[1..].to_vec(),
        grad.clone(),
        RitzQuartic,
    );
    assert!(matches!(
        RitzModel::new(net(), vec![t]),
        Err(Error::DimensionMismatch { .. })
    ));
    let mut neg = w.clone();
    neg[2] = -1.0;
    let t = EnergyTerm::new("neg", x.as_ref(), neg, grad.clone(), RitzQuartic);
    assert!(matches!(
        RitzModel::new(net(), vec![t]),
        Err(Error::InvalidSetting(_))
    ));
    let empty = Mat::<f64>::zeros(1, 0);
    let t = EnergyTerm::new("empty", empty.as_ref(), vec![], grad.clone(), RitzQuartic);
    assert!(matches!(
        RitzModel::new(net(), vec![t]),
        Err(Error::InvalidSetting(_))
    ));
    let x2 = Mat::<f64>::zeros(2, 4);
    let t = EnergyTerm::new("dim", x2.as_ref(), w.clone(), grad, RitzQuartic);
    assert!(matches!(
        RitzModel::new(net(), vec![t]),
        Err(Error::DimensionMismatch { .. })
    ));
    assert!(RitzModel::new(net(), vec![]).is_err());
}

#[test]
fn gauss_legendre_is_exact_to_degree_five_per_cell() {
    // ∫₋₁¹ x⁵ + x⁴ − 3x² dx = 2/5 − 2, exactly with one cell.
    let (x, w) = gauss_legendre_3(-1.0, 1.0, 1).unwrap();
    let q: f64 = (0..3)
        .map(|j| w[j] * (x[(0, j)].powi(5) + x[(0, j)].powi(4) - 3.0 * x[(0, j)].powi(2)))
        .sum();
    assert!((q - (0.4 - 2.0)).abs() <= 1e-15, "{q}");
    // ∫₀^π sin = 2 with error O(h⁶): h = π/10 gives about 1e-9 (Gauss: (b−a)h⁶ f⁽⁶⁾/2 016 000).
    let (x, w) = gauss_legendre_3(0.0, PI, 10).unwrap();
    let q: f64 = (0..30).map(|j| w[j] * x[(0, j)].sin()).sum();
    assert!((q - 2.0).abs() <= 2e-9 && (q - 2.0).abs() > 0.0, "{q}");
    assert!(gauss_legendre_3(1.0, 1.0, 3).is_err() && gauss_legendre_3(0.0, 1.0, 0).is_err());
}
