//! What a path is handed: the right-hand side as the caller gives it ([`Rhs`]), the system
//! with its unknown ([`Direction`], and [`System`] in one space), and what every path of one
//! solve shares ([`SolveCtx`]).

use super::SolveCache;
use crate::gram::Space;
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::LinearizedProblem;
use faer::Par;

/// The right-hand side `b` of `(G + λI) d = b`.
///
/// Every step rule of docs/math.md §3 has a right-hand side of the form `b = Jᵀ r` for an
/// output-space vector `r` (a cotangent): `r = ∇_y ℓ` for plain natural gradient,
/// `r = β M J_{k−1}δ_{k−1} − α ∇_y ℓ` for transported heavy ball, and so on. Passing `r`
/// rather than `b` lets sample-space solvers (which need `r`) and parameter-space solvers
/// (which need `Jᵀ r`, one vjp) share one interface.
#[derive(Debug, Clone, Copy)]
pub enum Rhs<'a> {
    /// `b = Jᵀ r` with `r ∈ Rⁿ`; `jt_r` is `Jᵀ r` when the caller already has it (saves
    /// a vjp).
    Cotangent {
        /// The output-space vector `r`.
        r: &'a [f64],
        /// `Jᵀ r`, if already computed.
        jt_r: Option<&'a [f64]>,
    },
    /// `b ∈ Rᵖ` given directly (parameter-space solvers only).
    Params(&'a [f64]),
}

/// What every path of one solve shares: the damping λ, the cache kept between solves and
/// the thread setting of the dense parts.
pub(crate) struct SolveCtx<'c> {
    pub(crate) damping: f64,
    pub(crate) cache: &'c mut SolveCache,
    pub(crate) par: Par,
}

/// The direction's system as the solver is asked it: `(G + λI) x = b` with `b` given by
/// `rhs`; `x` holds the initial guess on entry (used when warm starting), the solution on
/// exit (length `p`).
pub(crate) struct Direction<'d> {
    pub(crate) rhs: Rhs<'d>,
    pub(crate) x: &'d mut [f64],
}

impl Direction<'_> {
    /// The same system, borrowed again (a path that tries twice).
    pub(crate) fn rb(&mut self) -> Direction<'_> {
        Direction {
            rhs: self.rhs,
            x: &mut *self.x,
        }
    }
}

impl<'a> Rhs<'a> {
    /// The vector the caller gave: `r` or `b`.
    pub(crate) fn given(self) -> &'a [f64] {
        match self {
            Rhs::Cotangent { r, .. } => r,
            Rhs::Params(b) => b,
        }
    }

    /// The parameter-space right-hand side `b`: given, or `Jᵀ r` (one vjp) when only the
    /// cotangent `r` is.
    pub(crate) fn param_rhs<Mo: Model, Lo: Loss, Me: Metric>(
        self,
        lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
    ) -> std::borrow::Cow<'a, [f64]> {
        match self {
            Rhs::Params(b) | Rhs::Cotangent { jt_r: Some(b), .. } => b.into(),
            Rhs::Cotangent { r, jt_r: None } => {
                let mut jtr = vec![0.0; lin.problem().n_params()];
                lin.vjp(r, &mut jtr);
                jtr.into()
            }
        }
    }
}

/// One system of a path, `(G + λI) x = rhs` with the Gram operator of `space` (`p×p` in
/// parameter space, `n×n` in sample space); `x` holds the initial guess on entry.
pub(crate) struct System<'s> {
    pub(crate) space: Space,
    pub(crate) rhs: &'s [f64],
    pub(crate) x: &'s mut [f64],
}

impl System<'_> {
    /// The same system, borrowed again.
    pub(crate) fn rb(&mut self) -> System<'_> {
        System {
            space: self.space,
            rhs: self.rhs,
            x: &mut *self.x,
        }
    }
}
