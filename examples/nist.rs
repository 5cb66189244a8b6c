//! Gauss–Newton and Levenberg–Marquardt on NIST's certified nonlinear-regression problems
//! (`natgrad::problems::nist`), both starting points, default stopping tests. Prints one
//! row per run: iterations, the iteration at which θ first agreed with the certified
//! minimiser to 6 digits, SSE against the certified SSE, digits reached, and the reason
//! the run ended.
//!
//! ```text
//! cargo run --release --example nist [-- --max-iters 1000]
//! FTOL=1e-10 cargo run --release --example nist   # other tolerances (also XTOL, GTOL)
//! ```

use argmin::core::observers::ObserverMode;
use argmin::core::{Executor, State};
use natgrad::observe::Iterates;
use natgrad::problems::nist;
use natgrad::{LinearSolver, NaturalGradient};

fn solver(method: &str) -> NaturalGradient {
    let mut s = NaturalGradient::new()
        .with_linear_solver(LinearSolver::Cholesky)
        .unwrap();
    if let Ok(t) = std::env::var("FTOL") {
        s = s.with_tolerance_cost(t.parse().unwrap()).unwrap();
    }
    if let Ok(t) = std::env::var("XTOL") {
        s = s.with_tolerance_step(t.parse().unwrap()).unwrap();
    }
    if let Ok(t) = std::env::var("GTOL") {
        s = s.with_tolerance_grad(t.parse().unwrap()).unwrap();
    }
    match method {
        "GN" => s,
        "LM" => s.with_adaptive_damping(1e-12, 1e12).unwrap(),
        other => panic!("unknown method {other}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let max_iters: u64 = args
        .iter()
        .position(|a| a == "--max-iters")
        .map(|i| args[i + 1].parse().expect("--max-iters N"))
        .unwrap_or(1000);
    println!(
        "| problem | start | method | iters | reached 6 digits at | SSE | certified SSE | digits | reason |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for c in nist::all() {
        for (k, start) in c.starts.iter().enumerate() {
            for method in ["GN", "LM"] {
                let rec = Iterates::default();
                let res = Executor::new(c.problem(), solver(method))
                    .configure(|s| s.param(start.to_vec()).max_iters(max_iters))
                    .add_observer(rec.clone(), ObserverMode::Always)
                    .run();
                let (iters, theta, reason) = match res {
                    Ok(r) => (
                        r.state().get_iter(),
                        r.state().get_best_param().cloned().unwrap(),
                        r.state()
                            .get_termination_reason()
                            .map(|t| t.text().to_string())
                            .unwrap_or_default(),
                    ),
                    Err(e) => (0, start.to_vec(), format!("error: {e}")),
                };
                let reached = rec
                    .get()
                    .iter()
                    .position(|t| c.digits(t) >= 6.0)
                    .map_or("—".to_string(), |i| (i + 1).to_string());
                println!(
                    "| {} | {} | {method} | {iters} | {reached} | {:.10e} | {:.10e} | {:.1} | {} |",
                    c.name,
                    k + 1,
                    c.sse_at(&theta),
                    c.sse,
                    c.digits(&theta),
                    reason
                        .replace("`NaturalGradient`: ", "")
                        .chars()
                        .take(110)
                        .collect::<String>()
                );
            }
        }
    }
}
