//! The PINN reference problems, posed through [`crate::pde`]: 1D advection–diffusion
//! (docs/math.md §4), 2D Poisson, the heat equation, a nonlinear equation and a Neumann
//! problem, with their exact solutions and the error measures used to report accuracy.

mod cases;
mod grids;
mod recipe;

pub use cases::{heat_1d, heat_exact, neumann_2d, neumann_exact, nonlinear_2d};
pub use recipe::{
    default_solver, RECIPE_BETA, RECIPE_DAMPING, RECIPE_DAMPING_RANGE, RECIPE_FOLLOW_T_MAX,
    RECIPE_WARM_UP,
};

use crate::error::Result;
use crate::loss::SquaredError;
use crate::metric::Euclidean;
use crate::model::{ChannelSet, Model, TaylorMlp};
use crate::pde::{DualNum, Fields, PdeModel, Point, Residual, Term};
use crate::problem::FitProblem;
use faer::Mat;
use grids::{cell_grid, perimeter, widths};
use std::f64::consts::PI;

/// A PINN problem: Gauss–Newton form, loss `½‖R‖²` with the Euclidean metric on the
/// residual outputs (energy natural gradient).
pub type PinnProblem = FitProblem<PdeModel, SquaredError<Euclidean>, Euclidean>;

/// A ready PINN: the problem, an exact solution and a fine evaluation grid.
#[derive(Debug)]
pub struct PinnCase {
    /// Short name.
    pub name: String,
    /// Model × loss × metric.
    pub problem: PinnProblem,
    /// Points of the fine error grid (`d × k`).
    pub grid: Mat<f64>,
    /// The exact solution on the grid (output 0).
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
    /// Errors of the network's output 0 with parameters θ against the exact solution on
    /// the grid.
    pub fn errors(&self, theta: &[f64]) -> Result<PinnErrors> {
        let v = self.problem.model().evaluate(theta, self.grid.as_ref())?;
        let (mut num, mut den) = (0.0, 0.0);
        for (i, u) in self.exact.iter().enumerate() {
            let e = v[(0, i)] - u;
            num += e * e;
            den += u * u;
        }
        Ok(PinnErrors {
            rel_l2: (num / den).sqrt(),
            rms: (num / self.exact.len() as f64).sqrt(),
        })
    }

    /// A case from its model, the exact solution and the error grid.
    pub(crate) fn build(
        name: String,
        model: PdeModel,
        grid: Mat<f64>,
        exact: impl Fn(&[f64]) -> f64,
    ) -> Result<Self> {
        let exact = (0..grid.ncols())
            .map(|j| exact(grid.col_as_slice(j)))
            .collect();
        let n = model.n_outputs();
        let problem = FitProblem::new(
            model,
            SquaredError::new(vec![0.0; n], Euclidean)?,
            Euclidean,
        )?;
        Ok(Self {
            name,
            problem,
            grid,
            exact,
        })
    }
}

/// The Dirichlet residual `u₀ − g` with `g` the point's data, or 0 without data.
#[derive(Debug, Clone, Copy)]
pub struct Dirichlet;

impl Residual for Dirichlet {
    fn residual<D: DualNum<Primitive = f64> + Copy>(&self, p: &Point<'_>, u: &Fields<'_, D>) -> D {
        u.u(0) - p.data.first().copied().unwrap_or(0.0)
    }
}

/// Exact solution of `−ε v'' + v' = 1`, `v(0) = v(1) = 0`:
/// `v(x) = x − (e^{(x−1)/ε} − e^{−1/ε}) / (1 − e^{−1/ε})`.
pub fn advection_diffusion_exact(eps: f64, x: f64) -> f64 {
    let e = (-1.0 / eps).exp();
    x - (((x - 1.0) / eps).exp() - e) / (1.0 - e)
}

/// `−ε v'' + v' − 1`.
struct AdvectionDiffusion {
    eps: f64,
}

impl Residual for AdvectionDiffusion {
    fn residual<D: DualNum<Primitive = f64> + Copy>(&self, _: &Point<'_>, u: &Fields<'_, D>) -> D {
        -u.laplacian(0) * self.eps + u.dx(0, 0) - 1.0
    }
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
    let net = TaylorMlp::new(widths(1, hidden))?;
    let interior = Mat::from_fn(1, m, |_, i| (i + 1) as f64 / (m + 1) as f64);
    let boundary = Mat::from_fn(1, 2, |_, j| j as f64);
    let model = PdeModel::new(
        net,
        vec![
            Term::new(
                "interior",
                interior.as_ref(),
                ChannelSet::laplacian(1),
                AdvectionDiffusion { eps },
            ),
            Term::new(
                "boundary",
                boundary.as_ref(),
                ChannelSet::value(1),
                Dirichlet,
            )
            .with_weight(boundary_weight),
        ],
    )?;
    let k = 10_000;
    let grid = Mat::from_fn(1, k, |_, i| i as f64 / (k - 1) as f64);
    PinnCase::build(
        format!("advection_diffusion(eps={eps}, m={m})"),
        model,
        grid,
        |x| advection_diffusion_exact(eps, x[0]),
    )
}

/// Exact solution of the Poisson problem, `u(x, y) = sin(πx) sin(πy)`.
pub fn poisson_exact(x: f64, y: f64) -> f64 {
    (PI * x).sin() * (PI * y).sin()
}

/// `−Δu − 2π² sin(πx) sin(πy)`.
struct Poisson;

impl Residual for Poisson {
    fn residual<D: DualNum<Primitive = f64> + Copy>(&self, p: &Point<'_>, u: &Fields<'_, D>) -> D {
        -u.laplacian(0) - 2.0 * PI * PI * poisson_exact(p.x[0], p.x[1])
    }
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
    let (boundary, _) = perimeter(n_boundary);
    let dirichlet = Term::new(
        "boundary",
        boundary.as_ref(),
        ChannelSet::value(2),
        Dirichlet,
    )
    .with_weight(boundary_weight);
    let pde = OnUnitSquare {
        name: "poisson_2d",
        interior: Poisson,
        boundary: dirichlet,
        exact: |p: &[f64]| poisson_exact(p[0], p[1]),
    };
    unit_square(pde, side, hidden)
}

/// A second-order PDE on the unit square: its name, the interior residual (Laplacian
/// channels), one boundary term and the exact solution.
pub(crate) struct OnUnitSquare<'n, R, E> {
    pub(crate) name: &'n str,
    pub(crate) interior: R,
    pub(crate) boundary: Term,
    pub(crate) exact: E,
}

/// The case of `pde` on the `side × side` interior cell centres, with a tanh network
/// `2-hidden-1`, the error on the 100×100 cell centres.
pub(crate) fn unit_square<R: Residual + 'static, E: Fn(&[f64]) -> f64>(
    pde: OnUnitSquare<'_, R, E>,
    side: usize,
    hidden: &[usize],
) -> Result<PinnCase> {
    let OnUnitSquare {
        name,
        interior,
        boundary,
        exact,
    } = pde;
    let net = TaylorMlp::new(widths(2, hidden))?;
    let inside = cell_grid(side);
    let m_b = boundary.n_points();
    let terms = vec![
        Term::new(
            "interior",
            inside.as_ref(),
            ChannelSet::laplacian(2),
            interior,
        ),
        boundary,
    ];
    PinnCase::build(
        format!("{name}({} interior, {m_b} boundary)", side * side),
        PdeModel::new(net, terms)?,
        cell_grid(100),
        exact,
    )
}
