//! Every model's Jacobian products: adjointness and complex-step derivatives
//! (acceptance 1 and 2 of the engine issue).

mod common;

use common::models::{closure_model, sparse_design};
use common::{rel_diff, rng, vec};
use faer::{Mat, MatMut};
use natgrad::check::{adjointness_error, complex_step_jvp, jacobian_by_jvps, max_rel_diff};
use natgrad::model::{ClosureModel, LinearModel, Model, QuadraticModel};
use natgrad::problems::toys;
use natgrad::Linearization;

fn assert_adjoint<M: Model>(model: &M, seed: u64) {
    let mut r = rng(seed);
    let theta = vec(&mut r, model.n_params());
    let mut lin = model.linearize(&theta).unwrap();
    for _ in 0..5 {
        let t = vec(&mut r, model.n_params());
        let s = vec(&mut r, model.n_outputs());
        let e = adjointness_error(&mut lin, &t, &s);
        assert!(e <= 1e-12, "adjointness error {e:e}");
    }
}

#[test]
fn adjointness_holds_for_every_model() {
    let mut r = rng(1);
    assert_adjoint(&LinearModel::dense(common::mat(&mut r, 40, 13)).unwrap(), 2);
    assert_adjoint(&LinearModel::dense(common::mat(&mut r, 7, 30)).unwrap(), 3);
    assert_adjoint(&LinearModel::sparse(sparse_design(4, 50, 20)).unwrap(), 5);
    assert_adjoint(&closure_model(6, 9, 5).0, 7);
    for toy in toys::all() {
        assert_adjoint(toy.problem.model(), 8);
    }
    let q = QuadraticModel::new(
        common::mat(&mut r, 6, 4),
        (0..4).map(|_| common::spd(&mut r, 6, 0.0)).collect(),
    )
    .unwrap();
    assert_adjoint(&q, 9);
}

#[test]
fn closure_model_jvp_matches_complex_step() {
    let (model, complex) = closure_model(11, 8, 6);
    let mut r = rng(12);
    for _ in 0..5 {
        let theta = vec(&mut r, 6);
        let t = vec(&mut r, 6);
        let mut lin = model.linearize(&theta).unwrap();
        let mut jt = vec![0.0; 8];
        lin.jvp(&t, &mut jt);
        let cs = complex_step_jvp(&complex, &theta, &t, 8);
        let e = rel_diff(&jt, &cs);
        assert!(e <= 1e-12, "closure jvp vs complex step: {e:e}");
    }
}

#[test]
fn closure_model_keeps_its_complex_extension() {
    let model = ClosureModel::new(
        1,
        1,
        |t: &[f64], y: &mut [f64]| y[0] = t[0].exp(),
        |t: &[f64], mut j: MatMut<'_, f64>| j[(0, 0)] = t[0].exp(),
    )
    .with_complex_value(|t, y| y[0] = t[0].exp());
    let f = model.complex_value().unwrap();
    let cs = complex_step_jvp(f, &[0.3], &[1.0], 1);
    assert!((cs[0] - 0.3_f64.exp()).abs() <= 1e-15 * 0.3_f64.exp());
}

#[test]
fn toy_models_jvp_match_complex_step() {
    let mut r = rng(13);
    for toy in toys::all() {
        let model = toy.problem.model();
        let p = model.n_params();
        for _ in 0..5 {
            let theta = vec(&mut r, p);
            let t = vec(&mut r, p);
            let mut lin = model.linearize(&theta).unwrap();
            let mut jt = vec![0.0; 2];
            lin.jvp(&t, &mut jt);
            let cs = complex_step_jvp(|z, y| model.value_complex(z, y), &theta, &t, 2);
            let e = rel_diff(&jt, &cs);
            assert!(e <= 1e-12, "{}: jvp vs complex step {e:e}", toy.name);
        }
    }
}

#[test]
fn linear_model_jacobian_is_its_design() {
    let mut r = rng(14);
    let a = common::mat(&mut r, 12, 5);
    let model = LinearModel::dense(a.clone()).unwrap();
    let mut lin = model.linearize(&vec(&mut r, 5)).unwrap();
    let j = jacobian_by_jvps(&mut lin, 12);
    assert!(max_rel_diff(&j, &a) <= 1e-15);

    let sp = sparse_design(15, 30, 9);
    let dense = Mat::from_fn(30, 9, |i, j| sp.get(i, j).copied().unwrap_or(0.0));
    let model = LinearModel::sparse(sp).unwrap();
    let mut lin = model.linearize(&vec(&mut r, 9)).unwrap();
    assert!(max_rel_diff(&jacobian_by_jvps(&mut lin, 30), &dense) <= 1e-15);
    assert!(max_rel_diff(&lin.dense_jacobian().unwrap(), &dense) == 0.0);
}

#[test]
fn local_minima_roots_are_stationary() {
    let roots = toys::local_minima_stationary_points();
    for th in roots {
        assert!((2.0 * th * th * th - 2.0 * th - 0.3).abs() < 1e-14);
    }
    assert!((roots[0] + 0.92).abs() < 0.01 && (roots[2] - 1.07).abs() < 0.01);
}
