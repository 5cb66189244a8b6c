//! Property tests of issue 15: over random shapes, random non-finite data, random
//! user-model failures (NaN or wrong lengths from a chosen trait method at a random
//! call) and random settings, a run never panics, never returns a non-finite θ, and a
//! reason that blames user code blames the method that misbehaved.

#[path = "failures/scripted.rs"]
mod scripted;

use argmin::core::{ArgminError, Executor, State, TerminationReason};
use faer::Mat;
use natgrad::linsolve::AutoSettings;
use natgrad::model::LinearModel;
use natgrad::{
    CgSettings, FitProblem, LinearSolver, NaturalGradient, Preconditioner, SquaredError,
    StepControl, StepRule, WeightedL2,
};
use proptest::prelude::*;
use scripted::{Fault, Kind, Method, Scripted};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Every trait-method name a message can blame.
const BLAMABLE: [&str; 10] = [
    "Model::forward",
    "Linearization::outputs",
    "Linearization::n_params",
    "Linearization::jvp",
    "Linearization::vjp",
    "Linearization::jvp_block",
    "Linearization::vjp_block",
    "Linearization::dense_jacobian",
    "Linearization::gram_diagonal",
    "Loss::",
];

fn solver(i: usize) -> LinearSolver {
    let cg = |preconditioner| {
        LinearSolver::Cg(CgSettings {
            preconditioner,
            ..CgSettings::default()
        })
    };
    match i {
        0 => cg(Preconditioner::None),
        1 => cg(Preconditioner::Jacobi),
        2 => cg(Preconditioner::nystrom(2)),
        3 => LinearSolver::Cholesky,
        4 => LinearSolver::Auto(AutoSettings::default()),
        5 => LinearSolver::SampleCg(CgSettings::default()),
        6 => LinearSolver::SampleCholesky,
        _ => LinearSolver::LeastSquares { rcond: 1e-12 },
    }
}

#[derive(Debug, Clone)]
struct Settings {
    solver: usize,
    momentum: usize,
    beta: f64,
    step_size: f64,
    damping: f64,
    control: usize,
    adaptive: bool,
    cap: Option<f64>,
    iters: u64,
}

fn settings() -> impl Strategy<Value = Settings> {
    (
        0..8usize,
        0..StepRule::NAMES.len(),
        -0.5..0.95f64,
        0.1..2.0f64,
        prop_oneof![Just(0.0), Just(1e-8), Just(1e-3)],
        0..3usize,
        any::<bool>(),
        proptest::option::of(0.1..10.0f64),
        1..7u64,
    )
        .prop_map(
            |(solver, momentum, beta, step_size, damping, control, adaptive, cap, iters)| {
                Settings {
                    solver,
                    momentum,
                    beta,
                    step_size,
                    damping,
                    control,
                    adaptive,
                    cap,
                    iters,
                }
            },
        )
}

impl Settings {
    fn solver(&self) -> NaturalGradient {
        let momentum = StepRule::from_name(StepRule::NAMES[self.momentum], self.beta).unwrap();
        let control = match self.control {
            0 => StepControl::Fixed,
            1 => StepControl::armijo(),
            _ => StepControl::LogGrid { max_halvings: 4 },
        };
        let mut ng = NaturalGradient::new()
            .with_linear_solver(solver(self.solver))
            .unwrap()
            .with_step_rule(momentum)
            .unwrap()
            .with_step_size(self.step_size)
            .unwrap()
            .with_damping(self.damping)
            .unwrap()
            .with_step_control(control)
            .unwrap();
        if self.adaptive {
            ng = ng.with_adaptive_damping(1e-6, 1e3).unwrap();
        }
        if let Some(cap) = self.cap {
            ng = ng.with_max_step_norm(cap).unwrap();
        }
        ng
    }
}

fn fault() -> impl Strategy<Value = Option<Fault>> {
    proptest::option::weighted(
        0.8,
        (
            0..Method::ALL.len(),
            1..8usize,
            prop_oneof![Just(Kind::NaN), Just(Kind::WrongLength)],
            0..3usize,
        )
            .prop_map(|(m, from, kind, linearized)| Fault {
                method: Method::ALL[m],
                from,
                kind,
                linearized,
            }),
    )
}

/// A random problem: `n × p` (small), its data, θ₀.
fn shape() -> impl Strategy<Value = (usize, usize, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>)> {
    (1..6usize, 1..5usize).prop_flat_map(|(n, p)| {
        (
            Just(n),
            Just(p),
            proptest::collection::vec(-2.0..2.0f64, n * p),
            proptest::collection::vec(-0.5..0.5f64, n),
            proptest::collection::vec(-3.0..3.0f64, n),
            proptest::collection::vec(-1.0..1.0f64, p),
        )
    })
}

/// The names a text blames.
fn blamed(text: &str) -> Vec<&'static str> {
    BLAMABLE
        .iter()
        .copied()
        .filter(|m| text.contains(m))
        .collect()
}

/// What the faulty method may be called in a message: its own name, or for jvp/vjp the
/// block product the crate's default block implementation routes them through.
fn may_blame(method: Method, name: &str) -> bool {
    let own = method.path();
    name == own
        || (own.starts_with(name) && name.len() > "Linearization::".len())
        || name.starts_with(own)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// No panic, no non-finite θ, and blame only where it is due.
    #[test]
    fn runs_fail_cleanly_and_name_the_real_cause(
        (n, p, a, b, u, theta0) in shape(),
        dense in any::<bool>(),
        fault in fault(),
        s in settings(),
    ) {
        let model = Scripted::new(Mat::from_fn(n, p, |i, j| a[i * p + j]), b, dense, fault);
        let watch = model.clone();
        let problem = FitProblem::new(model, SquaredError::l2(u).unwrap(), WeightedL2::uniform(n).unwrap())
            .unwrap();
        let ng = s.solver();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            Executor::new(problem, ng)
                .configure(|st| st.param(theta0.clone()).max_iters(s.iters))
                .run()
        }));
        let outcome = match outcome {
            Ok(o) => o,
            Err(_) => panic!("panicked with {fault:?} {s:?}"),
        };
        let fired = watch.fired();
        let text = match &outcome {
            Ok(res) => {
                let state = res.state();
                for theta in [state.get_best_param(), state.get_param()] {
                    let theta = theta.expect("a parameter");
                    prop_assert!(theta.iter().all(|v| v.is_finite()), "θ = {theta:?}");
                }
                match state.get_termination_reason() {
                    Some(TerminationReason::SolverExit(r)) => r.clone(),
                    _ => String::new(),
                }
            }
            Err(e) => {
                let kind = e.downcast_ref::<ArgminError>();
                prop_assert!(
                    matches!(kind, Some(ArgminError::InvalidParameter { .. })),
                    "unexpected error {e} with {fault:?} {s:?}"
                );
                prop_assert!(fired, "an input error without a fault: {e} ({s:?})");
                e.to_string()
            }
        };
        // Blame only where it is due. (A message about an inf is about an overflow the
        // model computed correctly, e.g. outputs at a far point; the scripted faults are
        // NaNs and wrong lengths.)
        let accuses = text.contains("NaN") || text.contains("expected length");
        for name in blamed(&text).into_iter().filter(|_| accuses) {
            let due = fault.is_some_and(|f| fired && may_blame(f.method, name));
            prop_assert!(due, "blames {name} with {fault:?} (fired {fired}): {text}");
        }
        // A fault that happened in a value the run must use is named.
        // (A NaN from `Model::forward` may only make a line search or Levenberg–Marquardt
        // reject a trial point.)
        if let Some(f) = fault.filter(|_| fired)
            && f.method != Method::Forward {
                prop_assert!(
                    !blamed(&text).is_empty(),
                    "{f:?} happened but the run says: {text:?} ({s:?})"
                );
            }
    }

    /// Non-finite data anywhere is a typed error naming the entry.
    #[test]
    fn non_finite_data_is_a_typed_error(
        (n, p, a, _b, u, theta0) in shape(),
        bad in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)],
        place in 0..4usize,
        at in any::<prop::sample::Index>(),
    ) {
        let mut a = a;
        let mut u = u;
        let mut theta0 = theta0;
        let mut weights = vec![1.0; n];
        let (what, index) = match place {
            0 => { let k = at.index(n * p); a[k] = bad; ("row", k) }
            1 => { let k = at.index(n); u[k] = bad; ("target", k) }
            2 => { let k = at.index(n); weights[k] = bad; ("weights", k) }
            _ => { let k = at.index(p); theta0[k] = bad; ("theta", k) }
        };
        let design = Mat::from_fn(n, p, |i, j| a[i * p + j]);
        let text = match (
            LinearModel::dense(design),
            SquaredError::l2(u),
            WeightedL2::new(weights),
        ) {
            (Err(e), _, _) => {
                prop_assert_eq!(what, "row");
                prop_assert!(e.to_string().contains(&format!("row {}, column {}", index / p, index % p)), "{e}");
                return Ok(());
            }
            (_, Err(e), _) | (_, _, Err(e)) => e.to_string(),
            (Ok(model), Ok(loss), Ok(metric)) => {
                let problem = FitProblem::new(model, loss, metric).unwrap();
                let err = Executor::new(problem, NaturalGradient::new())
                    .configure(|st| st.param(theta0).max_iters(2))
                    .run()
                    .err()
                    .expect("a non-finite θ₀ is an input error");
                err.to_string()
            }
        };
        prop_assert!(text.contains(what) && text.contains(&format!("index {index}")), "{text}");
    }
}
