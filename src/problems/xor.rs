//! The noisy XOR classification data of docs/math.md §4: points in R² around the four
//! corners `(±1, ±1)`, label 1 when the two coordinates of the corner have opposite sign.

use faer::Mat;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

/// Standard deviation of the Gaussian noise around each corner.
pub const NOISE: f64 = 0.5;

/// Inputs (`2 × m`, one column per point) and labels in `{0, 1}`.
#[derive(Debug, Clone)]
pub struct Xor {
    /// Points, `2 × m`.
    pub inputs: Mat<f64>,
    /// Labels: 1 for the corners `(1, −1)` and `(−1, 1)`, 0 otherwise.
    pub labels: Vec<f64>,
}

/// `m` points (a quarter per corner, cycling through the corners), Gaussian noise of
/// standard deviation [`NOISE`], seeded.
pub fn dataset(m: usize, seed: u64) -> Xor {
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
    let noise = Normal::new(0.0, NOISE).expect("valid normal");
    let corners = [(1.0, 1.0), (-1.0, -1.0), (1.0, -1.0), (-1.0, 1.0)];
    let mut inputs = Mat::zeros(2, m);
    let mut labels = Vec::with_capacity(m);
    for j in 0..m {
        let (cx, cy): (f64, f64) = corners[j % 4];
        inputs[(0, j)] = cx + noise.sample(&mut rng);
        inputs[(1, j)] = cy + noise.sample(&mut rng);
        labels.push(if cx * cy < 0.0 { 1.0 } else { 0.0 });
    }
    Xor { inputs, labels }
}
