//! Natural gradient (CG and Cholesky) against argmin's steepest descent and L-BFGS on two
//! toys of the seed talk, from the same start. Prints one table.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```

use argmin::core::{Executor, State};
use argmin::solver::gradientdescent::SteepestDescent;
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use natgrad::problems::toys::{self, Toy, ToyMetric, ToyProblem};
use natgrad::{LinearSolver, NaturalGradient, NgState};

const MAX_ITERS: u64 = 200;
const TARGET_COST: f64 = 1e-14;

struct Row {
    solver: &'static str,
    iters: u64,
    loss: f64,
    evals: natgrad::Evaluations,
}

fn run<S>(toy: &Toy, name: &'static str, solver: S) -> Result<Row, argmin::core::Error>
where
    S: argmin::core::Solver<ToyProblem, NgState>,
{
    let problem = toys::by_name(toy.name).expect("known toy").problem;
    let res = Executor::new(problem, solver)
        .configure(|s| {
            s.param(toy.theta0.clone())
                .max_iters(MAX_ITERS)
                .target_cost(TARGET_COST)
        })
        .run()?;
    let evals = res.problem.problem.as_ref().expect("problem").evaluations();
    Ok(Row {
        solver: name,
        iters: res.state().get_iter(),
        loss: res.state().get_best_cost(),
        evals,
    })
}

fn main() -> Result<(), argmin::core::Error> {
    println!(
        "{:<14} {:<22} {:>6} {:>12} {:>8} {:>6} {:>6}",
        "problem", "solver", "iters", "final loss", "forward", "jvp", "vjp"
    );
    for toy in [
        toys::biased_linear(ToyMetric::Anisotropic),
        toys::quadratic_manifold(),
    ] {
        let ng = || NaturalGradient::new().with_step_size(1.0);
        let rows = [
            run(&toy, "NGD (CG)", ng()?)?,
            run(
                &toy,
                "NGD (Cholesky)",
                ng()?.with_linear_solver(LinearSolver::Cholesky)?,
            )?,
            run(
                &toy,
                "argmin SteepestDescent",
                SteepestDescent::new(MoreThuenteLineSearch::new()),
            )?,
            run(
                &toy,
                "argmin L-BFGS",
                LBFGS::new(MoreThuenteLineSearch::new(), 5),
            )?,
        ];
        for r in rows {
            println!(
                "{:<14} {:<22} {:>6} {:>12.3e} {:>8} {:>6} {:>6}",
                toy.name, r.solver, r.iters, r.loss, r.evals.forward, r.evals.jvp, r.evals.vjp
            );
        }
    }
    println!(
        "\n(stop at loss ≤ {TARGET_COST:e} or {MAX_ITERS} iterations; forward = forward passes)"
    );
    Ok(())
}
