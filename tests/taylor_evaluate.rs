//! `TaylorMlp::evaluate` (values at new points, the `Mlp::evaluate` layout) against the
//! network written out by hand, and its input errors; `init_params` and `new` from a slice.

use natgrad::model::TaylorMlp;
use natgrad::Error;

/// A 2-2-2 tanh network by the parameter layout of `natgrad::model::taylor`'s docs:
/// `W₁` (2 × 2, column-major), `b₁`, `W₂` (2 × 2, column-major), `b₂`.
#[test]
fn evaluate_is_the_network_written_out_by_hand() {
    let net = TaylorMlp::new([2, 2, 2]).unwrap();
    let theta = [
        0.3, -0.7, 0.5, 0.2, 0.1, -0.4, 1.5, -0.6, 0.8, 2.0, 0.25, -0.5,
    ];
    assert_eq!(net.n_params(), theta.len());
    let (w1, b1) = (&theta[0..4], &theta[4..6]);
    let (w2, b2) = (&theta[6..10], &theta[10..12]);
    let by_hand = |x: [f64; 2]| {
        let h = [
            (w1[0] * x[0] + w1[2] * x[1] + b1[0]).tanh(),
            (w1[1] * x[0] + w1[3] * x[1] + b1[1]).tanh(),
        ];
        [
            w2[0] * h[0] + w2[2] * h[1] + b2[0],
            w2[1] * h[0] + w2[3] * h[1] + b2[1],
        ]
    };
    // Point-major coordinates: (0.5, −1), (2, 0.25), (−0.3, 0.9).
    let x = [0.5, -1.0, 2.0, 0.25, -0.3, 0.9];
    let v = net.evaluate(&theta, &x).unwrap();
    assert_eq!(v.len(), 6, "m·q = 3·2 values");
    for i in 0..3 {
        let want = by_hand([x[2 * i], x[2 * i + 1]]);
        for o in 0..2 {
            assert!(
                (v[i * 2 + o] - want[o]).abs() < 1e-15,
                "point {i} output {o}: {} vs {}",
                v[i * 2 + o],
                want[o]
            );
        }
    }
}

#[test]
fn evaluate_refuses_bad_points_and_parameters() {
    let net = TaylorMlp::new(vec![2, 3, 1]).unwrap();
    let theta = net.init_params(0);
    assert_eq!(theta.len(), net.n_params());
    assert!(matches!(net.evaluate(&theta, &[]), Err(Error::Empty(_))));
    assert!(matches!(
        net.evaluate(&theta, &[0.1, 0.2, 0.3]),
        Err(Error::DimensionMismatch {
            expected: 4,
            found: 3,
            ..
        })
    ));
    assert!(matches!(
        net.evaluate(&theta, &[0.1, f64::NAN]),
        Err(Error::NonFinite { index: 1, .. })
    ));
    assert!(matches!(
        net.evaluate(&theta[1..], &[0.1, 0.2]),
        Err(Error::DimensionMismatch { .. })
    ));
}

/// Glorot-uniform: zero biases, weights within ±√(6/(n_in + n_out)), seeded.
#[test]
fn init_params_is_seeded_glorot_uniform_with_zero_biases() {
    let net = TaylorMlp::new(&[3, 4, 2][..]).unwrap();
    let theta = net.init_params(7);
    assert_eq!(theta, net.init_params(7));
    assert_ne!(theta, net.init_params(8));
    let (a1, a2) = ((6.0f64 / 7.0).sqrt(), (6.0f64 / 6.0).sqrt());
    assert!(theta[0..12].iter().all(|w| w.abs() < a1 && *w != 0.0));
    assert!(theta[12..16].iter().all(|b| *b == 0.0));
    assert!(theta[16..24].iter().all(|w| w.abs() < a2 && *w != 0.0));
    assert!(theta[24..26].iter().all(|b| *b == 0.0));
}
