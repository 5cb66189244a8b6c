//! The toy problems of docs/math.md §4, in coefficient space: `Φ(x) = [1, √2 sin(2πx)]` is
//! L²(0,1)-orthonormal, so a function `cᵀΦ` is its coefficients `c ∈ R²` and the model
//! output is `y = c(θ)` (n = 2).
//!
//! All toys share one type, [`ToyProblem`], so that they can be looped over.

use crate::error::Result;
use crate::loss::{Loss, SquaredError};
use crate::metric::DenseMetric;
use crate::model::QuadraticModel;
use crate::problem::FitProblem;
use faer::{mat, Mat};

/// Target coefficients `c_u = (1.0, 0.5)`.
pub const TARGET: [f64; 2] = [1.0, 0.5];
/// Default start `θ₀ = (−1.0, 2.0)`.
pub const THETA0: [f64; 2] = [-1.0, 2.0];
/// Target of the local-minima toy, `c_u = (0.3, 1.5)`.
pub const LOCAL_MINIMA_TARGET: [f64; 2] = [0.3, 1.5];
/// Start of the local-minima toy, `θ₀ = −1.5`.
pub const LOCAL_MINIMA_THETA0: f64 = -1.5;
/// Warp strength `ω` of the non-L² loss.
pub const OMEGA: f64 = 1.0;
/// Warp centre `q` of the non-L² loss.
pub const Q: [f64; 2] = [0.5, -0.5];

/// The metric of a toy: `K = I` or `K = diag(1, 10)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToyMetric {
    /// `K = I`.
    Isotropic,
    /// `K = diag(1, 10)`.
    Anisotropic,
}

impl ToyMetric {
    /// The matrix `K`.
    pub fn matrix(self) -> Mat<f64> {
        match self {
            ToyMetric::Isotropic => mat![[1.0, 0.0], [0.0, 1.0]],
            ToyMetric::Anisotropic => mat![[1.0, 0.0], [0.0, 10.0]],
        }
    }
}

/// `B = [[1.0, 0.9], [0.0, 0.3]]` (rows `B_1, B_2`), so `c(θ) = Bᵀθ`.
pub fn b_matrix() -> Mat<f64> {
    mat![[1.0, 0.9], [0.0, 0.3]]
}

/// `Q_1 = [[0, 0.5], [0.5, 0]]`, `Q_2 = [[1, 0], [0, −0.5]]`.
pub fn q_matrices() -> Vec<Mat<f64>> {
    vec![mat![[0.0, 0.5], [0.5, 0.0]], mat![[1.0, 0.0], [0.0, -0.5]]]
}

/// The warp `f(c) = (1 + ω‖c − q‖²)(c − q) + q` of the non-L² loss.
pub fn warp(c: &[f64]) -> [f64; 2] {
    let d = [c[0] - Q[0], c[1] - Q[1]];
    let s = 1.0 + OMEGA * (d[0] * d[0] + d[1] * d[1]);
    [s * d[0] + Q[0], s * d[1] + Q[1]]
}

/// `ℓ(c) = ½‖f(c_u) − f(c)‖²` with the [`warp`] `f`: a loss that is not a squared norm in
/// the geometry used by natural gradient (docs/math.md §4, "non-L² loss").
#[derive(Debug, Clone)]
pub struct WarpedSquaredError {
    warped_target: [f64; 2],
}

impl WarpedSquaredError {
    /// The loss with target `c_u`.
    pub fn new(target: [f64; 2]) -> Self {
        Self {
            warped_target: warp(&target),
        }
    }
}

impl Loss for WarpedSquaredError {
    fn dim(&self) -> Option<usize> {
        Some(2)
    }

    fn value(&self, y: &[f64]) -> f64 {
        let f = warp(y);
        0.5 * ((self.warped_target[0] - f[0]).powi(2) + (self.warped_target[1] - f[1]).powi(2))
    }

    /// `∇ℓ = Df(c)ᵀ (f(c) − f(c_u))`, `Df = (1 + ω‖d‖²) I + 2ω d dᵀ`, `d = c − q`.
    fn gradient(&self, y: &[f64], out: &mut [f64]) {
        let f = warp(y);
        let r = [f[0] - self.warped_target[0], f[1] - self.warped_target[1]];
        let d = [y[0] - Q[0], y[1] - Q[1]];
        let s = 1.0 + OMEGA * (d[0] * d[0] + d[1] * d[1]);
        let dr = d[0] * r[0] + d[1] * r[1];
        out[0] = s * r[0] + 2.0 * OMEGA * d[0] * dr;
        out[1] = s * r[1] + 2.0 * OMEGA * d[1] * dr;
    }
}

/// The loss of a toy: squared error in `K`, or the warped loss.
#[derive(Debug, Clone)]
pub enum ToyLoss {
    /// `½‖u − c‖²_K`.
    Squared(SquaredError<DenseMetric>),
    /// `½‖f(u) − f(c)‖²`.
    Warped(WarpedSquaredError),
}

impl Loss for ToyLoss {
    fn dim(&self) -> Option<usize> {
        Some(2)
    }
    fn value(&self, y: &[f64]) -> f64 {
        match self {
            ToyLoss::Squared(l) => l.value(y),
            ToyLoss::Warped(l) => l.value(y),
        }
    }
    fn gradient(&self, y: &[f64], out: &mut [f64]) {
        match self {
            ToyLoss::Squared(l) => l.gradient(y, out),
            ToyLoss::Warped(l) => l.gradient(y, out),
        }
    }
}

/// The problem type shared by all toys.
pub type ToyProblem = FitProblem<QuadraticModel, ToyLoss, DenseMetric>;

/// A toy: its problem, start and (where known in closed form) minimiser.
#[derive(Debug)]
pub struct Toy {
    /// Short name (`linear_iso`, `linear_k`, `quadratic_k`, `local_minima`, `non_l2`).
    pub name: &'static str,
    /// Model × loss × metric.
    pub problem: ToyProblem,
    /// Starting point.
    pub theta0: Vec<f64>,
    /// The global minimiser, when known in closed form.
    pub minimiser: Option<Vec<f64>>,
}

/// The toy's problem: model, loss, and the dense metric `K`.
fn problem(model: QuadraticModel, loss: ToyLoss, metric: Mat<f64>) -> Result<ToyProblem> {
    FitProblem::new(model, loss, DenseMetric::new(metric)?)
}

fn build(
    name: &'static str,
    problem: ToyProblem,
    theta0: Vec<f64>,
    minimiser: Option<Vec<f64>>,
) -> Result<Toy> {
    Ok(Toy {
        name,
        problem,
        theta0,
        minimiser,
    })
}

fn squared(target: [f64; 2], k: Mat<f64>) -> Result<ToyLoss> {
    Ok(ToyLoss::Squared(SquaredError::new(
        target.to_vec(),
        DenseMetric::new(k)?,
    )?))
}

fn zero_q(p: usize) -> Vec<Mat<f64>> {
    vec![Mat::zeros(p, p), Mat::zeros(p, p)]
}

/// Biased linear model `c(θ) = Bᵀθ`, loss `½‖u − c‖²_K`, metric `K`. Its minimiser
/// solves `Bᵀθ = c_u`: `θ* = (1, −4/3)`.
pub fn biased_linear(metric: ToyMetric) -> Toy {
    let name = match metric {
        ToyMetric::Isotropic => "linear_iso",
        ToyMetric::Anisotropic => "linear_k",
    };
    (|| {
        let model = QuadraticModel::new(b_matrix(), zero_q(2))?;
        build(
            name,
            problem(model, squared(TARGET, metric.matrix())?, metric.matrix())?,
            THETA0.to_vec(),
            Some(vec![1.0, -4.0 / 3.0]),
        )
    })()
    .expect("natgrad: the toy constants are valid")
}

/// Quadratic manifold `c_j(θ) = (Bᵀθ)_j + ½θᵀQ_jθ`, `K = diag(1, 10)`.
pub fn quadratic_manifold() -> Toy {
    (|| {
        let model = QuadraticModel::new(b_matrix(), q_matrices())?;
        let k = ToyMetric::Anisotropic.matrix();
        build(
            "quadratic_k",
            problem(model, squared(TARGET, k.clone())?, k)?,
            THETA0.to_vec(),
            None,
        )
    })()
    .expect("natgrad: the toy constants are valid")
}

/// The local-minima curve `c(θ) = θ b + θ² b⊥` (p = 1), target `(0.3, 1.5)`, `K = I`,
/// `θ₀ = −1.5`. `∇L = 2θ³ − 2θ − 0.3` has a local minimum near −0.92 and the global one
/// near 1.07; [`local_minima_stationary_points`] gives them exactly.
pub fn local_minima() -> Toy {
    (|| {
        let model = QuadraticModel::new(
            Mat::from_fn(1, 2, |_, j| if j == 0 { 1.0 } else { 0.0 }),
            vec![Mat::zeros(1, 1), Mat::from_fn(1, 1, |_, _| 2.0)],
        )?;
        let k = ToyMetric::Isotropic.matrix();
        build(
            "local_minima",
            problem(model, squared(LOCAL_MINIMA_TARGET, k.clone())?, k)?,
            vec![LOCAL_MINIMA_THETA0],
            Some(vec![local_minima_stationary_points()[2]]),
        )
    })()
    .expect("natgrad: the toy constants are valid")
}

/// The three roots of `2θ³ − 2θ − 0.3 = 0` in increasing order: local minimum, local
/// maximum, global minimum of the local-minima toy (by the trigonometric cubic formula).
pub fn local_minima_stationary_points() -> [f64; 3] {
    // θ³ + pθ + q = 0 with p = −1, q = −0.15.
    let (p, q) = (-1.0_f64, -0.15_f64);
    let r = 2.0 * (-p / 3.0).sqrt();
    let phi = ((3.0 * q / (p * r)).acos()) / 3.0;
    let mut roots =
        [0, 1, 2].map(|k| r * (phi - 2.0 * std::f64::consts::PI * k as f64 / 3.0).cos());
    roots.sort_by(f64::total_cmp);
    roots
}

/// The non-L² toy: warped loss `½‖f(c_u) − f(c)‖²` on the quadratic manifold, metric
/// `M = I` (the L² geometry, not the loss Hessian).
pub fn non_l2() -> Toy {
    (|| {
        let model = QuadraticModel::new(b_matrix(), q_matrices())?;
        build(
            "non_l2",
            problem(
                model,
                ToyLoss::Warped(WarpedSquaredError::new(TARGET)),
                ToyMetric::Isotropic.matrix(),
            )?,
            THETA0.to_vec(),
            None,
        )
    })()
    .expect("natgrad: the toy constants are valid")
}

/// All five toys, in the order of docs/math.md §4.
pub fn all() -> Vec<Toy> {
    vec![
        biased_linear(ToyMetric::Isotropic),
        biased_linear(ToyMetric::Anisotropic),
        quadratic_manifold(),
        local_minima(),
        non_l2(),
    ]
}

/// Looks a toy up by its name.
pub fn by_name(name: &str) -> Option<Toy> {
    all().into_iter().find(|t| t.name == name)
}
