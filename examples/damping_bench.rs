//! Damping rules measured on the crate's problems (issue 14 item 10): the NIST certified
//! problems (both starts), the toys and a small MLP, under Gauss–Newton (fixed damping,
//! absolute or relative to tr(G)/p) and Levenberg–Marquardt (the threshold rule or
//! Nielsen's, absolute or relative). Prints one markdown row per run: iterations until
//! the target was reached, iterations in all, products, whether the run stopped by itself
//! (a convergence test of `natgrad::stopping`) and the wall time (noisy on a shared
//! machine), then a summary per rule.
//!
//! Targets: NIST, θ agrees with the certified minimiser to 6 digits; toys with a known
//! minimiser, `L − L* ≤ 1e-10·(L₀ − L*)` with `L*` the loss there; the MLP (no certified
//! minimum), `L ≤ 1e-6·L₀`.
//!
//! ```text
//! cargo run --release --example damping_bench [-- --max-iters 1000] [-- --only nist|toys|mlp]
//! ```

use argmin::core::observers::{Observe, ObserverMode};
use argmin::core::{Executor, State, KV};
use faer::Par;
use natgrad::model::{Activation, Mlp};
use natgrad::problems::{nist, toys};
use natgrad::{
    converged_by, DampingRule, DampingScale, FitProblem, LevenbergMarquardt, LinearSolver, Loss,
    Metric, Model, NaturalGradient, NgState, SquaredError, WeightedL2,
};
use rand::{Rng, SeedableRng};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A damping configuration: name, rule (None: fixed damping), scale, initial λ or μ.
#[derive(Clone, Copy)]
struct Config {
    name: &'static str,
    rule: Option<DampingRule>,
    scale: DampingScale,
    start: f64,
}

const CONFIGS: [Config; 6] = [
    Config {
        name: "GN, λ = 1e-8",
        rule: None,
        scale: DampingScale::Absolute,
        start: 1e-8,
    },
    Config {
        name: "GN, μ = 1e-8 rel.",
        rule: None,
        scale: DampingScale::GramTrace,
        start: 1e-8,
    },
    Config {
        name: "LM threshold, λ₀ = 1e-8",
        rule: Some(DampingRule::Threshold),
        scale: DampingScale::Absolute,
        start: 1e-8,
    },
    Config {
        name: "LM Nielsen, λ₀ = 1e-8",
        rule: Some(DampingRule::Nielsen),
        scale: DampingScale::Absolute,
        start: 1e-8,
    },
    Config {
        name: "LM Nielsen, μ₀ = 1e-8 rel.",
        rule: Some(DampingRule::Nielsen),
        scale: DampingScale::GramTrace,
        start: 1e-8,
    },
    Config {
        name: "LM Nielsen, μ₀ = 1e-3 rel.",
        rule: Some(DampingRule::Nielsen),
        scale: DampingScale::GramTrace,
        start: 1e-3,
    },
];

fn solver(c: Config, linear: LinearSolver) -> NaturalGradient {
    let s = NaturalGradient::new()
        .with_linear_solver(linear)
        .and_then(|s| s.with_damping(c.start))
        .unwrap()
        .with_damping_scale(c.scale);
    match c.rule {
        None => s,
        Some(rule) => s
            .with_levenberg_marquardt(LevenbergMarquardt {
                min: 1e-12,
                max: 1e12,
                rule,
            })
            .unwrap(),
    }
}

/// Every iterate with its loss, the products (jvp + vjp) made so far and the time.
#[derive(Clone)]
struct Log(Arc<Mutex<Vec<Iterate>>>, Instant);

/// `θ_k`, `L(θ_k)`, products so far, milliseconds so far.
type Iterate = (Vec<f64>, f64, u64, f64);

impl Observe<NgState> for Log {
    fn observe_iter(&mut self, state: &NgState, _kv: &KV) -> Result<(), argmin::core::Error> {
        let theta = state.get_param().cloned().unwrap_or_default();
        let counts = state.get_func_counts();
        let count = |k: &str| counts.get(k).copied().unwrap_or(0);
        let products = count("jvp_count") + count("vjp_count");
        let ms = self.1.elapsed().as_secs_f64() * 1e3;
        self.0
            .lock()
            .unwrap()
            .push((theta, state.get_cost(), products, ms));
        Ok(())
    }
}

struct Outcome {
    iters: u64,
    /// The iteration at which the target was reached, the products and ms until then.
    reached: Option<(usize, u64, f64)>,
    products: u64,
    stopped: String,
    wall_ms: f64,
}

fn run<Mo: Model, Lo: Loss, Me: Metric>(
    problem: FitProblem<Mo, Lo, Me>,
    s: NaturalGradient,
    theta0: &[f64],
    max_iters: u64,
    reached: impl Fn(&[f64], f64) -> bool,
) -> Outcome {
    let t0 = Instant::now();
    let log = Log(Arc::default(), t0);
    let res = Executor::new(problem, s)
        .configure(|st| {
            st.param(theta0.to_vec())
                .max_iters(max_iters)
                .counting(true)
        })
        .add_observer(log.clone(), ObserverMode::Always)
        .run();
    let wall_ms = t0.elapsed().as_secs_f64() * 1e3;
    let log = log.0.lock().unwrap().clone();
    let reached = log
        .iter()
        .position(|(t, l, _, _)| reached(t, *l))
        .map(|i| (i + 1, log[i].2, log[i].3));
    match res {
        Ok(r) => {
            let st = r.state();
            let counts = st.get_func_counts();
            let count = |k: &str| counts.get(k).copied().unwrap_or(0);
            let reason = st.get_termination_reason();
            let stopped = match reason.and_then(converged_by) {
                Some(test) => format!("yes ({test})"),
                None => {
                    let text = reason.map(|r| r.text().to_string()).unwrap_or_default();
                    let text = text.replace("`NaturalGradient`: ", "");
                    format!("no: {}", text.chars().take(40).collect::<String>())
                }
            };
            Outcome {
                iters: st.get_iter(),
                reached,
                products: count("jvp_count") + count("vjp_count"),
                stopped,
                wall_ms,
            }
        }
        Err(e) => Outcome {
            iters: 0,
            reached,
            products: 0,
            stopped: format!("error: {e}"),
            wall_ms,
        },
    }
}

/// Per configuration: runs that reached the target, and the sum of their iterations.
type Summary = Vec<(usize, u64, usize)>;

fn row(model: &str, size: &str, c: &Config, o: &Outcome, summary: &mut Summary, k: usize) {
    let (reached, to_target) = o.reached.map_or(("—".into(), "—".into()), |(r, p, ms)| {
        (r.to_string(), format!("{p} / {ms:.1}"))
    });
    println!(
        "| {model} | {size} | {} | {reached} | {to_target} | {} | {} | {} | {:.1} |",
        c.name, o.iters, o.products, o.stopped, o.wall_ms
    );
    if let Some((r, _, _)) = o.reached {
        summary[k].0 += 1;
        summary[k].1 += r as u64;
    }
    summary[k].2 += usize::from(o.reached.is_some() && o.stopped.starts_with("yes"));
}

fn nist_rows(max_iters: u64, summary: &mut Summary) {
    for c in nist::all() {
        for (s, start) in c.starts.iter().enumerate() {
            for (k, cfg) in CONFIGS.iter().enumerate() {
                let o = run(
                    c.problem(),
                    solver(*cfg, LinearSolver::Cholesky),
                    start,
                    max_iters,
                    |t, _| c.digits(t) >= 6.0,
                );
                let size = format!("n = {}, p = {}", c.x.len(), c.n_params());
                row(
                    &format!("{} start {}", c.name, s + 1),
                    &size,
                    cfg,
                    &o,
                    summary,
                    k,
                );
            }
        }
    }
}

fn toy_rows(max_iters: u64, summary: &mut Summary) {
    for name in ["linear_k", "quadratic_k", "non_l2"] {
        let toy = toys::by_name(name).unwrap();
        let l0 = toy.problem.loss_at(&toy.theta0).unwrap();
        // The non-L² loss is 0 at c = c_u, which the toy reaches (docs/math.md §4).
        let l_star = match &toy.minimiser {
            Some(m) => toy.problem.loss_at(m).unwrap(),
            None => 0.0,
        };
        for (k, cfg) in CONFIGS.iter().enumerate() {
            let problem = toys::by_name(name).unwrap().problem;
            let o = run(
                problem,
                solver(*cfg, LinearSolver::Cholesky),
                &toy.theta0,
                max_iters,
                |_, l| l - l_star <= 1e-10 * (l0 - l_star),
            );
            row(name, "n = 2, p = 2", cfg, &o, summary, k);
        }
    }
}

/// A 2-10-10-1 tanh MLP fitted to sin(x₁ + x₂) at 128 points of [0,1]², L² weights 1/m.
fn mlp_rows(max_iters: u64, summary: &mut Summary) {
    let m = 128;
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(2024);
    let x: Vec<f64> = (0..2 * m).map(|_| rng.random_range(0.0..1.0)).collect();
    let target: Vec<f64> = x.chunks(2).map(|p| (p[0] + p[1]).sin()).collect();
    let model = Mlp::with_hidden(&[2, 10, 10, 1], Activation::Tanh, &x)
        .unwrap()
        .with_parallelism(Par::Seq);
    let theta0 = model.init_params(7);
    let p = theta0.len();
    let pb = FitProblem::new(
        model,
        SquaredError::l2(target).unwrap(),
        WeightedL2::uniform(m).unwrap(),
    )
    .unwrap();
    let l0 = pb.loss_at(&theta0).unwrap();
    for (k, cfg) in CONFIGS.iter().enumerate() {
        let o = run(
            pb.clone(),
            solver(*cfg, LinearSolver::default()),
            &theta0,
            max_iters,
            |_, l| l <= 1e-6 * l0,
        );
        row(
            "MLP 2-10-10-1",
            &format!("n = {m}, p = {p}"),
            cfg,
            &o,
            summary,
            k,
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .map(|i| args[i + 1].clone())
    };
    let max_iters: u64 = value("--max-iters").map_or(1000, |v| v.parse().unwrap());
    let only = value("--only");
    let mut summary: Summary = vec![(0, 0, 0); CONFIGS.len()];
    println!(
        "| model | size | damping | reached at | products / ms to it | iters | products | \
         stopped by itself | wall ms (noisy) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let want = |s: &str| only.as_deref().is_none_or(|o| o == s);
    if want("nist") {
        nist_rows(max_iters, &mut summary);
    }
    if want("toys") {
        toy_rows(max_iters, &mut summary);
    }
    if want("mlp") {
        mlp_rows(max_iters, &mut summary);
    }
    println!("\n| damping | runs reaching the target | their iterations (sum) | of them stopped by itself |");
    println!("|---|---|---|---|");
    for (c, (n, its, stopped)) in CONFIGS.iter().zip(&summary) {
        println!("| {} | {n} | {its} | {stopped} |", c.name);
    }
}
