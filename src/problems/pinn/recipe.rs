//! The default natural-gradient setting for physics-informed problems, chosen by
//! measurement over every configuration of `experiments pinn` (docs/pinn.md, *One recipe
//! for PINNs*).

use crate::linsolve::LinearSolver;
use crate::solver::NaturalGradient;
use crate::step_control::{DampingRule, LevenbergMarquardt, StepControl, WarmUp};
use crate::step_rule::StepRule;

/// Starting damping of the recipe.
pub const RECIPE_DAMPING: f64 = 1e-10;
/// Range of the recipe's Levenberg–Marquardt damping.
pub const RECIPE_DAMPING_RANGE: (f64, f64) = (1e-12, 1e2);
/// The recipe's watchdog warm-up: 10 plain full steps with λ = 1e-6
/// ([`NaturalGradient::with_warm_up`]).
pub const RECIPE_WARM_UP: WarmUp = WarmUp {
    steps: 10,
    damping: 1e-6,
};
/// Heavy-ball coefficient of the recipe.
pub const RECIPE_BETA: f64 = 0.3;
/// `t_max = 2⁻¹²` of the recipe's [`NaturalGradient::with_line_search_damping`]: λ
/// follows the line search when Armijo keeps less than this fraction of the step.
pub const RECIPE_FOLLOW_T_MAX: f64 = 1.0 / 4096.0;

/// The default for a physics-informed problem with `n` outputs (residuals) and `p`
/// parameters: a watchdog warm-up of 10 plain full steps with λ = 1e-6
/// ([`NaturalGradient::with_warm_up`], [`RECIPE_WARM_UP`]: kept if the loss is then below
/// `L(θ₀)`, otherwise the run goes back to `θ₀`), then Cholesky in the smaller space
/// (`Cholesky` when `p ≤ n`, the sample-space kernel otherwise), Levenberg–Marquardt
/// damping from λ = 1e-10 in `[1e-12, 1e2]` with the narrow threshold rule
/// ([`DampingRule::ThresholdNarrow`]: ×3/2 below ρ = ¼, ×2/3 above ½) and λ following
/// the line search below `t = 2⁻¹²` ([`NaturalGradient::with_line_search_damping`]),
/// Armijo backtracking from α = 1, and transported heavy-ball momentum with β = 0.3.
///
/// Why each part (measured, docs/pinn.md *One recipe for PINNs*):
/// * the warm-up: on advection–diffusion ε = 0.1, m = 1 000 the fastest path raises the
///   loss first (0.50 → 2 983 at step 1, 2.6e-5 at step 10), which no monotone step
///   control takes (they spent 45–55 steps on the saturated start: 12× the record without
///   it, 0.73× with it); where full steps saturate the network or blow up (ε = 0.02, the
///   2-D problems) the watchdog goes back to θ₀ and 10 steps are lost;
/// * the narrow threshold rule: in the final phase the gain ratio of the heavy-ball step
///   under Armijo sits at 0.5–0.75 for hundreds of steps, which the ¾ threshold reads as
///   "leave λ alone" (Poisson 2D 8.8× the record with it, 1.8× with ½);
/// * a small starting λ lets easy problems converge like Gauss–Newton, the
///   Levenberg–Marquardt rule raises λ (by 3/2 per poor step) when a start saturates the
///   network, and following the line search gets a run off a plateau where Armijo keeps
///   `t = 2⁻²⁴` of a Gauss–Newton step 10⁴ times too long (only below `2⁻¹²`: from `2⁻⁸`
///   on it raised λ in the final phase too);
/// * Armijo keeps every step after the warm-up a decrease; heavy ball speeds up the slow
///   final phase (heat equation) at one more jvp per step; the direct solves factor the
///   Gram (about 1 000 unknowns here), which CG cannot match on these badly conditioned
///   systems.
///
/// Measured: within 10× of the tuned record on every configuration of
/// `experiments pinn` (seed 0; the largest ratio 6.9×, `heat1d`), table in docs/pinn.md.
pub fn default_solver(n: usize, p: usize) -> NaturalGradient {
    let linear = if p <= n {
        LinearSolver::Cholesky
    } else {
        LinearSolver::SampleCholesky
    };
    let (min, max) = RECIPE_DAMPING_RANGE;
    NaturalGradient::new()
        .with_linear_solver(linear)
        .and_then(|s| s.with_damping(RECIPE_DAMPING))
        .and_then(|s| {
            s.with_levenberg_marquardt(LevenbergMarquardt {
                min,
                max,
                rule: DampingRule::ThresholdNarrow,
            })
        })
        .and_then(|s| s.with_line_search_damping(RECIPE_FOLLOW_T_MAX))
        .and_then(|s| s.with_step_control(StepControl::armijo()))
        .and_then(|s| s.with_step_rule(StepRule::HeavyBall { beta: RECIPE_BETA }))
        .and_then(|s| s.with_warm_up(RECIPE_WARM_UP))
        .expect("the recipe's settings are valid")
}
