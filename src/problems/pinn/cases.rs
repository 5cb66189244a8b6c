//! The problems the classic `Pinn` could not pose: the heat equation (time as an input,
//! second derivatives in space only), a nonlinear equation and a Neumann problem.

use super::grids::{cell_grid, perimeter, widths};
use super::{unit_square, Dirichlet, OnUnitSquare, PinnCase};
use crate::error::Result;
use crate::model::{ChannelSet, SecondOrder, TaylorMlp};
use crate::pde::{DualNum, Fields, PdeModel, Point, Residual, Term};
use faer::Mat;
use std::f64::consts::PI;

/// Exact solution of the heat problem, `u(t, x) = e^{−π²t/4} sin πx`.
pub fn heat_exact(t: f64, x: f64) -> f64 {
    (-PI * PI * t / 4.0).exp() * (PI * x).sin()
}

/// `u_t − ¼ u_xx` with the point `(t, x)`.
struct Heat;

impl Residual for Heat {
    fn residual<D: DualNum<Primitive = f64> + Copy>(&self, _: &Point<'_>, u: &Fields<'_, D>) -> D {
        u.dx(0, 0) - u.dxx(0, 1, 1) * 0.25
    }
}

/// `u(0, x) − sin πx`.
struct HeatInitial;

impl Residual for HeatInitial {
    fn residual<D: DualNum<Primitive = f64> + Copy>(&self, p: &Point<'_>, u: &Fields<'_, D>) -> D {
        u.u(0) - (PI * p.x[1]).sin()
    }
}

/// `u_t − ¼u_xx = 0` on `(t, x) ∈ [0, 1]²`, `u(0, x) = sin πx`, `u(t, 0) = u(t, 1) = 0`;
/// exact `e^{−π²t/4} sin πx`. Interior: the `side × side` cell centres; `side` points on
/// each of `t = 0`, `x = 0`, `x = 1` (cell centres of the edge); every term weight 1; a
/// tanh network `2-hidden-1`; relative L² error on the 100×100 cell centres. Channels:
/// `u, u_t, u_x, u_xx` inside (no `u_tt`, no mixed entry), the value on the boundary.
pub fn heat_1d(side: usize, hidden: &[usize]) -> Result<PinnCase> {
    let net = TaylorMlp::new(widths(2, hidden))?;
    let edge = |fixed: usize, value: f64| {
        Mat::from_fn(2, side, |k, j| {
            if k == fixed {
                value
            } else {
                (j as f64 + 0.5) / side as f64
            }
        })
    };
    let heat = ChannelSet::value(2)
        .with_partial(0)?
        .with_second(SecondOrder::Entry(1, 1))?;
    let value = ChannelSet::value(2);
    let model = PdeModel::new(
        net,
        vec![
            Term::new("interior", cell_grid(side).as_ref(), heat, Heat),
            Term::new("initial", edge(0, 0.0).as_ref(), value.clone(), HeatInitial),
            Term::new("x = 0", edge(1, 0.0).as_ref(), value.clone(), Dirichlet),
            Term::new("x = 1", edge(1, 1.0).as_ref(), value, Dirichlet),
        ],
    )?;
    PinnCase::build(
        format!("heat_1d({side}×{side} interior)"),
        model,
        cell_grid(100),
        |p| heat_exact(p[0], p[1]),
    )
}

/// `−Δu + u³ − f` with `f = 2π² u* + u*³`, `u* = sin πx sin πy`.
struct Cubic;

impl Residual for Cubic {
    fn residual<D: DualNum<Primitive = f64> + Copy>(&self, p: &Point<'_>, u: &Fields<'_, D>) -> D {
        let s = super::poisson_exact(p.x[0], p.x[1]);
        -u.laplacian(0) + u.u(0).powi(3) - (2.0 * PI * PI * s + s * s * s)
    }
}

/// The nonlinear equation `−Δu + u³ = f` on the unit square with the manufactured
/// solution `u = sin πx sin πy` (`f = 2π²u + u³`), `u = 0` on the boundary; points and
/// grid as [`super::poisson_2d`].
pub fn nonlinear_2d(side: usize, n_boundary: usize, hidden: &[usize]) -> Result<PinnCase> {
    let (boundary, _) = perimeter(n_boundary);
    let dirichlet = Term::new(
        "boundary",
        boundary.as_ref(),
        ChannelSet::value(2),
        Dirichlet,
    );
    let pde = OnUnitSquare {
        name: "nonlinear_2d",
        interior: Cubic,
        boundary: dirichlet,
        exact: |p: &[f64]| super::poisson_exact(p[0], p[1]),
    };
    unit_square(pde, side, hidden)
}

/// Exact solution of the Neumann problem, `u = cos πx cos πy`.
pub fn neumann_exact(x: f64, y: f64) -> f64 {
    (PI * x).cos() * (PI * y).cos()
}

/// `−Δu + u − (2π² + 1) cos πx cos πy`.
struct Helmholtz;

impl Residual for Helmholtz {
    fn residual<D: DualNum<Primitive = f64> + Copy>(&self, p: &Point<'_>, u: &Fields<'_, D>) -> D {
        -u.laplacian(0) + u.u(0) - (2.0 * PI * PI + 1.0) * neumann_exact(p.x[0], p.x[1])
    }
}

/// `∂u/∂n` with the point's outward normal.
struct Flux;

impl Residual for Flux {
    fn residual<D: DualNum<Primitive = f64> + Copy>(&self, _: &Point<'_>, u: &Fields<'_, D>) -> D {
        u.dn(0)
    }
}

/// `−Δu + u = (2π² + 1) cos πx cos πy` on the unit square with `∂u/∂n = 0` on the
/// boundary (normals per point); exact `cos πx cos πy`; points and grid as
/// [`super::poisson_2d`].
pub fn neumann_2d(side: usize, n_boundary: usize, hidden: &[usize]) -> Result<PinnCase> {
    let (boundary, normals) = perimeter(n_boundary);
    let flux = Term::new(
        "flux",
        boundary.as_ref(),
        ChannelSet::value(2).with_gradient(),
        Flux,
    )
    .with_normals(normals.as_ref());
    let pde = OnUnitSquare {
        name: "neumann_2d",
        interior: Helmholtz,
        boundary: flux,
        exact: |p: &[f64]| neumann_exact(p[0], p[1]),
    };
    unit_square(pde, side, hidden)
}
