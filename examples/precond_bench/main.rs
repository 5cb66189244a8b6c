//! Gram products and wall time to reach a relative residual of 1e-8 for one
//! natural-gradient direction: plain CG vs Jacobi-PCG vs Nyström-PCG (r = 50, 100, 200),
//! in parameter and in sample space, plus the direct paths and `LinearSolver::Auto`.
//! One JSON object per line on stdout.
//!
//! ```text
//! cargo run --release --example precond_bench -- [cases...] [--ranks 50,100,200]
//!     [--spaces param,sample] [--max-iters 5000] [--refresh 10] [--no-direct]
//!     [--rhs gradient|random] [--train-steps K] [--lambda 1e-3] [--run-steps K]
//! ```
//!
//! Cases: `pinn` (advection–diffusion PINN, p > n), `h1` (issue 14: 2-20-20-1 on a 20×20
//! grid, H¹ metric, λ = 1e-4), `M` (tanh MLP 2-64-64-1, m = 2048) and
//! `L` (2-256-256-256-1, m = 4096), inputs uniform in [0,1]², target sin(x₁+x₂), L² weights
//! 1/m, λ = 1e-3 — the sizes of `ng_step_bench`. Default: `pinn M`.
//!
//! The right-hand side is `Jᵀr` with `r = ∇_yℓ` (the natural-gradient direction, default)
//! or, with `--rhs random`, a seeded uniform random cotangent `r ∈ [−1,1]ⁿ` (the
//! momentum rules' right-hand sides are general cotangents; a random one excites the whole
//! spectrum and is the hard case for CG).
//!
//! With `--train-steps K` the direction is solved at the θ reached by `K` natural-gradient
//! steps (α = 1, same λ, `LinearSolver::Auto`) from the initial θ, where the residual has
//! lost its smooth part and CG needs more iterations (`train_loss` reports the loss there).
//!
//! With `--run-steps K` (default off) the single solves are replaced by `K`-step runs of
//! `NaturalGradient` from that θ, plain CG against Nyström-PCG at each rank, the sketch
//! refreshed every `--refresh` solves (see `run.rs` for the fields): the sketch's cost
//! amortised over a run in which it goes stale, instead of `r / refresh` added to one solve
//! on a fresh sketch.
//!
//! Fields: `gram_products` = Jacobian-product pairs of the CG iterations (sketch excluded);
//! `sketch_products` = the Nyström sketch's `r`; `amortised_products` = `gram_products +
//! sketch_products / refresh`; `factor_vs_plain` = plain CG's products in the same space
//! divided by `amortised_products`; `solve_s` = wall time of the solve without the sketch;
//! `sketch_s` = the sketch's; `param_rel_residual` = `‖Jᵀr − (G+λI)d‖ / ‖Jᵀr‖` of the
//! returned direction (one extra, uncounted product).

use faer::Par;
use natgrad::linsolve::DirectionSolver;
use natgrad::linsolve::{AutoSettings, CgSettings, LinearSolver, Preconditioner, Rhs};
use natgrad::loss::Loss;
use natgrad::metric::Metric;
use natgrad::model::Model;
use natgrad::FitProblem;
use std::time::Instant;

mod cases;
mod run;

struct Opts {
    ranks: Vec<usize>,
    spaces: Vec<String>,
    max_iters: usize,
    refresh: usize,
    direct: bool,
    random_rhs: bool,
    train_steps: u64,
    lambda: Option<f64>,
    run_steps: u64,
}

impl Opts {
    /// CG to relative residual 1e-8, cold start (truncation accepted, at `max_iters`).
    fn cg(&self, preconditioner: Preconditioner) -> CgSettings {
        CgSettings {
            rel_tol: 1e-8,
            max_iters: self.max_iters,
            preconditioner,
            warm_start: false,
            accept_truncated: true,
            ..CgSettings::default()
        }
    }

    /// Nyström of rank `rank`, refreshed every `--refresh` solves, seed 1.
    fn nystrom(&self, rank: usize) -> Preconditioner {
        Preconditioner::Nystrom {
            rank,
            refresh_every: self.refresh,
            seed: 1,
        }
    }
}

/// CG in the named space (`"sample"`, else parameter space).
fn in_space(space: &str, s: CgSettings) -> LinearSolver {
    match space {
        "sample" => LinearSolver::SampleCg(s),
        _ => LinearSolver::Cg(s),
    }
}

fn main() {
    let mut cases = Vec::new();
    let mut o = Opts {
        ranks: vec![50, 100, 200],
        spaces: vec!["param".into(), "sample".into()],
        max_iters: 5000,
        refresh: 10,
        direct: true,
        random_rhs: false,
        train_steps: 0,
        lambda: None,
        run_steps: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_default();
        match a.as_str() {
            "--ranks" => o.ranks = val().split(',').filter_map(|s| s.parse().ok()).collect(),
            "--spaces" => o.spaces = val().split(',').map(String::from).collect(),
            "--max-iters" => o.max_iters = val().parse().unwrap_or(o.max_iters),
            "--refresh" => o.refresh = val().parse().unwrap_or(o.refresh),
            "--no-direct" => o.direct = false,
            "--rhs" => o.random_rhs = val() == "random",
            "--lambda" => o.lambda = val().parse().ok(),
            "--train-steps" => o.train_steps = val().parse().unwrap_or(0),
            "--run-steps" => o.run_steps = val().parse().unwrap_or(0),
            _ => cases.push(a),
        }
    }
    if cases.is_empty() {
        cases = vec!["pinn".into(), "M".into()];
    }
    for case in &cases {
        match cases::run_case(case, &o) {
            Ok(()) => {}
            Err(e) => println!("{{\"case\":\"{case}\",\"error\":\"{e}\"}}"),
        }
    }
}

/// Runs every solver on one problem at one θ.
pub(crate) fn bench<Mo: Model, Lo: Loss, Me: Metric>(
    case: &str,
    pb: &FitProblem<Mo, Lo, Me>,
    theta: &[f64],
    lambda: f64,
    o: &Opts,
) where
    FitProblem<Mo, Lo, Me>: Clone,
{
    let (n, p) = (pb.n_outputs(), pb.n_params());
    let lambda = o.lambda.unwrap_or(lambda);
    let trained;
    let theta = if o.train_steps > 0 {
        trained = train(pb, theta, lambda, o.train_steps);
        &trained[..]
    } else {
        theta
    };
    let train_loss = pb.loss_at(theta).unwrap_or(f64::NAN);
    if o.run_steps > 0 {
        return run::runs(case, pb, theta, lambda, train_loss, o);
    }
    let mut runs: Vec<(String, LinearSolver)> = Vec::new();
    for space in &o.spaces {
        let wrap = |s| in_space(space, s);
        runs.push((space.clone(), wrap(o.cg(Preconditioner::None))));
        runs.push((space.clone(), wrap(o.cg(Preconditioner::Jacobi))));
        for &rank in &o.ranks {
            runs.push((space.clone(), wrap(o.cg(o.nystrom(rank)))));
        }
    }
    let auto = AutoSettings {
        cg: o.cg(Preconditioner::None),
        ..AutoSettings::default()
    };
    if o.direct {
        for (space, solver) in [
            ("param", LinearSolver::Cholesky),
            ("sample", LinearSolver::SampleCholesky),
        ] {
            let k = if space == "param" { p } else { n };
            // The limits of Auto's direct path, so that the benchmark stays in memory.
            if k <= 4 * auto.max_direct_dim && n * p <= 4 * auto.max_dense_entries {
                runs.push((space.into(), solver));
            }
        }
    }
    runs.push(("auto".into(), LinearSolver::Auto(auto)));
    let mut plain = std::collections::HashMap::new();
    for (space, solver) in runs {
        let mut lin = match pb.linearize(theta) {
            Ok(l) => l,
            Err(e) => return println!("{{\"case\":\"{case}\",\"error\":\"{e}\"}}"),
        };
        let r: Vec<f64> = if o.random_rhs {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(5);
            (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
        } else {
            lin.output_gradient().to_vec()
        };
        let mut b = vec![0.0; p];
        lin.vjp(&r, &mut b);
        let mut d = vec![0.0; p];
        let mut cache = DirectionSolver::default();
        let solve = |lin: &mut _, d: &mut Vec<f64>, cache: &mut DirectionSolver| {
            let before = pb.evaluations();
            let t0 = Instant::now();
            let rhs = Rhs::Cotangent {
                r: &r,
                jt_r: Some(&b),
            };
            let res = cache
                .set_linear_solver(solver.clone())
                .set_parallelism(Par::rayon(0).into())
                .solve_from(lin, rhs, lambda, d);
            (res, t0.elapsed().as_secs_f64(), pb.evaluations() - before)
        };
        let (res, total_s, first) = solve(&mut lin, &mut d, &mut cache);
        let info = match res {
            Ok(i) => i,
            Err(e) => {
                println!("{{\"case\":\"{case}\",\"space\":\"{space}\",\"error\":\"{e}\"}}");
                continue;
            }
        };
        // With a sketch: solve again on the cached sketch (as the 9 steps out of 10 that do
        // not refresh it) to time the solve alone; the difference is the sketch's time.
        let sketch_products = info.cg.map_or(0, |c| c.sketch_products);
        let (solve_s, used) = if sketch_products > 0 {
            let (_, s, used) = solve(&mut lin, &mut d, &mut cache);
            (s, used)
        } else {
            (total_s, first)
        };
        let sketch_s = (total_s - solve_s).max(0.0);
        let gram = used.jvp;
        let amortised = gram as f64 + sketch_products as f64 / o.refresh as f64;
        // Direct methods run no CG: no preconditioner, no iterations (`null`).
        let precond = info
            .cg
            .map_or("none".to_string(), |c| c.preconditioner.to_string());
        let key = space.clone();
        if precond == "none" && info.method.runs_cg() && space != "auto" {
            plain.insert(key.clone(), amortised);
        }
        let factor = plain.get(&key).map(|pl| pl / amortised).unwrap_or(f64::NAN);
        let rank = match &solver {
            LinearSolver::Cg(s) | LinearSolver::SampleCg(s) => match s.preconditioner {
                Preconditioner::Nystrom { rank, .. } => rank,
                _ => 0,
            },
            _ => 0,
        };
        // True parameter-space residual of d.
        let mut gd = vec![0.0; p];
        lin.gram(lambda).apply_vec(&d, &mut gd);
        let num: f64 = gd.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        let den: f64 = b.iter().map(|y| y * y).sum();
        println!(
            "{{\"case\":\"{case}\",\"rhs\":\"{}\",\"train_steps\":{},\"train_loss\":{train_loss:e},\"n\":{n},\"p\":{p},\"lambda\":{lambda:e},\"space\":\"{space}\",\
             \"method\":\"{}\",\"preconditioner\":\"{precond}\",\"rank\":{rank},\"iters\":{},\
             \"truncated\":{},\"rel_residual\":{:e},\"param_rel_residual\":{:e},\
             \"gram_products\":{gram},\"sketch_products\":{},\"amortised_products\":{amortised},\
             \"factor_vs_plain\":{},\"solve_s\":{:.4},\"sketch_s\":{sketch_s:.4},\
             \"total_s\":{total_s:.4},\"jvp\":{},\"vjp\":{}}}",
            if o.random_rhs { "random" } else { "gradient" },
            o.train_steps,
            info.method,
            info.cg_iters().map_or("null".to_string(), |i| i.to_string()),
            info.cg.is_some_and(|c| c.truncated),
            info.rel_residual,
            (num / den).sqrt(),
            sketch_products,
            if factor.is_finite() {
                format!("{factor:.3}")
            } else {
                "null".into()
            },
            solve_s,
            first.jvp,
            first.vjp,
        );
    }
}

/// θ after `steps` natural-gradient steps from `theta` (α = 1, damping λ, Auto solver).
fn train<Mo: Model, Lo: Loss, Me: Metric>(
    pb: &FitProblem<Mo, Lo, Me>,
    theta: &[f64],
    lambda: f64,
    steps: u64,
) -> Vec<f64>
where
    FitProblem<Mo, Lo, Me>: Clone,
{
    use argmin::core::{Executor, State};
    let ng = natgrad::NaturalGradient::new()
        .with_step_size(1.0)
        .and_then(|s| s.with_damping(lambda))
        .and_then(|s| s.with_linear_solver(LinearSolver::Auto(AutoSettings::default())));
    let run = ng.and_then(|ng| {
        Executor::new(pb.clone(), ng)
            .configure(|s| s.param(theta.to_vec()).max_iters(steps))
            .run()
    });
    match run {
        Ok(res) => res
            .state()
            .get_best_param()
            .cloned()
            .unwrap_or_else(|| theta.to_vec()),
        Err(_) => theta.to_vec(),
    }
}
