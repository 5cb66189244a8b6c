//! Mackey–Glass fit (docs/math.md §4) by natural gradient with the training samples sharded
//! over MPI ranks (feature `mpi`).
//!
//! ```text
//! cargo build --release --features mpi --example mpi_fit
//! mpirun -n 2 target/release/examples/mpi_fit [iterations]
//! ```
//!
//! Every rank generates the series (cheap) and keeps its contiguous block of the 500
//! training pairs; the network (4 inputs, 10 tanh units, 61 parameters) is fitted by
//! natural gradient in the L² metric. Rank 0 prints the progress (the argmin observer
//! runs there only) and the test error on the 500 pairs that follow in time.

use argmin::core::observers::{Observe, ObserverMode};
use argmin::core::{Error as ArgminError, Executor, State, KV};
use faer::MatMut;
use mpi::environment::Threading;
use natgrad::distributed::{sharded_problem, Shards};
use natgrad::model::{ClosureModel, Model};
use natgrad::{NaturalGradient, NgState, SquaredError, WeightedL2};
use std::time::Instant;

const INPUTS: usize = 4;
const HIDDEN: usize = 10;
/// Parameters: input weights, hidden biases, output weights, output bias.
const P: usize = HIDDEN * INPUTS + 2 * HIDDEN + 1;
const TRAIN: usize = 500;
const TEST: usize = 500;

/// The Mackey–Glass series `z(t+1) = 0.9 z(t) + 0.2 z(t−17) / (1 + z(t−17)¹⁰)`,
/// `z(t) = 1.2` for `t ≤ 0`, and the pairs `(z(t), z(t−6), z(t−12), z(t−18)) ↦ z(t+6)`
/// after a burn-in of 200 steps.
fn mackey_glass(pairs: usize) -> (Vec<[f64; INPUTS]>, Vec<f64>) {
    let (burn, tau) = (200, 17);
    let len = burn + pairs + 6 + 1;
    let mut z: Vec<f64> = vec![1.2; tau + 1];
    while z.len() < len + tau + 1 {
        let t = z.len() - 1;
        let d = z[t - tau];
        z.push(0.9 * z[t] + 0.2 * d / (1.0 + d.powi(10)));
    }
    let z = &z[tau..];
    let inputs = (burn..burn + pairs)
        .map(|t| [z[t], z[t - 6], z[t - 12], z[t - 18]])
        .collect();
    let targets = (burn..burn + pairs).map(|t| z[t + 6]).collect();
    (inputs, targets)
}

type ValueFn = Box<dyn Fn(&[f64], &mut [f64]) + Send + Sync>;
type JacobianFn = Box<dyn Fn(&[f64], MatMut<'_, f64>) + Send + Sync>;

/// `y(u) = c + Σ_k a_k tanh(w_k·u + b_k)` on the given inputs, with its Jacobian.
fn network(u: Vec<[f64; INPUTS]>) -> ClosureModel<ValueFn, JacobianFn> {
    let n = u.len();
    let u2 = u.clone();
    let hidden = |t: &[f64], x: &[f64; INPUTS], k: usize| {
        let w = &t[k * INPUTS..(k + 1) * INPUTS];
        (w.iter().zip(x).map(|(w, x)| w * x).sum::<f64>() + t[HIDDEN * INPUTS + k]).tanh()
    };
    let a0 = HIDDEN * INPUTS + HIDDEN;
    ClosureModel::new(
        P,
        n,
        Box::new(move |t: &[f64], y: &mut [f64]| {
            for (yi, x) in y.iter_mut().zip(&u) {
                *yi = t[P - 1]
                    + (0..HIDDEN)
                        .map(|k| t[a0 + k] * hidden(t, x, k))
                        .sum::<f64>();
            }
        }),
        Box::new(move |t: &[f64], mut j: MatMut<'_, f64>| {
            for (i, x) in u2.iter().enumerate() {
                for k in 0..HIDDEN {
                    let h = hidden(t, x, k);
                    let dh = t[a0 + k] * (1.0 - h * h);
                    for (l, xl) in x.iter().enumerate() {
                        j[(i, k * INPUTS + l)] = dh * xl;
                    }
                    j[(i, HIDDEN * INPUTS + k)] = dh;
                    j[(i, a0 + k)] = h;
                }
                j[(i, P - 1)] = 1.0;
            }
        }),
    )
}

/// Prints the loss every `every` iterations (added on rank 0 only).
struct Progress {
    every: u64,
}

impl Observe<NgState> for Progress {
    fn observe_iter(&mut self, state: &NgState, kv: &KV) -> Result<(), ArgminError> {
        let k = state.get_iter();
        if k.is_multiple_of(self.every) {
            let cg = kv
                .get("cg_iters")
                .map(|v| v.to_string())
                .unwrap_or_default();
            println!("  iter {k:4}  loss {:.6e}  cg {cg}", state.get_cost());
        }
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iters: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100);
    let (_universe, _) =
        mpi::initialize_with_threading(Threading::Serialized).ok_or("MPI initialisation failed")?;
    let shards = Shards::world()?;

    let (inputs, targets) = mackey_glass(TRAIN + TEST);
    let mine = shards.block(TRAIN);
    let w = WeightedL2::new(vec![1.0 / TRAIN as f64; mine.len()])?;
    let loss = SquaredError::new(targets[mine.clone()].to_vec(), w.clone())?;
    let problem = sharded_problem(&shards, network(inputs[mine.clone()].to_vec()), loss, w)?;
    if shards.is_root() {
        println!(
            "Mackey–Glass fit: {TRAIN} training pairs on {} rank(s) (rank 0 holds {}), p = {P}",
            shards.size(),
            mine.len()
        );
    }

    // Same θ₀ on every rank (a fixed formula; a random one would be broadcast).
    let theta0: Vec<f64> = (0..P).map(|i| 0.3 * ((i as f64) * 0.77).sin()).collect();
    let solver = NaturalGradient::new()
        .with_step_size(0.5)?
        .with_damping(1e-6)?;
    let mut executor =
        Executor::new(problem, solver).configure(|s| s.param(theta0).max_iters(iters));
    if shards.is_root() {
        executor = executor.add_observer(Progress { every: 10 }, ObserverMode::Always);
    }
    let start = Instant::now();
    let res = executor.run()?;
    let seconds = start.elapsed().as_secs_f64();
    let comm = shards.stats();

    if shards.is_root() {
        let theta = res.state().get_best_param().ok_or("no parameter")?;
        let test = network(inputs[TRAIN..].to_vec());
        let mut y = vec![0.0; TEST];
        test.forward(theta, &mut y)?;
        let rmse = (y
            .iter()
            .zip(&targets[TRAIN..])
            .map(|(y, u)| (y - u) * (y - u))
            .sum::<f64>()
            / TEST as f64)
            .sqrt();
        println!(
            "train loss {:.3e}, test RMSE {rmse:.3e} after {} iterations ({:?})",
            res.state().get_best_cost(),
            res.state().get_iter(),
            res.state().get_termination_reason()
        );
        println!(
            "{seconds:.3} s; rank 0: {} sums of {} values over ranks, {:.1} kB sent, {:.3} s ({:.1} %)",
            comm.sums,
            comm.values,
            comm.bytes_sent as f64 / 1e3,
            comm.seconds,
            100.0 * comm.seconds / seconds
        );
    }
    Ok(())
}
