//! Taylor-mode PINN model: derivatives in x against finite differences, θ-products
//! against complex-step derivatives and dense twins (acceptance 1 of the PINN issue).

mod common;

use common::{rel_diff, rng, vec};
use faer::{Mat, Par};
use natgrad::check::{adjointness_error, complex_step_jvp, jacobian_by_jvps, max_rel_diff};
use natgrad::model::{DiffOperator, Model, Pinn, TaylorMlp};
use natgrad::Linearization;
use num_complex::Complex64;
use rand::Rng;

fn points(seed: u64, d: usize, m: usize) -> Mat<f64> {
    let mut r = rng(seed);
    Mat::from_fn(d, m, |_, _| r.random_range(0.0..1.0))
}

#[test]
fn batched_taylor_pass_matches_the_pointwise_reference() {
    for widths in [vec![1, 7, 1], vec![2, 5, 4, 1], vec![3, 6, 5, 4, 1]] {
        let net = TaylorMlp::new(widths.clone()).unwrap();
        let theta = net.init(3);
        let x = points(4, net.input_dim(), 9);
        let pass = net.forward(&theta, x.as_ref(), Par::Seq).unwrap();
        for i in 0..9 {
            let xi: Vec<f64> = (0..net.input_dim()).map(|k| x[(k, i)]).collect();
            let (v, g, l) = net.point_channels(&theta, &xi);
            assert!((pass.value(i) - v).abs() <= 1e-13 * (1.0 + v.abs()));
            for (k, gk) in g.iter().enumerate() {
                assert!((pass.partial(i, k) - gk).abs() <= 1e-13 * (1.0 + gk.abs()));
            }
            assert!(
                (pass.laplacian(i) - l).abs() <= 1e-12 * (1.0 + l.abs()),
                "{widths:?}"
            );
        }
    }
}

#[test]
fn taylor_derivatives_match_finite_differences_in_x() {
    let net = TaylorMlp::new(vec![2, 16, 16, 1]).unwrap();
    let theta = net.init(5);
    let x = points(6, 2, 12);
    let pass = net.forward(&theta, x.as_ref(), Par::Seq).unwrap();
    let v = |p: &[f64]| net.point_channels(&theta, p).0;
    let (h1, h2) = (1e-5, 1e-4);
    for i in 0..12 {
        let xi = [x[(0, i)], x[(1, i)]];
        let mut lap_fd = 0.0;
        for k in 0..2 {
            let (mut xp, mut xm) = (xi, xi);
            xp[k] += h1;
            xm[k] -= h1;
            let d_fd = (v(&xp) - v(&xm)) / (2.0 * h1);
            assert!((pass.partial(i, k) - d_fd).abs() <= 1e-6 * (1.0 + d_fd.abs()));
            let (mut xp, mut xm) = (xi, xi);
            xp[k] += h2;
            xm[k] -= h2;
            lap_fd += (v(&xp) - 2.0 * v(&xi) + v(&xm)) / (h2 * h2);
        }
        assert!(
            (pass.laplacian(i) - lap_fd).abs() <= 1e-6 * (1.0 + lap_fd.abs()),
            "Δv {} vs {lap_fd}",
            pass.laplacian(i)
        );
    }
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
    Pinn::new(net, op, xi.as_ref(), f, xb.as_ref(), g, 2.5).unwrap()
}

/// The PINN outputs written from their definition over any scalar (complex-step twin).
fn residuals_complex(
    model: &Pinn,
    theta: &[Complex64],
    widths_d: usize,
    m_int: usize,
    m_bnd: usize,
) -> Vec<Complex64> {
    let net = model.net();
    let xi = points(7, widths_d, m_int);
    let xb = points(8, widths_d, m_bnd);
    let mut out = Vec::new();
    for i in 0..m_int {
        let x: Vec<f64> = (0..widths_d).map(|k| xi[(k, i)]).collect();
        let (v, g, l) = net.point_channels(theta, &x);
        let adv = g
            .iter()
            .enumerate()
            .fold(Complex64::new(0.0, 0.0), |a, (k, gk)| {
                a + gk * (1.0 + k as f64)
            });
        let r = l * -0.3 + adv + v * 0.7 - (i as f64).sin();
        out.push(r / (m_int as f64).sqrt());
    }
    for j in 0..m_bnd {
        let x: Vec<f64> = (0..widths_d).map(|k| xb[(k, j)]).collect();
        let (v, _, _) = net.point_channels(theta, &x);
        out.push((v - (j as f64).cos()) * (2.5 / m_bnd as f64).sqrt());
    }
    out
}

#[test]
fn pinn_theta_jvp_matches_complex_step() {
    for (widths, mi, mb) in [(vec![1, 8, 1], 10, 2), (vec![2, 6, 5, 1], 12, 5)] {
        let d = widths[0];
        let model = pinn(widths, mi, mb);
        let mut r = rng(9);
        let theta = vec(&mut r, model.n_params());
        let mut lin = model.linearize(&theta).unwrap();
        // outputs agree with the definition
        let zc: Vec<Complex64> = theta.iter().map(|&t| Complex64::new(t, 0.0)).collect();
        let y_ref: Vec<f64> = residuals_complex(&model, &zc, d, mi, mb)
            .iter()
            .map(|c| c.re)
            .collect();
        assert!(rel_diff(lin.outputs(), &y_ref) <= 1e-13);
        for _ in 0..4 {
            let t = vec(&mut r, model.n_params());
            let mut jt = vec![0.0; mi + mb];
            lin.jvp(&t, &mut jt);
            let cs = complex_step_jvp(
                |z, y| y.copy_from_slice(&residuals_complex(&model, z, d, mi, mb)),
                &theta,
                &t,
                mi + mb,
            );
            let e = rel_diff(&jt, &cs);
            assert!(e <= 1e-10, "jvp vs complex step: {e:e}");
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
        x.as_ref(),
        vec![0.0; 3],
        x.as_ref(),
        vec![0.0; 3],
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
        x.as_ref(),
        vec![0.0, f64::NAN, 0.0],
        x.as_ref(),
        vec![0.0; 3],
        1.0,
    )
    .unwrap_err();
    assert!(e.to_string().contains("index 1"), "{e}");
    assert!(TaylorMlp::new(vec![2, 4, 2]).is_err());
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
