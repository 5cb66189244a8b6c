//! The benchmark problem of `examples/ng_step_bench.rs`, shared by the criterion benches:
//! tanh MLP with scalar output, inputs uniform in `[0,1]^d`, target `sin(x_1 + … + x_d)`,
//! L² loss with weights `1/m`.
#![allow(dead_code)]

use faer::Par;
use natgrad::linsolve::DirectionSolver;
use natgrad::linsolve::Rhs;
use natgrad::model::{Activation, Mlp};
use natgrad::{FitProblem, LinearSolver, LinearizedProblem, SquaredError, WeightedL2};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::time::Instant;

/// The benchmark problem type.
pub type Bench = FitProblem<Mlp, SquaredError, WeightedL2>;

/// The four sizes of the issue: name, widths, m.
pub fn sizes() -> Vec<(&'static str, Vec<usize>, usize)> {
    vec![
        ("S", vec![4, 10, 1], 500),
        ("M", vec![2, 64, 64, 1], 2048),
        ("L", vec![2, 256, 256, 256, 1], 4096),
        ("XL", vec![2, 1024, 1024, 1024, 1], 2048),
    ]
}

/// The problem on `m` seeded samples, and a seeded Glorot θ.
pub fn problem(widths: &[usize], m: usize) -> (Bench, Vec<f64>) {
    let d = widths[0];
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2024);
    let x: Vec<f64> = (0..m * d).map(|_| rng.random_range(0.0..1.0)).collect();
    let target: Vec<f64> = x.chunks(d).map(|p| p.iter().sum::<f64>().sin()).collect();
    let model = Mlp::with_hidden(widths, Activation::Tanh, &x)
        .expect("valid sizes")
        .with_parallelism(Par::rayon(0));
    let theta = model.init_params(7);
    let problem = FitProblem::new(
        model,
        SquaredError::l2(target).unwrap(),
        WeightedL2::uniform(m).expect("samples"),
    );
    (problem.expect("consistent sizes"), theta)
}

/// Parallelism of CG's own vector operations on `p`-vectors: sequential below 10⁵
/// parameters, where waking a second thread costs more than the vector update (the GEMMs
/// of the products follow the model's own `Par`).
pub fn vector_par(p: usize) -> Par {
    if p < 100_000 {
        Par::Seq
    } else {
        Par::rayon(0)
    }
}

/// One direction solve `(JᵀJ/m + 1e-3 I) d = Jᵀr/m` at θ, linearisation included.
pub fn direction(problem: &Bench, theta: &[f64], solver: &LinearSolver) -> Vec<f64> {
    let mut lin = problem.linearize(theta).expect("finite outputs");
    solve(&mut lin, solver)
}

/// The direction solve at a linearisation: `r = ∇_y ℓ = (y − u)/m`, `b = Jᵀr` (one vjp),
/// then `solver`.
pub fn solve(
    lin: &mut LinearizedProblem<'_, Mlp, SquaredError, WeightedL2>,
    solver: &LinearSolver,
) -> Vec<f64> {
    let r = lin.output_gradient().to_vec();
    let mut d = vec![0.0; lin.problem().n_params()];
    let rhs = Rhs::Cotangent { r: &r, jt_r: None };
    let mut cache = DirectionSolver::default();
    let par = vector_par(d.len());
    cache
        .set_linear_solver(solver.clone())
        .set_parallelism(par.into())
        .solve_from(lin, rhs, 1e-3, &mut d)
        .expect("direction solve");
    d
}

/// Median wall time of `reps` runs of `f` after one warm-up.
pub fn median_time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}
