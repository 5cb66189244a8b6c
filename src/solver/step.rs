//! One iteration of [`NaturalGradient`]: the table of docs/math.md §3, top to bottom.

use super::{exit, NaturalGradient};
use crate::linalg::{dot, norm};
use crate::line_search::{StepSearch, StepStart};
use crate::linsolve::{solve_direction, Rhs, SolveFailure, SolveInfo};
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::momentum::{Momentum, Previous, PreviousOutputs};
use crate::problem::{Evaluations, Linearized, Problem};
use crate::step_control::{
    cap_step_norm, gram_scale, predicted_decrease, stalled_reason, DampingScale,
};
use crate::stopping::{column_cosine, zero_gradient_reason, StepRecord, Tolerances};
use argmin::core::{TerminationReason, KV};
use std::borrow::Cow;
use std::mem::take;

/// Outcome of one step, before it is written to the argmin state.
pub(super) enum Step {
    /// `θ_{k+1}` and its loss on all samples.
    Moved { theta: Vec<f64>, cost: f64, kv: KV },
    /// Levenberg–Marquardt rejected the step: `θ_{k+1} = θ_k`, larger damping.
    Rejected(KV),
    /// The run ends.
    Stop(TerminationReason, KV),
}

/// Levenberg–Marquardt steps rejected in a row at the maximum damping before the run ends
/// (the second repeats the first: same θ, same λ, and no momentum memory after a
/// rejection).
const STALLED_REJECTIONS: u32 = 2;

/// Why a step could not be made.
enum Failure {
    /// Bad input or settings: an argmin error.
    Input(crate::Error),
    /// A numerical failure: the run ends with this reason.
    Numerical(String),
}

/// What to try when a value of the run is not finite.
const NON_FINITE_ADVICE: &str = "reduce the step size, add damping (`with_damping`, \
     `with_adaptive_damping`) or cap the step (`with_max_step_norm`); if θ is reasonable, \
     check the model's code for this quantity (`natgrad::check`)";

impl From<crate::Error> for Failure {
    /// Mid-run, a non-finite value is a numerical failure of the run (θ_k is finite and
    /// was checked at the start), so it ends the run with the error's text — which names
    /// the quantity and the trait method that returned it — and advice; a size mismatch
    /// is a bug in user code, an input error.
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::NonFinite { .. } => {
                Failure::Numerical(format!("{e} — {NON_FINITE_ADVICE}"))
            }
            crate::Error::GramNotPositiveDefinite { .. } | crate::Error::LineSearch(_) => {
                Failure::Numerical(e.to_string())
            }
            // Raised during a step only by a metric that depends on θ (a Deep Ritz
            // energy's Hessian, `pde::RitzModel`) and turns indefinite at this iterate.
            crate::Error::IndefiniteMetric { .. } => Failure::Numerical(e.to_string()),
            e => Failure::Input(e),
        }
    }
}

impl Failure {
    /// Says where a numerical failure happened (`"θ_k"`, `"the extrapolation point"`).
    fn at(self, point: &str) -> Self {
        match self {
            Failure::Numerical(text) => Failure::Numerical(format!("at {point}: {text}")),
            input => input,
        }
    }
}

/// A fault recorded by the checked linearisation (a non-finite product, a wrong-shape
/// Jacobian from user code), as the failure that names it.
fn fault<Mo: Model, Lo: Loss, Me: Metric>(lin: &Linearized<'_, Mo, Lo, Me>) -> Result<(), Failure> {
    lin.fault().map_or(Ok(()), |e| Err(e.clone().into()))
}

/// Fails when `v` (named `what`) has a non-finite entry.
fn finite(what: &str, v: &[f64]) -> Result<(), Failure> {
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Failure::Numerical(format!(
            "{what} is not finite (entry {i} is {}) — {NON_FINITE_ADVICE}",
            v[i]
        ))),
    }
}

/// What the linear solves of one step did (summed over Nesterov's two solves), written
/// to the step's KV after every solve, so that a step that fails in a solve still
/// reports the solves made so far.
struct SolveLog<'k> {
    kv: &'k mut KV,
    solves: u64,
    /// Whether any solve ran CG (only then is `cg_iters` reported).
    cg: bool,
    iters: usize,
    rel_residual: f64,
    last: Option<SolveInfo>,
}

impl<'k> SolveLog<'k> {
    fn new(kv: &'k mut KV) -> Self {
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
        self.cg |= info.method.ends_with("cg");
        self.iters += info.iters;
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
            if info.method.ends_with("cg") {
                kv.insert("preconditioner", info.preconditioner.to_string().into());
            }
        }
    }
}

/// `−α v` or `β h − α v`, elementwise (with `β = 0` bitwise equal to `−α v`).
fn combine(momentum: Option<(f64, &[f64])>, alpha: f64, v: &[f64]) -> Vec<f64> {
    match momentum {
        None => v.iter().map(|v| -(alpha * v)).collect(),
        Some((beta, h)) => h.iter().zip(v).map(|(h, v)| beta * h - alpha * v).collect(),
    }
}

/// `a + b`, elementwise.
fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a + b).collect()
}

/// `t v`, elementwise.
fn scaled(t: f64, v: &[f64]) -> Vec<f64> {
    v.iter().map(|v| t * v).collect()
}

impl<S: StepSearch> NaturalGradient<S> {
    /// One step from `θ_k = theta`; also returns the evaluations made on a mini-batch
    /// problem (those on `problem` itself are counted by the caller).
    pub(super) fn step<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        problem: &Problem<Mo, Lo, Me>,
        theta: &[f64],
    ) -> (crate::Result<Step>, Evaluations) {
        let previous = self.memory.previous.take();
        let mut batch_evaluations = Evaluations::default();
        // Filled as the step goes, so that a failing step still reports what it knew.
        let mut kv = KV::new();
        let samples = match self
            .batch
            .as_mut()
            .map(|b| b.draw(problem.model().n_samples()))
        {
            None => None,
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => return (Err(e), batch_evaluations),
        };
        let outcome = match samples.as_deref().map(|s| problem.select_samples(s)) {
            None => self.step_on(problem, problem, theta, previous.as_ref(), None, &mut kv),
            Some(Err(e)) => Err(Failure::Input(e)),
            Some(Ok(sub)) => {
                let o = self.step_on(problem, &sub, theta, previous.as_ref(), samples, &mut kv);
                batch_evaluations = sub.evaluations();
                o
            }
        };
        let outcome = match outcome {
            Ok(Step::Rejected(mut kv)) => {
                // Restart: θ_k stays, so keeping the momentum memory would propose the same
                // momentum term again with only λ larger — and once λ dominates `G` every
                // term of the step scales like 1/λ, so a step that was no descent
                // direction never becomes one. Without the memory the next step is a
                // plain natural-gradient step from θ_k, a descent direction.
                let restarted = previous.is_some()
                    && !matches!(self.momentum, Momentum::Plain | Momentum::GradientDescent);
                kv.insert("momentum_restart", restarted.into());
                Ok(Step::Rejected(kv))
            }
            Ok(step) => Ok(step),
            Err(Failure::Input(e)) => Err(e),
            Err(Failure::Numerical(reason)) => {
                let reason = exit(reason);
                if let TerminationReason::SolverExit(text) = &reason {
                    kv.insert("reason", text.clone().into());
                }
                Ok(Step::Stop(reason, kv))
            }
        };
        (outcome, batch_evaluations)
    }

    /// The step computed on `on` (the mini-batch problem, or `all` itself).
    fn step_on<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        all: &Problem<Mo, Lo, Me>,
        on: &Problem<Mo, Lo, Me>,
        theta: &[f64],
        previous: Option<&Previous>,
        samples: Option<Vec<usize>>,
        kv: &mut KV,
    ) -> Result<Step, Failure> {
        let rule = self.momentum;
        let prev_outputs = match previous {
            Some(prev) if rule.uses_previous_outputs() => {
                Some(self.previous_on(on, prev, samples.as_deref())?)
            }
            _ => None,
        };

        let mut lin = on
            .linearize(theta)
            .map_err(|e| Failure::from(e).at("θ_k"))?;
        let loss = lin.loss();
        // g_k on all samples was formed at the end of the step that moved to θ_k.
        let g = match &self.memory.gradient {
            Some(at) if samples.is_none() && at.theta == theta => at.gradient.clone(),
            _ => lin.gradient(),
        };
        let grad_norm = norm(&g);
        let tested = self.tolerances != Tolerances::NONE;
        let diagonal = self.scale_damping(&mut lin, &g, tested);
        *kv = argmin::kv!(
            "start_loss" => loss; "grad_norm" => grad_norm; "damping" => self.lambda();
            "momentum" => rule.name(); "beta" => rule.beta();
        );
        if self.damping_scale != DampingScale::Absolute {
            kv.insert("damping_relative", self.damping.into());
        }
        if let Some(s) = &samples {
            kv.insert("batch_size", (s.len() as u64).into());
        }
        fault(&lin).map_err(|f| f.at("θ_k"))?;
        finite(
            "the gradient g_k = J_kᵀ∇_yℓ (at finite outputs and ∇_yℓ)",
            &g,
        )?;
        self.memory.record = None;
        // An exactly zero gradient is no convergence (crate::stopping); with
        // tolerance_grad = 0 the run goes on, and no test fires on its zero steps.
        let zero_gradient = g.iter().all(|&v| v == 0.0);
        if zero_gradient && self.tolerances.grad > 0.0 {
            return Ok(Step::Stop(exit(zero_gradient_reason(loss)), take(kv)));
        }

        // The rule (docs/math.md §3). `previous` is `None` at k = 0: the Plain step.
        let alpha = self.step_size;
        let mut log = SolveLog::new(kv);
        let mut delta = match (rule, previous) {
            // G = I: δ_k = −α g_k
            (Momentum::GradientDescent, _) => combine(None, alpha, &g),
            // G_k δ_k = −α g_k
            (Momentum::Plain, _) | (_, None) => {
                self.solve_gradient(&mut lin, None, &g, &mut log)?
            }
            // G_k δ_k = β J_kᵀ h − α g_k, h = M J_{k−1}δ_{k−1} | M (y_k − y_{k−1}) | ∇ℓ(y_{k−1})
            (
                Momentum::HeavyBall { beta }
                | Momentum::FiniteDifference { beta }
                | Momentum::LaggedGradient { beta },
                Some(_),
            ) => {
                let prev = prev_outputs.as_deref().expect("read above for these rules");
                let h = rule.output_term(&lin, prev).ok_or_else(|| {
                    Failure::Input(crate::Error::InvalidSetting(
                        "heavy ball: J_{k−1}δ_{k−1} missing from the previous step".into(),
                    ))
                })?;
                self.solve_gradient(&mut lin, Some((beta, &h)), &g, &mut log)?
            }
            // δ_k = β δ_{k−1} − α G_k⁻¹ g_k
            (Momentum::ParamHeavyBall { beta }, Some(prev)) => {
                let d = self.solve_gradient(&mut lin, None, &g, &mut log)?;
                add(&scaled(beta, &prev.delta), &d)
            }
            // z = θ_k + β G_k⁻¹ J_kᵀ M (y_k − y_{k−1});  θ_{k+1} = z − α G(z)⁻¹ g(z)
            (Momentum::Nesterov { beta }, Some(_)) => {
                let prev = prev_outputs.as_deref().expect("read above for this rule");
                let h = rule.output_term(&lin, prev).unwrap_or_default();
                let s = self.solve_extrapolation(&mut lin, beta, &h, &mut log)?;
                add(&s, &self.gradient_step_at(on, theta, &s, &mut log)?)
            }
            // z = θ_k + β (θ_k − θ_{k−1});  θ_{k+1} = z − α G(z)⁻¹ g(z)
            (Momentum::ParamNesterov { beta }, Some(prev)) => {
                let s = scaled(beta, &prev.delta);
                add(&s, &self.gradient_step_at(on, theta, &s, &mut log)?)
            }
        };
        // (`log`, which borrows `kv`, ends here.)

        // gᵀ(G + λI)⁻¹g of a plain solve δ = −α(G + λI)⁻¹g, for the gradient test.
        let column_cosine = diagonal.map(|d| column_cosine(&g, &d, loss));
        let plain_solve = !matches!(rule, Momentum::GradientDescent)
            && (matches!(rule, Momentum::Plain) || previous.is_none());
        let g_ginv_g = plain_solve.then(|| -dot(&g, &delta) / alpha);

        // Step control: cap, then J_kδ_k (carried by heavy ball; curvature of LM's model
        // and of the stopping tests).
        cap_step_norm(&mut delta, self.max_step_norm);
        let lm = self.adaptive_damping;
        let jd = if rule.uses_jvp_of_step() || lm.is_some() || tested {
            let mut jd = vec![0.0; lin.outputs().len()];
            lin.jvp(&delta, &mut jd);
            Some(jd)
        } else {
            None
        };
        let jd_m_sq = match &jd {
            Some(jd) if lm.is_some() || tested => lin.metric_norm_sq(jd),
            _ => 0.0,
        };
        let outputs = PreviousOutputs {
            outputs: lin.outputs().to_vec(),
            output_gradient: lin.output_gradient().to_vec(),
            jvp_delta: None,
        };
        fault(&lin).map_err(|f| f.at("θ_k"))?;
        drop(lin);
        finite("the step δ_k", &delta)?;
        finite("θ_k + δ_k (the step overflows θ)", &add(theta, &delta))?;
        let start = StepStart {
            theta,
            loss,
            gradient: &g,
            delta: &delta,
        };
        let accepted = self.step_control.search(on, &start)?;
        let t = accepted.t;
        kv.insert("step_scale", t.into());
        kv.insert("line_search", accepted.note.to_string().into());
        kv.insert("step_norm", (t * norm(&delta)).into());

        let predicted = predicted_decrease(t, dot(&g, &delta), jd_m_sq);
        let step_norm = t * norm(&delta);
        if tested && !zero_gradient {
            let damping = match rule {
                Momentum::GradientDescent => 0.0,
                _ => self.lambda(),
            };
            self.memory.record = Some(StepRecord {
                loss,
                actual: loss - accepted.loss,
                predicted,
                step_norm,
                theta_norm: norm(theta),
                curvature: t * t * jd_m_sq,
                damping_term: damping * step_norm * step_norm,
                g_ginv_g,
                column_cosine,
            });
        }
        if let Some(lm) = lm {
            let at_max = self.damping >= lm.max;
            let nu = self.memory.damping.nu;
            let update = lm.update(self.damping, nu, loss - accepted.loss, predicted);
            kv.insert("lm_rho", update.rho.into());
            self.damping = update.damping;
            self.memory.damping.nu = update.nu;
            if !update.accepted {
                self.memory.rejected_at_max = if at_max {
                    self.memory.rejected_at_max + 1
                } else {
                    0
                };
                if self.memory.rejected_at_max >= STALLED_REJECTIONS {
                    let reason = stalled_reason(lm.max, loss, loss - accepted.loss, predicted);
                    return Ok(Step::Stop(exit(reason), take(kv)));
                }
                return Ok(Step::Rejected(take(kv)));
            }
            self.memory.rejected_at_max = 0;
        } else if !accepted.loss.is_finite() {
            // The model may know where (a PDE term and point): its linearisation says.
            // Else the forward pass or the loss says which value.
            let cause = match on.linearize(&accepted.theta) {
                Err(e) => e.to_string(),
                Ok(_) => on
                    .non_finite_loss(&accepted.theta, "θ_k + tδ_k")
                    .to_string(),
            };
            return Err(Failure::Numerical(format!(
                "the loss is not finite after the step (α = {alpha}, λ = {:e}): {cause}; \
                 reduce the step size, increase the damping or use adaptive damping",
                self.lambda()
            )));
        }

        // What the next step needs of this one.
        let delta = scaled(t, &delta);
        self.memory.previous = Some(Previous {
            theta: theta.to_vec(),
            delta,
            outputs: PreviousOutputs {
                jvp_delta: jd
                    .filter(|_| rule.uses_jvp_of_step())
                    .map(|jd| scaled(t, &jd)),
                ..outputs
            },
            samples,
        });
        let cost = if std::ptr::eq(all, on) {
            accepted.loss
        } else {
            all.loss_at(&accepted.theta)?
        };
        // For the state (argmin's convention: the gradient at the returned iterate) and for
        // the next step.
        self.memory.gradient = super::GradientAt::at(all, &accepted.theta);
        Ok(Step::Moved {
            theta: accepted.theta,
            cost,
            kv: take(kv),
        })
    }

    /// The damping λ_k of this step's solves: λ, or `μ·s_k` relative to the Gram's
    /// scale ([`DampingScale`]).
    fn lambda(&self) -> f64 {
        self.damping * self.memory.damping.scale
    }

    /// Sets this step's damping scale `s_k` ([`DampingScale`]); returns `diag(G_k)` when
    /// the stopping tests need it (`tested`) and the model has it.
    fn scale_damping<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        lin: &mut Linearized<'_, Mo, Lo, Me>,
        g: &[f64],
        tested: bool,
    ) -> Option<Vec<f64>> {
        let relative = self.damping_scale == DampingScale::GramTrace;
        let diagonal = (tested || relative)
            .then(|| lin.gram_diagonal(0.0))
            .flatten();
        self.memory.damping.scale = if relative {
            gram_scale(diagonal.as_deref(), g, || {
                let mut jg = vec![0.0; lin.outputs().len()];
                lin.jvp(g, &mut jg);
                lin.metric_norm_sq(&jg)
            })
        } else {
            1.0
        };
        diagonal.filter(|_| tested)
    }

    /// The previous iterate's output vectors on the samples of this step: kept from the
    /// previous step when the samples are the same, otherwise evaluated at `θ_{k−1}` on
    /// the current samples (one forward pass, and one jvp for heavy ball).
    fn previous_on<'a, Mo: Model, Lo: Loss, Me: Metric>(
        &self,
        on: &Problem<Mo, Lo, Me>,
        prev: &'a Previous,
        samples: Option<&[usize]>,
    ) -> Result<Cow<'a, PreviousOutputs>, Failure> {
        if prev.samples.as_deref() == samples {
            return Ok(Cow::Borrowed(&prev.outputs));
        }
        let at_previous = |f: Failure| f.at("θ_{k−1} on this step's samples");
        let mut lin = on
            .linearize(&prev.theta)
            .map_err(|e| at_previous(e.into()))?;
        let jvp_delta = self.momentum.uses_jvp_of_step().then(|| {
            let mut jd = vec![0.0; lin.outputs().len()];
            lin.jvp(&prev.delta, &mut jd);
            jd
        });
        fault(&lin).map_err(at_previous)?;
        Ok(Cow::Owned(PreviousOutputs {
            outputs: lin.outputs().to_vec(),
            output_gradient: lin.output_gradient().to_vec(),
            jvp_delta,
        }))
    }

    /// Solves `(G + λI) δ = J_kᵀ r`, `r = β h − α ∇_yℓ` (`r = −α∇_yℓ` without `h`):
    /// `J_kᵀ r = β J_kᵀh − α g` costs one vjp for `h`, none for the gradient.
    fn solve_gradient<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        lin: &mut Linearized<'_, Mo, Lo, Me>,
        momentum: Option<(f64, &[f64])>,
        g: &[f64],
        log: &mut SolveLog,
    ) -> Result<Vec<f64>, Failure> {
        let alpha = self.step_size;
        let r = combine(momentum, alpha, lin.output_gradient());
        let b = match momentum {
            None => combine(None, alpha, g),
            Some((beta, h)) => {
                let mut jt_h = vec![0.0; g.len()];
                lin.vjp(h, &mut jt_h);
                combine(Some((beta, &jt_h)), alpha, g)
            }
        };
        let mut warm = self.memory.warm_gradient.take();
        let x = self.solve(lin, &r, &b, &mut warm, log);
        self.memory.warm_gradient = warm;
        x
    }

    /// Nesterov's extrapolation `s = β G_k⁻¹ J_kᵀ h`, `h = M (y_k − y_{k−1})`, by one solve
    /// with `r = β h` (no solve when the right-hand side is zero, e.g. β = 0).
    fn solve_extrapolation<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        lin: &mut Linearized<'_, Mo, Lo, Me>,
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
        let mut warm = self.memory.warm_extrapolation.take();
        let x = self.solve(lin, &r, &b, &mut warm, log);
        self.memory.warm_extrapolation = warm;
        x
    }

    /// The gradient step `−α G(z)⁻¹ g(z)` at `z = θ + s` (the Nesterov rules).
    fn gradient_step_at<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        on: &Problem<Mo, Lo, Me>,
        theta: &[f64],
        s: &[f64],
        log: &mut SolveLog,
    ) -> Result<Vec<f64>, Failure> {
        let rule = self.momentum;
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

    /// `(G + λI) x = b` with `b = J_kᵀ r`, warm-started from `warm` (updated to `x`).
    fn solve<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        lin: &mut Linearized<'_, Mo, Lo, Me>,
        r: &[f64],
        b: &[f64],
        warm: &mut Option<Vec<f64>>,
        log: &mut SolveLog,
    ) -> Result<Vec<f64>, Failure> {
        // A product the model got wrong (e.g. the vjp of the momentum term) comes first.
        fault(lin)?;
        finite("the output-space right-hand side r of the solve", r)?;
        finite("the right-hand side Jᵀr of the solve", b)?;
        let mut x = match warm.take() {
            Some(w) if w.len() == b.len() => w,
            _ => vec![0.0; b.len()],
        };
        let result = solve_direction(
            lin,
            Rhs::Cotangent { r, jt_r: Some(b) },
            &mut x,
            self.lambda(),
            &self.linear_solver,
            &mut self.solve_cache,
            self.parallelism.par(),
        );
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
                f => Failure::Numerical(f.to_string()),
            }
        })?;
        log.record(info);
        *warm = Some(x.clone());
        Ok(x)
    }
}
