//! Step preparation at `θ_k` (docs/math.md §3, up to the step control): on the
//! linearisation at `θ_k`, the start (loss, gradient `g_k`, this step's damping λ_k), the
//! step rule's direction `δ_k` (one solve, two for the Nesterov rules, none for gradient
//! descent), and what the step control needs of `J_k` (`J_kδ_k`, `‖J_kδ_k‖²_M`); the
//! previous iterate's output vectors on this step's samples.

use super::solve::SolveLog;
use super::step::{add, combine, fault, finite, scaled, Failure, StepAt};
use super::NaturalGradient;
use crate::linalg::{dot, norm};
use crate::line_search::StepSearch;
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::{FitProblem, LinearizedProblem};
use crate::step_control::{cap_step_norm, gram_scale, DampingScale};
use crate::step_rule::{Previous, PreviousOutputs, StepRule};
use crate::stopping::{column_cosine, zero_gradient_reason, Tolerances};
use argmin::core::KV;
use std::borrow::Cow;

/// The part of a step made on its linearisation (docs/math.md §3 up to the step
/// control): the start at `θ_k` and the measured direction, or the end of the run.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(super) enum Prepared {
    /// Ready for the step control.
    Ready { start: Start, measured: Measured },
    /// The run ends with this reason (an exactly zero gradient).
    Stop(String),
}

/// What the start of a step found at `θ_k`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(super) struct Start {
    /// `ℓ(θ_k)` on the step's samples.
    pub(super) loss: f64,
    /// `g_k = J_kᵀ∇_yℓ`.
    pub(super) g: Vec<f64>,
    pub(super) zero_gradient: bool,
    /// The gradient test's cosine, when the stopping tests run and the model has
    /// `diag(G_k)`.
    pub(super) column_cosine: Option<f64>,
}

/// What the step needs of `J_k` after the rule (see `measure`).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(super) struct Measured {
    /// `δ_k`, capped.
    pub(super) delta: Vec<f64>,
    /// `J_kδ_k`, when heavy ball, LM or the stopping tests need it.
    pub(super) jd: Option<Vec<f64>>,
    /// `‖J_kδ_k‖²_M` (0 when not needed).
    pub(super) jd_m_sq: f64,
    pub(super) outputs: PreviousOutputs,
    /// `gᵀ(G + λI)⁻¹g` of a plain solve, for the gradient test.
    pub(super) g_ginv_g: Option<f64>,
}

impl<S: StepSearch> NaturalGradient<S> {
    /// On the linearisation at `θ_k`: the start (with `gradient` when it is known
    /// already), the step rule and what the step control needs of `J_k`.
    pub(super) fn prepare<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        mut lin: LinearizedProblem<'_, Mo, Lo, Me>,
        at: &StepAt<'_, Mo, Lo, Me>,
        gradient: Option<Vec<f64>>,
        kv: &mut KV,
    ) -> Result<Prepared, Failure> {
        let start = self.start(&mut lin, at, gradient, kv)?;
        // An exactly zero gradient is no convergence (crate::stopping); with
        // tolerance_grad = 0 the run goes on, and no test fires on its zero steps.
        if start.zero_gradient && self.tolerances.grad > 0.0 {
            return Ok(Prepared::Stop(zero_gradient_reason(start.loss)));
        }
        let delta = self.direction(&mut lin, at, &start.g, kv)?;
        let measured = self.measure(lin, at, &start, delta)?;
        Ok(Prepared::Ready { start, measured })
    }

    /// At `θ_k`: the loss, the gradient `g_k` (formed at the end of the previous step on
    /// all samples, else one vjp), this step's damping, and the KV's first entries.
    pub(super) fn start<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
        at: &StepAt<'_, Mo, Lo, Me>,
        gradient: Option<Vec<f64>>,
        kv: &mut KV,
    ) -> Result<Start, Failure> {
        let rule = self.step_rule_now();
        let loss = lin.loss();
        let g = match (gradient, &self.memory.gradient) {
            (Some(g), _) => g,
            (None, Some(kept)) if at.samples.is_none() && kept.theta == at.theta => {
                kept.gradient.clone()
            }
            _ => lin.gradient(),
        };
        let tested = self.tolerances != Tolerances::NONE;
        let diagonal = self.scale_damping(lin, &g, tested);
        *kv = argmin::kv!(
            "start_loss" => loss; "grad_norm" => norm(&g); "damping" => self.lambda();
            "momentum" => rule.name(); "beta" => rule.beta();
        );
        if self.damping_scale != DampingScale::Absolute {
            kv.insert("damping_relative", self.damping.into());
        }
        if let Some(s) = &at.samples {
            kv.insert("batch_size", (s.len() as u64).into());
        }
        fault(lin).map_err(|f| f.at("θ_k"))?;
        finite(
            "the gradient g_k = J_kᵀ∇_yℓ (at finite outputs and ∇_yℓ)",
            &g,
        )?;
        Ok(Start {
            loss,
            zero_gradient: g.iter().all(|&v| v == 0.0),
            column_cosine: diagonal.map(|d| column_cosine(&g, &d, loss)),
            g,
        })
    }

    /// The step rule (docs/math.md §3): `δ_k`, by one solve (two for the Nesterov rules,
    /// none for gradient descent). `previous` is `None` at k = 0: the Plain step.
    pub(super) fn direction<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
        at: &StepAt<'_, Mo, Lo, Me>,
        g: &[f64],
        kv: &mut KV,
    ) -> Result<Vec<f64>, Failure> {
        let (rule, alpha) = (self.step_rule_now(), self.step_size_now());
        let mut log = SolveLog::new(kv);
        let log = &mut log;
        let prev_outputs = at.previous_outputs.as_deref();
        Ok(match (rule, at.previous) {
            // G = I: δ_k = −α g_k
            (StepRule::GradientDescent, _) => combine(None, alpha, g),
            // G_k δ_k = −α g_k
            (StepRule::Plain, _) | (_, None) => self.solve_gradient(lin, None, g, log)?,
            // G_k δ_k = β J_kᵀ h − α g_k, h = M J_{k−1}δ_{k−1} | M (y_k − y_{k−1}) | ∇ℓ(y_{k−1})
            (
                StepRule::HeavyBall { beta }
                | StepRule::FiniteDifference { beta }
                | StepRule::LaggedGradient { beta },
                Some(_),
            ) => {
                let prev = prev_outputs.expect("read by `previous_outputs` for these rules");
                let h = rule.output_term(lin, prev).ok_or_else(|| {
                    Failure::Input(crate::Error::InvalidSetting(
                        "heavy ball: J_{k−1}δ_{k−1} missing from the previous step".into(),
                    ))
                })?;
                self.solve_gradient(lin, Some((beta, &h)), g, log)?
            }
            // δ_k = β δ_{k−1} − α G_k⁻¹ g_k
            (StepRule::ParamHeavyBall { beta }, Some(prev)) => {
                let d = self.solve_gradient(lin, None, g, log)?;
                add(&scaled(beta, &prev.delta), &d)
            }
            // z = θ_k + β G_k⁻¹ J_kᵀ M (y_k − y_{k−1});  θ_{k+1} = z − α G(z)⁻¹ g(z)
            (StepRule::Nesterov { beta }, Some(_)) => {
                let prev = prev_outputs.expect("read by `previous_outputs` for this rule");
                let h = rule.output_term(lin, prev).unwrap_or_default();
                let s = self.solve_extrapolation(lin, beta, &h, log)?;
                add(&s, &self.gradient_step_at(at.on, at.theta, &s, log)?)
            }
            // z = θ_k + β (θ_k − θ_{k−1});  θ_{k+1} = z − α G(z)⁻¹ g(z)
            (StepRule::ParamNesterov { beta }, Some(prev)) => {
                let s = scaled(beta, &prev.delta);
                add(&s, &self.gradient_step_at(at.on, at.theta, &s, log)?)
            }
        })
    }

    /// What the step control, the stopping tests and the next step need of `J_k`: the
    /// capped `δ_k`, `J_kδ_k` (carried by heavy ball; the curvature of LM's model and of
    /// the stopping tests), `‖J_kδ_k‖²_M`, and the outputs. Ends the linearisation.
    pub(super) fn measure<Mo: Model, Lo: Loss, Me: Metric>(
        &self,
        mut lin: LinearizedProblem<'_, Mo, Lo, Me>,
        at: &StepAt<'_, Mo, Lo, Me>,
        start: &Start,
        mut delta: Vec<f64>,
    ) -> Result<Measured, Failure> {
        let rule = self.step_rule_now();
        // gᵀ(G + λI)⁻¹g of a plain solve δ = −α(G + λI)⁻¹g, for the gradient test.
        let plain_solve = !matches!(rule, StepRule::GradientDescent)
            && (matches!(rule, StepRule::Plain) || at.previous.is_none());
        let g_ginv_g = plain_solve.then(|| -dot(&start.g, &delta) / self.step_size_now());
        cap_step_norm(&mut delta, self.max_step_norm);
        let curvature =
            self.levenberg_marquardt_now().is_some() || self.tolerances != Tolerances::NONE;
        let jd = (rule.uses_jvp_of_step() || curvature).then(|| {
            let mut jd = vec![0.0; lin.outputs().len()];
            lin.jvp(&delta, &mut jd);
            jd
        });
        let jd_m_sq = match &jd {
            Some(jd) if curvature => lin.metric_norm_sq(jd),
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
        finite("θ_k + δ_k (the step overflows θ)", &add(at.theta, &delta))?;
        Ok(Measured {
            delta,
            jd,
            jd_m_sq,
            outputs,
            g_ginv_g,
        })
    }

    /// The damping λ_k of this step's solves: λ, or `μ·s_k` relative to the Gram's
    /// scale ([`DampingScale`]).
    pub(super) fn lambda(&self) -> f64 {
        self.damping * self.memory.damping.scale
    }

    /// Sets this step's damping scale `s_k` ([`DampingScale`]); returns `diag(G_k)` when
    /// the stopping tests need it (`tested`) and the model has it.
    pub(super) fn scale_damping<Mo: Model, Lo: Loss, Me: Metric>(
        &mut self,
        lin: &mut LinearizedProblem<'_, Mo, Lo, Me>,
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

    /// The previous iterate's output vectors on this step's samples, for the rules that
    /// use them.
    pub(super) fn previous_outputs<'s, Mo: Model, Lo: Loss, Me: Metric>(
        &self,
        at: &StepAt<'s, Mo, Lo, Me>,
    ) -> Result<Option<Cow<'s, PreviousOutputs>>, Failure> {
        match at.previous {
            Some(prev) if self.step_rule_now().uses_previous_outputs() => Ok(Some(
                self.previous_on(at.on, prev, at.samples.as_deref())?,
            )),
            _ => Ok(None),
        }
    }

    /// The previous iterate's output vectors on the samples of this step: kept from the
    /// previous step when the samples are the same, otherwise evaluated at `θ_{k−1}` on
    /// the current samples (one forward pass, and one jvp for heavy ball).
    pub(super) fn previous_on<'a, Mo: Model, Lo: Loss, Me: Metric>(
        &self,
        on: &FitProblem<Mo, Lo, Me>,
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
        let jvp_delta = self.step_rule_now().uses_jvp_of_step().then(|| {
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
}
