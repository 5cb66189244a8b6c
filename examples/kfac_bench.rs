//! K-FAC against plain CG and Nyström over a 10-step natural-gradient run (issue 18).
//!
//! The problem of `ng_step_bench` (tanh MLP, scalar output, inputs uniform in `[0,1]^d`,
//! target `sin(x_1 + … + x_d)`, L² loss with weights `1/m`). From a starting θ — the seeded
//! Glorot θ, and the θ after `--train-steps` (30) natural-gradient steps (Plain, α = 1,
//! λ = 1e-3, K-FAC-PCG to relative residual 1e-8) — each method takes `--steps` (10)
//! Plain steps `θ ← θ − d`, `(G + λI) d = Jᵀ∇_yℓ` with `λ = --damping`, on its own
//! trajectory:
//!
//! * `cg`: plain CG, cold start, to relative residual `--rel-tol` (1e-6);
//! * `nystrom-r<rank>`: Nyström-PCG, rank `--rank` (10), sketch refreshed every 10 solves;
//! * `kfac-pcg`: K-FAC-PCG, factors refreshed every `--refresh` (1) solves;
//! * `kfac`: the K-FAC direction `d = P⁻¹ Jᵀ∇ℓ` itself (no CG, same refresh).
//!
//! ```text
//! cargo run --release --example kfac_bench -- --size L --damping 1e-6 --json
//!     [--steps 10] [--train-steps 30] [--rel-tol 1e-6] [--rank 10] [--refresh 1]
//!     [--methods cg,nystrom,kfac-pcg,kfac] [--starts glorot,trained] [--max-iters 20000]
//!     [--spectrum]
//! ```
//!
//! One JSON line per (start, method): `size, damping, start, method, products` (Gram
//! products per solve, i.e. jvps, averaged over the run: CG's and the sketch's),
//! `seconds` (wall time per direction solve, factors and sketch included, averaged),
//! `factor_passes` (backward passes of the K-FAC factors over the run), `cg_iters` per
//! step, `max_rel_residual`, `final_loss`, `product_s` (one Gram product at the start, for
//! converting seconds to products) and `peak_rss_mb` (`VmHWM`). Counts are exact; seconds
//! are noisy on a shared machine.

use natgrad::linsolve::DirectionSolver;
use natgrad::linsolve::Rhs;
use natgrad::{CgSettings, LinearSolver, Model, Preconditioner};
use std::time::Instant;

#[path = "../benches/common/mod.rs"]
mod common;

struct Args {
    size: String,
    damping: f64,
    json: bool,
    steps: usize,
    train_steps: usize,
    rel_tol: f64,
    rank: usize,
    refresh: usize,
    max_iters: usize,
    methods: Vec<String>,
    starts: Vec<String>,
    spectrum: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        size: "M".into(),
        damping: 1e-6,
        json: false,
        steps: 10,
        train_steps: 30,
        rel_tol: 1e-6,
        rank: 10,
        refresh: 1,
        max_iters: 20_000,
        methods: ["cg", "nystrom", "kfac-pcg", "kfac"]
            .map(String::from)
            .to_vec(),
        starts: ["glorot", "trained"].map(String::from).to_vec(),
        spectrum: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--json" || k == "--spectrum" {
            a.json |= k == "--json";
            a.spectrum |= k == "--spectrum";
            continue;
        }
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        let num = |v: &str| v.parse::<f64>().map_err(|_| format!("bad {k} {v}"));
        let list = |v: &str| v.split(',').map(String::from).collect();
        match k.as_str() {
            "--size" => a.size = v,
            "--damping" => a.damping = num(&v)?,
            "--steps" => a.steps = num(&v)? as usize,
            "--train-steps" => a.train_steps = num(&v)? as usize,
            "--rel-tol" => a.rel_tol = num(&v)?,
            "--rank" => a.rank = num(&v)? as usize,
            "--refresh" => a.refresh = num(&v)? as usize,
            "--max-iters" => a.max_iters = num(&v)? as usize,
            "--methods" => a.methods = list(&v),
            "--starts" => a.starts = list(&v),
            _ => return Err(format!("unknown option {k}")),
        }
    }
    Ok(a)
}

/// Cold-started CG to `rel_tol`; a solve that reaches `max_iters` first is kept
/// (truncated), and shows in `max_rel_residual`.
fn cg(rel_tol: f64, max_iters: usize, preconditioner: Preconditioner) -> LinearSolver {
    LinearSolver::Cg(CgSettings {
        rel_tol,
        max_iters,
        preconditioner,
        warm_start: false,
        accept_truncated: true,
        ..CgSettings::default()
    })
}

fn kfac_precond(refresh_every: usize) -> Preconditioner {
    match refresh_every {
        1 => Preconditioner::kfac(),
        _ => Preconditioner::Kfac {
            refresh_every,
            decay: 0.0,
        },
    }
}

/// What a run of `steps` steps did.
struct Run {
    products: u64,
    factor_passes: u64,
    seconds: f64,
    iters: Vec<usize>,
    max_res: f64,
    loss: f64,
}

/// `steps` Plain steps `θ ← θ − d` from `theta` with `solver` at damping `lambda`.
fn run(
    pb: &common::Bench,
    theta: &mut [f64],
    lambda: f64,
    steps: usize,
    solver: &LinearSolver,
) -> Run {
    let mut cache = DirectionSolver::default();
    let (mut seconds, mut iters, mut max_res) = (0.0, Vec::new(), 0.0_f64);
    let before = pb.evaluations();
    for _ in 0..steps {
        let mut lin = pb.linearize(theta).expect("finite outputs");
        let r = lin.output_gradient().to_vec();
        let mut d = vec![0.0; theta.len()];
        let rhs = Rhs::Cotangent { r: &r, jt_r: None };
        let par = common::vector_par(d.len());
        let t0 = Instant::now();
        let info = cache
            .set_linear_solver(solver.clone())
            .set_parallelism(par.into())
            .solve_from(&mut lin, rhs, lambda, &mut d)
            .unwrap_or_else(|e| panic!("{solver:?}: {e}"));
        seconds += t0.elapsed().as_secs_f64();
        // CG iterations of the CG methods; none for K-FAC as the solver.
        iters.extend(info.cg_iters());
        max_res = max_res.max(info.rel_residual);
        theta.iter_mut().zip(&d).for_each(|(t, d)| *t -= d);
    }
    let ev = pb.evaluations() - before;
    Run {
        products: ev.jvp,
        // every solve: one vjp for b = Jᵀr and one per Gram product; the rest are factors
        factor_passes: ev.vjp - ev.jvp - steps as u64,
        seconds,
        iters,
        max_res,
        loss: pb.loss_at(theta).expect("finite loss"),
    }
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmHWM:"));
    let kb = line.and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok());
    kb.unwrap_or(f64::NAN) / 1024.0
}

/// Wall time of one Gram product `(JᵀMJ + λI) v` at θ (median of 3).
fn product_seconds(pb: &common::Bench, theta: &[f64]) -> f64 {
    let mut lin = pb.linearize(theta).expect("finite outputs");
    let v = vec![1.0; theta.len()];
    let (mut y, mut out) = (vec![0.0; pb.n_outputs()], vec![0.0; theta.len()]);
    let mut t: Vec<f64> = (0..3)
        .map(|_| {
            let t0 = Instant::now();
            lin.jvp(&v, &mut y);
            lin.vjp(&y, &mut out);
            t0.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[1]
}

/// `--spectrum` (dense, for sizes with small `p`): the eigenvalues of `G + λI` and of the
/// K-FAC-preconditioned `L̃ᵀ (G + λI) L̃` (`P⁻¹ = L̃ L̃ᵀ` by Cholesky, the same spectrum as
/// `P⁻¹(G + λI)`): condition number and how many eigenvalues lie above `10·λ_min`, the
/// count that bounds the CG iterations of a "spikes plus a cluster" spectrum.
fn spectrum(pb: &common::Bench, theta: &[f64], lambda: f64, size: &str, start: &str) {
    use faer::{Mat, Side};
    let mut lin = pb.linearize(theta).expect("finite outputs");
    let p = theta.len();
    let mut raw = pb.model().linearize(theta).expect("finite outputs");
    let (jac, _) = natgrad::gram::dense_jacobian(&mut raw, pb.n_outputs());
    let g = natgrad::gram::dense_gram(
        jac.as_ref(),
        pb.metric(),
        &lin.point(),
        lambda,
        faer::Par::rayon(0),
    )
    .expect("the crate's metrics are finite");
    let mut cache = DirectionSolver::default();
    let solver = LinearSolver::Kfac {
        refresh_every: 1,
        decay: 0.0,
    };
    let b = vec![1.0; p];
    let mut d = vec![0.0; p];
    cache
        .set_linear_solver(solver.clone())
        .solve_from(&mut lin, Rhs::Params(&b), lambda, &mut d)
        .expect("kfac");
    let pre = cache
        .cache()
        .kfac()
        .expect("factors")
        .preconditioner(lambda, faer::Par::Seq)
        .expect("inverse");
    let mut pinv = Mat::<f64>::zeros(p, p);
    let (mut e, mut col) = (vec![0.0; p], vec![0.0; p]);
    for j in 0..p {
        e.fill(0.0);
        e[j] = 1.0;
        pre.apply_vec(&e, &mut col);
        col.iter().enumerate().for_each(|(i, v)| pinv[(i, j)] = *v);
    }
    let pinv = Mat::from_fn(p, p, |i, j| 0.5 * (pinv[(i, j)] + pinv[(j, i)]));
    let l = pinv.llt(Side::Lower).expect("P⁻¹ SPD").L().to_owned();
    let pg = l.transpose() * &g * &l;
    let pg = Mat::from_fn(p, p, |i, j| 0.5 * (pg[(i, j)] + pg[(j, i)]));
    let report = |name: &str, m: &Mat<f64>| {
        let ev = m
            .self_adjoint_eigenvalues(Side::Lower)
            .expect("eigenvalues");
        let (lo, hi) = (ev[0], ev[p - 1]);
        let above = ev.iter().filter(|&&v| v > 10.0 * lo).count();
        println!(
            "{{\"size\":\"{size}\",\"damping\":{lambda:e},\"start\":\"{start}\",\"operator\":\"{name}\",\"p\":{p},\"lambda_min\":{lo:.3e},\"lambda_max\":{hi:.3e},\"condition\":{:.3e},\"above_10_min\":{above}}}",
            hi / lo
        );
    };
    report("G+lambda", &g);
    report("kfac-preconditioned", &pg);
}

fn main() -> Result<(), String> {
    let a = parse_args()?;
    let (_, widths, m) = common::sizes()
        .into_iter()
        .find(|s| s.0 == a.size)
        .ok_or(format!("unknown size {}", a.size))?;
    let (pb, glorot) = common::problem(&widths, m);
    for start in &a.starts {
        let mut theta0 = glorot.clone();
        if start == "trained" {
            let train = cg(1e-8, 20_000, kfac_precond(1));
            run(&pb, &mut theta0, 1e-3, a.train_steps, &train);
        }
        if a.spectrum {
            spectrum(&pb, &theta0, a.damping, &a.size, start);
            continue;
        }
        let product_s = product_seconds(&pb, &theta0);
        for method in &a.methods {
            let (name, solver) = match method.as_str() {
                "cg" => (
                    "cg".to_string(),
                    cg(a.rel_tol, a.max_iters, Preconditioner::None),
                ),
                "nystrom" => {
                    let pc = Preconditioner::Nystrom {
                        rank: a.rank,
                        refresh_every: 10,
                        seed: 1,
                    };
                    (
                        format!("nystrom-r{}", a.rank),
                        cg(a.rel_tol, a.max_iters, pc),
                    )
                }
                "kfac-pcg" => (
                    "kfac-pcg".into(),
                    cg(a.rel_tol, a.max_iters, kfac_precond(a.refresh)),
                ),
                "kfac" => {
                    let s = LinearSolver::Kfac {
                        refresh_every: a.refresh,
                        decay: 0.0,
                    };
                    ("kfac".into(), s)
                }
                other => return Err(format!("unknown method {other}")),
            };
            let mut theta = theta0.clone();
            let r = run(&pb, &mut theta, a.damping, a.steps, &solver);
            let k = a.steps as f64;
            let line = format!(
                "{{\"size\":\"{}\",\"damping\":{:e},\"start\":\"{start}\",\"method\":\"{name}\",\
                 \"products\":{:.1},\"seconds\":{:.4},\"refresh\":{},\"factor_passes\":{},\
                 \"cg_iters\":{:?},\"max_rel_residual\":{:.2e},\"final_loss\":{:.6e},\
                 \"product_s\":{:.4},\"peak_rss_mb\":{:.0}}}",
                a.size,
                a.damping,
                r.products as f64 / k,
                r.seconds / k,
                a.refresh,
                r.factor_passes,
                r.iters,
                r.max_res,
                r.loss,
                product_s,
                peak_rss_mb()
            );
            if a.json {
                println!("{line}");
            } else {
                println!(
                    "{start:8} {name:12} products/solve {:8.1}  s/solve {:8.4}",
                    r.products as f64 / k,
                    r.seconds / k
                );
            }
        }
    }
    Ok(())
}
