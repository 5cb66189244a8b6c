//! Deep Ritz with energy natural gradient (issue 16, *Energy losses*).
//!
//! ```text
//! cargo run --release --example deep_ritz
//! ```
//!
//! 1. The issue's example `E(v) = ∫ ½v'² + ¼v⁴ − f v` on (−1, 1) with
//!    `f = π² cos πx + cos³ πx`: the minimiser solves `−u'' + u³ = f` with the natural
//!    boundary condition `u'(±1) = 0`, so `u = cos πx` and `E(u) = −π²/2 − 9/16`.
//! 2. Poisson `−u'' = π² sin πx`, `u(±1) = 0`, as `E(v) = ∫ ½v'² − f v` plus the penalty
//!    `β/2 (v(−1)² + v(1)²)` for the Dirichlet condition (a second energy term on the two
//!    boundary points); exact `sin πx` up to the penalty's `O(1/β)`.
//!
//! Both on a 1-20-1 tanh network, 300 composite 3-point Gauss–Legendre points, natural
//! gradient in the energy's Hessian (`LossHessian` metric on `RitzModel::energy`), Cholesky,
//! λ = 1e-8, Armijo backtracking. Prints the relative L² error on 1 001 points.

use argmin::core::{Executor, State};
use faer::Mat;
use natgrad::model::{ChannelSet, TaylorMlp};
use natgrad::pde::{
    gauss_legendre_3, DualNum, EnergyDensity, EnergyTerm, Fields, Point, RitzModel,
};
use natgrad::{LinearSolver, NaturalGradient, StepControl};
use std::f64::consts::PI;

/// `e = ½u'² + ¼u⁴ − f u`.
struct Quartic;
impl EnergyDensity for Quartic {
    fn density<D: DualNum<Primitive = f64> + Copy>(&self, p: &Point, u: &Fields<D>) -> D {
        let c = (PI * p.x[0]).cos();
        u.dx(0, 0).powi(2) * 0.5 + u.u(0).powi(4) * 0.25 - u.u(0) * (PI * PI * c + c.powi(3))
    }
}

/// `e = ½u'² − f u`, `f = π² sin πx`.
struct Poisson;
impl EnergyDensity for Poisson {
    fn density<D: DualNum<Primitive = f64> + Copy>(&self, p: &Point, u: &Fields<D>) -> D {
        u.dx(0, 0).powi(2) * 0.5 - u.u(0) * (PI * PI * (PI * p.x[0]).sin())
    }
}

/// The Dirichlet penalty `β/2 u²` (boundary value 0).
struct Penalty {
    beta: f64,
}
impl EnergyDensity for Penalty {
    fn density<D: DualNum<Primitive = f64> + Copy>(&self, _: &Point, u: &Fields<D>) -> D {
        u.u(0).powi(2) * (0.5 * self.beta)
    }
}

/// Composite 3-point Gauss–Legendre rule on (−1, 1) with `cells` cells.
fn gauss(cells: usize) -> (Mat<f64>, Vec<f64>) {
    gauss_legendre_3(-1.0, 1.0, cells).expect("a valid interval")
}

/// Runs energy natural gradient and prints the error every `every` steps.
fn solve(
    name: &str,
    model: RitzModel,
    exact: fn(f64) -> f64,
    steps: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let xs = Mat::from_fn(1, 1001, |_, j| -1.0 + 2.0 * j as f64 / 1000.0);
    let error = |theta: &[f64]| -> Result<f64, Box<dyn std::error::Error>> {
        let u = model.evaluate(theta, xs.as_ref())?;
        let (mut num, mut den) = (0.0, 0.0);
        for j in 0..xs.ncols() {
            let e = exact(xs[(0, j)]);
            num += (u[(0, j)] - e).powi(2);
            den += e * e;
        }
        Ok((num / den).sqrt())
    };
    let mut theta = model.net().init_params(0);
    let solver = NaturalGradient::new()
        .with_linear_solver(LinearSolver::Cholesky)?
        .with_damping(1e-8)?
        .with_step_control(StepControl::armijo())?;
    let start = std::time::Instant::now();
    for chunk in 0..steps / 25 {
        let res = Executor::new(model.clone().into_problem()?, solver.clone())
            .configure(|s| s.param(theta.clone()).max_iters(25))
            .run()?;
        theta = res.state().get_best_param().cloned().unwrap_or(theta);
        println!(
            "{name}: step {:4}  energy {:+.10}  rel. L² error {:.3e}  ({:.1} s)",
            (chunk + 1) * 25,
            res.state().get_best_cost(),
            error(&theta)?,
            start.elapsed().as_secs_f64()
        );
        if res.state().get_iter() < 25 {
            println!(
                "{name}: stopped: {:?}",
                res.state().get_termination_reason()
            );
            break;
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (x, w) = gauss(100);
    let grad = ChannelSet::value(1).with_gradient();
    let net = || TaylorMlp::new(vec![1, 20, 1]);

    let quartic = EnergyTerm::new("interior", x.as_ref(), w.clone(), grad.clone(), Quartic);
    println!(
        "exact minimal energy −π²/2 − 9/16 = {:+.10}",
        -PI * PI / 2.0 - 9.0 / 16.0
    );
    solve(
        "quartic",
        RitzModel::new(net()?, vec![quartic])?,
        |x| (PI * x).cos(),
        200,
    )?;

    let ends = Mat::from_fn(1, 2, |_, j| if j == 0 { -1.0 } else { 1.0 });
    for beta in [1e2, 1e4] {
        let terms = vec![
            EnergyTerm::new("interior", x.as_ref(), w.clone(), grad.clone(), Poisson),
            EnergyTerm::new(
                "boundary",
                ends.as_ref(),
                vec![1.0; 2],
                ChannelSet::value(1),
                Penalty { beta },
            ),
        ];
        let name = format!("poisson, β = {beta:e}");
        solve(
            &name,
            RitzModel::new(net()?, terms)?,
            |x| (PI * x).sin(),
            300,
        )?;
    }
    Ok(())
}
