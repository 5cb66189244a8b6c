//! Activations for Taylor mode: σ with its first three derivatives.
//!
//! A second-order channel needs `σ''` in the forward pass and `σ'''` in its θ-derivative
//! (docs/pinn.md, *How the Jacobian is computed*), so an activation for [`super::TaylorMlp`]
//! is anything that gives `(σ, σ', σ'', σ''')` at a point: the built-in [`Smooth`] ones or
//! the user's own through [`TaylorActivation`].

use crate::model::activation::Activation;
use std::fmt::Debug;

/// A smooth activation with three derivatives, for Taylor-mode networks.
///
/// Implement [`TaylorActivation::derivatives`] for your own; override
/// [`TaylorActivation::derivatives_slice`] only if a batched evaluation is faster.
pub trait TaylorActivation: Debug + Send + Sync {
    /// `[σ(z), σ'(z), σ''(z), σ'''(z)]`.
    fn derivatives(&self, z: f64) -> [f64; 4];

    /// Elementwise over a slice: `out[k][u]` is the `k`-th derivative at `z[u]` (every
    /// slice has the length of `z`). The default calls [`TaylorActivation::derivatives`].
    fn derivatives_slice(&self, z: &[f64], out: [&mut [f64]; 4]) {
        let [s0, s1, s2, s3] = out;
        for (u, &zu) in z.iter().enumerate() {
            [s0[u], s1[u], s2[u], s3[u]] = self.derivatives(zu);
        }
    }
}

/// The built-in smooth activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Smooth {
    /// `tanh z`: `σ' = 1 − t²`, `σ'' = −2tσ'`, `σ''' = σ'(4t² − 2σ')`.
    Tanh,
    /// `sin z`: `cos z`, `−sin z`, `−cos z`.
    Sin,
    /// `s = 1/(1 + e^{−z})`: `σ' = s(1 − s)`, `σ'' = σ'(1 − 2s)`, `σ''' = σ'(1 − 2s)² − 2σ'²`.
    Sigmoid,
    /// `ln(1 + e^z)` (stable form `max(z, 0) + ln(1 + e^{−|z|})`): its derivatives are the
    /// sigmoid and the sigmoid's first two derivatives.
    Softplus,
}

impl Smooth {
    /// Every built-in activation.
    pub const ALL: [Smooth; 4] = [Smooth::Tanh, Smooth::Sin, Smooth::Sigmoid, Smooth::Softplus];
}

/// `[s, s', s'', s''']` of the logistic sigmoid.
fn sigmoid_derivatives(z: f64) -> [f64; 4] {
    let s = Activation::Sigmoid.value(z);
    let d1 = s * (1.0 - s);
    let c = 1.0 - 2.0 * s;
    [s, d1, d1 * c, d1 * c * c - 2.0 * d1 * d1]
}

impl TaylorActivation for Smooth {
    fn derivatives(&self, z: f64) -> [f64; 4] {
        match self {
            Smooth::Tanh => {
                let (t, d1) = Activation::Tanh.value_and_derivative(z);
                [t, d1, -2.0 * t * d1, d1 * (4.0 * t * t - 2.0 * d1)]
            }
            Smooth::Sin => {
                let (s, c) = z.sin_cos();
                [s, c, -s, -c]
            }
            Smooth::Sigmoid => sigmoid_derivatives(z),
            Smooth::Softplus => {
                let [s, d1, d2, _] = sigmoid_derivatives(z);
                [Activation::Softplus.value(z), s, d1, d2]
            }
        }
    }

    /// tanh: σ and σ' by the crate's vectorised kernel, σ'' and σ''' from them.
    fn derivatives_slice(&self, z: &[f64], out: [&mut [f64]; 4]) {
        let [s0, s1, s2, s3] = out;
        if *self != Smooth::Tanh {
            for (u, &zu) in z.iter().enumerate() {
                [s0[u], s1[u], s2[u], s3[u]] = self.derivatives(zu);
            }
            return;
        }
        s0.copy_from_slice(z);
        Activation::Tanh.value_and_derivative_slice(s0, s1);
        for u in 0..z.len() {
            let (t, d1) = (s0[u], s1[u]);
            s2[u] = -2.0 * t * d1;
            s3[u] = d1 * (4.0 * t * t - 2.0 * d1);
        }
    }
}
