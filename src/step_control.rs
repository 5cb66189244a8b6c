//! Step-size and damping control around a natural-gradient step `δ_k`.
//!
//! * [`StepControl`]: the fraction `t` of the step taken, `θ_{k+1} = θ_k + t δ_k`:
//!   fixed (`t = 1`), Armijo backtracking (argmin's [`BacktrackingLineSearch`] with
//!   [`ArmijoCondition`], run by an inner argmin [`Executor`] as argmin's `NewtonCG` runs
//!   its line search), or the logarithmic grid of energy natural gradient
//!   (`t = 0.5^j`, `j = 0..=J`, keep the best loss);
//! * [`LevenbergMarquardt`]: adaptive damping λ from the reduction ratio
//!   `ρ = actual / predicted decrease` ([`DampingRule`]: Nielsen's continuous update by
//!   default), absolute or relative to the Gram matrix's scale ([`DampingScale`]);
//! * `cap_step_norm` (set by `NaturalGradient::with_max_step_norm`): an optional bound on `‖δ_k‖₂`.
//!
//! The step rule's α (and β) are inside `δ_k` already: the line searches scale the whole
//! step, momentum included.

use crate::linalg::{dot, norm};
use crate::line_search::StepStart;
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::FitProblem;
use argmin::core::{CostFunction, Executor, Gradient, LineSearch, State, TerminationReason};
use argmin::solver::linesearch::condition::ArmijoCondition;
use argmin::solver::linesearch::BacktrackingLineSearch;

/// How much of the step `δ_k` is taken.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum StepControl {
    /// `θ_{k+1} = θ_k + δ_k`: the rule's α is the step size.
    #[default]
    Fixed,
    /// Armijo backtracking along `δ_k`: the largest `t = shrink^j`, `j ≤ max_halvings`,
    /// with `L(θ_k + tδ_k) ≤ L(θ_k) + c·t·g_kᵀδ_k`; if none satisfies it, the smallest is
    /// taken (and the KV says so). Skipped (`t = 1`) when `δ_k` is not a descent direction
    /// (`g_kᵀδ_k ≥ 0`, possible with momentum).
    Armijo {
        /// Sufficient-decrease constant `c ∈ (0, 1)` (typical `1e-4`).
        c: f64,
        /// Backtracking factor in `(0, 1)` (typical `0.5`).
        shrink: f64,
        /// Number of reductions tried at most.
        max_halvings: usize,
    },
    /// The grid of energy natural gradient: try `t = 0.5^j`, `j = 0..=max_halvings`, keep
    /// the `t` with the lowest loss (the first one on ties), whether or not it decreases.
    LogGrid {
        /// `J`: the grid has `J + 1` points.
        max_halvings: usize,
    },
}

impl StepControl {
    /// Armijo backtracking with `c = 1e-4`, halving, at most 30 halvings.
    pub fn armijo() -> Self {
        StepControl::Armijo {
            c: 1e-4,
            shrink: 0.5,
            max_halvings: 30,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        match *self {
            StepControl::Armijo { c, .. } if !(c > 0.0 && c < 1.0) => {
                Err(format!("Armijo constant c must be in (0, 1), got {c}"))
            }
            StepControl::Armijo { shrink, .. } if !(shrink > 0.0 && shrink < 1.0) => Err(format!(
                "Armijo shrink factor must be in (0, 1), got {shrink}"
            )),
            _ => Ok(()),
        }
    }
}

/// A watchdog warm-up (R. M. Chamberlain, M. J. D. Powell, C. Lemaréchal, H. C. Pedersen,
/// *The watchdog technique for forcing convergence in algorithms for constrained
/// optimization*, Math. Programming Study 16, 1982): the first `steps` steps of a run are
/// plain natural-gradient steps `θ ← θ − (G + λ_w I)⁻¹ g` with `λ_w = damping`, α = 1
/// and `t = 1` — no momentum, no line search, no Levenberg–Marquardt update, so the loss
/// may go up on the way. After them the watchdog compares: if the loss is below the
/// initial `L(θ₀)` the run goes on from there, otherwise it goes back to `θ₀` (KV
/// `watchdog`: `kept` or `back_to_start`). Either way the configured settings then take
/// over as at the start of a run (λ from [`with_damping`], no momentum memory); the
/// warm-up steps count against argmin's `max_iters`.
///
/// Why: a monotone step control cannot take a step that raises the loss, and on some
/// PINNs the fastest path does (advection–diffusion ε = 0.1, m = 1 000: the first full
/// step with λ = 1e-6 raises the loss from 0.50 to 2 983 and the tenth is at 2.6e-5,
/// while Armijo keeps the run on the saturated start for 45–55 steps).
/// A non-monotone Armijo test (Grippo–Lampariello–Lucidi's maximum of the last M losses,
/// Zhang–Hager's average) cannot: its reference at the first step is `L(θ₀)` itself, and
/// no argmin line search accepts an increase either. The watchdog bounds the risk: at
/// worst `steps` steps are lost (docs/pinn.md, *One recipe for PINNs*).
///
/// [`with_damping`]: crate::NaturalGradient::with_damping
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct WarmUp {
    /// Steps of the warm-up (≥ 1).
    pub steps: u64,
    /// Its damping `λ_w` (finite, ≥ 0; in the units of [`DampingScale`]).
    pub damping: f64,
}

impl WarmUp {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.steps == 0 {
            return Err("a warm-up needs at least one step, got 0".into());
        }
        if !(self.damping.is_finite() && self.damping >= 0.0) {
            return Err(format!(
                "the warm-up damping must be finite and ≥ 0, got {}",
                self.damping
            ));
        }
        Ok(())
    }
}

/// The outcome of a step control (crate-internal: a public type in a private module, so
/// that the sealed [`crate::line_search::StepSearch`] can return it without naming it in
/// the public API).
mod accepted {
    /// The outcome of a step control: `θ_{k+1} = θ_k + t δ_k` and its loss.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Accepted {
        /// Fraction of the step taken.
        pub t: f64,
        /// `θ_{k+1}`.
        pub theta: Vec<f64>,
        /// The loss at `θ_{k+1}` on the problem the step was computed on.
        pub loss: f64,
        /// What the line search did, for the KV log.
        pub note: std::borrow::Cow<'static, str>,
    }
}
pub(crate) use accepted::Accepted;

/// Applies `control` to the step `δ` from `θ` (loss `L(θ)`, gradient `g`) of `start`.
pub(crate) fn take_step<Mo: Model, Lo: Loss, Me: Metric>(
    control: &StepControl,
    problem: &FitProblem<Mo, Lo, Me>,
    start: &StepStart<'_>,
) -> crate::Result<Accepted> {
    let (theta, delta) = (start.theta, start.delta);
    let at = |t: f64| -> Vec<f64> { theta.iter().zip(delta).map(|(x, d)| x + t * d).collect() };
    match *control {
        StepControl::Fixed => {
            let theta = at(1.0);
            let loss = problem.loss_at(&theta)?;
            Ok(Accepted {
                t: 1.0,
                theta,
                loss,
                note: "fixed".into(),
            })
        }
        StepControl::LogGrid { max_halvings } => {
            let mut best: Option<Accepted> = None;
            let mut t = 1.0;
            for _ in 0..=max_halvings {
                let candidate = at(t);
                let loss = problem.loss_at(&candidate)?;
                if best.as_ref().is_none_or(|b| loss < b.loss) {
                    best = Some(Accepted {
                        t,
                        theta: candidate,
                        loss,
                        note: "log_grid".into(),
                    });
                }
                t *= 0.5;
            }
            Ok(best.expect("the grid has at least one point"))
        }
        StepControl::Armijo {
            c,
            shrink,
            max_halvings,
        } => {
            if dot(start.gradient, delta) >= 0.0 {
                let mut full = take_step(&StepControl::Fixed, problem, start)?;
                full.note = "armijo_skipped_not_descent".into();
                return Ok(full);
            }
            armijo(problem, start, (c, shrink, max_halvings))
        }
    }
}

/// A borrowed problem, so that an inner argmin [`Executor`] can run on it.
struct ByRef<'a, P>(&'a P);

impl<P: CostFunction<Param = Vec<f64>, Output = f64>> CostFunction for ByRef<'_, P> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, x: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        self.0.cost(x)
    }
}

impl<P: Gradient<Param = Vec<f64>, Gradient = Vec<f64>>> Gradient for ByRef<'_, P> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, x: &Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> {
        self.0.gradient(x)
    }
}

/// Armijo backtracking with `(c, shrink, max_halvings)` of [`StepControl::Armijo`].
fn armijo<Mo: Model, Lo: Loss, Me: Metric>(
    problem: &FitProblem<Mo, Lo, Me>,
    start: &StepStart<'_>,
    (c, shrink, max_halvings): (f64, f64, usize),
) -> crate::Result<Accepted> {
    let (theta, loss, g, delta) = (start.theta, start.loss, start.gradient, start.delta);
    let argmin_failure = |e: argmin::core::Error| {
        crate::Error::InvalidSetting(format!("Armijo line search (argmin): {e}"))
    };
    let condition = ArmijoCondition::new(c).map_err(argmin_failure)?;
    let mut search = BacktrackingLineSearch::new(condition)
        .rho(shrink)
        .map_err(argmin_failure)?;
    search.search_direction(delta.to_vec());
    search.initial_step_length(1.0).map_err(argmin_failure)?;
    let res = Executor::new(ByRef(problem), search)
        .configure(|s| {
            s.param(theta.to_vec())
                .gradient(g.to_vec())
                .cost(loss)
                .max_iters(max_halvings as u64)
        })
        .run()
        .map_err(argmin_failure)?;
    let state = res.state();
    // argmin's backtracking tries t = 1 at initialisation and multiplies by `shrink` in
    // each iteration.
    let t = (0..state.get_iter()).fold(1.0, |t, _| t * shrink);
    let satisfied = state.get_termination_reason() == Some(&TerminationReason::SolverConverged);
    Ok(Accepted {
        t,
        theta: state.get_param().cloned().unwrap_or_else(|| theta.to_vec()),
        loss: state.get_cost(),
        note: if satisfied {
            "armijo".into()
        } else {
            "armijo_not_satisfied_smallest_step".into()
        },
    })
}

/// How Levenberg–Marquardt changes λ after a step, from the gain ratio
/// `ρ = (L(θ_k) − L(θ_{k+1})) / (m_k(0) − m_k(δ_k))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum DampingRule {
    /// Nielsen's continuous update (H. B. Nielsen, *Damping parameter in Marquardt's
    /// method*, IMM-REP-1999-05; K. Madsen, H. B. Nielsen, O. Tingleff, *Methods for
    /// non-linear least squares problems*, 2nd ed. 2004, eq. (3.16)): a step is accepted
    /// when `ρ > 0`, and then `λ ← λ·max(1/3, 1 − (2ρ − 1)³)` and `ν ← 2`; on a rejected
    /// one (the loss went up or stayed exactly the same) `λ ← λν`,
    /// `ν ← 2ν`. λ moves on every step — down by up to 3 when the model is good
    /// (`ρ → 1`), up by up to 2 when it is poor (`ρ → 0`) — and consecutive rejections
    /// grow it faster and faster (×2, ×4, ×8, …). The default: on the NIST problems and
    /// the toys it reached the target in 421 iterations summed over 15 runs where the
    /// threshold rule took 768 (Chwirut2 far start: 26 against 116; it lost only on
    /// Eckerle4's far start, 91 against 56); table in docs/performance-solvers.md,
    /// "Damping".
    #[default]
    Nielsen,
    /// The threshold rule natgrad used first: `λ ← 3/2·λ` if `ρ < 1/4` or the step is
    /// rejected, `λ ← 2/3·λ` if `ρ > 3/4`, unchanged in between (a Marquardt-style rule
    /// with mild factors; Nocedal & Wright, *Numerical Optimization*, Alg. 4.1, on λ
    /// instead of the radius). Kept for the records made with it.
    Threshold,
    /// The threshold rule with the upper threshold at ½ instead of ¾: `λ ← 3/2·λ` if
    /// `ρ < 1/4` or the step is rejected, `λ ← 2/3·λ` if `ρ > 1/2`, unchanged in between.
    /// For heavy-ball steps under a line search: in the final phase of the PINN runs the
    /// gain ratio of the accepted momentum step sits at 0.5–0.75 for hundreds of steps,
    /// which [`Threshold`](Self::Threshold) reads as "leave λ alone", so λ stays above
    /// what the run can use. The PINN recipe's rule
    /// (`problems::pinn::default_solver`, after its watchdog warm-up): Poisson 2D
    /// 9.6e-8 → 1.9e-8 (seed 0); without the warm-up it had made advection–diffusion
    /// ε = 0.1, m = 100 worse (5.0e-8 → 1.7e-7), with it 3.4e-8 (docs/pinn.md, *One
    /// recipe for PINNs*).
    ThresholdNarrow,
}

/// Levenberg–Marquardt adaptive damping within `[min, max]`: after each step λ is
/// updated from the reduction ratio `ρ = (L(θ_k) − L(θ_{k+1})) / (m_k(0) − m_k(δ_k))`
/// by `rule` ([`DampingRule::Nielsen`] by default) and clipped to `[min, max]`. With
/// [`DampingScale::GramTrace`] the bounds and λ are relative (dimensionless).
///
/// The predicted decrease is that of the Gauss–Newton quadratic model in the metric,
/// `m_k(δ) = L(θ_k) + g_kᵀδ + ½ ‖J_kδ‖²_M` (exact for a model linear in θ and the loss
/// `½‖u − y‖²_M`; it leaves out the damping term, as Madsen–Nielsen–Tingleff's
/// `L(0) − L(h)` does). A step that increases the loss (or makes it non-finite) is
/// rejected: `θ_{k+1} = θ_k`, λ grows, and the momentum memory is dropped (a restart, KV
/// `momentum_restart`), so that the next step is plain natural gradient from `θ_k` rather
/// than the same momentum term again. When the model predicts no decrease (a momentum
/// step need not be a descent step), ρ carries no information and λ changes only if the
/// loss increased. A direction solve that fails in a way more damping cures (a refused
/// Cholesky factor, a CG breakdown, CG not converging) is a rejected step too, with λ
/// raised as for a loss that went up ([`LevenbergMarquardt::after_failed_solve`], KV
/// `lm_failed_solve`); at the maximum damping it ends the run with a reason that says so.
/// Without Levenberg–Marquardt such a failure ends the run.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LevenbergMarquardt {
    /// Lower bound on λ (> 0).
    pub min: f64,
    /// Upper bound on λ.
    pub max: f64,
    /// How λ follows the gain ratio.
    pub rule: DampingRule,
}

/// What [`LevenbergMarquardt::update`] decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DampingUpdate {
    /// The reduction ratio (NaN when the model predicted no decrease).
    pub rho: f64,
    /// The new damping.
    pub damping: f64,
    /// Nielsen's growth factor for the next rejection (2 after an accepted step; the
    /// threshold rule leaves it alone).
    pub nu: f64,
    /// Whether the step is kept.
    pub accepted: bool,
}

/// Nielsen's growth factor after an accepted step, and at the start of a run.
pub const NIELSEN_NU0: f64 = 2.0;

impl LevenbergMarquardt {
    /// Nielsen's rule ([`DampingRule::Nielsen`]) within `[min, max]`.
    pub fn new(min: f64, max: f64) -> Self {
        Self {
            min,
            max,
            rule: DampingRule::Nielsen,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.min > 0.0 && self.min <= self.max && self.max.is_finite() {
            Ok(())
        } else {
            Err(format!(
                "Levenberg–Marquardt bounds need 0 < min ≤ max < ∞, got [{}, {}]",
                self.min, self.max
            ))
        }
    }

    /// The new damping from the current one `damping`, Nielsen's growth factor `nu`
    /// ([`NIELSEN_NU0`] at the start of a run) and the actual and predicted decreases.
    pub fn update(&self, damping: f64, nu: f64, actual: f64, predicted: f64) -> DampingUpdate {
        // A loss that went up, or became non-finite (NaN compares false).
        let increased = actual.is_nan() || actual < 0.0;
        let rho = if predicted > 0.0 {
            actual / predicted
        } else {
            f64::NAN
        };
        // Nielsen accepts a step only if ρ > 0: a step that predicts a decrease and
        // leaves the loss exactly where it was (rounding level) is rejected, so that λ
        // reaches its maximum and the run ends ("stuck at its maximum damping") instead
        // of accepting null steps forever.
        let rejected = increased || (self.rule == DampingRule::Nielsen && rho == 0.0);
        let (factor, nu) = match self.rule {
            DampingRule::Threshold | DampingRule::ThresholdNarrow => {
                let upper = match self.rule {
                    DampingRule::ThresholdNarrow => 0.5,
                    _ => 0.75,
                };
                let factor = if increased || rho < 0.25 {
                    1.5
                } else if rho > upper {
                    2.0 / 3.0
                } else {
                    1.0
                };
                (factor, nu)
            }
            DampingRule::Nielsen if rejected => (nu, 2.0 * nu),
            // No information in ρ (NaN): λ stays.
            DampingRule::Nielsen if rho.is_nan() => (1.0, NIELSEN_NU0),
            DampingRule::Nielsen => (nielsen_factor(rho), NIELSEN_NU0),
        };
        DampingUpdate {
            rho,
            damping: (damping * factor).clamp(self.min, self.max),
            // ν only multiplies λ, which is clipped: past 2^64 it carries no information.
            nu: nu.min(2f64.powi(64)),
            accepted: !rejected,
        }
    }
}

impl LevenbergMarquardt {
    /// The damping after the direction solve failed at λ = `damping` in a way more
    /// damping cures (a Cholesky factor with a non-positive or cancelled pivot,
    /// [`Error::GramNotPositiveDefinite`](crate::Error::GramNotPositiveDefinite); a CG
    /// breakdown or CG not converging,
    /// [`OperatorNotPositiveDefinite`](crate::linsolve::SolveFailure::OperatorNotPositiveDefinite)
    /// and [`NoConvergence`](crate::linsolve::SolveFailure::NoConvergence)): the step is rejected as one
    /// whose loss went up — `θ_{k+1} = θ_k`, Nielsen's `λ ← λν`, `ν ← 2ν` (the threshold
    /// rule: `λ ← 3/2·λ`), clipped to `max` — instead of ending the run. `G + λI` is
    /// positive definite for every λ > 0 in exact arithmetic; what fails is its rounding
    /// (λ below `ε·‖G‖`) or CG's iteration budget, and both recover as λ grows. Seen on
    /// PINNs under Nesterov (issue 16): at λ = 1e-8 the Gram's largest eigenvalue 2.3e8
    /// made the Cholesky fail at the extrapolated point.
    pub fn after_failed_solve(&self, damping: f64, nu: f64) -> DampingUpdate {
        self.update(damping, nu, f64::NAN, f64::NAN)
    }
}

/// Whether more damping cures this failure of a direction solve: a Cholesky refusal
/// (non-positive or cancelled pivot), a CG breakdown on the operator, or CG stopping at
/// `max_iters`. Not a non-finite value, a metric that cannot be used, a preconditioner
/// or a sketch that failed.
pub(crate) fn damping_cures(failure: &crate::linsolve::SolveFailure) -> bool {
    use crate::linsolve::SolveFailure as F;
    matches!(
        failure,
        F::OperatorNotPositiveDefinite { .. }
            | F::NoConvergence { .. }
            | F::Direct(crate::Error::GramNotPositiveDefinite { .. })
    )
}

/// The reason a Levenberg–Marquardt run ends when the direction solve fails
/// ([`damping_cures`]) at the maximum damping `max`.
pub(crate) fn failed_at_max_reason(max: f64, failure: &str) -> String {
    format!(
        "Levenberg–Marquardt is at its maximum damping λ = {max:e} and the direction solve \
         still fails ({failure}); θ is unchanged. Raise the upper bound of \
         `with_adaptive_damping`, or use `LinearSolver::LeastSquares`"
    )
}

/// Nielsen's factor `max(1/3, 1 − (2ρ − 1)³)` for an accepted step with gain ratio `ρ`
/// (Madsen–Nielsen–Tingleff 2004, eq. (3.16)): 2 as `ρ → 0`, 1 at `ρ = ½`, 1/3 from
/// `ρ = (1 + ∛(2/3))/2 ≈ 0.937` on.
pub fn nielsen_factor(rho: f64) -> f64 {
    (1.0 - (2.0 * rho - 1.0).powi(3)).max(1.0 / 3.0)
}

/// What λ is measured against: `(G_k + λ_k I) δ_k = …` with `λ_k = μ·s_k`, μ the value
/// of `with_damping` (and the one Levenberg–Marquardt adapts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum DampingScale {
    /// `s_k = 1`: λ in the units of `G` (loss units per unit of θ²). The default:
    /// `tr(G)/p` follows the largest column of `J`, so on badly scaled parameters a
    /// relative λ swamps the small eigenvalues (NIST Misra1a, columns ~10⁵ apart, never
    /// converges with it); table in docs/performance-solvers.md, "Damping".
    #[default]
    Absolute,
    /// `s_k = tr(G_k)/p`, the mean eigenvalue of the Gram matrix at `θ_k`, so that μ is
    /// dimensionless and the step does not change when the loss, the residual or the
    /// metric is multiplied by a constant (Madsen–Nielsen–Tingleff 2004 start from
    /// `μ₀ = τ·max_i (JᵀJ)_ii`; this scales every step's λ the same way, with the mean
    /// instead of the maximum). `tr(G_k)` is the sum of the model's
    /// [`gram_diagonal`](crate::Linearization::gram_diagonal) for a diagonal metric;
    /// where that is unavailable, `s_k` is the Rayleigh quotient `‖J_k g_k‖²_M / ‖g_k‖²`
    /// along the gradient (one jvp), which scales the same way.
    GramTrace,
}

/// What the solver carries between steps for the damping: Nielsen's ν and the scale
/// `s_k` of the current step.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(crate) struct DampingMemory {
    /// Nielsen's growth factor for the next rejection.
    pub nu: f64,
    /// `s_k` of [`DampingScale`] for the step being made (1 when absolute).
    pub scale: f64,
}

impl Default for DampingMemory {
    fn default() -> Self {
        Self {
            nu: NIELSEN_NU0,
            scale: 1.0,
        }
    }
}

/// `s_k = tr(G)/p` from the Gram diagonal, or the Rayleigh quotient `‖Jg‖²_M/‖g‖²` when
/// the diagonal is unavailable (`diagonal = None`; `jg_m_sq` computes `‖Jg‖²_M`). A zero
/// or non-finite scale (`G = 0`, `g = 0`) falls back to 1: λ is then absolute.
pub(crate) fn gram_scale(
    diagonal: Option<&[f64]>,
    g: &[f64],
    jg_m_sq: impl FnOnce() -> f64,
) -> f64 {
    let s = match diagonal {
        Some(d) => d.iter().sum::<f64>() / d.len() as f64,
        None => {
            let gg = dot(g, g);
            if gg > 0.0 {
                jg_m_sq() / gg
            } else {
                0.0
            }
        }
    };
    if s > 0.0 && s.is_finite() {
        s
    } else {
        1.0
    }
}

/// The reason a Levenberg–Marquardt run ends when steps computed at the maximum damping
/// `max` are rejected: the loss at the current θ (`loss`), its change along the step
/// (`actual`, negative or NaN) and the model's predicted decrease.
pub(crate) fn stalled_reason(max: f64, loss: f64, actual: f64, predicted: f64) -> String {
    let relative = predicted / loss.abs();
    // An unchanged loss: the step moved θ by less than the loss's rounding can see.
    let hint = if relative <= 1e-12 || actual == 0.0 {
        "the predicted decrease is at rounding level or the loss did not change at all, so \
         θ may already be a minimum to machine precision (a relative-reduction tolerance above it would have stopped the \
         run as converged)"
    } else {
        "the step does not decrease the loss even when damped this much: the quadratic \
         model is wrong at this scale (badly scaled parameters, outputs that overflow, \
         or a kink); raise the upper bound of `with_adaptive_damping`, rescale the \
         parameters or the data, or start closer to a solution"
    };
    format!(
        "Levenberg–Marquardt is stuck at its maximum damping λ = {max:e}: steps from the \
         same θ were rejected (loss {loss:e}, change along the step {:e}, predicted \
         decrease {predicted:e}, {relative:.1e} of the loss); θ is unchanged. {hint}",
        -actual
    )
}

/// The predicted decrease `−(t g_kᵀδ + ½ t² ‖J_kδ‖²_M)` of the Gauss–Newton model for the
/// step `tδ`, from `g_kᵀδ` and `‖J_kδ‖²_M`.
pub fn predicted_decrease(t: f64, g_dot_delta: f64, jd_m_norm_sq: f64) -> f64 {
    -(t * g_dot_delta + 0.5 * t * t * jd_m_norm_sq)
}

/// Scales `delta` in place to norm `cap` if it is longer; returns the factor applied.
pub(crate) fn cap_step_norm(delta: &mut [f64], cap: Option<f64>) -> f64 {
    match cap {
        Some(cap) => {
            let len = norm(delta);
            if len > cap {
                let s = cap / len;
                delta.iter_mut().for_each(|d| *d *= s);
                s
            } else {
                1.0
            }
        }
        None => 1.0,
    }
}

#[cfg(test)]
#[path = "step_control_tests.rs"]
mod tests;
