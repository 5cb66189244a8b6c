//! Pointwise activation functions σ and their derivatives, shared by the network models.
//!
//! Each [`Activation`] is evaluated two ways:
//!
//! * [`Activation::value_and_derivative`] on `f64`, the fast path of the batched models
//!   (one call gives `σ(z)` and `σ'(z)`, so a forward pass caches both);
//! * [`Activation::apply`] on any [`Scalar`] (`f64` or `Complex64`), the reference path that
//!   derivative checks run through the complex step `Im σ(z + ih)/h = σ'(z)`.
//!
//! tanh, sigmoid and softplus are analytic, so the complex step is exact to rounding;
//! relu is analytic away from its kink at 0, where its derivative is taken as 0.

use num_complex::Complex64;
use std::ops::{Add, Mul, Neg, Sub};

/// A pointwise activation function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Activation {
    /// `tanh z`; derivative `1 − tanh² z`.
    Tanh,
    /// `1 / (1 + e^{−z})`; derivative `σ(1 − σ)`.
    Sigmoid,
    /// `ln(1 + e^z)`, evaluated as `max(z, 0) + ln(1 + e^{−|z|})`; derivative the sigmoid.
    Softplus,
    /// `max(z, 0)`; derivative `1` for `z > 0`, else `0`.
    Relu,
    /// `z`; derivative `1` (the usual output layer).
    Identity,
}

/// The scalars an activation can be evaluated on: `f64`, and `Complex64` for the complex
/// step. Only what the activations need.
pub trait Scalar:
    Copy
    + Send
    + Sync
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Neg<Output = Self>
    + std::fmt::Debug
{
    /// The real number `x` as this scalar.
    fn from_f64(x: f64) -> Self;
    /// The real part (decides the branch of relu and of the stable softplus).
    fn re(self) -> f64;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// Exponential.
    fn exp(self) -> Self;
    /// `ln(1 + self)`.
    fn ln_1p(self) -> Self;
    /// `1 / self`.
    fn recip(self) -> Self;
}

impl Scalar for f64 {
    fn from_f64(x: f64) -> Self {
        x
    }
    fn re(self) -> f64 {
        self
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn ln_1p(self) -> Self {
        f64::ln_1p(self)
    }
    fn recip(self) -> Self {
        f64::recip(self)
    }
}

impl Scalar for Complex64 {
    fn from_f64(x: f64) -> Self {
        Complex64::new(x, 0.0)
    }
    fn re(self) -> f64 {
        self.re
    }
    fn tanh(self) -> Self {
        Complex64::tanh(self)
    }
    fn exp(self) -> Self {
        Complex64::exp(self)
    }
    fn ln_1p(self) -> Self {
        (self + 1.0).ln()
    }
    fn recip(self) -> Self {
        self.inv()
    }
}

impl Activation {
    /// Every activation, for tests and sweeps.
    pub const ALL: [Activation; 5] = [
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Softplus,
        Activation::Relu,
        Activation::Identity,
    ];

    /// `σ(z)` on any [`Scalar`] (the reference and complex-step path).
    pub fn apply<T: Scalar>(self, z: T) -> T {
        let one = T::from_f64(1.0);
        match self {
            Activation::Tanh => z.tanh(),
            Activation::Sigmoid => (one + (-z).exp()).recip(),
            Activation::Softplus if z.re() > 0.0 => z + (-z).exp().ln_1p(),
            Activation::Softplus => z.exp().ln_1p(),
            Activation::Relu if z.re() > 0.0 => z,
            Activation::Relu => T::from_f64(0.0),
            Activation::Identity => z,
        }
    }

    /// `(σ(z), σ'(z))` in one evaluation.
    #[inline]
    pub fn value_and_derivative(self, z: f64) -> (f64, f64) {
        match self {
            Activation::Tanh => {
                let a = z.tanh();
                (a, 1.0 - a * a)
            }
            Activation::Sigmoid => {
                let a = sigmoid(z);
                (a, a * (1.0 - a))
            }
            Activation::Softplus => (z.max(0.0) + (-z.abs()).exp().ln_1p(), sigmoid(z)),
            Activation::Relu if z > 0.0 => (z, 1.0),
            Activation::Relu => (0.0, 0.0),
            Activation::Identity => (z, 1.0),
        }
    }

    /// `σ(z)` on `f64` (forward passes that need no derivative).
    #[inline]
    pub fn value(self, z: f64) -> f64 {
        match self {
            Activation::Identity => z,
            Activation::Relu => z.max(0.0),
            _ => self.value_and_derivative(z).0,
        }
    }

    /// Whether `σ' ≡ 1`, so that the derivative multiply can be skipped.
    pub fn is_identity(self) -> bool {
        self == Activation::Identity
    }
}

/// The logistic sigmoid, stable for large `|z|`.
fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}
