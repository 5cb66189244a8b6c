//! Physics-informed learning for general PDEs: a residual written once over dual numbers,
//! a problem as a sum of terms, the Taylor-mode network's channels underneath.
//!
//! The user writes the pointwise residual `r(x, u, ∇u, chosen second derivatives)` of each
//! term generically over a dual scalar ([`Residual`], with `num-dual`'s [`DualNum`]); the
//! library evaluates it and its derivatives with respect to the channels at every point
//! of every linearisation and chains them with the network's channel Jacobian
//! ([`crate::model::taylor`]) — the user writes no derivative. A [`Term`] has its own
//! points, [`ChannelSet`], residual and weight (interior PDE, Dirichlet, Neumann/Robin
//! with normals per point, initial condition, data); a [`PdeModel`] is a network and a
//! list of terms, and its outputs are the weighted residuals `√(w/m) r(x_i)`, so that
//! `½‖R‖² = Σ_t w_t/(2m_t) Σ_i r_t(x_i)²` is the PINN loss and natural gradient with the
//! Euclidean metric is energy natural gradient. docs/pinn.md shows each kind of problem.
//!
//! ```
//! use faer::Mat;
//! use natgrad::model::{ChannelSet, SecondOrder, TaylorMlp};
//! use natgrad::pde::{DualNum, Fields, PdeModel, Point, Residual, Term};
//!
//! /// Heat equation u_t − ¼ u_xx = 0, x = (t, x).
//! struct Heat;
//! impl Residual for Heat {
//!     fn residual<D: DualNum<Primitive = f64> + Copy>(&self, _: &Point, u: &Fields<D>) -> D {
//!         u.dx(0, 0) - u.dxx(0, 1, 1) * 0.25
//!     }
//! }
//! /// u(0, x) = sin πx.
//! struct Initial;
//! impl Residual for Initial {
//!     fn residual<D: DualNum<Primitive = f64> + Copy>(&self, p: &Point, u: &Fields<D>) -> D {
//!         u.u(0) - (std::f64::consts::PI * p.x[1]).sin()
//!     }
//! }
//! let interior = Mat::from_fn(2, 100, |k, j| if k == 0 { (j / 10) as f64 / 10.0 } else { (j % 10) as f64 / 10.0 });
//! let initial = Mat::from_fn(2, 10, |k, j| if k == 0 { 0.0 } else { j as f64 / 10.0 });
//! let heat = ChannelSet::value(2).with_partial(0)?.with_second(SecondOrder::Entry(1, 1))?;
//! let model = PdeModel::new(
//!     TaylorMlp::new(vec![2, 16, 1])?,
//!     vec![
//!         Term::new("interior", interior.as_ref(), heat, Heat),
//!         Term::new("initial", initial.as_ref(), ChannelSet::value(2), Initial).with_weight(10.0),
//!     ],
//! )?;
//! # Ok::<(), natgrad::Error>(())
//! ```

mod energy;
mod model;
mod quadrature;
mod residual;
mod ritz;
mod term;

pub use crate::model::taylor::{ChannelSet, SecondOrder};
pub use energy::{energy_derivatives, EnergyDensity, EnergyTerm};
pub use model::{PdeLinearization, PdeModel};
pub use num_dual::{Dual64, DualNum, HyperDual64};
pub use quadrature::gauss_legendre_3;
pub use residual::{residual_gradient, Fields, Point, Residual};
pub use ritz::{RitzEnergy, RitzLinearization, RitzModel};
pub use term::Term;

/// The examples of docs/pinn.md, compiled and run as doctests so that they stay complete.
#[doc = include_str!("../../docs/pinn.md")]
#[cfg(doctest)]
pub struct PinnDocDoctests;
