//! One natural-gradient direction solve (linearisation included) by CG and by Cholesky,
//! sweeping the hidden width of a `2-h-h-1` tanh MLP at fixed `m = 512`, so that
//! `p = h² + 5h + 1` runs from 51 to 100 167 (issues 4 and 14).
//!
//! * `cg20`: exactly 20 CG iterations, no preconditioner (the fixed work of
//!   `ng_step_bench`);
//! * `cg_rtol`: CG to relative residual 1e-8 without preconditioner (plain CG, the
//!   default's choice on these networks: `Preconditioner::auto()` keeps none when plain CG
//!   is fast, docs/performance-solvers.md), at most 2000 iterations;
//! * `cg_jacobi`: the same with Jacobi (the default before issue 14);
//! * `cholesky`: parameter space, dense `J`, `G = JᵀJ/m + λI`, faer `llt` — only up to
//!   p ≈ 5 300 (beyond, one solve takes minutes and `G` gigabytes);
//! * `sample_cholesky`: sample space (push-through), `JJᵀ + λM⁻¹` (`m×m`) — `O(m²p + m³)`,
//!   while `J` fits in memory;
//! * `auto`: `LinearSolver::Auto` (its cost model, fresh cache each solve).
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
const WIDTHS: [usize; 9] = [5, 10, 20, 40, 70, 100, 140, 220, 314];
/// Largest p for the Cholesky solve.
const CHOLESKY_MAX_P: usize = 5300;
/// Largest `J` (entries) for the sample-space Cholesky solve (2²⁶, 512 MiB).
const SAMPLE_MAX_ENTRIES: usize = 1 << 26;

fn sweep(c: &mut Criterion) {
    let mut group = c.benchmark_group("cg_vs_cholesky");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(2));
    let cg20 = LinearSolver::Cg(CgSettings::fixed_iterations(20));
    let cg = |preconditioner| CgSettings {
        rel_tol: 1e-8,
        max_iters: 2000,
        preconditioner,
        warm_start: false,
        accept_truncated: true,
        ..CgSettings::default()
    };
    let cg_rtol = LinearSolver::Cg(cg(Preconditioner::None));
    let cg_jacobi = LinearSolver::Cg(cg(Preconditioner::Jacobi));
    let auto = LinearSolver::Auto(natgrad::linsolve::AutoSettings {
        cg: cg(Preconditioner::None),
        ..Default::default()
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
        group.bench_function(BenchmarkId::new("cg_jacobi", p), |b| {
            b.iter(|| common::direction(&problem, &theta, &cg_jacobi))
        });
        if p <= CHOLESKY_MAX_P {
            group.bench_function(BenchmarkId::new("cholesky", p), |b| {
                b.iter(|| common::direction(&problem, &theta, &LinearSolver::Cholesky))
            });
        }
        if M * p <= SAMPLE_MAX_ENTRIES {
            group.bench_function(BenchmarkId::new("sample_cholesky", p), |b| {
                b.iter(|| common::direction(&problem, &theta, &LinearSolver::SampleCholesky))
            });
        }
        group.bench_function(BenchmarkId::new("auto", p), |b| {
            b.iter(|| common::direction(&problem, &theta, &auto))
        });
    }
    group.finish();
}

criterion_group!(benches, sweep);
criterion_main!(benches);
