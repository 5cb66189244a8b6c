//! Mini-batches (docs/math.md §3, stochastic setting; acceptance 7).

mod common;

use common::runs::trajectory;
use common::{dense_solve, mat, matvec, rel_diff, rng};
use faer::Mat;
use natgrad::model::LinearModel;
use natgrad::{FitProblem, LinearSolver, NaturalGradient, SquaredError, StepRule, WeightedL2};
use rand::Rng;

type LinearProblem = FitProblem<LinearModel, SquaredError<WeightedL2>, WeightedL2>;

/// `y = Aθ`, `m` samples, `p` parameters, target `Aθ_true + noise`, discrete L² loss and
/// metric (weights `1/m`). Returns the problem and the design.
fn regression(m: usize, p: usize, noise: f64) -> (LinearProblem, Mat<f64>, Vec<f64>) {
    let mut r = rng(7);
    let a = mat(&mut r, m, p);
    let theta_true: Vec<f64> = (0..p).map(|i| 1.0 + i as f64 * 0.5).collect();
    let u: Vec<f64> = matvec(&a, &theta_true)
        .iter()
        .map(|y| y + noise * r.random_range(-1.0..1.0))
        .collect();
    let model = LinearModel::dense(a.clone()).unwrap();
    let loss = SquaredError::l2(u.clone()).unwrap();
    let problem = FitProblem::new(model, loss, WeightedL2::uniform(m).unwrap()).unwrap();
    (problem, a, u)
}

/// The least-squares minimiser from the normal equations `AᵀA θ = Aᵀu`.
fn least_squares(a: &Mat<f64>, u: &[f64]) -> Vec<f64> {
    let at = a.transpose().to_owned();
    let ata = Mat::from_fn(a.ncols(), a.ncols(), |i, j| {
        (0..a.nrows()).map(|r| a[(r, i)] * a[(r, j)]).sum()
    });
    dense_solve(&ata, &matvec(&at, u))
}

fn batched(rule: StepRule, alpha: f64, b: usize) -> NaturalGradient {
    NaturalGradient::new()
        .with_step_size(alpha)
        .unwrap()
        .with_damping(0.0)
        .unwrap()
        .with_linear_solver(LinearSolver::Cholesky)
        .unwrap()
        .with_step_rule(rule)
        .unwrap()
        .with_batch_size(b)
        .unwrap()
        .with_seed(42)
}

#[test]
fn mini_batch_natural_gradient_reaches_the_least_squares_loss() {
    let (m, p) = (400, 5);
    let (problem, a, u) = regression(m, p, 0.3);
    let best = problem.loss_at(&least_squares(&a, &u)).unwrap();
    for rule in [StepRule::Plain, StepRule::HeavyBall { beta: 0.5 }] {
        let (problem, _, _) = regression(m, p, 0.3);
        let (_, last, reason) = trajectory(problem, batched(rule, 0.05, 40), &[0.0; 5], 400);
        let (problem, _, _) = regression(m, p, 0.3);
        let loss = problem.loss_at(&last).unwrap();
        println!("{rule:?}, b = 40 of m = {m}: loss {loss:e}, least squares {best:e} ({reason})");
        assert!(
            loss <= 1.01 * best,
            "{rule:?}: loss {loss} vs least squares {best}"
        );
    }
}

#[test]
fn output_space_rules_on_a_linear_model_equal_their_parameter_twins_under_batches() {
    // For y = Aθ, J is constant: on the batch I_k, J_{k−1}δ_{k−1} = A_I δ_{k−1} and
    // y_k − y_{k−1} = A_I δ_{k−1}, so transported heavy ball, finite differences and
    // parameter heavy ball take the same steps, and Nesterov equals parameter Nesterov —
    // provided the previous iterate's outputs are re-evaluated on the current batch.
    let run = |rule| {
        let (problem, _, _) = regression(100, 4, 0.3);
        trajectory(problem, batched(rule, 0.3, 10), &[0.0; 4], 30).0
    };
    let beta = 0.6;
    let param_hb = run(StepRule::ParamHeavyBall { beta });
    let param_nesterov = run(StepRule::ParamNesterov { beta });
    for (rule, twin) in [
        (StepRule::HeavyBall { beta }, &param_hb),
        (StepRule::FiniteDifference { beta }, &param_hb),
        (StepRule::Nesterov { beta }, &param_nesterov),
    ] {
        let got = run(rule);
        assert_eq!(got.len(), 30);
        let worst = got
            .iter()
            .zip(twin.iter())
            .map(|(a, b)| rel_diff(a, b))
            .fold(0.0, common::nan_max);
        println!("{rule:?} vs its parameter twin under batches: {worst:e}");
        assert!(worst <= 1e-10, "{rule:?}: {worst:e}");
    }
}

#[test]
fn batch_larger_than_the_samples_is_an_input_error() {
    let (problem, _, _) = regression(10, 2, 0.1);
    let res = argmin::core::Executor::new(problem, batched(StepRule::Plain, 0.5, 11))
        .configure(|s| s.param(vec![0.0; 2]).max_iters(3))
        .run();
    let err = res.err().expect("b > m must fail").to_string();
    assert!(err.contains("exceeds the number of samples"), "{err}");
}
