//! The classic PINN model: θ-products against dual numbers and dense twins (acceptance 1
//! of the PINN issue; the Taylor pass itself is checked in tests/taylor.rs).

mod common;

use common::taylor_ref::{channels_by_duals, reference, Act};
use common::{rel_diff, rng, vec};
use faer::Mat;
use natgrad::check::{adjointness_error, jacobian_by_jvps, max_rel_diff};
use natgrad::model::{ChannelSet, Collocation, DiffOperator, Model, Pinn, Smooth, TaylorMlp};
use natgrad::Linearization;
use num_dual::Dual64;
use rand::Rng;

fn points(seed: u64, d: usize, m: usize) -> Mat<f64> {
    let mut r = rng(seed);
    Mat::from_fn(d, m, |_, _| r.random_range(0.0..1.0))
}

fn pinn(widths: Vec<usize>, m_int: usize, m_bnd: usize) -> Pinn {
    let net = TaylorMlp::new(widths).unwrap();
    let d = net.input_dim();
    let op = DiffOperator {
        laplacian: -0.3,
        gradient: (0..d).map(|k| 1.0 + k as f64).collect(),
        value: 0.7,
    };
    let xi = points(7, d, m_int);
    let xb = points(8, d, m_bnd);
    let f = (0..m_int).map(|i| (i as f64).sin()).collect();
    let g = (0..m_bnd).map(|j| (j as f64).cos()).collect();
    let (interior, boundary) = (
        Collocation::new(xi.as_ref(), f),
        Collocation::new(xb.as_ref(), g),
    );
    Pinn::new(net, op, interior, boundary, 2.5).unwrap()
}

/// The PINN outputs written from their definition over dual numbers (the network's
/// channels by hyper-dual numbers in x): with θ seeded by a tangent `t`, the ε parts are
/// `J t` exactly.
fn residuals_dual(
    model: &Pinn,
    theta: &[Dual64],
    widths_d: usize,
    m_int: usize,
    m_bnd: usize,
) -> Vec<Dual64> {
    let widths = model.net().widths().to_vec();
    let act = Act::Builtin(Smooth::Tanh);
    let xi = points(7, widths_d, m_int);
    let xb = points(8, widths_d, m_bnd);
    let set = ChannelSet::laplacian(widths_d);
    let mut out = Vec::new();
    for i in 0..m_int {
        let x: Vec<f64> = (0..widths_d).map(|k| xi[(k, i)]).collect();
        let ch = channels_by_duals(&widths, act, theta, &x, &set);
        let adv = (0..widths_d).fold(Dual64::from(0.0), |a, k| a + ch[1 + k] * (1.0 + k as f64));
        let r = ch[widths_d + 1] * -0.3 + adv + ch[0] * 0.7 - (i as f64).sin();
        out.push(r / (m_int as f64).sqrt());
    }
    for j in 0..m_bnd {
        let x: Vec<f64> = (0..widths_d).map(|k| xb[(k, j)]).collect();
        let v = reference(
            &widths,
            act,
            theta,
            &x.iter().map(|&v| Dual64::from(v)).collect::<Vec<_>>(),
        )[0];
        out.push((v - (j as f64).cos()) * (2.5 / m_bnd as f64).sqrt());
    }
    out
}

#[test]
fn pinn_theta_jvp_matches_dual_numbers() {
    for (widths, mi, mb) in [(vec![1, 8, 1], 10, 2), (vec![2, 6, 5, 1], 12, 5)] {
        let d = widths[0];
        let model = pinn(widths, mi, mb);
        let mut r = rng(9);
        let theta = vec(&mut r, model.n_params());
        let mut lin = model.linearize(&theta).unwrap();
        // outputs agree with the definition
        let zc: Vec<Dual64> = theta.iter().map(|&t| Dual64::from(t)).collect();
        let y_ref: Vec<f64> = residuals_dual(&model, &zc, d, mi, mb)
            .iter()
            .map(|c| c.re)
            .collect();
        assert!(rel_diff(lin.outputs(), &y_ref) <= 1e-13);
        for _ in 0..4 {
            let t = vec(&mut r, model.n_params());
            let mut jt = vec![0.0; mi + mb];
            lin.jvp(&t, &mut jt);
            let seeded: Vec<Dual64> = theta
                .iter()
                .zip(&t)
                .map(|(&a, &b)| Dual64::new(a, b))
                .collect();
            let cs: Vec<f64> = residuals_dual(&model, &seeded, d, mi, mb)
                .iter()
                .map(|c| c.eps)
                .collect();
            let e = rel_diff(&jt, &cs);
            assert!(e <= 1e-10, "jvp vs dual numbers: {e:e}");
        }
    }
}

#[test]
fn pinn_vjp_is_the_adjoint_and_matches_the_dense_twin() {
    let model = pinn(vec![2, 7, 6, 1], 15, 6);
    let mut r = rng(10);
    let theta = vec(&mut r, model.n_params());
    let mut lin = model.linearize(&theta).unwrap();
    let n = model.n_outputs();
    for _ in 0..5 {
        let t = vec(&mut r, model.n_params());
        let s = vec(&mut r, n);
        assert!(adjointness_error(&mut lin, &t, &s) <= 1e-12);
    }
    let j = jacobian_by_jvps(&mut lin, n);
    let p = model.n_params();
    let mut jt = Mat::zeros(n, p);
    let mut e = vec![0.0; n];
    let mut row = vec![0.0; p];
    for i in 0..n {
        e[i] = 1.0;
        lin.vjp(&e, &mut row);
        e[i] = 0.0;
        for c in 0..p {
            jt[(i, c)] = row[c];
        }
    }
    assert!(max_rel_diff(&jt, &j) <= 1e-12);
}

#[test]
fn pinn_rejects_bad_input() {
    let net = TaylorMlp::new(vec![2, 4, 1]).unwrap();
    let op = DiffOperator {
        laplacian: 1.0,
        gradient: vec![0.0],
        value: 0.0,
    };
    let x = points(1, 2, 3);
    let e = Pinn::new(
        net.clone(),
        op,
        Collocation::new(x.as_ref(), vec![0.0; 3]),
        Collocation::new(x.as_ref(), vec![0.0; 3]),
        1.0,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("advection vector vs input dimension: expected length 2, found 1"),
        "{e}"
    );
    let op = DiffOperator {
        laplacian: 1.0,
        gradient: vec![0.0, 0.0],
        value: 0.0,
    };
    let e = Pinn::new(
        net.clone(),
        op.clone(),
        Collocation::new(x.as_ref(), vec![0.0, f64::NAN, 0.0]),
        Collocation::new(x.as_ref(), vec![0.0; 3]),
        1.0,
    )
    .unwrap_err();
    assert!(e.to_string().contains("index 1"), "{e}");
    assert!(TaylorMlp::new(vec![2, 0, 1]).is_err());
}

#[test]
fn advection_diffusion_exact_solution_solves_the_pde() {
    use natgrad::problems::pinn::advection_diffusion_exact as u;
    for eps in [0.1, 0.02] {
        assert!(u(eps, 0.0).abs() < 1e-15 && u(eps, 1.0).abs() < 1e-15);
        let h = 1e-4;
        for x in [0.1, 0.5, 0.9] {
            let d1 = (u(eps, x + h) - u(eps, x - h)) / (2.0 * h);
            let d2 = (u(eps, x + h) - 2.0 * u(eps, x) + u(eps, x - h)) / (h * h);
            assert!((-eps * d2 + d1 - 1.0).abs() < 1e-4, "eps={eps} x={x}");
        }
    }
}

#[test]
fn pinn_problems_are_consistent() {
    use natgrad::problems::pinn::{advection_diffusion, poisson_2d};
    let case = advection_diffusion(0.1, 100, &[32, 32], 1.0).unwrap();
    assert_eq!(case.problem.n_outputs(), 102);
    assert_eq!(case.grid.ncols(), 10_000);
    let case = poisson_2d(30, 120, &[64], 1.0).unwrap();
    assert_eq!(case.problem.n_outputs(), 1020);
    assert_eq!(case.problem.n_params(), 2 * 64 + 64 + 64 + 1);
    // The loss at θ is ½‖R‖², and the error of a zero network is the norm of u.
    let theta = vec![0.0; case.problem.n_params()];
    let e = case.errors(&theta).unwrap();
    assert!((e.rel_l2 - 1.0).abs() < 1e-14);
}

#[test]
fn pinn_dense_jacobian_matches_jvps() {
    let model = pinn(vec![2, 7, 6, 1], 15, 6);
    let mut r = rng(11);
    let theta = vec(&mut r, model.n_params());
    let mut lin = model.linearize(&theta).unwrap();
    let by_jvps = jacobian_by_jvps(&mut lin, model.n_outputs());
    let direct = lin.dense_jacobian().unwrap();
    assert!(max_rel_diff(&direct, &by_jvps) <= 1e-13);
}

#[test]
fn new_reference_problems_are_consistent_and_their_exact_solutions_solve_them() {
    use natgrad::problems::pinn::{
        heat_1d, heat_exact, neumann_2d, neumann_exact, nonlinear_2d, poisson_exact,
    };
    let case = heat_1d(30, &[64]).unwrap();
    assert_eq!(case.problem.n_outputs(), 900 + 3 * 30);
    assert_eq!(case.grid.ncols(), 10_000);
    let n2 = nonlinear_2d(30, 120, &[64]).unwrap();
    assert_eq!(n2.problem.n_outputs(), 1020);
    let nm = neumann_2d(30, 120, &[64]).unwrap();
    assert_eq!(nm.problem.n_outputs(), 1020);
    let pi = std::f64::consts::PI;
    let h = 1e-4;
    for (a, b) in [(0.2, 0.3), (0.7, 0.55), (0.45, 0.9)] {
        // u_t − ¼u_xx = 0
        let u = heat_exact;
        let ut = (u(a + h, b) - u(a - h, b)) / (2.0 * h);
        let uxx = (u(a, b + h) - 2.0 * u(a, b) + u(a, b - h)) / (h * h);
        assert!((ut - 0.25 * uxx).abs() < 1e-6);
        // −Δu + u = (2π² + 1) u for u = cos πx cos πy, and −Δu = 2π² u for sin sin.
        for (u, c) in [
            (neumann_exact as fn(f64, f64) -> f64, 2.0 * pi * pi),
            (poisson_exact as fn(f64, f64) -> f64, 2.0 * pi * pi),
        ] {
            let lap =
                (u(a + h, b) + u(a - h, b) + u(a, b + h) + u(a, b - h) - 4.0 * u(a, b)) / (h * h);
            assert!((-lap - c * u(a, b)).abs() < 1e-5);
        }
    }
    assert!((heat_exact(0.0, 0.3) - (pi * 0.3).sin()).abs() < 1e-15);
    assert!(heat_exact(0.4, 0.0).abs() < 1e-15 && heat_exact(0.4, 1.0).abs() < 1e-15);
    // ∂u/∂n = 0 on the square's edges for cos πx cos πy.
    for t in [0.1, 0.6] {
        let dx = |x: f64, y: f64| (neumann_exact(x + h, y) - neumann_exact(x - h, y)) / (2.0 * h);
        assert!(dx(0.0, t).abs() < 1e-9 && dx(1.0, t).abs() < 1e-9);
    }
    // A zero network has relative error 1 everywhere.
    let theta = vec![0.0; case.problem.n_params()];
    assert!((case.errors(&theta).unwrap().rel_l2 - 1.0).abs() < 1e-14);
}
