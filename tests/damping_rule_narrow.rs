//! `DampingRule::ThresholdNarrow`: the threshold rule with its upper threshold at ½
//! (src/step_control.rs), factors by hand from its definition.

use natgrad::{DampingRule, LevenbergMarquardt};

fn lm(rule: DampingRule) -> LevenbergMarquardt {
    LevenbergMarquardt {
        min: 1e-12,
        max: 1e2,
        rule,
    }
}

#[test]
fn narrow_threshold_lowers_damping_above_one_half_where_the_threshold_rule_keeps_it() {
    // (ρ, factor of ThresholdNarrow, factor of Threshold), predicted decrease 1 so that
    // ρ = actual decrease: ×3/2 below ¼, ×2/3 above ½ (¾ for Threshold), else ×1.
    let cases = [
        (0.2, 1.5, 1.5),
        (0.3, 1.0, 1.0),
        (0.5, 1.0, 1.0),
        (0.6, 2.0 / 3.0, 1.0),
        (0.7, 2.0 / 3.0, 1.0),
        (0.8, 2.0 / 3.0, 2.0 / 3.0),
    ];
    for (rho, narrow, threshold) in cases {
        for (rule, factor) in [
            (DampingRule::ThresholdNarrow, narrow),
            (DampingRule::Threshold, threshold),
        ] {
            let u = lm(rule).update(1e-6, 2.0, rho, 1.0);
            assert!(u.accepted, "{rule:?} ρ = {rho}");
            assert_eq!(u.rho, rho);
            assert!(
                (u.damping - 1e-6 * factor).abs() <= 1e-15 * 1e-6,
                "{rule:?} ρ = {rho}: λ = {:e}, expected {:e}",
                u.damping,
                1e-6 * factor
            );
            // The threshold rules leave Nielsen's ν alone.
            assert_eq!(u.nu, 2.0);
        }
    }
}

#[test]
fn narrow_threshold_rejects_a_loss_increase_and_raises_damping_within_bounds() {
    let u = lm(DampingRule::ThresholdNarrow).update(1e-6, 2.0, -0.1, 1.0);
    assert!(!u.accepted);
    assert!((u.damping - 1.5e-6).abs() <= 1e-21);
    // Clipped to the bounds: at the floor ×2/3 stays at min, at the top ×3/2 stays at max.
    let low = lm(DampingRule::ThresholdNarrow).update(1e-12, 2.0, 0.9, 1.0);
    assert_eq!(low.damping, 1e-12);
    let high = lm(DampingRule::ThresholdNarrow).update(1e2, 2.0, f64::NAN, 1.0);
    assert_eq!(high.damping, 1e2);
    assert!(!high.accepted);
}
