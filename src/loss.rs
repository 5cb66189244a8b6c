//! Losses `ℓ(y)` on the model outputs, with their output-space gradient `∇_y ℓ`
//! (docs/math.md §1) and, when they have one, the Hessian used by the GGN metric.

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

    /// `out = ∇²_y ℓ(y) v`, the metric of the generalised Gauss–Newton method
    /// ([`crate::metric::Ggn`]). Losses without one return [`Error::Unsupported`].
    fn hessian_apply(&self, y: &[f64], v: &[f64], out: &mut [f64]) -> Result<()> {
        let _ = (y, v, out);
        Err(Error::Unsupported(
            "this loss has no Hessian, so it cannot define a GGN metric".into(),
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
    /// The discrete L² loss with uniform weights `1/n`.
    pub fn l2(target: Vec<f64>) -> Result<Self> {
        let n = target.len();
        Self::new(target, WeightedL2::uniform(n))
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

/// Binary cross-entropy on probabilities `v ∈ (0, 1)`:
/// `ℓ(v) = Σ w_i [−u_i log v_i − (1 − u_i) log(1 − v_i)]` (docs/math.md §4, XOR).
///
/// Gradient `w_i (v_i − u_i) / (v_i (1 − v_i))`. Its [`Loss::hessian_apply`] is the Fisher
/// metric `diag(w_i / (v_i (1 − v_i)))` — the expected Hessian, as docs/math.md §4 specifies for
/// the GGN metric of this loss (it equals the exact Hessian where `v = u`). Probabilities
/// are clamped to `[1e-15, 1 − 1e-15]` so that a saturated sigmoid gives a finite loss.
#[derive(Debug, Clone)]
pub struct CrossEntropy {
    labels: Vec<f64>,
    weights: Vec<f64>,
}

const PROB_FLOOR: f64 = 1e-15;

impl CrossEntropy {
    /// Labels `u_i ∈ [0, 1]` with uniform weights `1/n`.
    pub fn new(labels: Vec<f64>) -> Result<Self> {
        let n = labels.len();
        Self::weighted(labels, vec![1.0 / n as f64; n])
    }

    /// Labels with quadrature weights `w_i > 0`. Fails with [`Error::Empty`] for no
    /// labels.
    pub fn weighted(labels: Vec<f64>, weights: Vec<f64>) -> Result<Self> {
        check_nonempty("CrossEntropy: number of labels (outputs n)", labels.len())?;
        check_len(
            "CrossEntropy: weights vs labels",
            labels.len(),
            weights.len(),
        )?;
        check_finite("CrossEntropy: labels", &labels)?;
        if let Some(i) = labels.iter().position(|u| !(0.0..=1.0).contains(u)) {
            return Err(Error::InvalidSetting(format!(
                "CrossEntropy: label {} at index {i} is outside [0, 1]",
                labels[i]
            )));
        }
        crate::metric::check_weights("CrossEntropy: weights", &weights)?;
        Ok(Self { labels, weights })
    }

    fn clamp(v: f64) -> f64 {
        v.clamp(PROB_FLOOR, 1.0 - PROB_FLOOR)
    }
}

impl Loss for CrossEntropy {
    fn dim(&self) -> Option<usize> {
        Some(self.labels.len())
    }

    fn value(&self, y: &[f64]) -> f64 {
        y.iter()
            .zip(&self.labels)
            .zip(&self.weights)
            .map(|((&v, &u), &w)| {
                let v = Self::clamp(v);
                -w * (u * v.ln() + (1.0 - u) * (1.0 - v).ln())
            })
            .sum()
    }

    fn gradient(&self, y: &[f64], out: &mut [f64]) {
        for (((o, &v), &u), &w) in out.iter_mut().zip(y).zip(&self.labels).zip(&self.weights) {
            let v = Self::clamp(v);
            *o = w * (v - u) / (v * (1.0 - v));
        }
    }

    fn hessian_apply(&self, y: &[f64], v: &[f64], out: &mut [f64]) -> Result<()> {
        self.hessian_diagonal(y, out);
        out.iter_mut().zip(v).for_each(|(o, v)| *o *= v);
        Ok(())
    }

    fn hessian_diagonal(&self, y: &[f64], out: &mut [f64]) -> bool {
        for ((o, &v), &w) in out.iter_mut().zip(y).zip(&self.weights) {
            let v = Self::clamp(v);
            *o = w / (v * (1.0 - v));
        }
        true
    }

    fn has_hessian(&self) -> bool {
        true
    }

    fn select_samples(&self, samples: &[usize], q: usize, m: usize) -> Result<Self> {
        let rows = crate::metric::sample_rows(samples, q, m)?;
        let scale = m as f64 / samples.len() as f64;
        Ok(Self {
            labels: rows.iter().map(|&i| self.labels[i]).collect(),
            weights: rows.iter().map(|&i| self.weights[i] * scale).collect(),
        })
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
    /// A loss on `dim` outputs (`None`: any size).
    pub fn new(dim: Option<usize>, value: V, gradient: G) -> Self {
        Self {
            dim,
            value,
            gradient,
        }
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
