//! `take_step` and `cap_step_norm` by their definitions (crate-internal, so tested
//! here; the public path through `NaturalGradient` is tests/oracles_step_control.rs).
use super::*;
use crate::loss::SquaredError;
use crate::metric::WeightedL2;
use crate::model::LinearModel;
use faer::Mat;

fn axpby(a: f64, x: &[f64], b: f64, y: &[f64]) -> Vec<f64> {
    x.iter().zip(y).map(|(x, y)| a * x + b * y).collect()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

#[test]
fn step_controls_by_their_definitions_on_ties_non_descent_and_exhausted_searches() {
    // y = Aθ with a zero third column: the loss is constant along e₃.
    let a = Mat::from_fn(6, 3, |i, j| {
        if j == 2 {
            0.0
        } else {
            ((i * 3 + j) as f64 * 0.7).sin()
        }
    });
    let u: Vec<f64> = (0..6).map(|i| (i as f64 * 1.3).cos()).collect();
    let w = WeightedL2::uniform(6).unwrap();
    let loss = SquaredError::new(u, w.clone()).unwrap();
    let p = FitProblem::new(LinearModel::dense(a).unwrap(), loss, w).unwrap();
    let theta = [0.2, -0.1, 0.0];
    let (l0, g) = (p.loss_at(&theta).unwrap(), p.gradient_at(&theta).unwrap());
    let step = |control: StepControl, delta: &[f64]| {
        let start = StepStart {
            theta: &theta,
            loss: l0,
            gradient: &g,
            delta,
        };
        take_step(&control, &p, &start).unwrap()
    };
    // Log grid on a flat direction: all losses tie, the first (t = 1) is kept.
    let s = step(StepControl::LogGrid { max_halvings: 4 }, &[0.0, 0.0, 1.0]);
    assert_eq!((s.t, &*s.note, s.theta[2]), (1.0, "log_grid", 1.0));
    // Armijo along +g (not a descent direction): skipped, the full step.
    let s = step(StepControl::armijo(), &g);
    assert_eq!((s.t, &*s.note), (1.0, "armijo_skipped_not_descent"));
    assert_eq!(s.theta, axpby(1.0, &theta, 1.0, &g));
    // Armijo with a step 1e6 too long and one halving: nothing satisfies it, the
    // smallest t = shrink^max_halvings is taken.
    let control = StepControl::Armijo {
        c: 1e-4,
        shrink: 0.5,
        max_halvings: 1,
    };
    let long: Vec<f64> = g.iter().map(|g| -1e6 * g).collect();
    let s = step(control, &long);
    assert_eq!((s.t, &*s.note), (0.5, "armijo_not_satisfied_smallest_step"));
    assert!(max_diff(&s.theta, &axpby(1.0, &theta, 0.5, &long)) <= 1e-9);
    assert_eq!(s.loss, p.loss_at(&s.theta).unwrap());
    // A short descent step satisfies it at once.
    let short: Vec<f64> = g.iter().map(|g| -1e-3 * g).collect();
    let s = step(control, &short);
    assert_eq!((s.t, &*s.note), (1.0, "armijo"));
    // The documented defaults.
    assert_eq!(
        StepControl::armijo(),
        StepControl::Armijo {
            c: 1e-4,
            shrink: 0.5,
            max_halvings: 30
        }
    );
}

#[test]
fn step_norm_cap_returns_its_factor() {
    let mut delta = [3.0, 4.0];
    assert_eq!(cap_step_norm(&mut delta, Some(1.0)), 0.2);
    assert!(max_diff(&delta, &[0.6, 0.8]) <= 1e-15);
    let capped = delta;
    assert_eq!(cap_step_norm(&mut delta, Some(2.0)), 1.0);
    assert_eq!(delta, capped, "a shorter step is left alone");
    assert_eq!(cap_step_norm(&mut delta, None), 1.0);
}
