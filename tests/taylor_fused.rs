//! The fused, point-chunked Gram product of the Taylor-mode network (issue 19, "the Mlp
//! and the Taylor-mode network override it"): a `PdeModel`'s `gram_product` equals
//! jvp → `w ⊙` → vjp to 1e-12 at chunk sizes 1, 7, m and one that does not divide m, for
//! terms with every kind of channel (value, gradient, Hessian entries, Laplacian), one
//! and two outputs; and 1 and 2 threads give bitwise the same product.

mod common;

use common::{in_pool, rel_diff, rng, vec};
use faer::{Mat, Par};
use natgrad::model::{ChannelSet, Model, SecondOrder, Smooth, TaylorMlp};
use natgrad::pde::{DualNum, Fields, PdeModel, Point, Residual, Term};
use natgrad::Linearization;
use rand::Rng;
use std::sync::Arc;

/// Points of the main term: 7 divides it, 10 does not.
const M: usize = 42;

/// Viscous Burgers `u_t + u u_x − ν u_xx` (x = (t, x)): nonlinear in the value channel.
struct Burgers;
impl Residual for Burgers {
    fn residual<D: DualNum<Primitive = f64> + Copy>(&self, _: &Point, u: &Fields<D>) -> D {
        u.dx(0, 0) + u.u(0) * u.dx(0, 1) - u.dxx(0, 1, 1) * 0.01
    }
}

/// `−Δu₀ + u₀ u₁ − sin x₀` on two fields.
struct Coupled;
impl Residual for Coupled {
    fn residual<D: DualNum<Primitive = f64> + Copy>(&self, p: &Point, u: &Fields<D>) -> D {
        -u.laplacian(0) + u.u(0) * u.u(1) - p.x[0].sin()
    }
}

/// `∂u₁/∂x₁ + u₀²` on two fields (gradient channels only).
struct Flux;
impl Residual for Flux {
    fn residual<D: DualNum<Primitive = f64> + Copy>(&self, _: &Point, u: &Fields<D>) -> D {
        u.dx(1, 1) + u.u(0) * u.u(0)
    }
}

/// `u₀ − x₁` (value only).
struct Boundary;
impl Residual for Boundary {
    fn residual<D: DualNum<Primitive = f64> + Copy>(&self, p: &Point, u: &Fields<D>) -> D {
        u.u(0) - p.x[1]
    }
}

fn points(seed: u64, m: usize) -> Mat<f64> {
    let mut r = rng(seed);
    Mat::from_fn(2, m, |_, _| r.random_range(-1.0..1.0))
}

/// A Burgers model (one output, a Hessian-entry channel) and a two-field system (two
/// outputs, Laplacian / gradient / value terms), with `M` points in the main term.
fn models(chunk: Option<usize>, m: usize) -> Vec<PdeModel> {
    let with = |net: TaylorMlp| match chunk {
        Some(c) => net.with_gram_chunk(c),
        None => net,
    };
    let burgers_set = ChannelSet::value(2)
        .with_gradient()
        .with_second(SecondOrder::Entry(1, 1))
        .unwrap();
    let net1 = with(TaylorMlp::new(vec![2, 7, 5, 1]).unwrap());
    let burgers = PdeModel::new(
        net1,
        vec![
            Term::new("burgers", points(1, m).as_ref(), burgers_set, Burgers),
            Term::new(
                "boundary",
                points(2, 9).as_ref(),
                ChannelSet::value(2),
                Boundary,
            )
            .with_weight(3.0),
        ],
    )
    .unwrap();
    let act = Arc::new(Smooth::Sigmoid);
    let net2 = with(TaylorMlp::with_activation(vec![2, 6, 6, 2], act).unwrap());
    let system = PdeModel::new(
        net2,
        vec![
            Term::new(
                "coupled",
                points(3, m).as_ref(),
                ChannelSet::laplacian(2),
                Coupled,
            ),
            Term::new(
                "flux",
                points(4, 13).as_ref(),
                ChannelSet::value(2).with_gradient(),
                Flux,
            )
            .with_weight(2.0),
            Term::new(
                "boundary",
                points(5, 5).as_ref(),
                ChannelSet::value(2),
                Boundary,
            ),
        ],
    )
    .unwrap();
    vec![burgers, system]
}

/// `Jᵀ diag(w) J t` unfused: jvp, `w ⊙`, vjp.
fn unfused<L: Linearization>(lin: &mut L, w: &[f64], t: &[f64]) -> Vec<f64> {
    let mut jt = vec![0.0; w.len()];
    lin.jvp(t, &mut jt);
    jt.iter_mut().zip(w).for_each(|(v, w)| *v *= w);
    let mut out = vec![0.0; t.len()];
    lin.vjp(&jt, &mut out);
    out
}

#[test]
fn fused_taylor_product_equals_jvp_metric_vjp_at_every_chunk_size() {
    let mut r = rng(7);
    for chunk in [1, 7, M, 10] {
        for (k, model) in models(Some(chunk), M).into_iter().enumerate() {
            let (n, p) = (model.n_outputs(), model.n_params());
            let theta: Vec<f64> = vec(&mut r, p).iter().map(|v| 0.8 * v).collect();
            let mut lin = model.linearize(&theta).unwrap();
            for _ in 0..2 {
                let t = vec(&mut r, p);
                let w: Vec<f64> = (0..n).map(|_| r.random_range(0.1..2.0)).collect();
                let mut out = vec![f64::NAN; p];
                lin.gram_product(&w, &t, &mut vec![0.0; n], &mut out);
                let e = rel_diff(&out, &unfused(&mut lin, &w, &t));
                assert!(e <= 1e-12, "model {k}, chunk {chunk}: {e:e}");
            }
        }
    }
}

/// The products of both models on 300 points in chunks of 16 (19 chunks in 7 groups of
/// the main term), inside a rayon pool of `threads` threads, as bits.
fn products_in_pool(threads: usize) -> Vec<Vec<u64>> {
    in_pool(threads, || {
        let mut r = rng(13);
        let mut bits = Vec::new();
        for model in models(Some(16), 300) {
            let model = model.with_parallelism(Par::rayon(threads));
            let (n, p) = (model.n_outputs(), model.n_params());
            let theta = vec(&mut r, p);
            let mut lin = model.linearize(&theta).unwrap();
            let t = vec(&mut r, p);
            let w: Vec<f64> = (0..n).map(|_| r.random_range(0.1..2.0)).collect();
            let mut out = vec![0.0; p];
            lin.gram_product(&w, &t, &mut vec![0.0; n], &mut out);
            bits.push(common::bits(&out));
        }
        bits
    })
}

#[test]
fn one_and_two_threads_agree_bitwise() {
    common::assert_same_bits_at_one_and_two_threads("product", products_in_pool);
}
