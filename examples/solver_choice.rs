//! Issue 14 items 1 and 2, the leftovers: the default preconditioner (none) against Jacobi
//! on the linear and closure models, and `LinearSolver::Auto`'s picks over whole runs
//! against the best fixed choice.
//!
//! ```text
//! cargo run --release --example solver_choice [-- precond|auto] [-- --steps 10]
//! ```
//!
//! * `precond`: one natural-gradient direction (a 1-step run, α = 1) at the start of
//!   each problem, CG to the default relative residual 1e-10, at most 5000 iterations,
//!   plain against Jacobi, at λ = 1e-3 and 1e-8 (λ is absolute, in the units of `G`).
//!   Prints CG iterations and the spread `max/min` of `diag(G)`.
//! * `auto`: `--steps` (default 10) natural-gradient steps (α = 1, λ = 1e-3, fixed step,
//!   stopping tests off) with parameter-space CG, sample-space CG, both Cholesky paths and
//!   `Auto`; Gram products (jvp + vjp, over the run), wall time (noisy, shared machine)
//!   and the sequence of `Auto`'s picks.
//!
//! Problems: `linear` (Gaussian 1000×100 design), `linear-scaled` (the same with column
//! scales `10^{−2..2}`), `poly` (monomials `x^k`, `k < 12`, at 400 points of `[0, 3]`),
//! `rbf` (a closure model: 20 Gaussian bumps `w_k exp(−(x − c_k)²/(2s²))`, `s = 0.05`,
//! weights and centres, p = 40, n = 400), `misra` (NIST Misra1a, its near start), and
//! the MLPs `mlp-s` (2-20-20-1, 20×20 grid, p = 501) and `mlp-m` (2-64-64-1, m = 2048,
//! p = 4417), target `sin(x₁ + x₂)`, L² weights `1/m`.

use argmin::core::observers::{Observe, ObserverMode};
use argmin::core::{Executor, State, KV};
use faer::{Mat, MatMut, Par};
use natgrad::linsolve::{AutoSettings, CgSettings, LinearSolver, Preconditioner};
use natgrad::loss::Loss;
use natgrad::metric::Metric;
use natgrad::model::{Activation, ClosureModel, LinearModel, Mlp, Model};
use natgrad::problems::nist;
use natgrad::{NaturalGradient, NgState, Problem, SquaredError, Tolerances, WeightedL2};
use rand::{Rng, SeedableRng};
use std::sync::{Arc, Mutex};
use std::time::Instant;

type Rng64 = rand_xoshiro::Xoshiro256PlusPlus;

/// What each iteration reported: CG iterations and the linear solver used.
#[derive(Clone, Default)]
struct Steps(Arc<Mutex<Vec<(u64, String)>>>);

impl Observe<NgState> for Steps {
    fn observe_iter(&mut self, _s: &NgState, kv: &KV) -> Result<(), argmin::core::Error> {
        let cg = kv.get("cg_iters").and_then(|v| v.get_uint()).unwrap_or(0);
        let method = kv
            .get("linear_solver")
            .and_then(|v| v.get_string())
            .unwrap_or_default();
        self.0.lock().unwrap().push((cg, method));
        Ok(())
    }
}

struct Outcome {
    steps: Vec<(u64, String)>,
    products: u64,
    ms: f64,
    reason: String,
}

fn run<Mo: Model, Lo: Loss, Me: Metric>(
    pb: Problem<Mo, Lo, Me>,
    theta: &[f64],
    solver: LinearSolver,
    lambda: f64,
    steps: u64,
) -> Outcome {
    let ng = NaturalGradient::new()
        .with_linear_solver(solver)
        .and_then(|s| s.with_damping(lambda))
        .and_then(|s| s.with_tolerances(Tolerances::NONE))
        .unwrap();
    let log = Steps::default();
    let t0 = Instant::now();
    let res = Executor::new(pb, ng)
        .configure(|s| s.param(theta.to_vec()).max_iters(steps).counting(true))
        .add_observer(log.clone(), ObserverMode::Always)
        .run();
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let (products, reason) = match res {
        Ok(r) => {
            let c = r.state().get_func_counts();
            let count = |k: &str| c.get(k).copied().unwrap_or(0);
            let reason = r
                .state()
                .get_termination_reason()
                .map(|t| t.text().to_string())
                .unwrap_or_default();
            (count("jvp_count") + count("vjp_count"), reason)
        }
        Err(e) => (0, format!("error: {e}")),
    };
    let steps = log.0.lock().unwrap().clone();
    Outcome {
        steps,
        products,
        ms,
        reason,
    }
}

/// `diag(G)`'s spread `max/min` at `theta` (∞ with a zero entry; NaN without a diagonal).
fn diagonal_spread<Mo: Model, Lo: Loss, Me: Metric>(
    pb: &Problem<Mo, Lo, Me>,
    theta: &[f64],
) -> f64 {
    let mut lin = pb.linearize(theta).unwrap();
    match lin.gram_diagonal(0.0) {
        Some(d) => {
            let max = d.iter().copied().fold(0.0, f64::max);
            let min = d.iter().copied().fold(f64::INFINITY, f64::min);
            max / min
        }
        None => f64::NAN,
    }
}

fn cg(preconditioner: Preconditioner) -> LinearSolver {
    LinearSolver::Cg(CgSettings {
        max_iters: 5000,
        warm_start: false,
        accept_truncated: true,
        preconditioner,
        ..CgSettings::default()
    })
}

/// One problem: its name, size and a constructor, handed to `f`.
trait Visit {
    fn visit<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        name: &str,
        make: &dyn Fn() -> Problem<Mo, Lo, Me>,
        theta: &[f64],
    );
}

struct Precond;

impl Visit for Precond {
    fn visit<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        name: &str,
        make: &dyn Fn() -> Problem<Mo, Lo, Me>,
        theta: &[f64],
    ) {
        let pb = make();
        let (n, p) = (pb.n_outputs(), pb.n_params());
        let spread = diagonal_spread(&pb, theta);
        for lambda in [1e-3, 1e-8] {
            let iters = |pre| {
                let o = run(make(), theta, cg(pre), lambda, 1);
                let it = o.steps.first().map_or(0, |s| s.0);
                if o.reason.contains("error") || it >= 5000 {
                    format!("— ({it})")
                } else {
                    it.to_string()
                }
            };
            println!(
                "| {name} | {n} | {p} | {spread:.1e} | {lambda:e} | {} | {} |",
                iters(Preconditioner::None),
                iters(Preconditioner::Jacobi)
            );
        }
    }
}

struct Auto(u64);

impl Visit for Auto {
    fn visit<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        name: &str,
        make: &dyn Fn() -> Problem<Mo, Lo, Me>,
        theta: &[f64],
    ) {
        let pb = make();
        let (n, p) = (pb.n_outputs(), pb.n_params());
        let cg_settings = CgSettings {
            max_iters: 5000,
            ..CgSettings::default()
        };
        let mut cells = Vec::new();
        let mut best: Option<(f64, &str)> = None;
        for (label, solver) in [
            ("param CG", LinearSolver::Cg(cg_settings.clone())),
            ("sample CG", LinearSolver::SampleCg(cg_settings.clone())),
            ("param Cholesky", LinearSolver::Cholesky),
            ("sample Cholesky", LinearSolver::SampleCholesky),
        ] {
            let dim = if label.starts_with("param") { p } else { n };
            if label.ends_with("Cholesky") && dim > 2500 {
                cells.push("skipped (O(dim³))".to_string());
                continue;
            }
            let o = run(make(), theta, solver, 1e-3, self.0);
            if o.reason.contains("error") || o.reason.contains("exit") {
                cells.push(format!(
                    "failed: {}",
                    o.reason.chars().take(40).collect::<String>()
                ));
                continue;
            }
            if best.is_none_or(|(ms, _)| o.ms < ms) {
                best = Some((o.ms, label));
            }
            cells.push(format!("{} / {:.1}", o.products, o.ms));
        }
        let auto = LinearSolver::Auto(AutoSettings {
            cg: cg_settings,
            ..AutoSettings::default()
        });
        let o = run(make(), theta, auto, 1e-3, self.0);
        let mut picks: Vec<(String, usize)> = Vec::new();
        for (_, m) in &o.steps {
            match picks.last_mut() {
                Some((last, k)) if last == m => *k += 1,
                _ => picks.push((m.clone(), 1)),
            }
        }
        let picks = picks
            .iter()
            .map(|(m, k)| format!("{m}×{k}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "| {name} | {n} | {p} | {} | {} / {:.1} | {picks} | {} |",
            cells.join(" | "),
            o.products,
            o.ms,
            best.map_or("—", |b| b.1)
        );
    }
}

fn gaussian(rng: &mut Rng64, n: usize, p: usize, scaled: bool) -> Mat<f64> {
    let scales: Vec<f64> = (0..p)
        .map(|_| {
            if scaled {
                10f64.powf(rng.random_range(-2.0..2.0))
            } else {
                1.0
            }
        })
        .collect();
    let mut a = Mat::zeros(n, p);
    for j in 0..p {
        for i in 0..n {
            // Box–Muller from two uniforms.
            let (u1, u2): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random_range(0.0..1.0));
            a[(i, j)] = scales[j] * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        }
    }
    a
}

fn linear_problem(a: &Mat<f64>, u: &[f64]) -> Problem<LinearModel, SquaredError, WeightedL2> {
    Problem::new(
        LinearModel::dense(a.clone()).unwrap(),
        SquaredError::l2(u.to_vec()).unwrap(),
        WeightedL2::uniform(u.len()).unwrap(),
    )
    .unwrap()
}

fn mlp_problem(widths: &[usize], x: &[f64]) -> Problem<Mlp, SquaredError, WeightedL2> {
    let m = x.len() / 2;
    let target: Vec<f64> = x.chunks(2).map(|p| (p[0] + p[1]).sin()).collect();
    let model = Mlp::with_hidden(widths, Activation::Tanh, x)
        .unwrap()
        .with_parallelism(Par::Seq);
    Problem::new(
        model,
        SquaredError::l2(target).unwrap(),
        WeightedL2::uniform(m).unwrap(),
    )
    .unwrap()
}

fn visit_all<V: Visit>(v: &mut V, only: Option<&str>) {
    let want = |s: &str| only.is_none_or(|o| o == s);
    let mut rng = Rng64::seed_from_u64(14);
    for (name, scaled) in [("linear", false), ("linear-scaled", true)] {
        let a = gaussian(&mut rng, 1000, 100, scaled);
        let u: Vec<f64> = (0..1000).map(|i| (i as f64 * 0.01).sin()).collect();
        if want(name) {
            v.visit(name, &|| linear_problem(&a, &u), &vec![0.0; 100]);
        }
    }
    if want("poly") {
        let x: Vec<f64> = (0..400).map(|i| 3.0 * i as f64 / 399.0).collect();
        let a = Mat::from_fn(400, 12, |i, k| x[i].powi(k as i32));
        let u: Vec<f64> = x.iter().map(|x| x.sin()).collect();
        v.visit("poly", &|| linear_problem(&a, &u), &[0.0; 12]);
    }
    if want("rbf") {
        let (k, s) = (20, 0.05);
        let x: Vec<f64> = (0..400).map(|i| i as f64 / 399.0).collect();
        let u: Vec<f64> = x.iter().map(|x| (6.0 * x).sin()).collect();
        let make = || {
            let xs = x.clone();
            let xj = x.clone();
            let value = move |t: &[f64], y: &mut [f64]| {
                for (y, &x) in y.iter_mut().zip(&xs) {
                    *y = (0..k)
                        .map(|j| t[j] * (-(x - t[k + j]).powi(2) / (2.0 * s * s)).exp())
                        .sum();
                }
            };
            let jacobian = move |t: &[f64], mut jm: MatMut<'_, f64>| {
                for (i, &x) in xj.iter().enumerate() {
                    for j in 0..k {
                        let e = (-(x - t[k + j]).powi(2) / (2.0 * s * s)).exp();
                        jm[(i, j)] = e;
                        jm[(i, k + j)] = t[j] * e * (x - t[k + j]) / (s * s);
                    }
                }
            };
            Problem::new(
                ClosureModel::new(2 * k, 400, value, jacobian),
                SquaredError::l2(u.clone()).unwrap(),
                WeightedL2::uniform(400).unwrap(),
            )
            .unwrap()
        };
        let theta: Vec<f64> = (0..k)
            .map(|_| 0.5)
            .chain((0..k).map(|j| (j as f64 + 0.5) / k as f64))
            .collect();
        v.visit("rbf", &make, &theta);
    }
    if want("misra") {
        let c = nist::MISRA1A;
        v.visit("misra", &|| c.problem(), c.starts[1]);
    }
    if want("mlp-s") {
        let g = 20;
        let x: Vec<f64> = (0..g * g)
            .flat_map(|i| {
                [
                    (i / g) as f64 / (g - 1) as f64,
                    (i % g) as f64 / (g - 1) as f64,
                ]
            })
            .collect();
        let theta = mlp_problem(&[2, 20, 20, 1], &x).model().init_params(1);
        v.visit("mlp-s", &|| mlp_problem(&[2, 20, 20, 1], &x), &theta);
    }
    if want("mlp-m") {
        let mut rng = Rng64::seed_from_u64(2024);
        let x: Vec<f64> = (0..2 * 2048).map(|_| rng.random_range(0.0..1.0)).collect();
        let theta = mlp_problem(&[2, 64, 64, 1], &x).model().init_params(7);
        v.visit("mlp-m", &|| mlp_problem(&[2, 64, 64, 1], &x), &theta);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .map(|i| args[i + 1].clone())
    };
    let steps: u64 = value("--steps").map_or(10, |v| v.parse().unwrap());
    let only = value("--only");
    let part = |p: &str| {
        !args.iter().any(|a| a == "precond" || a == "auto") || args.iter().any(|a| a == p)
    };
    if part("precond") {
        println!("| problem | n | p | diag(G) max/min | λ | CG plain | CG Jacobi |");
        println!("|---|---|---|---|---|---|---|");
        visit_all(&mut Precond, only.as_deref());
    }
    if part("auto") {
        println!(
            "\n| problem | n | p | param CG | sample CG | param Cholesky | sample Cholesky | \
             Auto | Auto's picks | fastest fixed |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");
        visit_all(&mut Auto(steps), only.as_deref());
    }
}
