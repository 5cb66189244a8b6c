//! Issue 14, items 1–7: the default preconditioner, `Auto`'s choice, the accuracy
//! promises of the dense paths, CG's reported residual, scale-invariant breakdown and
//! the Nyström floor — each against a value from mathematics (a dense twin, a known
//! minimiser) or a bound from the measurements in docs/performance-solvers.md.

mod common;

use common::solve_fresh;
use natgrad::linsolve::{CgSettings, LinearSolver, Preconditioner, Rhs};
use natgrad::metric::{SparseMetric, WeightedL2};
use natgrad::model::{Activation, Mlp};
use natgrad::{Problem, SquaredError};

/// The `k×k` grid of `[0, 1]²` (sample-major) and `u = sin πx · sin πy` on it.
fn grid(k: usize) -> (Vec<f64>, Vec<f64>) {
    let h = 1.0 / (k - 1) as f64;
    let mut x = Vec::new();
    let mut u = Vec::new();
    for i in 0..k {
        for j in 0..k {
            let (a, b) = (i as f64 * h, j as f64 * h);
            x.extend([a, b]);
            u.push((std::f64::consts::PI * a).sin() * (std::f64::consts::PI * b).sin());
        }
    }
    (x, u)
}

/// The H¹-type metric of the issue: `h²·I` (mass, lumped) plus the 5-point Laplacian
/// stencil on the `k×k` grid (Neumann-like: only existing neighbours), SPD.
fn h1_metric(k: usize) -> SparseMetric {
    let h2 = 1.0 / ((k - 1) * (k - 1)) as f64;
    let n = k * k;
    let mut tri = sprs::TriMat::new((n, n));
    for i in 0..k {
        for j in 0..k {
            let a = i * k + j;
            let mut deg = 0.0;
            for (di, dj) in [(0i64, 1i64), (1, 0), (0, -1), (-1, 0)] {
                let (ni, nj) = (i as i64 + di, j as i64 + dj);
                if ni >= 0 && nj >= 0 && (ni as usize) < k && (nj as usize) < k {
                    tri.add_triplet(a, ni as usize * k + nj as usize, -1.0);
                    deg += 1.0;
                }
            }
            tri.add_triplet(a, a, deg + h2);
        }
    }
    SparseMetric::new(tri.to_csr()).unwrap()
}

fn mlp(widths: &[usize], x: &[f64]) -> Mlp {
    Mlp::with_hidden(widths, Activation::Tanh, x)
        .unwrap()
        .with_parallelism(faer::Par::Seq)
}

/// CG iterations of one natural-gradient direction at the network's initial θ (`None`
/// when CG fails, e.g. does not converge within `max_iters`).
fn cg_iters<Me: natgrad::Metric>(
    pb: &Problem<Mlp, SquaredError, Me>,
    lambda: f64,
    s: CgSettings,
) -> Option<usize> {
    let theta = pb.model().init_params(1);
    let mut lin = pb.linearize(&theta).unwrap();
    let r = lin.output_gradient().to_vec();
    let rhs = Rhs::Cotangent { r: &r, jt_r: None };
    solve_fresh(&mut lin, rhs, lambda, &LinearSolver::Cg(s))
        .ok()
        .map(|(_, info)| info.iters)
}

/// Item 1: with default settings, CG on the 2-20-20-1 tanh network (p = 501) over a 20×20
/// grid needs few iterations — measured 20 (L²) and 39 (H¹) at λ = 1e-4, where Jacobi
/// needs 730 (L²) and does not converge within 5000 at λ = 1e-7 — in the L² metric (where
/// Jacobi applies) and in the sparse H¹ metric (mass + 5-point Laplacian).
#[test]
fn default_cg_is_fast_on_a_network() {
    let (x, u) = grid(20);
    let n = u.len();
    let l2 = Problem::new(
        mlp(&[2, 20, 20, 1], &x),
        SquaredError::l2(u.clone()).unwrap(),
        WeightedL2::new(vec![1.0 / n as f64; n]).unwrap(),
    )
    .unwrap();
    let h1 = Problem::new(
        mlp(&[2, 20, 20, 1], &x),
        SquaredError::l2(u).unwrap(),
        h1_metric(20),
    )
    .unwrap();
    for lambda in [1e-4, 1e-7] {
        let s = CgSettings {
            max_iters: 5000,
            ..CgSettings::default()
        };
        let jacobi = CgSettings {
            preconditioner: Preconditioner::Jacobi,
            ..s.clone()
        };
        let (d_l2, d_h1) = (cg_iters(&l2, lambda, s.clone()), cg_iters(&h1, lambda, s));
        eprintln!(
            "λ = {lambda:e}: default L² {d_l2:?}, H¹ {d_h1:?}; Jacobi L² {:?}",
            cg_iters(&l2, lambda, jacobi)
        );
        for (metric, iters) in [("L²", d_l2), ("H¹", d_h1)] {
            let iters = iters.unwrap_or(usize::MAX);
            assert!(
                iters <= 150,
                "{metric}, λ = {lambda:e}: {iters} CG iterations"
            );
        }
    }
}
