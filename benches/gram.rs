//! One jvp + vjp pair and one Gram product `(JᵀJ/m + λI) t` of the MLP, per benchmark
//! size (issue 4). `cargo bench --bench gram`; the XL size is slow (≈ 1 s per product).

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use natgrad::{Linearization, Model};
use std::time::Duration;

fn gram(c: &mut Criterion) {
    let mut group = c.benchmark_group("mlp");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for (name, widths, m) in common::sizes() {
        let (problem, theta) = common::problem(&widths, m);
        let (n, p) = (problem.n_outputs(), problem.n_params());
        let mut lin = problem.linearize(&theta).expect("finite outputs");
        let mut raw = problem.model().linearize(&theta).expect("finite outputs");
        let (mut jt, mut jts) = (vec![0.0; n], vec![0.0; p]);
        group.bench_function(BenchmarkId::new("jvp_vjp_pair", name), |b| {
            b.iter(|| {
                raw.jvp(&theta, &mut jt);
                raw.vjp(&jt, &mut jts);
            })
        });
        let op = lin.gram(1e-3);
        group.bench_function(BenchmarkId::new("gram_product", name), |b| {
            b.iter(|| op.apply_vec(&theta, &mut jts))
        });
    }
    group.finish();
}

criterion_group!(benches, gram);
criterion_main!(benches);
