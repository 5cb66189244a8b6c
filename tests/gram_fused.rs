//! The fused, sample-chunked Gram product `Σ_c J_cᵀ W_c J_c t` (issue 19, acceptance 1):
//! equal to jvp → metric → vjp and to the dense twin `Jᵀ M J` at chunk sizes 1, 7, m and
//! one that does not divide m, for the MLP under every diagonal metric (weighted L²,
//! Euclidean, the Fisher metric of the cross-entropy), and bitwise the same at 1 and 2
//! threads. The other models take the trait's default (jvp → metric → vjp), which
//! `tests/gram.rs` checks against the twin for every metric.

mod common;

use common::{gram_twin, rel_diff, rng, vec};
use faer::{Mat, Par};
use natgrad::check::{complex_step_jvp, jacobian_by_jvps, metric_matrix};
use natgrad::linsolve::DirectionSolver;
use natgrad::linsolve::Rhs;
use natgrad::loss::{CrossEntropy, Loss};
use natgrad::metric::{DenseMetric, Euclidean, LossHessian, Metric, WeightedL2};
use natgrad::model::{Activation, Mlp, Model};
use natgrad::{CgSettings, FitProblem, LinearSolver, Linearization, SquaredError};
use rand::Rng;

const TOL: f64 = 1e-12;
/// Samples of the test networks: 7 divides it, 10 does not.
const M: usize = 42;

/// Networks covering every branch of the fused product: a thin first layer (`d + 1 ≤ 4`)
/// and a GEMM one, a scalar output (the rank-one step below it) and `q = 3`, identity and
/// nonlinear outputs, depths 1 to 4.
fn networks() -> Vec<Mlp> {
    use Activation::*;
    let cases: [(&[usize], &[Activation]); 6] = [
        (&[2, 9, 7, 1], &[Tanh, Tanh, Identity]),
        (&[5, 6, 3], &[Softplus, Sigmoid]),
        (&[3, 4], &[Tanh]),
        (&[6, 5, 4, 6, 2], &[Sigmoid, Tanh, Softplus, Tanh]),
        (&[1, 8, 1], &[Tanh, Sigmoid]),
        (&[4, 3, 5, 3], &[Softplus, Identity, Tanh]),
    ];
    let mut r = rng(19);
    cases
        .iter()
        .map(|(w, a)| {
            let x: Vec<f64> = (0..M * w[0]).map(|_| r.random_range(-1.5..1.5)).collect();
            // Dense limit 0: products by layers (tiny networks would otherwise hold `J`).
            Mlp::new(w, a, &x).unwrap().with_dense_limit(0)
        })
        .collect()
}

fn theta_for(model: &Mlp, seed: u64) -> Vec<f64> {
    let mut r = rng(seed);
    vec(&mut r, model.n_params())
        .iter()
        .map(|v| 1.2 * v)
        .collect()
}

/// `Jᵀ diag(w) J t` unfused: one whole-batch jvp, `w ⊙`, one whole-batch vjp.
fn unfused<L: Linearization>(lin: &mut L, w: &[f64], t: &[f64], n: usize) -> Vec<f64> {
    let mut jt = vec![0.0; n];
    lin.jvp(t, &mut jt);
    jt.iter_mut().zip(w).for_each(|(v, w)| *v *= w);
    let mut out = vec![0.0; t.len()];
    lin.vjp(&jt, &mut out);
    out
}

/// The dense twin `Jᵀ diag(w) J t` with plain loops, `J` from unit-vector jvps.
fn twin<L: Linearization>(lin: &mut L, w: &[f64], t: &[f64], n: usize) -> Vec<f64> {
    let j = jacobian_by_jvps(lin, n);
    let jt: Vec<f64> = (0..n)
        .map(|r| w[r] * (0..t.len()).map(|c| j[(r, c)] * t[c]).sum::<f64>())
        .collect();
    (0..t.len())
        .map(|c| (0..n).map(|r| j[(r, c)] * jt[r]).sum())
        .collect()
}

#[test]
fn fused_product_equals_jvp_metric_vjp_at_every_chunk_size() {
    let mut r = rng(5);
    for (k, net) in networks().into_iter().enumerate() {
        let n = net.n_outputs();
        let theta = theta_for(&net, 30 + k as u64);
        // Weighted L² (positive weights), Euclidean (ones).
        let weights = [
            (0..n)
                .map(|_| r.random_range(0.1..2.0))
                .collect::<Vec<f64>>(),
            vec![1.0; n],
        ];
        for chunk in [1, 7, M, 10, 3 * M] {
            let model = net.clone().with_gram_chunk(chunk);
            assert_eq!(model.gram_chunk(), chunk.min(M));
            let mut lin = model.linearize(&theta).unwrap();
            for w in &weights {
                let t = vec(&mut r, model.n_params());
                let mut fused = vec![0.0; t.len()];
                lin.gram_product(w, &t, &mut vec![0.0; n], &mut fused);
                let reference = unfused(&mut lin, w, &t, n);
                let e = rel_diff(&fused, &reference);
                assert!(e <= TOL, "network {k}, chunk {chunk}: {e:e} from jvp→W→vjp");
                let e = rel_diff(&fused, &twin(&mut lin, w, &t, n));
                assert!(e <= TOL, "network {k}, chunk {chunk}: {e:e} from Jᵀ W J t");
            }
        }
    }
}

/// A network with more than `4 · 4096` parameters, so that the group sums are added to the
/// output block by block in parallel (`mlp/fused.rs`, `add_group_sums`): 96 samples in
/// chunks of 8 are 12 chunks in 6 groups. Equal to jvp → W → vjp, at 1 and 2 threads.
#[test]
fn a_wide_network_adds_its_group_sums_exactly() {
    for threads in [1, 2] {
        common::in_pool(threads, || {
            let mut r = rng(21);
            let x: Vec<f64> = (0..2 * 96).map(|_| r.random_range(0.0..1.0)).collect();
            let model = Mlp::with_hidden(&[2, 128, 128, 1], Activation::Tanh, &x)
                .unwrap()
                .with_parallelism(Par::rayon(threads))
                .with_gram_chunk(8);
            assert!(model.n_params() > 4 * 4096);
            let (n, p) = (model.n_outputs(), model.n_params());
            let theta = model.init_params(3);
            let mut lin = model.linearize(&theta).unwrap();
            let w: Vec<f64> = (0..n).map(|_| r.random_range(0.1..2.0)).collect();
            let t = vec(&mut r, p);
            let mut fused = vec![0.0; p];
            lin.gram_product(&w, &t, &mut vec![0.0; n], &mut fused);
            let e = rel_diff(&fused, &unfused(&mut lin, &w, &t, n));
            assert!(e <= TOL, "{threads} threads: {e:e} from jvp→W→vjp");
        });
    }
}

/// `J` column by column from the complex step of the reference forward pass (shares no
/// code with the products under test).
fn jacobian_complex_step(model: &Mlp, theta: &[f64]) -> Mat<f64> {
    let (n, p) = (model.n_outputs(), model.n_params());
    let mut e = vec![0.0; p];
    let mut j = Mat::zeros(n, p);
    for c in 0..p {
        e[c] = 1.0;
        let col = complex_step_jvp(|z, y| model.forward_reference(z, y), theta, &e, n);
        e[c] = 0.0;
        col.iter().enumerate().for_each(|(r, v)| j[(r, c)] = *v);
    }
    j
}

/// The sample-space product `J Jᵀ s` and the Gram diagonal `Σ_i w_i J_ij²` equal the
/// complex-step Jacobian's, and vjp → jvp, at chunk sizes 1, 7, m, 10 (not dividing m):
/// the chunk sums over the sensitivities for a scalar output, the whole-batch products
/// for `q > 1`.
#[test]
fn sample_product_and_gram_diagonal_equal_the_dense_jacobian_at_every_chunk_size() {
    let mut r = rng(11);
    for (k, net) in networks().into_iter().enumerate() {
        let (n, p) = (net.n_outputs(), net.n_params());
        let theta = theta_for(&net, 60 + k as u64);
        let j = jacobian_complex_step(&net, &theta);
        let s = vec(&mut r, n);
        let w: Vec<f64> = (0..n).map(|_| r.random_range(0.1..2.0)).collect();
        let jts: Vec<f64> = (0..p)
            .map(|c| (0..n).map(|i| j[(i, c)] * s[i]).sum())
            .collect();
        let kernel: Vec<f64> = (0..n)
            .map(|i| (0..p).map(|c| j[(i, c)] * jts[c]).sum())
            .collect();
        let diagonal: Vec<f64> = (0..p)
            .map(|c| (0..n).map(|i| w[i] * j[(i, c)] * j[(i, c)]).sum())
            .collect();
        for chunk in [1, 7, M, 10] {
            let model = net.clone().with_gram_chunk(chunk);
            let mut lin = model.linearize(&theta).unwrap();
            let mut out = vec![0.0; n];
            lin.sample_gram_product(&s, &mut vec![0.0; p], &mut out);
            let e = rel_diff(&out, &kernel);
            assert!(e <= TOL, "network {k}, chunk {chunk}: J Jᵀ s off by {e:e}");
            let mut by_two = vec![0.0; n];
            let mut jt = vec![0.0; p];
            lin.vjp(&s, &mut jt);
            lin.jvp(&jt, &mut by_two);
            let e = rel_diff(&out, &by_two);
            assert!(e <= TOL, "network {k}, chunk {chunk}: {e:e} from vjp → jvp");
            let mut diag = vec![0.0; p];
            assert!(lin.gram_diagonal(&w, &mut diag));
            let e = rel_diff(&diag, &diagonal);
            assert!(
                e <= TOL,
                "network {k}, chunk {chunk}: Gram diagonal off by {e:e}"
            );
        }
    }
}

/// Applies the damped Gram operator of `problem` to `k` vectors and compares with the
/// dense twin `JᵀMJ + λI` (`M` from the metric's own products).
fn check_operator<Lo: Loss, Me: Metric>(problem: &FitProblem<Mlp, Lo, Me>, seed: u64) -> f64 {
    let (n, p) = (problem.n_outputs(), problem.n_params());
    let theta = theta_for(problem.model(), seed);
    let mut lin = problem.linearize(&theta).unwrap();
    let j = jacobian_by_jvps(&mut problem.model().linearize(&theta).unwrap(), n);
    let g = gram_twin(&j, &metric_matrix(problem.metric(), &lin.point(), n), 1e-3);
    let op = lin.gram(1e-3);
    let mut r = rng(seed);
    let mut worst: f64 = 0.0;
    for _ in 0..3 {
        let t = vec(&mut r, p);
        let mut out = vec![0.0; p];
        op.apply_vec(&t, &mut out);
        worst = worst.max(rel_diff(&out, &common::matvec(&g, &t)));
    }
    worst
}

#[test]
fn gram_operator_with_chunked_products_equals_twin_for_every_metric() {
    for chunk in [1, 7, M, 10] {
        for (k, net) in networks().into_iter().enumerate() {
            let model = net.with_gram_chunk(chunk);
            let n = model.n_outputs();
            let target: Vec<f64> = (0..n).map(|i| (0.3 * i as f64).sin()).collect();
            let seed = 60 + k as u64;
            let w: Vec<f64> = (0..n).map(|i| 0.2 + (i % 5) as f64 / 4.0).collect();
            let l2 = FitProblem::new(
                model.clone(),
                SquaredError::l2(target.clone()).unwrap(),
                WeightedL2::new(w).unwrap(),
            )
            .unwrap();
            assert!(check_operator(&l2, seed) <= TOL, "WeightedL2, {k}, {chunk}");
            let loss = SquaredError::new(target.clone(), Euclidean).unwrap();
            let eu = FitProblem::new(model.clone(), loss, Euclidean).unwrap();
            assert!(check_operator(&eu, seed) <= TOL, "Euclidean, {k}, {chunk}");
            // A non-diagonal metric keeps the unfused products.
            let k_dense = Mat::from_fn(n, n, |a, b| match a.abs_diff(b) {
                0 => 2.0,
                1 => 0.5,
                _ => 0.0,
            });
            let dense = DenseMetric::new(k_dense).unwrap();
            let dm = FitProblem::new(model.clone(), SquaredError::l2(target).unwrap(), dense);
            assert!(
                check_operator(&dm.unwrap(), seed) <= TOL,
                "Dense, {k}, {chunk}"
            );
            // The Fisher metric of the cross-entropy needs outputs in (0, 1).
            let sigmoid_out = *model.activations().last().unwrap() == Activation::Sigmoid;
            if sigmoid_out {
                let labels: Vec<f64> = (0..n).map(|i| (i % 2) as f64).collect();
                let ce = FitProblem::new(model, CrossEntropy::new(labels).unwrap(), LossHessian)
                    .unwrap();
                assert!(
                    check_operator(&ce, seed) <= TOL,
                    "LossHessian(CE), {k}, {chunk}"
                );
            }
        }
    }
}

#[test]
fn the_dense_jacobian_path_keeps_the_product() {
    // A tiny network within the dense limit holds `J`: the product is J's, unchunked.
    let net = networks().swap_remove(0).with_dense_limit(1 << 16);
    let model = net.with_gram_chunk(7);
    let n = model.n_outputs();
    let theta = theta_for(&model, 3);
    let mut lin = model.linearize(&theta).unwrap();
    let t = vec(&mut rng(4), model.n_params());
    let w = vec![0.5; n];
    let mut out = vec![0.0; t.len()];
    lin.gram_product(&w, &t, &mut vec![0.0; n], &mut out);
    assert!(rel_diff(&out, &twin(&mut lin, &w, &t, n)) <= TOL);
}

/// Fused products of three tangents, the sample-space product, the Gram diagonal and a
/// 20-iteration CG direction through the Gram operator, inside a rayon pool of `threads` threads, as bits. `[3, 24, 24, 2]` on 300
/// samples in chunks of 16 has 19 chunks in 7 groups; the default chunk of the
/// `ng_step_bench` M network (2-64-64-1, 2048 samples) has 26 chunks in 7 groups.
fn run_in_pool(threads: usize) -> Vec<Vec<u64>> {
    common::in_pool(threads, || {
        let mut r = rng(9);
        let mut bits = Vec::new();
        for (widths, m, chunk) in [
            (&[3, 24, 24, 2][..], 300, Some(16)),
            (&[2, 64, 64, 1], 2048, None),
        ] {
            let x: Vec<f64> = (0..widths[0] * m)
                .map(|_| r.random_range(0.0..1.0))
                .collect();
            let mut model = Mlp::with_hidden(widths, Activation::Tanh, &x)
                .unwrap()
                .with_parallelism(Par::rayon(threads));
            if let Some(c) = chunk {
                model = model.with_gram_chunk(c);
            }
            assert!(model.gram_chunk() < m / 8, "several groups of chunks");
            let (n, p) = (model.n_outputs(), model.n_params());
            let theta = model.init_params(5);
            let w: Vec<f64> = (0..n).map(|_| r.random_range(0.1..1.0)).collect();
            let target: Vec<f64> = (0..n).map(|_| r.random_range(-1.0..1.0)).collect();
            let problem = FitProblem::new(
                model,
                SquaredError::l2(target).unwrap(),
                WeightedL2::new(w.clone()).unwrap(),
            )
            .unwrap();
            let mut lin = problem.linearize(&theta).unwrap();
            let mut raw = problem.model().linearize(&theta).unwrap();
            for _ in 0..3 {
                let mut out = vec![0.0; p];
                let t = vec(&mut r, p);
                raw.gram_product(&w, &t, &mut vec![0.0; n], &mut out);
                bits.push(common::bits(&out));
            }
            let (s, mut out) = (vec(&mut r, n), vec![0.0; n]);
            raw.sample_gram_product(&s, &mut vec![0.0; p], &mut out);
            bits.push(common::bits(&out));
            let mut diag = vec![0.0; p];
            raw.gram_diagonal(&w, &mut diag);
            bits.push(common::bits(&diag));
            let rhs = lin.output_gradient().to_vec();
            let mut d = vec![0.0; p];
            let cg = LinearSolver::Cg(CgSettings::fixed_iterations(20));
            let rhs = Rhs::Cotangent {
                r: &rhs,
                jt_r: None,
            };
            let mut cache = DirectionSolver::default();
            cache
                .set_linear_solver(cg.clone())
                .solve_from(&mut lin, rhs, 1e-3, &mut d)
                .unwrap();
            bits.push(common::bits(&d));
        }
        bits
    })
}

#[test]
fn one_and_two_threads_agree_bitwise() {
    common::assert_same_bits_at_one_and_two_threads("result", run_in_pool);
}

/// A linear model whose fused Gram product returns NaN while its jvp and vjp are finite.
struct NanGram(natgrad::model::LinearModel);

struct NanGramLin<'a>(natgrad::model::LinearLinearization<'a>);

impl Model for NanGram {
    type Linearization<'a> = NanGramLin<'a>;
    fn n_params(&self) -> usize {
        self.0.n_params()
    }
    fn n_outputs(&self) -> usize {
        self.0.n_outputs()
    }
    fn linearize(&self, theta: &[f64]) -> natgrad::Result<NanGramLin<'_>> {
        Ok(NanGramLin(self.0.linearize(theta)?))
    }
}

impl Linearization for NanGramLin<'_> {
    fn n_params(&self) -> usize {
        self.0.n_params()
    }
    fn outputs(&self) -> &[f64] {
        self.0.outputs()
    }
    fn jvp(&mut self, t: &[f64], out: &mut [f64]) {
        self.0.jvp(t, out)
    }
    fn vjp(&mut self, s: &[f64], out: &mut [f64]) {
        self.0.vjp(s, out)
    }
    fn gram_product(&mut self, _w: &[f64], _t: &[f64], _s: &mut [f64], out: &mut [f64]) {
        out.fill(f64::NAN);
    }
}

#[test]
fn a_non_finite_fused_product_is_named_as_such() {
    let mut r = rng(12);
    let (n, p) = (20, 6);
    let model = NanGram(natgrad::model::LinearModel::dense(common::mat(&mut r, n, p)).unwrap());
    let problem = FitProblem::new(
        model,
        SquaredError::l2(vec(&mut r, n)).unwrap(),
        WeightedL2::uniform(n).unwrap(),
    )
    .unwrap();
    let mut lin = problem.linearize(&vec(&mut r, p)).unwrap();
    let mut out = vec![0.0; p];
    lin.gram(1e-3).apply_vec(&vec(&mut r, p), &mut out);
    let fault = lin
        .fault()
        .expect("the NaN product is recorded")
        .to_string();
    assert!(fault.contains("gram_product"), "{fault}");
}
