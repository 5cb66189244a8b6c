//! K-FAC (docs/math.md §5, `src/linsolve/kfac.rs`) on factors chosen by the test: a linear
//! model `y = Xθ` whose linearisation hands out Kronecker factors `A`, `B` written here, so
//! that `P⁻¹ = (A + π√λ I)⁻¹ ⊗ (B + √λ/π I)⁻¹` with `π = √((tr A / c)/(tr B / r))` is
//! worked out by hand on diagonal factors. Survivors of cargo-mutants on `kfac.rs` (issue
//! 20 acceptance 2).

mod common;

use common::rel_diff;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::matrix_free::LinOp;
use faer::Mat;
use faer::Par;
use natgrad::linsolve::DirectionSolver;
use natgrad::linsolve::{LinearSolver, Rhs, SolveFailure};
use natgrad::metric::{Metric, OutputPoint, WeightedL2};
use natgrad::model::{KfacFactors, Linearization, Model};
use natgrad::{FitProblem, SquaredError};

/// `y = Xθ` (`n` outputs, one per sample) whose K-FAC factors are `factors`, whatever θ.
struct Scripted {
    x: Mat<f64>,
    factors: Vec<KfacFactors>,
    /// Samples (`n / q` for `q` outputs per sample).
    samples: usize,
}

struct ScriptedLin<'a> {
    model: &'a Scripted,
    y: Vec<f64>,
}

impl Model for Scripted {
    type Linearization<'a> = ScriptedLin<'a>;
    fn n_params(&self) -> usize {
        self.x.ncols()
    }
    fn n_outputs(&self) -> usize {
        self.x.nrows()
    }
    fn n_samples(&self) -> usize {
        self.samples
    }
    fn linearize(&self, theta: &[f64]) -> natgrad::Result<ScriptedLin<'_>> {
        let mut y = vec![0.0; self.x.nrows()];
        let mut lin = ScriptedLin {
            model: self,
            y: vec![],
        };
        lin.jvp(theta, &mut y);
        lin.y = y;
        Ok(lin)
    }
}

impl Linearization for ScriptedLin<'_> {
    fn n_params(&self) -> usize {
        self.model.x.ncols()
    }
    fn outputs(&self) -> &[f64] {
        &self.y
    }
    fn jvp(&mut self, t: &[f64], out: &mut [f64]) {
        let x = &self.model.x;
        for (i, o) in out.iter_mut().enumerate() {
            *o = (0..x.ncols()).map(|j| x[(i, j)] * t[j]).sum();
        }
    }
    fn vjp(&mut self, s: &[f64], out: &mut [f64]) {
        let x = &self.model.x;
        for (j, o) in out.iter_mut().enumerate() {
            *o = (0..x.nrows()).map(|i| x[(i, j)] * s[i]).sum();
        }
    }
    fn kfac_factors(&mut self, _metric_diagonal: &[f64]) -> Option<Vec<KfacFactors>> {
        Some(self.model.factors.clone())
    }
}

fn diag(d: &[f64]) -> Mat<f64> {
    Mat::from_fn(d.len(), d.len(), |i, j| if i == j { d[i] } else { 0.0 })
}

/// One layer at `θ[start..]` with diagonal factors `A = diag(a)` (`c × c`), `B = diag(b)`.
fn layer(start: usize, a: &[f64], b: &[f64]) -> KfacFactors {
    KfacFactors {
        range: start..start + a.len() * b.len(),
        a: diag(a),
        b: diag(b),
    }
}

type Scripted3 = FitProblem<Scripted, SquaredError, WeightedL2>;

/// A problem of `p` parameters, `n` outputs of `q` per sample, whose K-FAC factors are
/// `factors`.
fn problem_nq(p: usize, n: usize, q: usize, factors: Vec<KfacFactors>) -> Scripted3 {
    let x = Mat::from_fn(n, p, |i, j| 1.0 / (1.0 + i as f64 + 2.0 * j as f64));
    let model = Scripted {
        x,
        factors,
        samples: n / q,
    };
    let u = (0..n).map(|i| i as f64).collect();
    FitProblem::new(
        model,
        SquaredError::l2(u).unwrap(),
        WeightedL2::uniform(n).unwrap(),
    )
    .unwrap()
}

/// A problem of `p` parameters and 3 outputs (one per sample).
fn problem(p: usize, factors: Vec<KfacFactors>) -> Scripted3 {
    problem_nq(p, 3, 1, factors)
}

/// The K-FAC direction `P⁻¹ b` at damping λ with the factors in `cache` (refreshed as
/// `refresh_every` and `decay` say).
fn kfac_with(
    pb: &Scripted3,
    b: &[f64],
    damping: f64,
    (refresh_every, decay): (usize, f64),
    cache: &mut DirectionSolver,
) -> Result<Vec<f64>, natgrad::linsolve::SolveFailure> {
    let theta = vec![0.5; pb.n_params()];
    let mut lin = pb.linearize(&theta).unwrap();
    let mut x = vec![0.0; b.len()];
    let solver = LinearSolver::Kfac {
        refresh_every,
        decay,
    };
    cache.set_linear_solver(solver.clone()).solve_from(
        &mut lin,
        Rhs::Params(b),
        damping,
        &mut x,
    )?;
    Ok(x)
}

/// The K-FAC direction `P⁻¹ b` at damping λ (factors fresh).
fn kfac_direction(
    pb: &Scripted3,
    b: &[f64],
    damping: f64,
) -> Result<Vec<f64>, natgrad::linsolve::SolveFailure> {
    kfac_with(pb, b, damping, (1, 0.0), &mut DirectionSolver::default())
}

/// `P⁻¹ b` for one diagonal layer by hand: the block `V` (`r × c`, column-major) of `b`
/// maps to `V_ij / ((b_i + √λ/π)(a_j + π√λ))`; entries outside the layer are kept.
fn by_hand(b: &[f64], start: usize, a: &[f64], bb: &[f64], pi: f64, damping: f64) -> Vec<f64> {
    let s = damping.sqrt();
    let r = bb.len();
    let mut out = b.to_vec();
    for (k, o) in out[start..start + r * a.len()].iter_mut().enumerate() {
        let (i, j) = (k % r, k / r);
        *o /= (bb[i] + s / pi) * (a[j] + pi * s);
    }
    out
}

#[test]
fn a_zero_factor_gets_no_pi_correction() {
    // π = √((tr A/c)/(tr B/r)) is undefined when a factor is zero (a layer whose inputs or
    // back-propagated signals all vanish, e.g. dead ReLUs); π = 1 then, and for λ > 0 the
    // damped factors `A + √λ I`, `B + √λ I` are still positive definite.
    let b: Vec<f64> = (0..7).map(|k| 1.0 + k as f64).collect();
    let damping = 0.25; // √λ = ½
    for (a, bb) in [
        (vec![0.0, 0.0], vec![1.0, 3.0, 2.0]),
        (vec![2.0, 4.0], vec![0.0; 3]),
    ] {
        let pb = problem(7, vec![layer(1, &a, &bb)]);
        let got = kfac_direction(&pb, &b, damping).unwrap();
        let want = by_hand(&b, 1, &a, &bb, 1.0, damping);
        let err = rel_diff(&got, &want);
        assert!(
            err <= 1e-14,
            "A = diag{a:?}, B = diag{bb:?}: {got:?} vs {want:?}"
        );
    }
    // Both non-zero: π = √((6/2)/(2/3)) = √4.5.
    let (a, bb) = (vec![2.0, 4.0], vec![1.0, 0.0, 1.0]);
    let pb = problem(7, vec![layer(1, &a, &bb)]);
    let got = kfac_direction(&pb, &b, damping).unwrap();
    let want = by_hand(&b, 1, &a, &bb, 4.5f64.sqrt(), damping);
    assert!(rel_diff(&got, &want) <= 1e-14, "{got:?} vs {want:?}");
}

#[test]
fn factors_are_refreshed_every_k_solves_and_each_refresh_costs_q_vjps() {
    // refresh_every = 3: the factors are computed at solves 0, 3, 6 (docs: "recomputed
    // every `refresh_every` solves"); a refresh costs the model's q backward passes, counted
    // as vjps (q = 2 outputs per sample here), a solve with fresh factors nothing.
    let pb = problem_nq(7, 6, 2, vec![layer(1, &[2.0, 4.0], &[1.0, 2.0, 3.0])]);
    let b = vec![1.0; 7];
    let mut cache = DirectionSolver::default();
    let mut refreshes = Vec::new();
    for _ in 0..7 {
        let before = pb.evaluations().vjp;
        kfac_with(&pb, &b, 0.25, (3, 0.0), &mut cache).unwrap();
        let vjps = pb.evaluations().vjp - before;
        let count = cache.cache().kfac().unwrap().refreshes();
        let fresh = refreshes.last() != Some(&count);
        assert_eq!(vjps, if fresh { 2 } else { 0 }, "solve {}", refreshes.len());
        refreshes.push(count);
    }
    assert_eq!(refreshes, [1, 1, 1, 2, 2, 2, 3]);
}

#[test]
fn factors_of_another_size_are_neither_reused_nor_averaged() {
    // One cache, two problems: the factors of a 7-parameter problem are not reused for a
    // 5-parameter one (a refresh, whatever refresh_every says), and are not averaged into
    // its factors (decay ½ would otherwise mix them in).
    let (a7, b7) = (vec![2.0, 4.0], vec![1.0, 2.0, 3.0]);
    let (a5, b5) = (vec![1.0, 3.0], vec![5.0, 1.0]);
    let seven = problem(7, vec![layer(1, &a7, &b7)]);
    let five = problem(5, vec![layer(1, &a5, &b5)]);
    let mut cache = DirectionSolver::default();
    let b: Vec<f64> = (0..7).map(|k| 1.0 + k as f64).collect();
    let damping = 0.25;
    let got = kfac_with(&seven, &b, damping, (100, 0.5), &mut cache).unwrap();
    let pi7 = (3.0f64 / 2.0).sqrt();
    assert!(rel_diff(&got, &by_hand(&b, 1, &a7, &b7, pi7, damping)) <= 1e-14);
    let got = kfac_with(&five, &b[..5], damping, (100, 0.5), &mut cache).unwrap();
    let pi5 = (2.0f64 / 3.0).sqrt();
    let want = by_hand(&b[..5], 1, &a5, &b5, pi5, damping);
    assert!(rel_diff(&got, &want) <= 1e-14, "{got:?} vs {want:?}");
    assert_eq!(
        cache.cache().kfac().unwrap().refreshes(),
        1,
        "a new size starts the count again"
    );
}

#[test]
fn factors_of_another_layer_shape_are_not_averaged() {
    // Same p = 8, layers 3×2 and 1×1 then 3×1 and 2×2 (the first pair has the same rows,
    // the second neither dimension): the exponential average mixes only factors of the
    // same shape (a layer's A and B of another shape are other matrices), so with decay ½
    // the second direction is that of its own fresh factors.
    let (a1, b1, a2, b2) = (vec![2.0, 4.0], vec![1.0, 2.0, 3.0], vec![7.0], vec![0.5]);
    let (a3, b3, a4, b4) = (
        vec![3.0],
        vec![5.0, 1.0, 3.0],
        vec![1.0, 3.0],
        vec![2.0, 4.0],
    );
    let first = problem(8, vec![layer(1, &a1, &b1), layer(7, &a2, &b2)]);
    let second = problem(8, vec![layer(1, &a3, &b3), layer(4, &a4, &b4)]);
    let mut cache = DirectionSolver::default();
    let b: Vec<f64> = (0..8).map(|k| 1.0 + k as f64).collect();
    kfac_with(&first, &b, 0.25, (1, 0.5), &mut cache).unwrap();
    let got = kfac_with(&second, &b, 0.25, (1, 0.5), &mut cache).unwrap();
    let want = by_hand(&b, 1, &a3, &b3, 1.0, 0.25); // π = √(3/3)
    let want = by_hand(&want, 4, &a4, &b4, (2.0f64 / 3.0).sqrt(), 0.25);
    assert!(rel_diff(&got, &want) <= 1e-14, "{got:?} vs {want:?}");
    assert_eq!(cache.cache().kfac().unwrap().refreshes(), 2);
}

#[test]
fn preconditioner_is_a_square_operator_equal_to_its_transpose() {
    // `KfacPrecond` as a faer `LinOp` (what PCG and any user of the operator see): p × p,
    // a block of columns mapped column by column, and `conj_apply` = `apply` (`P⁻¹` is
    // symmetric). Two layers and a parameter outside both (the identity there).
    let (a1, b1) = (vec![2.0, 4.0], vec![1.0, 3.0]);
    let (a2, b2) = (vec![1.0, 5.0, 3.0], vec![2.0]);
    let pb = problem(8, vec![layer(0, &a1, &b1), layer(4, &a2, &b2)]);
    let mut cache = DirectionSolver::default();
    let damping = 0.25;
    let b: Vec<f64> = (0..8).map(|k| 1.0 + k as f64).collect();
    kfac_with(&pb, &b, damping, (1, 0.0), &mut cache).unwrap();
    let pre = cache
        .cache()
        .kfac()
        .unwrap()
        .preconditioner(damping, Par::Seq)
        .unwrap();
    assert_eq!((pre.nrows(), pre.ncols()), (8, 8));
    let pi1 = (3.0f64 / 2.0).sqrt();
    let pi2 = (3.0f64 / 2.0).sqrt();
    let want = |v: &[f64]| {
        let v = by_hand(v, 0, &a1, &b1, pi1, damping);
        by_hand(&v, 4, &a2, &b2, pi2, damping)
    };
    let c2: Vec<f64> = b.iter().map(|v| 1.0 / v).collect();
    let rhs = Mat::from_fn(8, 2, |i, j| if j == 0 { b[i] } else { c2[i] });
    for conj in [false, true] {
        let mut out = Mat::from_fn(8, 2, |_, _| f64::NAN);
        let mut mem = MemBuffer::new(pre.apply_scratch(2, Par::Seq));
        let stack = MemStack::new(&mut mem);
        match conj {
            false => pre.apply(out.as_mut(), rhs.as_ref(), Par::Seq, stack),
            true => pre.conj_apply(out.as_mut(), rhs.as_ref(), Par::Seq, stack),
        }
        for (j, v) in [&b, &c2].into_iter().enumerate() {
            let got: Vec<f64> = (0..8).map(|i| out[(i, j)]).collect();
            let err = rel_diff(&got, &want(v));
            assert!(
                err <= 1e-14,
                "conj = {conj}, column {j}: {got:?} vs {:?}",
                want(v)
            );
        }
    }
}

/// A user metric `diag(w)` taken as given (no validation), as K-FAC reads it.
struct UserDiagonal(Vec<f64>);

impl Metric for UserDiagonal {
    fn name(&self) -> &'static str {
        "UserDiagonal"
    }
    fn dim(&self) -> Option<usize> {
        Some(self.0.len())
    }
    fn apply(&self, _at: &OutputPoint<'_>, v: &[f64], out: &mut [f64]) {
        out.iter_mut()
            .zip(v)
            .zip(&self.0)
            .for_each(|((o, v), w)| *o = w * v);
    }
    fn diagonal(&self, _at: &OutputPoint<'_>, out: &mut [f64]) -> bool {
        out.copy_from_slice(&self.0);
        true
    }
    fn select_samples(&self, _samples: &[usize], _q: usize, _m: usize) -> natgrad::Result<Self> {
        unimplemented!("not used")
    }
}

#[test]
fn metric_weights_must_be_finite_non_negative_and_not_all_zero() {
    // K-FAC weights the factors by diag(M): a negative or non-finite weight is refused
    // naming the output, all-zero weights are refused, and zero weights beside positive
    // ones are fine (a saturated logit's Fisher weight is 0).
    let b = vec![1.0; 7];
    for (w, want) in [
        (vec![1.0, -1.0, 1.0], Some("metric weight -1 at output 1")),
        (
            vec![1.0, 1.0, f64::NAN],
            Some("metric weight NaN at output 2"),
        ),
        (vec![0.0, 0.0, 0.0], Some("all zero")),
        (vec![0.0, 2.0, 0.0], None),
    ] {
        let x = Mat::from_fn(3, 7, |i, j| 1.0 / (1.0 + i as f64 + 2.0 * j as f64));
        let model = Scripted {
            x,
            factors: vec![layer(1, &[2.0, 4.0], &[1.0, 2.0, 3.0])],
            samples: 3,
        };
        let pb = FitProblem::new(
            model,
            SquaredError::l2(vec![0.0; 3]).unwrap(),
            UserDiagonal(w.clone()),
        )
        .unwrap();
        let mut lin = pb.linearize(&[0.5; 7]).unwrap();
        let mut x = vec![0.0; 7];
        let solver = LinearSolver::Kfac {
            refresh_every: 1,
            decay: 0.0,
        };
        let mut cache = DirectionSolver::default();
        let res = cache.set_linear_solver(solver.clone()).solve_from(
            &mut lin,
            Rhs::Params(&b),
            0.25,
            &mut x,
        );
        match (want, res) {
            (None, Ok(_)) => {
                let want = by_hand(&b, 1, &[2.0, 4.0], &[1.0, 2.0, 3.0], 1.5f64.sqrt(), 0.25);
                assert!(rel_diff(&x, &want) <= 1e-14, "w = {w:?}");
            }
            (Some(text), Err(SolveFailure::Kfac { reason })) => {
                assert!(reason.contains(text), "w = {w:?}: {reason}")
            }
            (want, res) => panic!("w = {w:?}: expected {want:?}, got {res:?}"),
        }
    }
}

#[test]
fn without_damping_a_singular_factor_is_refused_and_a_regular_one_is_inverted() {
    // λ = 0: `P⁻¹ = A⁻¹ ⊗ B⁻¹` exactly (no shift, π plays no part) when both factors are
    // regular; a zero eigenvalue makes `A` singular, which is a typed refusal naming the
    // layer, not a direction full of ∞.
    let b: Vec<f64> = (0..7).map(|k| 1.0 + k as f64).collect();
    let (a, bb) = (vec![2.0, 4.0], vec![1.0, 0.5, 8.0]);
    let pb = problem(7, vec![layer(1, &a, &bb)]);
    let got = kfac_direction(&pb, &b, 0.0).unwrap();
    assert!(
        rel_diff(&got, &by_hand(&b, 1, &a, &bb, 1.0, 0.0)) <= 1e-14,
        "{got:?}"
    );
    let pb = problem(7, vec![layer(1, &[0.0, 4.0], &bb)]);
    match kfac_direction(&pb, &b, 0.0) {
        Err(SolveFailure::Kfac { reason }) => {
            assert!(reason.contains("θ[1..] are singular"), "{reason}")
        }
        other => panic!("a singular factor at λ = 0: {other:?}"),
    }
}
