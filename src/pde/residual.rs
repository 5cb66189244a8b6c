//! The user's pointwise residual, written once over a dual scalar, and what the library
//! reads from it: the value and its derivatives with respect to every channel.

use crate::model::taylor::{ChannelSet, SecondOrder};
use num_dual::{Dual64, DualNum};
use std::cell::RefCell;

/// A collocation point as the residual sees it.
#[derive(Debug, Clone, Copy)]
pub struct Point<'a> {
    /// The coordinates `x` (length `d`).
    pub x: &'a [f64],
    /// The outward unit normal at `x` (length `d`) for a term built with
    /// [`super::Term::with_normals`], else empty.
    pub normal: &'a [f64],
    /// The term's data at this point (a column of [`super::Term::with_data`]), else empty.
    pub data: &'a [f64],
    /// Index of the point in its term.
    pub index: usize,
}

/// The channels of every output of the network at one point, as dual numbers `D`: what a
/// residual reads. Reading a channel that the term did not request gives NaN and is
/// remembered, so that [`super::PdeModel::new`] can reject the term (and a later read
/// ends the linearisation with an error naming it).
#[derive(Debug)]
pub struct Fields<'a, D> {
    /// `values[c·q + o]`: channel `c` of output `o`.
    values: &'a [D],
    q: usize,
    set: &'a ChannelSet,
    normal: &'a [f64],
    missing: RefCell<Option<String>>,
}

impl<'a, D: DualNum<Primitive = f64> + Copy> Fields<'a, D> {
    pub(crate) fn new(values: &'a [D], q: usize, set: &'a ChannelSet, normal: &'a [f64]) -> Self {
        Self {
            values,
            q,
            set,
            normal,
            missing: RefCell::new(None),
        }
    }

    /// The first channel read but not requested, if any (and forgets it).
    pub(crate) fn take_missing(&self) -> Option<String> {
        self.missing.borrow_mut().take()
    }

    fn read(&self, o: usize, channel: Option<usize>, what: impl FnOnce() -> String) -> D {
        match channel {
            Some(c) if o < self.q => self.values[c * self.q + o],
            _ => {
                let mut missing = self.missing.borrow_mut();
                if missing.is_none() {
                    *missing = Some(what());
                }
                D::from(f64::NAN)
            }
        }
    }

    /// Number of outputs `q` of the network.
    pub fn n_outputs(&self) -> usize {
        self.q
    }

    /// The value `u_o(x)` of output `o`.
    pub fn u(&self, o: usize) -> D {
        self.read(o, Some(0), || format!("u_{o} (output {o} of {})", self.q))
    }

    /// The first partial `∂u_o/∂x_k`.
    pub fn dx(&self, o: usize, k: usize) -> D {
        self.read(o, self.set.partial_channel(k), || format!("∂u_{o}/∂x_{k}"))
    }

    /// The Hessian entry `∂²u_o/∂x_i∂x_j`.
    pub fn dxx(&self, o: usize, i: usize, j: usize) -> D {
        self.read(o, self.set.second_channel(SecondOrder::Entry(i, j)), || {
            format!("∂²u_{o}/∂x_{i}∂x_{j}")
        })
    }

    /// The Laplacian `Δu_o`: its own channel if requested, else the sum of the
    /// requested diagonal Hessian entries (all `d` of them must be there).
    pub fn laplacian(&self, o: usize) -> D {
        if let Some(c) = self.set.second_channel(SecondOrder::Laplacian) {
            return self.read(o, Some(c), String::new);
        }
        let d = self.set.input_dim();
        let diagonal: Option<Vec<usize>> = (0..d)
            .map(|k| self.set.second_channel(SecondOrder::Entry(k, k)))
            .collect();
        match diagonal {
            Some(chs) => chs.into_iter().fold(D::from(0.0), |acc, c| {
                acc + self.read(o, Some(c), String::new)
            }),
            None => self.read(o, None, || format!("Δu_{o}")),
        }
    }

    /// The normal derivative `n·∇u_o` with the point's normal (every first partial and a
    /// normal must be there).
    pub fn dn(&self, o: usize) -> D {
        if self.normal.len() != self.set.input_dim() {
            return self.read(o, None, || format!("n·∇u_{o} (the term has no normals)"));
        }
        self.normal
            .iter()
            .enumerate()
            .fold(D::from(0.0), |acc, (k, &nk)| acc + self.dx(o, k) * nk)
    }
}

/// A pointwise residual `r(x, u, ∇u, chosen second derivatives)`, written once over any
/// dual scalar `D`: the library evaluates it on `f64` for the value and on dual numbers
/// for its derivatives with respect to every channel (docs/pinn.md, *Posing a PDE*).
///
/// ```
/// use natgrad::pde::{DualNum, Fields, Point, Residual};
/// /// Viscous Burgers: u_t + u u_x − ν u_xx with x = (t, x).
/// struct Burgers { nu: f64 }
/// impl Residual for Burgers {
///     fn residual<D: DualNum<Primitive = f64> + Copy>(&self, _p: &Point, u: &Fields<D>) -> D {
///         u.dx(0, 0) + u.u(0) * u.dx(0, 1) - u.dxx(0, 1, 1) * self.nu
///     }
/// }
/// ```
pub trait Residual: Send + Sync {
    /// The residual at point `p` from the channels `u`.
    fn residual<D: DualNum<Primitive = f64> + Copy>(&self, p: &Point<'_>, u: &Fields<'_, D>) -> D;
}

/// The object-safe face of a [`Residual`]: its value and its channel gradient.
pub(crate) trait ErasedResidual: Send + Sync {
    /// `r` on plain numbers.
    fn value(&self, p: &Point<'_>, u: &Fields<'_, f64>) -> f64;
    /// `r` on dual numbers (one channel seeded per call).
    fn dual(&self, p: &Point<'_>, u: &Fields<'_, Dual64>) -> Dual64;
}

impl<R: Residual> ErasedResidual for R {
    fn value(&self, p: &Point<'_>, u: &Fields<'_, f64>) -> f64 {
        self.residual(p, u)
    }
    fn dual(&self, p: &Point<'_>, u: &Fields<'_, Dual64>) -> Dual64 {
        self.residual(p, u)
    }
}

/// The `K = q·C` channel values at one point: channel `c` of output `o` (`q` outputs, the
/// channels of `set`) at `values[c·q + o]`.
#[derive(Clone, Copy)]
pub(crate) struct Channels<'a> {
    pub(crate) values: &'a [f64],
    pub(crate) q: usize,
    pub(crate) set: &'a ChannelSet,
}

/// The residual and its gradient with respect to the `K = q·C` channels at one point, by
/// `K` forward-mode evaluations (one `Dual64` seed per channel: the residuals are cheap
/// and `K` is small, so this beats a vector dual's heap-allocated gradients). Writes
/// `∂r/∂channel` into `grad` and returns `r`, or the first channel read but not
/// requested.
pub(crate) fn value_and_gradient(
    r: &dyn ErasedResidual,
    p: &Point<'_>,
    channels: Channels<'_>,
    seeds: &mut [Dual64],
    grad: &mut [f64],
) -> Result<f64, String> {
    let Channels {
        values: channels,
        q,
        set,
    } = channels;
    for (s, &c) in seeds.iter_mut().zip(channels) {
        *s = Dual64::from(c);
    }
    let mut value = f64::NAN;
    for k in 0..channels.len() {
        seeds[k].eps = 1.0;
        let fields = Fields::new(seeds, q, set, p.normal);
        let v = r.dual(p, &fields);
        if let Some(missing) = fields.take_missing() {
            return Err(missing);
        }
        seeds[k].eps = 0.0;
        value = v.re;
        grad[k] = v.eps;
    }
    Ok(value)
}

/// Evaluates the residual on plain numbers; `Err` names a channel read but not requested.
pub(crate) fn value_only(
    r: &dyn ErasedResidual,
    p: &Point<'_>,
    channels: &[f64],
    q: usize,
    set: &ChannelSet,
) -> Result<f64, String> {
    let fields = Fields::new(channels, q, set, p.normal);
    let v = r.value(p, &fields);
    fields.take_missing().map_or(Ok(v), Err)
}

/// The residual `r` at a point and its gradient with respect to the channels
/// `channels[c·q + o]` (channel `c` of output `o` in `set`), as the library computes them
/// in every linearisation. For checks of a residual against a hand-derived Jacobian.
/// Errors naming a channel that the residual reads but `set` does not carry.
pub fn residual_gradient<R: Residual>(
    residual: &R,
    point: &Point<'_>,
    channels: &[f64],
    q: usize,
    set: &ChannelSet,
) -> crate::Result<(f64, Vec<f64>)> {
    crate::error::check_len("residual_gradient: channels", q * set.len(), channels.len())?;
    let mut seeds = vec![Dual64::from(0.0); channels.len()];
    let mut grad = vec![0.0; channels.len()];
    let at = Channels {
        values: channels,
        q,
        set,
    };
    value_and_gradient(residual, point, at, &mut seeds, &mut grad)
        .map(|r| (r, grad))
        .map_err(|missing| {
            crate::Error::InvalidSetting(format!("the residual reads {missing}, not in {set:?}"))
        })
}
