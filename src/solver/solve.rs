//! The linear solves of one step (docs/math.md §3): the right-hand sides of the rules,
//! warm starts, and what the solves report to the KV.

use super::step::{add, combine, fault, finite, scaled, Failure};
use super::NaturalGradient;
use crate::line_search::StepSearch;
use crate::linsolve::{Rhs, SolveFailure, SolveInfo, WarmStart};
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::{FitProblem, LinearizedProblem};
use argmin::core::KV;

/// What the linear solves of one step did (summed over Nesterov's two solves), written
/// to the step's KV after every solve, so that a step that fails in a solve still
/// reports the solves made so far.
pub(super) struct SolveLog<'k> {
    kv: &'k mut KV,
    solves: u64,
    /// Whether any solve ran CG (only then is `cg_iters` reported).
    cg: bool,
    iters: usize,
    rel_residual: f64,
    last: Option<SolveInfo>,
}

impl<'k> SolveLog<'k> {
    pub(super) fn new(kv: &'k mut KV) -> Self {
        Self {
            kv,
            solves: 0,
            cg: false,
            iters: 0,
            rel_residual: 0.0,
            last: None,
        }
    }

    fn record(&mut self, info: SolveInfo) {
        self.solves += 1;
        if let Some(cg) = info.cg {
            self.cg = true;
            self.iters += cg.iters;
        }
        self.rel_residual = self.rel_residual.max(info.rel_residual);
        self.last = Some(info);
        self.write();
    }

    /// A solve that failed: its CG iterations count, and the KV says why.
    fn failed(&mut self, failure: &crate::linsolve::SolveFailure) {
        use crate::linsolve::SolveFailure as F;
        self.solves += 1;
        self.iters += match *failure {
            F::OperatorNotPositiveDefinite { iteration, .. }
            | F::PreconditionerNotPositiveDefinite { iteration } => {
                self.cg = true;
                iteration
            }
            F::NoConvergence {
                iters,
                rel_residual,
                ..
            } => {
                self.cg = true;
                self.rel_residual = self.rel_residual.max(rel_residual);
                iters
            }
            _ => 0,
        };
        self.write();
    }

    fn write(&mut self) {
        let kv = &mut *self.kv;
        kv.insert("solves", self.solves.into());
        if self.cg {
            kv.insert("cg_iters", (self.iters as u64).into());
        }
        kv.insert("rel_residual", self.rel_residual.into());
        if let Some(info) = &self.last {
            kv.insert("linear_solver", info.method.to_string().into());
            if let Some(cg) = info.cg {
                kv.insert("preconditioner", cg.preconditioner.to_string().into());
            }
        }
    }
}

impl<S: StepSearch> NaturalGradient<S> {
    /// Solves `(G + λI) δ = J_kᵀ r`, `r = β h − α ∇_yℓ` (`r = −α∇_yℓ` without `h`):
    /// `J_kᵀ r = β J_kᵀh − α g` costs one vjp for `h`, none for the gradient.
    pub(super) fn solve_gradient<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
        momentum: Option<(f64, &[f64])>,
        g: &[f64],
        log: &mut SolveLog,
    ) -> Result<Vec<f64>, Failure> {
        let alpha = self.step_size_now();
        let r = combine(momentum, alpha, lin.output_gradient());
        let b = match momentum {
            None => combine(None, alpha, g),
            Some((beta, h)) => {
                let mut jt_h = vec![0.0; g.len()];
                lin.vjp(h, &mut jt_h);
                combine(Some((beta, &jt_h)), alpha, g)
            }
        };
        self.solve(WarmStart::Direction, lin, &r, &b, log)
    }

    /// Nesterov's extrapolation `s = β G_k⁻¹ J_kᵀ h`, `h = M (y_k − y_{k−1})`, by one solve
    /// with `r = β h` (no solve when the right-hand side is zero, e.g. β = 0).
    pub(super) fn solve_extrapolation<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
        beta: f64,
        h: &[f64],
        log: &mut SolveLog,
    ) -> Result<Vec<f64>, Failure> {
        let r = scaled(beta, h);
        let mut b = vec![0.0; lin.problem().n_params()];
        lin.vjp(&r, &mut b);
        if b.iter().all(|&v| v == 0.0) {
            return Ok(b);
        }
        self.solve(WarmStart::Extrapolation, lin, &r, &b, log)
    }

    /// The gradient step `−α G(z)⁻¹ g(z)` at `z = θ + s` (the Nesterov rules).
    pub(super) fn gradient_step_at<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        on: &FitProblem<Mo, Lo, Me>,
        theta: &[f64],
        s: &[f64],
        log: &mut SolveLog,
    ) -> Result<Vec<f64>, Failure> {
        let rule = self.step_rule_now();
        let at_z = |f: Failure| {
            f.at(&format!(
                "the extrapolation point z = θ_k + s of {} (β = {:e}; a smaller β keeps z \
                 nearer θ_k)",
                rule.name(),
                rule.beta()
            ))
        };
        let z = add(theta, s);
        finite("z (the momentum overflows θ; reduce β)", &z).map_err(at_z)?;
        let mut lin_z = on.linearize(&z).map_err(|e| at_z(e.into()))?;
        let g_z = lin_z.gradient();
        fault(&lin_z).map_err(at_z)?;
        finite(
            "the gradient g(z) = J(z)ᵀ∇_yℓ (at finite outputs and ∇_yℓ)",
            &g_z,
        )
        .map_err(at_z)?;
        self.solve_gradient(&mut lin_z, None, &g_z, log)
            .map_err(at_z)
    }

    /// `(G + λI) x = b` with `b = J_kᵀ r`, by the direction solver, warm-started from the
    /// last solution of the system `which`.
    fn solve<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        which: WarmStart,
        lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
        r: &[f64],
        b: &[f64],
        log: &mut SolveLog,
    ) -> Result<Vec<f64>, Failure> {
        // A product the model got wrong (e.g. the vjp of the momentum term) comes first.
        fault(lin)?;
        finite("the output-space right-hand side r of the solve", r)?;
        finite("the right-hand side Jᵀr of the solve", b)?;
        let rhs = Rhs::Cotangent { r, jt_r: Some(b) };
        let lambda = self.lambda();
        let result = self.direction_solver.solve_system(which, lin, rhs, lambda);
        // A product the model got wrong is the cause of whatever the solve reports.
        fault(lin)?;
        let info = result.map_err(|f| {
            log.failed(&f);
            match f {
                // Right-hand side and products were finite (checked above): the solution
                // itself overflows.
                SolveFailure::NonFinite {
                    what: "direction",
                    index,
                } => Failure::Numerical(format!(
                    "the solved direction is not finite at index {index} although the \
                     right-hand side and every Jacobian product were finite: the damped Gram \
                     system is too ill-conditioned or its solution overflows (damping λ = \
                     {:e}) — add damping (`with_damping`, `with_adaptive_damping`) or rescale \
                     the parameters",
                    self.lambda()
                )),
                // More damping cures it: under Levenberg–Marquardt a rejected step.
                f if crate::step_control::damping_cures(&f) => Failure::Solve(f.to_string()),
                f => Failure::Numerical(f.to_string()),
            }
        })?;
        log.record(info);
        let x = self.direction_solver.cache().warm_start(which);
        Ok(x.unwrap_or_default().to_vec())
    }
}
