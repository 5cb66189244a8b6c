//! The PINN reference problems: 1D advection–diffusion (docs/math.md §4) and 2D Poisson, with
//! their exact solutions and the error measures used to report accuracy.

use crate::error::Result;
use crate::loss::SquaredError;
use crate::metric::Euclidean;
use crate::model::{DiffOperator, Pinn, TaylorMlp};
use crate::problem::Problem;
use faer::Mat;
use std::f64::consts::PI;

/// A PINN problem: Gauss–Newton form, loss `½‖R‖²` with the Euclidean metric on the
/// residual outputs (energy natural gradient).
pub type PinnProblem = Problem<Pinn, SquaredError<Euclidean>, Euclidean>;

/// A ready PINN: the problem, an exact solution and a fine evaluation grid.
#[derive(Debug)]
pub struct PinnCase {
    /// Short name.
    pub name: String,
    /// Model × loss × metric.
    pub problem: PinnProblem,
    /// Points of the fine error grid (`d × k`).
    pub grid: Mat<f64>,
    /// The exact solution on the grid.
    pub exact: Vec<f64>,
}

/// Relative L² and RMS errors of `v` against `exact` on a grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PinnErrors {
    /// `‖v − u‖₂ / ‖u‖₂` over the grid.
    pub rel_l2: f64,
    /// `√(mean (v − u)²)` over the grid.
    pub rms: f64,
}

impl PinnCase {
    /// Errors of the network with parameters θ against the exact solution on the grid.
    pub fn errors(&self, theta: &[f64]) -> Result<PinnErrors> {
        let v = self.problem.model().evaluate(theta, self.grid.as_ref())?;
        let (mut num, mut den) = (0.0, 0.0);
        for (v, u) in v.iter().zip(&self.exact) {
            num += (v - u) * (v - u);
            den += u * u;
        }
        Ok(PinnErrors {
            rel_l2: (num / den).sqrt(),
            rms: (num / v.len() as f64).sqrt(),
        })
    }
}

fn problem(model: Pinn) -> Result<PinnProblem> {
    let n = crate::model::Model::n_outputs(&model);
    Problem::new(
        model,
        SquaredError::new(vec![0.0; n], Euclidean)?,
        Euclidean,
    )
}

/// Exact solution of `−ε v'' + v' = 1`, `v(0) = v(1) = 0`:
/// `v(x) = x − (e^{(x−1)/ε} − e^{−1/ε}) / (1 − e^{−1/ε})`.
pub fn advection_diffusion_exact(eps: f64, x: f64) -> f64 {
    let e = (-1.0 / eps).exp();
    x - (((x - 1.0) / eps).exp() - e) / (1.0 - e)
}

/// `−ε v'' + v' = 1` on (0, 1), `v(0) = v(1) = 0`: `m` interior collocation points
/// `x_i = i/(m+1)`, both boundary points with weight `boundary_weight`, a tanh network of
/// the given hidden widths; error grid of 10 000 points.
pub fn advection_diffusion(
    eps: f64,
    m: usize,
    hidden: &[usize],
    boundary_weight: f64,
) -> Result<PinnCase> {
    let mut widths = vec![1];
    widths.extend_from_slice(hidden);
    widths.push(1);
    let net = TaylorMlp::new(widths)?;
    let op = DiffOperator {
        laplacian: -eps,
        gradient: vec![1.0],
        value: 0.0,
    };
    let interior = Mat::from_fn(1, m, |_, i| (i + 1) as f64 / (m + 1) as f64);
    let boundary = Mat::from_fn(1, 2, |_, j| j as f64);
    let model = Pinn::new(
        net,
        op,
        interior.as_ref(),
        vec![1.0; m],
        boundary.as_ref(),
        vec![0.0, 0.0],
        boundary_weight,
    )?;
    let k = 10_000;
    let grid = Mat::from_fn(1, k, |_, i| i as f64 / (k - 1) as f64);
    let exact = (0..k)
        .map(|i| advection_diffusion_exact(eps, grid[(0, i)]))
        .collect();
    Ok(PinnCase {
        name: format!("advection_diffusion(eps={eps}, m={m})"),
        problem: problem(model)?,
        grid,
        exact,
    })
}

/// Exact solution of the Poisson problem, `u(x, y) = sin(πx) sin(πy)`.
pub fn poisson_exact(x: f64, y: f64) -> f64 {
    (PI * x).sin() * (PI * y).sin()
}

/// `−Δu = 2π² sin(πx) sin(πy)` on the unit square, `u = 0` on the boundary: a
/// `side × side` grid of interior points (cell centres), `n_boundary` points spread
/// evenly over the four edges, a tanh network; error grid 100×100 (cell centres).
pub fn poisson_2d(
    side: usize,
    n_boundary: usize,
    hidden: &[usize],
    boundary_weight: f64,
) -> Result<PinnCase> {
    let mut widths = vec![2];
    widths.extend_from_slice(hidden);
    widths.push(1);
    let net = TaylorMlp::new(widths)?;
    let op = DiffOperator {
        laplacian: -1.0,
        gradient: vec![0.0, 0.0],
        value: 0.0,
    };
    let cell = |i: usize, n: usize| (i as f64 + 0.5) / n as f64;
    let interior = Mat::from_fn(2, side * side, |k, j| {
        if k == 0 {
            cell(j % side, side)
        } else {
            cell(j / side, side)
        }
    });
    let source = (0..side * side)
        .map(|j| 2.0 * PI * PI * poisson_exact(interior[(0, j)], interior[(1, j)]))
        .collect();
    let boundary = Mat::from_fn(2, n_boundary, |k, j| {
        let s = 4.0 * j as f64 / n_boundary as f64; // position along the perimeter
        let (edge, t) = (s.floor() as usize, s.fract());
        let (x, y) = match edge {
            0 => (t, 0.0),
            1 => (1.0, t),
            2 => (1.0 - t, 1.0),
            _ => (0.0, 1.0 - t),
        };
        if k == 0 {
            x
        } else {
            y
        }
    });
    let model = Pinn::new(
        net,
        op,
        interior.as_ref(),
        source,
        boundary.as_ref(),
        vec![0.0; n_boundary],
        boundary_weight,
    )?;
    let g = 100;
    let grid = Mat::from_fn(2, g * g, |k, j| {
        if k == 0 {
            cell(j % g, g)
        } else {
            cell(j / g, g)
        }
    });
    let exact = (0..g * g)
        .map(|j| poisson_exact(grid[(0, j)], grid[(1, j)]))
        .collect();
    Ok(PinnCase {
        name: format!(
            "poisson_2d({} interior, {n_boundary} boundary)",
            side * side
        ),
        problem: problem(model)?,
        grid,
        exact,
    })
}
