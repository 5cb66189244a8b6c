//! What each step's KV says about its linear solves (`solves`, `cg_iters`, `rel_residual`,
//! `linear_solver`, `preconditioner`; docs of `NaturalGradient`), against counts known
//! from the mathematics of CG: on a 2 × 2 system whose right-hand side is not an
//! eigenvector, CG from zero needs exactly 2 iterations (the Krylov space is all of R²
//! after two); started from the exact solution it needs none. Issue 20: the survivors of
//! cargo-mutants on `src/solver/solve.rs` (nothing read these keys after a successful
//! solve, nor the warm start).

mod common;

use argmin::core::observers::ObserverMode;
use argmin::core::{Executor, State, KV};
use common::runs::KvLog;
use faer::mat;
use natgrad::loss::FnLoss;
use natgrad::metric::{Metric, OutputPoint};
use natgrad::model::LinearModel;
use natgrad::{
    CgSettings, FitProblem, LinearSolver, NaturalGradient, Preconditioner, StepRule, Tolerances,
    WeightedL2,
};

fn uint(kv: &KV, key: &str) -> Option<u64> {
    kv.get(key)
        .map(|v| v.get_uint().expect("an unsigned integer"))
}

fn text(kv: &KV, key: &str) -> String {
    let v = kv.get(key).unwrap_or_else(|| panic!("no {key} in {kv:?}"));
    v.get_string().expect("a string")
}

/// `y = Aθ` with `A = [[1, 0], [0, 2], [1, 1]]` and the linear loss `ℓ(y) = cᵀy`,
/// `c = (1, −2, ½)`: the gradient `g = Aᵀc = (3/2, −7/2)` and the Gram matrix
/// `G = AᵀWA = [[2, 1], [1, 5]]/3` (`W = I/3`) are the same at every θ, so every Plain
/// step solves the same system; `g` is not an eigenvector of `G` (`Gg ∦ g`).
fn linear_problem<Me: Metric>(metric: Me) -> FitProblem<LinearModel, impl natgrad::Loss, Me> {
    let c = [1.0, -2.0, 0.5];
    let loss = FnLoss::new(
        Some(3),
        move |y: &[f64]| y.iter().zip(&c).map(|(y, c)| y * c).sum(),
        move |_: &[f64], out: &mut [f64]| out.copy_from_slice(&c),
    )
    .unwrap();
    let a = mat![[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]];
    FitProblem::new(LinearModel::dense(a).unwrap(), loss, metric).unwrap()
}

fn cg(warm_start: bool) -> LinearSolver {
    LinearSolver::Cg(CgSettings {
        preconditioner: Preconditioner::None,
        warm_start,
        ..CgSettings::default()
    })
}

fn run<Me: Metric + 'static>(
    problem: FitProblem<LinearModel, impl natgrad::Loss + 'static, Me>,
    ng: NaturalGradient,
    steps: u64,
) -> (Vec<KV>, String) {
    let kvs = KvLog::default();
    let res = Executor::new(problem, ng.with_tolerances(Tolerances::NONE).unwrap())
        .configure(|s| s.param(vec![0.0, 0.0]).max_iters(steps))
        .add_observer(kvs.clone(), ObserverMode::Always)
        .run()
        .unwrap();
    let kvs = kvs.get();
    (kvs, format!("{:?}", res.state().get_termination_reason()))
}

/// Plain step: one solve of 2 iterations. Nesterov's later steps: two solves (the
/// extrapolation `G s = β Jᵀ M (y_k − y_{k−1})` and the gradient solve at `z`), 2 + 2
/// iterations from cold starts, summed in one `cg_iters`.
#[test]
fn kv_counts_every_solve_and_sums_its_cg_iterations() {
    let ng = NaturalGradient::new()
        .with_step_size(0.5)
        .unwrap()
        .with_linear_solver(cg(false))
        .unwrap()
        .with_step_rule(StepRule::Nesterov { beta: 0.5 })
        .unwrap();
    let (kvs, _) = run(linear_problem(WeightedL2::uniform(3).unwrap()), ng, 3);
    assert_eq!(kvs.len(), 3);
    for (k, kv) in kvs.iter().enumerate() {
        let (solves, iters) = if k == 0 { (1, 2) } else { (2, 4) };
        assert_eq!(uint(kv, "solves"), Some(solves), "step {k}: {kv:?}");
        assert_eq!(uint(kv, "cg_iters"), Some(iters), "step {k}: {kv:?}");
        assert_eq!(text(kv, "linear_solver"), "cg");
        assert_eq!(text(kv, "preconditioner"), "none");
        let res = kv.get("rel_residual").unwrap().get_float().unwrap();
        assert!((0.0..=1e-10).contains(&res), "step {k}: {res}");
    }
}

/// The warm start is the previous step's direction: on the second Plain step the system
/// is the same, so CG starts at its solution and stops before its first iteration (2
/// iterations from a cold start).
#[test]
fn warm_start_from_the_solution_of_the_same_system_takes_no_iteration() {
    for (warm, second) in [(true, 0), (false, 2)] {
        let ng = NaturalGradient::new()
            .with_step_size(0.5)
            .unwrap()
            .with_linear_solver(cg(warm))
            .unwrap();
        let (kvs, _) = run(linear_problem(WeightedL2::uniform(3).unwrap()), ng, 2);
        assert_eq!(
            uint(&kvs[0], "cg_iters"),
            Some(2),
            "warm {warm}: {:?}",
            kvs[0]
        );
        assert_eq!(
            uint(&kvs[1], "cg_iters"),
            Some(second),
            "warm {warm}: {:?}",
            kvs[1]
        );
    }
}

/// `M = −I/3`: `G = −AᵀA/3` is negative definite and CG breaks down at its first
/// iteration; the failing step's KV still counts the solve and its CG iterations (0).
#[test]
fn kv_of_a_cg_breakdown_counts_the_solve_and_its_iterations() {
    struct NegativeMetric;
    impl Metric for NegativeMetric {
        fn name(&self) -> &'static str {
            "NegativeMetric"
        }
        fn dim(&self) -> Option<usize> {
            None
        }
        fn apply(&self, _: &OutputPoint<'_>, v: &[f64], out: &mut [f64]) {
            out.iter_mut().zip(v).for_each(|(o, v)| *o = -v / 3.0);
        }
        fn diagonal(&self, _: &OutputPoint<'_>, _: &mut [f64]) -> bool {
            false
        }
        fn select_samples(&self, _: &[usize], _: usize, _: usize) -> natgrad::Result<Self> {
            Ok(NegativeMetric)
        }
    }
    let ng = NaturalGradient::new()
        .with_damping(0.0)
        .unwrap()
        .with_linear_solver(cg(false))
        .unwrap();
    let (kvs, reason) = run(linear_problem(NegativeMetric), ng, 3);
    assert!(
        reason.contains("not positive definite") && reason.contains("iteration 0"),
        "{reason}"
    );
    let kv = kvs.last().expect("the failing step is observed");
    assert_eq!(uint(kv, "solves"), Some(1), "{kv:?}");
    assert_eq!(uint(kv, "cg_iters"), Some(0), "{kv:?}");
}
