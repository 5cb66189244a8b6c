//! Certified nonlinear least-squares problems of NIST's Statistical Reference Datasets
//! (StRD, <https://www.itl.nist.gov/div898/strd/nls/nls_main.shtml>): data, the two
//! starting points NIST publishes, and the certified minimiser and residual sum of
//! squares (SSE). They test a Gauss–Newton / Levenberg–Marquardt run as a user of MINPACK
//! would: does it reach the certified values, and does it stop by itself once there?
//!
//! Each problem is `min_θ ½ Σ_i (f(x_i; θ) − y_i)²`: a [`ClosureModel`] with the
//! analytic Jacobian, [`SquaredError`] in the [`Euclidean`] metric, so that the loss is
//! `SSE / 2` and the natural gradient is the Gauss–Newton step.

use crate::loss::SquaredError;
use crate::metric::Euclidean;
use crate::model::ClosureModel;
use crate::problem::FitProblem;
use faer::MatMut;

/// The value closure of a certified problem's model.
pub type ValueFn = Box<dyn Fn(&[f64], &mut [f64]) + Send + Sync>;
/// The Jacobian closure of a certified problem's model.
pub type JacobianFn = Box<dyn Fn(&[f64], MatMut<'_, f64>) + Send + Sync>;
/// A certified problem as a natgrad [`FitProblem`]: loss `SSE / 2`, Gauss–Newton metric.
pub type NistProblem =
    FitProblem<ClosureModel<ValueFn, JacobianFn>, SquaredError<Euclidean>, Euclidean>;

/// One StRD problem: the model `f(x; θ)` with its gradient in θ, the data and the
/// certified values (to the 10–11 digits NIST prints).
#[derive(Debug, Clone, Copy)]
pub struct Certified {
    /// NIST's name.
    pub name: &'static str,
    /// NIST's level of difficulty ("lower", "average", "higher").
    pub difficulty: &'static str,
    /// Predictor values `x_i`.
    pub x: &'static [f64],
    /// Responses `y_i`.
    pub y: &'static [f64],
    /// NIST's two starting points ("Start 1", far; "Start 2", near).
    pub starts: [&'static [f64]; 2],
    /// The certified minimiser.
    pub params: &'static [f64],
    /// The certified residual sum of squares `Σ (f(x_i; θ*) − y_i)²`.
    pub sse: f64,
    /// `f(x; θ)`.
    pub f: fn(&[f64], f64) -> f64,
    /// `∇_θ f(x; θ)` into `out` (length p).
    pub grad: fn(&[f64], f64, &mut [f64]),
}

impl Certified {
    /// Number of parameters p.
    pub fn n_params(&self) -> usize {
        self.params.len()
    }

    /// Digits to which θ agrees with the certified minimiser: NIST's log relative error
    /// `−log₁₀(|θ_k − θ*_k| / |θ*_k|)`, the smallest over the parameters (17 if exact).
    pub fn digits(&self, theta: &[f64]) -> f64 {
        theta
            .iter()
            .zip(self.params)
            .map(|(t, p)| -(((t - p) / p).abs().max(1e-17)).log10())
            .fold(f64::INFINITY, f64::min)
    }

    /// `Σ (f(x_i; θ) − y_i)²`.
    pub fn sse_at(&self, theta: &[f64]) -> f64 {
        self.x
            .iter()
            .zip(self.y)
            .map(|(&x, &y)| ((self.f)(theta, x) - y).powi(2))
            .sum()
    }

    /// The problem `min ½ Σ (f(x_i; θ) − y_i)²` (loss = SSE / 2).
    pub fn problem(&self) -> NistProblem {
        let (f, grad, xs, p) = (self.f, self.grad, self.x, self.n_params());
        let value: ValueFn = Box::new(move |t: &[f64], y: &mut [f64]| {
            y.iter_mut().zip(xs).for_each(|(y, &x)| *y = f(t, x));
        });
        let jacobian: JacobianFn = Box::new(move |t: &[f64], mut j: MatMut<'_, f64>| {
            let mut row = vec![0.0; p];
            for (i, &x) in xs.iter().enumerate() {
                grad(t, x, &mut row);
                row.iter().enumerate().for_each(|(k, &v)| j[(i, k)] = v);
            }
        });
        let model = ClosureModel::new(p, xs.len(), value, jacobian);
        let loss = SquaredError::new(self.y.to_vec(), Euclidean)
            .expect("the certified responses are finite");
        FitProblem::new(model, loss, Euclidean).expect("sizes agree by construction")
    }
}

/// The problems of this module, lower to higher difficulty.
pub fn all() -> [Certified; 6] {
    [MISRA1A, CHWIRUT2, BOXBOD, RAT42, MGH09, ECKERLE4]
}

/// `θ₁ (1 − exp(−θ₂ x))` (Misra1a, BoxBOD).
fn exponential_rise(t: &[f64], x: f64) -> f64 {
    t[0] * (1.0 - (-t[1] * x).exp())
}

/// Its gradient in θ.
fn exponential_rise_gradient(t: &[f64], x: f64, g: &mut [f64]) {
    let e = (-t[1] * x).exp();
    g[0] = 1.0 - e;
    g[1] = t[0] * x * e;
}

/// Misra1a (lower): `θ₁ (1 − exp(−θ₂ x))`, 14 observations.
pub const MISRA1A: Certified = Certified {
    name: "Misra1a",
    difficulty: "lower",
    x: &[
        77.6, 114.9, 141.1, 190.8, 239.9, 289.0, 332.8, 378.4, 434.8, 477.3, 536.8, 593.1, 689.1,
        760.0,
    ],
    y: &[
        10.07, 14.73, 17.94, 23.93, 29.61, 35.18, 40.02, 44.82, 50.76, 55.05, 61.01, 66.40, 75.47,
        81.78,
    ],
    starts: [&[500.0, 1e-4], &[250.0, 5e-4]],
    params: &[2.3894212918e2, 5.5015643181e-4],
    sse: 1.2455138894e-1,
    f: exponential_rise,
    grad: exponential_rise_gradient,
};

/// Chwirut2 (lower): `exp(−θ₁ x) / (θ₂ + θ₃ x)`, 54 observations.
pub const CHWIRUT2: Certified = Certified {
    name: "Chwirut2",
    difficulty: "lower",
    x: &[
        0.5, 1.0, 1.75, 3.75, 5.75, 0.875, 2.25, 3.25, 5.25, 0.75, 1.75, 2.75, 4.75, 0.625, 1.25,
        2.25, 4.25, 0.5, 3.0, 0.75, 3.0, 1.5, 6.0, 3.0, 6.0, 1.5, 3.0, 0.5, 2.0, 4.0, 0.75, 2.0,
        5.0, 0.75, 2.25, 3.75, 5.75, 3.0, 0.75, 2.5, 4.0, 0.75, 2.5, 4.0, 0.75, 2.5, 4.0, 0.5, 6.0,
        3.0, 0.5, 2.75, 0.5, 1.75,
    ],
    y: &[
        92.9, 57.1, 31.05, 11.5875, 8.025, 63.6, 21.4, 14.25, 8.475, 63.8, 26.8, 16.4625, 7.125,
        67.3, 41.0, 21.15, 8.175, 81.5, 13.12, 59.9, 14.62, 32.9, 5.44, 12.56, 5.44, 32.0, 13.95,
        75.8, 20.0, 10.42, 59.5, 21.67, 8.55, 62.0, 20.2, 7.76, 3.75, 11.81, 54.7, 23.7, 11.55,
        61.3, 17.7, 8.74, 59.2, 16.3, 8.62, 81.0, 4.87, 14.62, 81.7, 17.17, 81.3, 28.9,
    ],
    starts: [&[0.1, 0.01, 0.02], &[0.15, 0.008, 0.010]],
    params: &[1.6657666537e-1, 5.1653291286e-3, 1.2150007096e-2],
    sse: 5.1304802941e2,
    f: |t, x| (-t[0] * x).exp() / (t[1] + t[2] * x),
    grad: |t, x, g| {
        let d = 1.0 / (t[1] + t[2] * x);
        let e = (-t[0] * x).exp();
        g[0] = -x * e * d;
        g[1] = -e * d * d;
        g[2] = -x * e * d * d;
    },
};

/// BoxBOD (higher): `θ₁ (1 − exp(−θ₂ x))`, 6 observations.
pub const BOXBOD: Certified = Certified {
    name: "BoxBOD",
    difficulty: "higher",
    x: &[1.0, 2.0, 3.0, 5.0, 7.0, 10.0],
    y: &[109.0, 149.0, 149.0, 191.0, 213.0, 224.0],
    starts: [&[1.0, 1.0], &[100.0, 0.75]],
    params: &[2.1380940889e2, 5.4723748542e-1],
    sse: 1.1680088766e3,
    f: exponential_rise,
    grad: exponential_rise_gradient,
};

/// Rat42 (higher): `θ₁ / (1 + exp(θ₂ − θ₃ x))`, 9 observations.
pub const RAT42: Certified = Certified {
    name: "Rat42",
    difficulty: "higher",
    x: &[9.0, 14.0, 21.0, 28.0, 42.0, 57.0, 63.0, 70.0, 79.0],
    y: &[8.93, 10.8, 18.59, 22.33, 39.35, 56.11, 61.73, 64.62, 67.08],
    starts: [&[100.0, 1.0, 0.1], &[75.0, 2.5, 0.07]],
    params: &[7.2462237576e1, 2.6180768402, 6.7359200066e-2],
    sse: 8.0565229338,
    f: |t, x| t[0] / (1.0 + (t[1] - t[2] * x).exp()),
    grad: |t, x, g| {
        let e = (t[1] - t[2] * x).exp();
        let d = 1.0 / (1.0 + e);
        g[0] = d;
        g[1] = -t[0] * e * d * d;
        g[2] = t[0] * x * e * d * d;
    },
};

/// MGH09 (higher, Kowalik–Osborne): `θ₁ (x² + θ₂ x) / (x² + θ₃ x + θ₄)`, 11 observations.
pub const MGH09: Certified = Certified {
    name: "MGH09",
    difficulty: "higher",
    x: &[
        4.0, 2.0, 1.0, 0.5, 0.25, 0.167, 0.125, 0.1, 0.0833, 0.0714, 0.0625,
    ],
    y: &[
        0.1957, 0.1947, 0.1735, 0.16, 0.0844, 0.0627, 0.0456, 0.0342, 0.0323, 0.0235, 0.0246,
    ],
    starts: [&[25.0, 39.0, 41.5, 39.0], &[0.25, 0.39, 0.415, 0.39]],
    params: &[
        1.9280693458e-1,
        1.9128232873e-1,
        1.2305650693e-1,
        1.3606233068e-1,
    ],
    sse: 3.0750560385e-4,
    f: |t, x| t[0] * (x * x + x * t[1]) / (x * x + x * t[2] + t[3]),
    grad: |t, x, g| {
        let num = x * x + x * t[1];
        let d = 1.0 / (x * x + x * t[2] + t[3]);
        g[0] = num * d;
        g[1] = t[0] * x * d;
        g[2] = -t[0] * num * x * d * d;
        g[3] = -t[0] * num * d * d;
    },
};

/// Eckerle4 (higher): the Gaussian peak `(θ₁/θ₂) exp(−½ ((x − θ₃)/θ₂)²)`, 35 observations.
pub const ECKERLE4: Certified = Certified {
    name: "Eckerle4",
    difficulty: "higher",
    x: &[
        400.0, 405.0, 410.0, 415.0, 420.0, 425.0, 430.0, 435.0, 436.5, 438.0, 439.5, 441.0, 442.5,
        444.0, 445.5, 447.0, 448.5, 450.0, 451.5, 453.0, 454.5, 456.0, 457.5, 459.0, 460.5, 462.0,
        463.5, 465.0, 470.0, 475.0, 480.0, 485.0, 490.0, 495.0, 500.0,
    ],
    y: &[
        0.0001575, 0.0001699, 0.0002350, 0.0003102, 0.0004917, 0.0008710, 0.0017418, 0.0046400,
        0.0065895, 0.0097302, 0.0149002, 0.0237310, 0.0401683, 0.0712559, 0.1264458, 0.2073413,
        0.2902366, 0.3445623, 0.3698049, 0.3668534, 0.3106727, 0.2078154, 0.1164354, 0.0616764,
        0.0337200, 0.0194023, 0.0117831, 0.0074357, 0.0022732, 0.0008800, 0.0004579, 0.0002345,
        0.0001586, 0.0001143, 0.0000710,
    ],
    starts: [&[1.0, 10.0, 500.0], &[1.5, 5.0, 450.0]],
    params: &[1.5543827178, 4.0888321754, 4.5154121844e2],
    sse: 1.4635887487e-3,
    f: |t, x| {
        let z = (x - t[2]) / t[1];
        t[0] / t[1] * (-0.5 * z * z).exp()
    },
    grad: |t, x, g| {
        let z = (x - t[2]) / t[1];
        let e = (-0.5 * z * z).exp();
        g[0] = e / t[1];
        g[1] = t[0] * e * (z * z - 1.0) / (t[1] * t[1]);
        g[2] = t[0] * e * z / (t[1] * t[1]);
    },
};
