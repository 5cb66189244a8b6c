//! Failures say what really happened and lose nothing (issue 15): a fault of user code is
//! named by its trait method and quantity, a numerical failure mid-run ends the run with
//! the last good iterate, and the failing step's KV says what was known.

mod common;

#[path = "failures/scripted.rs"]
mod scripted;

use argmin::core::observers::{Observe, ObserverMode};
use argmin::core::{ArgminError, Executor, State, KV};
use common::runs::exit_reason;
use faer::linalg::solvers::Solve;
use faer::{mat, Mat, Side};
use natgrad::linsolve::AutoSettings;
use natgrad::{
    CgSettings, FitProblem, LinearSolver, NaturalGradient, NgState, Preconditioner, SquaredError,
    StepRule, WeightedL2,
};
use scripted::{DefaultForward, Fault, Kind, Method, Scripted};
use std::sync::{Arc, Mutex};

type ArgminResult =
    Result<argmin::core::OptimizationResult<Pb, NaturalGradient, NgState>, argmin::core::Error>;
type Pb = FitProblem<Scripted, SquaredError, WeightedL2>;

const A: [[f64; 2]; 3] = [[1.0, 0.5], [0.0, 2.0], [1.0, -1.0]];
const B: [f64; 3] = [0.2, -0.1, 0.3];
const U: [f64; 3] = [1.0, -2.0, 0.5];

fn a() -> Mat<f64> {
    Mat::from_fn(3, 2, |i, j| A[i][j])
}

fn scripted(dense: bool, fault: Option<Fault>) -> Scripted {
    Scripted::new(a(), B.to_vec(), dense, fault)
}

fn problem(model: Scripted) -> Pb {
    FitProblem::new(
        model,
        SquaredError::l2(U.to_vec()).unwrap(),
        WeightedL2::uniform(3).unwrap(),
    )
    .unwrap()
}

fn run(model: Scripted, ng: NaturalGradient, iters: u64) -> ArgminResult {
    Executor::new(problem(model), ng)
        .configure(|s| s.param(vec![0.0, 0.0]).max_iters(iters))
        .run()
}

fn invalid_parameter_text(e: argmin::core::Error) -> String {
    match e.downcast_ref::<ArgminError>() {
        Some(ArgminError::InvalidParameter { text }) => text.clone(),
        other => panic!("expected InvalidParameter, got {other:?} ({e})"),
    }
}

/// The Gauss–Newton step of the dense twin from θ = 0: `J = A` there, so
/// `θ₁ = −(AᵀWA + λI)⁻¹ AᵀW(y(0) − u)` with `y(0) = 0`, `W = I/3`.
fn first_step(damping: f64) -> Vec<f64> {
    let a = a();
    let w = 1.0 / 3.0;
    let mut g = a.transpose() * &a * w;
    for i in 0..2 {
        g[(i, i)] += damping;
    }
    let u = Mat::from_fn(3, 1, |i, _| U[i]);
    let rhs = a.transpose() * u * w;
    let x = g.llt(Side::Lower).unwrap().solve(&rhs);
    vec![x[(0, 0)], x[(1, 0)]]
}

fn solvers() -> [LinearSolver; 3] {
    [
        LinearSolver::Cg(CgSettings::default()),
        LinearSolver::Cholesky,
        LinearSolver::Auto(AutoSettings::default()),
    ]
}

/// Item 1: a jvp or vjp that returns NaN from the second linearisation on is named —
/// not reported as a CG breakdown or a failed Cholesky pivot — and θ₁ is kept.
#[test]
fn non_finite_product_is_named_not_blamed_on_the_operator() {
    for method in [Method::Jvp, Method::Vjp] {
        for solver in solvers() {
            // Linearisations: θ₀ for the initial state's gradient, which step 0 starts
            // from, then θ₁ for the state's gradient after step 0, which step 1 starts
            // from: the fault starts in the products at θ₁ (the vjp of g₁, or the jvps
            // of step 1's solve).
            let fault = Fault {
                linearized: 2,
                ..Fault::new(method, 1, Kind::NaN)
            };
            let ng = NaturalGradient::new()
                .with_linear_solver(solver.clone())
                .unwrap();
            let res = run(scripted(false, Some(fault)), ng, 10).unwrap();
            let reason = exit_reason(res.state());
            assert!(
                reason.contains(method.path())
                    && reason.contains("non-finite")
                    && !reason.contains("positive definite")
                    && !reason.contains("Cholesky"),
                "{method:?} {solver:?}: {reason}"
            );
            let best = res.state().get_best_param().unwrap();
            let expected = first_step(1e-8);
            for (b, e) in best.iter().zip(&expected) {
                assert!((b - e).abs() < 1e-8 * e.abs(), "{best:?} vs {expected:?}");
            }
        }
    }
}

/// Item 2: parameter-space Nesterov whose extrapolation point sends the outputs to
/// infinity ends with a solver exit naming the point, and keeps θ₁ — half the Newton step
/// to the minimiser (1, 2) of this linear least-squares problem (α = 1/2, λ = 0, M = W).
#[test]
fn extrapolation_overflow_keeps_the_last_iterate() {
    // Powers of two: every product below is exact.
    let c = 2f64.powi(33);
    let a = mat![[c, 0.0], [0.0, c]];
    let model = natgrad::model::LinearModel::dense(a).unwrap();
    let pb = FitProblem::new(
        model,
        SquaredError::l2(vec![c, 2.0 * c]).unwrap(),
        WeightedL2::uniform(2).unwrap(),
    )
    .unwrap();
    let ng = NaturalGradient::new()
        .with_damping(0.0)
        .unwrap()
        .with_step_size(0.5)
        .unwrap()
        .with_linear_solver(LinearSolver::Cholesky)
        .unwrap()
        .with_step_rule(StepRule::ParamNesterov { beta: 1e300 })
        .unwrap();
    let res = Executor::new(pb, ng)
        .configure(|s| s.param(vec![0.0, 0.0]).max_iters(5))
        .run()
        .expect("a numerical failure is not an input error");
    let reason = exit_reason(res.state());
    assert!(
        reason.contains("extrapolation point")
            && reason.contains("β = 1e300")
            && reason.contains("Linearization::outputs")
            && reason.contains("inf"),
        "{reason}"
    );
    // (Cholesky's factor 2^32.5 is not exact: a few ulps.)
    for theta in [res.state().get_best_param(), res.state().get_param()] {
        let theta = theta.unwrap();
        assert!(
            (theta[0] - 0.5).abs() < 1e-15 && (theta[1] - 1.0).abs() < 1e-15,
            "{theta:?}"
        );
    }
}

/// Item 6: wrong lengths from user code are typed input errors naming the trait method
/// and the quantity — not a panic in `copy_from_slice` or in faer.
#[test]
fn wrong_lengths_from_user_code_are_typed_errors() {
    let default_forward = DefaultForward(scripted(
        false,
        Some(Fault::new(Method::Linearize, 1, Kind::WrongLength)),
    ));
    let pb = FitProblem::new(
        default_forward,
        SquaredError::l2(U.to_vec()).unwrap(),
        WeightedL2::uniform(3).unwrap(),
    )
    .unwrap();
    let err = Executor::new(pb, NaturalGradient::new())
        .configure(|s| s.param(vec![0.0, 0.0]).max_iters(3))
        .run()
        .err()
        .expect("outputs of length n + 1 must fail");
    let text = invalid_parameter_text(err);
    assert!(
        text.contains("Linearization::outputs")
            && text.contains("Model::forward")
            && text.contains("expected length 3, found 4"),
        "{text}"
    );

    for (fault, solver, what) in [
        (
            Fault::new(Method::NParams, 1, Kind::WrongLength),
            LinearSolver::Cg(CgSettings::default()),
            "Linearization::n_params vs Model::n_params: expected length 2, found 3",
        ),
        (
            Fault::new(Method::Linearize, 2, Kind::WrongLength),
            LinearSolver::Cg(CgSettings::default()),
            "Linearization::outputs (model outputs y(θ)) vs Model::n_outputs: expected length 3, found 4",
        ),
        (
            Fault::new(Method::DenseJacobian, 1, Kind::WrongLength),
            LinearSolver::Cholesky,
            "Linearization::dense_jacobian: columns of J vs Model::n_params: expected length 2, found 3",
        ),
    ] {
        let ng = NaturalGradient::new().with_linear_solver(solver).unwrap();
        let err = run(scripted(true, Some(fault)), ng, 3)
            .err()
            .unwrap_or_else(|| panic!("{fault:?} must fail"));
        let text = invalid_parameter_text(err);
        assert!(text.contains(what), "{fault:?}: {text}");
    }
}

/// Item 6: non-finite values from every other trait method end the run naming it.
#[test]
fn non_finite_values_from_user_code_name_the_method() {
    let cg = |p| {
        LinearSolver::Cg(CgSettings {
            preconditioner: p,
            ..CgSettings::default()
        })
    };
    // The Nyström sketch is taken at the first step only.
    for (method, solver, linearized) in [
        (Method::Linearize, cg(Preconditioner::None), 2),
        (Method::DenseJacobian, LinearSolver::Cholesky, 2),
        (Method::JvpBlock, cg(Preconditioner::nystrom(2)), 1),
        (Method::VjpBlock, cg(Preconditioner::nystrom(2)), 1),
        (Method::GramDiagonal, cg(Preconditioner::Jacobi), 2),
    ] {
        let fault = Fault {
            linearized,
            ..Fault::new(method, 1, Kind::NaN)
        };
        let ng = NaturalGradient::new().with_linear_solver(solver).unwrap();
        let res = run(scripted(true, Some(fault)), ng, 10).unwrap();
        let reason = exit_reason(res.state());
        assert!(
            reason.contains(method.path()) && reason.contains("NaN"),
            "{method:?}: {reason}"
        );
        assert!(res
            .state()
            .get_best_param()
            .unwrap()
            .iter()
            .all(|v| v.is_finite()));
    }
    // Model::forward at the initial θ: an input error naming it.
    let err = run(
        scripted(false, Some(Fault::new(Method::Forward, 1, Kind::NaN))),
        NaturalGradient::new(),
        3,
    )
    .err()
    .expect("a NaN initial loss must fail");
    let text = invalid_parameter_text(err);
    assert!(
        text.contains("Model::forward") && text.contains("index 2"),
        "{text}"
    );
    // Model::forward at θ₁ (second call): the run ends naming it.
    let res = run(
        scripted(false, Some(Fault::new(Method::Forward, 2, Kind::NaN))),
        NaturalGradient::new(),
        3,
    )
    .unwrap();
    let reason = exit_reason(res.state());
    assert!(reason.contains("Model::forward"), "{reason}");
    assert_eq!(res.state().get_best_param().unwrap(), &vec![0.0, 0.0]);
}

/// Up to 5 half Newton steps (α = 1/2, λ = 0) from θ = 0 on a one-parameter problem with
/// the Euclidean metric.
fn half_steps<Mo: natgrad::Model, Lo: natgrad::Loss>(
    model: Mo,
    loss: Lo,
) -> argmin::core::OptimizationResult<
    FitProblem<Mo, Lo, natgrad::Euclidean>,
    NaturalGradient,
    NgState,
> {
    let pb = FitProblem::new(model, loss, natgrad::Euclidean).unwrap();
    let ng = NaturalGradient::new()
        .with_step_size(0.5)
        .unwrap()
        .with_damping(0.0)
        .unwrap();
    Executor::new(pb, ng)
        .configure(|s| s.param(vec![0.0]).max_iters(5))
        .run()
        .unwrap()
}

/// Item 6: the closures of a `ClosureModel` and the methods of a `Loss`.
#[test]
fn closure_and_loss_faults_name_the_closure_or_method() {
    use faer::MatMut;
    use natgrad::loss::FnLoss;
    use natgrad::model::ClosureModel;
    // y = θ (p = n = 1); the value closure returns NaN from its `from`-th call on: the
    // calls are the initial loss, the linearisation at θ₀ for the state's gradient (step
    // 0 starts from it), the loss at θ₁ (through `Model::forward`; the run then
    // linearises there to say why), the linearisation at θ₁ for the state's gradient
    // (step 1 starts from it).
    for from in [3, 4] {
        let calls = Arc::new(Mutex::new(0usize));
        let model = ClosureModel::new(
            1,
            1,
            move |t: &[f64], y: &mut [f64]| {
                let mut c = calls.lock().unwrap();
                *c += 1;
                y[0] = if *c >= from { f64::NAN } else { t[0] };
            },
            |_: &[f64], mut j: MatMut<'_, f64>| j[(0, 0)] = 1.0,
        );
        let res = half_steps(model, SquaredError::l2(vec![1.0]).unwrap());
        let reason = exit_reason(res.state());
        assert!(reason.contains("ClosureModel value closure"), "{reason}");
        let kept = if from == 3 { 0.0 } else { 0.5 };
        assert_eq!(res.state().get_best_param().unwrap(), &vec![kept]);
    }

    let jac_calls = Arc::new(Mutex::new(0usize));
    let jc = jac_calls.clone();
    let model = ClosureModel::new(
        1,
        1,
        |t: &[f64], y: &mut [f64]| y[0] = t[0],
        move |_: &[f64], mut j: MatMut<'_, f64>| {
            let mut c = jc.lock().unwrap();
            *c += 1;
            // Calls: θ₀ for the state's gradient (step 0 starts from it), then θ₁.
            j[(0, 0)] = if *c >= 2 { f64::INFINITY } else { 1.0 };
        },
    );
    let res = half_steps(model, SquaredError::l2(vec![1.0]).unwrap());
    let reason = exit_reason(res.state());
    assert!(
        reason.contains("ClosureModel jacobian closure") && reason.contains("inf"),
        "{reason}"
    );
    // θ₁ = 0.5 (half a Newton step towards 1) is kept.
    assert_eq!(res.state().get_best_param().unwrap(), &vec![0.5]);

    // A loss whose gradient is NaN away from 0, and one whose value is NaN.
    let linear = || natgrad::model::LinearModel::dense(mat![[1.0]]).unwrap();
    let loss = FnLoss::new(
        Some(1),
        |y: &[f64]| 0.5 * (y[0] - 1.0).powi(2),
        |y: &[f64], g: &mut [f64]| g[0] = if y[0] != 0.0 { f64::NAN } else { y[0] - 1.0 },
    )
    .unwrap();
    let res = half_steps(linear(), loss);
    let reason = exit_reason(res.state());
    assert!(reason.contains("Loss::gradient"), "{reason}");
    assert_eq!(res.state().get_best_param().unwrap(), &vec![0.5]);

    let loss = FnLoss::new(
        Some(1),
        |_: &[f64]| f64::NAN,
        |_: &[f64], g: &mut [f64]| g[0] = 0.0,
    )
    .unwrap();
    let pb = FitProblem::new(linear(), loss, natgrad::Euclidean).unwrap();
    let err = Executor::new(pb, NaturalGradient::new())
        .configure(|s| s.param(vec![0.0]).max_iters(5))
        .run()
        .err()
        .expect("a NaN initial loss must fail");
    let text = invalid_parameter_text(err);
    assert!(
        text.contains("Loss::value") && text.contains("finite model outputs"),
        "{text}"
    );
}

/// Records the KV of the last iteration.
#[derive(Clone, Default)]
struct LastKv(Arc<Mutex<Option<KV>>>);

impl Observe<NgState> for LastKv {
    fn observe_iter(&mut self, _: &NgState, kv: &KV) -> Result<(), argmin::core::Error> {
        *self.0.lock().unwrap() = Some(kv.clone());
        Ok(())
    }
}

/// Item 7: the failing step's KV holds the loss and ‖g‖ at θ₀ (from the formula: y(0) =
/// 0, so `ℓ = ‖u‖²/(2·3)` and `g = −Aᵀu/3`), the failed solve's iterations and the reason.
#[test]
fn failing_step_reports_what_it_knew() {
    let cg = CgSettings {
        rel_tol: 1e-15,
        max_iters: 1,
        preconditioner: Preconditioner::None,
        ..CgSettings::default()
    };
    let ng = NaturalGradient::new()
        .with_linear_solver(LinearSolver::Cg(cg))
        .unwrap();
    let last = LastKv::default();
    let res = Executor::new(problem(scripted(false, None)), ng)
        .configure(|s| s.param(vec![0.0, 0.0]).max_iters(3))
        .add_observer(last.clone(), ObserverMode::Always)
        .run()
        .unwrap();
    let reason = exit_reason(res.state());
    let kv = last.0.lock().unwrap().clone().expect("observed");
    let get = |k: &str| {
        kv.get(k)
            .unwrap_or_else(|| panic!("no {k} in {kv:?}"))
            .clone()
    };
    let loss = U.iter().map(|u| u * u).sum::<f64>() / 6.0;
    let g: Vec<f64> = (0..2)
        .map(|j| -(0..3).map(|i| A[i][j] * U[i]).sum::<f64>() / 3.0)
        .collect();
    let grad_norm = (g[0] * g[0] + g[1] * g[1]).sqrt();
    assert!((get("start_loss").get_float().unwrap() - loss).abs() < 1e-15 * loss);
    assert!((get("grad_norm").get_float().unwrap() - grad_norm).abs() < 1e-14 * grad_norm);
    assert_eq!(get("cg_iters").get_uint(), Some(1));
    assert_eq!(get("solves").get_uint(), Some(1));
    // One CG iteration from δ = 0 on `K δ = b`, `K = AᵀA/3 + λI` (λ = 1e-8, the default),
    // `b = −g`: δ₁ = (bᵀb / bᵀKb) b, and the reported residual is the true ‖b − Kδ₁‖/‖b‖
    // (0.1336 here). Was `> 1e-15`, which faer's initial residual (1) also passed.
    let lambda = 1e-8;
    let k = |a: usize, c: usize| {
        (0..3).map(|i| A[i][a] * A[i][c]).sum::<f64>() / 3.0 + if a == c { lambda } else { 0.0 }
    };
    let b = [-g[0], -g[1]];
    let kb = [
        k(0, 0) * b[0] + k(0, 1) * b[1],
        k(1, 0) * b[0] + k(1, 1) * b[1],
    ];
    let step = (b[0] * b[0] + b[1] * b[1]) / (b[0] * kb[0] + b[1] * kb[1]);
    let r1 = [b[0] - step * kb[0], b[1] - step * kb[1]];
    let rel = r1[0].hypot(r1[1]) / b[0].hypot(b[1]);
    let reported = get("rel_residual").get_float().unwrap();
    assert!(
        (reported - rel).abs() <= 1e-12 * rel,
        "rel_residual {reported:e}, one CG iteration by hand {rel:e}"
    );
    assert_eq!(get("reason").get_string().unwrap(), reason);
    assert!(reason.contains("CG did not converge"), "{reason}");
}

/// A user-written metric: `M = I/3` (the `WeightedL2::uniform(3)` of the other tests,
/// through `apply` only), which returns NaN at output 2 once the outputs have moved from
/// where it was first applied — a bug that shows only after the first step.
struct NanAfterFirstPoint(Mutex<Option<Vec<f64>>>);

impl natgrad::metric::Metric for NanAfterFirstPoint {
    fn name(&self) -> &'static str {
        "nan-after-first-point"
    }
    fn dim(&self) -> Option<usize> {
        Some(3)
    }
    fn apply(&self, at: &natgrad::metric::OutputPoint<'_>, v: &[f64], out: &mut [f64]) {
        let mut first = self.0.lock().unwrap();
        let first = first.get_or_insert_with(|| at.outputs.to_vec());
        for (o, v) in out.iter_mut().zip(v) {
            *o = v / 3.0;
        }
        if first.as_slice() != at.outputs {
            out[2] = f64::NAN;
        }
    }
    fn diagonal(&self, _: &natgrad::metric::OutputPoint<'_>, _: &mut [f64]) -> bool {
        false
    }
    fn select_samples(&self, _: &[usize], _: usize, _: usize) -> natgrad::Result<Self> {
        Err(natgrad::Error::Unsupported("a test metric".into()))
    }
}

/// Runs `ng` on the problem with [`NanAfterFirstPoint`] from θ₀ = 0 and checks that the
/// run ends naming the metric (metric, method, output index) and nothing else
/// (`not_blamed`), with θ₁ — the dense twin's first step, to `tol` relative — kept.
fn assert_nan_metric_named(ng: NaturalGradient, not_blamed: &str, tol: f64, label: &str) {
    let problem = FitProblem::new(
        scripted(false, None),
        SquaredError::l2(U.to_vec()).unwrap(),
        NanAfterFirstPoint(Mutex::new(None)),
    )
    .unwrap();
    let res = Executor::new(problem, ng)
        .configure(|s| s.param(vec![0.0, 0.0]).max_iters(10))
        .run()
        .unwrap();
    let reason = exit_reason(res.state());
    assert!(
        reason.contains("metric `nan-after-first-point`")
            && reason.contains("output index 2")
            && reason.contains("Metric::apply")
            && reason.contains("last good iterate")
            && !reason.contains("positive definite")
            && !reason.contains(not_blamed),
        "{label}: {reason}"
    );
    let best = res.state().get_best_param().unwrap();
    let expected = first_step(1e-8);
    for (b, e) in best.iter().zip(&expected) {
        assert!(
            (b - e).abs() < tol * e.abs(),
            "{label}: {best:?} vs {expected:?}"
        );
    }
}

/// Issue 17: the dense paths check a user metric as the matrix-free path does — under
/// `Cholesky` and `LeastSquares` (which form `JᵀMJ` densely) the metric whose `apply`
/// returns NaN is named (metric, method, output index), not a Cholesky pivot or a
/// non-finite direction, and θ₁ (the dense twin's first step) is kept.
#[test]
fn user_metric_returning_nan_is_named_on_the_dense_paths() {
    for (linear, tol) in [
        (LinearSolver::Cholesky, 1e-12),
        (LinearSolver::LeastSquares { rcond: 0.0 }, 1e-8),
    ] {
        let label = format!("{linear:?}");
        let ng = NaturalGradient::new().with_linear_solver(linear).unwrap();
        assert_nan_metric_named(ng, "direction is not finite", tol, &label);
    }
}

/// Issue 17: a user metric whose `apply` returns NaN is named (metric, method, output
/// index) — not reported as a CG breakdown — and θ₁ is kept; plain and heavy ball (whose
/// right-hand side applies the metric too).
#[test]
fn user_metric_returning_nan_is_named_not_blamed_on_cg() {
    for rule in [StepRule::Plain, StepRule::HeavyBall { beta: 0.5 }] {
        let ng = NaturalGradient::new().with_step_rule(rule).unwrap();
        assert_nan_metric_named(ng, "CG", 1e-8, &format!("{rule:?}"));
    }
}
