//! The block Gram product `Jᵀ diag(w) J T` for `k` tangents at once (issue 19, "block
//! versions for the Nyström sketch"): the `Mlp`'s one sample-chunked pass equals `k`
//! single jvp → `w` → vjp products to 1e-12 at chunk sizes 1, 7, m and one that does not
//! divide m, for block widths below, at and above one batch of tangents; the Gram
//! operator's block product (how the Nyström sketch takes `G Ω`) equals its columns; a
//! full-rank sketch through it reproduces the dense `Jᵀ W J`; and 1 and 2 threads give
//! bitwise the same block.

mod common;

use common::{in_pool, rel_diff, rng, vec};
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::matrix_free::LinOp;
use faer::{Mat, MatRef, Par};
use natgrad::check::jacobian_by_jvps;
use natgrad::linsolve::NystromSketch;
use natgrad::metric::{Euclidean, WeightedL2};
use natgrad::model::{Activation, Mlp, Model};
use natgrad::{FitProblem, Linearization, SquaredError};
use rand::Rng;

const TOL: f64 = 1e-12;
/// Samples: 7 divides it, 10 does not.
const M: usize = 42;

/// Scalar outputs (the stacked `δ` path: thin and GEMM first layers, identity and
/// nonlinear outputs, depth 1 to 3) and `q > 1` (the per-tangent chunk pass).
fn networks() -> Vec<Mlp> {
    use Activation::*;
    let cases: [(&[usize], &[Activation]); 5] = [
        (&[2, 9, 7, 1], &[Tanh, Tanh, Identity]),
        (&[6, 5, 1], &[Softplus, Sigmoid]),
        (&[3, 1], &[Tanh]),
        (&[5, 6, 3], &[Sigmoid, Tanh]),
        (&[2, 4, 5, 2], &[Tanh, Softplus, Identity]),
    ];
    let mut r = rng(23);
    cases
        .iter()
        .map(|(w, a)| {
            let x: Vec<f64> = (0..M * w[0]).map(|_| r.random_range(-1.5..1.5)).collect();
            // Dense limit 0: products by layers (tiny networks would otherwise hold `J`).
            Mlp::new(w, a, &x).unwrap().with_dense_limit(0)
        })
        .collect()
}

/// Column `j` of `out` against `Jᵀ diag(w) J t_j` by one whole-batch jvp and vjp.
fn column_errors<L: Linearization>(
    lin: &mut L,
    w: &[f64],
    t: MatRef<'_, f64>,
    out: &Mat<f64>,
) -> f64 {
    let (n, p) = (w.len(), t.nrows());
    let mut worst = 0.0_f64;
    for j in 0..t.ncols() {
        let tj: Vec<f64> = t.col(j).iter().copied().collect();
        let mut jt = vec![0.0; n];
        lin.jvp(&tj, &mut jt);
        jt.iter_mut().zip(w).for_each(|(v, w)| *v *= w);
        let mut single = vec![0.0; p];
        lin.vjp(&jt, &mut single);
        let block: Vec<f64> = out.col(j).iter().copied().collect();
        worst = worst.max(rel_diff(&block, &single));
    }
    worst
}

#[test]
fn block_product_equals_single_products_at_every_chunk_size() {
    let mut r = rng(3);
    for (net_i, net) in networks().into_iter().enumerate() {
        for chunk in [1, 7, M, 10] {
            let model = net.clone().with_gram_chunk(chunk);
            let (n, p) = (model.n_outputs(), model.n_params());
            let theta: Vec<f64> = vec(&mut r, p).iter().map(|v| 1.2 * v).collect();
            let w: Vec<f64> = (0..n).map(|_| r.random_range(0.1..2.0)).collect();
            let mut lin = model.linearize(&theta).unwrap();
            // One tangent, one batch of three, and 17 (more than one batch of 16).
            for k in [1, 3, 17] {
                let t = Mat::<f64>::from_fn(p, k, |_, _| r.random_range(-1.0..1.0));
                let mut out = Mat::<f64>::zeros(p, k);
                lin.gram_product_block(&w, t.as_ref(), Mat::zeros(n, k).as_mut(), out.as_mut());
                let e = column_errors(&mut lin, &w, t.as_ref(), &out);
                assert!(e <= TOL, "network {net_i}, chunk {chunk}, k = {k}: {e:e}");
            }
            // Tangents with strided columns (a transposed view).
            let tt = Mat::<f64>::from_fn(4, p, |_, _| r.random_range(-1.0..1.0));
            let mut out = Mat::<f64>::zeros(p, 4);
            let t = tt.as_ref().transpose();
            lin.gram_product_block(&w, t, Mat::zeros(n, 4).as_mut(), out.as_mut());
            let e = column_errors(&mut lin, &w, t, &out);
            assert!(e <= TOL, "network {net_i}, chunk {chunk}, strided T: {e:e}");
        }
    }
}

#[test]
fn a_network_too_wide_to_stack_equals_single_products() {
    // p = 66 281 > 2¹⁶: each tangent takes its own fused product.
    let mut r = rng(31);
    let x: Vec<f64> = (0..M * 2).map(|_| r.random_range(-1.5..1.5)).collect();
    let model = Mlp::with_hidden(&[2, 260, 250, 1], Activation::Tanh, &x)
        .unwrap()
        .with_gram_chunk(10);
    let (n, p) = (model.n_outputs(), model.n_params());
    let theta = model.init_params(3);
    let w: Vec<f64> = (0..n).map(|_| r.random_range(0.1..2.0)).collect();
    let mut lin = model.linearize(&theta).unwrap();
    let t = Mat::<f64>::from_fn(p, 3, |_, _| r.random_range(-1.0..1.0));
    let mut out = Mat::<f64>::zeros(p, 3);
    lin.gram_product_block(&w, t.as_ref(), Mat::zeros(n, 3).as_mut(), out.as_mut());
    let e = column_errors(&mut lin, &w, t.as_ref(), &out);
    assert!(e <= TOL, "{e:e}");
}

/// A weighted least-squares problem on `model` with random weights and targets.
fn problem(model: Mlp, seed: u64) -> FitProblem<Mlp, SquaredError, WeightedL2> {
    let mut r = rng(seed);
    let n = model.n_outputs();
    let w: Vec<f64> = (0..n).map(|_| r.random_range(0.1..2.0)).collect();
    let target = vec(&mut r, n);
    FitProblem::new(
        model,
        SquaredError::l2(target).unwrap(),
        WeightedL2::new(w).unwrap(),
    )
    .unwrap()
}

#[test]
fn gram_operator_block_equals_its_columns_for_diagonal_metrics() {
    let mut r = rng(5);
    for (net_i, net) in networks().into_iter().enumerate() {
        let model = net.with_gram_chunk(10);
        let p = model.n_params();
        let theta = model.init_params(2);
        let k = 6;
        let t = Mat::<f64>::from_fn(p, k, |_, _| r.random_range(-1.0..1.0));
        let check = |op: &dyn LinOp<f64>, apply_vec: &dyn Fn(&[f64], &mut [f64]), what: &str| {
            let mut out = Mat::<f64>::zeros(p, k);
            let mut mem = MemBuffer::new(op.apply_scratch(k, Par::Seq));
            op.apply(out.as_mut(), t.as_ref(), Par::Seq, MemStack::new(&mut mem));
            for j in 0..k {
                let tj: Vec<f64> = t.col(j).iter().copied().collect();
                let mut single = vec![0.0; p];
                apply_vec(&tj, &mut single);
                let bj: Vec<f64> = out.col(j).iter().copied().collect();
                let e = rel_diff(&bj, &single);
                assert!(e <= TOL, "network {net_i}, {what}, column {j}: {e:e}");
            }
        };
        let pb = problem(model.clone(), 7);
        let mut lin = pb.linearize(&theta).unwrap();
        let op = lin.gram(1e-3);
        check(&op, &|t, o| op.apply_vec(t, o), "WeightedL2");
        assert_eq!(
            op.products(),
            2 * k as u64,
            "k block products and k single ones"
        );
        let target = vec(&mut rng(8), model.n_outputs());
        let pe = FitProblem::new(model, SquaredError::l2(target).unwrap(), Euclidean).unwrap();
        let mut lin = pe.linearize(&theta).unwrap();
        let op = lin.gram(0.5);
        check(&op, &|t, o| op.apply_vec(t, o), "Euclidean");
    }
}

#[test]
fn full_rank_sketch_through_the_fused_block_reproduces_the_dense_gram() {
    for (net_i, net) in networks().into_iter().enumerate() {
        let model = net.with_gram_chunk(7);
        let (n, p) = (model.n_outputs(), model.n_params());
        let theta = model.init_params(4);
        let pb = problem(model, 9);
        let w: Vec<f64> = {
            let mut r = rng(9);
            (0..n).map(|_| r.random_range(0.1..2.0)).collect()
        };
        let mut lin = pb.linearize(&theta).unwrap();
        // The dense twin Jᵀ W J from unit-vector jvps and plain loops.
        let j = jacobian_by_jvps(&mut pb.model().linearize(&theta).unwrap(), n);
        let g = Mat::<f64>::from_fn(p, p, |a, b| {
            (0..n).map(|i| j[(i, a)] * w[i] * j[(i, b)]).sum()
        });
        let op = lin.gram(0.0);
        let sk = NystromSketch::build(&op, p, 3, 1.0, Par::Seq).unwrap();
        assert_eq!(op.products(), p as u64);
        let (u, lam) = (sk.basis(), sk.eigenvalues());
        let approx = Mat::<f64>::from_fn(p, p, |a, b| {
            (0..p).map(|k| u[(a, k)] * lam[k] * u[(b, k)]).sum()
        });
        let e = (&approx - &g).norm_l2() / g.norm_l2();
        assert!(e <= 1e-10, "network {net_i}: ‖Â − JᵀWJ‖ / ‖JᵀWJ‖ = {e:e}");
    }
}

/// Blocks of 5 (two batches) and 17 (two batches, one of 9) tangents on a scalar-output
/// network of 300 samples in chunks of 16 and a `q = 2` one, inside a rayon pool of
/// `threads` threads, as bits.
fn blocks_in_pool(threads: usize) -> Vec<Vec<u64>> {
    in_pool(threads, || {
        let mut r = rng(11);
        let mut bits = Vec::new();
        for widths in [&[3, 24, 24, 1][..], &[2, 16, 16, 2]] {
            let x: Vec<f64> = (0..widths[0] * 300)
                .map(|_| r.random_range(0.0..1.0))
                .collect();
            let model = Mlp::with_hidden(widths, Activation::Tanh, &x)
                .unwrap()
                .with_parallelism(Par::rayon(threads))
                .with_gram_chunk(16);
            let (n, p) = (model.n_outputs(), model.n_params());
            let theta = model.init_params(5);
            let w: Vec<f64> = (0..n).map(|_| r.random_range(0.1..1.0)).collect();
            let mut lin = model.linearize(&theta).unwrap();
            for k in [5, 17] {
                let t = Mat::<f64>::from_fn(p, k, |_, _| r.random_range(-1.0..1.0));
                let mut out = Mat::<f64>::zeros(p, k);
                lin.gram_product_block(&w, t.as_ref(), Mat::zeros(n, k).as_mut(), out.as_mut());
                bits.push(
                    out.col_iter()
                        .flat_map(|c| c.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
                        .collect(),
                );
            }
        }
        bits
    })
}

#[test]
fn one_and_two_threads_give_the_same_block_bitwise() {
    common::assert_same_bits_at_one_and_two_threads("block", blocks_in_pool);
}

/// A linear model whose block Gram product returns NaN while its jvp and vjp are finite.
struct NanBlock(natgrad::model::LinearModel);

struct NanBlockLin<'a>(natgrad::model::LinearLinearization<'a>);

impl Model for NanBlock {
    type Linearization<'a> = NanBlockLin<'a>;
    fn n_params(&self) -> usize {
        self.0.n_params()
    }
    fn n_outputs(&self) -> usize {
        self.0.n_outputs()
    }
    fn linearize(&self, theta: &[f64]) -> natgrad::Result<NanBlockLin<'_>> {
        Ok(NanBlockLin(self.0.linearize(theta)?))
    }
}

impl Linearization for NanBlockLin<'_> {
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
    fn gram_product_block(
        &mut self,
        _w: &[f64],
        _t: MatRef<'_, f64>,
        _s: faer::MatMut<'_, f64>,
        mut out: faer::MatMut<'_, f64>,
    ) {
        out.fill(f64::NAN);
    }
}

#[test]
fn a_non_finite_block_product_is_named_as_such() {
    let mut r = rng(12);
    let (n, p) = (20, 6);
    let a = Mat::<f64>::from_fn(n, p, |_, _| r.random_range(-1.0..1.0));
    let model = NanBlock(natgrad::model::LinearModel::dense(a).unwrap());
    let problem = FitProblem::new(
        model,
        SquaredError::l2(vec(&mut r, n)).unwrap(),
        WeightedL2::uniform(n).unwrap(),
    )
    .unwrap();
    let mut lin = problem.linearize(&vec(&mut r, p)).unwrap();
    let op = lin.gram(1e-3);
    let t = Mat::<f64>::from_fn(p, 3, |_, _| r.random_range(-1.0..1.0));
    let mut out = Mat::<f64>::zeros(p, 3);
    let mut mem = MemBuffer::new(op.apply_scratch(3, Par::Seq));
    op.apply(out.as_mut(), t.as_ref(), Par::Seq, MemStack::new(&mut mem));
    drop(op);
    let fault = lin.fault().expect("the NaN block is recorded").to_string();
    assert!(fault.contains("gram_product_block"), "{fault}");
}
