//! Issue 14 items 1 and 2, the leftovers: the default preconditioner against Jacobi and
//! `Preconditioner::Auto` on every model of the crate, and `LinearSolver::Auto`'s picks
//! over whole runs against the best fixed choice.
//!
//! ```text
//! cargo run --release --example solver_choice [-- precond|auto] [-- --steps 10]
//! ```
//!
//! * `precond`: the preconditioners `None`, `Jacobi` and `Auto` (`Preconditioner::auto()`:
//!   trial above 50 iterations, refresh every 10 solves), at λ = 1e-3 and 1e-8 (the issue's
//!   `h1` problem: 1e-4 and 1e-7; λ is absolute, in the units of `G`). First one
//!   direction at the start of each problem (cold start, fresh cache, CG to the default
//!   relative residual 1e-10, at most 5000 iterations): CG iterations of the returned
//!   solve, Gram products (jvps, Auto's trial included, the Jacobi diagonal not) and wall
//!   time in ms (noisy, shared machine). Then a run of `--steps` natural-gradient steps
//!   (α = 1, fixed λ, stopping tests off, warm-started CG): Gram products and ms. Prints
//!   the spread `max/min` of `diag(G)` and what Auto picked at the first solve.
//! * `auto`: `--steps` (default 10) natural-gradient steps (α = 1, λ = 1e-3, fixed step,
//!   stopping tests off) with parameter-space CG, sample-space CG, both Cholesky paths and
//!   `Auto`; Gram products (jvp + vjp, over the run), wall time (noisy, shared machine)
//!   and the sequence of `Auto`'s picks.
//!
//! Problems: `linear` (Gaussian 1000×100 design), `linear-scaled` (the same with column
//! scales `10^{−2..2}`), `poly` (monomials `x^k`, `k < 12`, at 400 points of `[0, 3]`),
//! `rbf` (a closure model: 20 Gaussian bumps `w_k exp(−(x − c_k)²/(2s²))`, `s = 0.05`,
//! weights and centres, p = 40, n = 400), `misra` (NIST Misra1a, its near start), the
//! MLPs `mlp-s` (2-20-20-1, 20×20 grid, p = 501), `mlp-m` (2-64-64-1, m = 2048, p = 4417)
//! and `mlp-l` (2-256-256-256-1, m = 4096, p = 132 609; `precond` only, no runs), target
//! `sin(x₁ + x₂)`, L² weights `1/m`; `h1` (issue 14: the 2-20-20-1 network on the 20×20
//! grid, `u = sin πx sin πy`, sparse H¹ metric mass + 5-point Laplacian), and the PINNs
//! `pinn` (advection–diffusion ε = 0.1, 1-64-64-1, n = 256) and `poisson` (2D Poisson,
//! 2-64-64-1, n = 320), Euclidean metric. `--only <problem>` runs one of them.

use argmin::core::observers::{Observe, ObserverMode};
use argmin::core::{Executor, State, KV};
use faer::{Mat, MatMut, Par};
use natgrad::linsolve::DirectionSolver;
use natgrad::linsolve::{AutoSettings, CgSettings, LinearSolver, Preconditioner, Rhs};
use natgrad::loss::Loss;
use natgrad::metric::Metric;
use natgrad::model::{Activation, ClosureModel, LinearModel, Mlp, Model};
use natgrad::problems::pinn::{advection_diffusion, poisson_2d};
use natgrad::problems::{grids, nist};
use natgrad::{FitProblem, NaturalGradient, NgState, SquaredError, Tolerances, WeightedL2};
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
    /// jvps over the run: one per Gram product.
    jvps: u64,
    ms: f64,
    reason: String,
}

fn run<Mo: Model, Lo: Loss, Me: Metric>(
    pb: FitProblem<Mo, Lo, Me>,
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
    let (products, jvps, reason) = match res {
        Ok(r) => {
            let c = r.state().get_func_counts();
            let count = |k: &str| c.get(k).copied().unwrap_or(0);
            let reason = r
                .state()
                .get_termination_reason()
                .map(|t| t.text().to_string())
                .unwrap_or_default();
            let jvps = count("jvp_count");
            (jvps + count("vjp_count"), jvps, reason)
        }
        Err(e) => (0, 0, format!("error: {e}")),
    };
    let steps = log.0.lock().unwrap().clone();
    Outcome {
        steps,
        products,
        jvps,
        ms,
        reason,
    }
}

/// `diag(G)`'s spread `max/min` at `theta` (∞ with a zero entry; NaN without a diagonal).
fn diagonal_spread<Mo: Model, Lo: Loss, Me: Metric>(
    pb: &FitProblem<Mo, Lo, Me>,
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
        make: &dyn Fn() -> FitProblem<Mo, Lo, Me>,
        theta: &[f64],
    );
}

/// The `precond` table: one direction, then a run of `.0` steps, per preconditioner and λ.
struct Precond(u64);

/// One cold-started direction at `theta` with `pre`, fresh cache: CG iterations of the
/// returned solve (`None` when not converged), Gram products (jvps: one per product,
/// the trial's included, the Jacobi diagonal not), wall time in ms, the preconditioner
/// used.
fn one_direction<Mo: Model, Lo: Loss, Me: Metric>(
    pb: &FitProblem<Mo, Lo, Me>,
    theta: &[f64],
    pre: Preconditioner,
    lambda: f64,
) -> (Option<usize>, u64, f64, String) {
    let mut lin = pb.linearize(theta).unwrap();
    let r = lin.output_gradient().to_vec();
    let mut b = vec![0.0; pb.n_params()];
    lin.vjp(&r, &mut b);
    let mut d = vec![0.0; pb.n_params()];
    let before = pb.evaluations().jvp;
    let t0 = Instant::now();
    let res = DirectionSolver::new(cg(pre)).solve_from(&mut lin, Rhs::Params(&b), lambda, &mut d);
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let products = pb.evaluations().jvp - before;
    match res {
        Ok(info) => (
            info.cg.filter(|c| !c.truncated).map(|c| c.iters),
            products,
            ms,
            info.cg
                .map_or("none".to_string(), |c| c.preconditioner.to_string()),
        ),
        Err(_) => (None, products, ms, "failed".to_string()),
    }
}

impl Visit for Precond {
    fn visit<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        name: &str,
        make: &dyn Fn() -> FitProblem<Mo, Lo, Me>,
        theta: &[f64],
    ) {
        let pb = make();
        let (n, p) = (pb.n_outputs(), pb.n_params());
        let spread = diagonal_spread(&pb, theta);
        let lambdas = match name {
            "h1" => [1e-4, 1e-7],
            _ => [1e-3, 1e-8],
        };
        for lambda in lambdas {
            let mut cells = Vec::new();
            let mut picked = String::new();
            for pre in [
                Preconditioner::None,
                Preconditioner::Jacobi,
                Preconditioner::auto(),
            ] {
                if name == "mlp-l" && pre == Preconditioner::Jacobi && lambda < 1e-3 {
                    cells.push("not run".to_string());
                    continue;
                }
                let (iters, products, ms, used) = one_direction(&pb, theta, pre, lambda);
                let it = iters.map_or("—".to_string(), |i| i.to_string());
                cells.push(format!("{it} / {products} / {ms:.1}"));
                picked = used;
            }
            for pre in [
                Preconditioner::None,
                Preconditioner::Jacobi,
                Preconditioner::auto(),
            ] {
                let slow = name == "mlp-m" && pre == Preconditioner::Jacobi && lambda < 1e-3;
                if name == "mlp-l" || slow {
                    cells.push("not run".to_string());
                    continue;
                }
                let solver = LinearSolver::Cg(CgSettings {
                    max_iters: 5000,
                    preconditioner: pre,
                    ..CgSettings::default()
                });
                let o = run(make(), theta, solver, lambda, self.0);
                let failed = o.reason.contains("error") || o.reason.contains("exit");
                let mark = if failed { " (failed)" } else { "" };
                cells.push(format!("{} / {:.1}{mark}", o.jvps, o.ms));
            }
            println!(
                "| {name} | {n} | {p} | {spread:.1e} | {lambda:e} | {} | {picked} |",
                cells.join(" | ")
            );
        }
    }
}

struct Auto(u64);

impl Visit for Auto {
    fn visit<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        name: &str,
        make: &dyn Fn() -> FitProblem<Mo, Lo, Me>,
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

fn linear_problem(a: &Mat<f64>, u: &[f64]) -> FitProblem<LinearModel, SquaredError, WeightedL2> {
    FitProblem::new(
        LinearModel::dense(a.clone()).unwrap(),
        SquaredError::l2(u.to_vec()).unwrap(),
        WeightedL2::uniform(u.len()).unwrap(),
    )
    .unwrap()
}

fn mlp_problem(widths: &[usize], x: &[f64]) -> FitProblem<Mlp, SquaredError, WeightedL2> {
    let m = x.len() / 2;
    let target: Vec<f64> = x.chunks(2).map(|p| (p[0] + p[1]).sin()).collect();
    let model = Mlp::with_hidden(widths, Activation::Tanh, x)
        .unwrap()
        .with_parallelism(Par::Seq);
    FitProblem::new(
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
            FitProblem::new(
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
    if want("mlp-l") {
        let mut rng = Rng64::seed_from_u64(2024);
        let x: Vec<f64> = (0..2 * 4096).map(|_| rng.random_range(0.0..1.0)).collect();
        let widths = [2, 256, 256, 256, 1];
        let theta = mlp_problem(&widths, &x).model().init_params(7);
        v.visit("mlp-l", &|| mlp_problem(&widths, &x), &theta);
    }
    if want("h1") {
        let (x, u) = grids::unit_square_sine(20).unwrap();
        let make = || {
            let model = Mlp::with_hidden(&[2, 20, 20, 1], Activation::Tanh, &x)
                .unwrap()
                .with_parallelism(Par::Seq);
            FitProblem::new(
                model,
                SquaredError::l2(u.clone()).unwrap(),
                grids::h1_metric(20).unwrap(),
            )
            .unwrap()
        };
        let theta = make().model().init_params(1);
        v.visit("h1", &make, &theta);
    }
    if want("pinn") {
        let make = || {
            advection_diffusion(0.1, 254, &[64, 64], 10.0)
                .unwrap()
                .problem
        };
        let theta = make().model().net().init_params(7);
        v.visit("pinn", &make, &theta);
    }
    if want("poisson") {
        let make = || poisson_2d(16, 64, &[64, 64], 10.0).unwrap().problem;
        let theta = make().model().net().init_params(7);
        v.visit("poisson", &make, &theta);
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
        println!(
            "| problem | n | p | diag(G) max/min | λ | none: iters / products / ms | \
             Jacobi | Auto | run: none, products / ms | Jacobi | Auto | Auto picks |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        visit_all(&mut Precond(steps), only.as_deref());
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
