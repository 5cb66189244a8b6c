//! # natgrad — matrix-free natural-gradient descent with momentum
//!
//! Fit a model `y(θ)` to a target by natural gradient: precondition the parameter
//! gradient with the Gram matrix `G = JᵀMJ` of the model's tangent space in a chosen
//! function-space metric `M`. `G` is never formed: each product `G t` is a
//! Jacobian–vector product, a metric product and a vector–Jacobian product on one cached
//! linearisation, inside faer's preconditioned conjugate gradients. Every method is an
//! [`argmin`] solver, so it drops into argmin pipelines (observers, checkpoints,
//! executors) and runs on the same [`FitProblem`] value as argmin's L-BFGS.
//!
//! ```
//! use argmin::core::{Executor, State};
//! use natgrad::{problems::toys, NaturalGradient};
//!
//! // The quadratic-manifold toy of the seed talk, metric K = diag(1, 10).
//! let toy = toys::quadratic_manifold();
//! let solver = NaturalGradient::new().with_step_size(0.5)?;
//! let res = Executor::new(toy.problem, solver)
//!     .configure(|s| s.param(toy.theta0.clone()).max_iters(100))
//!     .run()?;
//! assert!(res.state().get_best_cost() < 1e-12);
//! # Ok::<(), argmin::core::Error>(())
//! ```
//!
//! Momentum in function space (transported heavy ball, finite differences, lagged
//! gradient, Nesterov, and their parameter-space baselines), line searches,
//! Levenberg–Marquardt damping and mini-batches are options of [`NaturalGradient`]
//! ([`StepRule`], [`StepControl`]); `docs/momentum.md` says when each rule helps.
//!
//! The mathematics is in `docs/math.md` (each formula with the function that computes
//! it); the guide to writing a model and picking a metric and solver is `docs/guide.md`.

#![warn(missing_docs)]

pub mod argmin_adapter;
pub mod batch;
pub mod check;
mod counters;
#[cfg(feature = "mpi")]
pub mod distributed;
pub mod error;
pub mod gram;
mod linalg;
pub mod line_search;
pub mod linsolve;
pub mod loss;
pub mod metric;
pub mod model;
pub mod observe;
pub mod pde;
pub mod problem;
/// Demonstration problems (cargo feature `problems`, on by default).
#[cfg(feature = "problems")]
pub mod problems;
pub mod solver;
pub mod step_control;
pub mod step_rule;
pub mod stopping;

pub use error::{Error, Result};
pub use gram::GramOperator;
pub use line_search::ArgminLineSearch;
pub use linsolve::{CgSettings, LinearSolver, Preconditioner};
pub use loss::{CrossEntropy, LogitCrossEntropy, Loss, SquaredError};
pub use metric::{DenseMetric, Euclidean, LossHessian, Metric, SparseMetric, WeightedL2};
pub use model::{Linearization, Model};
pub use problem::{Evaluations, FitProblem, LinearizedProblem};
pub use solver::{NaturalGradient, NgState, Parallelism};
pub use step_control::{DampingRule, DampingScale, LevenbergMarquardt, StepControl};
pub use step_rule::StepRule;
pub use stopping::{converged_by, Tolerances};

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
