//! The default natural-gradient setting for physics-informed problems, chosen by
//! measurement over every configuration of `experiments pinn` (docs/pinn.md, *One recipe
//! for PINNs*).

use crate::linsolve::LinearSolver;
use crate::solver::NaturalGradient;
use crate::step_control::{DampingRule, LevenbergMarquardt, StepControl};
use crate::step_rule::StepRule;

/// Starting damping of the recipe.
pub const RECIPE_DAMPING: f64 = 1e-10;
/// Range of the recipe's Levenberg–Marquardt damping.
pub const RECIPE_DAMPING_RANGE: (f64, f64) = (1e-12, 1e2);
/// Heavy-ball coefficient of the recipe.
pub const RECIPE_BETA: f64 = 0.3;
/// `t_max = 2⁻¹²` of the recipe's [`NaturalGradient::with_line_search_damping`]: λ
/// follows the line search when Armijo keeps less than this fraction of the step.
pub const RECIPE_FOLLOW_T_MAX: f64 = 1.0 / 4096.0;

/// The default for a physics-informed problem with `n` outputs (residuals) and `p`
/// parameters: Cholesky in the smaller space (`Cholesky` when `p ≤ n`, the sample-space
/// kernel otherwise), Levenberg–Marquardt damping from λ = 1e-10 in `[1e-12, 1e2]` with
/// the threshold rule ([`DampingRule::Threshold`]: ×3/2 below ρ = ¼, ×2/3 above ¾) and
/// λ following the line search below `t = 2⁻¹²`
/// ([`NaturalGradient::with_line_search_damping`]), Armijo backtracking from α = 1, and
/// transported heavy-ball momentum with β = 0.3.
///
/// Why each part (measured, docs/pinn.md): a small starting λ lets easy problems converge
/// like Gauss–Newton from the first steps, while the Levenberg–Marquardt rule raises λ
/// (by 3/2 per poor step) when a hard start saturates the network (advection–diffusion
/// with ε = 0.02); Armijo keeps every step a decrease; heavy ball speeds up the slow
/// final phase (heat equation) at the cost of one more jvp per step. The direct solves
/// factor the Gram (about 1 000 unknowns here), which CG cannot match on these badly
/// conditioned systems. Following the line search gets a run off a plateau: with a small
/// λ the Gauss–Newton step can be 10⁴ times too long (advection–diffusion ε = 0.1,
/// m = 100, seed 1: Armijo keeps `t = 2⁻²⁴`), the gain ratio of the short step stays in
/// 0.3–0.45 where neither rule raises λ, and without it that run never leaves its start
/// (relative error 0.994 after 300 steps; with it 6.7e-7). Only below `2⁻¹²`: following
/// from `2⁻⁸` on raised λ in the final phase too (Poisson 2D 19×, `heat1d` 9.6× the
/// record, against 8.8× and 8.9× with `2⁻¹²`).
///
/// Limits (measured, docs/pinn.md *One recipe for PINNs*): within 10× of the tuned
/// record on every configuration of `experiments pinn` for seed 0 but advection–diffusion
/// ε = 0.1, m = 1 000 (12×: it spends its first ~100 of 250 steps leaving the saturated
/// start, where the record's fixed λ = 1e-6 takes full steps).
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
                rule: DampingRule::Threshold,
            })
        })
        .and_then(|s| s.with_line_search_damping(RECIPE_FOLLOW_T_MAX))
        .and_then(|s| s.with_step_control(StepControl::armijo()))
        .and_then(|s| s.with_step_rule(StepRule::HeavyBall { beta: RECIPE_BETA }))
        .expect("the recipe's settings are valid")
}
