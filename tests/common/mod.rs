//! Shared helpers for the integration tests: seeded random data and dense twins.
#![allow(dead_code)]

pub mod conformance;
pub mod models;
pub mod taylor_ref;

use faer::Mat;
use natgrad::linsolve::DirectionSolver;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn vec(rng: &mut StdRng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

pub fn mat(rng: &mut StdRng, r: usize, c: usize) -> Mat<f64> {
    Mat::from_fn(r, c, |_, _| rng.random_range(-1.0..1.0))
}

/// A random SPD matrix `A Aᵀ / n + shift I`.
pub fn spd(rng: &mut StdRng, n: usize, shift: f64) -> Mat<f64> {
    let a = mat(rng, n, n);
    let mut k = &a * a.transpose() * (1.0 / n as f64);
    for i in 0..n {
        k[(i, i)] += shift;
    }
    // exact symmetry
    for j in 0..n {
        for i in 0..j {
            k[(i, j)] = k[(j, i)];
        }
    }
    k
}

/// A sparse SPD matrix: the 1D stiffness + mass stencil (tridiagonal).
pub fn sparse_spd(n: usize) -> sprs::CsMat<f64> {
    let mut tri = sprs::TriMat::new((n, n));
    for i in 0..n {
        tri.add_triplet(i, i, 2.0 + 1.0 / n as f64);
        if i + 1 < n {
            tri.add_triplet(i, i + 1, -1.0);
            tri.add_triplet(i + 1, i, -1.0);
        }
    }
    tri.to_csr()
}

/// The larger of two errors, NaN if either is NaN: fold a worst error with it
/// (`fold(0.0, nan_max)`); `f64::max` returns the other operand for a NaN and would hide
/// a NaN error from the assertion.
pub fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// `‖a − b‖∞`; vectors of different lengths are a failure.
pub fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "max_diff: lengths differ");
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, nan_max)
}

/// Relative difference `‖a − b‖ / ‖b‖`. Vectors of different lengths are a failure, not a
/// comparison of their common prefix (an empty result would otherwise pass).
pub fn rel_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "rel_diff: lengths differ");
    let d: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt();
    let n: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    if n == 0.0 {
        d
    } else {
        d / n
    }
}

/// `JᵀMJ + λI` with plain loops (the dense twin of the Gram operator).
pub fn gram_twin(j: &Mat<f64>, m: &Mat<f64>, lambda: f64) -> Mat<f64> {
    let (n, p) = (j.nrows(), j.ncols());
    Mat::from_fn(p, p, |a, b| {
        let mut s = 0.0;
        for r in 0..n {
            for c in 0..n {
                s += j[(r, a)] * m[(r, c)] * j[(c, b)];
            }
        }
        s + if a == b { lambda } else { 0.0 }
    })
}

/// `A x` with plain loops.
pub fn matvec(a: &Mat<f64>, x: &[f64]) -> Vec<f64> {
    (0..a.nrows())
        .map(|i| (0..a.ncols()).map(|j| a[(i, j)] * x[j]).sum())
        .collect()
}

/// Solves `A x = b` by Gaussian elimination with partial pivoting (an independent dense
/// solve for the tests, in the spirit of `np.linalg.solve`).
pub fn dense_solve(a: &Mat<f64>, b: &[f64]) -> Vec<f64> {
    let n = b.len();
    let mut m: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let mut row: Vec<f64> = (0..n).map(|j| a[(i, j)]).collect();
            row.push(b[i]);
            row
        })
        .collect();
    for col in 0..n {
        let piv = (col..n)
            .max_by(|&x, &y| m[x][col].abs().total_cmp(&m[y][col].abs()))
            .unwrap();
        m.swap(col, piv);
        let pivot_row = m[col].clone();
        for row in m.iter_mut().skip(col + 1) {
            let f = row[col] / pivot_row[col];
            row.iter_mut()
                .zip(&pivot_row)
                .skip(col)
                .for_each(|(x, p)| *x -= f * p);
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|c| m[r][c] * x[c]).sum();
        x[r] = (m[r][n] - s) / m[r][r];
    }
    x
}
pub mod runs;
pub mod twin;

/// One direction solve by a fresh `DirectionSolver`, sequential: the direction and its info.
pub fn solve_fresh<Mo, Lo, Me>(
    lin: &mut natgrad::problem::LinearizedProblem<'_, Mo, Lo, Me>,
    rhs: natgrad::linsolve::Rhs<'_>,
    lambda: f64,
    solver: &natgrad::LinearSolver,
) -> Result<(Vec<f64>, natgrad::linsolve::SolveInfo), natgrad::linsolve::SolveFailure>
where
    Mo: natgrad::Model,
    Lo: natgrad::Loss,
    Me: natgrad::Metric,
{
    let mut d = vec![0.0; lin.problem().n_params()];
    let info = DirectionSolver::new(solver.clone()).solve_from(lin, rhs, lambda, &mut d)?;
    Ok((d, info))
}

/// Runs `f` inside a fresh rayon pool of `threads` threads (the determinism tests).
pub fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// The bits of each entry: results compared bitwise.
pub fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The determinism check: `results(threads)` (run inside a pool of that many threads by
/// the caller, e.g. with [`in_pool`]) must give bitwise the same list of results at 1 and at
/// 2 threads; `what` names one result in the message. Lists of different lengths differ.
pub fn assert_same_bits_at_one_and_two_threads(
    what: &str,
    results: impl Fn(usize) -> Vec<Vec<u64>>,
) {
    let (one, two) = (results(1), results(2));
    assert_eq!(one.len(), two.len(), "{what}s at 1 and 2 threads");
    for (i, (a, b)) in one.iter().zip(&two).enumerate() {
        assert!(a == b, "{what} {i} differs between 1 and 2 threads");
    }
}
