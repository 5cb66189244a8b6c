//! One conformance check for every model and every metric (issue 17): each product a
//! model or the Gram operator offers is compared with a dense reference built here, by
//! plain loops, from single jvps — and the Jacobian itself with central finite differences
//! of `forward`, an oracle that shares no code with the products.

use super::{mat, rel_diff, rng, vec};
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::matrix_free::LinOp;
use faer::{Mat, MatMut, MatRef, Par};
use natgrad::check::jacobian_by_jvps;
use natgrad::gram::Space;
use natgrad::model::Model;
use natgrad::{FitProblem, Linearization, LinearizedProblem, Loss, Metric};

/// Adjointness `⟨Jv, w⟩ = ⟨v, Jᵀw⟩`, relative to `‖Jv‖‖w‖ + ‖v‖‖Jᵀw‖`.
pub const ADJOINT_TOL: f64 = 1e-12;
/// Products against the dense reference (relative, Frobenius / Euclidean): only the
/// summation order differs.
pub const PRODUCT_TOL: f64 = 1e-12;
/// The Jacobian against central differences with step `h = 1e-5 (1 + |θ_j|)`: truncation
/// `O(h²) ≈ 1e-10`, rounding `O(ε/h) ≈ 1e-11` relative to the outputs.
pub const FD_TOL: f64 = 1e-6;

/// The largest relative errors one model showed, to print.
#[derive(Debug, Default, Clone, Copy)]
pub struct ModelErrors {
    pub adjoint: f64,
    pub vjp: f64,
    pub blocks: f64,
    pub dense: Option<f64>,
    pub diagonal: Option<f64>,
    pub gram_product: f64,
    pub forward: f64,
    pub finite_differences: f64,
}

/// `‖a − b‖_F / ‖b‖_F` (the absolute difference when `b = 0`).
pub fn mat_rel(a: &Mat<f64>, b: &Mat<f64>) -> f64 {
    assert_eq!(
        (a.nrows(), a.ncols()),
        (b.nrows(), b.ncols()),
        "shapes differ"
    );
    let flat = |m: &Mat<f64>| -> Vec<f64> {
        (0..m.ncols())
            .flat_map(|c| (0..m.nrows()).map(move |r| (r, c)))
            .map(|(r, c)| m[(r, c)])
            .collect()
    };
    rel_diff(&flat(a), &flat(b))
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// `y = A x` by plain loops.
fn mat_vec(a: &Mat<f64>, x: &[f64]) -> Vec<f64> {
    (0..a.nrows())
        .map(|r| (0..a.ncols()).map(|c| a[(r, c)] * x[c]).sum())
        .collect()
}

/// `y = Aᵀ x` by plain loops.
fn mat_t_vec(a: &Mat<f64>, x: &[f64]) -> Vec<f64> {
    (0..a.ncols())
        .map(|c| (0..a.nrows()).map(|r| a[(r, c)] * x[r]).sum())
        .collect()
}

fn column(m: &Mat<f64>, c: usize) -> Vec<f64> {
    (0..m.nrows()).map(|r| m[(r, c)]).collect()
}

fn check(name: &str, what: &str, err: f64, tol: f64) -> f64 {
    assert!(
        err <= tol,
        "{name}: {what}: relative error {err:e} > {tol:e}"
    );
    err
}

/// Every product of `model`'s linearisation at `theta` against the dense reference, and
/// the Jacobian against central differences of [`Model::forward`]. Panics naming the
/// model and the product that disagrees.
pub fn check_model<M: Model>(name: &str, model: &M, theta: &[f64], seed: u64) -> ModelErrors {
    let (n, p) = (model.n_outputs(), model.n_params());
    assert_eq!(theta.len(), p, "{name}: θ has the wrong length");
    let mut r = rng(seed);
    let mut lin = model.linearize(theta).unwrap();
    assert_eq!(lin.n_params(), p, "{name}: Linearization::n_params");
    assert_eq!(lin.outputs().len(), n, "{name}: outputs length");
    let jac = jacobian_by_jvps(&mut lin, n);
    let mut e = ModelErrors::default();

    // vjp: row i of J is Jᵀe_i.
    let mut jt = Mat::zeros(n, p);
    let (mut ei, mut row) = (vec![0.0; n], vec![0.0; p]);
    for i in 0..n {
        ei[i] = 1.0;
        lin.vjp(&ei, &mut row);
        ei[i] = 0.0;
        (0..p).for_each(|c| jt[(i, c)] = row[c]);
    }
    e.vjp = check(name, "vjp vs J by jvps", mat_rel(&jt, &jac), PRODUCT_TOL);

    for _ in 0..3 {
        let (v, w) = (vec(&mut r, p), vec(&mut r, n));
        let (mut jv, mut jtw) = (vec![0.0; n], vec![0.0; p]);
        lin.jvp(&v, &mut jv);
        lin.vjp(&w, &mut jtw);
        let scale = norm(&jv) * norm(&w) + norm(&v) * norm(&jtw);
        let err = (dot(&jv, &w) - dot(&v, &jtw)).abs() / scale.max(f64::MIN_POSITIVE);
        e.adjoint = e.adjoint.max(check(name, "adjointness", err, ADJOINT_TOL));
    }

    e.blocks = check_blocks(name, &mut lin, &jac, &mut r);

    if let Some(d) = lin.dense_jacobian() {
        e.dense = Some(check(
            name,
            "dense_jacobian",
            mat_rel(&d, &jac),
            PRODUCT_TOL,
        ));
    }

    let w: Vec<f64> = (0..n).map(|_| 0.1 + vec(&mut r, 1)[0].abs()).collect();
    let want_diag: Vec<f64> = (0..p)
        .map(|c| (0..n).map(|i| w[i] * jac[(i, c)] * jac[(i, c)]).sum())
        .collect();
    let mut diag = vec![0.0; p];
    if lin.gram_diagonal(&w, &mut diag) {
        let err = rel_diff(&diag, &want_diag);
        e.diagonal = Some(check(name, "gram_diagonal vs diag(JᵀWJ)", err, PRODUCT_TOL));
    }

    let t = vec(&mut r, p);
    let wjt: Vec<f64> = mat_vec(&jac, &t)
        .iter()
        .zip(&w)
        .map(|(a, b)| a * b)
        .collect();
    let want = mat_t_vec(&jac, &wjt);
    let (mut scratch, mut got) = (vec![0.0; n], vec![0.0; p]);
    lin.gram_product(&w, &t, &mut scratch, &mut got);
    e.gram_product = check(
        name,
        "gram_product vs JᵀWJt",
        rel_diff(&got, &want),
        PRODUCT_TOL,
    );

    let mut y = vec![0.0; n];
    model.forward(theta, &mut y).unwrap();
    e.forward = check(
        name,
        "forward vs outputs",
        rel_diff(&y, lin.outputs()),
        1e-14,
    );
    drop(lin);

    e.finite_differences = check(
        name,
        "J vs central differences of forward",
        mat_rel(&central_differences(model, theta), &jac),
        FD_TOL,
    );
    e
}

/// `jvp_block` / `vjp_block` on three random columns against single products.
fn check_blocks<L: Linearization>(
    name: &str,
    lin: &mut L,
    jac: &Mat<f64>,
    r: &mut rand::rngs::StdRng,
) -> f64 {
    let (n, p) = (jac.nrows(), jac.ncols());
    let jvps = Products {
        block: |l: &mut L, t, o| l.jvp_block(t, o),
        single: |l: &mut L, t, o| l.jvp(t, o),
        out_len: n,
    };
    let vjps = Products {
        block: |l: &mut L, s, o| l.vjp_block(s, o),
        single: |l: &mut L, s, o| l.vjp(s, o),
        out_len: p,
    };
    let a = check(
        name,
        "jvp_block vs jvps",
        jvps.error(lin, &mat(r, p, 3)),
        PRODUCT_TOL,
    );
    let b = check(
        name,
        "vjp_block vs vjps",
        vjps.error(lin, &mat(r, n, 3)),
        PRODUCT_TOL,
    );
    a.max(b)
}

/// A block product of a linearisation and its single-vector version.
struct Products<L> {
    block: fn(&mut L, MatRef<'_, f64>, MatMut<'_, f64>),
    single: fn(&mut L, &[f64], &mut [f64]),
    out_len: usize,
}

impl<L> Products<L> {
    /// The relative difference of the block product of `x` and the single products of
    /// its columns.
    fn error(&self, lin: &mut L, x: &Mat<f64>) -> f64 {
        let k = x.ncols();
        let mut block = Mat::zeros(self.out_len, k);
        (self.block)(lin, x.as_ref(), block.as_mut());
        let mut single = Mat::zeros(self.out_len, k);
        let mut col = vec![0.0; self.out_len];
        for c in 0..k {
            (self.single)(lin, &column(x, c), &mut col);
            (0..self.out_len).for_each(|i| single[(i, c)] = col[i]);
        }
        mat_rel(&block, &single)
    }
}

/// `∂y/∂θ_j ≈ (y(θ + h e_j) − y(θ − h e_j)) / 2h` with `h = 1e-5 (1 + |θ_j|)`.
pub fn central_differences<M: Model>(model: &M, theta: &[f64]) -> Mat<f64> {
    let (n, p) = (model.n_outputs(), model.n_params());
    let mut j = Mat::zeros(n, p);
    let (mut plus, mut minus) = (vec![0.0; n], vec![0.0; n]);
    let mut th = theta.to_vec();
    for c in 0..p {
        let h = 1e-5 * (1.0 + theta[c].abs());
        th[c] = theta[c] + h;
        model.forward(&th, &mut plus).unwrap();
        th[c] = theta[c] - h;
        model.forward(&th, &mut minus).unwrap();
        th[c] = theta[c];
        // The step actually taken, as rounded in θ.
        let two_h = (theta[c] + h) - (theta[c] - h);
        (0..n).for_each(|i| j[(i, c)] = (plus[i] - minus[i]) / two_h);
    }
    j
}

/// The largest relative errors of one problem's Gram operator.
#[derive(Debug, Default, Clone, Copy)]
pub struct GramErrors {
    pub params: f64,
    pub samples: Option<f64>,
    pub diagonal: Option<f64>,
}

/// `op` on each column of `x` alone, and the error of one block product of all of them
/// against those single products.
fn single_and_block(name: &str, op: &impl LinOp<f64>, x: &Mat<f64>) -> (Mat<f64>, f64) {
    let single = apply_columns(op, x);
    let err = mat_rel(&apply_block(op, x), &single);
    (
        single,
        check(name, "Gram: block vs single products", err, PRODUCT_TOL),
    )
}

/// `op` applied to each column of `x` on its own (k products of one column).
fn apply_columns(op: &impl LinOp<f64>, x: &Mat<f64>) -> Mat<f64> {
    let mut out = Mat::zeros(op.nrows(), x.ncols());
    for c in 0..x.ncols() {
        let xc = Mat::from_fn(x.nrows(), 1, |i, _| x[(i, c)]);
        let oc = apply_block(op, &xc);
        (0..op.nrows()).for_each(|i| out[(i, c)] = oc[(i, 0)]);
    }
    out
}

/// `op` applied to the block `x` in one call, with the scratch it declares.
fn apply_block(op: &impl LinOp<f64>, x: &Mat<f64>) -> Mat<f64> {
    let mut out = Mat::zeros(op.nrows(), x.ncols());
    let mut mem = MemBuffer::new(op.apply_scratch(x.ncols(), Par::Seq));
    op.apply(out.as_mut(), x.as_ref(), Par::Seq, MemStack::new(&mut mem));
    out
}

/// Dense `J` (by jvps) and `M` (applied to the unit vectors) of a linearised problem.
fn dense_j_and_m<Mo: Model, Lo: Loss, Me: Metric>(
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    n: usize,
    p: usize,
) -> (Mat<f64>, Mat<f64>) {
    let mut jac = Mat::zeros(n, p);
    let mut m = Mat::zeros(n, n);
    let (mut e, mut col) = (vec![0.0; n.max(p)], vec![0.0; n]);
    for c in 0..p {
        e[c] = 1.0;
        lin.jvp(&e[..p], &mut col);
        e[c] = 0.0;
        (0..n).for_each(|i| jac[(i, c)] = col[i]);
    }
    for c in 0..n {
        e[c] = 1.0;
        lin.apply_metric(&e[..n], &mut col);
        e[c] = 0.0;
        (0..n).for_each(|i| m[(i, c)] = col[i]);
    }
    (jac, m)
}

/// The damped Gram operator of `problem` at `theta` in parameter space (`JᵀMJ + λI`) and,
/// when the metric has an inverse, in sample space (`JJᵀ + λM⁻¹`), single and block
/// products, against `J` by jvps and `M` applied to the unit vectors; and
/// `gram_diagonal` against `diag(JᵀMJ) + λ` when the problem offers it.
pub fn check_gram<Mo: Model, Lo: Loss, Me: Metric>(
    name: &str,
    problem: &FitProblem<Mo, Lo, Me>,
    theta: &[f64],
    seed: u64,
) -> GramErrors {
    let (n, p) = (problem.n_outputs(), problem.n_params());
    let lambda = 0.3;
    let mut r = rng(seed);
    let mut lin = problem.linearize(theta).unwrap();
    let (jac, m) = dense_j_and_m(&mut lin, n, p);
    let mut errs = GramErrors::default();

    // Parameter space: (JᵀMJ + λI) t.
    let t = mat(&mut r, p, 3);
    let (single, err) = single_and_block(name, &lin.gram_in(Space::Params, lambda), &t);
    errs.params = err;
    for c in 0..3 {
        let tc = column(&t, c);
        let mut want = mat_t_vec(&jac, &mat_vec(&m, &mat_vec(&jac, &tc)));
        want.iter_mut().zip(&tc).for_each(|(g, t)| *g += lambda * t);
        let err = rel_diff(&column(&single, c), &want);
        errs.params = errs.params.max(check(
            name,
            "Gram (params) vs (JᵀMJ + λI)t",
            err,
            PRODUCT_TOL,
        ));
    }

    let mut probe = vec![0.0; n];
    if lin.solve_metric(&vec![1.0; n], &mut probe).is_ok() {
        errs.samples = Some(check_samples(name, &mut lin, (&jac, &m), lambda, &mut r));
    }

    if let Some(d) = lin.gram_diagonal(lambda) {
        let want: Vec<f64> = (0..p)
            .map(|c| dot(&column(&jac, c), &mat_vec(&m, &column(&jac, c))) + lambda)
            .collect();
        let err = rel_diff(&d, &want);
        errs.diagonal = Some(check(
            name,
            "gram_diagonal vs diag(JᵀMJ) + λ",
            err,
            PRODUCT_TOL,
        ));
    }
    errs
}

/// Sample space `(JJᵀ + λM⁻¹) s`, checked as `M (op s − JJᵀs) = λs` so that the reference
/// needs no inverse. The difference cancels the digits of `JJᵀs`: its rounding, times `M`,
/// is up to `ε‖M‖‖JJᵀs‖` against the `λ‖s‖` checked, so the error is divided by the a-priori
/// scale `1 + ‖M‖_F‖JJᵀs‖ / (λ‖s‖)` (plus `M`'s condition `‖M‖‖M⁻¹‖`, bounded here by the
/// metrics' construction: well below 1e3). The scale comes from `J`, `M` and `s`, not from
/// the operator's output: scaled by `‖JJᵀs‖ / ‖op s − JJᵀs‖` instead, an operator that drops
/// `λM⁻¹s` (the difference then rounding noise) divided its own error of 1 by ~1e16 and passed.
fn check_samples<Mo: Model, Lo: Loss, Me: Metric>(
    name: &str,
    lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    (jac, m): (&Mat<f64>, &Mat<f64>),
    lambda: f64,
    r: &mut rand::rngs::StdRng,
) -> f64 {
    let n = jac.nrows();
    let m_norm = m.norm_l2();
    let s = mat(r, n, 3);
    let (single, mut worst) = single_and_block(name, &lin.gram_in(Space::Samples, lambda), &s);
    for c in 0..3 {
        let sc = column(&s, c);
        let jjt = mat_vec(jac, &mat_t_vec(jac, &sc));
        let rest: Vec<f64> = column(&single, c)
            .iter()
            .zip(&jjt)
            .map(|(a, b)| a - b)
            .collect();
        let got = mat_vec(m, &rest);
        let want: Vec<f64> = sc.iter().map(|x| lambda * x).collect();
        let scale = 1.0 + m_norm * norm(&jjt) / norm(&want);
        let err = rel_diff(&got, &want) / scale;
        worst = worst.max(check(name, "Gram (samples) vs JJᵀs + λM⁻¹s", err, 1e-10));
    }
    worst
}
