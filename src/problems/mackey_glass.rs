//! The Mackey–Glass series and its prediction task (docs/math.md §4; Park, Amari, Fukumizu
//! 2000).
//!
//! `z(t+1) = (1 − b) z(t) + a z(t−τ) / (1 + z(t−τ)¹⁰)` with `a = 0.2`, `b = 0.1`, `τ = 17`
//! and `z(t) = 1.2` for `t ≤ 0`. After a burn-in, the input at time `t` is
//! `(z(t), z(t−6), z(t−12), z(t−18))` and the target is `z(t+6)`; the test pairs follow
//! the training pairs in time.

use faer::Mat;

/// `a` of the Mackey–Glass map.
pub const A: f64 = 0.2;
/// `b` of the Mackey–Glass map.
pub const B: f64 = 0.1;
/// Delay `τ`.
pub const TAU: usize = 17;
/// Steps discarded before the first pair (transient of the constant history).
pub const BURN_IN: usize = 1000;
/// Input lags `(0, 6, 12, 18)` and prediction horizon 6.
pub const LAGS: [usize; 4] = [0, 6, 12, 18];
/// Prediction horizon.
pub const HORIZON: usize = 6;

/// The series `z(0), …, z(len − 1)` with history `z(t) = 1.2` for `t ≤ 0`.
pub fn series(len: usize) -> Vec<f64> {
    let mut z = Vec::with_capacity(len);
    let at = |z: &Vec<f64>, t: isize| if t <= 0 { 1.2 } else { z[t as usize] };
    z.push(1.2);
    for t in 0..len.saturating_sub(1) {
        let t = t as isize;
        let zd = at(&z, t - TAU as isize);
        let next = (1.0 - B) * at(&z, t) + A * zd / (1.0 + zd.powi(10));
        z.push(next);
    }
    z
}

/// Training and test pairs: inputs one column per pair (`4 × m`), targets.
#[derive(Debug, Clone)]
pub struct MackeyGlass {
    /// Training inputs `4 × m_train`.
    pub train_inputs: Mat<f64>,
    /// Training targets `z(t + 6)`.
    pub train_targets: Vec<f64>,
    /// Test inputs `4 × m_test` (the times right after the training ones).
    pub test_inputs: Mat<f64>,
    /// Test targets.
    pub test_targets: Vec<f64>,
}

/// `m_train` training pairs then `m_test` test pairs, consecutive in time after
/// [`BURN_IN`].
pub fn dataset(m_train: usize, m_test: usize) -> MackeyGlass {
    let start = BURN_IN.max(LAGS[3]);
    let total = m_train + m_test;
    let z = series(start + total + HORIZON + 1);
    let pairs = |from: usize, m: usize| {
        let x = Mat::from_fn(4, m, |k, j| z[start + from + j - LAGS[k]]);
        let y = (0..m).map(|j| z[start + from + j + HORIZON]).collect();
        (x, y)
    };
    let (train_inputs, train_targets) = pairs(0, m_train);
    let (test_inputs, test_targets) = pairs(m_train, m_test);
    MackeyGlass {
        train_inputs,
        train_targets,
        test_inputs,
        test_targets,
    }
}
