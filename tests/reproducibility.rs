//! Checkpoint resume and thread count leave the iterates bitwise unchanged (acceptance 6).

mod common;

use argmin::core::checkpointing::CheckpointingFrequency;
use argmin::core::observers::{Observe, ObserverMode};
use argmin::core::{Executor, State, KV};
use argmin_checkpointing_file::FileCheckpoint;
use common::runs::trajectory;
use common::{mat, matvec, rng};
use faer::Par;
use natgrad::model::LinearModel;
use natgrad::problems::toys;
use natgrad::{
    FitProblem, LinearSolver, NaturalGradient, NgState, Parallelism, SquaredError, StepControl,
    StepRule, WeightedL2,
};

/// An observer that fails at a given iteration: the run "crashes" there.
struct CrashAt(u64);

impl Observe<NgState> for CrashAt {
    fn observe_iter(&mut self, state: &NgState, _kv: &KV) -> Result<(), argmin::core::Error> {
        if state.get_iter() == self.0 {
            return Err(argmin::core::Error::msg("simulated crash"));
        }
        Ok(())
    }
}

fn linear_problem(par: Par) -> FitProblem<LinearModel, SquaredError<WeightedL2>, WeightedL2> {
    let (m, p) = (600, 40);
    let mut r = rng(3);
    let a = mat(&mut r, m, p);
    let theta: Vec<f64> = (0..p).map(|i| (i as f64).sin()).collect();
    let u: Vec<f64> = matvec(&a, &theta).iter().map(|y| y.tanh()).collect();
    let model = LinearModel::dense(a).unwrap().with_parallelism(par);
    FitProblem::new(
        model,
        SquaredError::l2(u).unwrap(),
        WeightedL2::uniform(m).unwrap(),
    )
    .unwrap()
}

/// Solvers whose state carries everything: momentum memory, warm starts, the damping of
/// Levenberg–Marquardt (λ and Nielsen's ν), the mini-batch generator. The stopping tests
/// are off so that the runs last their full length (with them on, the linear problem
/// converges early; 20 steps, because after ~24 the LM run reaches rounding level, its
/// null steps are rejected and it ends at its maximum damping).
fn stateful_solvers() -> Vec<NaturalGradient> {
    let base = || {
        NaturalGradient::new()
            .with_step_size(0.5)
            .unwrap()
            .with_damping(1e-3)
            .unwrap()
            .with_tolerances(natgrad::Tolerances::NONE)
            .unwrap()
    };
    vec![
        base()
            .with_step_rule(StepRule::HeavyBall { beta: 0.5 })
            .unwrap()
            .with_adaptive_damping(1e-6, 1e6)
            .unwrap(),
        base()
            .with_step_rule(StepRule::Nesterov { beta: 0.3 })
            .unwrap()
            .with_batch_size(50)
            .unwrap()
            .with_seed(9)
            .with_step_control(StepControl::armijo())
            .unwrap(),
    ]
}

#[test]
fn resumed_run_equals_uninterrupted_run_bitwise() {
    let dir = std::env::temp_dir().join(format!("natgrad-ckpt-{}", std::process::id()));
    for (i, solver) in stateful_solvers().into_iter().enumerate() {
        let theta0 = vec![0.0; 40];
        let (full, last, _) = trajectory(linear_problem(Par::Seq), solver.clone(), &theta0, 20);
        assert_eq!(full.len(), 20);

        let name = format!("run{i}");
        let checkpoint = || {
            FileCheckpoint::new(
                dir.to_str().unwrap(),
                name.as_str(),
                CheckpointingFrequency::Always,
            )
        };
        let crashed = Executor::new(linear_problem(Par::Seq), solver.clone())
            .configure(|s| s.param(theta0.clone()).max_iters(20))
            .checkpointing(checkpoint())
            .add_observer(CrashAt(12), ObserverMode::Always)
            .run();
        assert!(crashed.is_err(), "the first run must crash");

        let resumed = Executor::new(linear_problem(Par::Seq), solver)
            .configure(|s| s.param(theta0.clone()).max_iters(20))
            .checkpointing(checkpoint())
            .run()
            .unwrap();
        let state = resumed.state();
        assert_eq!(state.get_iter(), 20);
        let got = state.get_param().unwrap();
        assert_eq!(got, &last, "solver {i}: resumed run differs");
        assert_eq!(got, full.last().unwrap());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_and_two_threads_give_bitwise_equal_iterates() {
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut out = Vec::new();
            for linear in [LinearSolver::default(), LinearSolver::Cholesky] {
                for solver in stateful_solvers() {
                    let solver = solver
                        .with_linear_solver(linear.clone())
                        .unwrap()
                        .with_parallelism(Parallelism::Rayon(threads));
                    let problem = linear_problem(Par::rayon(threads));
                    out.push(trajectory(problem, solver, &[0.0; 40], 15).0);
                }
            }
            out
        })
    };
    let (one, two) = (run(1), run(2));
    assert_eq!(one.iter().map(Vec::len).collect::<Vec<_>>(), vec![15; 4]);
    assert_eq!(one, two);
}

#[test]
fn solver_state_round_trips_through_serde() {
    let toy = toys::local_minima();
    let solver = NaturalGradient::new()
        .with_step_rule(StepRule::HeavyBall { beta: 0.8 })
        .unwrap()
        .with_step_size(0.5)
        .unwrap();
    let res = Executor::new(toy.problem, solver)
        .configure(|s| s.param(toy.theta0.clone()).max_iters(7))
        .run()
        .unwrap();
    let json = serde_json::to_string(&res.solver).unwrap();
    let back: NaturalGradient = serde_json::from_str(&json).unwrap();
    assert_eq!(back, res.solver);
    assert!(
        json.contains("previous"),
        "the previous iterate is part of the state"
    );
}
