//! The residual interface (issue 16, acceptance 1, 2 and 6): residual channel gradients
//! through num-dual against a hand-derived Jacobian, the θ-Jacobian of every kind of term
//! against a dense twin built by nested dual numbers, and the typed errors.

mod common;

use common::taylor_ref::{channels_by_duals, Act};
use common::{rng, vec};
use faer::Mat;
use natgrad::model::{ChannelSet, Model, SecondOrder, Smooth, TaylorMlp};
use natgrad::pde::{residual_gradient, DualNum, Fields, PdeModel, Point, Residual, Term};
use natgrad::Linearization;
use num_dual::Dual64;
use rand::Rng;

/// Viscous Burgers `u_t + u u_x − ν u_xx`, x = (t, x).
struct Burgers {
    nu: f64,
}

impl Residual for Burgers {
    fn residual<D: DualNum<Primitive = f64> + Copy>(&self, _: &Point, u: &Fields<D>) -> D {
        u.dx(0, 0) + u.u(0) * u.dx(0, 1) - u.dxx(0, 1, 1) * self.nu
    }
}

fn burgers_channels() -> ChannelSet {
    ChannelSet::value(2)
        .with_gradient()
        .with_second(SecondOrder::Entry(1, 1))
        .unwrap()
}

#[test]
fn burgers_channel_gradient_matches_the_hand_derived_jacobian() {
    let set = burgers_channels();
    let (c_t, c_x) = (
        set.partial_channel(0).unwrap(),
        set.partial_channel(1).unwrap(),
    );
    let c_xx = set.second_channel(SecondOrder::Entry(1, 1)).unwrap();
    let nu = 0.01 / std::f64::consts::PI;
    let mut r = rng(1);
    for _ in 0..20 {
        let ch = vec(&mut r, set.len());
        let x = [r.random_range(0.0..1.0), r.random_range(-1.0..1.0)];
        let p = Point {
            x: &x,
            normal: &[],
            data: &[],
            index: 0,
        };
        let (val, g) = residual_gradient(&Burgers { nu }, &p, &ch, 1, &set).unwrap();
        let (u, ut, ux, uxx) = (ch[0], ch[c_t], ch[c_x], ch[c_xx]);
        // r = u_t + u u_x − ν u_xx: ∂r/∂u = u_x, ∂r/∂u_t = 1, ∂r/∂u_x = u, ∂r/∂u_xx = −ν.
        let mut hand = vec![0.0; set.len()];
        hand[0] = ux;
        hand[c_t] = 1.0;
        hand[c_x] = u;
        hand[c_xx] = -nu;
        assert!((val - (ut + u * ux - nu * uxx)).abs() <= 1e-12);
        for (k, (a, b)) in g.iter().zip(&hand).enumerate() {
            assert!((a - b).abs() <= 1e-12, "channel {k}: {a} vs {b}");
        }
    }
}

/// A two-field reaction–diffusion system with variable coefficient:
/// `−∇·(k(x)∇u₀) + u₀ u₁ = f`, `−Δu₁ + u₀³ = 0` with `k = 1 + x₀²`, written as
/// `−k Δu₀ − ∂k/∂x₀ ∂u₀/∂x₀ + u₀u₁ − f` (first residual) and a second term for `u₁`.
struct SystemFirst;
impl Residual for SystemFirst {
    fn residual<D: DualNum<Primitive = f64> + Copy>(&self, p: &Point, u: &Fields<D>) -> D {
        let k = 1.0 + p.x[0] * p.x[0];
        -u.laplacian(0) * k - u.dx(0, 0) * (2.0 * p.x[0]) + u.u(0) * u.u(1) - p.data[0]
    }
}
struct SystemSecond;
impl Residual for SystemSecond {
    fn residual<D: DualNum<Primitive = f64> + Copy>(&self, _: &Point, u: &Fields<D>) -> D {
        -u.laplacian(1) + u.u(0).powi(3)
    }
}
/// Robin: `n·∇u₀ + 2u₀ − g`.
struct Robin;
impl Residual for Robin {
    fn residual<D: DualNum<Primitive = f64> + Copy>(&self, p: &Point, u: &Fields<D>) -> D {
        u.dn(0) + u.u(0) * 2.0 - p.x[1]
    }
}
/// Dirichlet on both fields: `u₀ − sin x₀`, weighted sum with `u₁`.
struct Dirichlet;
impl Residual for Dirichlet {
    fn residual<D: DualNum<Primitive = f64> + Copy>(&self, p: &Point, u: &Fields<D>) -> D {
        u.u(0) - p.x[0].sin() + u.u(1) * 0.5
    }
}

fn points(seed: u64, d: usize, m: usize) -> Mat<f64> {
    let mut r = rng(seed);
    Mat::from_fn(d, m, |_, _| r.random_range(-1.0..1.0))
}

fn normals(m: usize) -> Mat<f64> {
    Mat::from_fn(2, m, |k, j| {
        let a = j as f64;
        if k == 0 {
            a.cos()
        } else {
            a.sin()
        }
    })
}

/// A four-term system problem on a 2-8-6-2 network with the given activation.
fn system(act: Smooth) -> (PdeModel, Vec<(Mat<f64>, ChannelSet)>) {
    let net = TaylorMlp::with_activation(vec![2, 8, 6, 2], std::sync::Arc::new(act)).unwrap();
    let lap = ChannelSet::laplacian(2);
    let grad = ChannelSet::value(2).with_gradient();
    let (xi, xj, xr, xd) = (
        points(1, 2, 6),
        points(2, 2, 5),
        points(3, 2, 4),
        points(4, 2, 3),
    );
    let f = Mat::from_fn(1, 6, |_, j| (j as f64).cos());
    let terms = vec![
        Term::new("first", xi.as_ref(), lap.clone(), SystemFirst).with_data(f.as_ref()),
        Term::new("second", xj.as_ref(), lap.clone(), SystemSecond).with_weight(2.0),
        Term::new("robin", xr.as_ref(), grad.clone(), Robin)
            .with_normals(normals(4).as_ref())
            .with_weight(3.0),
        Term::new("dirichlet", xd.as_ref(), ChannelSet::value(2), Dirichlet).with_weight(5.0),
    ];
    let model = PdeModel::new(net, terms).unwrap();
    let pts = vec![
        (xi, lap.clone()),
        (xj, lap),
        (xr, grad),
        (xd, ChannelSet::value(2)),
    ];
    (model, pts)
}

/// The outputs of `system` written from their definition over dual numbers in θ.
fn system_outputs(
    model: &PdeModel,
    pts: &[(Mat<f64>, ChannelSet)],
    theta: &[Dual64],
    act: Smooth,
) -> Vec<Dual64> {
    let widths = model.net().widths().to_vec();
    let weights = [1.0, 2.0, 3.0, 5.0];
    let mut out = Vec::new();
    for (t, (x, set)) in pts.iter().enumerate() {
        let m = x.ncols();
        for i in 0..m {
            let xi = [x[(0, i)], x[(1, i)]];
            let ch = channels_by_duals(&widths, Act::Builtin(act), theta, &xi, set);
            let u = |c: usize, o: usize| ch[c * 2 + o];
            let r = match t {
                0 => {
                    let k = 1.0 + xi[0] * xi[0];
                    let lap = u(set.second_channel(SecondOrder::Laplacian).unwrap(), 0);
                    -lap * k - u(1, 0) * (2.0 * xi[0]) + u(0, 0) * u(0, 1) - (i as f64).cos()
                }
                1 => -u(set.second_channel(SecondOrder::Laplacian).unwrap(), 1) + u(0, 0).powi(3),
                2 => {
                    let (c, s) = ((i as f64).cos(), (i as f64).sin());
                    u(1, 0) * c + u(2, 0) * s + u(0, 0) * 2.0 - xi[1]
                }
                _ => u(0, 0) - xi[0].sin() + u(0, 1) * 0.5,
            };
            out.push(r * (weights[t] / m as f64).sqrt());
        }
    }
    out
}

#[test]
fn every_term_jacobian_matches_the_dense_twin() {
    for act in [Smooth::Tanh, Smooth::Sin] {
        let (model, pts) = system(act);
        let (n, p) = (model.n_outputs(), model.n_params());
        let mut r = rng(9);
        let theta = vec(&mut r, p);
        let mut lin = model.linearize(&theta).unwrap();
        let plain: Vec<Dual64> = theta.iter().map(|&t| Dual64::from(t)).collect();
        let want: Vec<f64> = system_outputs(&model, &pts, &plain, act)
            .iter()
            .map(|v| v.re)
            .collect();
        for (a, b) in lin.outputs().iter().zip(&want) {
            assert!(
                (a - b).abs() <= 1e-12 * (1.0 + b.abs()),
                "outputs {a} vs {b}"
            );
        }
        // The dense twin, one parameter direction at a time.
        let mut twin = Mat::zeros(n, p);
        for j in 0..p {
            let th: Vec<Dual64> = theta
                .iter()
                .enumerate()
                .map(|(k, &t)| Dual64::new(t, if k == j { 1.0 } else { 0.0 }))
                .collect();
            for (i, v) in system_outputs(&model, &pts, &th, act).iter().enumerate() {
                twin[(i, j)] = v.eps;
            }
        }
        let scale = (0..n)
            .flat_map(|i| (0..p).map(move |j| (i, j)))
            .fold(1.0f64, |s, (i, j)| s.max(twin[(i, j)].abs()));
        let dense = lin.dense_jacobian().unwrap();
        let mut worst: f64 = 0.0;
        let mut jt = vec![0.0; n];
        let mut js = vec![0.0; p];
        for j in 0..p {
            let mut e = vec![0.0; p];
            e[j] = 1.0;
            lin.jvp(&e, &mut jt);
            for i in 0..n {
                worst = worst
                    .max((jt[i] - twin[(i, j)]).abs())
                    .max((dense[(i, j)] - twin[(i, j)]).abs());
            }
        }
        for i in 0..n {
            let mut e = vec![0.0; n];
            e[i] = 1.0;
            lin.vjp(&e, &mut js);
            for j in 0..p {
                worst = worst.max((js[j] - twin[(i, j)]).abs());
            }
        }
        assert!(worst / scale <= 1e-10, "{act:?}: {:e}", worst / scale);
    }
}

fn heat_terms(x: &Mat<f64>, set: ChannelSet) -> Vec<Term> {
    struct Heat;
    impl Residual for Heat {
        fn residual<D: DualNum<Primitive = f64> + Copy>(&self, _: &Point, u: &Fields<D>) -> D {
            u.dx(0, 0) - u.dxx(0, 1, 1) * 0.25
        }
    }
    vec![Term::new("interior", x.as_ref(), set, Heat)]
}

#[test]
fn bad_input_is_a_typed_error_at_construction() {
    let net = TaylorMlp::new(vec![2, 5, 1]).unwrap();
    let x = points(1, 2, 4);
    let msg = |terms: Vec<Term>| PdeModel::new(net.clone(), terms).unwrap_err().to_string();
    // Reads u_xx, requests only the gradient.
    let e = msg(heat_terms(&x, ChannelSet::value(2).with_gradient()));
    assert!(
        e.contains("term `interior`") && e.contains("∂²u_0/∂x_1∂x_1"),
        "{e}"
    );
    // Reads u_t, requests only u_xx (which brings u_x, not u_t).
    let e = msg(heat_terms(
        &x,
        ChannelSet::value(2)
            .with_second(SecondOrder::Entry(1, 1))
            .unwrap(),
    ));
    assert!(e.contains("∂u_0/∂x_0"), "{e}");
    // Points in R³ for a network on R².
    let e = msg(heat_terms(&points(1, 3, 4), burgers_channels()));
    assert!(
        e.contains("rows of the points") && e.contains("expected length 2, found 3"),
        "{e}"
    );
    // An empty term.
    let e = msg(heat_terms(&Mat::zeros(2, 0), burgers_channels()));
    assert!(e.contains("empty term"), "{e}");
    // A normal of the wrong length, and normals that are not one per point.
    let robin = |n: Mat<f64>| {
        vec![Term::new(
            "robin",
            x.as_ref(),
            ChannelSet::value(2).with_gradient(),
            Robin,
        )
        .with_normals(n.as_ref())]
    };
    let e = PdeModel::new(
        TaylorMlp::new(vec![2, 5, 1]).unwrap(),
        robin(Mat::zeros(3, 4)),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("length of the normals") && e.contains("expected length 2, found 3"),
        "{e}"
    );
    let e = PdeModel::new(
        TaylorMlp::new(vec![2, 5, 1]).unwrap(),
        robin(Mat::zeros(2, 3)),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("normals vs points"), "{e}");
    // A normal derivative without normals.
    let e = msg(vec![Term::new(
        "robin",
        x.as_ref(),
        ChannelSet::value(2).with_gradient(),
        Robin,
    )]);
    assert!(e.contains("no normals"), "{e}");
    // Output 1 of a scalar network.
    let e = msg(vec![Term::new(
        "dirichlet",
        x.as_ref(),
        ChannelSet::value(2),
        Dirichlet,
    )]);
    assert!(e.contains("u_1"), "{e}");
    assert!(PdeModel::new(net.clone(), vec![]).is_err());
    let e = msg(heat_terms(&x, burgers_channels())
        .into_iter()
        .map(|t| t.with_weight(0.0))
        .collect());
    assert!(e.contains("weight"), "{e}");
}

/// `√(x₀ − ¼)·u − 1`: NaN at points with x₀ < ¼.
struct SqrtDomain;
impl Residual for SqrtDomain {
    fn residual<D: DualNum<Primitive = f64> + Copy>(&self, p: &Point, u: &Fields<D>) -> D {
        u.u(0) * (p.x[0] - 0.25).sqrt() - 1.0
    }
}

#[test]
fn a_nan_residual_names_its_term_and_point() {
    let net = TaylorMlp::new(vec![2, 5, 1]).unwrap();
    let x = Mat::from_fn(
        2,
        4,
        |k, j| if k == 0 { [0.9, 0.5, 0.1, 0.7][j] } else { 0.3 },
    );
    let model = PdeModel::new(
        net.clone(),
        vec![
            Term::new("ok", x.as_ref(), ChannelSet::value(2), Dirichlet2),
            Term::new("data", x.as_ref(), ChannelSet::value(2), SqrtDomain),
        ],
    )
    .unwrap();
    let e = model
        .linearize(&net.init_params(0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("term `data` at point 2"), "{e}");
    // The forward pass (line searches) keeps the NaN for the caller to reject.
    let mut y = vec![0.0; 8];
    model.forward(&net.init_params(0), &mut y).unwrap();
    assert!(y[6].is_nan() && y[..6].iter().all(|v| v.is_finite()));
}

struct Dirichlet2;
impl Residual for Dirichlet2 {
    fn residual<D: DualNum<Primitive = f64> + Copy>(&self, _: &Point, u: &Fields<D>) -> D {
        u.u(0)
    }
}

/// `u − 2 + 0·√(1.5 − u)`: a data fit whose residual is NaN once `u > 1.5` at a point.
struct NanAboveOneAndAHalf;
impl Residual for NanAboveOneAndAHalf {
    fn residual<D: DualNum<Primitive = f64> + Copy>(&self, _: &Point, u: &Fields<D>) -> D {
        u.u(0) - 2.0 + (-u.u(0) + 1.5).sqrt() * 0.0
    }
}

#[test]
fn a_nan_residual_mid_run_ends_the_run_cleanly_naming_term_and_point() {
    use argmin::core::{Executor, State, TerminationReason};
    use natgrad::{Euclidean, FitProblem, NaturalGradient, SquaredError};
    let net = TaylorMlp::new(vec![2, 5, 1]).unwrap();
    let x = points(3, 2, 6);
    let model = PdeModel::new(
        net.clone(),
        vec![Term::new(
            "data",
            x.as_ref(),
            ChannelSet::value(2),
            NanAboveOneAndAHalf,
        )],
    )
    .unwrap();
    let theta0 = net.init_params(0);
    // The initial θ is in the residual's domain (|u| < 1.5 for a small Glorot network).
    let u0 = model.evaluate(&theta0, x.as_ref()).unwrap();
    assert!((0..6).all(|i| u0[(0, i)] < 1.5));
    let n = model.n_outputs();
    let problem = FitProblem::new(
        model,
        SquaredError::new(vec![0.0; n], Euclidean).unwrap(),
        Euclidean,
    )
    .unwrap();
    // A fixed Gauss–Newton step on u − 2 takes u to about 2: the residual is NaN there.
    let solver = NaturalGradient::new().with_damping(1e-8).unwrap();
    let res = Executor::new(problem, solver)
        .configure(|s| s.param(theta0.clone()).max_iters(20))
        .run()
        .expect("a numerical failure ends the run, it is not an error");
    let state = res.state();
    match state.get_termination_reason() {
        Some(TerminationReason::SolverExit(reason)) => {
            assert!(reason.contains("term `data` at point"), "{reason}");
        }
        other => panic!("expected a solver exit, got {other:?}"),
    }
    let best = state.get_best_param().unwrap();
    assert!(best.iter().all(|v| v.is_finite()));
}

#[test]
fn a_mini_batch_keeps_each_terms_scale_and_points() {
    let (model, _) = system(Smooth::Tanh);
    let theta = vec(&mut rng(12), model.n_params());
    let full = model.linearize(&theta).unwrap().outputs().to_vec();
    // Outputs 1, 4 (term `first`), 7 (`second`), 13, 15, 17 (`robin`, `dirichlet`).
    let picked = [1, 4, 7, 13, 15, 17];
    let sub = model.select_samples(&picked).unwrap();
    let lin = sub.linearize(&theta).unwrap();
    let want: Vec<f64> = picked.iter().map(|&i| full[i]).collect();
    for (a, b) in lin.outputs().iter().zip(&want) {
        assert!((a - b).abs() <= 1e-14 * (1.0 + b.abs()), "{a} vs {b}");
    }
    assert!(model.select_samples(&[18]).is_err());
    assert!(model.select_samples(&[]).is_err());
}
