//! The step rules of docs/math.md §3: natural gradient with momentum in function space.
//!
//! Every single-solve rule solves `(G_k + λI) δ_k = J_kᵀ r` for an output-space vector
//!
//! ```text
//! r = β h − α ∇_y ℓ(y_k),
//! ```
//!
//! where the momentum term `h ∈ Rⁿ` is what `StepRule::output_term` (crate-internal) returns:
//!
//! | rule | `h` |
//! |---|---|
//! | `Plain` | none (`r = −α∇_yℓ`) |
//! | `HeavyBall` | `M J_{k−1}δ_{k−1}` (so `J_kᵀh = G_{k,k−1}δ_{k−1}`, the transport) |
//! | `FiniteDifference` | `M (y_k − y_{k−1})` |
//! | `LaggedGradient` | `∇_y ℓ(y_{k−1})` |
//! | `Nesterov` (first solve, `r = β h`) | `M (y_k − y_{k−1})` |
//!
//! The parameter-space rules (`ParamHeavyBall`, `ParamNesterov`) and `GradientDescent`
//! need no output vector. The solver ([`crate::NaturalGradient`]) reads the table.
//! [`transport`] applies `G_k⁻¹ G_{k,k−1}` to a vector, with the mixed product of
//! [`LinearizedProblem::transport_gram`].

use crate::error::check_len;
use crate::linsolve::{DirectionSolver, Rhs, SolveFailure};
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::LinearizedProblem;

/// A step rule of docs/math.md §3, with its momentum coefficient β (any finite real; the
/// lagged-gradient rule is also used with β < 0).
///
/// At `k = 0` there is no previous iterate and every rule takes the `Plain` step. With
/// `β = 0` every rule reproduces `Plain` exactly.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum StepRule {
    /// Plain natural gradient: `G_k δ_k = −α g_k`.
    #[default]
    Plain,
    /// Transported heavy ball: `G_k δ_k = β G_{k,k−1} δ_{k−1} − α g_k`.
    HeavyBall {
        /// Momentum coefficient β.
        beta: f64,
    },
    /// Finite-difference momentum: `G_k δ_k = β J_kᵀ M (y_k − y_{k−1}) − α g_k`.
    FiniteDifference {
        /// Momentum coefficient β.
        beta: f64,
    },
    /// Lagged gradient: `G_k δ_k = β J_kᵀ ∇_y ℓ(y_{k−1}) − α g_k`.
    LaggedGradient {
        /// Momentum coefficient β (often negative).
        beta: f64,
    },
    /// Functional Nesterov: `z = θ_k + β G_k⁻¹ J_kᵀ M (y_k − y_{k−1})`, then
    /// `θ_{k+1} = z − α G(z)⁻¹ g(z)` (two solves).
    Nesterov {
        /// Momentum coefficient β.
        beta: f64,
    },
    /// Parameter-space heavy ball: `δ_k = β δ_{k−1} − α G_k⁻¹ g_k`.
    ParamHeavyBall {
        /// Momentum coefficient β.
        beta: f64,
    },
    /// Parameter-space Nesterov: `z = θ_k + β (θ_k − θ_{k−1})`,
    /// `θ_{k+1} = z − α G(z)⁻¹ g(z)`.
    ParamNesterov {
        /// Momentum coefficient β.
        beta: f64,
    },
    /// Plain gradient descent (`G = I`): `δ_k = −α g_k`. For comparison.
    GradientDescent,
}

impl StepRule {
    /// The name used in docs/math.md, logs and the `toys` example (`heavy_ball`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            StepRule::Plain => "plain",
            StepRule::HeavyBall { .. } => "heavy_ball",
            StepRule::FiniteDifference { .. } => "finite_difference",
            StepRule::LaggedGradient { .. } => "lagged_gradient",
            StepRule::Nesterov { .. } => "nesterov",
            StepRule::ParamHeavyBall { .. } => "param_heavy_ball",
            StepRule::ParamNesterov { .. } => "param_nesterov",
            StepRule::GradientDescent => "gd",
        }
    }

    /// The rule called `name` (as [`StepRule::name`]) with coefficient β (ignored by
    /// `plain` and `gd`); `None` for an unknown name.
    pub fn from_name(name: &str, beta: f64) -> Option<Self> {
        Some(match name {
            "plain" => StepRule::Plain,
            "heavy_ball" => StepRule::HeavyBall { beta },
            "finite_difference" => StepRule::FiniteDifference { beta },
            "lagged_gradient" => StepRule::LaggedGradient { beta },
            "nesterov" => StepRule::Nesterov { beta },
            "param_heavy_ball" => StepRule::ParamHeavyBall { beta },
            "param_nesterov" => StepRule::ParamNesterov { beta },
            "gd" => StepRule::GradientDescent,
            _ => return None,
        })
    }

    /// Every rule's name, in the order of docs/math.md §3.
    pub const NAMES: [&'static str; 8] = [
        "gd",
        "plain",
        "heavy_ball",
        "finite_difference",
        "lagged_gradient",
        "nesterov",
        "param_heavy_ball",
        "param_nesterov",
    ];

    /// The momentum coefficient β (0 for `Plain` and `GradientDescent`).
    pub fn beta(&self) -> f64 {
        match *self {
            StepRule::Plain | StepRule::GradientDescent => 0.0,
            StepRule::HeavyBall { beta }
            | StepRule::FiniteDifference { beta }
            | StepRule::LaggedGradient { beta }
            | StepRule::Nesterov { beta }
            | StepRule::ParamHeavyBall { beta }
            | StepRule::ParamNesterov { beta } => beta,
        }
    }

    /// Whether the rule reads the previous iterate's output vectors `y_{k−1}`,
    /// `∇_yℓ(y_{k−1})` or `J_{k−1}δ_{k−1}` (and so needs them re-evaluated on a new batch).
    pub fn uses_previous_outputs(&self) -> bool {
        matches!(
            self,
            StepRule::HeavyBall { .. }
                | StepRule::FiniteDifference { .. }
                | StepRule::LaggedGradient { .. }
                | StepRule::Nesterov { .. }
        )
    }

    /// Whether the rule carries `J_kδ_k` to the next step (transported heavy ball).
    pub fn uses_jvp_of_step(&self) -> bool {
        matches!(self, StepRule::HeavyBall { .. })
    }

    /// The output-space momentum term `h` (see the module table) at the current
    /// linearisation `lin` (at `θ_k`) from the previous iterate's vectors; `None` for
    /// the rules without one.
    pub(crate) fn output_term<Mo: Model, Lo: Loss, Me: Metric>(
        &self,
        lin: &LinearizedProblem<'_, Mo, Lo, Me>,
        prev: &PreviousOutputs,
    ) -> Option<Vec<f64>> {
        let metric_times = |v: &[f64]| {
            let mut out = vec![0.0; v.len()];
            lin.apply_metric(v, &mut out);
            out
        };
        let difference = || -> Vec<f64> {
            lin.outputs()
                .iter()
                .zip(&prev.outputs)
                .map(|(y, y_prev)| y - y_prev)
                .collect()
        };
        match self {
            StepRule::HeavyBall { .. } => prev.jvp_delta.as_deref().map(metric_times),
            StepRule::FiniteDifference { .. } | StepRule::Nesterov { .. } => {
                Some(metric_times(&difference()))
            }
            StepRule::LaggedGradient { .. } => Some(prev.output_gradient.clone()),
            _ => None,
        }
    }
}

/// The previous iterate's output-space vectors, on the sample points of the current step.
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(crate) struct PreviousOutputs {
    /// `y_{k−1}`.
    pub(crate) outputs: Vec<f64>,
    /// `∇_y ℓ(y_{k−1})`.
    pub(crate) output_gradient: Vec<f64>,
    /// `J_{k−1} δ_{k−1}` (transported heavy ball only).
    pub(crate) jvp_delta: Option<Vec<f64>>,
}

/// What a step rule keeps of iterate `k−1`: parameters, step, and output vectors on the
/// samples they were evaluated on. Part of the solver state, so it is checkpointed.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(crate) struct Previous {
    /// `θ_{k−1}`.
    pub(crate) theta: Vec<f64>,
    /// `δ_{k−1} = θ_k − θ_{k−1}`.
    pub(crate) delta: Vec<f64>,
    /// The output vectors at `θ_{k−1}`.
    pub(crate) outputs: PreviousOutputs,
    /// The mini-batch the outputs were evaluated on (`None`: all samples).
    pub(crate) samples: Option<Vec<usize>>,
}

/// The transport `G_k⁻¹ G_{k,k−1} v` (docs/math.md §3) of a tangent vector `v` at `θ_{k−1}` to
/// coefficients at `θ_k`: the M-orthogonal projection of the function `J_{k−1} v` onto
/// the tangent space at `θ_k`. One jvp at `θ_{k−1}`, one metric product (at `θ_k`), and a
/// solve by `G_k + λI` with right-hand side `J_kᵀ r`, `r = M J_{k−1} v` — the product of
/// [`LinearizedProblem::transport_gram`], handed to the solver as the
/// cotangent `r` so that sample-space solvers work too. The solve is `solver`'s
/// ([`DirectionSolver::solve`]: warm-started from, and kept as, its last direction).
pub fn transport<'p, Mo: Model, Lo: Loss, Me: Metric>(
    current: &mut LinearizedProblem<'p, Mo, Lo, Me>,
    previous: &mut LinearizedProblem<'p, Mo, Lo, Me>,
    v: &[f64],
    damping: f64,
    solver: &mut DirectionSolver,
) -> Result<Vec<f64>, SolveFailure> {
    let n = current.outputs().len();
    check_len(
        "transport: outputs at θ_{k−1} vs θ_k",
        n,
        previous.outputs().len(),
    )
    .and_then(|()| {
        check_len(
            "transport: v vs parameters",
            current.problem().n_params(),
            v.len(),
        )
    })
    .map_err(SolveFailure::Direct)?;
    let mut jv = vec![0.0; n];
    previous.jvp(v, &mut jv);
    let mut r = vec![0.0; n];
    current.apply_metric(&jv, &mut r);
    solver.solve(current, Rhs::Cotangent { r: &r, jt_r: None }, damping)?;
    Ok(solver.direction().to_vec())
}
