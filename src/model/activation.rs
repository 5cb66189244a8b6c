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
//!
//! # tanh on the fast path
//!
//! [`Activation::value_and_derivative`] and the slice versions
//! ([`Activation::value_and_derivative_slice`], [`Activation::value_slice`]) evaluate tanh
//! by [`tanh_and_sech2`], a branch-free kernel that vectorises (AVX-512 or AVX2+FMA, chosen
//! at run time, with the same fused operations on every path so the bits never depend on
//! the machine's vector width): with `a = |z|` and `e = e^{2a}`,
//!
//! * `a < 0.55`: `e − 1` by its Taylor series to degree 19 (all terms positive, so no
//!   cancellation), `tanh a = (e − 1)/(e + 1)`;
//! * otherwise `e = 2^k e^r` (`|r| ≤ ln 2 / 2`, Taylor to degree 13), `tanh a = 1 − 2/(e + 1)`;
//! * `sech² a = 4 e/(e + 1)²` in both cases (relative accuracy also where `1 − tanh²`
//!   would cancel).
//!
//! Both are within a few ulp of the correctly rounded values (`tests` below check
//! ≤ 5·10⁻¹⁶ and 8·10⁻¹⁶ relative against libm's `tanh` and `exp`, their own rounding included). [`Scalar::tanh`] on `f64`
//! stays libm's `tanh`, for the reference and Taylor-mode paths.

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
            Activation::Tanh => tanh_and_sech2(z),
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

    /// `z ← σ(z)` and `d ← σ'(z)` elementwise (`d.len() == z.len()`); tanh vectorised.
    pub fn value_and_derivative_slice(self, z: &mut [f64], d: &mut [f64]) {
        assert_eq!(z.len(), d.len(), "natgrad: activation slice lengths");
        match self {
            Activation::Tanh => simd::tanh_slice(z, Some(d)),
            _ => z.iter_mut().zip(d).for_each(|(z, d)| {
                (*z, *d) = self.value_and_derivative(*z);
            }),
        }
    }

    /// `z ← σ(z)` elementwise (a forward pass that needs no derivative); tanh vectorised.
    pub fn value_slice(self, z: &mut [f64]) {
        match self {
            Activation::Identity => {}
            Activation::Tanh => simd::tanh_slice(z, None),
            _ => z.iter_mut().for_each(|z| *z = self.value(*z)),
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

/// `(tanh z, sech² z = 1 − tanh² z)` by the branch-free kernel of the
/// [module docs](self#tanh-on-the-fast-path): a few ulp from the correctly rounded values,
/// `sech²` accurate relatively even where `1 − tanh²` cancels; NaN gives NaN.
#[inline(always)]
pub fn tanh_and_sech2(z: f64) -> (f64, f64) {
    const INV_FACT: [f64; 20] = {
        let mut c = [1.0; 20];
        let mut k = 1;
        while k < 20 {
            c[k] = c[k - 1] / k as f64;
            k += 1;
        }
        c
    };
    const SHIFT: f64 = 6_755_399_441_055_744.0; // 1.5 · 2^52: adding it rounds to an integer
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    // fdlibm's split of ln 2: `LN2_HI` has 20 trailing zero bits, so `k·LN2_HI` is exact.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    let a = z.abs();
    // Small |z|: e − 1 = Σ_{k≥1} y^k / k!, y = 2a ≤ 1.1 (first omitted term < 2e-18).
    let y = 2.0 * a;
    let mut em = INV_FACT[19];
    for c in INV_FACT[1..19].iter().rev() {
        em = em.mul_add(y, *c);
    }
    em *= y;
    // Large |z|: e = 2^k e^r, y clamped to 700 (tanh = 1 to the last bit long before).
    let yc = y.min(700.0);
    let kf = yc.mul_add(LOG2E, SHIFT);
    let k_bits = kf.to_bits().wrapping_sub(SHIFT.to_bits());
    let k = kf - SHIFT;
    let r = (-k).mul_add(LN2_LO, (-k).mul_add(LN2_HI, yc));
    let mut er = INV_FACT[13];
    for c in INV_FACT[..13].iter().rev() {
        er = er.mul_add(r, *c);
    }
    let scale = f64::from_bits(k_bits.wrapping_add(1023) << 52);
    let big = a >= 0.55;
    let e = if big { er * scale } else { em + 1.0 };
    let den = if big { e + 1.0 } else { em + 2.0 };
    let inv = 1.0 / den;
    let t = if big {
        (-2.0f64).mul_add(inv, 1.0)
    } else {
        em * inv
    };
    let sech2 = 4.0 * (e * inv) * inv;
    (t.copysign(z), sech2)
}

/// Slice loops over [`tanh_and_sech2`] compiled for AVX-512 and AVX2+FMA, chosen at run
/// time (the kernel uses only exactly rounded operations and explicit `mul_add`, so every
/// path gives the same bits).
mod simd {
    use super::tanh_and_sech2;

    #[inline(always)]
    fn body(z: &mut [f64], d: Option<&mut [f64]>) {
        match d {
            Some(d) => z.iter_mut().zip(d).for_each(|(z, d)| {
                (*z, *d) = tanh_and_sech2(*z);
            }),
            None => z.iter_mut().for_each(|z| *z = tanh_and_sech2(*z).0),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn body_avx512(z: &mut [f64], d: Option<&mut [f64]>) {
        body(z, d)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn body_avx2(z: &mut [f64], d: Option<&mut [f64]>) {
        body(z, d)
    }

    /// `z ← tanh z` and, if given, `d ← sech² z`.
    pub(super) fn tanh_slice(z: &mut [f64], d: Option<&mut [f64]>) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU supports the features `body_avx512` is compiled with.
                return unsafe { body_avx512(z, d) };
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU supports the features `body_avx2` is compiled with.
                return unsafe { body_avx2(z, d) };
            }
        }
        body(z, d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Arguments from 1e-300 to 400, both signs, dense around the branch point 0.55.
    fn grid() -> Vec<f64> {
        let mut v: Vec<f64> = (0..20_000)
            .map(|i| 10f64.powf(-12.0 + 14.6 * i as f64 / 20_000.0))
            .collect();
        v.extend((0..2000).map(|i| 0.54 + 0.02 * i as f64 / 2000.0));
        v.extend([0.0, 1e-300, 0.55, 19.0, 19.5, 350.0, 400.0, f64::MAX]);
        let neg: Vec<f64> = v.iter().map(|x| -x).collect();
        v.extend(neg);
        v
    }

    #[test]
    fn fast_tanh_is_within_a_few_ulp_of_libm() {
        for z in grid() {
            let (t, _) = tanh_and_sech2(z);
            let want = z.tanh();
            let err = (t - want).abs();
            assert!(err <= 5e-16 * want.abs(), "tanh({z:e}) = {t:e} vs {want:e}");
            assert_eq!(t.is_sign_negative(), z.is_sign_negative());
        }
        assert!(tanh_and_sech2(f64::NAN).0.is_nan());
    }

    #[test]
    fn fast_sech2_is_relatively_accurate() {
        for z in grid().into_iter().filter(|z| z.abs() < 300.0) {
            let (_, s) = tanh_and_sech2(z);
            // 1 − tanh² where it does not cancel, 4e^{−2a}/(1 + e^{−2a})² beyond.
            let e = (-2.0 * z.abs()).exp();
            let want = match z.abs() < 0.5 {
                true => 1.0 - z.tanh().powi(2),
                false => 4.0 * e / ((1.0 + e) * (1.0 + e)),
            };
            assert!(
                (s - want).abs() <= 8e-16 * want,
                "sech²({z:e}) = {s:e} vs {want:e}"
            );
        }
    }

    #[test]
    fn slice_kernels_match_the_scalar_kernel_bitwise() {
        let mut z = grid();
        let zs = z.clone();
        let mut d = vec![0.0; z.len()];
        Activation::Tanh.value_and_derivative_slice(&mut z, &mut d);
        let mut v = zs.clone();
        Activation::Tanh.value_slice(&mut v);
        for ((z0, z1), (d1, v1)) in zs.iter().zip(&z).zip(d.iter().zip(&v)) {
            let (t, s) = tanh_and_sech2(*z0);
            assert_eq!(t.to_bits(), z1.to_bits());
            assert_eq!(t.to_bits(), v1.to_bits());
            assert_eq!(s.to_bits(), d1.to_bits());
        }
    }
}
