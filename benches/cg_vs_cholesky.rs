//! One natural-gradient direction solve (linearisation included) by CG and by Cholesky,
//! sweeping the hidden width of a `2-h-h-1` tanh MLP at fixed `m = 512`, so that
//! `p = h² + 5h + 1` runs from 51 to 20 301 (issue 4).
//!
//! * `cg20`: exactly 20 CG iterations, no preconditioner (the fixed work of
//!   `ng_step_bench`);
//! * `cg_rtol`: CG to relative residual 1e-8, Jacobi preconditioner, at most 2000
//!   iterations;
//! * `cholesky`: dense `J`, `G = JᵀJ/m + λI`, faer `llt` — only up to p ≈ 5 300 (beyond,
//!   one solve takes minutes and `G` gigabytes).
//!
//! `cargo bench --bench cg_vs_cholesky`, then
//! `cargo run --release --example perf_figure` draws `docs/figures/cg_vs_cholesky.svg`.

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use natgrad::linsolve::Preconditioner;
use natgrad::{CgSettings, LinearSolver};
use std::time::Duration;

/// Samples of the sweep.
const M: usize = 512;
/// Hidden widths of the sweep.
const WIDTHS: [usize; 7] = [5, 10, 20, 40, 70, 100, 140];
/// Largest p for the Cholesky solve.
const CHOLESKY_MAX_P: usize = 5300;

fn sweep(c: &mut Criterion) {
    let mut group = c.benchmark_group("cg_vs_cholesky");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let cg20 = LinearSolver::Cg(CgSettings::fixed_iterations(20));
    let cg_rtol = LinearSolver::Cg(CgSettings {
        rel_tol: 1e-8,
        max_iters: 2000,
        preconditioner: Preconditioner::Jacobi,
        warm_start: false,
        accept_truncated: true,
        ..CgSettings::default()
    });
    for h in WIDTHS {
        let (problem, theta) = common::problem(&[2, h, h, 1], M);
        let p = problem.n_params();
        group.bench_function(BenchmarkId::new("cg20", p), |b| {
            b.iter(|| common::direction(&problem, &theta, &cg20))
        });
        group.bench_function(BenchmarkId::new("cg_rtol", p), |b| {
            b.iter(|| common::direction(&problem, &theta, &cg_rtol))
        });
        if p <= CHOLESKY_MAX_P {
            group.bench_function(BenchmarkId::new("cholesky", p), |b| {
                b.iter(|| common::direction(&problem, &theta, &LinearSolver::Cholesky))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, sweep);
criterion_main!(benches);
