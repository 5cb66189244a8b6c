//! The benchmark problems.

use super::{bench, Opts};
use faer::Par;
use natgrad::model::{Activation, Mlp};
use natgrad::problems::grids;
use natgrad::problems::pinn::{advection_diffusion, poisson_2d};
use natgrad::{FitProblem, SquaredError, WeightedL2};
use rand::{Rng, SeedableRng};

/// Builds the named case and benchmarks it.
pub(crate) fn run_case(case: &str, o: &Opts) -> Result<(), String> {
    match case {
        "pinn" => {
            // −ε v'' + v' = 1 on (0, 1), 254 collocation points + 2 boundary points, a
            // 1-64-64-1 tanh network: p = 4353 > n = 256.
            let c = advection_diffusion(0.1, 254, &[64, 64], 10.0).map_err(|e| e.to_string())?;
            let theta = c.problem.model().net().init_params(7);
            bench(case, &c.problem, &theta, 1e-3, o);
            Ok(())
        }
        "poisson" => {
            // −Δu = f on the unit square, 16×16 interior points + 64 boundary points, a
            // 2-64-64-1 tanh network: p = 4417 > n = 320.
            let c = poisson_2d(16, 64, &[64, 64], 10.0).map_err(|e| e.to_string())?;
            let theta = c.problem.model().net().init_params(7);
            bench(case, &c.problem, &theta, 1e-3, o);
            Ok(())
        }
        "h1" => {
            // Issue 14: a 2-20-20-1 tanh network (p = 501) over the 20×20 grid of [0,1]²,
            // u = sin πx sin πy, in the sparse H¹ metric (mass h²I + 5-point Laplacian).
            let k = 20;
            let (x, u) = grids::unit_square_sine(k).map_err(|e| e.to_string())?;
            let model = Mlp::with_hidden(&[2, 20, 20, 1], Activation::Tanh, &x)
                .map_err(|e| e.to_string())?
                .with_parallelism(Par::rayon(0));
            let theta = model.init_params(1);
            let loss = SquaredError::l2(u).map_err(|e| e.to_string())?;
            let pb = FitProblem::new(model, loss, h1_metric(k)?).map_err(|e| e.to_string())?;
            bench(case, &pb, &theta, 1e-4, o);
            Ok(())
        }
        "M" => regression(case, &[64, 64], 2048, o),
        "L" => regression(case, &[256, 256, 256], 4096, o),
        other => Err(format!("unknown case `{other}` (pinn, poisson, h1, M, L)")),
    }
}

/// The `ng_step_bench` regression (same data and θ as `benches/common`): a tanh MLP
/// `2-hidden-1` fitted to sin(x₁+x₂) at `m` points uniform in [0,1]², L² weights 1/m,
/// λ = 1e-3.
fn regression(case: &str, hidden: &[usize], m: usize, o: &Opts) -> Result<(), String> {
    let mut widths = vec![2];
    widths.extend_from_slice(hidden);
    widths.push(1);
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(2024);
    let x: Vec<f64> = (0..2 * m).map(|_| rng.random_range(0.0..1.0)).collect();
    let target: Vec<f64> = x.chunks(2).map(|p| (p[0] + p[1]).sin()).collect();
    let model = Mlp::with_hidden(&widths, Activation::Tanh, &x)
        .map_err(|e| e.to_string())?
        .with_parallelism(Par::rayon(0));
    let theta = model.init_params(7);
    let pb = FitProblem::new(
        model,
        SquaredError::l2(target).map_err(|e| e.to_string())?,
        WeightedL2::uniform(m).expect("samples"),
    )
    .map_err(|e| e.to_string())?;
    bench(case, &pb, &theta, 1e-3, o);
    Ok(())
}

/// The H¹-type metric of issue 14 on the `k×k` grid ([`grids::h1_matrix`]), stored
/// dense (`bench` needs a `Clone` problem, which `SparseMetric` was not when this bench
/// was measured; Auto's cost model treats both alike).
fn h1_metric(k: usize) -> Result<natgrad::metric::DenseMetric, String> {
    let sparse = grids::h1_matrix(k).map_err(|e| e.to_string())?;
    let mut dense = faer::Mat::<f64>::zeros(k * k, k * k);
    for (&v, (i, j)) in sparse.iter() {
        dense[(i, j)] = v;
    }
    natgrad::metric::DenseMetric::new(dense).map_err(|e| e.to_string())
}
