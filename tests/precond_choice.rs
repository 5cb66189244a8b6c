//! Issue 14.1: `Preconditioner::Auto` picks Jacobi where it pays (a linear design with
//! columns of very different norms) and no preconditioner where Jacobi loses (a tanh
//! network), by counts; the returned direction is the winner's, bitwise; a trial costs at
//! most about two solves; the choice is kept between trials and measured again at the
//! refresh. Directions are checked against a dense twin of `G + λI`.

mod common;

use faer::Mat;
use natgrad::linsolve::{
    solve_direction, CgSettings, LinearSolver, PrecondChoice, Preconditioner, Rhs, SolveCache,
    SolveInfo,
};
use natgrad::metric::{Metric, WeightedL2};
use natgrad::model::{Activation, LinearModel, Mlp, Model};
use natgrad::{FitProblem, Loss, SquaredError};
use rand::Rng;

fn cg(preconditioner: Preconditioner) -> LinearSolver {
    LinearSolver::Cg(CgSettings {
        max_iters: 5000,
        warm_start: false,
        preconditioner,
        ..CgSettings::default()
    })
}

fn auto(trial_above: usize, refresh_every: usize) -> LinearSolver {
    cg(Preconditioner::Auto {
        trial_above,
        refresh_every,
    })
}

/// One direction `(G + λI) d = Jᵀ∇_yℓ` at `theta` with `solver` and `cache`: the
/// direction, the solve info and the Gram products (jvps) it took.
fn direction<Mo: Model, Lo: Loss, Me: Metric>(
    pb: &FitProblem<Mo, Lo, Me>,
    theta: &[f64],
    lambda: f64,
    solver: &LinearSolver,
    cache: &mut SolveCache,
) -> (Vec<f64>, SolveInfo, u64) {
    let mut lin = pb.linearize(theta).unwrap();
    let r = lin.output_gradient().to_vec();
    let mut d = vec![0.0; pb.n_params()];
    let before = pb.evaluations().jvp;
    let rhs = Rhs::Cotangent { r: &r, jt_r: None };
    let info =
        solve_direction(&mut lin, rhs, &mut d, lambda, solver, cache, faer::Par::Seq).unwrap();
    (d, info, pb.evaluations().jvp - before)
}

/// [`direction`] with a fixed preconditioner and a fresh cache.
fn fixed<Mo: Model, Lo: Loss, Me: Metric>(
    pb: &FitProblem<Mo, Lo, Me>,
    theta: &[f64],
    lambda: f64,
    pre: Preconditioner,
) -> (Vec<f64>, SolveInfo, u64) {
    direction(pb, theta, lambda, &cg(pre), &mut SolveCache::default())
}

/// A Gaussian `n×p` design whose column `j` is scaled by `10^{−2 + 4j/(p−1)}`, the
/// problem `‖Aθ − u‖²/(2n)` in the metric `I/n`, and `A`.
fn scaled_design(
    n: usize,
    p: usize,
) -> (FitProblem<LinearModel, SquaredError, WeightedL2>, Mat<f64>) {
    let mut rng = common::rng(14);
    let a = Mat::from_fn(n, p, |_, j| {
        let scale = 10f64.powf(-2.0 + 4.0 * j as f64 / (p - 1) as f64);
        scale * rng.random_range(-1.0..1.0)
    });
    let u: Vec<f64> = (0..n).map(|i| (0.1 * i as f64).sin()).collect();
    let pb = FitProblem::new(
        LinearModel::dense(a.clone()).unwrap(),
        SquaredError::l2(u).unwrap(),
        WeightedL2::uniform(n).unwrap(),
    )
    .unwrap();
    (pb, a)
}

/// `‖b − (G + λI) d‖ / ‖b‖` with `G = AᵀA/n` from the dense twin.
fn twin_residual(a: &Mat<f64>, lambda: f64, b: &[f64], d: &[f64]) -> f64 {
    let n = a.nrows();
    let m = Mat::from_fn(n, n, |i, k| if i == k { 1.0 / n as f64 } else { 0.0 });
    let gd = common::matvec(&common::gram_twin(a, &m, lambda), d);
    let res: Vec<f64> = b.iter().zip(&gd).map(|(b, g)| b - g).collect();
    let zero = vec![0.0; b.len()];
    common::rel_diff(&res, &zero) / common::rel_diff(b, &zero)
}

/// The column-scaled design: plain CG needs far more iterations than Jacobi, so Auto
/// tries Jacobi (plain exceeds `trial_above` = 50), keeps it, and returns Jacobi's
/// direction bitwise; the trial cost plain's products plus Jacobi's. The next solve
/// (within `refresh_every`) runs Jacobi alone.
#[test]
fn auto_picks_jacobi_on_a_column_scaled_design() {
    let (pb, a) = scaled_design(300, 40);
    let theta = vec![0.0; 40];
    let lambda = 1e-8;
    let none = fixed(&pb, &theta, lambda, Preconditioner::None);
    let jac = fixed(&pb, &theta, lambda, Preconditioner::Jacobi);
    eprintln!("plain {} iterations, Jacobi {}", none.1.iters, jac.1.iters);
    assert!(
        none.1.iters > 50 && jac.1.iters * 3 < none.1.iters,
        "the design must favour Jacobi"
    );
    let mut cache = SolveCache::default();
    let (d, info, products) = direction(&pb, &theta, lambda, &auto(50, 10), &mut cache);
    assert_eq!(info.preconditioner, "jacobi");
    assert_eq!(info.iters, jac.1.iters);
    assert_eq!(d, jac.0, "Auto returns the Jacobi solve itself");
    assert_eq!(products, none.2 + jac.2, "the trial: plain, then Jacobi");
    assert_eq!(
        cache.precond_choice,
        Some(PrecondChoice {
            jacobi: true,
            measured_at: 1
        })
    );
    // The direction solves the system (dense twin), not only agrees with Jacobi's.
    let mut b = vec![0.0; 40];
    let mut lin = pb.linearize(&theta).unwrap();
    let r = lin.output_gradient().to_vec();
    lin.vjp(&r, &mut b);
    assert!(twin_residual(&a, lambda, &b, &d) < 1e-8);
    // Between trials: Jacobi alone.
    let (d2, info2, products2) = direction(&pb, &theta, lambda, &auto(50, 10), &mut cache);
    assert_eq!((info2.preconditioner, products2), ("jacobi", jac.2));
    assert_eq!(d2, jac.0);
}

/// At the refresh the incumbent (Jacobi) runs first and plain CG is the challenger,
/// capped one iteration below Jacobi's count; it misses (one more product for its true
/// residual), so Jacobi stays and its direction is returned.
#[test]
fn auto_measures_again_at_the_refresh() {
    let (pb, _) = scaled_design(300, 40);
    let theta = vec![0.0; 40];
    let lambda = 1e-8;
    let jac = fixed(&pb, &theta, lambda, Preconditioner::Jacobi);
    let solver = auto(0, 2);
    let mut cache = SolveCache::default();
    direction(&pb, &theta, lambda, &solver, &mut cache);
    let (_, _, between) = direction(&pb, &theta, lambda, &solver, &mut cache);
    assert_eq!(
        between, jac.2,
        "solve 2 is within the refresh period: Jacobi alone"
    );
    let (d, info, products) = direction(&pb, &theta, lambda, &solver, &mut cache);
    assert_eq!(info.preconditioner, "jacobi");
    assert_eq!(d, jac.0);
    let cap = jac.2 - 1;
    assert_eq!(
        products,
        jac.2 + cap + 1,
        "Jacobi, then plain capped at {cap} + its residual"
    );
    assert_eq!(
        cache.precond_choice,
        Some(PrecondChoice {
            jacobi: true,
            measured_at: 3
        })
    );
}

/// A 2-20-20-1 tanh network (p = 501) fitted to `sin(x₁ + x₂)` at `m` points uniform in
/// `[0, 1]²`, L² weights `1/m`.
fn network(m: usize) -> FitProblem<Mlp, SquaredError, WeightedL2> {
    let mut rng = common::rng(20);
    let x: Vec<f64> = (0..2 * m).map(|_| rng.random_range(0.0..1.0)).collect();
    let u: Vec<f64> = x.chunks(2).map(|p| (p[0] + p[1]).sin()).collect();
    let model = Mlp::with_hidden(&[2, 20, 20, 1], Activation::Tanh, &x)
        .unwrap()
        .with_parallelism(faer::Par::Seq);
    let loss = SquaredError::l2(u).unwrap();
    FitProblem::new(model, loss, WeightedL2::uniform(m).unwrap()).unwrap()
}

/// The 2-20-20-1 tanh network (p = 501) at 144 points: Jacobi loses, so Auto, made to
/// try it (`trial_above` = 0), keeps no preconditioner and returns the plain CG direction
/// bitwise; the trial cost at most twice the plain solve (Jacobi capped one below, plus
/// its true residual). With the default threshold no trial is made: plain CG exactly.
#[test]
fn auto_keeps_no_preconditioner_on_a_network() {
    let pb = network(144);
    let theta = pb.model().init_params(1);
    let lambda = 1e-3;
    let none = fixed(&pb, &theta, lambda, Preconditioner::None);
    let jac = fixed(&pb, &theta, lambda, Preconditioner::Jacobi);
    eprintln!("plain {} iterations, Jacobi {}", none.1.iters, jac.1.iters);
    assert!(
        jac.1.iters > 2 * none.1.iters,
        "the network must favour no preconditioner"
    );
    let mut cache = SolveCache::default();
    let (d, info, products) = direction(&pb, &theta, lambda, &auto(0, 10), &mut cache);
    assert_eq!(info.preconditioner, "none");
    assert_eq!(info.iters, none.1.iters);
    assert_eq!(d, none.0, "Auto returns the plain solve itself");
    assert_eq!(
        products,
        2 * none.2,
        "plain, then Jacobi capped at {} + 1",
        none.2 - 1
    );
    assert_eq!(cache.precond_choice.map(|c| c.jacobi), Some(false));
    let (d, info, products) = direction(
        &pb,
        &theta,
        lambda,
        &auto(50, 10),
        &mut SolveCache::default(),
    );
    assert_eq!((d, info.preconditioner, products), (none.0, "none", none.2));
}
