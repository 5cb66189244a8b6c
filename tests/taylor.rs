//! Generalised Taylor-mode network (issue 16, acceptance 1): every channel (value, first
//! partials, Hessian entries, Laplacian) of every output against finite differences in x
//! and against hyper-dual numbers; the θ-Jacobian of the channels (jvp, vjp, per-point
//! Jacobian) against a dense twin built by nested dual numbers, for several activations,
//! depths and output counts.

mod common;

use common::taylor_ref::{channels_by_duals, reference, Act};
use common::{rng, vec};
use faer::{Mat, Par};
use natgrad::model::{ChannelSet, SecondOrder, Smooth, TaylorMlp};
use num_dual::Dual64;
use rand::Rng;

fn points(seed: u64, d: usize, m: usize) -> Mat<f64> {
    let mut r = rng(seed);
    Mat::from_fn(d, m, |_, _| r.random_range(-1.0..1.0))
}

/// (widths, activation, channel set): depths 1–3, one to three outputs, every activation.
fn cases() -> Vec<(Vec<usize>, Act, ChannelSet)> {
    let full = |d: usize| {
        let mut s = ChannelSet::value(d).with_gradient();
        for (i, j) in [(0, 0), (0, d - 1), (d - 1, d - 1)] {
            s = s.with_second(SecondOrder::Entry(i, j)).unwrap();
        }
        s.with_second(SecondOrder::Laplacian).unwrap()
    };
    vec![
        (vec![1, 7, 1], Act::Builtin(Smooth::Tanh), full(1)),
        (vec![2, 6, 5, 2], Act::Builtin(Smooth::Sin), full(2)),
        (vec![3, 5, 4, 3, 3], Act::Builtin(Smooth::Sigmoid), full(3)),
        (vec![2, 6, 4, 2], Act::Builtin(Smooth::Softplus), full(2)),
        (vec![3, 5, 4, 2], Act::Cubic, full(3)),
        // Only what the heat equation asks: u, u_t, u_xx (no u_x, no mixed entry).
        (
            vec![2, 6, 5, 1],
            Act::Builtin(Smooth::Tanh),
            ChannelSet::value(2)
                .with_partial(0)
                .unwrap()
                .with_second(SecondOrder::Entry(1, 1))
                .unwrap(),
        ),
        (
            vec![2, 5, 3],
            Act::Builtin(Smooth::Tanh),
            ChannelSet::value(2),
        ),
    ]
}

fn pass_channels(pass: &natgrad::model::taylor::TaylorPass, q: usize, i: usize) -> Vec<f64> {
    let c = pass.channel_set().len();
    (0..c * q).map(|k| pass.channel(k % q, k / q, i)).collect()
}

#[test]
fn channels_match_hyper_dual_numbers() {
    for (widths, act, set) in cases() {
        let net = act.net(widths.clone());
        let (d, q) = (net.input_dim(), net.output_dim());
        let theta = vec(&mut rng(3), net.n_params());
        let x = points(4, d, 7);
        let pass = net
            .forward_channels(&theta, x.as_ref(), &set, Par::Seq)
            .unwrap();
        for i in 0..7 {
            let xi: Vec<f64> = (0..d).map(|k| x[(k, i)]).collect();
            let reference = channels_by_duals(&widths, act, &theta, &xi, &set);
            let got = pass_channels(&pass, q, i);
            for (k, (g, r)) in got.iter().zip(&reference).enumerate() {
                assert!(
                    (g - r).abs() <= 1e-12 * (1.0 + r.abs()),
                    "{widths:?} {act:?} channel {} of output {}: {g} vs {r}",
                    k / q,
                    k % q
                );
            }
        }
    }
}

#[test]
fn channels_match_finite_differences_in_x() {
    let (h1, h2) = (1e-5, 1e-4);
    for (widths, act, set) in cases() {
        let net = act.net(widths.clone());
        let (d, q) = (net.input_dim(), net.output_dim());
        let theta = vec(&mut rng(5), net.n_params());
        let x = points(6, d, 5);
        let pass = net
            .forward_channels(&theta, x.as_ref(), &set, Par::Seq)
            .unwrap();
        let v = |p: &[f64], o: usize| reference(&widths, act, &theta, p)[o];
        let shifted = |p: &[f64], k: usize, h: f64| {
            let mut p = p.to_vec();
            p[k] += h;
            p
        };
        for i in 0..5 {
            let xi: Vec<f64> = (0..d).map(|k| x[(k, i)]).collect();
            for o in 0..q {
                let check = |c: usize, fd: f64| {
                    let got = pass.channel(o, c, i);
                    assert!(
                        (got - fd).abs() <= 1e-6 * (1.0 + fd.abs()),
                        "{widths:?} {act:?} channel {c}: {got} vs {fd}"
                    );
                };
                check(0, v(&xi, o));
                for &k in set.first() {
                    let fd =
                        (v(&shifted(&xi, k, h1), o) - v(&shifted(&xi, k, -h1), o)) / (2.0 * h1);
                    check(set.partial_channel(k).unwrap(), fd);
                }
                let entry = |i: usize, j: usize| {
                    let pp = shifted(&shifted(&xi, i, h2), j, h2);
                    let pm = shifted(&shifted(&xi, i, h2), j, -h2);
                    let mp = shifted(&shifted(&xi, i, -h2), j, h2);
                    let mm = shifted(&shifted(&xi, i, -h2), j, -h2);
                    (v(&pp, o) - v(&pm, o) - v(&mp, o) + v(&mm, o)) / (4.0 * h2 * h2)
                };
                for &s in set.second() {
                    let fd = match s {
                        SecondOrder::Entry(i, j) => entry(i, j),
                        SecondOrder::Laplacian => (0..d).map(|k| entry(k, k)).sum(),
                    };
                    check(set.second_channel(s).unwrap(), fd);
                }
            }
        }
    }
}

/// The dense θ-Jacobian of all channels at all points, `(q·C·m) × p`, row
/// `(c·m + i)·q + o`, by seeding one parameter at a time in a `Dual64` under the
/// hyper-dual numbers of x.
fn dense_twin(
    widths: &[usize],
    act: Act,
    theta: &[f64],
    x: &Mat<f64>,
    set: &ChannelSet,
) -> Mat<f64> {
    let (d, m, q, c) = (x.nrows(), x.ncols(), *widths.last().unwrap(), set.len());
    let mut jac = Mat::zeros(q * c * m, theta.len());
    for j in 0..theta.len() {
        let th: Vec<Dual64> = theta
            .iter()
            .enumerate()
            .map(|(k, &t)| {
                let z = Dual64::from_re(t);
                if k == j {
                    z.derivative()
                } else {
                    z
                }
            })
            .collect();
        for i in 0..m {
            let xi: Vec<f64> = (0..d).map(|k| x[(k, i)]).collect();
            let ch = channels_by_duals(widths, act, &th, &xi, set);
            for (k, v) in ch.iter().enumerate() {
                let (cc, o) = (k / q, k % q);
                jac[((cc * m + i) * q + o, j)] = v.eps;
            }
        }
    }
    jac
}

/// `max |a − b| / max(1, max |b|)`; different lengths fail, and a NaN gives NaN (a
/// plain `fold(f64::max)` would skip it).
fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "max_abs_diff: lengths differ");
    let scale = b.iter().fold(1.0f64, |s, v| s.max(v.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, common::nan_max)
        / scale
}

#[test]
fn theta_products_match_the_dense_twin() {
    for (widths, act, set) in cases() {
        let net = act.net(widths.clone());
        let (d, q, p) = (net.input_dim(), net.output_dim(), net.n_params());
        let mut r = rng(7);
        let theta = vec(&mut r, p);
        let x = points(8, d, 4);
        let pass = net
            .forward_channels(&theta, x.as_ref(), &set, Par::Seq)
            .unwrap();
        let jac = dense_twin(&widths, act, &theta, &x, &set);
        let n = jac.nrows();
        let mut work = pass.work_buffers();
        for _ in 0..3 {
            let (t, s) = (vec(&mut r, p), vec(&mut r, n));
            let mut jt = vec![0.0; n];
            pass.jvp(&t, &mut jt, &mut work);
            let want: Vec<f64> = (0..n)
                .map(|row| (0..p).map(|k| jac[(row, k)] * t[k]).sum())
                .collect();
            let e = max_abs_diff(&jt, &want);
            assert!(e <= 1e-10, "{widths:?} {act:?} jvp: {e:e}");
            let mut js = vec![0.0; p];
            pass.vjp(&s, &mut js, &mut work);
            let want: Vec<f64> = (0..p)
                .map(|k| (0..n).map(|row| jac[(row, k)] * s[row]).sum())
                .collect();
            let e = max_abs_diff(&js, &want);
            assert!(e <= 1e-10, "{widths:?} {act:?} vjp: {e:e}");
            // Row i of the per-point Jacobian: Σ_rows of point i s_row · jac_row.
            let m = x.ncols();
            let mut pj = Mat::zeros(m, p);
            pass.point_jacobian(&s, pj.as_mut(), &mut work);
            for i in 0..m {
                let want: Vec<f64> = (0..p)
                    .map(|k| {
                        (0..n)
                            .filter(|row| (row / q) % m == i)
                            .map(|row| jac[(row, k)] * s[row])
                            .sum()
                    })
                    .collect();
                let got: Vec<f64> = (0..p).map(|k| pj[(i, k)]).collect();
                let e = max_abs_diff(&got, &want);
                assert!(e <= 1e-10, "{widths:?} {act:?} point Jacobian {i}: {e:e}");
            }
        }
    }
}

#[test]
fn channel_sets_reject_bad_coordinates_and_cost_follows_the_request() {
    assert!(ChannelSet::value(2).with_partial(2).is_err());
    assert!(ChannelSet::value(2)
        .with_second(SecondOrder::Entry(0, 3))
        .is_err());
    // u_xx alone needs u_x: three channels, not the d + 2 = 4 of the Laplacian set.
    let heat = ChannelSet::value(2)
        .with_second(SecondOrder::Entry(1, 1))
        .unwrap();
    assert_eq!(heat.len(), 3);
    assert_eq!(heat.partial_channel(0), None);
    assert_eq!(ChannelSet::laplacian(3).len(), 5);
    let net = TaylorMlp::new(vec![2, 4, 1]).unwrap();
    let theta = net.init_params(0);
    let x = points(1, 3, 2);
    assert!(net
        .forward_channels(&theta, x.as_ref(), &ChannelSet::value(2), Par::Seq)
        .is_err());
    assert!(TaylorMlp::new(vec![2, 0, 1]).is_err());
}
