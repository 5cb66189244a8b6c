//! One natural-gradient setting on one configuration of `experiments pinn`, with the
//! error curve and the step control's decisions printed as it runs — the driver behind the
//! robustness table and the Nesterov diagnosis of docs/pinn.md (*One recipe for PINNs*,
//! *Nesterov on PINNs*).
//!
//! ```text
//! cargo run --release --example pinn_explore -- CONFIG SETTING STEPS EVERY [SEED]
//! cargo run --release --example pinn_explore -- ad002 lam=1e-10,lmt=1e-12,follow=0.000244140625,armijo,hb=0.3 300 3 0
//! cargo run --release --example pinn_explore -- ad01k warmup=10@1e-6,lam=1e-10,lmh=1e-12,follow=0.000244140625,armijo,hb=0.3 250 5 0
//! cargo run --release --example pinn_explore -- nonlinear2d nestdiag=1e-8 0 0 0
//! cargo run --release --example pinn_explore -- heat1d scale 0 0 0
//! ```
//!
//! `CONFIG` is one of `ad01`, `ad002` (advection–diffusion, ε = 0.1 / 0.02, m = 100),
//! `ad01k`, `ad002k` (m = 1 000), `poisson2d`, `heat1d`, `nonlinear2d`, `neumann2d` — the
//! problems of `experiments pinn`; θ₀ is the Glorot initialisation with `SEED` (default 0).
//! The linear solver is Cholesky in the smaller space, as in the default recipe.
//! `SETTING` is a comma-separated list applied in order to `NaturalGradient::new()`:
//! `lam=λ` (damping), `lmt=min` / `lmh=min` / `lmn=min` (Levenberg–Marquardt in
//! `[min, 1e2]` with the threshold rule, its narrow-band variant
//! `DampingRule::ThresholdNarrow` (the recipe's), or Nielsen's rule), `trace`
//! (`DampingScale::GramTrace`), `armijo`, `grid=j` (log grid to 2⁻ʲ), `alpha=α`, `cap=c`
//! (step-norm cap), `follow=t_max` (λ follows the line search below `t_max`,
//! `with_line_search_damping`), `warmup=K@λ` (a watchdog warm-up of K plain full steps
//! at damping λ, `with_warm_up`), `hb=β`, `nest=β`, `ls=rcond` (least squares). Every
//! `EVERY` steps it prints the relative L² error on the fine grid, the best so far
//! (step, seconds without the error evaluations), the loss and the KVs `damping`,
//! `line_search`, `lm_rho`, `step_norm`, `step_scale`, `damping_follows`.
//!
//! Two diagnostics instead of a run: `scale` prints `tr(G₀)/p` and the extreme squared
//! singular values of the Jacobian at θ₀; `nestdiag=λ` rebuilds Nesterov's extrapolation
//! point after two steps (β = 0.3, fixed λ, Armijo) independently of the solver —
//! `s = β (J₂ᵀJ₂ + λI)⁻¹ J₂ᵀ (y₂ − y₁)` by a dense faer solve, `z = θ₂ + s` — and prints the
//! norms, the spectra of `G(θ₂)` and `G(z)`, and whether faer's Cholesky factors
//! `G(z) + λI`.

use argmin::core::observers::{Observe, ObserverMode};
use argmin::core::{Error, Executor, State, KV};
use natgrad::problems::pinn::{
    advection_diffusion, heat_1d, neumann_2d, nonlinear_2d, poisson_2d, PinnCase,
};
use natgrad::step_control::WarmUp;
use natgrad::{
    DampingRule, DampingScale, LevenbergMarquardt, LinearSolver, Linearization, Model,
    NaturalGradient, NgState, StepControl, StepRule,
};
use std::sync::Arc;
use std::time::Instant;

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Prints the error curve every `every` steps and keeps the best error.
struct Curve {
    case: Arc<PinnCase>,
    every: u64,
    start: Instant,
    /// Seconds spent evaluating errors (excluded from the printed time).
    excluded: f64,
    best: f64,
    best_at: (u64, f64),
}

/// A KV entry as text (empty when absent).
fn kv_text(kv: &KV, key: &str) -> String {
    kv.get(key).map(|v| format!("{v:?}")).unwrap_or_default()
}

impl Observe<NgState> for Curve {
    fn observe_iter(&mut self, s: &NgState, kv: &KV) -> Result<(), Error> {
        let it = s.get_iter() + 1;
        if !(it.is_multiple_of(self.every) || s.terminated()) {
            return Ok(());
        }
        let now = self.start.elapsed().as_secs_f64() - self.excluded;
        let clock = Instant::now();
        let e = s
            .get_param()
            .and_then(|theta| self.case.errors(theta).ok())
            .map_or(f64::NAN, |e| e.rel_l2);
        self.excluded += clock.elapsed().as_secs_f64();
        if e < self.best {
            (self.best, self.best_at) = (e, (it, now));
        }
        println!(
            "it {it} t {now:.1} err {e:.3e} best {:.3e}@{} ({:.1}s) loss {:.3e} lam {} ls {} \
             rho {} sn {} t {} follows {}",
            self.best,
            self.best_at.0,
            self.best_at.1,
            s.get_cost(),
            kv_text(kv, "damping"),
            kv_text(kv, "line_search"),
            kv_text(kv, "lm_rho"),
            kv_text(kv, "step_norm"),
            kv_text(kv, "step_scale"),
            kv_text(kv, "damping_follows"),
        );
        Ok(())
    }
}

/// The configuration named `name` (the problems of `experiments pinn`).
fn build(name: &str) -> AnyResult<PinnCase> {
    Ok(match name {
        "heat1d" => heat_1d(30, &[64])?,
        "nonlinear2d" => nonlinear_2d(30, 120, &[64])?,
        "neumann2d" => neumann_2d(30, 120, &[64])?,
        "poisson2d" => poisson_2d(30, 120, &[64], 1.0)?,
        "ad01" => advection_diffusion(0.1, 100, &[32, 32], 1.0)?,
        "ad002" => advection_diffusion(0.02, 100, &[32, 32], 1.0)?,
        "ad01k" => advection_diffusion(0.1, 1000, &[32, 32], 1.0)?,
        "ad002k" => advection_diffusion(0.02, 1000, &[32, 32], 1.0)?,
        _ => return Err(format!("unknown configuration {name:?}").into()),
    })
}

/// Cholesky in the smaller space (the default recipe's choice).
fn smaller_space(case: &PinnCase) -> LinearSolver {
    if case.problem.n_params() <= case.problem.n_outputs() {
        LinearSolver::Cholesky
    } else {
        LinearSolver::SampleCholesky
    }
}

/// One `key=value` item of `SETTING` applied to `s`.
fn apply(s: NaturalGradient, item: &str) -> AnyResult<NaturalGradient> {
    let (key, value) = item.split_once('=').unwrap_or((item, ""));
    let x = || value.parse::<f64>();
    let lm = |rule| -> AnyResult<LevenbergMarquardt> {
        Ok(LevenbergMarquardt {
            min: x()?,
            max: 1e2,
            rule,
        })
    };
    Ok(match key {
        "lam" => s.with_damping(x()?)?,
        "lmt" => s.with_levenberg_marquardt(lm(DampingRule::Threshold)?)?,
        "lmn" => s.with_levenberg_marquardt(lm(DampingRule::Nielsen)?)?,
        "lmh" => s.with_levenberg_marquardt(lm(DampingRule::ThresholdNarrow)?)?,
        "trace" => s.with_damping_scale(DampingScale::GramTrace),
        "armijo" => s.with_step_control(StepControl::armijo())?,
        "grid" => s.with_step_control(StepControl::LogGrid {
            max_halvings: value.parse()?,
        })?,
        "alpha" => s.with_step_size(x()?)?,
        "cap" => s.with_max_step_norm(x()?)?,
        "warmup" => {
            let (k, lam) = value.split_once('@').ok_or("warmup=K@λ")?;
            s.with_warm_up(WarmUp {
                steps: k.parse()?,
                damping: lam.parse()?,
            })?
        }
        "follow" => s.with_line_search_damping(x()?)?,
        "hb" => s.with_step_rule(StepRule::HeavyBall { beta: x()? })?,
        "nest" => s.with_step_rule(StepRule::Nesterov { beta: x()? })?,
        "ls" => s.with_linear_solver(LinearSolver::LeastSquares { rcond: x()? })?,
        _ => return Err(format!("unknown setting {key:?}").into()),
    })
}

/// `tr(G₀)/p` and the extreme squared singular values of `J` at θ₀.
fn scale(name: &str, case: &PinnCase, seed: u64) -> AnyResult<()> {
    let theta = case.problem.model().net().init_params(seed);
    let mut lin = case.problem.model().linearize(&theta)?;
    let j = lin.dense_jacobian().ok_or("no dense Jacobian")?;
    let fro = j.norm_l2();
    let s = j.singular_values().map_err(|e| format!("{e:?}"))?;
    let p = j.ncols() as f64;
    println!(
        "{name} seed {seed}: tr(G)/p {:.3e}, σ_max² {:.3e}, σ_min² {:.3e}",
        fro * fro / p,
        s[0] * s[0],
        s[s.len() - 1] * s[s.len() - 1]
    );
    Ok(())
}

/// θ after `k` steps of Nesterov (β = 0.3, fixed λ, Armijo) from the seeded θ₀.
fn nesterov_iterate(case: &PinnCase, lambda: f64, seed: u64, k: u64) -> AnyResult<Vec<f64>> {
    let s = NaturalGradient::new()
        .with_linear_solver(smaller_space(case))?
        .with_damping(lambda)?
        .with_step_control(StepControl::armijo())?
        .with_step_rule(StepRule::Nesterov { beta: 0.3 })?;
    let theta0 = case.problem.model().net().init_params(seed);
    let res = Executor::new(case.problem.clone(), s)
        .configure(|st| st.param(theta0).max_iters(k))
        .run()?;
    Ok(res.state().get_param().ok_or("no iterate")?.clone())
}

/// Nesterov's extrapolation point after two steps, rebuilt with faer (see the module docs).
fn nest_diag(case: &PinnCase, lambda: f64, seed: u64) -> AnyResult<()> {
    use faer::linalg::solvers::Solve;
    use faer::{Col, Mat, Side};
    let beta = 0.3;
    let model = case.problem.model();
    let (t1, t2) = (
        nesterov_iterate(case, lambda, seed, 1)?,
        nesterov_iterate(case, lambda, seed, 2)?,
    );
    let y1 = model.linearize(&t1)?.outputs().to_vec();
    let mut l2 = model.linearize(&t2)?;
    let y2 = l2.outputs().to_vec();
    let j2 = l2.dense_jacobian().ok_or("no dense Jacobian")?;
    let p = j2.ncols();
    let dy = Col::<f64>::from_fn(y2.len(), |i| beta * (y2[i] - y1[i]));
    let gram = |j: &Mat<f64>| -> Mat<f64> { j.transpose() * j };
    let damped =
        |g: &Mat<f64>| Mat::<f64>::from_fn(p, p, |r, c| g[(r, c)] + lambda * f64::from(r == c));
    let spectrum = |g: &Mat<f64>| -> AnyResult<(f64, f64)> {
        let e = g
            .self_adjoint_eigenvalues(Side::Lower)
            .map_err(|e| format!("{e:?}"))?;
        Ok((e[0], e[e.len() - 1]))
    };
    let g2 = gram(&j2);
    let llt = damped(&g2).llt(Side::Lower).map_err(|e| format!("{e:?}"))?;
    let s = llt.solve(j2.transpose() * &dy);
    let fitted = &dy - &j2 * &s;
    let z: Vec<f64> = (0..p).map(|i| t2[i] + s[i]).collect();
    let dist = Col::<f64>::from_fn(p, |i| t2[i] - t1[i]).norm_l2();
    println!(
        "‖θ₂ − θ₁‖ {dist:.3e}, ‖s‖ {:.3e}, ‖β(y₂ − y₁)‖ {:.3e}, ‖β(y₂ − y₁) − J₂s‖ {:.3e}",
        s.norm_l2(),
        dy.norm_l2(),
        fitted.norm_l2()
    );
    let (lo, hi) = spectrum(&g2)?;
    println!("eig G(θ₂) in [{lo:.3e}, {hi:.3e}], λ = {lambda:e}");
    let mut lz = model.linearize(&z)?;
    let gz = gram(&lz.dense_jacobian().ok_or("no dense Jacobian")?);
    let (lo, hi) = spectrum(&gz)?;
    let loss = |y: &[f64]| 0.5 * y.iter().map(|v| v * v).sum::<f64>();
    println!(
        "eig G(z) in [{lo:.3e}, {hi:.3e}] (ε·max {:.3e}); loss at θ₂ {:.4e}, at z {:.4e}",
        f64::EPSILON * hi,
        loss(&y2),
        loss(lz.outputs())
    );
    let factored = damped(&gz).llt(Side::Lower).is_ok();
    println!(
        "faer Cholesky of G(z) + λI: {}",
        if factored { "ok" } else { "fails" }
    );
    Ok(())
}

fn usage() -> Box<dyn std::error::Error> {
    "usage: pinn_explore CONFIG SETTING STEPS EVERY [SEED] (see the module docs)".into()
}

fn main() -> AnyResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, setting, steps, every, rest @ ..] = args.as_slice() else {
        return Err(usage());
    };
    let (steps, every): (u64, u64) = (steps.parse()?, every.parse()?);
    let seed: u64 = rest.first().map_or(Ok(0), |s| s.parse())?;
    let case = Arc::new(build(name)?);
    if setting == "scale" {
        return scale(name, &case, seed);
    }
    if let Some(lambda) = setting.strip_prefix("nestdiag=") {
        return nest_diag(&case, lambda.parse()?, seed);
    }
    let mut solver = NaturalGradient::new().with_linear_solver(smaller_space(&case))?;
    for item in setting.split(',') {
        solver = apply(solver, item)?;
    }
    let curve = Curve {
        case: case.clone(),
        every: every.max(1),
        start: Instant::now(),
        excluded: 0.0,
        best: f64::INFINITY,
        best_at: (0, 0.0),
    };
    let theta0 = case.problem.model().net().init_params(seed);
    let res = Executor::new(case.problem.clone(), solver)
        .configure(|st| st.param(theta0).max_iters(steps))
        .add_observer(curve, ObserverMode::Always)
        .run()?;
    println!("stop {:?}", res.state().get_termination_reason());
    Ok(())
}
