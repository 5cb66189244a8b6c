//! Energy (Deep Ritz) losses: a user-written pointwise energy density over dual numbers,
//! and one quadrature term `Σ_i w_i e(x_i, u, ∇u, …)` of the energy.

use super::residual::{Channels, Fields, Point};
use super::term::{check_data, check_shape};
use crate::error::{check_finite, check_finite_mat, check_len, Error, Result};
use crate::model::taylor::ChannelSet;
use faer::{Mat, MatRef};
use num_dual::{DualNum, HyperDual64};
use std::sync::Arc;

/// A pointwise energy density `e(x, u, ∇u, chosen second derivatives)`, written once over
/// any dual scalar `D`: the library evaluates it on `f64` for the energy and on
/// hyper-dual numbers for its gradient and Hessian with respect to the channels
/// (docs/pinn.md, *Energy losses*). Energy natural gradient uses that Hessian as the
/// metric, so it must be positive semidefinite wherever the run goes (convex in the
/// channels): `½|∇u|² − f u` and `½|∇u|² + ¼u⁴ − f u` are, a double well is not.
///
/// ```
/// use natgrad::pde::{DualNum, EnergyDensity, Fields, Point};
/// /// e = ½u'² + ¼u⁴ − f u with f from x.
/// struct Ritz;
/// impl EnergyDensity for Ritz {
///     fn density<D: DualNum<Primitive = f64> + Copy>(&self, p: &Point, u: &Fields<D>) -> D {
///         let f = (std::f64::consts::PI * p.x[0]).cos();
///         u.dx(0, 0).powi(2) * 0.5 + u.u(0).powi(4) * 0.25 - u.u(0) * f
///     }
/// }
/// ```
pub trait EnergyDensity: Send + Sync {
    /// The density at point `p` from the channels `u`.
    fn density<D: DualNum<Primitive = f64> + Copy>(&self, p: &Point<'_>, u: &Fields<'_, D>) -> D;
}

/// The object-safe face of an [`EnergyDensity`].
pub(crate) trait ErasedDensity: Send + Sync {
    fn value(&self, p: &Point<'_>, u: &Fields<'_, f64>) -> f64;
    fn hyper(&self, p: &Point<'_>, u: &Fields<'_, HyperDual64>) -> HyperDual64;
}

impl<E: EnergyDensity> ErasedDensity for E {
    fn value(&self, p: &Point<'_>, u: &Fields<'_, f64>) -> f64 {
        self.density(p, u)
    }
    fn hyper(&self, p: &Point<'_>, u: &Fields<'_, HyperDual64>) -> HyperDual64 {
        self.density(p, u)
    }
}

/// The density `e`, its gradient and its Hessian (row-major `K × K`) with respect to the
/// `K` channels at one point, by `K(K+1)/2` hyper-dual evaluations (seed channel `a` in
/// `ε₁` and `b` in `ε₂`: the `ε₁ε₂` part is `∂²e/∂c_a∂c_b`, the `ε₁` part of the
/// diagonal evaluations is `∂e/∂c_a`). `Err` names a channel read but not requested.
pub(crate) fn density_derivatives(
    e: &dyn ErasedDensity,
    p: &Point<'_>,
    channels: Channels<'_>,
    grad: &mut [f64],
    hess: &mut [f64],
) -> std::result::Result<f64, String> {
    let Channels {
        values: channels,
        q,
        set,
    } = channels;
    let k = channels.len();
    let mut seeds: Vec<HyperDual64> = channels.iter().map(|&c| HyperDual64::from(c)).collect();
    let mut value = f64::NAN;
    for a in 0..k {
        seeds[a].eps1 = 1.0;
        for b in a..k {
            seeds[b].eps2 = 1.0;
            let fields = Fields::new(&seeds, q, set, &[]);
            let v = e.hyper(p, &fields);
            if let Some(missing) = fields.take_missing() {
                return Err(missing);
            }
            seeds[b].eps2 = 0.0;
            hess[a * k + b] = v.eps1eps2;
            hess[b * k + a] = v.eps1eps2;
            if a == b {
                grad[a] = v.eps1;
                value = v.re;
            }
        }
        seeds[a].eps1 = 0.0;
    }
    Ok(value)
}

/// The energy density at a point on plain numbers; `Err` names a channel read but not
/// requested.
pub(crate) fn density_value(
    e: &dyn ErasedDensity,
    p: &Point<'_>,
    channels: &[f64],
    (q, set): (usize, &ChannelSet),
) -> std::result::Result<f64, String> {
    let fields = Fields::new(channels, q, set, &[]);
    let v = e.value(p, &fields);
    fields.take_missing().map_or(Ok(v), Err)
}

/// The density `e`, its channel gradient `∂e/∂c` and Hessian `∂²e/∂c∂c` (row-major
/// `K × K`, `K = q·|set|`, channel `c` of output `o` at `c·q + o`) at a point, as the
/// library computes them in every linearisation of a [`super::RitzModel`]. For checks of
/// a density against a hand derivation. Errors on a wrong number of channels or a
/// channel the density reads but `set` does not carry.
pub fn energy_derivatives<E: EnergyDensity>(
    density: &E,
    point: &Point<'_>,
    channels: &[f64],
    q: usize,
    set: &ChannelSet,
) -> Result<(f64, Vec<f64>, Vec<f64>)> {
    let k = q * set.len();
    check_len("energy_derivatives: channels", k, channels.len())?;
    let (mut grad, mut hess) = (vec![0.0; k], vec![0.0; k * k]);
    let at = Channels {
        values: channels,
        q,
        set,
    };
    density_derivatives(density, point, at, &mut grad, &mut hess)
        .map(|e| (e, grad, hess))
        .map_err(|missing| {
            Error::InvalidSetting(format!("the density reads {missing}, not in {set:?}"))
        })
}

/// One term `Σ_i w_i e(x_i, u, ∇u, …)` of an energy: quadrature points `x_i` and weights
/// `w_i ≥ 0`, the channels the density reads, the density, and optional data per point.
/// The interior energy is one term; a Dirichlet penalty `Σ_b w_b β/2 (u − g)²` is another
/// on the boundary points (with `g` as data).
#[derive(Clone)]
pub struct EnergyTerm {
    pub(crate) name: String,
    pub(crate) points: Mat<f64>,
    pub(crate) weights: Vec<f64>,
    pub(crate) set: ChannelSet,
    pub(crate) density: Arc<dyn ErasedDensity>,
    pub(crate) data: Option<Mat<f64>>,
}

impl std::fmt::Debug for EnergyTerm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnergyTerm")
            .field("name", &self.name)
            .field("points", &self.points.ncols())
            .field("channels", &self.set)
            .finish_non_exhaustive()
    }
}

impl EnergyTerm {
    /// A term named `name` (it appears in errors) with points `d × m` (a column per
    /// point), quadrature weights (length `m`, finite, `≥ 0`: e.g. `|Ω|/m` for a
    /// midpoint rule), the channels the density reads, and the density.
    pub fn new<E: EnergyDensity + 'static>(
        name: impl Into<String>,
        points: MatRef<'_, f64>,
        weights: Vec<f64>,
        channels: ChannelSet,
        density: E,
    ) -> Self {
        Self {
            name: name.into(),
            points: points.to_owned(),
            weights,
            set: channels,
            density: Arc::new(density),
            data: None,
        }
    }

    /// Data per point, `k × m` (boundary values, a source), read as [`Point::data`].
    #[must_use]
    pub fn with_data(mut self, data: MatRef<'_, f64>) -> Self {
        self.data = Some(data.to_owned());
        self
    }

    /// The term's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of quadrature points `m`.
    pub fn n_points(&self) -> usize {
        self.points.ncols()
    }

    /// Point `i` as the density sees it (no normal).
    pub(crate) fn point<'a>(&'a self, i: usize) -> Point<'a> {
        Point {
            x: self.points.col_as_slice(i),
            normal: &[],
            data: self.data.as_ref().map_or(&[], |d| d.col_as_slice(i)),
            index: i,
        }
    }

    /// Checks the term against a network with input dimension `d` and `q` outputs, and
    /// evaluates the density once to reject reads of channels the term did not request.
    pub(crate) fn validate(&self, d: usize, q: usize) -> Result<()> {
        let what = |s: &str| format!("energy term `{}`: {s}", self.name);
        let m = self.points.ncols();
        check_shape(&what, self.points.as_ref(), &self.set, d)?;
        check_len(&what("quadrature weights vs points"), m, self.weights.len())?;
        check_finite_mat(&what("points"), self.points.as_ref())?;
        check_finite(&what("quadrature weights"), &self.weights)?;
        if let Some(i) = self.weights.iter().position(|&w| w < 0.0) {
            return Err(Error::InvalidSetting(what(&format!(
                "quadrature weight {i} is negative ({})",
                self.weights[i]
            ))));
        }
        check_data(&what, self.data.as_ref(), m)?;
        let channels = vec![0.5; q * self.set.len()];
        density_value(&*self.density, &self.point(0), &channels, (q, &self.set)).map_err(
            |missing| {
                Error::InvalidSetting(what(&format!(
                    "the density reads {missing}, which the term's channels do not carry \
                     ({:?}); request it in the term's ChannelSet",
                    self.set
                )))
            },
        )?;
        Ok(())
    }
}
