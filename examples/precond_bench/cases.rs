//! The benchmark problems.

use super::{bench, Opts};
use faer::{Mat, Par};
use natgrad::metric::Euclidean;
use natgrad::model::{DiffOperator, Pinn, TaylorMlp};
use natgrad::problems::pinn::{advection_diffusion, poisson_2d};
use natgrad::{Problem, SquaredError};
use rand::{Rng, SeedableRng};

/// Builds the named case and benchmarks it.
pub(crate) fn run_case(case: &str, o: &Opts) -> Result<(), String> {
    match case {
        "pinn" => {
            // −ε v'' + v' = 1 on (0, 1), 254 collocation points + 2 boundary points, a
            // 1-64-64-1 tanh network: p = 4353 > n = 256.
            let c = advection_diffusion(0.1, 254, &[64, 64], 10.0).map_err(|e| e.to_string())?;
            let theta = c.problem.model().net().init(7);
            bench(case, &c.problem, &theta, 1e-3, o);
            Ok(())
        }
        "poisson" => {
            // −Δu = f on the unit square, 16×16 interior points + 64 boundary points, a
            // 2-64-64-1 tanh network: p = 4417 > n = 320.
            let c = poisson_2d(16, 64, &[64, 64], 10.0).map_err(|e| e.to_string())?;
            let theta = c.problem.model().net().init(7);
            bench(case, &c.problem, &theta, 1e-3, o);
            Ok(())
        }
        "M" => regression(case, &[64, 64], 2048, o),
        "L" => regression(case, &[256, 256, 256], 4096, o),
        other => Err(format!("unknown case `{other}` (pinn, M, L)")),
    }
}

/// The `ng_step_bench` regression: a tanh MLP `2-hidden-1` fitted to sin(x₁+x₂) at `m`
/// points uniform in [0,1]², L² weights 1/m, λ = 1e-3.
///
/// Stand-in until the GEMM MLP of issue 6 is on main: the [`Pinn`] model with the operator
/// `𝓛v = v` and no boundary points has outputs `(v_θ(x_i) − f_i)/√m` and the Euclidean
/// metric, so its Gram matrix `JᵀJ` is exactly the L² one `(1/m) Σ ∇_θv ∇_θvᵀ` of the
/// MLP. Product *counts* are the MLP's; its Taylor-mode products carry `d + 2 = 4` channels,
/// so wall times are about 4× those of a plain MLP.
fn regression(case: &str, hidden: &[usize], m: usize, o: &Opts) -> Result<(), String> {
    let mut widths = vec![2];
    widths.extend_from_slice(hidden);
    widths.push(1);
    let net = TaylorMlp::new(widths).map_err(|e| e.to_string())?;
    let theta = net.init(7);
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(11);
    let x = Mat::from_fn(2, m, |_, _| rng.random_range(0.0..1.0_f64));
    let f: Vec<f64> = (0..m).map(|i| (x[(0, i)] + x[(1, i)]).sin()).collect();
    let op = DiffOperator {
        laplacian: 0.0,
        gradient: vec![0.0, 0.0],
        value: 1.0,
    };
    let none = Mat::<f64>::zeros(2, 0);
    let model = Pinn::new(net, op, x.as_ref(), f, none.as_ref(), vec![], 1.0)
        .map_err(|e| e.to_string())?
        .with_parallelism(Par::rayon(0));
    let pb = Problem::new(
        model,
        SquaredError::new(vec![0.0; m], Euclidean).map_err(|e| e.to_string())?,
        Euclidean,
    )
    .map_err(|e| e.to_string())?;
    bench(case, &pb, &theta, 1e-3, o);
    Ok(())
}
