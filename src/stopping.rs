//! Stopping tests of [`NaturalGradient`](crate::NaturalGradient), as a user of a
//! nonlinear least-squares solver expects them (MINPACK's `ftol`, `xtol`, `gtol`; Moré,
//! Garbow and Hillstrom, *User guide for MINPACK-1*, 1980, §2.3), written in the metric
//! `M` of the natural gradient. All three are scale-invariant: multiplying the loss, the
//! outputs or the parameters by a constant does not change when they fire.
//!
//! After step `k` (loss `L_k`, step `s_k = tδ_k`, damping `λ`):
//!
//! * **relative reduction** ([`Tolerances::cost`], MINPACK's `ftol`): both the actual and
//!   the predicted decrease of the loss are at most `ftol·|L_k|`,
//!   `|L_k − L_{k+1}| ≤ ftol·|L_k|` and `pred_k ≤ ftol·|L_k|`, where `pred_k` is the
//!   decrease of the Gauss–Newton model `m_k(s) = L_k + g_kᵀs + ½‖J_k s‖²_M`;
//! * **relative step** ([`Tolerances::step`], `xtol`): `‖s_k‖ ≤ xtol·(‖θ_k‖ + xtol)`;
//! * **gradient** ([`Tolerances::grad`], `gtol`): the cosine
//!   `c_k = √(g_kᵀ(G_k + λI)⁻¹g_k / (2|L_k|)) ≤ gtol`. For the squared error
//!   `L = ½‖y − u‖²_M` it is the cosine, in `M`, between the residual and the range of
//!   `J_k` (`G = JᵀMJ`, `g = JᵀM(y − u)`): 0 at a stationary point, 1 when the residual
//!   lies in the tangent space. It is read off the plain natural-gradient solve
//!   (`δ = −α(G + λI)⁻¹g`, so `gᵀ(G + λI)⁻¹g = −gᵀδ/α`, no extra product), so it is
//!   evaluated on steps that are such a solve (the plain rule, and the first step of the
//!   momentum rules).
//!
//! A test fires only on a step whose damping does not dominate the curvature,
//! `λ‖s‖² ≤ ‖J s‖²_M`: a heavily damped step is short and predicts little decrease
//! because of λ, not because the iterate is stationary (a Levenberg–Marquardt run
//! stuck at its maximum damping must not "converge"). An exactly zero gradient is never
//! convergence either: the run ends with a reason that says so (a saturated output, a
//! flat region) unless `gtol = 0`. A tolerance of 0 switches its test off.
//!
//! The run then ends with `TerminationReason::SolverExit` whose text starts with
//! `` `NaturalGradient`: converged: `` and names the test, its value and its tolerance;
//! [`converged_by`] reads the test back from a termination reason.

use argmin::core::TerminationReason;
use std::fmt;

/// The tolerances of the three stopping tests (0 switches a test off).
///
/// The defaults (`cost = 1e-12`, `step = 1e-10`, `grad = 1e-8`) were chosen on the
/// certified problems of [`crate::problems::nist`] (table in docs/guide.md, "Stopping"):
/// every Gauss–Newton and Levenberg–Marquardt run that reaches the certified minimiser
/// stops within two steps of agreeing with it to 6 digits, with 6.1 to 10.1 digits
/// (Nielsen's damping update; 6.4 to 10 with the earlier threshold rule); with
/// `cost = 1e-10` the slowly converging MGH09 stopped at 5.3 digits. No run stops on a
/// plateau (the far start of Eckerle4, SSE 0.70; the saturated far start of Rat42).
///
/// Any convergence claim also needs MINPACK's column cosine (when `diag(G)` is
/// available) below `max(grad, √cost, √step)`: a small step or reduction while the
/// residual still correlates with a column of `J` that the damping hides (a saturated
/// parameter) is not convergence.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Tolerances {
    /// `ftol`: relative actual and predicted reduction of the loss.
    pub cost: f64,
    /// `xtol`: relative step length.
    pub step: f64,
    /// `gtol`: cosine between the residual and the range of `J` in `M`.
    pub grad: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self {
            cost: 1e-12,
            step: 1e-10,
            grad: 1e-8,
        }
    }
}

impl Tolerances {
    /// All tests off: the run ends only at argmin's `max_iters` or target cost, or on a
    /// failure.
    pub const NONE: Tolerances = Tolerances {
        cost: 0.0,
        step: 0.0,
        grad: 0.0,
    };
}

/// Checks that a tolerance is finite and ≥ 0.
pub(crate) fn check_tolerance(what: &str, tol: f64) -> Result<f64, String> {
    if tol >= 0.0 && tol.is_finite() {
        Ok(tol)
    } else {
        Err(format!(
            "{what} tolerance must be finite and ≥ 0, got {tol}"
        ))
    }
}

/// What one step measured, for the tests (all on the step's own samples).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(crate) struct StepRecord {
    /// `L_k`.
    pub loss: f64,
    /// `L_k − L_{k+1}` (NaN when `L_{k+1}` is not finite).
    pub actual: f64,
    /// `pred_k`, the decrease of the Gauss–Newton model for the step taken.
    pub predicted: f64,
    /// `‖s_k‖`.
    pub step_norm: f64,
    /// `‖θ_k‖`.
    pub theta_norm: f64,
    /// `‖J_k s_k‖²_M`.
    pub curvature: f64,
    /// `λ‖s_k‖²`.
    pub damping_term: f64,
    /// `gᵀ(G + λI)⁻¹g` when the step came from the plain solve.
    pub g_ginv_g: Option<f64>,
    /// MINPACK's column cosine `max_j |g_j| / √(G_jj · 2|L|)` when `diag(G)` is available.
    pub column_cosine: Option<f64>,
}

/// MINPACK's `gnorm`, `max_j |g_j| / √(G_jj · 2|L|)`: for the squared error
/// `½‖y − u‖²_M` the largest cosine, in `M`, between the residual and a column of `J`
/// (columns with `G_jj = 0` have `g_j = 0` and are skipped, as in MINPACK).
pub(crate) fn column_cosine(g: &[f64], gram_diagonal: &[f64], loss: f64) -> f64 {
    let scale = 2.0 * loss.abs();
    g.iter()
        .zip(gram_diagonal)
        .filter(|&(_, &d)| d > 0.0)
        .map(|(gj, d)| gj.abs() / (d * scale).sqrt())
        .fold(0.0, f64::max)
}

/// Which test ended a run, with the value that met its tolerance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Converged {
    /// `|L_k − L_{k+1}| ≤ ftol·|L_k|` and `pred_k ≤ ftol·|L_k|`.
    RelativeReduction {
        /// `|L_k − L_{k+1}| / |L_k|`.
        actual: f64,
        /// `pred_k / |L_k|`.
        predicted: f64,
        /// `ftol`.
        tol: f64,
    },
    /// `‖s_k‖ ≤ xtol·(‖θ_k‖ + xtol)`.
    RelativeStep {
        /// `‖s_k‖ / (‖θ_k‖ + xtol)`.
        relative: f64,
        /// `xtol`.
        tol: f64,
    },
    /// `c_k ≤ gtol`.
    Gradient {
        /// The cosine `c_k`.
        cosine: f64,
        /// `gtol`.
        tol: f64,
    },
}

/// The name of each test as it appears in the termination reason.
const NAMES: [&str; 3] = ["relative reduction", "relative step", "gradient"];

impl Converged {
    /// The test's name: `"relative reduction"`, `"relative step"` or `"gradient"`.
    pub fn name(&self) -> &'static str {
        match self {
            Converged::RelativeReduction { .. } => NAMES[0],
            Converged::RelativeStep { .. } => NAMES[1],
            Converged::Gradient { .. } => NAMES[2],
        }
    }
}

impl fmt::Display for Converged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Converged::RelativeReduction {
                actual,
                predicted,
                tol,
            } => write!(
                f,
                "relative reduction test: actual {actual:.2e} and predicted {predicted:.2e} \
                 decrease of the loss, relative to the loss, are ≤ tolerance_cost {tol:e}"
            ),
            Converged::RelativeStep { relative, tol } => write!(
                f,
                "relative step test: ‖step‖ / (‖θ‖ + tol) = {relative:.2e} ≤ \
                 tolerance_step {tol:e}"
            ),
            Converged::Gradient { cosine, tol } => write!(
                f,
                "gradient test: cosine between the residual and the range of J in the \
                 metric {cosine:.2e} ≤ tolerance_grad {tol:e}"
            ),
        }
    }
}

/// The prefix of a convergence reason after the solver's name.
pub(crate) const CONVERGED: &str = "converged: ";

/// The name of the test that ended a run (`"relative reduction"`, `"relative step"`,
/// `"gradient"`), or `None` if the run did not end by a convergence test of
/// [`NaturalGradient`](crate::NaturalGradient) (a failure, `max_iters`, a target cost).
pub fn converged_by(reason: &TerminationReason) -> Option<&'static str> {
    let TerminationReason::SolverExit(text) = reason else {
        return None;
    };
    let rest = text.split_once(CONVERGED)?.1;
    NAMES.into_iter().find(|n| rest.starts_with(n))
}

impl Tolerances {
    /// The first test that `record` meets, in MINPACK's order (reduction, step, gradient).
    pub(crate) fn check(&self, r: &StepRecord) -> Option<Converged> {
        // Damping-dominated steps say nothing about stationarity, and neither do small
        // steps while the residual still has a sizeable cosine with a column of J that
        // the damping hides (module docs).
        if r.damping_term > r.curvature || r.curvature.is_nan() {
            return None;
        }
        let guard = self.grad.max(self.cost.sqrt()).max(self.step.sqrt());
        if r.column_cosine.is_some_and(|c| c > guard || c.is_nan()) {
            return None;
        }
        let scale = r.loss.abs();
        if self.cost > 0.0 && scale > 0.0 {
            let actual = r.actual.abs() / scale;
            let predicted = r.predicted / scale;
            if actual <= self.cost && predicted <= self.cost {
                return Some(Converged::RelativeReduction {
                    actual,
                    predicted,
                    tol: self.cost,
                });
            }
        }
        if self.step > 0.0 && r.step_norm <= self.step * (r.theta_norm + self.step) {
            return Some(Converged::RelativeStep {
                relative: r.step_norm / (r.theta_norm + self.step),
                tol: self.step,
            });
        }
        if !(self.grad > 0.0 && scale > 0.0) {
            return None;
        }
        let cosine = r
            .column_cosine
            .or_else(|| r.g_ginv_g.map(|q| (q.max(0.0) / (2.0 * scale)).sqrt()))?;
        (cosine <= self.grad).then_some(Converged::Gradient {
            cosine,
            tol: self.grad,
        })
    }
}

/// The reason a run ends at an exactly zero gradient with a loss that may not be minimal.
pub(crate) fn zero_gradient_reason(loss: f64) -> String {
    format!(
        "the gradient is exactly zero at loss {loss:e}: a stationary point where no step \
         can be computed — a minimum only if the loss is at its lower bound, otherwise a \
         flat region (e.g. a saturated sigmoid or ReLU output, an activation that \
         underflowed). Not reported as convergence; try another start or rescale the \
         inputs; for a sigmoid output fit its logits, with `LogitCrossEntropy` for \
         probabilities (tolerance_grad = 0 switches this stop off)"
    )
}
