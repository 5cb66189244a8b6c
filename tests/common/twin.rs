//! Dense twins written out by hand from docs/math.md, independent of the code under test:
//! logistic regression `v = σ(Aθ)` with cross-entropy and its Fisher metric
//! `diag(w/(v(1−v)))` (a metric that depends on θ), linear least squares in the weighted
//! L² metric, the step rules of docs/math.md §3 and the line searches of its step-control
//! table, and an argmin observer that records every iterate with its KV.

use super::{dense_solve, mat, rng};
use argmin::core::observers::Observe;
use argmin::core::{State, KV};
use faer::{Mat, MatMut};
use natgrad::linsolve::DirectionSolver;
use natgrad::model::{ClosureLinearization, Model};
use natgrad::step_rule::transport;
use natgrad::{
    CgSettings, FitProblem, LinearSolver, Loss, Metric, NaturalGradient, NgState, StepControl,
    StepRule,
};
use rand::Rng;
use std::sync::{Arc, Mutex};

/// Which output map and loss a [`Design`] stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `v = σ(Aθ)`, `ℓ = Σ w_i [−u_i ln v_i − (1 − u_i) ln(1 − v_i)]`, `M = diag(w/(v(1−v)))`.
    Logistic,
    /// `y = Aθ`, `ℓ = ½ Σ w_i (y_i − u_i)²`, `M = diag(w)`.
    Linear,
}

/// A design `A` (m×p, one output per sample), targets `u` and weights `w`.
#[derive(Debug, Clone)]
pub struct Design {
    pub kind: Kind,
    pub a: Mat<f64>,
    pub u: Vec<f64>,
    pub w: Vec<f64>,
}

/// Everything a step needs at one θ, densely: outputs, Jacobian (n×p), `∇_yℓ`,
/// `g = Jᵀ∇_yℓ`, the metric's diagonal at these outputs and the loss.
#[derive(Debug, Clone)]
pub struct Point {
    pub y: Vec<f64>,
    pub j: Mat<f64>,
    pub gy: Vec<f64>,
    pub g: Vec<f64>,
    pub m: Vec<f64>,
    pub loss: f64,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Design {
    /// A seeded random design with entries in `[−1, 1]`, uniform weights `1/m`; labels in
    /// `[0.1, 0.9]` (logistic: a finite minimiser) or `A θ_true` (linear).
    pub fn random(kind: Kind, m: usize, p: usize, seed: u64) -> Self {
        let mut r = rng(seed);
        let a = mat(&mut r, m, p);
        let u = match kind {
            Kind::Logistic => (0..m).map(|_| r.random_range(0.1..0.9)).collect(),
            Kind::Linear => (0..m)
                .map(|i| (0..p).map(|j| a[(i, j)] * (1.0 + j as f64)).sum())
                .collect(),
        };
        Self {
            kind,
            a,
            u,
            w: vec![1.0 / m as f64; m],
        }
    }

    /// `(y, J)` at θ: `y = Aθ`, `J = A`, or `v = σ(Aθ)`, `J = diag(v(1 − v)) A`.
    pub fn outputs_and_jacobian(&self, theta: &[f64]) -> (Vec<f64>, Mat<f64>) {
        let (m, p) = (self.a.nrows(), self.a.ncols());
        let z: Vec<f64> = (0..m)
            .map(|i| (0..p).map(|j| self.a[(i, j)] * theta[j]).sum())
            .collect();
        match self.kind {
            Kind::Linear => (z, self.a.clone()),
            Kind::Logistic => {
                let v: Vec<f64> = z.iter().map(|&z| sigmoid(z)).collect();
                let j = Mat::from_fn(m, p, |i, k| v[i] * (1.0 - v[i]) * self.a[(i, k)]);
                (v, j)
            }
        }
    }

    /// The dense twin at θ, every formula by hand.
    pub fn at(&self, theta: &[f64]) -> Point {
        let (y, j) = self.outputs_and_jacobian(theta);
        let (mut gy, mut m, mut loss) = (vec![], vec![], 0.0);
        for ((&y, &u), &w) in y.iter().zip(&self.u).zip(&self.w) {
            match self.kind {
                Kind::Linear => {
                    gy.push(w * (y - u));
                    m.push(w);
                    loss += 0.5 * w * (y - u) * (y - u);
                }
                Kind::Logistic => {
                    gy.push(w * (y - u) / (y * (1.0 - y)));
                    m.push(w / (y * (1.0 - y)));
                    loss -= w * (u * y.ln() + (1.0 - u) * (1.0 - y).ln());
                }
            }
        }
        let g = mat_t_vec(&j, &gy);
        Point {
            y,
            j,
            gy,
            g,
            m,
            loss,
        }
    }

    /// The loss at θ.
    pub fn loss(&self, theta: &[f64]) -> f64 {
        self.at(theta).loss
    }

    /// The design on a mini-batch: rows `samples`, weights rescaled by `m/b` so that loss
    /// and metric estimate the full ones (docs/math.md §3, stochastic setting).
    pub fn select(&self, samples: &[usize]) -> Self {
        let scale = self.a.nrows() as f64 / samples.len() as f64;
        Self {
            kind: self.kind,
            a: Mat::from_fn(samples.len(), self.a.ncols(), |i, j| {
                self.a[(samples[i], j)]
            }),
            u: samples.iter().map(|&i| self.u[i]).collect(),
            w: samples.iter().map(|&i| self.w[i] * scale).collect(),
        }
    }

    /// The logistic model `σ(Aθ)` as a natgrad [`Model`].
    pub fn logistic_model(&self) -> LogisticModel {
        assert_eq!(self.kind, Kind::Logistic);
        LogisticModel(self.clone())
    }
}

/// `Jᵀ s`.
pub fn mat_t_vec(j: &Mat<f64>, s: &[f64]) -> Vec<f64> {
    (0..j.ncols())
        .map(|k| (0..j.nrows()).map(|i| j[(i, k)] * s[i]).sum())
        .collect()
}

/// `J t`.
pub fn mat_vec(j: &Mat<f64>, t: &[f64]) -> Vec<f64> {
    super::matvec(j, t)
}

/// `JᵀMJ + λI` at a point (diagonal `M`), plain loops.
pub fn gram(pt: &Point, lambda: f64) -> Mat<f64> {
    let (n, p) = (pt.j.nrows(), pt.j.ncols());
    Mat::from_fn(p, p, |a, b| {
        (0..n)
            .map(|r| pt.j[(r, a)] * pt.m[r] * pt.j[(r, b)])
            .sum::<f64>()
            + if a == b { lambda } else { 0.0 }
    })
}

/// `M h` at a point.
pub fn metric_times(pt: &Point, h: &[f64]) -> Vec<f64> {
    pt.m.iter().zip(h).map(|(m, h)| m * h).collect()
}

pub fn axpby(a: f64, x: &[f64], b: f64, y: &[f64]) -> Vec<f64> {
    x.iter().zip(y).map(|(x, y)| a * x + b * y).collect()
}

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// The logistic model `v = σ(Aθ)` with its Jacobian by hand; mini-batches select rows.
#[derive(Debug, Clone)]
pub struct LogisticModel(pub Design);

impl Model for LogisticModel {
    type Linearization<'a> = ClosureLinearization;

    fn n_params(&self) -> usize {
        self.0.a.ncols()
    }

    fn n_outputs(&self) -> usize {
        self.0.a.nrows()
    }

    fn linearize(&self, theta: &[f64]) -> natgrad::Result<ClosureLinearization> {
        let (v, j) = self.0.outputs_and_jacobian(theta);
        ClosureLinearization::new(v, j)
    }

    fn select_samples(&self, samples: &[usize]) -> natgrad::Result<Self> {
        Ok(Self(self.0.select(samples)))
    }
}

/// Writes a dense matrix into a faer view (for closure models).
pub fn write(src: &Mat<f64>, mut dst: MatMut<'_, f64>) {
    for i in 0..src.nrows() {
        for j in 0..src.ncols() {
            dst[(i, j)] = src[(i, j)];
        }
    }
}

/// One step `δ_k` of `rule` (docs/math.md §3) from θ_k and, after the first step,
/// `(θ_{k−1}, δ_{k−1})` with `δ_{k−1} = θ_k − θ_{k−1}` the step actually taken. The metric
/// of every term is the one at the outputs of the point where the term is formed
/// (`M(y_k)` in `G_k`, in `G_{k,k−1} = J_kᵀ M(y_k) J_{k−1}` and in `M(y_k)(y_k − y_{k−1})`).
pub fn rule_step(
    at: &dyn Fn(&[f64]) -> Point,
    rule: StepRule,
    alpha: f64,
    lambda: f64,
    theta: &[f64],
    prev: Option<(&[f64], &[f64])>,
) -> Vec<f64> {
    let beta = rule.beta();
    let d = at(theta);
    let minus_alpha_g: Vec<f64> = d.g.iter().map(|g| -alpha * g).collect();
    let solve_k = |rhs: &[f64]| dense_solve(&gram(&d, lambda), rhs);
    let jt_m = |h: &[f64]| mat_t_vec(&d.j, &metric_times(&d, h));
    let gradient_step = |z: &[f64]| {
        let pz = at(z);
        let rhs: Vec<f64> = pz.g.iter().map(|g| -alpha * g).collect();
        dense_solve(&gram(&pz, lambda), &rhs)
    };
    let with_step_rule = |h_term: Vec<f64>| solve_k(&axpby(beta, &h_term, 1.0, &minus_alpha_g));
    match (rule, prev) {
        (StepRule::GradientDescent, _) => minus_alpha_g,
        (StepRule::Plain, _) | (_, None) => solve_k(&minus_alpha_g),
        (StepRule::HeavyBall { .. }, Some((tp, dp))) => {
            // G_{k,k−1} δ_{k−1} = J_kᵀ M(y_k) J_{k−1} δ_{k−1}
            with_step_rule(jt_m(&mat_vec(&at(tp).j, dp)))
        }
        (StepRule::FiniteDifference { .. }, Some((tp, _))) => {
            with_step_rule(jt_m(&axpby(1.0, &d.y, -1.0, &at(tp).y)))
        }
        (StepRule::LaggedGradient { .. }, Some((tp, _))) => {
            with_step_rule(mat_t_vec(&d.j, &at(tp).gy))
        }
        (StepRule::Nesterov { .. }, Some((tp, _))) => {
            let h = jt_m(&axpby(1.0, &d.y, -1.0, &at(tp).y));
            let s = solve_k(&h.iter().map(|x| beta * x).collect::<Vec<_>>());
            let z = axpby(1.0, theta, 1.0, &s);
            axpby(1.0, &s, 1.0, &gradient_step(&z))
        }
        (StepRule::ParamHeavyBall { .. }, Some((_, dp))) => {
            axpby(beta, dp, 1.0, &solve_k(&minus_alpha_g))
        }
        (StepRule::ParamNesterov { .. }, Some((_, dp))) => {
            let s: Vec<f64> = dp.iter().map(|d| beta * d).collect();
            let z = axpby(1.0, theta, 1.0, &s);
            axpby(1.0, &s, 1.0, &gradient_step(&z))
        }
    }
}

/// The fraction `t` of the step `δ` that `control` takes from θ (loss `l0`, gradient `g`),
/// by the definitions of docs/math.md §3 (step control): `1`; the largest `shrink^j`,
/// `j ≤ J`, with `L(θ + tδ) ≤ L(θ) + c t gᵀδ` (the smallest if none; `1` when `gᵀδ ≥ 0`);
/// the `0.5^j`, `j = 0..=J`, of lowest loss (the first on ties).
pub fn step_fraction(
    control: StepControl,
    loss: &dyn Fn(&[f64]) -> f64,
    theta: &[f64],
    g: &[f64],
    delta: &[f64],
) -> f64 {
    let at = |t: f64| loss(&axpby(1.0, theta, t, delta));
    match control {
        StepControl::Fixed => 1.0,
        StepControl::LogGrid { max_halvings } => {
            let (mut best_t, mut best) = (1.0, at(1.0));
            let mut t = 1.0;
            for _ in 0..max_halvings {
                t *= 0.5;
                let l = at(t);
                if l < best {
                    (best_t, best) = (t, l);
                }
            }
            best_t
        }
        StepControl::Armijo {
            c,
            shrink,
            max_halvings,
        } => {
            let (l0, gd) = (loss(theta), dot(g, delta));
            if gd >= 0.0 {
                return 1.0;
            }
            let mut t = 1.0;
            for _ in 0..max_halvings {
                if at(t) <= l0 + c * t * gd {
                    break;
                }
                t *= shrink;
            }
            t
        }
    }
}

/// Records `(θ_k, KV of step k)` after every iteration (also the last one), so that a
/// test can read what the solver logged (`lm_rho`, `damping`, `step_scale`, ...).
#[derive(Debug, Clone, Default)]
pub struct Record(pub Arc<Mutex<Vec<Step>>>);

/// `θ_{k+1}` and the KV of step `k`.
pub type Step = (Vec<f64>, KV);

impl Record {
    pub fn get(&self) -> Vec<Step> {
        self.0.lock().unwrap().clone()
    }
}

impl Observe<NgState> for Record {
    fn observe_iter(&mut self, state: &NgState, kv: &KV) -> Result<(), argmin::core::Error> {
        let theta = state.get_param().cloned().unwrap_or_default();
        self.0.lock().unwrap().push((theta, kv.clone()));
        Ok(())
    }
}

/// Runs `solver` from `theta0` for at most `iters` steps and returns what [`Record`] saw:
/// `(θ_k, KV of step k)` for every step.
pub fn recorded<Mo, Lo, Me>(
    problem: FitProblem<Mo, Lo, Me>,
    solver: NaturalGradient,
    theta0: &[f64],
    iters: u64,
) -> Vec<Step>
where
    Mo: Model + 'static,
    Lo: Loss + 'static,
    Me: Metric + 'static,
{
    let record = Record::default();
    argmin::core::Executor::new(problem, solver)
        .configure(|s| s.param(theta0.to_vec()).max_iters(iters))
        .add_observer(
            record.clone(),
            argmin::core::observers::ObserverMode::Always,
        )
        .run()
        .unwrap();
    record.get()
}

/// A float the solver logged under `key`.
pub fn kv_float(kv: &KV, key: &str) -> f64 {
    kv.get(key)
        .and_then(|v| v.get_float())
        .unwrap_or_else(|| panic!("no float {key} in the KV"))
}

/// CG to `1e-15` relative, accepting a truncated run (the twins' comparisons need the
/// solve exact to rounding, not CG's own stopping rule).
pub fn tight_cg() -> LinearSolver {
    LinearSolver::Cg(CgSettings {
        rel_tol: 1e-15,
        max_iters: 50,
        accept_truncated: true,
        ..CgSettings::default()
    })
}

/// Checks the mixed Gram operator ([`natgrad::LinearizedProblem::transport_gram`], to 1e-12) and [`transport`] with Cholesky and a tight CG
/// (to 1e-10) at `thetas = (θ_k, θ_{k−1})` against `expected = (G_{k,k−1}v,
/// G_k⁻¹G_{k,k−1}v)` computed densely by the caller.
pub fn check_mixed_gram_and_transport<Mo: Model, Lo: Loss, Me: Metric>(
    problem: &FitProblem<Mo, Lo, Me>,
    thetas: (&[f64], &[f64]),
    v: &[f64],
    lambda: f64,
    expected: (&[f64], &[f64]),
) {
    let mut cur = problem.linearize(thetas.0).unwrap();
    let mut prev = problem.linearize(thetas.1).unwrap();
    let mut product = vec![0.0; v.len()];
    cur.transport_gram(&mut prev)
        .unwrap()
        .apply_vec(v, &mut product);
    let e = super::rel_diff(&product, expected.0);
    assert!(e <= 1e-12, "mixed Gram product: {e:e}");
    for linear in [LinearSolver::Cholesky, tight_cg()] {
        let t = transport(
            &mut cur,
            &mut prev,
            v,
            lambda,
            &mut DirectionSolver::new(linear.clone()),
        )
        .unwrap();
        let e = super::rel_diff(&t, expected.1);
        assert!(e <= 1e-10, "transport {linear:?}: {e:e}");
    }
}
