//! The batched MLP against its reference forward pass, the complex step and dense twins
//! (issue 4, acceptance 1 and 4).

mod common;

use common::{gram_twin, rel_diff, rng, vec};
use faer::{Mat, Par};
use natgrad::check::{adjointness_error, complex_step_jvp, jacobian_by_jvps, max_rel_diff};
use natgrad::linsolve::DirectionSolver;
use natgrad::linsolve::Rhs;
use natgrad::model::{Activation, Mlp, Model};
use natgrad::{
    CgSettings, Error, FitProblem, LinearSolver, Linearization, SquaredError, WeightedL2,
};
use rand::Rng;

const TOL: f64 = 1e-12;

/// A random network: `depth` layers, widths 1–6, `act` on the hidden layers and `out_act`
/// on the output layer, 3–7 samples uniform in [-1.5, 1.5]^d.
fn random_mlp(seed: u64, depth: usize, act: Activation, out_act: Activation) -> Mlp {
    let mut r = rng(seed);
    let mut widths: Vec<usize> = (0..=depth).map(|_| r.random_range(1..=6)).collect();
    widths[depth] = r.random_range(1..=3);
    let m = r.random_range(3..=7);
    let x: Vec<f64> = (0..m * widths[0])
        .map(|_| r.random_range(-1.5..1.5))
        .collect();
    let mut acts = vec![act; depth];
    acts[depth - 1] = out_act;
    Mlp::new(&widths, &acts, &x).unwrap()
}

/// Every activation on the hidden layers and on the output layer, depths 1 to 4; each
/// network twice, with products by layers (dense limit 0) and by its dense Jacobian (the
/// default for networks this small).
fn cases() -> Vec<(u64, Mlp)> {
    let mut out = Vec::new();
    let mut seed = 100;
    for depth in 1..=4 {
        for (i, &act) in Activation::ALL.iter().enumerate() {
            let out_act = Activation::ALL[(i + depth) % Activation::ALL.len()];
            seed += 1;
            let model = random_mlp(seed, depth, act, out_act);
            out.push((seed, model.clone().with_dense_limit(0)));
            out.push((seed, model));
        }
    }
    // Surely the thin paths (`pointwise::thin_product`): a first layer with `d + 1 ≤ 4`
    // and a scalar output below a softplus layer.
    let x: Vec<f64> = (0..3 * 5).map(|i| (i as f64 * 0.37).sin()).collect();
    let acts = [Activation::Tanh, Activation::Softplus, Activation::Sigmoid];
    let thin = Mlp::new(&[3, 5, 4, 1], &acts, &x).unwrap();
    out.push((seed + 1, thin.clone().with_dense_limit(0)));
    out.push((seed + 1, thin));
    out
}

/// The dense Jacobian, column by column from the complex step of the reference forward.
fn jacobian_complex_step(model: &Mlp, theta: &[f64]) -> Mat<f64> {
    let (n, p) = (model.n_outputs(), model.n_params());
    let mut j = Mat::zeros(n, p);
    let mut e = vec![0.0; p];
    for c in 0..p {
        e[c] = 1.0;
        let col = complex_step_jvp(|z, y| model.forward_reference(z, y), theta, &e, n);
        e[c] = 0.0;
        for (r, v) in col.iter().enumerate() {
            j[(r, c)] = *v;
        }
    }
    j
}

fn theta_for(model: &Mlp, seed: u64) -> Vec<f64> {
    let mut r = rng(seed);
    vec(&mut r, model.n_params())
        .iter()
        .map(|v| 1.5 * v)
        .collect()
}

#[test]
fn forward_matches_reference_loops() {
    for (seed, model) in cases() {
        let theta = theta_for(&model, seed);
        let mut y = vec![0.0; model.n_outputs()];
        let mut y_ref = vec![0.0; model.n_outputs()];
        model.forward(&theta, &mut y).unwrap();
        model.forward_reference(&theta, &mut y_ref);
        assert!(rel_diff(&y, &y_ref) <= TOL, "{:?}", model.widths());
    }
}

#[test]
fn jvp_and_vjp_match_complex_step_jacobian() {
    for (seed, model) in cases() {
        let theta = theta_for(&model, seed);
        let jac = jacobian_complex_step(&model, &theta);
        let mut lin = model.linearize(&theta).unwrap();
        let n = model.n_outputs();
        let by_jvps = jacobian_by_jvps(&mut lin, n);
        let e = max_rel_diff(&by_jvps, &jac);
        assert!(
            e <= TOL,
            "jvp {:?} {:?}: {e:e}",
            model.widths(),
            model.activations()
        );
        let mut jt = Mat::zeros(model.n_params(), n);
        lin.vjp_block(Mat::<f64>::identity(n, n).as_ref(), jt.as_mut());
        let e = max_rel_diff(&jt.transpose().to_owned(), &jac);
        assert!(
            e <= TOL,
            "vjp {:?} {:?}: {e:e}",
            model.widths(),
            model.activations()
        );
        // One random direction through the complex step directly.
        let t = vec(&mut rng(seed + 7), model.n_params());
        let cs = complex_step_jvp(|z, y| model.forward_reference(z, y), &theta, &t, n);
        let mut jt_v = vec![0.0; n];
        lin.jvp(&t, &mut jt_v);
        assert!(rel_diff(&jt_v, &cs) <= TOL);
    }
}

#[test]
fn jvp_and_vjp_are_adjoint() {
    for (seed, model) in cases() {
        let theta = theta_for(&model, seed);
        let mut lin = model.linearize(&theta).unwrap();
        let mut r = rng(seed + 1);
        for _ in 0..3 {
            let t = vec(&mut r, model.n_params());
            let s = vec(&mut r, model.n_outputs());
            let e = adjointness_error(&mut lin, &t, &s);
            assert!(e <= TOL, "adjointness {e:e}");
        }
    }
}

#[test]
fn block_products_match_single_products() {
    let small = random_mlp(7, 3, Activation::Tanh, Activation::Sigmoid);
    for model in [small.clone().with_dense_limit(0), small] {
        block_products_match_for(model);
    }
}

fn block_products_match_for(model: Mlp) {
    let theta = theta_for(&model, 7);
    let mut lin = model.linearize(&theta).unwrap();
    let (n, p) = (model.n_outputs(), model.n_params());
    let mut r = rng(8);
    let t = common::mat(&mut r, p, 5);
    let s = common::mat(&mut r, n, 4);
    let mut jt = Mat::zeros(n, 5);
    let mut jts = Mat::zeros(p, 4);
    lin.jvp_block(t.as_ref(), jt.as_mut());
    lin.vjp_block(s.as_ref(), jts.as_mut());
    let mut col = vec![0.0; n.max(p)];
    for j in 0..5 {
        let tj: Vec<f64> = t.col(j).iter().copied().collect();
        lin.jvp(&tj, &mut col[..n]);
        let bj: Vec<f64> = jt.col(j).iter().copied().collect();
        assert!(rel_diff(&bj, &col[..n]) <= TOL);
    }
    for j in 0..4 {
        let sj: Vec<f64> = s.col(j).iter().copied().collect();
        lin.vjp(&sj, &mut col[..p]);
        let bj: Vec<f64> = jts.col(j).iter().copied().collect();
        assert!(rel_diff(&bj, &col[..p]) <= TOL);
    }
}

fn l2_problem(model: Mlp) -> FitProblem<Mlp, SquaredError, WeightedL2> {
    let n = model.n_outputs();
    let target: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
    let mut r = rng(3);
    let w: Vec<f64> = (0..n).map(|_| r.random_range(0.1..1.0)).collect();
    FitProblem::new(
        model,
        SquaredError::l2(target).unwrap(),
        WeightedL2::new(w).unwrap(),
    )
    .unwrap()
}

#[test]
fn gram_operator_and_diagonal_match_dense_twin() {
    for (depth, limit) in [1, 2, 4].into_iter().flat_map(|d| [(d, 0), (d, 1 << 16)]) {
        let model = random_mlp(
            40 + depth as u64,
            depth,
            Activation::Softplus,
            Activation::Tanh,
        )
        .with_dense_limit(limit);
        let theta = theta_for(&model, 41);
        let jac = jacobian_complex_step(&model, &theta);
        let problem = l2_problem(model);
        let (n, p) = (problem.n_outputs(), problem.n_params());
        let w = problem.metric().weights().to_vec();
        let mm = Mat::from_fn(n, n, |i, j| if i == j { w[i] } else { 0.0 });
        let twin = gram_twin(&jac, &mm, 0.3);
        let mut lin = problem.linearize(&theta).unwrap();
        let diag = lin.gram_diagonal(0.3).unwrap();
        let twin_diag: Vec<f64> = (0..p).map(|i| twin[(i, i)]).collect();
        assert!(rel_diff(&diag, &twin_diag) <= TOL, "gram diagonal");
        let op = lin.gram(0.3);
        let t = vec(&mut rng(42), p);
        let mut gt = vec![0.0; p];
        op.apply_vec(&t, &mut gt);
        assert!(
            rel_diff(&gt, &common::matvec(&twin, &t)) <= TOL,
            "gram product"
        );
    }
}

/// Outputs, products and a 20-iteration CG direction, computed with `Par::rayon(0)`
/// inside a rayon pool of `threads` threads. The sizes are large enough that the GEMMs
/// (`2·64·64·600` flops) and pointwise passes (`64·600` floats) run in parallel.
fn run_in_pool(threads: usize) -> Vec<Vec<u64>> {
    common::in_pool(threads, || {
        let mut r = rng(9);
        let m = 600;
        let x: Vec<f64> = (0..2 * m).map(|_| r.random_range(0.0..1.0)).collect();
        let model = Mlp::with_hidden(&[2, 64, 64, 1], Activation::Tanh, &x)
            .unwrap()
            .with_parallelism(Par::rayon(0));
        let theta = model.init_params(5);
        let problem = l2_problem(model);
        let mut lin = problem.linearize(&theta).unwrap();
        let (n, p) = (problem.n_outputs(), problem.n_params());
        let mut jt = vec![0.0; n];
        let mut jts = vec![0.0; p];
        lin.jvp(&vec(&mut r, p), &mut jt);
        lin.vjp(&vec(&mut r, n), &mut jts);
        let mut diag = lin.gram_diagonal(1e-3).unwrap();
        let mut d = vec![0.0; p];
        let rhs = lin.output_gradient().to_vec();
        let cg = LinearSolver::Cg(CgSettings::fixed_iterations(20));
        let rhs = Rhs::Cotangent {
            r: &rhs,
            jt_r: None,
        };
        DirectionSolver::new(cg.clone())
            .with_parallelism(Par::rayon(0).into())
            .solve_from(&mut lin, rhs, 1e-3, &mut d)
            .unwrap();
        diag.truncate(p);
        [lin.outputs(), &jt, &jts, &diag, &d]
            .into_iter()
            .map(common::bits)
            .collect()
    })
}

#[test]
fn one_and_two_threads_agree_bitwise() {
    common::assert_same_bits_at_one_and_two_threads("result", run_in_pool);
}

#[test]
fn select_samples_keeps_the_chosen_outputs() {
    let model = random_mlp(11, 2, Activation::Tanh, Activation::Identity);
    let theta = theta_for(&model, 11);
    let q = model.widths()[2];
    let mut y = vec![0.0; model.n_outputs()];
    model.forward(&theta, &mut y).unwrap();
    let pick = [2, 0, 2];
    let sub = model.select_samples(&pick).unwrap();
    let mut ys = vec![0.0; sub.n_outputs()];
    sub.forward(&theta, &mut ys).unwrap();
    let expected: Vec<f64> = pick
        .iter()
        .flat_map(|&i| y[i * q..(i + 1) * q].to_vec())
        .collect();
    assert!(rel_diff(&ys, &expected) <= TOL);
    assert!(model.select_samples(&[99]).is_err());
}

#[test]
fn bad_sizes_and_inputs_are_errors() {
    let x = [0.1, 0.2, 0.3, 0.4];
    let tanh = Activation::Tanh;
    assert!(matches!(
        Mlp::new(&[2], &[], &x),
        Err(Error::InvalidSetting(_))
    ));
    assert!(matches!(
        Mlp::new(&[2, 0, 1], &[tanh, tanh], &x),
        Err(Error::InvalidSetting(_))
    ));
    assert!(matches!(
        Mlp::new(&[2, 1], &[tanh, tanh], &x),
        Err(Error::DimensionMismatch { .. })
    ));
    assert!(matches!(
        Mlp::new(&[3, 1], &[tanh], &x),
        Err(Error::DimensionMismatch { .. })
    ));
    assert!(matches!(
        Mlp::new(&[2, 1], &[tanh], &[]),
        Err(Error::InvalidSetting(_))
    ));
    let bad = [0.1, 0.2, f64::NAN, 0.4];
    assert!(matches!(
        Mlp::new(&[2, 1], &[tanh], &bad),
        Err(Error::NonFinite { index: 2, .. })
    ));
    let model = Mlp::new(&[2, 3, 1], &[tanh, Activation::Identity], &x).unwrap();
    assert_eq!(model.n_params(), 3 * 3 + 4);
    assert!(model.linearize(&[0.0; 3]).is_err());
    let mut out = vec![0.0; 5];
    assert!(model.forward(&model.init_params(1), &mut out).is_err());
}

#[test]
fn init_params_is_seeded_glorot() {
    let x: Vec<f64> = (0..20).map(|i| i as f64 / 20.0).collect();
    let model = Mlp::with_hidden(&[2, 200, 150, 1], Activation::Tanh, &x).unwrap();
    let a = model.init_params(3);
    assert_eq!(a, model.init_params(3));
    assert_ne!(a, model.init_params(4));
    let layer = &a[model.layer_range(1)];
    let (w, b) = layer.split_at(150 * 200);
    assert!(b.iter().all(|&v| v == 0.0));
    let var = w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64;
    let expected = 2.0 / 350.0;
    assert!(
        (var / expected - 1.0).abs() < 0.05,
        "variance {var} vs {expected}"
    );
}

#[test]
fn dense_jacobian_matches_complex_step() {
    for (seed, model) in cases() {
        let theta = theta_for(&model, seed);
        let mut lin = model.linearize(&theta).unwrap();
        let direct = lin.dense_jacobian().unwrap();
        let twin = jacobian_complex_step(&model, &theta);
        let e = max_rel_diff(&direct, &twin);
        assert!(e <= 1e-12, "seed {seed}: {e:e}");
    }
}

/// A model reuses a dropped linearisation's buffers (`mlp/workspace.rs`): its outputs and
/// products at a new θ must be bitwise those of a fresh clone, whose pool is empty — also
/// while an older linearisation is still alive (the momentum rules hold two).
#[test]
fn reused_buffers_give_the_products_of_fresh_ones() {
    for (seed, model) in cases() {
        let (t1, t2, t3) = (
            theta_for(&model, seed),
            theta_for(&model, seed + 1),
            theta_for(&model, seed + 2),
        );
        let (n, p) = (model.n_outputs(), model.n_params());
        let mut r = rng(seed + 3);
        let (t, s) = (vec(&mut r, p), vec(&mut r, n));
        let products = |lin: &mut <Mlp as Model>::Linearization<'_>| {
            let (mut jt, mut jts) = (vec![0.0; n], vec![0.0; p]);
            lin.jvp(&t, &mut jt);
            lin.vjp(&s, &mut jts);
            [lin.outputs().to_vec(), jt, jts].concat()
        };
        let fresh = |th: &[f64]| products(&mut model.clone().linearize(th).unwrap());
        drop(model.linearize(&t1).unwrap());
        let reused = products(&mut model.linearize(&t2).unwrap());
        assert_eq!(reused, fresh(&t2), "seed {seed}: reused buffers");
        let mut held = model.linearize(&t3).unwrap();
        let beside = products(&mut model.linearize(&t1).unwrap());
        assert_eq!(
            beside,
            fresh(&t1),
            "seed {seed}: beside a live linearisation"
        );
        assert_eq!(products(&mut held), fresh(&t3), "seed {seed}: the live one");
    }
}
