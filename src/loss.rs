//! Losses `ℓ(y)` on the model outputs, with their output-space gradient `∇_y ℓ`
//! (docs/math.md §1) and, when they have one, the Hessian used by the loss-Hessian metric.

use crate::error::{check_finite, check_len, check_nonempty, Error, Result};
use crate::metric::{FixedMetric, WeightedL2};

/// A loss on the outputs `y ∈ Rⁿ`.
pub trait Loss: Send + Sync {
    /// Number of outputs the loss expects, if fixed.
    fn dim(&self) -> Option<usize>;

    /// `ℓ(y)`.
    fn value(&self, y: &[f64]) -> f64;

    /// `out = ∇_y ℓ(y)`.
    fn gradient(&self, y: &[f64], out: &mut [f64]);

    /// Checks that the (finite) outputs `y` lie in the loss's domain, where its value and
    /// gradient are finite; the error names the output, the cause and what to use instead.
    /// [`crate::FitProblem::linearize`] calls it on every linearisation, so a run that leaves
    /// the domain ends with this text and keeps its last good θ. The default accepts every
    /// `y` (losses finite on all of `Rⁿ`).
    fn check_outputs(&self, y: &[f64]) -> Result<()> {
        let _ = y;
        Ok(())
    }

    /// `out = ∇²_y ℓ(y) v`, the metric of the generalised Gauss–Newton method
    /// ([`crate::metric::LossHessian`]). Losses without one return [`Error::Unsupported`].
    fn hessian_apply(&self, y: &[f64], v: &[f64], out: &mut [f64]) -> Result<()> {
        let _ = (y, v, out);
        Err(Error::Unsupported(
            "this loss has no Hessian, so it cannot define a loss-Hessian metric".into(),
        ))
    }

    /// Writes the diagonal of the Hessian when the Hessian is diagonal; returns `false`
    /// otherwise (the default).
    fn hessian_diagonal(&self, y: &[f64], out: &mut [f64]) -> bool {
        let _ = (y, out);
        false
    }

    /// Whether [`Loss::hessian_apply`] is available.
    fn has_hessian(&self) -> bool {
        false
    }

    /// The loss restricted to a mini-batch of samples (`q` outputs per sample), rescaled so
    /// that it estimates the full loss. Unsupported by default.
    fn select_samples(&self, samples: &[usize], q: usize, m: usize) -> Result<Self>
    where
        Self: Sized,
    {
        let _ = (samples, q, m);
        Err(Error::Unsupported(
            "this loss cannot be restricted to a mini-batch of samples".into(),
        ))
    }
}

/// `ℓ(y) = ½ (y − u)ᵀ K (y − u)`: squared error to a target `u` in a fixed metric `K`.
///
/// With `K = diag(w)` (quadrature weights, default `1/m`) it is the discrete L² loss
/// `1/(2m) Σ (u_i − y_i)²`; with a user `K` it is the toy loss `½‖u − v‖²_K` of docs/math.md §4.
/// Gradient `K (y − u)`, Hessian `K`.
#[derive(Debug, Clone)]
pub struct SquaredError<K = WeightedL2> {
    target: Vec<f64>,
    metric: K,
}

impl SquaredError<WeightedL2> {
    /// The discrete L² loss with uniform weights `1/n`; [`Error::Empty`] for an empty
    /// target.
    pub fn l2(target: Vec<f64>) -> Result<Self> {
        let n = target.len();
        Self::new(target, WeightedL2::uniform(n)?)
    }
}

impl<K: FixedMetric> SquaredError<K> {
    /// `½ (y − u)ᵀ K (y − u)` with target `u`. Fails if `K` has another size or `u` is not
    /// finite, and with [`Error::Empty`] for an empty target.
    pub fn new(target: Vec<f64>, metric: K) -> Result<Self> {
        check_nonempty(
            "SquaredError: length of the target (outputs n)",
            target.len(),
        )?;
        if let Some(n) = metric.dim() {
            check_len("SquaredError: target vs metric", n, target.len())?;
        }
        check_finite("SquaredError: target", &target)?;
        Ok(Self { target, metric })
    }

    /// The target `u`.
    pub fn target(&self) -> &[f64] {
        &self.target
    }

    /// The metric `K`.
    pub fn metric(&self) -> &K {
        &self.metric
    }

    fn residual(&self, y: &[f64]) -> Vec<f64> {
        y.iter().zip(&self.target).map(|(y, u)| y - u).collect()
    }
}

impl<K: FixedMetric> Loss for SquaredError<K> {
    fn dim(&self) -> Option<usize> {
        Some(self.target.len())
    }

    fn value(&self, y: &[f64]) -> f64 {
        let r = self.residual(y);
        let mut kr = vec![0.0; r.len()];
        self.metric.apply(&r, &mut kr);
        0.5 * crate::linalg::dot(&r, &kr)
    }

    fn gradient(&self, y: &[f64], out: &mut [f64]) {
        let r = self.residual(y);
        self.metric.apply(&r, out);
    }

    fn hessian_apply(&self, _y: &[f64], v: &[f64], out: &mut [f64]) -> Result<()> {
        self.metric.apply(v, out);
        Ok(())
    }

    fn hessian_diagonal(&self, _y: &[f64], out: &mut [f64]) -> bool {
        match self.metric.diagonal() {
            Some(d) => {
                out.copy_from_slice(d);
                true
            }
            None => false,
        }
    }

    fn has_hessian(&self) -> bool {
        true
    }

    fn select_samples(&self, samples: &[usize], q: usize, m: usize) -> Result<Self> {
        let rows = crate::metric::sample_rows(samples, q, m)?;
        Ok(Self {
            target: rows.iter().map(|&i| self.target[i]).collect(),
            metric: self.metric.select_samples(samples, q, m)?,
        })
    }
}

/// Labels `u_i ∈ [0, 1]` and quadrature weights `w_i > 0` of a binary cross-entropy.
#[derive(Debug, Clone)]
struct Labels {
    labels: Vec<f64>,
    weights: Vec<f64>,
}

impl Labels {
    /// Checks: at least one label ([`Error::Empty`]), as many weights as labels, finite
    /// labels in `[0, 1]`, finite positive weights. `what` names the loss.
    fn new(what: &str, labels: Vec<f64>, weights: Vec<f64>) -> Result<Self> {
        check_nonempty(
            &format!("{what}: number of labels (outputs n)"),
            labels.len(),
        )?;
        check_len(
            &format!("{what}: weights vs labels"),
            labels.len(),
            weights.len(),
        )?;
        check_finite(&format!("{what}: labels"), &labels)?;
        if let Some(i) = labels.iter().position(|u| !(0.0..=1.0).contains(u)) {
            return Err(Error::InvalidSetting(format!(
                "{what}: label {} at index {i} is outside [0, 1]",
                labels[i]
            )));
        }
        crate::metric::check_weights(&format!("{what}: weights"), &weights)?;
        Ok(Self { labels, weights })
    }

    /// Uniform weights `1/n`.
    fn uniform(what: &str, labels: Vec<f64>) -> Result<Self> {
        let n = labels.len();
        Self::new(what, labels, vec![1.0 / n.max(1) as f64; n])
    }

    /// `(y_i, u_i, w_i)` for every output.
    fn zip<'a>(&'a self, y: &'a [f64]) -> impl Iterator<Item = (f64, f64, f64)> + 'a {
        y.iter()
            .zip(&self.labels)
            .zip(&self.weights)
            .map(|((&y, &u), &w)| (y, u, w))
    }

    /// The labels of a mini-batch, weights rescaled by `m/b` (docs/math.md §3, stochastic
    /// setting).
    fn select_samples(&self, samples: &[usize], q: usize, m: usize) -> Result<Self> {
        let rows = crate::metric::sample_rows(samples, q, m)?;
        let scale = m as f64 / samples.len() as f64;
        Ok(Self {
            labels: rows.iter().map(|&i| self.labels[i]).collect(),
            weights: rows.iter().map(|&i| self.weights[i] * scale).collect(),
        })
    }
}

/// Binary cross-entropy on probabilities `v ∈ [0, 1]`:
/// `ℓ(v) = Σ w_i [−u_i log v_i − (1 − u_i) log(1 − v_i)]` (docs/math.md §4, XOR).
///
/// Gradient `w_i ((1 − u_i)/(1 − v_i) − u_i/v_i)` (`= w_i (v_i − u_i) / (v_i (1 − v_i))`).
/// Its [`Loss::hessian_apply`] is the Fisher metric `diag(w_i / (v_i (1 − v_i)))` — the
/// expected Hessian, as docs/math.md §4 specifies for the loss-Hessian metric of this loss (it
/// equals the exact Hessian where `v = u`).
///
/// **Prefer [`LogitCrossEntropy`] for a sigmoid output**: probabilities near 1 are not
/// representable in `f64` (`σ(z)` rounds to exactly 1 for `z ≳ 37`), so a confident
/// network saturates, while the loss on the logits stays exact at any `z`.
///
/// Loss and gradient are exact and consistent: a term whose label weight is 0 is left out
/// (`0 · log 0 = 0`), and nothing is clamped. Predictions where the loss is infinite —
/// outside `[0, 1]`, or at 0 or 1 against a label that needs the other side (a saturated
/// sigmoid) — are refused by [`Loss::check_outputs`] with [`Error::NonFinite`] naming the
/// prediction, the label and [`LogitCrossEntropy`]: a typed error at the start of a run, a
/// `SolverExit` with that text mid-run (the last good θ kept). Only the Fisher metric
/// clamps `v_i` to `[1e-15, 1 − 1e-15]`, so that it stays finite at a prediction of
/// exactly 0 or 1 with the matching label (a metric is a choice; the loss and its
/// gradient are not).
#[derive(Debug, Clone)]
pub struct CrossEntropy(Labels);

/// The Fisher metric's clamp of the probabilities (the loss and gradient are exact).
const PROB_FLOOR: f64 = 1e-15;

impl CrossEntropy {
    /// Labels `u_i ∈ [0, 1]` with uniform weights `1/n`; [`Error::Empty`] for none.
    pub fn new(labels: Vec<f64>) -> Result<Self> {
        Labels::uniform("CrossEntropy", labels).map(Self)
    }

    /// Labels with quadrature weights `w_i > 0`. Fails with [`Error::Empty`] for no
    /// labels.
    pub fn weighted(labels: Vec<f64>, weights: Vec<f64>) -> Result<Self> {
        Labels::new("CrossEntropy", labels, weights).map(Self)
    }

    /// `−u log v − (1 − u) log(1 − v)`, a term with weight 0 left out; `+∞` outside
    /// `[0, 1]`.
    fn term(v: f64, u: f64) -> f64 {
        if !(0.0..=1.0).contains(&v) {
            return f64::INFINITY;
        }
        let a = if u > 0.0 { -u * v.ln() } else { 0.0 };
        let b = if u < 1.0 {
            -(1.0 - u) * (-v).ln_1p()
        } else {
            0.0
        };
        a + b
    }

    /// `d/dv` of [`Self::term`], `(1 − u)/(1 − v) − u/v`, the same terms left out; NaN
    /// outside `[0, 1]`.
    fn term_derivative(v: f64, u: f64) -> f64 {
        if !(0.0..=1.0).contains(&v) {
            return f64::NAN;
        }
        let a = if u > 0.0 { -u / v } else { 0.0 };
        let b = if u < 1.0 { (1.0 - u) / (1.0 - v) } else { 0.0 };
        a + b
    }
}

impl Loss for CrossEntropy {
    fn dim(&self) -> Option<usize> {
        Some(self.0.labels.len())
    }

    fn value(&self, y: &[f64]) -> f64 {
        self.0.zip(y).map(|(v, u, w)| w * Self::term(v, u)).sum()
    }

    fn gradient(&self, y: &[f64], out: &mut [f64]) {
        for (o, (v, u, w)) in out.iter_mut().zip(self.0.zip(y)) {
            *o = w * Self::term_derivative(v, u);
        }
    }

    fn check_outputs(&self, y: &[f64]) -> Result<()> {
        let Some((i, (v, u, _))) = self
            .0
            .zip(y)
            .enumerate()
            .find(|(_, (v, u, _))| !Self::term(*v, *u).is_finite())
        else {
            return Ok(());
        };
        let why = if (0.0..=1.0).contains(&v) {
            "a prediction of exactly 0 or 1 against a label that needs the other side: the \
             output saturated (σ(z) rounds to 1 in f64 for z ≳ 37)"
        } else {
            "outside [0, 1]: the model's output is not a probability"
        };
        Err(Error::NonFinite {
            what: format!(
                "CrossEntropy: the loss of prediction v = {v} for label {u} (output {i}) is \
                 infinite, {why}; use `LogitCrossEntropy` on the logits z (the output \
                 before the sigmoid), which is exact and finite at any z"
            ),
            index: i,
            value: Self::term(v, u),
        })
    }

    fn hessian_apply(&self, y: &[f64], v: &[f64], out: &mut [f64]) -> Result<()> {
        self.hessian_diagonal(y, out);
        out.iter_mut().zip(v).for_each(|(o, v)| *o *= v);
        Ok(())
    }

    fn hessian_diagonal(&self, y: &[f64], out: &mut [f64]) -> bool {
        for (o, (v, _, w)) in out.iter_mut().zip(self.0.zip(y)) {
            let v = v.clamp(PROB_FLOOR, 1.0 - PROB_FLOOR);
            *o = w / (v * (1.0 - v));
        }
        true
    }

    fn has_hessian(&self) -> bool {
        true
    }

    fn select_samples(&self, samples: &[usize], q: usize, m: usize) -> Result<Self> {
        self.0.select_samples(samples, q, m).map(Self)
    }
}

/// Binary cross-entropy on logits `z` (PyTorch's `BCEWithLogitsLoss`): the loss of
/// [`CrossEntropy`] at `v = σ(z)`, `σ(z) = 1/(1 + e^{−z})`,
/// `ℓ(z) = Σ w_i [u_i softplus(−z_i) + (1 − u_i) softplus(z_i)]`
/// `= Σ w_i [softplus(z_i) − u_i z_i]`.
///
/// Gradient `w_i (σ(z_i) − u_i)`; Hessian `diag(w_i σ(z_i)(1 − σ(z_i)))`, which is also
/// the Fisher metric (for the logit parametrisation the two agree at every `z`), so
/// [`crate::LossHessian`] with this loss is the Fisher natural gradient of logistic regression
/// and of a classifier network with a linear last layer.
///
/// Computed stably at every finite `z` (no overflow, no cancellation): `softplus(x) =
/// max(x, 0) + log1p(e^{−|x|})`, `σ(z)` and `σ(−z) = 1 − σ(z)` both from `e^{−|z|}`, the
/// gradient as `(1 − u) σ(z) − u σ(−z)` and the Hessian as `σ(z) σ(−z)`. So `ℓ` keeps its
/// relative accuracy where `σ(z)` rounds to 1 (`z = 40`, label 1: `ℓ = w e^{−40}`, not 0),
/// and the gradient never vanishes at a high loss (at `|z| = 800`: `ℓ = 800 w`, gradient
/// `±w`); only the Hessian underflows to 0 for `|z| ≳ 745` (its exact value is below the
/// smallest `f64`).
#[derive(Debug, Clone)]
pub struct LogitCrossEntropy(Labels);

impl LogitCrossEntropy {
    /// Labels `u_i ∈ [0, 1]` with uniform weights `1/n`; [`Error::Empty`] for none.
    pub fn new(labels: Vec<f64>) -> Result<Self> {
        Labels::uniform("LogitCrossEntropy", labels).map(Self)
    }

    /// Labels with quadrature weights `w_i > 0`. Fails with [`Error::Empty`] for no
    /// labels.
    pub fn weighted(labels: Vec<f64>, weights: Vec<f64>) -> Result<Self> {
        Labels::new("LogitCrossEntropy", labels, weights).map(Self)
    }
}

/// `softplus(x) = ln(1 + eˣ) = max(x, 0) + log1p(e^{−|x|})`, exact to rounding for every
/// finite `x`.
fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// `(σ(z), σ(−z))`, both from `e^{−|z|}` (so neither is a difference `1 − σ`).
fn sigmoid_pair(z: f64) -> (f64, f64) {
    let e = (-z.abs()).exp();
    let (big, small) = (1.0 / (1.0 + e), e / (1.0 + e));
    if z >= 0.0 {
        (big, small)
    } else {
        (small, big)
    }
}

impl Loss for LogitCrossEntropy {
    fn dim(&self) -> Option<usize> {
        Some(self.0.labels.len())
    }

    fn value(&self, z: &[f64]) -> f64 {
        self.0
            .zip(z)
            .map(|(z, u, w)| w * (u * softplus(-z) + (1.0 - u) * softplus(z)))
            .sum()
    }

    fn gradient(&self, z: &[f64], out: &mut [f64]) {
        for (o, (z, u, w)) in out.iter_mut().zip(self.0.zip(z)) {
            let (s, s_minus) = sigmoid_pair(z);
            *o = w * ((1.0 - u) * s - u * s_minus);
        }
    }

    fn hessian_apply(&self, z: &[f64], v: &[f64], out: &mut [f64]) -> Result<()> {
        self.hessian_diagonal(z, out);
        out.iter_mut().zip(v).for_each(|(o, v)| *o *= v);
        Ok(())
    }

    fn hessian_diagonal(&self, z: &[f64], out: &mut [f64]) -> bool {
        for (o, (z, _, w)) in out.iter_mut().zip(self.0.zip(z)) {
            let (s, s_minus) = sigmoid_pair(z);
            *o = w * s * s_minus;
        }
        true
    }

    fn has_hessian(&self) -> bool {
        true
    }

    fn select_samples(&self, samples: &[usize], q: usize, m: usize) -> Result<Self> {
        self.0.select_samples(samples, q, m).map(Self)
    }
}

/// A loss from closures: `value(y)` and `gradient(y, out)`; no Hessian.
pub struct FnLoss<V, G> {
    dim: Option<usize>,
    value: V,
    gradient: G,
}

impl<V, G> std::fmt::Debug for FnLoss<V, G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnLoss").field("dim", &self.dim).finish()
    }
}

impl<V, G> FnLoss<V, G>
where
    V: Fn(&[f64]) -> f64 + Send + Sync,
    G: Fn(&[f64], &mut [f64]) + Send + Sync,
{
    /// A loss on `dim` outputs (`None`: any size); [`Error::Empty`] for `Some(0)`.
    pub fn new(dim: Option<usize>, value: V, gradient: G) -> Result<Self> {
        if let Some(n) = dim {
            check_nonempty("FnLoss: number of outputs (dim)", n)?;
        }
        Ok(Self {
            dim,
            value,
            gradient,
        })
    }
}

impl<V, G> Loss for FnLoss<V, G>
where
    V: Fn(&[f64]) -> f64 + Send + Sync,
    G: Fn(&[f64], &mut [f64]) + Send + Sync,
{
    fn dim(&self) -> Option<usize> {
        self.dim
    }

    fn value(&self, y: &[f64]) -> f64 {
        (self.value)(y)
    }

    fn gradient(&self, y: &[f64], out: &mut [f64]) {
        (self.gradient)(y, out)
    }
}
