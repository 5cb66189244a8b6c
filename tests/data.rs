//! The reference data sets follow their definitions.

use natgrad::problems::{mackey_glass, xor};

#[test]
fn mackey_glass_series_follows_the_map() {
    let z = mackey_glass::series(300);
    assert_eq!(z[0], 1.2);
    for t in 20..299 {
        let zd = z[t - 17];
        let next = 0.9 * z[t] + 0.2 * zd / (1.0 + zd.powi(10));
        assert_eq!(z[t + 1], next);
    }
    // the attractor stays in its known band
    assert!(z.iter().skip(100).all(|&v| (0.2..1.5).contains(&v)));
}

#[test]
fn mackey_glass_pairs_are_lags_and_horizon() {
    let d = mackey_glass::dataset(500, 500);
    let z = mackey_glass::series(3000);
    let s = mackey_glass::BURN_IN;
    assert_eq!(d.train_inputs.ncols(), 500);
    assert_eq!(d.test_inputs.ncols(), 500);
    for (j, lag) in [0usize, 6, 12, 18].into_iter().enumerate() {
        assert_eq!(d.train_inputs[(j, 0)], z[s - lag]);
        assert_eq!(d.test_inputs[(j, 0)], z[s + 500 - lag]);
    }
    assert_eq!(d.train_targets[3], z[s + 3 + 6]);
    assert_eq!(d.test_targets[499], z[s + 999 + 6]);
}

#[test]
fn xor_labels_are_opposite_sign_corners() {
    let d = xor::dataset(1800, 7);
    assert_eq!(d.inputs.ncols(), 1800);
    let ones = d.labels.iter().filter(|&&l| l == 1.0).count();
    assert_eq!(ones, 900);
    // with noise 0.5 the large majority of points lie in their corner's quadrant
    let agree = (0..1800)
        .filter(|&j| {
            let opposite = d.inputs[(0, j)] * d.inputs[(1, j)] < 0.0;
            (d.labels[j] == 1.0) == opposite
        })
        .count();
    assert!(agree > 1500, "{agree}");
    // seeded: same seed, same data
    assert_eq!(xor::dataset(1800, 7).inputs, d.inputs);
}
