//! Bad input gives typed errors or clean argmin terminations, never a panic
//! (acceptance 7 of the engine issue). Each test checks the message text.

mod common;

use argmin::core::{ArgminError, Executor, State};
use common::runs::exit_reason;
use faer::{mat, Mat, MatMut};
use natgrad::loss::FnLoss;
use natgrad::metric::{Metric, OutputPoint};
use natgrad::model::{ClosureModel, LinearModel};
use natgrad::problems::toys::{self, ToyMetric};
use natgrad::{
    CgSettings, DenseMetric, Error, Euclidean, FitProblem, LinearSolver, NaturalGradient,
    Preconditioner, SparseMetric, SquaredError, WeightedL2,
};

fn invalid_parameter_text(e: argmin::core::Error) -> String {
    match e.downcast_ref::<ArgminError>() {
        Some(ArgminError::InvalidParameter { text }) => text.clone(),
        other => panic!("expected InvalidParameter, got {other:?} ({e})"),
    }
}

#[test]
fn theta_of_wrong_length_is_invalid_parameter_naming_both_sizes() {
    let toy = toys::biased_linear(ToyMetric::Isotropic);
    let err = Executor::new(toy.problem, NaturalGradient::new())
        .configure(|s| s.param(vec![1.0, 2.0, 3.0]).max_iters(3))
        .run()
        .err()
        .expect("the run must fail");
    let text = invalid_parameter_text(err);
    assert!(
        text.contains("NaturalGradient") && text.contains("expected length 2, found 3"),
        "{text}"
    );
}

#[test]
fn non_finite_theta_names_the_first_bad_index() {
    let toy = toys::quadratic_manifold();
    let err = Executor::new(toy.problem, NaturalGradient::new())
        .configure(|s| s.param(vec![0.5, f64::NAN]).max_iters(3))
        .run()
        .err()
        .expect("the run must fail");
    let text = invalid_parameter_text(err);
    assert!(text.contains("theta") && text.contains("index 1"), "{text}");
}

#[test]
fn model_loss_and_metric_sizes_must_agree() {
    let a = Mat::<f64>::zeros(5, 2);
    let e = FitProblem::new(
        LinearModel::dense(a.clone()).unwrap(),
        SquaredError::l2(vec![0.0; 4]).unwrap(),
        Euclidean,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "loss vs model outputs: expected length 5, found 4"
    );
    let e = FitProblem::new(
        LinearModel::dense(a).unwrap(),
        SquaredError::l2(vec![0.0; 5]).unwrap(),
        WeightedL2::uniform(6).unwrap(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "WeightedL2 metric vs model outputs: expected length 5, found 6"
    );
    let e = SquaredError::new(vec![0.0; 3], WeightedL2::uniform(2).unwrap()).unwrap_err();
    assert!(matches!(
        e,
        Error::DimensionMismatch {
            expected: 2,
            found: 3,
            ..
        }
    ));
    // argmin's view of the same error
    let text = invalid_parameter_text(e.into_argmin("NaturalGradient"));
    assert!(text.contains("expected length 2, found 3"));
}

#[test]
fn non_finite_data_names_the_first_bad_index() {
    let e = SquaredError::l2(vec![0.0, 1.0, f64::INFINITY]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "SquaredError: target: non-finite value inf at index 2"
    );
    let e = LinearModel::dense(mat![[1.0, 2.0], [f64::NAN, 0.0]]).unwrap_err();
    assert!(
        e.to_string().contains("row 1, column 0") && e.to_string().contains("NaN"),
        "{e}"
    );
    let e = WeightedL2::new(vec![1.0, f64::NAN]).unwrap_err();
    assert!(e.to_string().contains("index 1"), "{e}");
}

#[test]
fn non_finite_model_outputs_are_an_error() {
    let model = ClosureModel::new(
        1,
        2,
        |t: &[f64], y: &mut [f64]| {
            y[0] = t[0];
            y[1] = (t[0] - 1.0).ln(); // NaN for θ < 1
        },
        |t: &[f64], mut j: MatMut<'_, f64>| {
            j[(0, 0)] = 1.0;
            j[(1, 0)] = 1.0 / (t[0] - 1.0);
        },
    );
    let pb = FitProblem::new(model, SquaredError::l2(vec![0.0, 0.0]).unwrap(), Euclidean).unwrap();
    let err = Executor::new(pb, NaturalGradient::new())
        .configure(|s| s.param(vec![0.5]).max_iters(3))
        .run()
        .err()
        .expect("the run must fail");
    // The initial loss is NaN: reported as an invalid starting point.
    let text = invalid_parameter_text(err);
    assert!(text.contains("initial"), "{text}");
}

#[test]
fn indefinite_metrics_are_rejected() {
    let e = DenseMetric::new(mat![[1.0, 2.0], [2.0, 1.0]]).unwrap_err();
    assert!(
        e.to_string().contains("not symmetric positive definite")
            && e.to_string().contains("pivot at index 1"),
        "{e}"
    );
    let e = DenseMetric::new(mat![[1.0, 0.5], [0.0, 1.0]]).unwrap_err();
    assert!(e.to_string().contains("not symmetric"), "{e}");
    let mut tri = sprs::TriMat::new((2, 2));
    tri.add_triplet(0, 0, 1.0);
    tri.add_triplet(1, 1, -1.0);
    let e = SparseMetric::new(tri.to_csr()).unwrap_err();
    assert!(
        e.to_string()
            .contains("SparseMetric K is not symmetric positive definite"),
        "{e}"
    );
    let e = WeightedL2::new(vec![1.0, 0.0]).unwrap_err();
    assert!(e.to_string().contains("not positive"), "{e}");
}

/// Singular Gram: p = 3 parameters, n = 2 outputs, and the third parameter has no
/// effect, so `G` has an exactly zero row and column (λ = 0).
fn singular_problem() -> FitProblem<LinearModel, SquaredError, WeightedL2> {
    let a = mat![[1.0, 2.0, 0.0], [0.0, 1.0, 0.0]];
    FitProblem::new(
        LinearModel::dense(a).unwrap(),
        SquaredError::l2(vec![1.0, -1.0]).unwrap(),
        WeightedL2::uniform(2).unwrap(),
    )
    .unwrap()
}

#[test]
fn singular_gram_with_zero_damping_cholesky_suggests_damping() {
    let ng = NaturalGradient::new()
        .with_damping(0.0)
        .unwrap()
        .with_linear_solver(LinearSolver::Cholesky)
        .unwrap();
    let res = Executor::new(singular_problem(), ng)
        .configure(|s| s.param(vec![0.0; 3]).max_iters(5))
        .run()
        .unwrap();
    let reason = exit_reason(res.state());
    assert!(
        reason.contains("Cholesky") && reason.contains("pivot") && reason.contains("with_damping"),
        "{reason}"
    );
    assert_eq!(
        res.state().get_param().unwrap(),
        &vec![0.0; 3],
        "θ must not move"
    );
}

#[test]
fn cg_non_convergence_ends_the_run_with_its_reason() {
    let toy = toys::quadratic_manifold();
    let cg = CgSettings {
        rel_tol: 1e-15,
        max_iters: 1,
        preconditioner: Preconditioner::None,
        ..CgSettings::default()
    };
    let ng = NaturalGradient::new()
        .with_linear_solver(LinearSolver::Cg(cg))
        .unwrap();
    let res = Executor::new(toy.problem, ng)
        .configure(|s| s.param(toy.theta0.clone()).max_iters(5))
        .run()
        .unwrap();
    let reason = exit_reason(res.state());
    assert!(
        reason.contains("CG did not converge") && reason.contains("after 1 iterations"),
        "{reason}"
    );
}

/// A metric a user wrote wrongly: negative definite. CG must break down cleanly.
struct NegativeMetric;
impl Metric for NegativeMetric {
    fn name(&self) -> &'static str {
        "Negative"
    }
    fn dim(&self) -> Option<usize> {
        None
    }
    fn apply(&self, _: &OutputPoint<'_>, v: &[f64], out: &mut [f64]) {
        out.iter_mut().zip(v).for_each(|(o, v)| *o = -v);
    }
    fn diagonal(&self, _: &OutputPoint<'_>, _: &mut [f64]) -> bool {
        false
    }
    fn select_samples(&self, _: &[usize], _: usize, _: usize) -> natgrad::Result<Self> {
        Ok(NegativeMetric)
    }
}

#[test]
fn cg_breakdown_on_indefinite_operator_names_reason_and_iteration() {
    let toy = toys::quadratic_manifold();
    let pb = FitProblem::new(
        toy.problem.model().clone(),
        SquaredError::l2(vec![1.0, 0.5]).unwrap(),
        NegativeMetric,
    )
    .unwrap();
    let ng = NaturalGradient::new().with_damping(0.0).unwrap();
    let res = Executor::new(pb, ng)
        .configure(|s| s.param(toy.theta0.clone()).max_iters(5))
        .run()
        .unwrap();
    let reason = exit_reason(res.state());
    assert!(
        reason.contains("not positive definite") && reason.contains("iteration 0"),
        "{reason}"
    );
}

#[test]
fn divergence_ends_the_run_instead_of_panicking() {
    // exp(θ) fitted with a huge step: the loss overflows to inf.
    let model = ClosureModel::new(
        1,
        1,
        |t: &[f64], y: &mut [f64]| y[0] = t[0].exp(),
        |t: &[f64], mut j: MatMut<'_, f64>| j[(0, 0)] = t[0].exp(),
    );
    let pb = FitProblem::new(model, SquaredError::l2(vec![1e100]).unwrap(), Euclidean).unwrap();
    let ng = NaturalGradient::new().with_step_size(1e3).unwrap();
    let res = Executor::new(pb, ng)
        .configure(|s| s.param(vec![0.0]).max_iters(50))
        .run()
        .unwrap();
    let reason = exit_reason(res.state());
    assert!(
        reason.contains("not finite") && reason.contains("reduce the step size"),
        "{reason}"
    );
    // The first step, θ₁ ≈ 10³·10¹⁰⁰, overflows exp: the last good iterate θ₀ = 0 is
    // kept, with its finite cost ½(1 − 10¹⁰⁰)².
    let state = res.state();
    assert_eq!(state.get_param(), Some(&vec![0.0]), "θ₀ kept");
    let cost0 = 0.5 * (1.0 - 1e100_f64).powi(2);
    assert!(
        (state.get_cost() - cost0).abs() <= 1e-15 * cost0,
        "cost {} vs L(θ₀) {cost0}",
        state.get_cost()
    );
}

#[test]
fn bad_settings_are_invalid_parameters() {
    for e in [
        NaturalGradient::new().with_step_size(0.0).unwrap_err(),
        NaturalGradient::new().with_step_size(f64::NAN).unwrap_err(),
        NaturalGradient::new().with_damping(-1.0).unwrap_err(),
        NaturalGradient::new()
            .with_tolerance_grad(-1.0)
            .unwrap_err(),
        NaturalGradient::new()
            .with_linear_solver(LinearSolver::Cg(CgSettings {
                max_iters: 0,
                ..CgSettings::default()
            }))
            .unwrap_err(),
    ] {
        let text = invalid_parameter_text(e);
        assert!(text.starts_with("`NaturalGradient`:"), "{text}");
    }
}

#[test]
fn ggn_metric_needs_a_loss_with_hessian() {
    let loss = FnLoss::new(
        Some(2),
        |y: &[f64]| y[0] * y[0],
        |y: &[f64], g: &mut [f64]| {
            g[0] = 2.0 * y[0];
            g[1] = 0.0;
        },
    )
    .unwrap();
    let model = LinearModel::dense(Mat::identity(2, 2)).unwrap();
    let e = FitProblem::new(model, loss, natgrad::LossHessian).unwrap_err();
    assert!(e.to_string().contains("needs a loss with a Hessian"), "{e}");
}
