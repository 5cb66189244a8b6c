//! The problem: model × loss × metric (docs/math.md §1), and its linearisation at θ.
//!
//! [`FitProblem`] implements argmin's [`CostFunction`] and [`Gradient`] on `Vec<f64>`, so the
//! same value drives `natgrad`'s [`crate::NaturalGradient`] and argmin's own solvers
//! (`LBFGS`, `SteepestDescent`, ...).

use crate::counters::Counters;
pub use crate::counters::Evaluations;
use crate::error::{check_finite, check_len, Result};
use crate::gram::{CheckedMetric, GramOperator, Space};
use crate::loss::Loss;
use crate::metric::{Metric, OutputPoint};
use crate::model::{check_theta, CheckedLinearization, Linearization, Model};
use argmin::core::{CostFunction, Gradient};
use std::sync::OnceLock;

/// Model, loss and metric, checked to agree in size.
#[derive(Debug)]
pub struct FitProblem<Mo, Lo, Me> {
    model: Mo,
    loss: Lo,
    metric: Me,
    counters: Counters,
}

impl<Mo: Clone, Lo: Clone, Me: Clone> Clone for FitProblem<Mo, Lo, Me> {
    /// Clones model, loss and metric; the evaluation counts start again from zero.
    fn clone(&self) -> Self {
        Self {
            model: self.model.clone(),
            loss: self.loss.clone(),
            metric: self.metric.clone(),
            counters: Counters::default(),
        }
    }
}

impl<Mo: Model, Lo: Loss, Me: Metric> FitProblem<Mo, Lo, Me> {
    /// Combines a model, a loss and a metric. Fails with
    /// [`Error::DimensionMismatch`](crate::Error::DimensionMismatch) when the model's output
    /// count disagrees with the loss or the metric, or when the metric cannot work with
    /// this loss (a loss-Hessian metric on a loss without Hessian); with
    /// [`Error::Empty`](crate::Error::Empty) when the model has no outputs (an empty data
    /// set) or no parameters.
    pub fn new(model: Mo, loss: Lo, metric: Me) -> Result<Self> {
        let n = model.n_outputs();
        crate::error::check_nonempty(
            "FitProblem: Model::n_outputs (an empty data set)",
            model.n_outputs_global(),
        )?;
        crate::error::check_nonempty(
            "FitProblem: Model::n_params (nothing to fit)",
            model.n_params(),
        )?;
        if let Some(d) = loss.dim() {
            check_len("loss vs model outputs", n, d)?;
        }
        metric.validate(n, &loss)?;
        Ok(Self {
            model,
            loss,
            metric,
            counters: Counters::default(),
        })
    }

    /// The model.
    pub fn model(&self) -> &Mo {
        &self.model
    }

    /// The loss.
    pub fn loss(&self) -> &Lo {
        &self.loss
    }

    /// The metric.
    pub fn metric(&self) -> &Me {
        &self.metric
    }

    /// Number of parameters `p`.
    pub fn n_params(&self) -> usize {
        self.model.n_params()
    }

    /// Number of outputs `n`.
    pub fn n_outputs(&self) -> usize {
        self.model.n_outputs()
    }

    /// Evaluations made so far through this problem (by any solver).
    pub fn evaluations(&self) -> Evaluations {
        self.counters.snapshot()
    }

    /// Linearises at θ: one forward pass, the loss, and its output gradient `∇_y ℓ`.
    ///
    /// Checks what user code returned (see [`CheckedLinearization`]): fails with
    /// [`Error::DimensionMismatch`](crate::Error::DimensionMismatch) when the
    /// linearisation's `outputs()` or `n_params()` disagree with the model's, and with
    /// [`Error::NonFinite`](crate::Error::NonFinite) on a θ of the wrong length or not
    /// finite, non-finite outputs, outputs outside the loss's domain
    /// ([`Loss::check_outputs`]), or a non-finite `Loss::value` or `Loss::gradient` at
    /// finite outputs;
    /// each error names the trait method and the quantity. The products of the returned
    /// linearisation are checked as they are made ([`LinearizedProblem::fault`]).
    pub fn linearize(&self, theta: &[f64]) -> Result<LinearizedProblem<'_, Mo, Lo, Me>> {
        check_theta(&self.model, theta)?;
        let lin = self.model.linearize(theta)?;
        self.counters.forward();
        let (n, p) = (self.n_outputs(), self.n_params());
        check_len(
            "Linearization::outputs (model outputs y(θ)) vs Model::n_outputs",
            n,
            lin.outputs().len(),
        )?;
        check_len(
            "Linearization::n_params vs Model::n_params",
            p,
            lin.n_params(),
        )?;
        let outputs = lin.outputs().to_vec();
        check_finite("Linearization::outputs (model outputs y(θ))", &outputs)?;
        self.loss.check_outputs(&outputs)?;
        let loss = self.loss.value(&outputs);
        check_finite("Loss::value (ℓ at finite model outputs)", &[loss])?;
        let mut loss_gradient = vec![0.0; outputs.len()];
        self.loss.gradient(&outputs, &mut loss_gradient);
        check_finite(
            "Loss::gradient (∇_y ℓ at finite model outputs)",
            &loss_gradient,
        )?;
        Ok(LinearizedProblem {
            problem: self,
            lin: CheckedLinearization::new(lin, n, p),
            outputs,
            loss,
            loss_gradient,
            metric_fault: OnceLock::new(),
        })
    }

    /// The loss at θ (one forward pass, no linearisation). Non-finite outputs give an
    /// infinite loss rather than an error, so that line searches can reject the point.
    pub fn loss_at(&self, theta: &[f64]) -> Result<f64> {
        check_theta(&self.model, theta)?;
        let mut y = vec![0.0; self.n_outputs()];
        self.model.forward(theta, &mut y)?;
        self.counters.forward();
        if y.iter().all(|v| v.is_finite()) {
            Ok(self.loss.value(&y))
        } else {
            Ok(f64::INFINITY)
        }
    }

    /// Why the loss at θ is not finite (one more forward pass): the first non-finite
    /// output of [`Model::forward`], outputs outside the loss's domain
    /// ([`Loss::check_outputs`]), or else [`Loss::value`] itself; `at` names θ in the
    /// message.
    pub(crate) fn non_finite_loss(&self, theta: &[f64], at: &str) -> crate::Error {
        let mut y = vec![0.0; self.n_outputs()];
        if let Err(e) = self.model.forward(theta, &mut y) {
            return e;
        }
        let finite = check_finite(&format!("Model::forward (model outputs y(θ) at {at})"), &y)
            .and_then(|()| self.loss.check_outputs(&y));
        match finite {
            Err(e) => e,
            Ok(()) => crate::Error::NonFinite {
                what: format!("Loss::value (the loss at {at}, at finite model outputs)"),
                index: 0,
                value: self.loss.value(&y),
            },
        }
    }

    /// The parameter gradient `g = Jᵀ ∇_y ℓ` at θ (one forward pass and one vjp).
    pub fn gradient_at(&self, theta: &[f64]) -> Result<Vec<f64>> {
        let mut lin = self.linearize(theta)?;
        Ok(lin.gradient())
    }

    /// The same problem on a mini-batch of sample points: model, loss and metric restricted
    /// to the samples and rescaled to estimate the full loss.
    pub fn select_samples(&self, samples: &[usize]) -> Result<Self> {
        let (m, n) = (self.model.n_samples(), self.model.n_outputs());
        let q = n / m.max(1);
        Ok(Self {
            model: self.model.select_samples(samples)?,
            loss: self.loss.select_samples(samples, q, m)?,
            metric: self.metric.select_samples(samples, q, m)?,
            counters: Counters::default(),
        })
    }
}

/// A [`FitProblem`] linearised at one θ: outputs, loss, `∇_y ℓ`, and counted Jacobian
/// products. Every Gram product of one solve reuses this one forward pass.
pub struct LinearizedProblem<'a, Mo: Model + 'a, Lo, Me> {
    problem: &'a FitProblem<Mo, Lo, Me>,
    lin: CheckedLinearization<Mo::Linearization<'a>>,
    outputs: Vec<f64>,
    loss: f64,
    loss_gradient: Vec<f64>,
    /// The first non-finite value the metric returned for a finite input.
    metric_fault: OnceLock<crate::Error>,
}

impl<'a, Mo: Model, Lo: Loss, Me: Metric> LinearizedProblem<'a, Mo, Lo, Me> {
    /// The outputs `y(θ)`.
    pub fn outputs(&self) -> &[f64] {
        &self.outputs
    }

    /// The loss `ℓ(y(θ))`.
    pub fn loss(&self) -> f64 {
        self.loss
    }

    /// The output-space gradient `∇_y ℓ(y(θ))`.
    pub fn output_gradient(&self) -> &[f64] {
        &self.loss_gradient
    }

    /// The problem this linearisation belongs to.
    pub fn problem(&self) -> &'a FitProblem<Mo, Lo, Me> {
        self.problem
    }

    /// Where the metric is evaluated (these outputs and the problem's loss).
    pub fn point(&self) -> OutputPoint<'_> {
        OutputPoint {
            outputs: &self.outputs,
            loss: &self.problem.loss,
        }
    }

    /// `out = J t` (counted).
    pub fn jvp(&mut self, t: &[f64], out: &mut [f64]) {
        self.problem.counters.products(1, 0);
        self.lin.jvp(t, out);
    }

    /// `out = Jᵀ s` (counted).
    pub fn vjp(&mut self, s: &[f64], out: &mut [f64]) {
        self.problem.counters.products(0, 1);
        self.lin.vjp(s, out);
    }

    /// `out = M v`, the metric at these outputs (checked: a non-finite result for a
    /// finite `v` is kept as [`LinearizedProblem::fault`]).
    pub fn apply_metric(&self, v: &[f64], out: &mut [f64]) {
        self.metric().apply(v, out);
    }

    /// The metric at these outputs, checked as it is applied.
    fn metric(&self) -> CheckedMetric<'_, Me> {
        checked_metric(self.problem, &self.outputs, &self.metric_fault)
    }

    /// `‖v‖²_M = vᵀ M v` for an output-space vector `v` (one metric product), a sum over
    /// all samples: on a sharded model ([`Model::is_sharded`]) the local value is summed
    /// over the shards (collective).
    pub fn metric_norm_sq(&self, v: &[f64]) -> f64 {
        let mut mv = vec![0.0; v.len()];
        self.apply_metric(v, &mut mv);
        let mut sum = [crate::linalg::dot(v, &mv)];
        self.problem.model.sum_over_shards(&mut sum);
        sum[0]
    }

    /// The parameter gradient `g = Jᵀ ∇_y ℓ` (one vjp).
    pub fn gradient(&mut self) -> Vec<f64> {
        let mut g = vec![0.0; self.problem.n_params()];
        self.problem.counters.gradient();
        self.lin.vjp(&self.loss_gradient, &mut g);
        g
    }

    /// `out = Jᵀ M h`: the right-hand side of the projection `P(h) = G⁻¹ Jᵀ M h` of an
    /// output vector `h` onto the tangent space (docs/math.md §3). One metric product, one vjp.
    pub fn project_rhs(&mut self, h: &[f64], out: &mut [f64]) {
        let mut mh = vec![0.0; h.len()];
        self.apply_metric(h, &mut mh);
        self.vjp(&mh, out);
    }

    /// The damped Gram operator `G + λI = JᵀMJ + λI` at this θ, as a faer `LinOp`.
    pub fn gram(
        &mut self,
        damping: f64,
    ) -> GramOperator<'_, CheckedLinearization<Mo::Linearization<'a>>, Me> {
        self.gram_in(Space::Params, damping)
    }

    /// The sample-space operator `JJᵀ + λM⁻¹` on `Rⁿ` at this θ (docs/math.md §2, Woodbury
    /// push-through), as a faer `LinOp`. `M⁻¹` comes from [`Metric::solve`].
    pub fn sample_gram(
        &mut self,
        damping: f64,
    ) -> GramOperator<'_, CheckedLinearization<Mo::Linearization<'a>>, Me> {
        self.gram_in(Space::Samples, damping)
    }

    /// The Gram operator of the given space (see [`Space`]).
    pub fn gram_in(
        &mut self,
        space: Space,
        damping: f64,
    ) -> GramOperator<'_, CheckedLinearization<Mo::Linearization<'a>>, Me> {
        let metric = checked_metric(self.problem, &self.outputs, &self.metric_fault);
        GramOperator::in_space(
            &mut self.lin,
            metric,
            damping,
            &self.problem.counters,
            space,
        )
    }

    /// The dense Gram matrix `JᵀMJ` (p×p) from the dense Jacobian `jac` at this θ
    /// ([`crate::gram::dense_gram`]), the metric checked as in the matrix-free products: a
    /// non-finite result for a finite column is kept as [`LinearizedProblem::fault`] and
    /// returned as [`Error::NonFiniteMetric`](crate::Error::NonFiniteMetric).
    pub(crate) fn dense_gram(
        &self,
        jac: faer::MatRef<'_, f64>,
        par: faer::Par,
    ) -> Result<faer::Mat<f64>> {
        let g = crate::gram::checked_dense_gram(jac, &self.metric(), 0.0, par);
        self.metric_fault.get().cloned().map_or(Ok(g), Err)
    }

    /// `diag(M)` into `out` when the metric is diagonal at these outputs (checked: a
    /// non-finite entry is kept as [`LinearizedProblem::fault`]).
    pub(crate) fn metric_diagonal(&self, out: &mut [f64]) -> bool {
        self.metric().diagonal(out)
    }

    /// The mixed Gram (transport) product `t ↦ G_{k,k−1} t = J_kᵀ M J_{k−1} t`
    /// (docs/math.md §3) with this linearisation at `θ_k` and `previous` at `θ_{k−1}`, the
    /// metric at `θ_k`: one jvp at `θ_{k−1}`, one metric product, one vjp at `θ_k` per
    /// product, as a p×p faer `LinOp` (not symmetric; see [`GramOperator`]). Fails with
    /// [`Error::DimensionMismatch`](crate::Error::DimensionMismatch) when the two have
    /// different numbers of parameters or outputs (other sample points).
    pub fn transport_gram<'s>(
        &'s mut self,
        previous: &'s mut LinearizedProblem<'a, Mo, Lo, Me>,
    ) -> Result<GramOperator<'s, CheckedLinearization<Mo::Linearization<'a>>, Me>> {
        let (p, n) = (self.problem.n_params(), self.outputs.len());
        check_len(
            "mixed Gram: parameters at θ_{k−1} vs θ_k",
            p,
            previous.problem.n_params(),
        )?;
        check_len(
            "mixed Gram: outputs at θ_{k−1} vs θ_k",
            n,
            previous.outputs.len(),
        )?;
        let metric = checked_metric(self.problem, &self.outputs, &self.metric_fault);
        let counters = &self.problem.counters;
        Ok(GramOperator::transport(
            &mut self.lin,
            &mut previous.lin,
            metric,
            counters,
        ))
    }

    /// `out = M⁻¹ v`, the inverse metric at these outputs (fails for metrics without one).
    pub fn solve_metric(&self, v: &[f64], out: &mut [f64]) -> Result<()> {
        self.metric().solve(v, out)
    }

    /// `diag(G) + λ` when both the metric's diagonal and the model's
    /// [`Linearization::gram_diagonal`] are available; `None` otherwise.
    pub fn gram_diagonal(&mut self, damping: f64) -> Option<Vec<f64>> {
        let mut w = vec![0.0; self.outputs.len()];
        if !self.metric().diagonal(&mut w) {
            return None;
        }
        let mut d = vec![0.0; self.problem.n_params()];
        if !self.lin.gram_diagonal(&w, &mut d) {
            return None;
        }
        d.iter_mut().for_each(|x| *x += damping);
        Some(d)
    }

    /// The model's linearisation (checked, uncounted: for callers that count their own
    /// products).
    pub(crate) fn linearization_mut(&mut self) -> &mut CheckedLinearization<Mo::Linearization<'a>> {
        &mut self.lin
    }

    /// The first value the model's linearisation returned wrongly since it was made (a
    /// non-finite product for a finite input, a dense Jacobian of the wrong shape), as an
    /// error naming the trait method and the quantity; `None` when all were good. A
    /// solver asks before it blames the operator for a failed solve.
    pub fn fault(&self) -> Option<&crate::Error> {
        self.lin.fault().or_else(|| self.metric_fault.get())
    }

    pub(crate) fn count_products(&self, jvp: u64, vjp: u64) {
        self.problem.counters.products(jvp, vjp);
    }
}

/// The problem's metric at `outputs`, its faults kept in `fault` (borrowing only the
/// fields it needs, so that the linearisation can be lent mutably beside it).
fn checked_metric<'s, Mo, Lo: Loss, Me>(
    problem: &'s FitProblem<Mo, Lo, Me>,
    outputs: &'s [f64],
    fault: &'s OnceLock<crate::Error>,
) -> CheckedMetric<'s, Me> {
    CheckedMetric {
        metric: &problem.metric,
        at: OutputPoint {
            outputs,
            loss: &problem.loss,
        },
        fault,
    }
}

impl<Mo: Model, Lo: Loss, Me: Metric> CostFunction for FitProblem<Mo, Lo, Me> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, theta: &Vec<f64>) -> std::result::Result<f64, argmin::core::Error> {
        self.loss_at(theta)
            .map_err(|e| e.into_argmin("natgrad::FitProblem"))
    }
}

impl<Mo: Model, Lo: Loss, Me: Metric> Gradient for FitProblem<Mo, Lo, Me> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, theta: &Vec<f64>) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        self.gradient_at(theta)
            .map_err(|e| e.into_argmin("natgrad::FitProblem"))
    }
}
