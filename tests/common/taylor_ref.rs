//! A Taylor-mode reference written from the definitions: the network over any dual
//! number (num-dual), its channels in x by hyper-dual numbers, σ for every activation.

use natgrad::model::{ChannelSet, SecondOrder, Smooth, TaylorActivation, TaylorMlp};
use num_dual::{DualNum, HyperDual};
use std::sync::Arc;

/// The user's own activation: `σ(z) = z − z³/6`.
#[derive(Debug)]
pub struct Cubic;

impl TaylorActivation for Cubic {
    fn derivatives(&self, z: f64) -> [f64; 4] {
        [z - z * z * z / 6.0, 1.0 - z * z / 2.0, -z, -1.0]
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Act {
    Builtin(Smooth),
    Cubic,
}

impl Act {
    pub fn net(self, widths: Vec<usize>) -> TaylorMlp {
        let a: Arc<dyn TaylorActivation> = match self {
            Act::Builtin(s) => Arc::new(s),
            Act::Cubic => Arc::new(Cubic),
        };
        TaylorMlp::with_activation(widths, a).unwrap()
    }

    /// σ written from its definition over any dual number.
    pub fn apply<D: DualNum<Primitive = f64> + Copy>(self, z: D) -> D {
        match self {
            Act::Builtin(Smooth::Tanh) => z.tanh(),
            Act::Builtin(Smooth::Sin) => z.sin(),
            Act::Builtin(Smooth::Sigmoid) => (D::from(1.0) + (-z).exp()).recip(),
            Act::Builtin(Smooth::Softplus) => z.exp().ln_1p(),
            Act::Cubic => z - z * z * z / 6.0,
        }
    }
}

/// The network `R^d → R^q` written plainly over any dual scalar (layout of `TaylorMlp`).
pub fn reference<D: DualNum<Primitive = f64> + Copy>(
    widths: &[usize],
    act: Act,
    theta: &[D],
    x: &[D],
) -> Vec<D> {
    let mut z = x.to_vec();
    let mut off = 0;
    let n_layers = widths.len() - 1;
    for l in 0..n_layers {
        let (ni, no) = (widths[l], widths[l + 1]);
        let (w, b) = (&theta[off..off + ni * no], &theta[off + ni * no..]);
        off += ni * no + no;
        z = (0..no)
            .map(|r| {
                let a = (0..ni).fold(b[r], |acc, c| acc + w[c * no + r] * z[c]);
                if l + 1 == n_layers {
                    a
                } else {
                    act.apply(a)
                }
            })
            .collect();
    }
    z
}

/// Every channel of `set` for every output at `x`, by hyper-dual numbers over a scalar
/// `T` (plain f64, or `Dual64` for a θ-derivative): `out[c·q + o]`.
pub fn channels_by_duals<T: DualNum<Primitive = f64> + Copy>(
    widths: &[usize],
    act: Act,
    theta: &[T],
    x: &[f64],
    set: &ChannelSet,
) -> Vec<T> {
    let q = *widths.last().unwrap();
    let th: Vec<HyperDual<T>> = theta.iter().map(|&t| HyperDual::from_re(t)).collect();
    let eval = |i: usize, j: usize| {
        let xs: Vec<HyperDual<T>> = x
            .iter()
            .enumerate()
            .map(|(k, &v)| {
                let mut h = HyperDual::from_re(T::from(v));
                if k == i {
                    h = h.derivative1();
                }
                if k == j {
                    h.eps2 = T::from(1.0);
                }
                h
            })
            .collect();
        reference(widths, act, &th, &xs)
    };
    let mut out = vec![T::from(0.0); set.len() * q];
    let d = x.len();
    for o in 0..q {
        out[o] = eval(d, d)[o].re;
        for &k in set.first() {
            out[set.partial_channel(k).unwrap() * q + o] = eval(k, d)[o].eps1;
        }
        for &s in set.second() {
            let v = match s {
                SecondOrder::Entry(i, j) => eval(i, j)[o].eps1eps2,
                SecondOrder::Laplacian => (0..d)
                    .map(|k| eval(k, k)[o].eps1eps2)
                    .fold(T::from(0.0), |a, b| a + b),
            };
            out[set.second_channel(s).unwrap() * q + o] = v;
        }
    }
    out
}
