//! Time per CG iteration of a sample-sharded natural-gradient solve, and the share of it
//! spent summing over ranks (feature `mpi`). The problem is the L size of
//! `ng_step_bench`: a 2-256-256-256-1 tanh MLP on m = 4096 points, L² loss and metric.
//!
//! ```text
//! cargo build --release --features mpi --example mpi_bench
//! mpirun -n 1 target/release/examples/mpi_bench 2     # 1 rank × 2 threads
//! mpirun -n 2 target/release/examples/mpi_bench 1     # 2 ranks × 1 thread
//! ```
//!
//! Arguments: threads per rank (default 1), CG iterations per solve (default 20),
//! repetitions (default 3, the fastest is reported), samples m (default 4096). CG runs a
//! fixed number of iterations (no stopping test) so every run does the same work.

use faer::Par;
use mpi::environment::Threading;
use natgrad::distributed::{sharded_problem, Shards};
use natgrad::linsolve::DirectionSolver;
use natgrad::linsolve::Rhs;
use natgrad::model::{Activation, Mlp};
use natgrad::{CgSettings, LinearSolver, Preconditioner, SquaredError, WeightedL2};
use std::time::Instant;

fn arg(k: usize, default: usize) -> Result<usize, Box<dyn std::error::Error>> {
    Ok(std::env::args()
        .nth(k)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(default))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (threads, iters, reps, m) = (arg(1, 1)?, arg(2, 20)?, arg(3, 3)?, arg(4, 4096)?);
    let (_universe, _) =
        mpi::initialize_with_threading(Threading::Serialized).ok_or("MPI initialisation failed")?;
    let shards = Shards::world()?;
    let par = if threads <= 1 {
        Par::Seq
    } else {
        Par::rayon(threads)
    };

    // Points on a grid of (-1, 1)², target sin(πx) sin(πy); this rank's block of them.
    let side = (m as f64).sqrt().ceil() as usize;
    let point = |i: usize| {
        let (a, b) = (i % side, i / side);
        let c = |k: usize| -1.0 + 2.0 * (k as f64 + 0.5) / side as f64;
        [c(a), c(b)]
    };
    let mine = shards.block(m);
    let x: Vec<f64> = mine.clone().flat_map(point).collect();
    let target: Vec<f64> = mine
        .clone()
        .map(|i| {
            let [a, b] = point(i);
            (std::f64::consts::PI * a).sin() * (std::f64::consts::PI * b).sin()
        })
        .collect();
    let widths = [2, 256, 256, 256, 1];
    let model = Mlp::with_hidden(&widths, Activation::Tanh, &x)?.with_parallelism(par);
    let theta = model.init_params(7);
    let p = theta.len();
    let w = WeightedL2::new(vec![1.0 / m as f64; mine.len()])?;
    let loss = SquaredError::new(target, w.clone())?;
    let problem = sharded_problem(&shards, model, loss, w)?;

    let solver = LinearSolver::Cg(CgSettings {
        rel_tol: 0.0,
        max_iters: iters,
        preconditioner: Preconditioner::None,
        warm_start: false,
        accept_truncated: true,
        ..CgSettings::default()
    });
    let mut lin = problem.linearize(&theta)?;
    let r = lin.output_gradient().to_vec();
    let mut best = (f64::INFINITY, 0.0, 0usize);
    for _ in 0..reps {
        let mut d = vec![0.0; p];
        let before = shards.stats();
        let start = Instant::now();
        let info = DirectionSolver::new(solver.clone())
            .solve_from(&mut lin, Rhs::Cotangent { r: &r, jt_r: None }, 1e-3, &mut d)
            .map_err(|e| e.to_string())?;
        let total = start.elapsed().as_secs_f64();
        let comm = shards.stats().seconds - before.seconds;
        // The slowest rank decides: take the maximum over ranks of the total.
        let totals = shards.gather_u64(&[total.to_bits(), comm.to_bits()]);
        let (t, c) = totals
            .chunks(2)
            .map(|v| (f64::from_bits(v[0]), f64::from_bits(v[1])))
            .fold((0.0_f64, 0.0_f64), |a, v| (a.0.max(v.0), a.1.max(v.1)));
        if t < best.0 {
            best = (t, c, info.cg_iters().unwrap_or_default());
        }
    }
    if shards.is_root() {
        let (t, c, k) = best;
        // k products for k iterations, plus one vjp for the right-hand side.
        let per = t / (k as f64 + 1.0);
        println!(
            "mpi_bench: {} rank(s) × {threads} thread(s), 2-256-256-256-1 tanh, m = {m}, \
             p = {p}: {k} CG iterations in {:.1} ms = {:.2} ms per CG iteration; \
             sums over ranks {:.2} ms per iteration ({:.1} %), {} bytes sent per iteration",
            shards.size(),
            1e3 * t,
            1e3 * per,
            1e3 * c / (k as f64 + 1.0),
            100.0 * c / t,
            if shards.size() > 1 {
                2 * 8 * (p - p / shards.size())
            } else {
                0
            }
        );
    }
    Ok(())
}
