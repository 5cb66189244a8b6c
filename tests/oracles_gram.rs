//! The Gram operator (`src/gram.rs`, docs/math.md §2–3) on a 3 × 2 problem small enough to
//! write every product by hand: what it reports about itself (damping, space, size,
//! transport, products, `Debug`), which product it uses (the model's fused `gram_product`
//! exactly when the metric is diagonal), and a sample-space metric without an inverse.
//! Survivors of cargo-mutants on `gram.rs` (issue 20 acceptance 2).

mod common;

use common::rel_diff;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::matrix_free::LinOp;
use faer::Par;
use faer::{Mat, MatMut, MatRef};
use natgrad::gram::{dense_gram, dense_jacobian, JacobianSource, Space};
use natgrad::metric::{DenseMetric, Metric, OutputPoint, WeightedL2};
use natgrad::model::{Linearization, Model};
use natgrad::{FitProblem, SquaredError};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// `y_i = ½ Σ_j A_ij θ_j²` with `A = [[1, 2], [0, 1], [3, −1]]`, so `J(θ) = A diag(θ)`
/// depends on θ; its linearisation counts the calls of its fused `gram_product` (computed
/// as `Jᵀ diag(w) J t`, the same value as the default).
struct Linear3x2 {
    fused_calls: AtomicUsize,
    /// Calls of `jvp_block` (each with more than one column here).
    block_calls: AtomicUsize,
}

const A: [[f64; 2]; 3] = [[1.0, 2.0], [0.0, 1.0], [3.0, -1.0]];

struct Lin3x2<'a> {
    model: &'a Linear3x2,
    theta: Vec<f64>,
    y: Vec<f64>,
}

impl Model for Linear3x2 {
    type Linearization<'a> = Lin3x2<'a>;
    fn n_params(&self) -> usize {
        2
    }
    fn n_outputs(&self) -> usize {
        3
    }
    fn linearize(&self, theta: &[f64]) -> natgrad::Result<Lin3x2<'_>> {
        let y = (0..3)
            .map(|i| 0.5 * (A[i][0] * theta[0].powi(2) + A[i][1] * theta[1].powi(2)))
            .collect();
        Ok(Lin3x2 {
            model: self,
            theta: theta.to_vec(),
            y,
        })
    }
}

impl Linearization for Lin3x2<'_> {
    fn n_params(&self) -> usize {
        2
    }
    fn outputs(&self) -> &[f64] {
        &self.y
    }
    fn jvp(&mut self, t: &[f64], out: &mut [f64]) {
        let th = &self.theta;
        for (i, o) in out.iter_mut().enumerate() {
            *o = A[i][0] * th[0] * t[0] + A[i][1] * th[1] * t[1];
        }
    }
    fn vjp(&mut self, s: &[f64], out: &mut [f64]) {
        for (j, o) in out.iter_mut().enumerate() {
            *o = self.theta[j] * (0..3).map(|i| A[i][j] * s[i]).sum::<f64>();
        }
    }
    fn jvp_block(&mut self, t: MatRef<'_, f64>, mut out: MatMut<'_, f64>) {
        self.model.block_calls.fetch_add(1, Relaxed);
        for j in 0..t.ncols() {
            let tj: Vec<f64> = t.col(j).iter().copied().collect();
            let mut o = vec![0.0; 3];
            self.jvp(&tj, &mut o);
            (0..3).for_each(|i| out[(i, j)] = o[i]);
        }
    }
    fn gram_product(&mut self, w: &[f64], t: &[f64], scratch: &mut [f64], out: &mut [f64]) {
        self.model.fused_calls.fetch_add(1, Relaxed);
        self.jvp(t, scratch);
        scratch.iter_mut().zip(w).for_each(|(s, w)| *s *= w);
        self.vjp(scratch, out);
    }
}

fn model() -> Linear3x2 {
    Linear3x2 {
        fused_calls: AtomicUsize::new(0),
        block_calls: AtomicUsize::new(0),
    }
}

/// `K t` for a dense `K` written row by row.
fn mat_vec(k: &[[f64; 3]; 3], t: &[f64]) -> Vec<f64> {
    k.iter()
        .map(|row| row.iter().zip(t).map(|(a, b)| a * b).sum())
        .collect()
}

/// `J(θ) t = A diag(θ) t` by hand.
fn jac_t(theta: &[f64], t: &[f64]) -> Vec<f64> {
    (0..3)
        .map(|i| A[i][0] * theta[0] * t[0] + A[i][1] * theta[1] * t[1])
        .collect()
}

/// `J(θ)ᵀ s = diag(θ) Aᵀ s` by hand.
fn jac_transpose_s(theta: &[f64], s: &[f64]) -> Vec<f64> {
    (0..2)
        .map(|j| theta[j] * (0..3).map(|i| A[i][j] * s[i]).sum::<f64>())
        .collect()
}

/// `J(θ_k)ᵀ K J(θ_prev) t + λt` by hand (the Gram product for `θ_prev = θ_k`).
fn mixed_gram(k: &[[f64; 3]; 3], lambda: f64, th: (&[f64], &[f64]), t: &[f64]) -> Vec<f64> {
    let kjt = mat_vec(k, &jac_t(th.1, t));
    let mut out = jac_transpose_s(th.0, &kjt);
    out.iter_mut().zip(t).for_each(|(o, t)| *o += lambda * t);
    out
}

const THETA: [f64; 2] = [0.75, -1.5];

fn param_gram(k: &[[f64; 3]; 3], lambda: f64, t: &[f64]) -> Vec<f64> {
    mixed_gram(k, lambda, (&THETA, &THETA), t)
}

const W: [f64; 3] = [0.5, 2.0, 4.0];

fn diag_w() -> [[f64; 3]; 3] {
    [[W[0], 0.0, 0.0], [0.0, W[1], 0.0], [0.0, 0.0, W[2]]]
}

#[test]
fn gram_operator_reports_its_damping_space_size_and_products() {
    let pb = FitProblem::new(
        model(),
        SquaredError::l2(vec![1.0, 0.0, 2.0]).unwrap(),
        WeightedL2::new(W.to_vec()).unwrap(),
    )
    .unwrap();
    let mut lin = pb.linearize(&THETA).unwrap();
    let before = pb.evaluations();
    let t = [1.5, -0.5];
    {
        let op = lin.gram(0.5);
        assert_eq!(op.damping(), 0.5);
        assert_eq!(
            (op.space(), op.dim(), op.is_transport()),
            (Space::Params, 2, false)
        );
        assert_eq!(
            format!("{op:?}"),
            "GramOperator { n: 3, p: 2, damping: 0.5, space: Params }"
        );
        let mut out = [0.0; 2];
        op.apply_vec(&t, &mut out);
        let want = param_gram(&diag_w(), 0.5, &t);
        assert!(rel_diff(&out, &want) <= 1e-15, "{out:?} vs {want:?}");
        op.apply_vec(&t, &mut out);
        assert_eq!(op.products(), 2);
        assert!(!op.metric_failed());
    }
    let after = pb.evaluations();
    assert_eq!((after.jvp - before.jvp, after.vjp - before.vjp), (2, 2));

    // Sample space: (AAᵀ + λW⁻¹) s.
    let op = lin.sample_gram(0.5);
    assert_eq!(
        (op.space(), op.dim(), op.damping()),
        (Space::Samples, 3, 0.5)
    );
    let s = [1.0, -2.0, 0.5];
    let mut out = [0.0; 3];
    op.apply_vec(&s, &mut out);
    let jjs = jac_t(&THETA, &jac_transpose_s(&THETA, &s));
    let want: Vec<f64> = (0..3).map(|i| jjs[i] + 0.5 * s[i] / W[i]).collect();
    assert!(rel_diff(&out, &want) <= 1e-15, "{out:?} vs {want:?}");
    assert!(!op.metric_failed());
    drop(op);

    // Transport: J_kᵀ M J_{k−1} t, undamped, one vector and (as faer's LinOp) a block.
    let prev_theta = [0.5, 2.0];
    let mut prev = pb.linearize(&prev_theta).unwrap();
    let op = lin.transport_gram(&mut prev).unwrap();
    assert!(op.is_transport());
    assert_eq!(op.damping(), 0.0);
    let mut out = [0.0; 2];
    op.apply_vec(&t, &mut out);
    let want = mixed_gram(&diag_w(), 0.0, (&THETA, &prev_theta), &t);
    assert!(rel_diff(&out, &want) <= 1e-15, "{out:?} vs {want:?}");
    let cols = [[1.0, 0.5], [-2.0, 3.0]];
    let got = apply_block(&op, &cols, false);
    for (j, c) in cols.iter().enumerate() {
        let want = mixed_gram(&diag_w(), 0.0, (&THETA, &prev_theta), c);
        assert!(
            rel_diff(&got[j], &want) <= 1e-15,
            "block column {j}: {:?}",
            got[j]
        );
    }
}

/// `op` applied to the columns `cols` as a faer `LinOp` (`conj_apply` when `conj`).
fn apply_block<O: LinOp<f64>>(op: &O, cols: &[[f64; 2]], conj: bool) -> Vec<Vec<f64>> {
    let k = cols.len();
    let rhs = Mat::from_fn(2, k, |i, j| cols[j][i]);
    let mut out = Mat::from_fn(2, k, |_, _| f64::NAN);
    let mut mem = MemBuffer::new(op.apply_scratch(k, Par::Seq));
    let stack = MemStack::new(&mut mem);
    match conj {
        false => op.apply(out.as_mut(), rhs.as_ref(), Par::Seq, stack),
        true => op.conj_apply(out.as_mut(), rhs.as_ref(), Par::Seq, stack),
    }
    (0..k)
        .map(|j| (0..2).map(|i| out[(i, j)]).collect())
        .collect()
}

#[test]
fn gram_operator_is_a_square_symmetric_linop_in_both_spaces() {
    // As faer sees it: p × p (n × n in sample space), a block of columns through `apply`
    // and `conj_apply` (the operator is symmetric) equal to the hand products.
    let pb = FitProblem::new(
        model(),
        SquaredError::l2(vec![1.0, 0.0, 2.0]).unwrap(),
        WeightedL2::new(W.to_vec()).unwrap(),
    )
    .unwrap();
    let mut lin = pb.linearize(&THETA).unwrap();
    let op = lin.gram(0.5);
    assert_eq!((op.nrows(), op.ncols()), (2, 2));
    let cols = [[1.0, 0.5], [-2.0, 3.0], [0.0, 1.0]];
    for conj in [false, true] {
        let got = apply_block(&op, &cols, conj);
        for (j, c) in cols.iter().enumerate() {
            let want = param_gram(&diag_w(), 0.5, c);
            assert!(rel_diff(&got[j], &want) <= 1e-15, "conj {conj}, column {j}");
        }
    }
    drop(op);
    let op = lin.sample_gram(0.5);
    assert_eq!((op.nrows(), op.ncols()), (3, 3));
}

#[test]
fn dense_jacobian_says_how_it_was_built() {
    // No dense Jacobian from the model: p = 2 ≤ n = 3, so 2 jvps (not 3 vjps).
    let m = model();
    let mut lin = m.linearize(&THETA).unwrap();
    let (j, source) = dense_jacobian(&mut lin, 3);
    assert_eq!(source, JacobianSource::Jvps(2));
    for (i, row) in A.iter().enumerate() {
        for (c, a) in row.iter().enumerate() {
            assert_eq!(j[(i, c)], a * THETA[c]);
        }
    }
}

#[test]
fn a_diagonal_metric_uses_the_models_fused_product_and_a_dense_one_does_not() {
    // Parameter space with diag(M) known: one call of `Linearization::gram_product` per
    // product (the sample-chunked, fused product of issue 19); a dense K: jvp, K, vjp.
    let pb = FitProblem::new(
        model(),
        SquaredError::l2(vec![1.0, 0.0, 2.0]).unwrap(),
        WeightedL2::new(W.to_vec()).unwrap(),
    )
    .unwrap();
    let mut lin = pb.linearize(&THETA).unwrap();
    let op = lin.gram(0.25);
    let mut out = [0.0; 2];
    for _ in 0..3 {
        op.apply_vec(&[1.0, 2.0], &mut out);
    }
    assert_eq!(pb.model().fused_calls.load(Relaxed), 3);
    let sample = lin.sample_gram(0.25);
    let mut out3 = [0.0; 3];
    sample.apply_vec(&[1.0, 2.0, 3.0], &mut out3);
    assert_eq!(
        pb.model().fused_calls.load(Relaxed),
        3,
        "not in sample space"
    );

    let k = [[2.0, 0.5, 0.0], [0.5, 1.0, 0.25], [0.0, 0.25, 3.0]];
    let pb = FitProblem::new(
        model(),
        SquaredError::l2(vec![1.0, 0.0, 2.0]).unwrap(),
        DenseMetric::new(Mat::from_fn(3, 3, |i, j| k[i][j])).unwrap(),
    )
    .unwrap();
    let mut lin = pb.linearize(&THETA).unwrap();
    let op = lin.gram(0.25);
    op.apply_vec(&[1.0, 2.0], &mut out);
    let want = param_gram(&k, 0.25, &[1.0, 2.0]);
    assert!(rel_diff(&out, &want) <= 1e-15, "{out:?} vs {want:?}");
    assert_eq!(pb.model().fused_calls.load(Relaxed), 0);
}

/// A diagonal user metric `diag(W)` without an inverse (`Metric::solve` left to its
/// default); with `nan` its products are NaN instead.
struct UserMetric {
    nan: bool,
}

impl Metric for UserMetric {
    fn name(&self) -> &'static str {
        if self.nan {
            "NanMetric"
        } else {
            "NoInverse"
        }
    }
    fn dim(&self) -> Option<usize> {
        Some(3)
    }
    fn apply(&self, _at: &OutputPoint<'_>, v: &[f64], out: &mut [f64]) {
        out.iter_mut()
            .zip(v)
            .zip(W)
            .for_each(|((o, v), w)| *o = if self.nan { f64::NAN } else { w * v });
    }
    fn diagonal(&self, _at: &OutputPoint<'_>, out: &mut [f64]) -> bool {
        out.copy_from_slice(&W);
        !self.nan
    }
    fn select_samples(&self, _samples: &[usize], _q: usize, _m: usize) -> natgrad::Result<Self> {
        unimplemented!("not used")
    }
}

#[test]
fn a_sample_space_product_needing_a_missing_inverse_says_so() {
    // JJᵀ + λM⁻¹ needs M⁻¹ only for λ > 0: without it the operator reports the failure
    // (which the CG path turns into a typed error); at λ = 0 the product is JJᵀs.
    let pb = FitProblem::new(
        model(),
        SquaredError::l2(vec![1.0, 0.0, 2.0]).unwrap(),
        UserMetric { nan: false },
    )
    .unwrap();
    let mut lin = pb.linearize(&THETA).unwrap();
    let s = [1.0, -2.0, 0.5];
    let mut out = [0.0; 3];
    let op = lin.sample_gram(0.0);
    op.apply_vec(&s, &mut out);
    assert!(!op.metric_failed());
    let want = jac_t(&THETA, &jac_transpose_s(&THETA, &s));
    assert!(rel_diff(&out, &want) <= 1e-15, "{out:?} vs {want:?}");
    drop(op);
    let op = lin.sample_gram(0.5);
    op.apply_vec(&s, &mut out);
    assert!(op.metric_failed(), "M⁻¹ was needed and is missing");
}

#[test]
fn dense_gram_is_the_damped_gram_matrix_and_names_a_faulty_metric() {
    // `JᵀMJ + λI` from a dense J = A diag(θ) and a diagonal M, entry by entry; a metric
    // that returns NaN for a finite column is a typed error naming it.
    let j = Mat::from_fn(3, 2, |i, c| A[i][c] * THETA[c]);
    let at = OutputPoint {
        outputs: &[0.0; 3],
        loss: &SquaredError::l2(vec![0.0; 3]).unwrap(),
    };
    let metric = WeightedL2::new(W.to_vec()).unwrap();
    let g = dense_gram(j.as_ref(), &metric, &at, 0.5, Par::Seq).unwrap();
    assert_eq!(g.shape(), (2, 2));
    for r in 0..2 {
        for c in 0..2 {
            let want: f64 = (0..3).map(|i| j[(i, r)] * W[i] * j[(i, c)]).sum::<f64>()
                + if r == c { 0.5 } else { 0.0 };
            assert!(
                (g[(r, c)] - want).abs() <= 1e-15 * want.abs().max(1.0),
                "G[{r},{c}]"
            );
        }
    }
    match dense_gram(j.as_ref(), &UserMetric { nan: true }, &at, 0.5, Par::Seq) {
        Err(natgrad::Error::NonFiniteMetric { metric, .. }) => assert_eq!(metric, "NanMetric"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_single_column_is_one_fused_product_and_a_block_one_block_product() {
    // Module docs: CG's one-column products are the model's fused `gram_product` (for a
    // diagonal metric), and a block of k columns (the Nyström sketch) is one `jvp_block`
    // and one `vjp_block`, not k single products.
    let pb = FitProblem::new(
        model(),
        SquaredError::l2(vec![1.0, 0.0, 2.0]).unwrap(),
        WeightedL2::new(W.to_vec()).unwrap(),
    )
    .unwrap();
    let mut lin = pb.linearize(&THETA).unwrap();
    let op = lin.gram(0.5);
    let calls = || {
        let m = pb.model();
        (m.fused_calls.load(Relaxed), m.block_calls.load(Relaxed))
    };
    let got = apply_block(&op, &[[1.0, 0.5]], false);
    assert_eq!(calls(), (1, 0), "one column");
    assert!(rel_diff(&got[0], &param_gram(&diag_w(), 0.5, &[1.0, 0.5])) <= 1e-15);
    let cols = [[1.0, 0.5], [-2.0, 3.0], [0.0, 1.0]];
    let got = apply_block(&op, &cols, false);
    assert_eq!(calls(), (1, 1), "a block of three columns");
    for (j, c) in cols.iter().enumerate() {
        assert!(rel_diff(&got[j], &param_gram(&diag_w(), 0.5, c)) <= 1e-15);
    }
    assert_eq!(op.products(), 4);
}
