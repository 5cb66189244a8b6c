//! Conformance of every model and every metric (issue 17): one helper,
//! `common::conformance`, runs every product against a dense reference built from single
//! jvps and the Jacobian against central differences of `forward`.
//!
//! Models: linear (dense, sparse), closure, quadratic (the toy and a random one), Mlp
//! (dense and streamed), the classic Pinn, the PDE models of `problems::pinn`, a Deep
//! Ritz model and the argmin adapter's residual model. Metrics: weighted L², Euclidean,
//! dense, sparse and the loss Hessian (squared error and logit cross-entropy), each in
//! parameter and sample space. The sharded model is not here: it needs `mpirun`
//! (tests/mpi_sharded.rs compares it with the single-process model).

mod common;

use common::conformance::{check_gram, check_model};
use common::models::{closure_model, sparse_design, Rosenbrock};
use common::{mat, rng, sparse_spd, spd, vec};
use faer::Mat;
use natgrad::argmin_adapter::least_squares;
use natgrad::model::{
    Activation, Collocation, DiffOperator, LinearModel, Mlp, Model, Pinn, QuadraticModel, TaylorMlp,
};
use natgrad::model::{ChannelSet, Smooth};
use natgrad::pde::{DualNum, EnergyDensity, EnergyTerm, Fields, Point, RitzModel};
use natgrad::problems::{pinn, toys};
use natgrad::{
    DenseMetric, Euclidean, FitProblem, LogitCrossEntropy, Loss, LossHessian, Metric, SparseMetric,
    SquaredError, WeightedL2,
};
use rand::Rng;

fn mlp(seed: u64, widths: &[usize]) -> Mlp {
    let mut r = rng(seed);
    let m = 6;
    let x: Vec<f64> = (0..widths[0] * m)
        .map(|_| r.random_range(-1.0..1.0))
        .collect();
    let mut acts = vec![Activation::Tanh; widths.len() - 2];
    acts.push(Activation::Identity);
    Mlp::new(widths, &acts, &x).unwrap()
}

fn classic_pinn() -> Pinn {
    let net = TaylorMlp::new(vec![2, 4, 3, 1]).unwrap();
    let mut r = rng(21);
    let xi = Mat::from_fn(2, 5, |_, _| r.random_range(0.0..1.0));
    let xb = Mat::from_fn(2, 3, |_, _| r.random_range(0.0..1.0));
    let op = DiffOperator {
        laplacian: -0.3,
        gradient: vec![1.0, 2.0],
        value: 0.7,
    };
    let f = (0..5).map(|i| (i as f64).sin()).collect();
    let g = (0..3).map(|j| (j as f64).cos()).collect();
    let (interior, boundary) = (
        Collocation::new(xi.as_ref(), f),
        Collocation::new(xb.as_ref(), g),
    );
    Pinn::new(net, op, interior, boundary, 2.5).unwrap()
}

/// `e = ½|∇u|² + ¼u⁴ − u` in 1D.
struct Quartic;
impl EnergyDensity for Quartic {
    fn density<D: DualNum<Primitive = f64> + Copy>(&self, _: &Point, u: &Fields<D>) -> D {
        u.dx(0, 0).powi(2) * 0.5 + u.u(0).powi(4) * 0.25 - u.u(0)
    }
}

fn ritz() -> RitzModel {
    let x = Mat::from_fn(1, 6, |_, i| (i as f64 + 0.5) / 6.0);
    let term = EnergyTerm::new(
        "interior",
        x.as_ref(),
        vec![1.0 / 6.0; 6],
        ChannelSet::value(1).with_gradient(),
        Quartic,
    );
    let net = TaylorMlp::with_activation(vec![1, 4, 1], std::sync::Arc::new(Smooth::Tanh));
    RitzModel::new(net.unwrap(), vec![term]).unwrap()
}

/// θ of length `p`, entries in (−1, 1).
fn theta(seed: u64, p: usize) -> Vec<f64> {
    vec(&mut rng(seed), p)
}

/// The model check at a random θ, with the errors printed (`--nocapture`).
fn model<M: Model>(name: &str, m: &M, seed: u64) {
    let e = check_model(name, m, &theta(seed, m.n_params()), seed);
    println!("{name}: {e:?}");
}

#[test]
fn every_model_conforms() {
    let mut r = rng(1);
    model(
        "linear dense 9×5",
        &LinearModel::dense(mat(&mut r, 9, 5)).unwrap(),
        2,
    );
    model(
        "linear dense 4×7",
        &LinearModel::dense(mat(&mut r, 4, 7)).unwrap(),
        3,
    );
    model(
        "linear sparse",
        &LinearModel::sparse(sparse_design(4, 12, 6)).unwrap(),
        4,
    );
    model("closure", &closure_model(5, 8, 4).0, 6);
    for toy in toys::all() {
        model(toy.name, toy.problem.model(), 7);
    }
    let q = QuadraticModel::new(
        mat(&mut r, 6, 4),
        (0..4).map(|_| spd(&mut r, 6, 0.0)).collect(),
    );
    model("quadratic", &q.unwrap(), 8);
    model("mlp 2-5-4-1", &mlp(9, &[2, 5, 4, 1]), 10);
    model(
        "mlp 3-4-2 streamed",
        &mlp(11, &[3, 4, 2]).with_dense_limit(0),
        12,
    );
    model("classic pinn", &classic_pinn(), 13);
    let case = pinn::poisson_2d(2, 4, &[3], 10.0).unwrap();
    model(&case.name, case.problem.model(), 14);
    let case = pinn::advection_diffusion(0.1, 3, &[4], 10.0).unwrap();
    model(&case.name, case.problem.model(), 15);
    model("deep ritz", &ritz(), 16);
    let adapter = least_squares(Rosenbrock, &[-1.2, 1.0]).unwrap();
    model("argmin residual model", adapter.model(), 17);
}

/// The Gram check of one problem, with its errors printed; every metric here has an
/// inverse, so the sample-space check must have run.
fn gram_of<Mo: Model, Lo: Loss, Me: Metric>(label: &str, pr: FitProblem<Mo, Lo, Me>, th: &[f64]) {
    let e = check_gram(label, &pr, th, th.len() as u64);
    println!("{label}: {e:?}");
    assert!(e.samples.is_some(), "{label}: no sample-space check ran");
}

/// One model under every metric: weighted L² (diagonal: the model's fused Gram product
/// and its `gram_diagonal`), Euclidean, dense and sparse SPD `K`, and the loss Hessian of
/// the squared error and of the logit cross-entropy.
fn every_metric<Mo: Model + Clone>(name: &str, m: &Mo, seed: u64) {
    let (n, p) = (m.n_outputs(), m.n_params());
    let mut r = rng(seed);
    let th = theta(seed, p);
    let target = vec(&mut r, n);
    let weights: Vec<f64> = (0..n).map(|_| r.random_range(0.2..1.0)).collect();
    let weighted = || WeightedL2::new(weights.clone()).unwrap();
    let squared = || SquaredError::new(target.clone(), weighted()).unwrap();
    let pr = FitProblem::new(m.clone(), squared(), weighted()).unwrap();
    gram_of(&format!("{name} / WeightedL2"), pr, &th);
    let pr = FitProblem::new(m.clone(), squared(), Euclidean).unwrap();
    gram_of(&format!("{name} / Euclidean"), pr, &th);
    let k = DenseMetric::new(spd(&mut r, n, 0.5)).unwrap();
    let pr = FitProblem::new(m.clone(), squared(), k).unwrap();
    gram_of(&format!("{name} / DenseMetric"), pr, &th);
    let k = SparseMetric::new(sparse_spd(n)).unwrap();
    let pr = FitProblem::new(m.clone(), squared(), k).unwrap();
    gram_of(&format!("{name} / SparseMetric"), pr, &th);
    let pr = FitProblem::new(m.clone(), squared(), LossHessian).unwrap();
    gram_of(&format!("{name} / LossHessian (squared error)"), pr, &th);
    let labels: Vec<f64> = (0..n).map(|i| (i % 2) as f64).collect();
    let xent = LogitCrossEntropy::new(labels).unwrap();
    let pr = FitProblem::new(m.clone(), xent, LossHessian).unwrap();
    gram_of(
        &format!("{name} / LossHessian (logit cross-entropy)"),
        pr,
        &th,
    );
}

#[test]
fn every_metric_conforms_in_both_spaces() {
    let mut r = rng(30);
    every_metric(
        "linear dense",
        &LinearModel::dense(mat(&mut r, 7, 4)).unwrap(),
        31,
    );
    every_metric(
        "linear sparse",
        &LinearModel::sparse(sparse_design(32, 9, 5)).unwrap(),
        33,
    );
    every_metric("mlp 2-5-1", &mlp(34, &[2, 5, 1]), 35);
    every_metric(
        "mlp 2-3-2 streamed",
        &mlp(36, &[2, 3, 2]).with_dense_limit(0),
        37,
    );
    every_metric("classic pinn", &classic_pinn(), 38);
    every_metric("deep ritz", &ritz(), 39);
}

#[test]
fn the_demo_problems_gram_operators_conform() {
    for toy in toys::all() {
        let th = theta(40, toy.problem.n_params());
        let e = check_gram(toy.name, &toy.problem, &th, 41);
        println!("{}: {e:?}", toy.name);
    }
    let case = pinn::poisson_2d(2, 4, &[3], 10.0).unwrap();
    let th = theta(42, case.problem.n_params());
    println!(
        "{}: {:?}",
        case.name,
        check_gram(&case.name, &case.problem, &th, 43)
    );
    let adapter = least_squares(Rosenbrock, &[-1.2, 1.0]).unwrap();
    let e = check_gram("argmin adapter", &adapter, &[-1.2, 1.0], 44);
    println!("argmin adapter: {e:?}");
}
