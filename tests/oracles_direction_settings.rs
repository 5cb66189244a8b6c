//! The direction solver's own contract (`linsolve::DirectionSolver`, its settings and
//! reports; docs of `src/linsolve/mod.rs` and `settings.rs`), against values worked by hand
//! or stated by its documentation: what it keeps (settings, warm starts, the solve count),
//! which initial guess each solve starts from, what a new run forgets, how a method and a
//! preconditioner are named, and where non-finite data is. CG's iteration counts are Krylov
//! arithmetic: on `G = [[2, 1], [1, 5]]` with `b = (1, 2)` (not an eigenvector: `Gb = (4,
//! 11)`), CG from zero needs exactly 2 iterations, from the solution `d = G⁻¹b = (⅓, ⅓)`
//! none; on `G = I` it needs 1. Issue 20: the survivors of cargo-mutants on
//! `src/linsolve/mod.rs` and `src/linsolve/settings.rs` (docs/testing.md).

mod common;

use argmin::core::observers::ObserverMode;
use argmin::core::{Executor, KV};
use common::runs::KvLog;
use faer::{mat, Mat, Par};
use natgrad::linsolve::{
    DirectionSolver, Parallelism, Path, PreconditionerKind, Rhs, SolveFailure, SolveMethod,
    WarmStart,
};
use natgrad::model::LinearModel;
use natgrad::{
    CgSettings, FitProblem, LinearSolver, NaturalGradient, Preconditioner, SquaredError,
    Tolerances, WeightedL2,
};

/// `y = Aθ`, squared error to 0, metric `W = I` (weights 1): `G = AᵀA`.
fn linear(a: Mat<f64>) -> FitProblem<LinearModel, SquaredError, WeightedL2> {
    let n = a.nrows();
    let metric = WeightedL2::new(vec![1.0; n]).unwrap();
    FitProblem::new(
        LinearModel::dense(a).unwrap(),
        SquaredError::new(vec![0.0; n], metric.clone()).unwrap(),
        metric,
    )
    .unwrap()
}

/// `A = [[1, 0], [0, 2], [1, 1]]`: `G = AᵀA = [[2, 1], [1, 5]]`.
fn two_by_two() -> FitProblem<LinearModel, SquaredError, WeightedL2> {
    linear(mat![[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
}

/// `b = (1, 2)` and its solution `G⁻¹b = [[5, −1], [−1, 2]]/9 · b = (⅓, ⅓)`.
const B: [f64; 2] = [1.0, 2.0];
const D: [f64; 2] = [1.0 / 3.0, 1.0 / 3.0];

/// Plain CG (no preconditioner) to the default tolerance, warm-starting or not.
fn cg(warm_start: bool) -> LinearSolver {
    LinearSolver::Cg(CgSettings {
        preconditioner: Preconditioner::None,
        warm_start,
        ..CgSettings::default()
    })
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-12)
}

/// What the builders and setters are given is what the accessors return; the cache
/// starts empty.
#[test]
fn the_direction_solver_keeps_the_settings_it_is_given() {
    let fresh = DirectionSolver::new(LinearSolver::Cholesky);
    assert_eq!(fresh.linear_solver(), &LinearSolver::Cholesky);
    assert_eq!(fresh.parallelism(), Parallelism::Sequential);
    assert_eq!(fresh.cache().solves(), 0);
    assert!(fresh.direction().is_empty(), "{:?}", fresh.direction());

    let guess = vec![0.5, -1.0];
    let built = DirectionSolver::new(LinearSolver::Cholesky)
        .with_parallelism(Parallelism::Rayon(2))
        .with_warm_start(WarmStart::Direction, guess.clone());
    assert_eq!(built.linear_solver(), &LinearSolver::Cholesky);
    assert_eq!(built.parallelism(), Parallelism::Rayon(2));
    assert_eq!(
        built.cache().warm_start(WarmStart::Direction),
        Some(&guess[..])
    );
    assert_eq!(built.cache().warm_start(WarmStart::Extrapolation), None);
    assert_eq!(built.direction(), &guess[..]);

    let mut set = DirectionSolver::new(LinearSolver::Cholesky);
    set.set_linear_solver(LinearSolver::SampleCholesky)
        .set_parallelism(Parallelism::Rayon(3));
    assert_eq!(set.linear_solver(), &LinearSolver::SampleCholesky);
    assert_eq!(set.parallelism(), Parallelism::Rayon(3));
    set.set_parallelism(Parallelism::Sequential)
        .set_linear_solver(LinearSolver::Cholesky);
    assert_eq!(set.linear_solver(), &LinearSolver::Cholesky);
    assert_eq!(set.parallelism(), Parallelism::Sequential);
}

/// `Parallelism` is faer's `Par` and back.
#[test]
fn parallelism_is_faers_par_and_back() {
    assert_eq!(Parallelism::Sequential.par(), Par::Seq);
    assert_eq!(Parallelism::Rayon(3).par(), Par::rayon(3));
    assert_eq!(Parallelism::from(Par::Seq), Parallelism::Sequential);
    assert_eq!(Parallelism::from(Par::rayon(3)), Parallelism::Rayon(3));
    assert_eq!(Parallelism::default(), Parallelism::Sequential);
}

/// The documented default preconditioner is built in bounded time (`Preconditioner::auto()`
/// and the `Default` that calls it; a mutual recursion between the two would hang every
/// default `CgSettings`). If it has not returned within 10 s, the test process exits with
/// a failure instead of hanging the suite (the name sorts first, so that the test starts
/// before the others, which would hang with it).
#[test]
fn a_default_preconditioner_is_built_in_bounded_time() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let built = (
            Preconditioner::auto(),
            Preconditioner::default(),
            CgSettings::default().preconditioner,
        );
        let _ = tx.send(built);
    });
    let Ok(built) = rx.recv_timeout(std::time::Duration::from_secs(10)) else {
        eprintln!("Preconditioner::auto() / ::default() did not return within 10 s");
        std::process::exit(1);
    };
    let auto = Preconditioner::Auto {
        trial_above: 50,
        refresh_every: 10,
    };
    assert_eq!(built, (auto, auto, auto));
}

/// Each solve counts, starts from the last solution of its system when that has the
/// problem's size (0 iterations: it is the solution), and from zero otherwise (a problem
/// of another size, or the other system); a guess given by `with_warm_start` is used.
#[test]
fn each_solve_starts_from_the_last_solution_of_a_system_of_the_same_size() {
    let small = two_by_two();
    let mut lin = small.linearize(&[0.0, 0.0]).unwrap();
    let mut ds = DirectionSolver::new(cg(true));
    for (k, iters) in [(1, 2), (2, 0)] {
        let info = ds.solve(&mut lin, Rhs::Params(&B), 0.0).unwrap();
        assert_eq!(info.cg_iters(), Some(iters), "solve {k}");
        assert_eq!(info.method, SolveMethod::Path(Path::ParamCg));
        assert!(close(ds.direction(), &D), "{:?}", ds.direction());
        assert_eq!(ds.cache().solves(), k);
    }
    // The other system (Nesterov's extrapolation) has its own guess: none yet.
    let info = ds
        .solve_system(WarmStart::Extrapolation, &mut lin, Rhs::Params(&B), 0.0)
        .unwrap();
    assert_eq!(info.cg_iters(), Some(2));
    assert_eq!(ds.cache().solves(), 3);

    // A problem of 3 parameters, G = I: the 2-vector cannot start it; one iteration.
    let large = linear(Mat::identity(3, 3));
    let mut lin3 = large.linearize(&[0.0; 3]).unwrap();
    let b3 = [1.0, -2.0, 4.0];
    let info = ds.solve(&mut lin3, Rhs::Params(&b3), 0.0).unwrap();
    assert_eq!(info.cg_iters(), Some(1));
    assert!(close(ds.direction(), &b3), "{:?}", ds.direction());
    assert_eq!(ds.cache().solves(), 4);

    // A guess handed in: the solution, so no iteration.
    let mut given =
        DirectionSolver::new(cg(true)).with_warm_start(WarmStart::Direction, D.to_vec());
    let info = given.solve(&mut lin, Rhs::Params(&B), 0.0).unwrap();
    assert_eq!(info.cg_iters(), Some(0));
    assert!(close(given.direction(), &D));

    // Cholesky runs no CG.
    let mut chol = DirectionSolver::new(LinearSolver::Cholesky);
    let info = chol.solve(&mut lin, Rhs::Params(&B), 0.0).unwrap();
    assert_eq!(info.cg_iters(), None);
    assert_eq!(info.method, SolveMethod::Path(Path::ParamCholesky));
    assert!(close(chol.direction(), &D));
}

fn cg_iters(kv: &KV) -> u64 {
    kv.get("cg_iters").unwrap().get_uint().unwrap()
}

/// A run starts with nothing kept from an earlier run of the same solver. One step of the
/// 2 × 2 problem from `θ₀ = (1, 1)`: `g = Gθ₀ = (3, 6) = 3b`, so CG from zero takes 2
/// iterations to `δ = G⁻¹g = θ₀`; run again, the solver's warm start from the first run
/// is that solution, which would take none.
#[test]
fn a_new_run_forgets_what_the_last_run_kept() {
    let ng = NaturalGradient::new()
        .with_linear_solver(cg(true))
        .unwrap()
        .with_tolerances(Tolerances::NONE)
        .unwrap();
    let run = |ng: NaturalGradient| {
        let kvs = KvLog::default();
        let res = Executor::new(two_by_two(), ng)
            .configure(|s| s.param(vec![1.0, 1.0]).max_iters(1))
            .add_observer(kvs.clone(), ObserverMode::Always)
            .run()
            .unwrap();
        (
            kvs.get().iter().map(cg_iters).collect::<Vec<_>>(),
            res.solver,
        )
    };
    let (first, used) = run(ng);
    assert_eq!(first, [2]);
    let (second, _) = run(used);
    assert_eq!(second, [2]);
}

/// The names of the docs (`cg`, `cholesky`, `sample-cg`, `sample-cholesky`,
/// `least-squares`, `kfac`, `auto:<space>-<method>`) and what each method is.
#[test]
fn every_method_has_its_documented_name_path_and_kind() {
    use Path::*;
    let paths = [
        (ParamCg, "param-cg", "cg", true),
        (ParamCholesky, "param-cholesky", "cholesky", false),
        (SampleCg, "sample-cg", "sample-cg", true),
        (SampleCholesky, "sample-cholesky", "sample-cholesky", false),
    ];
    for (path, auto_name, name, cg) in paths {
        let asked = SolveMethod::Path(path);
        assert_eq!(asked.to_string(), name);
        assert_eq!(asked.path(), Some(path));
        assert!(!asked.chosen_by_auto());
        assert_eq!(asked.runs_cg(), cg, "{asked}");
        let chosen = SolveMethod::Auto(path);
        assert_eq!(chosen.to_string(), format!("auto:{auto_name}"));
        assert_eq!(chosen.path(), Some(path));
        assert!(chosen.chosen_by_auto());
        assert_eq!(chosen.runs_cg(), cg, "{chosen}");
    }
    for (method, name) in [
        (SolveMethod::LeastSquares, "least-squares"),
        (SolveMethod::Kfac, "kfac"),
    ] {
        assert_eq!(method.to_string(), name);
        assert_eq!(method.path(), None);
        assert!(!method.chosen_by_auto());
        assert!(!method.runs_cg());
    }
    for (kind, name) in [
        (PreconditionerKind::None, "none"),
        (PreconditionerKind::Jacobi, "jacobi"),
        (PreconditionerKind::Nystrom, "nystrom"),
        (PreconditionerKind::Kfac, "kfac"),
    ] {
        assert_eq!(kind.to_string(), name);
    }
}

/// A non-finite right-hand side is refused at its first bad index before any work; a
/// direction that overflows is refused: `G = 10⁻³⁰⁰I` (`A = 10⁻¹⁵⁰I`) and `b = 10³⁰⁰·1`
/// give `d = 10⁶⁰⁰·1`, infinite from index 0.
#[test]
fn non_finite_data_is_named_at_its_first_bad_index() {
    let pb = linear(Mat::identity(3, 3));
    let mut lin = pb.linearize(&[0.0; 3]).unwrap();
    let mut ds = DirectionSolver::new(LinearSolver::Cholesky);
    let e = ds
        .solve(&mut lin, Rhs::Params(&[1.0, f64::NAN, f64::INFINITY]), 0.0)
        .unwrap_err();
    assert_eq!(
        e,
        SolveFailure::NonFinite {
            what: "right-hand side",
            index: 1
        }
    );
    assert!(
        e.to_string()
            .starts_with("non-finite right-hand side at index 1"),
        "{e}"
    );
    let info = ds
        .solve(&mut lin, Rhs::Params(&[1.0, 2.0, 3.0]), 0.0)
        .unwrap();
    assert_eq!(info.method, SolveMethod::Path(Path::ParamCholesky));
    assert_eq!(ds.direction(), &[1.0, 2.0, 3.0]);

    let tiny = linear(Mat::from_fn(3, 3, |i, j| if i == j { 1e-150 } else { 0.0 }));
    let mut lin = tiny.linearize(&[0.0; 3]).unwrap();
    let e = ds
        .solve(&mut lin, Rhs::Params(&[1e300; 3]), 0.0)
        .unwrap_err();
    assert_eq!(
        e,
        SolveFailure::NonFinite {
            what: "direction",
            index: 0
        }
    );
}
