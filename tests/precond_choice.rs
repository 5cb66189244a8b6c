//! Issue 14.1: `Preconditioner::Auto` picks Jacobi where it pays (a linear design with
//! columns of very different norms) and no preconditioner where Jacobi loses (a tanh
//! network), by counts; the returned direction is the winner's, bitwise; a trial is a race
//! (the current choice stopped at the threshold, then the other, caps doubling) whose
//! products are derived from the fixed solves' counts; the choice is kept between trials and measured again at the
//! refresh. Directions are checked against a dense twin of `G + λI`.

mod common;

use faer::Mat;
use natgrad::linsolve::DirectionSolver;
use natgrad::linsolve::{
    CgSettings, LinearSolver, PrecondChoice, Preconditioner, PreconditionerKind, Rhs, SolveInfo,
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
    cache: &mut DirectionSolver,
) -> (Vec<f64>, SolveInfo, u64) {
    direction_from(pb, (theta, lambda), solver, cache, vec![0.0; pb.n_params()])
}

/// [`direction`] at `(θ, λ)` from the initial guess `d` (used when the solver
/// warm-starts).
fn direction_from<Mo: Model, Lo: Loss, Me: Metric>(
    pb: &FitProblem<Mo, Lo, Me>,
    (theta, lambda): (&[f64], f64),
    solver: &LinearSolver,
    cache: &mut DirectionSolver,
    mut d: Vec<f64>,
) -> (Vec<f64>, SolveInfo, u64) {
    let mut lin = pb.linearize(theta).unwrap();
    let r = lin.output_gradient().to_vec();
    let before = pb.evaluations().jvp;
    let rhs = Rhs::Cotangent { r: &r, jt_r: None };
    let info = cache
        .set_linear_solver(solver.clone())
        .solve_from(&mut lin, rhs, lambda, &mut d)
        .unwrap();
    (d, info, pb.evaluations().jvp - before)
}

/// [`direction`] with a fixed preconditioner and a fresh cache.
fn fixed<Mo: Model, Lo: Loss, Me: Metric>(
    pb: &FitProblem<Mo, Lo, Me>,
    theta: &[f64],
    lambda: f64,
    pre: Preconditioner,
) -> (Vec<f64>, SolveInfo, u64) {
    direction(pb, theta, lambda, &cg(pre), &mut DirectionSolver::default())
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

/// The products of a trial and its winner (0: the incumbent, 1: the challenger; `None`
/// when neither converges, and the smaller true residual decides), computed from the
/// race's specification (`natgrad::linsolve::precond_choice`) and the iteration counts
/// `counts` each preconditioner needs alone (`counts[0]` the incumbent's): run `k` goes
/// to the incumbent for even `k`, to the challenger for odd `k`, capped at `trial_above`
/// (k = 0), then `2^k·max(trial_above, 1)`, at most `max_iters` (and at `max_iters` once
/// the other runner has had a run capped there); the first within its cap wins, and with
/// `max_iters ≤ trial_above` the incumbent's one run is the result. From a cold start a
/// run costs one Gram product per iteration (`G·0` is free), plus one for the true
/// residual when it stops at `max_iters`, none when it stops at a smaller cap.
fn race_cost(counts: [u64; 2], trial_above: u64, max_iters: u64) -> (u64, Option<usize>) {
    let (mut products, mut last) = (0, [false; 2]);
    for k in 0u32.. {
        let who = k as usize % 2;
        if last[who] {
            continue;
        }
        let cap = match (last[1 - who], k) {
            (true, _) => max_iters,
            (false, 0) => trial_above.min(max_iters),
            (false, _) => (trial_above.max(1) << k).min(max_iters),
        };
        if counts[who] <= cap {
            return (products + counts[who], Some(who));
        }
        products += cap;
        if cap == max_iters {
            products += 1;
            last[who] = true;
            if k == 0 {
                return (products, Some(0));
            }
        }
        if last == [true, true] {
            return (products, None);
        }
    }
    unreachable!()
}

/// Issue 14.1, the race: the column-scaled design, where plain CG needs far more
/// iterations than Jacobi (more than `trial_above` = 50, and Jacobi at most 100). The
/// first solve runs plain CG capped at 50 iterations (50 products: a cold start's `G·0` is
/// free and a run stopped below `max_iters` is not measured), then Jacobi from the same
/// start, capped at 100, which converges after its own count `c`: so the solve costs
/// exactly `50 + c` Gram products (and one Gram diagonal, which is not a product), where
/// the trial that let plain CG finish first cost plain's count + `c` (1 412 on the
/// 1000×100 design of the docs). Auto keeps Jacobi, returns Jacobi's direction bitwise,
/// and the next solve (within `refresh_every`) runs Jacobi alone.
#[test]
fn auto_picks_jacobi_on_a_column_scaled_design() {
    let (pb, a) = scaled_design(300, 40);
    let theta = vec![0.0; 40];
    let lambda = 1e-8;
    let none = fixed(&pb, &theta, lambda, Preconditioner::None);
    let jac = fixed(&pb, &theta, lambda, Preconditioner::Jacobi);
    eprintln!(
        "plain {} iterations, Jacobi {}",
        none.1.cg_iters().unwrap(),
        jac.1.cg_iters().unwrap()
    );
    assert!(
        none.1.cg_iters().unwrap() > 100
            && jac.1.cg_iters().unwrap() <= 100
            && jac.1.cg_iters().unwrap() * 3 < none.1.cg_iters().unwrap(),
        "the design must favour Jacobi"
    );
    assert_eq!(
        (none.2, jac.2),
        (
            none.1.cg_iters().unwrap() as u64,
            jac.1.cg_iters().unwrap() as u64
        )
    );
    let mut cache = DirectionSolver::default();
    let (d, info, products) = direction(&pb, &theta, lambda, &auto(50, 10), &mut cache);
    assert_eq!(info.cg.unwrap().preconditioner, PreconditionerKind::Jacobi);
    assert_eq!(info.cg_iters(), jac.1.cg_iters());
    assert_eq!(d, jac.0, "Auto returns the Jacobi solve itself");
    assert_eq!(
        products,
        50 + jac.2,
        "the race: plain capped at 50, then Jacobi ({} before the race)",
        none.2 + jac.2
    );
    assert_eq!(race_cost([none.2, jac.2], 50, 5000), (50 + jac.2, Some(1)));
    assert_eq!(
        cache.cache().precond_choice,
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
    assert_eq!(
        (info2.cg.unwrap().preconditioner, products2),
        (PreconditionerKind::Jacobi, jac.2)
    );
    assert_eq!(d2, jac.0);
}

/// Warm-started: every run of the race starts from the same initial guess `x₀ ≠ 0`
/// (costing one product, `G x₀`, each), so the returned direction is bitwise the one
/// Jacobi alone reaches from `x₀`, at `(50 + 1) + (c + 1)` products for Jacobi's count `c`
/// from `x₀`.
#[test]
fn auto_race_runs_each_preconditioner_from_the_same_start() {
    let (pb, _) = scaled_design(300, 40);
    let theta = vec![0.0; 40];
    let lambda = 1e-8;
    let warm = |preconditioner| {
        LinearSolver::Cg(CgSettings {
            max_iters: 5000,
            warm_start: true,
            preconditioner,
            ..CgSettings::default()
        })
    };
    let x0: Vec<f64> = (0..40).map(|j| (j as f64 * 0.7).cos()).collect();
    let from_x0 = |pre| {
        let cache = &mut DirectionSolver::default();
        direction_from(&pb, (&theta, lambda), &warm(pre), cache, x0.clone())
    };
    let (none, jac) = (
        from_x0(Preconditioner::None),
        from_x0(Preconditioner::Jacobi),
    );
    assert!(none.1.cg_iters().unwrap() > 100 && jac.1.cg_iters().unwrap() <= 100);
    assert_eq!(
        jac.2,
        jac.1.cg_iters().unwrap() as u64 + 1,
        "G x₀, then one per iteration"
    );
    let auto = from_x0(Preconditioner::auto());
    assert_eq!(
        auto.1.cg.unwrap().preconditioner,
        PreconditionerKind::Jacobi
    );
    assert_eq!(auto.0, jac.0, "Jacobi's solve from x₀, bitwise");
    assert_eq!(auto.2, 51 + jac.2);
}

/// At the refresh the incumbent (Jacobi) runs first, capped at `trial_above` = 5 (below
/// Jacobi's count, so the race runs): plain CG (capped at 10), Jacobi (20), plain (40),
/// ... until Jacobi converges within its cap, so Jacobi stays and its direction is
/// returned; the products are the race's ([`race_cost`]). The first trial, with plain CG
/// the incumbent, is a race too.
#[test]
fn auto_measures_again_at_the_refresh() {
    let (pb, _) = scaled_design(300, 40);
    let theta = vec![0.0; 40];
    let lambda = 1e-8;
    let none = fixed(&pb, &theta, lambda, Preconditioner::None);
    let jac = fixed(&pb, &theta, lambda, Preconditioner::Jacobi);
    assert!(jac.2 > 5);
    let solver = auto(5, 2);
    let mut cache = DirectionSolver::default();
    let (d, _, first) = direction(&pb, &theta, lambda, &solver, &mut cache);
    assert_eq!(d, jac.0);
    assert_eq!((first, Some(1)), race_cost([none.2, jac.2], 5, 5000));
    let (_, _, between) = direction(&pb, &theta, lambda, &solver, &mut cache);
    assert_eq!(
        between, jac.2,
        "solve 2 is within the refresh period: Jacobi alone"
    );
    let (d, info, products) = direction(&pb, &theta, lambda, &solver, &mut cache);
    assert_eq!(info.cg.unwrap().preconditioner, PreconditionerKind::Jacobi);
    assert_eq!(d, jac.0);
    assert_eq!((products, Some(0)), race_cost([jac.2, none.2], 5, 5000));
    assert!(products > jac.2, "the refresh raced");
    assert_eq!(
        cache.cache().precond_choice,
        Some(PrecondChoice {
            jacobi: true,
            measured_at: 3
        })
    );
}

/// The race against `max_iters` (plain CG needs far more than 20 iterations here,
/// Jacobi 19): with `trial_above` = 5 and `max_iters` = 20, plain CG's third run (cap 20)
/// is its last, and Jacobi then gets 20 and wins; with `max_iters` = 12 and
/// `trial_above` = 2 neither converges and the smaller true residual wins (truncation
/// accepted); with `max_iters` ≤ `trial_above` there is no race: plain CG's truncated
/// solve is returned (and is an error unless truncation is accepted).
#[test]
fn auto_race_ends_at_max_iters() {
    let (pb, _) = scaled_design(300, 40);
    let theta = vec![0.0; 40];
    let lambda = 1e-8;
    let with = |preconditioner, max_iters, accept_truncated| {
        LinearSolver::Cg(CgSettings {
            max_iters,
            warm_start: false,
            accept_truncated,
            preconditioner,
            ..CgSettings::default()
        })
    };
    let at = |pre, max_iters, accept| {
        let solver = with(pre, max_iters, accept);
        direction(
            &pb,
            &theta,
            lambda,
            &solver,
            &mut DirectionSolver::default(),
        )
    };
    let auto_at = |trial_above, max_iters, accept| {
        let refresh_every = 10;
        at(
            Preconditioner::Auto {
                trial_above,
                refresh_every,
            },
            max_iters,
            accept,
        )
    };
    let fixed_at = |pre, max_iters| at(pre, max_iters, true);
    let (none, jac) = (
        fixed_at(Preconditioner::None, 5000),
        fixed_at(Preconditioner::Jacobi, 5000),
    );
    assert!(none.2 > 20 && jac.2 <= 20 && jac.2 > 10);
    let (d, info, products) = auto_at(5, 20, false);
    assert_eq!((products, Some(1)), race_cost([none.2, jac.2], 5, 20));
    assert_eq!(
        (info.cg.unwrap().preconditioner, d),
        (PreconditionerKind::Jacobi, jac.0)
    );
    // Neither within 12: both truncated, the smaller true residual wins.
    let (d, info, products) = auto_at(2, 12, true);
    assert_eq!((products, None), race_cost([none.2, jac.2], 2, 12));
    let (plain12, jacobi12) = (
        fixed_at(Preconditioner::None, 12),
        fixed_at(Preconditioner::Jacobi, 12),
    );
    let best = match jacobi12.1.rel_residual < plain12.1.rel_residual {
        true => jacobi12,
        false => plain12.clone(),
    };
    assert!(info.cg.unwrap().truncated);
    assert_eq!(
        (info.cg.unwrap().preconditioner, d),
        (best.1.cg.unwrap().preconditioner, best.0)
    );
    // max_iters ≤ trial_above: plain CG's truncated solve, no race.
    let (d, info, products) = auto_at(50, 12, true);
    assert_eq!((products, Some(0)), race_cost([none.2, jac.2], 50, 12));
    assert_eq!(
        (info.cg.unwrap().preconditioner, products, d),
        (PreconditionerKind::None, 13, plain12.0)
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
/// race it (`trial_above` = 0), keeps no preconditioner and returns the plain CG direction
/// bitwise, at the race's cost ([`race_cost`]). With the default threshold (plain CG
/// converges within 50 iterations) no trial is made: plain CG exactly, bitwise and in
/// products.
#[test]
fn auto_keeps_no_preconditioner_on_a_network() {
    let pb = network(144);
    let theta = pb.model().init_params(1);
    let lambda = 1e-3;
    let none = fixed(&pb, &theta, lambda, Preconditioner::None);
    let jac = fixed(&pb, &theta, lambda, Preconditioner::Jacobi);
    eprintln!(
        "plain {} iterations, Jacobi {}",
        none.1.cg_iters().unwrap(),
        jac.1.cg_iters().unwrap()
    );
    assert!(
        jac.1.cg_iters().unwrap() > 2 * none.1.cg_iters().unwrap(),
        "the network must favour no preconditioner"
    );
    let mut cache = DirectionSolver::default();
    let (d, info, products) = direction(&pb, &theta, lambda, &auto(0, 10), &mut cache);
    assert_eq!(info.cg.unwrap().preconditioner, PreconditionerKind::None);
    assert_eq!(info.cg_iters(), none.1.cg_iters());
    assert_eq!(d, none.0, "Auto returns the plain solve itself");
    assert_eq!((products, Some(0)), race_cost([none.2, jac.2], 0, 5000));
    assert_eq!(cache.cache().precond_choice.map(|c| c.jacobi), Some(false));
    let (d, info, products) = direction(
        &pb,
        &theta,
        lambda,
        &auto(50, 10),
        &mut DirectionSolver::default(),
    );
    assert_eq!(
        (d, info.cg.unwrap().preconditioner, products),
        (none.0, PreconditionerKind::None, none.2)
    );
}
