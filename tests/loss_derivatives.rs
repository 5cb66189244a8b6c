//! Every loss against formulas written here by hand and against finite differences:
//! value by its definition, `∇_yℓ` by fourth-order central differences of the value, the
//! Hessian (and its diagonal) by central differences of the gradient, the cross-entropy
//! Fisher metric `diag(w/(v(1−v)))` as the expected Hessian over labels `u ~ Bernoulli(v)`,
//! and the mini-batch restrictions as `m/b` times the sum over the batch (docs/math.md §1,
//! §3 stochastic setting, §4).

mod common;

use common::{rel_diff, rng, spd, vec};
use natgrad::loss::FnLoss;
use natgrad::metric::OutputPoint;
use natgrad::problems::toys::{self, WarpedSquaredError};
use natgrad::{
    CrossEntropy, DenseMetric, Error, Euclidean, Loss, LossHessian, Metric, SquaredError,
    WeightedL2,
};
use rand::Rng;

/// `∂f/∂y_i` by the fourth-order central difference (step `h`).
fn fd_gradient(f: &dyn Fn(&[f64]) -> f64, y: &[f64], h: f64) -> Vec<f64> {
    (0..y.len())
        .map(|i| {
            let at = |s: f64| {
                let mut z = y.to_vec();
                z[i] += s;
                f(&z)
            };
            (-at(2.0 * h) + 8.0 * at(h) - 8.0 * at(-h) + at(-2.0 * h)) / (12.0 * h)
        })
        .collect()
}

/// The Hessian of `loss` at `y` (column `j` = central difference of the gradient along
/// `e_j`), row-major.
fn fd_hessian(loss: &dyn Loss, y: &[f64], h: f64) -> Vec<Vec<f64>> {
    let n = y.len();
    let grad = |z: &[f64]| {
        let mut g = vec![0.0; n];
        loss.gradient(z, &mut g);
        g
    };
    (0..n)
        .map(|j| {
            let at = |s: f64| {
                let mut z = y.to_vec();
                z[j] += s;
                grad(&z)
            };
            let (p2, p1, m1, m2) = (at(2.0 * h), at(h), at(-h), at(-2.0 * h));
            (0..n)
                .map(|i| (-p2[i] + 8.0 * p1[i] - 8.0 * m1[i] + m2[i]) / (12.0 * h))
                .collect()
        })
        .collect()
}

/// Checks `gradient` against differences of `value`, and `hessian_apply` on random
/// vectors and `hessian_diagonal` against differences of `gradient`.
fn check_derivatives(name: &str, loss: &dyn Loss, y: &[f64], h: f64, tol: f64) {
    let n = y.len();
    let mut g = vec![0.0; n];
    loss.gradient(y, &mut g);
    let fd = fd_gradient(&|z| loss.value(z), y, h);
    // Relative, but absolute near a stationary point (the gradient may vanish).
    let e = rel_diff(&g, &fd) * norm(&fd) / norm(&fd).max(1e-3);
    assert!(e <= tol, "{name}: gradient vs differences {e:e}");
    if !loss.has_hessian() {
        return;
    }
    let hess = fd_hessian(loss, y, h);
    let mut r = rng(3);
    for _ in 0..3 {
        let v = vec(&mut r, n);
        let mut hv = vec![0.0; n];
        loss.hessian_apply(y, &v, &mut hv).unwrap();
        let expected: Vec<f64> = (0..n)
            .map(|i| (0..n).map(|j| hess[j][i] * v[j]).sum())
            .collect();
        let e = rel_diff(&hv, &expected);
        assert!(e <= tol, "{name}: Hessian product vs differences {e:e}");
    }
    let mut diag = vec![0.0; n];
    if loss.hessian_diagonal(y, &mut diag) {
        let expected: Vec<f64> = (0..n).map(|i| hess[i][i]).collect();
        assert!(
            rel_diff(&diag, &expected) <= tol,
            "{name}: Hessian diagonal"
        );
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| hess[i][j].abs())
            .fold(0.0, common::nan_max);
        assert!(
            off <= tol,
            "{name}: claims a diagonal Hessian, off-diagonal {off:e}"
        );
    }
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn probabilities(n: usize, seed: u64) -> Vec<f64> {
    let mut r = rng(seed);
    (0..n).map(|_| r.random_range(0.05..0.95)).collect()
}

fn weights(n: usize, seed: u64) -> Vec<f64> {
    let mut r = rng(seed);
    (0..n).map(|_| r.random_range(0.1..2.0)).collect()
}

#[test]
fn squared_error_value_gradient_and_hessian_in_every_metric() {
    let n = 5;
    let mut r = rng(1);
    let (u, y) = (vec(&mut r, n), vec(&mut r, n));
    let res: Vec<f64> = y.iter().zip(&u).map(|(y, u)| y - u).collect();
    let w = weights(n, 2);
    let k = spd(&mut r, n, 0.5);

    let weighted = SquaredError::new(u.clone(), WeightedL2::new(w.clone()).unwrap()).unwrap();
    assert_eq!(weighted.target(), &u[..], "the target u it was given");
    assert_eq!(
        weighted.metric().weights(),
        &w[..],
        "the metric K it was given"
    );
    let by_hand: f64 = 0.5 * res.iter().zip(&w).map(|(r, w)| w * r * r).sum::<f64>();
    assert!((weighted.value(&y) - by_hand).abs() <= 1e-14 * by_hand);
    check_derivatives("SquaredError<WeightedL2>", &weighted, &y, 1e-3, 1e-9);
    let mut diag = vec![0.0; n];
    assert!(weighted.hessian_diagonal(&y, &mut diag));
    assert_eq!(diag, w, "Hessian of ½‖y − u‖²_W is W");

    let l2 = SquaredError::l2(u.clone()).unwrap();
    let by_hand = 0.5 * res.iter().map(|r| r * r).sum::<f64>() / n as f64;
    assert!(
        (l2.value(&y) - by_hand).abs() <= 1e-14 * by_hand,
        "1/(2m) Σ r²"
    );
    check_derivatives("SquaredError::l2", &l2, &y, 1e-3, 1e-9);

    let dense = SquaredError::new(u.clone(), DenseMetric::new(k.clone()).unwrap()).unwrap();
    let kr = common::matvec(&k, &res);
    let by_hand = 0.5 * res.iter().zip(&kr).map(|(a, b)| a * b).sum::<f64>();
    assert!((dense.value(&y) - by_hand).abs() <= 1e-14 * by_hand);
    check_derivatives("SquaredError<DenseMetric>", &dense, &y, 1e-3, 1e-9);
    assert!(!dense.hessian_diagonal(&y, &mut diag), "K is not diagonal");
    // Its Hessian K exists, so it can define the loss-Hessian (GGN) metric.
    assert!(dense.has_hessian());
    assert!(LossHessian.validate(n, &dense).is_ok());

    let euclid = SquaredError::new(u.clone(), Euclidean).unwrap();
    let by_hand = 0.5 * res.iter().map(|r| r * r).sum::<f64>();
    assert!((euclid.value(&y) - by_hand).abs() <= 1e-14 * by_hand);
    check_derivatives("SquaredError<Euclidean>", &euclid, &y, 1e-3, 1e-9);
}

#[test]
fn cross_entropy_value_gradient_and_its_fisher_metric() {
    let n = 6;
    let (v, w) = (probabilities(n, 4), weights(n, 5));
    let u = probabilities(n, 6);
    let loss = CrossEntropy::weighted(u.clone(), w.clone()).unwrap();
    let by_hand: f64 = (0..n)
        .map(|i| -w[i] * (u[i] * v[i].ln() + (1.0 - u[i]) * (1.0 - v[i]).ln()))
        .sum();
    assert!((loss.value(&v) - by_hand).abs() <= 1e-14 * by_hand);
    let mut g = vec![0.0; n];
    loss.gradient(&v, &mut g);
    let fd = fd_gradient(&|z| loss.value(z), &v, 1e-4);
    assert!(rel_diff(&g, &fd) <= 1e-9, "gradient vs differences");

    // The Fisher metric is the expected Hessian over labels u ~ Bernoulli(v):
    // F_ii = v_i H_ii(u = 1) + (1 − v_i) H_ii(u = 0), the Hessians by differences.
    let ones = CrossEntropy::weighted(vec![1.0; n], w.clone()).unwrap();
    let zeros = CrossEntropy::weighted(vec![0.0; n], w.clone()).unwrap();
    let (h1, h0) = (fd_hessian(&ones, &v, 1e-4), fd_hessian(&zeros, &v, 1e-4));
    let expected: Vec<f64> = (0..n)
        .map(|i| v[i] * h1[i][i] + (1.0 - v[i]) * h0[i][i])
        .collect();
    let mut fisher = vec![0.0; n];
    assert!(loss.hessian_diagonal(&v, &mut fisher));
    let e = rel_diff(&fisher, &expected);
    assert!(e <= 1e-8, "Fisher vs expected Hessian: {e:e}");
    // Where the labels equal the probabilities, the Fisher metric is the exact Hessian.
    let at_labels = CrossEntropy::weighted(v.clone(), w.clone()).unwrap();
    check_derivatives("CrossEntropy at u = v", &at_labels, &v, 1e-5, 1e-7);
    // The product is the diagonal times the vector, and the loss-Hessian metric is that product.
    let t = probabilities(n, 7);
    let mut ft = vec![0.0; n];
    loss.hessian_apply(&v, &t, &mut ft).unwrap();
    let by_hand: Vec<f64> = (0..n).map(|i| expected[i] * t[i]).collect();
    assert!(rel_diff(&ft, &by_hand) <= 1e-8);
    let mut mt = vec![0.0; n];
    let at = OutputPoint {
        outputs: &v,
        loss: &loss,
    };
    LossHessian.apply(&at, &t, &mut mt);
    assert_eq!(mt, ft, "LossHessian metric is the loss Hessian");
    let mut back = vec![0.0; n];
    LossHessian.solve(&at, &mt, &mut back).unwrap();
    assert!(
        rel_diff(&back, &t) <= 1e-14,
        "LossHessian solve inverts apply"
    );
}

#[test]
fn warped_toy_loss_value_and_gradient() {
    // ℓ(c) = ½‖f(c_u) − f(c)‖², f(c) = (1 + ω‖c − q‖²)(c − q) + q (docs/math.md §4).
    let f = |c: &[f64]| {
        let d = [c[0] - toys::Q[0], c[1] - toys::Q[1]];
        let s = 1.0 + toys::OMEGA * (d[0] * d[0] + d[1] * d[1]);
        [s * d[0] + toys::Q[0], s * d[1] + toys::Q[1]]
    };
    let loss = WarpedSquaredError::new(toys::TARGET);
    let toy = toys::non_l2();
    let mut r = rng(8);
    for _ in 0..4 {
        let c = vec(&mut r, 2);
        let (fu, fc) = (f(&toys::TARGET), f(&c));
        let by_hand = 0.5 * ((fu[0] - fc[0]).powi(2) + (fu[1] - fc[1]).powi(2));
        assert!((loss.value(&c) - by_hand).abs() <= 1e-14 * by_hand.max(1e-300));
        assert_eq!(toy.problem.loss().value(&c), loss.value(&c));
        check_derivatives("WarpedSquaredError", &loss, &c, 1e-3, 1e-9);
        check_derivatives("ToyLoss::Warped", toy.problem.loss(), &c, 1e-3, 1e-9);
    }
    // The squared toys' loss ½‖u − c‖²_K with K = diag(1, 10).
    let toy = toys::quadratic_manifold();
    let c = [0.3, -0.2];
    let by_hand = 0.5 * ((c[0] - 1.0_f64).powi(2) + 10.0 * (c[1] - 0.5_f64).powi(2));
    assert!((toy.problem.loss().value(&c) - by_hand).abs() <= 1e-15);
    check_derivatives("ToyLoss::Squared", toy.problem.loss(), &c, 1e-3, 1e-9);
}

#[test]
fn mini_batch_losses_and_metrics_are_rescaled_by_m_over_b() {
    // On the batch I (b of m samples, q outputs each) a loss is (m/b) Σ_{i∈I} ℓ_i and a
    // diagonal metric is (m/b) diag(w_I): both estimate the full sums.
    let (m, q) = (6, 2);
    let n = m * q;
    let batch = [1, 4];
    let rows: Vec<usize> = batch.iter().flat_map(|&i| [2 * i, 2 * i + 1]).collect();
    let scale = m as f64 / batch.len() as f64;
    let mut r = rng(9);
    let (u, y) = (vec(&mut r, n), vec(&mut r, n));
    let (w, v, labels) = (weights(n, 10), probabilities(n, 11), probabilities(n, 12));
    let y_i: Vec<f64> = rows.iter().map(|&i| y[i]).collect();
    let v_i: Vec<f64> = rows.iter().map(|&i| v[i]).collect();

    let sq = SquaredError::new(u.clone(), WeightedL2::new(w.clone()).unwrap()).unwrap();
    let by_hand: f64 = scale
        * rows
            .iter()
            .map(|&i| 0.5 * w[i] * (y[i] - u[i]).powi(2))
            .sum::<f64>();
    let sub = sq.select_samples(&batch, q, m).unwrap();
    assert!((sub.value(&y_i) - by_hand).abs() <= 1e-14 * by_hand);

    let metric = WeightedL2::new(w.clone())
        .unwrap()
        .select_samples(&batch, q, m);
    let expected: Vec<f64> = rows.iter().map(|&i| scale * w[i]).collect();
    assert_eq!(metric.unwrap().weights(), expected.as_slice());

    let ce = CrossEntropy::weighted(labels.clone(), w.clone()).unwrap();
    let sub = ce.select_samples(&batch, q, m).unwrap();
    let by_hand: f64 = scale
        * rows
            .iter()
            .map(|&i| -w[i] * (labels[i] * v[i].ln() + (1.0 - labels[i]) * (1.0 - v[i]).ln()))
            .sum::<f64>();
    assert!((sub.value(&v_i) - by_hand).abs() <= 1e-14 * by_hand);
    let mut fisher = vec![0.0; rows.len()];
    assert!(sub.hessian_diagonal(&v_i, &mut fisher));
    let expected: Vec<f64> = rows
        .iter()
        .map(|&i| scale * w[i] / (v[i] * (1.0 - v[i])))
        .collect();
    assert!(rel_diff(&fisher, &expected) <= 1e-14, "batch Fisher");

    assert!(sq.select_samples(&[6], q, m).is_err(), "index out of range");
    assert!(ce.select_samples(&[6], q, m).is_err(), "index out of range");
}

/// A loss made of closures is its closures and nothing more (docs/math.md §1 needs only
/// `ℓ` and `∇ℓ`): its size, value and gradient (`ℓ(y) = ¼Σy⁴`, `∇ℓ = y³`), every output
/// in its domain, and no Hessian — it says so (`has_hessian`, `hessian_diagonal`,
/// `hessian_apply`) instead of claiming one it leaves unwritten, and refuses mini-batches.
#[test]
fn a_closure_loss_is_its_closures_and_has_no_hessian() {
    let loss = FnLoss::new(
        Some(3),
        |y: &[f64]| y.iter().map(|v| v.powi(4)).sum::<f64>() / 4.0,
        |y: &[f64], g: &mut [f64]| g.iter_mut().zip(y).for_each(|(g, y)| *g = y.powi(3)),
    )
    .unwrap();
    let y = [1.0, -2.0, 0.5];
    assert_eq!(loss.dim(), Some(3));
    assert_eq!(loss.value(&y), (1.0 + 16.0 + 0.0625) / 4.0);
    let mut g = vec![0.0; 3];
    loss.gradient(&y, &mut g);
    assert_eq!(g, [1.0, -8.0, 0.125]);
    assert!(loss.check_outputs(&[1e300, -1e300, 0.0]).is_ok());
    assert!(!loss.has_hessian());
    let mut out = vec![0.0; 3];
    assert!(
        !loss.hessian_diagonal(&y, &mut out),
        "no Hessian, so no diagonal"
    );
    match loss.hessian_apply(&y, &[1.0; 3], &mut out) {
        Err(Error::Unsupported(msg)) => assert!(msg.contains("no Hessian"), "{msg}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    assert!(matches!(
        Loss::select_samples(&loss, &[0], 1, 3),
        Err(Error::Unsupported(_))
    ));
    assert_eq!(format!("{loss:?}"), "FnLoss { dim: Some(3) }");
    let any_size = FnLoss::new(None, |_: &[f64]| 0.0, |_: &[f64], _: &mut [f64]| {}).unwrap();
    assert_eq!(any_size.dim(), None);
}
