//! Sample-sharded natural gradient against the single-process run (feature `mpi`).
//!
//! A plain `main` (no libtest harness, which would call MPI from several threads): run it
//! as `cargo test --features mpi --test mpi_sharded` (one rank) or under
//! `mpirun -n 2` / `-n 4` on the test binary. Every rank runs the single-process
//! reference on the full data itself, then the sharded problem on its block, and compares.
//! Any failed check makes the process exit with status 1 (so `mpirun` fails).

use argmin::core::observers::{Observe, ObserverMode};
use argmin::core::{Error as ArgminError, Executor, KV};
use faer::{Mat, MatMut};
use mpi::environment::Threading;
use natgrad::distributed::{block, sharded_problem, Shards};
use natgrad::model::{ClosureModel, Linearization, Model};
use natgrad::momentum::Momentum;
use natgrad::{
    CgSettings, CrossEntropy, DenseMetric, Error, Ggn, LinearSolver, NaturalGradient, NgState,
    Problem, SquaredError, WeightedL2,
};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

/// Hidden units of the test network `y(x) = Σ_k a_k tanh(w_k x + b_k) + c`.
const H: usize = 4;
/// Parameters `θ = (w, b, a, c)`.
const P: usize = 3 * H + 1;
/// Samples: not a multiple of 2 or 4, so the blocks are uneven.
const M: usize = 37;
const STEPS: u64 = 20;
const TOL: f64 = 1e-12;

fn xs(range: std::ops::Range<usize>) -> Vec<f64> {
    range
        .map(|i| -1.0 + 2.0 * i as f64 / (M - 1) as f64)
        .collect()
}

type ValueFn = Box<dyn Fn(&[f64], &mut [f64]) + Send + Sync>;
type JacobianFn = Box<dyn Fn(&[f64], MatMut<'_, f64>) + Send + Sync>;

/// The tanh network on the given inputs, with its dense Jacobian.
fn network(x: Vec<f64>) -> ClosureModel<ValueFn, JacobianFn> {
    let n = x.len();
    let x2 = x.clone();
    ClosureModel::new(
        P,
        n,
        Box::new(move |t: &[f64], y: &mut [f64]| {
            for (yi, &xi) in y.iter_mut().zip(&x) {
                *yi = t[P - 1]
                    + (0..H)
                        .map(|k| t[2 * H + k] * (t[k] * xi + t[H + k]).tanh())
                        .sum::<f64>();
            }
        }),
        Box::new(move |t: &[f64], mut j: MatMut<'_, f64>| {
            for (i, &xi) in x2.iter().enumerate() {
                for k in 0..H {
                    let h = (t[k] * xi + t[H + k]).tanh();
                    let dh = t[2 * H + k] * (1.0 - h * h);
                    j[(i, k)] = dh * xi;
                    j[(i, H + k)] = dh;
                    j[(i, 2 * H + k)] = h;
                }
                j[(i, P - 1)] = 1.0;
            }
        }),
    )
}

fn target(x: &[f64]) -> Vec<f64> {
    x.iter().map(|x| (2.0 * x).sin() + 0.3 * x).collect()
}

fn theta0() -> Vec<f64> {
    (0..P)
        .map(|i| 0.5 * ((i as f64) * 1.7).sin() + 0.1)
        .collect()
}

/// Records θ after every iteration.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Vec<f64>>>>);

impl Observe<NgState> for Recorder {
    fn observe_iter(&mut self, state: &NgState, _kv: &KV) -> Result<(), ArgminError> {
        if let Some(t) = &state.param {
            self.0.lock().unwrap().push(t.clone());
        }
        Ok(())
    }
}

fn run<P2>(problem: P2, solver: NaturalGradient) -> Result<Vec<Vec<f64>>, ArgminError>
where
    NaturalGradient: argmin::core::Solver<P2, NgState>,
{
    let rec = Recorder::default();
    Executor::new(problem, solver)
        .configure(|s| s.param(theta0()).max_iters(STEPS))
        .add_observer(rec.clone(), ObserverMode::Always)
        .run()?;
    let iterates = rec.0.lock().unwrap().clone();
    Ok(iterates)
}

/// `‖a − b‖_∞ / ‖b‖_∞`.
fn rel_diff(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    let d = a
        .iter()
        .zip(b)
        .map(|(u, v)| (u - v).abs())
        .fold(0.0, f64::max);
    let s = b.iter().map(|v| v.abs()).fold(0.0, f64::max);
    d / s.max(f64::MIN_POSITIVE)
}

/// The largest [`rel_diff`] over a run's iterates.
fn max_rel_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| rel_diff(x, y))
        .fold(0.0, f64::max)
}

struct Report {
    failures: usize,
    root: bool,
}

impl Report {
    fn check(&mut self, name: &str, ok: bool, detail: String) {
        if !ok {
            self.failures += 1;
            eprintln!("FAIL {name}: {detail}");
        } else if self.root {
            println!("ok   {name}: {detail}");
        }
    }
}

/// The runs compared. Rounding differs between rank counts (partial sums), so the
/// comparison needs a problem whose iterates depend smoothly and mildly on rounding: CG
/// runs a fixed number of iterations (`2p`, far past convergence, so no stopping test can
/// flip between runs) and the damping keeps `κ(G + λI)` moderate.
fn solvers() -> Vec<(&'static str, NaturalGradient)> {
    let cg = LinearSolver::Cg(CgSettings {
        rel_tol: 0.0,
        max_iters: 2 * P,
        accept_truncated: true,
        ..CgSettings::default()
    });
    let plain = NaturalGradient::new()
        .with_step_size(0.5)
        .and_then(|s| s.with_damping(1e-3))
        .and_then(|s| s.with_linear_solver(cg))
        .expect("valid settings");
    let heavy_ball = plain
        .clone()
        .with_momentum(Momentum::HeavyBall { beta: 0.5 })
        .expect("valid settings");
    vec![("plain", plain), ("heavy_ball", heavy_ball)]
}

fn main() -> ExitCode {
    let Some((_universe, _)) = mpi::initialize_with_threading(Threading::Serialized) else {
        eprintln!("MPI initialisation failed");
        return ExitCode::FAILURE;
    };
    let shards = match Shards::world() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut report = Report {
        failures: 0,
        root: shards.is_root(),
    };
    if report.root {
        println!("mpi_sharded: {} rank(s), m = {M}, p = {P}", shards.size());
    }
    blocks_cover_samples_in_rank_order(&mut report);
    sums_and_products_match_full_problem(&shards, &mut report);
    for (name, solver) in solvers() {
        iterates_match_single_process(&shards, name, solver, &mut report);
    }
    coupling_metric_is_rejected(&shards, &mut report);
    // Every rank must agree on the outcome: sum the failures over ranks.
    let total = shards.sum_scalar(report.failures as f64);
    if total > 0.0 {
        if report.root {
            eprintln!("mpi_sharded: {total} failed check(s) over all ranks");
        }
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn blocks_cover_samples_in_rank_order(report: &mut Report) {
    let mut ok = true;
    for size in 1..=7 {
        for m in [0, 1, 5, 37, 64] {
            let mut next = 0;
            for r in 0..size {
                let b = block(m, size, r);
                ok &= b.start == next && b.len() >= m / size && b.len() <= m.div_ceil(size);
                next = b.end;
            }
            ok &= next == m;
        }
    }
    report.check(
        "blocks_cover_samples_in_rank_order",
        ok,
        "m ∈ {0,1,5,37,64}, 1..7 ranks".into(),
    );
}

fn full_problem() -> Problem<impl Model, SquaredError, WeightedL2> {
    let x = xs(0..M);
    let w = WeightedL2::uniform(M);
    let loss = SquaredError::new(target(&x), w.clone()).expect("valid loss");
    Problem::new(network(x), loss, w).expect("valid problem")
}

fn local_parts(
    shards: &Shards,
) -> natgrad::Result<natgrad::distributed::ShardedProblem<impl Model, SquaredError, WeightedL2>> {
    let range = shards.block(M);
    let x = xs(range.clone());
    let w = WeightedL2::new(vec![1.0 / M as f64; range.len()])?;
    let loss = SquaredError::new(target(&x), w.clone())?;
    sharded_problem(shards, network(x), loss, w)
}

fn sums_and_products_match_full_problem(shards: &Shards, report: &mut Report) {
    let full = full_problem();
    let sharded = match local_parts(shards) {
        Ok(p) => p,
        Err(e) => return report.check("sharded_problem_builds", false, e.to_string()),
    };
    let theta = theta0();
    let range = shards.block(M);
    let (Ok(mut lf), Ok(mut ls)) = (full.linearize(&theta), sharded.linearize(&theta)) else {
        return report.check("linearize", false, "failed".into());
    };
    let dl = (ls.loss() - lf.loss()).abs() / lf.loss();
    report.check(
        "loss_is_sum_over_ranks",
        dl <= TOL,
        format!("rel diff {dl:.2e}"),
    );
    let (gf, gs) = (lf.gradient(), ls.gradient());
    let dg = rel_diff(&gs, &gf);
    report.check(
        "gradient_is_sum_over_ranks",
        dg <= TOL,
        format!("rel diff {dg:.2e}"),
    );
    // vjp of a full cotangent's local block = full vjp
    let s: Vec<f64> = (0..M).map(|i| ((i * 7 % 11) as f64 - 5.0) / 3.0).collect();
    let (mut vf, mut vs) = (vec![0.0; P], vec![0.0; P]);
    lf.vjp(&s, &mut vf);
    ls.vjp(&s[range.clone()], &mut vs);
    let dv = rel_diff(&vs, &vf);
    report.check(
        "vjp_is_sum_over_ranks",
        dv <= TOL,
        format!("rel diff {dv:.2e}"),
    );
    // block vjp with two columns
    let sm = Mat::from_fn(range.len(), 2, |i, j| s[range.start + i] * (j as f64 + 1.0));
    let mut out = Mat::<f64>::zeros(P, 2);
    ls.linearization_mut().vjp_block(sm.as_ref(), out.as_mut());
    let col1: Vec<f64> = (0..P).map(|i| out[(i, 1)] / 2.0).collect();
    let db = rel_diff(&col1, &vf);
    report.check(
        "vjp_block_is_sum_over_ranks",
        db <= TOL,
        format!("rel diff {db:.2e}"),
    );
    let (df, ds) = (lf.gram_diagonal(0.0), ls.gram_diagonal(0.0));
    let ok = matches!((&df, &ds), (Some(a), Some(b)) if rel_diff(b, a) <= TOL);
    report.check(
        "gram_diagonal_is_sum_over_ranks",
        ok,
        format!("{:?}", ds.map(|d| d[0])),
    );
}

fn iterates_match_single_process(
    shards: &Shards,
    name: &str,
    solver: NaturalGradient,
    report: &mut Report,
) {
    let reference = run(full_problem(), solver.clone());
    let sharded = local_parts(shards)
        .map_err(ArgminError::from)
        .and_then(|p| run(p, solver));
    let (Ok(reference), Ok(sharded)) = (reference, sharded) else {
        return report.check(name, false, "a run failed".into());
    };
    let d = max_rel_diff(&sharded, &reference);
    if std::env::var_os("MPI_SHARDED_VERBOSE").is_some() && shards.is_root() {
        for (k, (a, b)) in sharded.iter().zip(&reference).enumerate() {
            println!("  step {k}: rel diff {:.2e}", rel_diff(a, b));
        }
    }
    report.check(
        &format!("{name}_iterates_match_single_process"),
        sharded.len() == STEPS as usize && d <= TOL,
        format!(
            "{} steps on {} rank(s), max rel diff {d:.2e}",
            sharded.len(),
            shards.size()
        ),
    );
}

fn coupling_metric_is_rejected(shards: &Shards, report: &mut Report) {
    let range = shards.block(M);
    let n = range.len();
    let x = xs(range);
    let k = DenseMetric::new(Mat::<f64>::identity(n, n)).expect("SPD");
    let loss = SquaredError::l2(target(&x)).expect("valid loss");
    let dense = sharded_problem(shards, network(x.clone()), loss, k);
    report.check(
        "dense_metric_is_rejected",
        matches!(dense, Err(Error::Unsupported(_))),
        format!("{:?}", dense.err().map(|e| e.to_string())),
    );
    // A per-sample loss with the GGN metric is accepted.
    let labels: Vec<f64> = x.iter().map(|&v| f64::from(v > 0.0)).collect();
    let ce = CrossEntropy::weighted(labels, vec![1.0 / M as f64; n]).expect("valid");
    let ggn = sharded_problem(shards, network(x), ce, Ggn);
    report.check(
        "ggn_metric_is_accepted",
        ggn.is_ok(),
        format!("{:?}", ggn.err()),
    );
}
