//! Every setting of the solver and of the linear solvers is refused exactly outside the
//! range its documentation states, and kept as given inside it (issue 20: the survivors of
//! cargo-mutants on `src/solver.rs` and `src/linsolve/mod.rs`, whose range checks only one
//! bad value each reached). The expected verdicts are the documented ranges, checked at
//! their boundaries: the last value inside is accepted, the first outside is refused.

use argmin::core::{ArgminError, Executor, State};
use faer::mat;
use natgrad::linsolve::AutoSettings;
use natgrad::model::LinearModel;
use natgrad::{
    CgSettings, DampingScale, FitProblem, LevenbergMarquardt, LinearSolver, NaturalGradient,
    Preconditioner, SquaredError, StepControl, StepRule, Tolerances, WeightedL2,
};

/// The text of argmin's `InvalidParameter`, which every refused setting must be.
fn refusal(e: argmin::core::Error) -> String {
    match e.downcast_ref::<ArgminError>() {
        Some(ArgminError::InvalidParameter { text }) => text.clone(),
        other => panic!("expected InvalidParameter, got {other:?} ({e})"),
    }
}

fn cg(f: impl FnOnce(&mut CgSettings)) -> CgSettings {
    let mut s = CgSettings::default();
    f(&mut s);
    s
}

/// Checks one linear solver both directly and through the builder.
fn assert_linear_solver(solver: LinearSolver, valid: bool) {
    assert_eq!(solver.validate().is_ok(), valid, "{solver:?}");
    match NaturalGradient::new().with_linear_solver(solver.clone()) {
        Ok(ng) => {
            assert!(valid, "accepted {solver:?}");
            assert_eq!(ng.linear_solver(), &solver);
        }
        Err(e) => {
            assert!(!valid, "refused {solver:?}");
            let text = refusal(e);
            assert!(text.starts_with("`NaturalGradient`:"), "{text}");
        }
    }
}

/// `CgSettings`: tolerances finite and ≥ 0, `max_iters > 0`, a Nyström rank and refresh
/// period ≥ 1, a K-FAC refresh period ≥ 1 with decay in [0, 1), an Auto refresh period ≥ 1
/// — in every solver that runs CG.
#[test]
fn cg_settings_are_refused_exactly_outside_their_documented_ranges() {
    let nystrom = |rank, refresh_every| Preconditioner::Nystrom {
        rank,
        refresh_every,
        seed: 3,
    };
    let kfac = |refresh_every, decay| Preconditioner::Kfac {
        refresh_every,
        decay,
    };
    let auto = |trial_above, refresh_every| Preconditioner::Auto {
        trial_above,
        refresh_every,
    };
    let below_one = 1.0 - f64::EPSILON / 2.0;
    let valid = [
        cg(|_| {}),
        cg(|s| s.rel_tol = 0.0),
        cg(|s| s.abs_tol = 0.0),
        cg(|s| s.abs_tol = 1e300),
        cg(|s| s.max_iters = 1),
        CgSettings::fixed_iterations(1),
        cg(|s| s.preconditioner = nystrom(1, 1)),
        cg(|s| s.preconditioner = kfac(1, 0.0)),
        cg(|s| s.preconditioner = kfac(1, below_one)),
        cg(|s| s.preconditioner = auto(0, 1)),
        cg(|s| s.preconditioner = Preconditioner::Jacobi),
    ];
    let invalid = [
        cg(|s| s.rel_tol = -1e-300),
        cg(|s| s.rel_tol = f64::INFINITY),
        cg(|s| s.rel_tol = f64::NAN),
        cg(|s| s.abs_tol = -1e-300),
        cg(|s| s.abs_tol = f64::INFINITY),
        cg(|s| s.abs_tol = f64::NAN),
        cg(|s| s.max_iters = 0),
        CgSettings::fixed_iterations(0),
        cg(|s| s.preconditioner = nystrom(0, 1)),
        cg(|s| s.preconditioner = nystrom(1, 0)),
        cg(|s| s.preconditioner = kfac(0, 0.0)),
        cg(|s| s.preconditioner = kfac(1, 1.0)),
        cg(|s| s.preconditioner = kfac(1, -1e-300)),
        cg(|s| s.preconditioner = kfac(1, f64::NAN)),
        cg(|s| s.preconditioner = auto(50, 0)),
    ];
    for (settings, ok) in valid
        .into_iter()
        .map(|s| (s, true))
        .chain(invalid.into_iter().map(|s| (s, false)))
    {
        assert_eq!(settings.validate().is_ok(), ok, "{settings:?}");
        assert_linear_solver(LinearSolver::Cg(settings.clone()), ok);
        assert_linear_solver(LinearSolver::SampleCg(settings.clone()), ok);
        let a = AutoSettings {
            cg: settings,
            ..AutoSettings::default()
        };
        assert_linear_solver(LinearSolver::Auto(a), ok);
    }
    // The direct solvers have no CG settings.
    assert_linear_solver(LinearSolver::Cholesky, true);
    assert_linear_solver(LinearSolver::SampleCholesky, true);
}

/// `LinearSolver::Kfac`: `refresh_every ≥ 1` and `decay ∈ [0, 1)`.
#[test]
fn kfac_solver_settings_are_refused_exactly_outside_their_documented_ranges() {
    let kfac = |refresh_every, decay| LinearSolver::Kfac {
        refresh_every,
        decay,
    };
    for (solver, ok) in [
        (kfac(1, 0.0), true),
        (kfac(7, 0.5), true),
        (kfac(0, 0.0), false),
        (kfac(0, 0.5), false),
        (kfac(1, 1.0), false),
        (kfac(1, -0.5), false),
        (kfac(1, f64::NAN), false),
    ] {
        assert_linear_solver(solver, ok);
    }
}

/// The preconditioners' constructors are the documented values.
#[test]
fn preconditioner_constructors_have_their_documented_values() {
    assert_eq!(
        Preconditioner::kfac(),
        Preconditioner::Kfac {
            refresh_every: 1,
            decay: 0.0
        }
    );
    assert_eq!(
        Preconditioner::auto(),
        Preconditioner::Auto {
            trial_above: 50,
            refresh_every: 10
        }
    );
    assert_eq!(Preconditioner::default(), Preconditioner::auto());
    assert_eq!(
        Preconditioner::nystrom(12),
        Preconditioner::Nystrom {
            rank: 12,
            refresh_every: 10,
            seed: 0
        }
    );
    let fixed = CgSettings::fixed_iterations(17);
    assert_eq!(
        fixed,
        CgSettings {
            rel_tol: 0.0,
            abs_tol: 0.0,
            max_iters: 17,
            preconditioner: Preconditioner::None,
            warm_start: false,
            accept_truncated: true,
        }
    );
}

/// One builder's verdict on one value: accepted, or argmin's `InvalidParameter` naming
/// the solver.
fn verdict<S>(r: Result<NaturalGradient<S>, argmin::core::Error>) -> bool {
    match r {
        Ok(_) => true,
        Err(e) => {
            let text = refusal(e);
            assert!(text.starts_with("`NaturalGradient`:"), "{text}");
            false
        }
    }
}

/// α > 0 finite; λ ≥ 0 finite; `t_max ∈ (0, 1]`; a step cap > 0 finite; β finite;
/// tolerances ≥ 0 finite; LM bounds `0 < min ≤ max < ∞`; a batch of ≥ 1 sample.
#[test]
fn solver_settings_are_refused_exactly_outside_their_documented_ranges() {
    let ng = NaturalGradient::new;
    let tiny = f64::MIN_POSITIVE;
    let above_one = 1.0 + f64::EPSILON;
    for (x, ok) in [(tiny, true), (1e300, true), (0.0, false), (-1.0, false)]
        .into_iter()
        .chain([(f64::INFINITY, false), (f64::NAN, false)])
    {
        assert_eq!(verdict(ng().with_step_size(x)), ok, "step size {x}");
        assert_eq!(verdict(ng().with_max_step_norm(x)), ok, "step cap {x}");
    }
    for (x, ok) in [(0.0, true), (1e300, true), (-tiny, false)]
        .into_iter()
        .chain([(f64::INFINITY, false), (f64::NAN, false)])
    {
        assert_eq!(verdict(ng().with_damping(x)), ok, "damping {x}");
        assert_eq!(verdict(ng().with_tolerance_cost(x)), ok, "ftol {x}");
        assert_eq!(verdict(ng().with_tolerance_step(x)), ok, "xtol {x}");
        assert_eq!(verdict(ng().with_tolerance_grad(x)), ok, "gtol {x}");
        let tol = Tolerances {
            cost: 0.0,
            step: 0.0,
            grad: 0.0,
        };
        for t in [
            Tolerances { cost: x, ..tol },
            Tolerances { step: x, ..tol },
            Tolerances { grad: x, ..tol },
        ] {
            assert_eq!(verdict(ng().with_tolerances(t)), ok, "{t:?}");
        }
    }
    for (t_max, ok) in [(tiny, true), (1.0, true), (0.0, false), (above_one, false)]
        .into_iter()
        .chain([(-1.0, false), (f64::NAN, false)])
    {
        let r = ng().with_line_search_damping(t_max);
        assert_eq!(verdict(r), ok, "t_max {t_max}");
    }
    for (beta, ok) in [
        (0.5, true),
        (-2.0, true),
        (f64::NAN, false),
        (f64::INFINITY, false),
    ] {
        let r = ng().with_step_rule(StepRule::HeavyBall { beta });
        assert_eq!(verdict(r), ok, "β {beta}");
    }
    for (min, max, ok) in [
        (1e-3, 1e-3, true),
        (1e-6, 1e6, true),
        (0.0, 1.0, false),
        (2.0, 1.0, false),
        (1.0, f64::INFINITY, false),
    ] {
        assert_eq!(verdict(ng().with_adaptive_damping(min, max)), ok);
        let lm = LevenbergMarquardt::new(min, max);
        assert_eq!(verdict(ng().with_levenberg_marquardt(lm)), ok);
    }
    assert!(verdict(ng().with_batch_size(1)));
    assert!(!verdict(ng().with_batch_size(0)));
    let armijo = |c| StepControl::Armijo {
        c,
        shrink: 0.5,
        max_halvings: 10,
    };
    assert!(verdict(ng().with_step_control(armijo(0.5))));
    assert!(!verdict(ng().with_step_control(armijo(1.0))));
}

/// What a builder sets is what the getters return.
#[test]
fn getters_return_the_settings_given() {
    let tol = Tolerances {
        cost: 1e-3,
        step: 2e-4,
        grad: 3e-5,
    };
    let armijo = StepControl::Armijo {
        c: 0.25,
        shrink: 0.75,
        max_halvings: 9,
    };
    let ng = NaturalGradient::new()
        .with_step_size(0.375)
        .unwrap()
        .with_damping(2.5e-3)
        .unwrap()
        .with_damping_scale(DampingScale::GramTrace)
        .with_linear_solver(LinearSolver::SampleCholesky)
        .unwrap()
        .with_step_rule(StepRule::Nesterov { beta: 0.625 })
        .unwrap()
        .with_tolerances(tol)
        .unwrap()
        .with_step_control(armijo)
        .unwrap();
    assert_eq!(ng.step_size(), 0.375);
    assert_eq!(ng.damping(), 2.5e-3);
    assert_eq!(ng.damping_scale(), DampingScale::GramTrace);
    assert_eq!(ng.linear_solver(), &LinearSolver::SampleCholesky);
    assert_eq!(ng.step_rule(), StepRule::Nesterov { beta: 0.625 });
    assert_eq!(ng.tolerances(), tol);
    assert_eq!(ng.step_control(), armijo);
    let one_by_one = NaturalGradient::new()
        .with_tolerance_cost(1e-3)
        .unwrap()
        .with_tolerance_step(2e-4)
        .unwrap()
        .with_tolerance_grad(3e-5)
        .unwrap();
    assert_eq!(one_by_one.tolerances(), tol);
}

/// A mini-batch may hold fewer samples than the data or every sample (`b = m`) but not
/// more (`b = m + 1` is refused when the run starts, naming both sizes). With `b = m` on the linear model `y = Aθ`, `u = Aθ*`
/// (`θ* = (1, 2)`), one Gauss–Newton step (α = 1, λ = 0) lands on `θ*`.
#[test]
fn mini_batch_of_every_sample_runs_and_one_more_is_refused() {
    let a = mat![[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, -1.0]];
    let run = |b: usize| {
        let problem = FitProblem::new(
            LinearModel::dense(a.clone()).unwrap(),
            SquaredError::l2(vec![1.0, 2.0, 3.0, -1.0]).unwrap(),
            WeightedL2::uniform(4).unwrap(),
        )
        .unwrap();
        let ng = NaturalGradient::new()
            .with_damping(0.0)
            .unwrap()
            .with_linear_solver(LinearSolver::Cholesky)
            .unwrap()
            .with_batch_size(b)
            .unwrap();
        Executor::new(problem, ng)
            .configure(|s| s.param(vec![0.0, 0.0]).max_iters(1))
            .run()
    };
    run(2).expect("a batch of fewer samples runs");
    let all = run(4).expect("a batch of every sample runs");
    let theta = all.state().get_param().unwrap();
    assert!(
        (theta[0] - 1.0).abs() < 1e-12 && (theta[1] - 2.0).abs() < 1e-12,
        "{theta:?}"
    );
    let text = refusal(
        run(5)
            .err()
            .expect("a batch larger than the data must be refused"),
    );
    assert!(
        text.contains("mini-batch size 5 exceeds the number of samples 4"),
        "{text}"
    );
}
