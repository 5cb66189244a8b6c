//! Damping (issue 14 item 10): Nielsen's Levenberg–Marquardt update reaches a certified
//! minimum within a small multiple of the Gauss–Newton count where the threshold rule
//! crawls, and damping relative to the Gram's scale does not see a constant factor in the
//! metric. (The update formula against hand-computed values: tests/step_control.rs.)

mod common;

use argmin::core::observers::ObserverMode;
use argmin::core::{Executor, State};
use common::rel_diff;
use common::runs::reason_text;
use faer::{Mat, MatMut};
use natgrad::metric::FixedMetric;
use natgrad::model::ClosureModel;
use natgrad::observe::Iterates;
use natgrad::problems::nist::{self, Certified, JacobianFn, ValueFn};
use natgrad::problems::toys;
use natgrad::{
    converged_by, DampingRule, DampingScale, DenseMetric, FitProblem, LevenbergMarquardt,
    LinearSolver, Metric, NaturalGradient, SquaredError, Tolerances, WeightedL2,
};

/// The iterates of a run and the iteration at which θ first agreed with the certified
/// minimiser to 6 digits.
fn iterates(c: &Certified, start: &[f64], s: NaturalGradient, iters: u64) -> Vec<Vec<f64>> {
    let rec = Iterates::default();
    let res = Executor::new(c.problem(), s)
        .configure(|st| st.param(start.to_vec()).max_iters(iters))
        .add_observer(rec.clone(), ObserverMode::Always)
        .run()
        .unwrap();
    let reason = res.state().get_termination_reason().unwrap();
    assert!(
        converged_by(reason).is_some(),
        "{}: the run must stop by itself: {reason:?}",
        c.name
    );
    rec.get()
}

fn reached(c: &Certified, its: &[Vec<f64>]) -> Option<usize> {
    its.iter().position(|t| c.digits(t) >= 6.0).map(|i| i + 1)
}

fn lm(rule: DampingRule) -> NaturalGradient {
    NaturalGradient::new()
        .with_linear_solver(LinearSolver::Cholesky)
        .and_then(|s| {
            s.with_levenberg_marquardt(LevenbergMarquardt {
                min: 1e-12,
                max: 1e12,
                rule,
            })
        })
        .unwrap()
}

#[test]
fn nielsen_reaches_chwirut2_within_the_gauss_newton_count_plus_its_detour() {
    // Chwirut2 from NIST's far start: Gauss–Newton (λ = 1e-8, full steps) reaches the
    // certified minimiser in n_GN steps. Levenberg–Marquardt from the same λ₀ rejects
    // GN's first steps (the loss goes up) r times, and Nielsen's rule multiplies λ by
    // ν = 2, 4, …, 2^r: λ = λ₀·2^{r(r+1)/2} at the first accepted step. Good steps
    // (ρ ≥ 0.937) divide λ by 3, so ⌈log₃ 2 · r(r+1)/2⌉ of them bring λ back to λ₀,
    // where the step is GN's; GN's n_GN steps follow. Budget:
    // N = n_GN + r + ⌈log₃ 2 · r(r+1)/2⌉. The threshold rule (×3/2 per rejection,
    // ×2/3 per good step) took 117 iterations here (issue 14); Nielsen must beat it.
    let c = nist::CHWIRUT2;
    let start = c.starts[0];
    let gn = NaturalGradient::new()
        .with_linear_solver(LinearSolver::Cholesky)
        .unwrap();
    let n_gn = reached(&c, &iterates(&c, start, gn, 1000)).expect("GN reaches it");
    let its = iterates(&c, start, lm(DampingRule::Nielsen), 1000);
    let n_lm = reached(&c, &its).expect("LM reaches the certified minimiser");
    // Rejected steps leave θ where it was.
    let r = its.iter().take_while(|t| t.as_slice() == start).count();
    let descent = (2f64.ln() / 3f64.ln() * (r * (r + 1)) as f64 / 2.0).ceil() as usize;
    let budget = n_gn + r + descent;
    let last = its.last().unwrap();
    println!(
        "Chwirut2 start 1: GN {n_gn}, Nielsen LM {n_lm} ({} iterations, {:.1} digits), \
         r = {r}, budget {budget}",
        its.len(),
        c.digits(last)
    );
    assert!(r > 0, "the far start must exercise the rejections");
    assert!(n_lm <= budget, "Nielsen: {n_lm} > {budget}");
    assert!((c.sse_at(last) - c.sse).abs() <= 1e-9 * c.sse);
    let its = iterates(&c, start, lm(DampingRule::Threshold), 1000);
    let n_threshold = reached(&c, &its).expect("threshold LM reaches it too");
    assert!(
        n_lm < n_threshold,
        "Nielsen {n_lm}, threshold {n_threshold}"
    );
}

/// Misra1a with the squared error and the metric `scale·M₀`: `M₀ = I` as a diagonal
/// ([`WeightedL2`], so `tr(G)` comes from `gram_diagonal`) or a dense tridiagonal SPD
/// matrix ([`DenseMetric`], no diagonal: the Rayleigh quotient along g).
type Misra<Me> = FitProblem<ClosureModel<ValueFn, JacobianFn>, SquaredError<Me>, Me>;

fn misra<Me: FixedMetric + Metric + Clone>(metric: Me) -> Misra<Me> {
    let c = nist::MISRA1A;
    let (f, grad, xs) = (c.f, c.grad, c.x);
    let value: ValueFn = Box::new(move |t: &[f64], y: &mut [f64]| {
        y.iter_mut().zip(xs).for_each(|(y, &x)| *y = f(t, x));
    });
    let jacobian: JacobianFn = Box::new(move |t: &[f64], mut j: MatMut<'_, f64>| {
        let mut row = [0.0; 2];
        for (i, &x) in xs.iter().enumerate() {
            grad(t, x, &mut row);
            j[(i, 0)] = row[0];
            j[(i, 1)] = row[1];
        }
    });
    let model = ClosureModel::new(2, xs.len(), value, jacobian);
    let loss = SquaredError::new(c.y.to_vec(), metric.clone()).unwrap();
    FitProblem::new(model, loss, metric).unwrap()
}

fn tridiagonal(n: usize, scale: f64) -> DenseMetric {
    let k = Mat::from_fn(n, n, |i, j| match i.abs_diff(j) {
        0 => 2.0 * scale,
        1 => -0.5 * scale,
        _ => 0.0,
    });
    DenseMetric::new(k).unwrap()
}

fn path<Me: FixedMetric + Metric + Clone + 'static>(
    metric: Me,
    s: NaturalGradient,
) -> Vec<Vec<f64>> {
    let rec = Iterates::default();
    Executor::new(misra(metric), s)
        .configure(|st| st.param(nist::MISRA1A.starts[0].to_vec()).max_iters(12))
        .add_observer(rec.clone(), ObserverMode::Always)
        .run()
        .unwrap();
    rec.get()
}

fn damped(scale: DampingScale, adaptive: bool) -> NaturalGradient {
    let s = NaturalGradient::new()
        .with_linear_solver(LinearSolver::Cholesky)
        .and_then(|s| s.with_damping(1e-2))
        .and_then(|s| s.with_tolerances(Tolerances::NONE))
        .unwrap()
        .with_damping_scale(scale);
    if adaptive {
        s.with_adaptive_damping(1e-12, 1e12).unwrap()
    } else {
        s
    }
}

/// Largest relative difference between two runs' iterates (∞ if their lengths differ).
fn distance(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| rel_diff(x, y))
        .fold(0.0, common::nan_max)
}

#[test]
fn relative_damping_is_invariant_to_scaling_the_metric() {
    // M → cM multiplies the loss, g and G by c: with λ_k = μ·tr(G_k)/p (or the Rayleigh
    // quotient along g) the damped system, the step and the gain ratio are unchanged,
    // so the iterates are the same. For c a power of two every product scales exactly:
    // bitwise equal; for c = 1e6 equal to rounding. Absolute damping λ = 1e-2 is not
    // invariant: the same runs then differ (the oracle can fail).
    for adaptive in [false, true] {
        let rel = || damped(DampingScale::GramTrace, adaptive);
        let base = path(WeightedL2::new(vec![1.0; 14]).unwrap(), rel());
        assert_eq!(base.len(), 12);
        let exact = path(WeightedL2::new(vec![1024.0; 14]).unwrap(), rel());
        assert_eq!(base, exact, "diagonal metric, ×1024, adaptive = {adaptive}");
        let e = distance(&base, &path(WeightedL2::new(vec![1e6; 14]).unwrap(), rel()));
        assert!(
            e <= 1e-6,
            "diagonal metric, ×1e6, adaptive = {adaptive}: {e:e}"
        );

        let dense = path(tridiagonal(14, 1.0), rel());
        assert_eq!(dense, path(tridiagonal(14, 0.125), rel()), "dense, ×1/8");
        // Misra1a's Gram has condition ~1e11: rounding differences of a non-exact
        // scaling grow by up to cond·ε per solve.
        let e = distance(&dense, &path(tridiagonal(14, 1e-6), rel()));
        assert!(
            e <= 1e-6,
            "dense metric, ×1e-6, adaptive = {adaptive}: {e:e}"
        );

        let abs = || damped(DampingScale::Absolute, adaptive);
        let a = path(WeightedL2::new(vec![1.0; 14]).unwrap(), abs());
        let b = path(WeightedL2::new(vec![1e6; 14]).unwrap(), abs());
        let e = distance(&a, &b);
        assert!(e > 1e-3, "absolute damping sees the scale: {e:e}");
    }
}

#[test]
fn nielsen_rejects_null_steps_so_a_converged_run_ends() {
    // The non-L² toy has zero residual at c = c_u (docs/math.md §4). Levenberg–Marquardt
    // from λ₀ = 1e-8 drives the loss to rounding level, where a step predicts a decrease
    // but leaves the loss exactly unchanged (ρ = 0). Accepting such steps (ρ ≥ 0) doubled
    // λ up to its cap and went on accepting null steps until max_iters; Nielsen accepts
    // only ρ > 0, so they are rejected, λ reaches its cap and the run ends saying why.
    let toy = toys::non_l2();
    let s = NaturalGradient::new()
        .with_linear_solver(LinearSolver::Cholesky)
        .and_then(|s| s.with_adaptive_damping(1e-12, 1e12))
        .unwrap();
    let res = Executor::new(toy.problem, s)
        .configure(|st| st.param(toy.theta0.clone()).max_iters(2000))
        .run()
        .unwrap();
    let reason = reason_text(res.state());
    let (iters, loss) = (res.state().get_iter(), res.state().get_best_cost());
    println!("{iters} iterations, loss {loss:e}: {reason}");
    assert!(iters < 2000, "{reason}");
    assert!(loss <= 1e-20, "loss {loss:e}");
    assert!(
        reason.contains("stuck at its maximum damping")
            && reason.contains("the loss did not change at all"),
        "{reason}"
    );
}
