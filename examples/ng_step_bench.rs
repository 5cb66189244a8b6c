//! One natural-gradient step on a tanh MLP — fixed work, comparable with other
//! implementations (issue 4).
//!
//! Scalar-output tanh network, inputs uniform in `[0,1]^d` (seeded), target
//! `u(x) = sin(x_1 + … + x_d)`, L² loss with weights `1/m`, system
//! `(JᵀJ/m + 1e-3·I) d = Jᵀr/m` by exactly 20 CG iterations (no preconditioner, cold start),
//! f64, median of 5 runs after one warm-up.
//!
//! ```text
//! cargo run --release --example ng_step_bench -- --size S|M|L|XL [--json] [--reps 5]
//! ```
//!
//! `--steps-only` times the natural-gradient steps and nothing else (for a profiler, e.g.
//! `valgrind --tool=callgrind … --size S --steps-only`). `--chunk N` sets the samples per
//! chunk of the fused Gram product ([`natgrad::model::Mlp::with_gram_chunk`]; default: the
//! model's own choice, `N = m` is the whole-batch jvp → W → vjp); `--gram-only` then times
//! one Gram product and nothing else (chunk-size sweeps).
//!
//! `--sketch R` times the `R` Gram products of a rank-`R` Nyström sketch (`G Ω`) three
//! ways on a live linearisation — `jvp_block` → `W` → `vjp_block` (what the sketch ran
//! before the fused block product), [`Linearization::gram_product_block`], and the whole
//! [`natgrad::linsolve::NystromSketch::build`] — as median wall time and the process's
//! CPU time per block (from `/proc/self/stat`; CPU time is the less load-dependent one).
//!
//! `--json` prints one line with the keys of the issue (`size, widths, m, p, cg_iters,
//! ng_step_s, jvp_vjp_pair_s, cholesky_step_s, fwd_gflop, gemm_gflops`) followed by
//! `cg_phase_s` (the 20-iteration solve alone, right-hand side vjp included),
//! `cg_gflops = 20·4·fwd_gflop / cg_phase_s` (nominal work: the tangent passes' four GEMM
//! flops per forward flop, which JAX runs; a scalar-output `Mlp` runs half of it through
//! its sensitivities, docs/performance.md, so this rate and the fraction below can exceed
//! the GEMM rate), `gemm_fraction` (the reference GEMM runs
//! three times right before each timed step; each step's CG rate is divided by the median
//! of its own three, and `gemm_fraction` is the median of those per-step ratios, so that
//! the host's slow drifts cancel; `gemm_gflops` is the median of the per-step medians),
//! `threads` and `peak_rss_mb` (the process's `VmHWM`), and three keys that bound the
//! fraction: `product_pair_s` (one jvp + vjp on a live linearisation),
//! `faer_cg_own_s` (faer's `conjugate_gradient` alone — 20 iterations with natgrad's
//! settings on a diagonal operator of dimension `p`, so its own vector work) and
//! `faer_cg_cap = t / (t + faer_cg_own_s / 20)` with `t = 4·fwd_gflop / gemm_gflops`: the
//! fraction the CG phase would reach if the products ran at the GEMM rate.
//!
//! The Gram product (issue 19): `gram_chunk` (samples per chunk), `gram_product_s` (one
//! `Jᵀ W J t` by [`Linearization::gram_product`] on a live linearisation at that chunk),
//! `gram_unfused_s` (the same at chunk `m`: whole-batch jvp, `W`, whole-batch vjp),
//! and the estimated memory traffic per product beyond the cache-resident chunk,
//! `traffic_fused_mb` and `traffic_unfused_mb` (see [`traffic_bytes`]).

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::matmul::matmul;
use faer::matrix_free::conjugate_gradient::{
    conjugate_gradient, conjugate_gradient_scratch, CgParams,
};
use faer::matrix_free::{IdentityPrecond, InitialGuessStatus};
use faer::{Accum, Mat, Par};
use natgrad::model::Model;
use natgrad::{CgSettings, LinearSolver, Linearization};
use std::time::Instant;

#[path = "../benches/common/mod.rs"]
mod common;

use common::median_time;

const CG_ITERS: usize = 20;
const CHOLESKY_MAX_P: usize = 5000;

/// One step: linearise, solve the direction, update θ. Returns the CG-phase time.
fn ng_step(problem: &common::Bench, theta: &mut [f64], solver: &LinearSolver) -> f64 {
    let mut lin = problem.linearize(theta).expect("finite outputs");
    let start = Instant::now();
    let d = common::solve(&mut lin, solver);
    let cg = start.elapsed().as_secs_f64();
    theta.iter_mut().zip(&d).for_each(|(t, d)| *t -= d);
    cg
}

/// A faer GEMM `(n_out × n_in)·(n_in × m)` of the largest layer: the roofline.
struct RefGemm {
    a: Mat<f64>,
    b: Mat<f64>,
    c: Mat<f64>,
}

impl RefGemm {
    fn new(widths: &[usize], m: usize) -> Self {
        let (n_out, n_in) = widths
            .windows(2)
            .map(|w| (w[1], w[0]))
            .max_by_key(|&(a, b)| a * b)
            .unwrap_or((1, 1));
        Self {
            a: Mat::from_fn(n_out, n_in, |i, j| ((i * 7 + j * 3) % 13) as f64 - 6.0),
            b: Mat::from_fn(n_in, m, |i, j| ((i * 5 + j * 11) % 17) as f64 - 8.0),
            c: Mat::zeros(n_out, m),
        }
    }

    /// GFLOP/s of the median of three back-to-back runs (the first wakes the threads).
    fn gflops_once(&mut self) -> f64 {
        let mut t: Vec<f64> = (0..3)
            .map(|_| {
                let start = Instant::now();
                matmul(
                    self.c.as_mut(),
                    Accum::Replace,
                    self.a.as_ref(),
                    self.b.as_ref(),
                    1.0,
                    Par::rayon(0),
                );
                start.elapsed().as_secs_f64()
            })
            .collect();
        t.sort_by(f64::total_cmp);
        2.0 * (self.a.nrows() * self.a.ncols() * self.b.ncols()) as f64 / t[1] / 1e9
    }
}

/// faer's `conjugate_gradient` alone: `CG_ITERS` iterations on faer's diagonal operator
/// `diag(1, 2, …, 100, 1, 2, …)` of dimension `p` (one pass over two vectors per product),
/// with natgrad's settings (identity preconditioner, sequential vector work).
fn faer_cg_own(p: usize, reps: usize) -> f64 {
    let op = faer::Col::from_fn(p, |i| (1 + i % 100) as f64).into_diagonal();
    let precond = IdentityPrecond { dim: p };
    let b = Mat::from_fn(p, 1, |i, _| (i % 13) as f64 - 6.0);
    let mut x = Mat::zeros(p, 1);
    let mut mem = MemBuffer::new(conjugate_gradient_scratch(&precond, &op, 1, Par::Seq));
    let params = CgParams::<f64> {
        rel_tolerance: 0.0,
        abs_tolerance: 0.0,
        max_iters: CG_ITERS,
        initial_guess: InitialGuessStatus::MaybeNonZero,
        ..CgParams::default()
    };
    median_time(reps, || {
        x.fill(0.0);
        // NoConvergence after exactly CG_ITERS iterations is the intended outcome.
        let _ = conjugate_gradient(
            x.as_mut(),
            &precond,
            &op,
            b.as_ref(),
            params,
            |_| {},
            Par::Seq,
            MemStack::new(&mut mem),
        );
    })
}

/// Estimated bytes one Gram product moves to and from memory beyond a chunk's working
/// set (which stays in cache), for widths `w`, `m` samples, `p` parameters.
///
/// Whole batch (`chunked = false`), per layer `l` (`n_l → n_{l+1}`): the jvp reads its
/// input `[a_l; 1; ȧ_l]` (`(2n_l+1)·m`, `(n_0+1)·m` at layer 0), writes `ż_{l+1}`, reads it
/// back with `σ'` and writes `ȧ_{l+1}` (`4·n_{l+1}·m`); the vjp reads `z̄_{l+1}` twice
/// (gradient and `Wᵀz̄`) and `[a_l; 1]ᵀ`, and below the top writes `W_lᵀ z̄`, reads it with
/// `σ'` and writes `z̄_l` (`4·n_l·m`). Fused (`chunked = true`): every cached block is read
/// once — `[a_l; 1]`, `[a_l; 1]ᵀ`, `σ'_l` — and the tangents and cotangents never leave
/// the cache. Both add `t`, the output and the parameters per layer (`3p`). A network
/// within the dense limit (S) reads its `n × p` Jacobian twice instead.
fn traffic_bytes(w: &[usize], m: usize, p: usize, chunked: bool) -> f64 {
    let n = m * w[w.len() - 1];
    if n * p <= natgrad::model::mlp::DENSE_LIMIT {
        return 8.0 * (2 * n * p + 2 * p) as f64;
    }
    let mut floats = 3 * p;
    for (l, pair) in w.windows(2).enumerate() {
        let (n_in, n_out) = (pair[0], pair[1]);
        floats += match chunked {
            true => (2 * (n_in + 1) + n_out) * m,
            false => {
                let input = if l == 0 { n_in + 1 } else { 2 * n_in + 1 };
                let below = if l == 0 { 0 } else { 4 * n_in };
                (input + 4 * n_out + 2 * n_out + (n_in + 1) + below) * m
            }
        };
    }
    8.0 * floats as f64
}

/// One `Jᵀ W J t` by [`Linearization::gram_product`] on a live linearisation of `model`
/// (median of `reps`).
fn gram_product_time(model: &natgrad::model::Mlp, theta: &[f64], reps: usize) -> f64 {
    let n = model.n_outputs();
    let mut lin = model.linearize(theta).expect("linearise");
    let w = vec![1.0 / model.n_samples() as f64; n];
    let (mut scratch, mut out) = (vec![0.0; n], vec![0.0; theta.len()]);
    median_time(reps, || lin.gram_product(&w, theta, &mut scratch, &mut out))
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

struct Args {
    size: String,
    json: bool,
    reps: usize,
    /// Only the natural-gradient steps (for profilers: `--steps-only`).
    steps_only: bool,
    /// Samples per chunk of the fused Gram product (`--chunk`).
    chunk: Option<usize>,
    /// Only time one Gram product (`--gram-only`, for chunk-size sweeps).
    gram_only: bool,
    /// Only time the Nyström sketch's block of this many Gram products (`--sketch R`).
    sketch: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        size: "M".into(),
        json: false,
        reps: 5,
        steps_only: false,
        chunk: None,
        gram_only: false,
        sketch: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--size" => args.size = it.next().ok_or("--size needs S|M|L|XL")?,
            "--json" => args.json = true,
            "--steps-only" => args.steps_only = true,
            "--gram-only" => args.gram_only = true,
            "--chunk" => {
                let v = it.next().ok_or("--chunk needs a number")?;
                args.chunk = Some(v.parse().map_err(|_| format!("bad --chunk {v}"))?);
            }
            "--sketch" => {
                let v = it.next().ok_or("--sketch needs a rank")?;
                args.sketch = Some(v.parse().map_err(|_| format!("bad --sketch {v}"))?);
            }
            "--reps" => {
                let v = it.next().ok_or("--reps needs a number")?;
                args.reps = v.parse().map_err(|_| format!("bad --reps {v}"))?;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let (_, widths, m) = common::sizes()
        .into_iter()
        .find(|s| s.0 == args.size)
        .ok_or("--size must be S, M, L or XL")?;
    let (problem, theta0) = common::problem(&widths, m);
    let problem = match args.chunk {
        Some(c) => natgrad::FitProblem::new(
            problem.model().clone().with_gram_chunk(c),
            problem.loss().clone(),
            problem.metric().clone(),
        )?,
        None => problem,
    };
    let p = problem.n_params();
    let fwd_gflop = problem.model().forward_flops() / 1e9;
    let cg = LinearSolver::Cg(CgSettings::fixed_iterations(CG_ITERS));

    if args.gram_only {
        let model = problem.model();
        let t = gram_product_time(model, &theta0, args.reps);
        println!("chunk {} gram_product_s {t:.6e}", model.gram_chunk());
        return Ok(());
    }

    if let Some(rank) = args.sketch {
        sketch_times(&problem, &theta0, rank, args.reps);
        return Ok(());
    }

    // The roofline GEMM runs before every step (interleaved, so that both see the same
    // machine state); the median over the steps is the reference rate.
    let mut reference = RefGemm::new(&widths, m);
    reference.gflops_once();
    let mut theta = theta0.clone();
    let (mut cg_phases, mut gemm_rates) = (Vec::new(), Vec::new());
    let ng_step_s = median_time(args.reps, || {
        gemm_rates.push(reference.gflops_once());
        cg_phases.push(ng_step(&problem, &mut theta, &cg))
    });
    let mut cg_phase = cg_phases[1..].to_vec();
    cg_phase.sort_by(f64::total_cmp);
    let cg_phase_s = cg_phase[cg_phase.len() / 2];
    if args.steps_only {
        println!("ng step {ng_step_s:.6e} s, CG phase {cg_phase_s:.6e} s");
        return Ok(());
    }

    // One jvp + vjp at a fresh θ, linearisation included.
    let model = problem.model();
    let (mut jt, mut jts) = (vec![0.0; model.n_outputs()], vec![0.0; p]);
    let mut seed = 100;
    let jvp_vjp_pair_s = median_time(args.reps, || {
        seed += 1;
        let th = model.init_params(seed);
        let mut lin = model.linearize(&th).expect("linearise");
        lin.jvp(&theta0, &mut jt);
        lin.vjp(&jt, &mut jts);
    });

    // One jvp + vjp on a live linearisation: the products of one CG iteration.
    let mut lin = model.linearize(&theta0).expect("linearise");
    let product_pair_s = median_time(args.reps, || {
        lin.jvp(&theta0, &mut jt);
        lin.vjp(&jt, &mut jts);
    });
    drop(lin);
    let gram_chunk = model.gram_chunk();
    let gram_product_s = gram_product_time(model, &theta0, args.reps);
    // A second model holds a second set of buffers (≈ 200 MB at XL, where the chunk is
    // the whole batch anyway): only made when the chunk differs.
    let gram_unfused_s = match gram_chunk < m {
        true => gram_product_time(&model.clone().with_gram_chunk(m), &theta0, args.reps),
        false => gram_product_s,
    };
    let traffic_fused_mb = traffic_bytes(&widths, m, p, gram_chunk < m) / 1e6;
    let traffic_unfused_mb = traffic_bytes(&widths, m, p, false) / 1e6;
    let faer_cg_own_s = faer_cg_own(p, args.reps);

    let cholesky_step_s = (p <= CHOLESKY_MAX_P).then(|| {
        let mut theta = theta0.clone();
        median_time(args.reps, || {
            ng_step(&problem, &mut theta, &LinearSolver::Cholesky);
        })
    });
    let work = CG_ITERS as f64 * 4.0 * fwd_gflop;
    let mut fractions: Vec<f64> = (cg_phases.iter().zip(&gemm_rates))
        .skip(1)
        .map(|(t, g)| work / t / g)
        .collect();
    fractions.sort_by(f64::total_cmp);
    let gemm_fraction = fractions[fractions.len() / 2];
    let mut gemm_rates = gemm_rates[1..].to_vec();
    gemm_rates.sort_by(f64::total_cmp);
    let gemm = gemm_rates[gemm_rates.len() / 2];
    let cg_gflops = work / cg_phase_s;
    let t_gemm = 4.0 * fwd_gflop / gemm;
    let faer_cg_cap = t_gemm / (t_gemm + faer_cg_own_s / CG_ITERS as f64);
    let rss = peak_rss_mb().unwrap_or(f64::NAN);
    let threads = rayon::current_num_threads();
    let chol = cholesky_step_s.map_or("null".to_string(), |t| format!("{t:.6e}"));
    if args.json {
        println!(
            "{{\"size\":\"{}\",\"widths\":{:?},\"m\":{m},\"p\":{p},\"cg_iters\":{CG_ITERS},\
             \"ng_step_s\":{ng_step_s:.6e},\"jvp_vjp_pair_s\":{jvp_vjp_pair_s:.6e},\
             \"cholesky_step_s\":{chol},\"fwd_gflop\":{fwd_gflop:.6e},\"gemm_gflops\":{gemm:.3},\
             \"cg_phase_s\":{cg_phase_s:.6e},\"cg_gflops\":{cg_gflops:.3},\
             \"gemm_fraction\":{gemm_fraction:.4},\"threads\":{threads},\"peak_rss_mb\":{rss:.1},\
             \"product_pair_s\":{product_pair_s:.6e},\"faer_cg_own_s\":{faer_cg_own_s:.6e},\
             \"faer_cg_cap\":{faer_cg_cap:.4},\"gram_chunk\":{gram_chunk},\
             \"gram_product_s\":{gram_product_s:.6e},\"gram_unfused_s\":{gram_unfused_s:.6e},\
             \"traffic_fused_mb\":{traffic_fused_mb:.2},\
             \"traffic_unfused_mb\":{traffic_unfused_mb:.2}}}",
            args.size, widths,
        );
    } else {
        println!(
            "size {} widths {widths:?} m = {m} p = {p} ({threads} threads)",
            args.size
        );
        println!("  ng step (20 CG iterations)  {:>10.3} ms", ng_step_s * 1e3);
        println!(
            "  CG phase                    {:>10.3} ms",
            cg_phase_s * 1e3
        );
        println!(
            "  jvp + vjp pair              {:>10.3} ms",
            jvp_vjp_pair_s * 1e3
        );
        match cholesky_step_s {
            Some(t) => println!("  Cholesky step               {:>10.3} ms", t * 1e3),
            None => println!("  Cholesky step               (p > {CHOLESKY_MAX_P}: skipped)"),
        }
        println!(
            "  CG rate {cg_gflops:.1} GFLOP/s, faer GEMM {gemm:.1} GFLOP/s: {:.1} % (per step)",
            100.0 * gemm_fraction
        );
        println!(
            "  jvp + vjp, live             {:>10.3} ms ({:.1} % of the GEMM rate)",
            product_pair_s * 1e3,
            100.0 * t_gemm / product_pair_s
        );
        println!(
            "  faer CG alone, 20 it.       {:>10.3} ms (caps the fraction at {:.1} %)",
            faer_cg_own_s * 1e3,
            100.0 * faer_cg_cap
        );
        println!(
            "  Gram product, chunk {gram_chunk:>5}  {:>10.3} ms (≈ {traffic_fused_mb:.1} MB moved)",
            gram_product_s * 1e3
        );
        println!(
            "  Gram product, whole batch   {:>10.3} ms (≈ {traffic_unfused_mb:.1} MB moved)",
            gram_unfused_s * 1e3
        );
        println!("  peak RSS {rss:.1} MB");
    }
    Ok(())
}

/// The process's user + system CPU time in seconds (`/proc/self/stat`, clock ticks of
/// 10 ms; `NaN` where unavailable).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, r)| r.split_whitespace().collect());
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    match (tick(11), tick(12)) {
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}

/// `--sketch R`: the sketch's block of `R` Gram products, unfused and fused, and the
/// whole sketch; median wall time and mean CPU time per block over `reps` runs.
fn sketch_times(problem: &common::Bench, theta: &[f64], rank: usize, reps: usize) {
    let model = problem.model();
    let (n, p) = (model.n_outputs(), model.n_params());
    let w = vec![1.0 / model.n_samples() as f64; n];
    let omega = Mat::<f64>::from_fn(p, rank, |i, j| ((i * 7 + j * 13) % 17) as f64 - 8.0);
    let (mut scratch, mut out) = (Mat::<f64>::zeros(n, rank), Mat::<f64>::zeros(p, rank));
    let mut lin = model.linearize(theta).expect("linearise");
    let timed = |name: &str, f: &mut dyn FnMut()| {
        let cpu0 = cpu_seconds();
        let wall = median_time(reps, &mut *f);
        let cpu = (cpu_seconds() - cpu0) / (reps + 1) as f64;
        println!(
            "  {name:<34} wall {:>9.3} ms  cpu {:>9.3} ms",
            wall * 1e3,
            cpu * 1e3
        );
    };
    println!(
        "sketch of rank {rank}, chunk {} ({} threads)",
        model.gram_chunk(),
        rayon::current_num_threads()
    );
    timed("jvp_block → W → vjp_block", &mut || {
        lin.jvp_block(omega.as_ref(), scratch.as_mut());
        for j in 0..rank {
            scratch
                .col_mut(j)
                .iter_mut()
                .zip(&w)
                .for_each(|(s, w)| *s *= w);
        }
        lin.vjp_block(scratch.as_ref(), out.as_mut());
    });
    timed("gram_product_block (fused)", &mut || {
        lin.gram_product_block(&w, omega.as_ref(), scratch.as_mut(), out.as_mut());
    });
    timed("k single fused gram_product", &mut || {
        for j in 0..rank {
            let t: Vec<f64> = omega.col(j).iter().copied().collect();
            let o = out
                .col_mut(j)
                .try_as_col_major_mut()
                .unwrap()
                .as_slice_mut();
            lin.gram_product(
                &w,
                &t,
                scratch
                    .col_mut(0)
                    .try_as_col_major_mut()
                    .unwrap()
                    .as_slice_mut(),
                o,
            );
        }
    });
    drop(lin);
    let mut lp = problem.linearize(theta).expect("linearise");
    timed("NystromSketch::build", &mut || {
        let op = lp.gram(0.0);
        natgrad::linsolve::NystromSketch::build(&op, rank, 1, 1.0, Par::rayon(0)).expect("sketch");
    });
}
