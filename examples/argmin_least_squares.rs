//! One argmin least-squares problem, two solvers: argmin's `GaussNewtonLS` (Gauss–Newton
//! with a Moré–Thuente line search), then natgrad's `NaturalGradient` with heavy-ball
//! momentum and Levenberg–Marquardt damping on the same problem value
//! (`natgrad::argmin_adapter`).
//!
//!     cargo run --release --example argmin_least_squares
//!
//! The problem is an exponential decay `y ≈ a e^{−b x}` fitted to eight points; argmin
//! sees an `Operator` (the residual) and a `Jacobian`, and so does natgrad.

use argmin::core::{Error, Executor, IterState, Jacobian, Operator, State};
use argmin::solver::gaussnewton::GaussNewtonLS;
use argmin::solver::linesearch::MoreThuenteLineSearch;
use natgrad::argmin_adapter::{least_squares, JacobianMatrix};
use natgrad::{NaturalGradient, StepRule};

const X: [f64; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0];
const Y: [f64; 8] = [2.02, 1.41, 0.99, 0.72, 0.49, 0.25, 0.12, 0.06];

/// `r_i(a, b) = a e^{−b x_i} − y_i`.
struct Decay;

impl Operator for Decay {
    type Param = Vec<f64>;
    type Output = Vec<f64>;
    fn apply(&self, t: &Vec<f64>) -> Result<Vec<f64>, Error> {
        Ok(X.iter()
            .zip(&Y)
            .map(|(x, y)| t[0] * (-t[1] * x).exp() - y)
            .collect())
    }
}

impl Jacobian for Decay {
    type Param = Vec<f64>;
    type Jacobian = JacobianMatrix;
    fn jacobian(&self, t: &Vec<f64>) -> Result<JacobianMatrix, Error> {
        let rows: Vec<Vec<f64>> = X
            .iter()
            .map(|x| {
                let e = (-t[1] * x).exp();
                vec![e, -t[0] * x * e]
            })
            .collect();
        Ok(JacobianMatrix::from_rows(&rows)?)
    }
}

type GnState = IterState<Vec<f64>, Vec<f64>, JacobianMatrix, (), (), f64>;

fn main() -> Result<(), Error> {
    let theta0 = vec![1.0, 0.1];

    let line_search = MoreThuenteLineSearch::new();
    let gn = Executor::<_, _, GnState>::new(Decay, GaussNewtonLS::new(line_search))
        .configure(|s| s.param(theta0.clone()).max_iters(50))
        .run()?;
    let gn_state = gn.state();
    let gn_theta = gn_state.get_best_param().expect("a parameter");
    // argmin's Gauss–Newton reports ‖r‖₂; natgrad's loss is ½‖r‖².
    let gn_cost = gn_state.get_best_cost();
    println!(
        "GaussNewtonLS (Moré–Thuente):  a = {:.6}, b = {:.6}, ½‖r‖² = {:.6e}, {} iterations, {:?}",
        gn_theta[0],
        gn_theta[1],
        0.5 * gn_cost * gn_cost,
        gn_state.get_iter(),
        gn_state.get_termination_reason()
    );

    let problem = least_squares(Decay, &theta0)?;
    let ng = NaturalGradient::new()
        .with_step_rule(StepRule::HeavyBall { beta: 0.5 })?
        .with_damping(1e-3)?
        .with_adaptive_damping(1e-12, 1e6)?;
    let res = Executor::new(problem, ng)
        .configure(|s| s.param(theta0.clone()).max_iters(200))
        .run()?;
    let state = res.state();
    let theta = state.get_best_param().expect("a parameter");
    println!(
        "NaturalGradient (heavy ball):  a = {:.6}, b = {:.6}, ½‖r‖² = {:.6e}, {} iterations, {:?}",
        theta[0],
        theta[1],
        state.get_best_cost(),
        state.get_iter(),
        state.get_termination_reason()
    );
    let gap = (theta[0] - gn_theta[0])
        .abs()
        .max((theta[1] - gn_theta[1]).abs());
    println!("largest parameter difference: {gap:.2e}");
    Ok(())
}
