//! Sample-sharded natural gradient over MPI (feature `mpi`).
//!
//! The natural-gradient step is data-parallel over sample points. With the `m` samples
//! split into contiguous blocks, one per rank ([`block`]), the Jacobian is split by rows
//! `J = [J_0; J_1; …]`, the metric (block-diagonal over samples) by blocks, and
//!
//! ```text
//! G t = Σ_r J_rᵀ M_r J_r t,    g = Σ_r J_rᵀ ∇ℓ_r,    ℓ = Σ_r ℓ_r.
//! ```
//!
//! [`sharded_problem`] wraps this rank's model, loss and metric so that every sum over
//! samples that lands in parameter space is summed over ranks ([`Shards::sum`], in rank
//! order: deterministic) and everything else stays local. Parameter vectors (θ, the CG
//! vectors, the momentum state) are then identical on every rank, so
//! [`crate::NaturalGradient`], its momentum rules and faer's CG run unchanged: each CG
//! iteration costs one local jvp, one local metric product, one local vjp and one sum of
//! `p` values over ranks.
//!
//! What must hold (checked where possible, with an error on every rank):
//!
//! * every rank holds at least one sample, and the same `p` and outputs per sample;
//! * the metric and the loss are block-diagonal over samples (they can be restricted to a
//!   subset of samples: [`crate::WeightedL2`], [`crate::Euclidean`], [`crate::LossHessian`],
//!   [`crate::SquaredError`] with those, [`crate::CrossEntropy`]); a
//!   [`crate::DenseMetric`] or [`crate::SparseMetric`] couples samples across shards and
//!   is rejected with [`Error::Unsupported`];
//! * quadrature weights are those of the **global** problem (e.g. `1/m`, not `1/m_r`);
//! * every rank starts from the same θ₀ (checked at each forward pass);
//! * MPI is initialised with at least `Threading::Serialized`.
//!
//! The sharded model tells the solvers through [`Model::is_sharded`],
//! [`Model::n_outputs_global`] and [`Model::sum_over_shards`], so that the sums over
//! samples they form themselves are completed over ranks too: the dense Gram matrix of
//! [`crate::LinearSolver::Cholesky`] (`p²` values), the curvature `‖Jδ‖²_M` of adaptive
//! (Levenberg–Marquardt) damping (one value); [`crate::LinearSolver::Auto`] decides from
//! the global `n` and stays in parameter space. Refused with [`Error::Unsupported`] (on
//! every rank, before any communication): the sample-space solvers
//! ([`crate::LinearSolver::SampleCg`], [`crate::LinearSolver::SampleCholesky`]), whose
//! unknown lives on the samples, and mini-batches. See `docs/distributed.md`. Run the
//! argmin observers on rank 0 only.
//!
//! ```no_run
//! use argmin::core::{Executor, State};
//! use natgrad::distributed::{sharded_problem, Shards};
//! use natgrad::model::LinearModel;
//! use natgrad::{NaturalGradient, SquaredError, WeightedL2};
//! use mpi::environment::Threading;
//!
//! let (_universe, _) = mpi::initialize_with_threading(Threading::Serialized).unwrap();
//! let shards = Shards::world()?;
//! // y_i = θ₀ + θ₁ x_i on m = 100 points, this rank's block of them.
//! let m = 100;
//! let xs: Vec<f64> = shards.block(m).map(|i| i as f64 / m as f64).collect();
//! let a = faer::Mat::from_fn(xs.len(), 2, |i, j| if j == 0 { 1.0 } else { xs[i] });
//! let target: Vec<f64> = xs.iter().map(|x| 1.0 + 2.0 * x).collect();
//! let w = WeightedL2::new(vec![1.0 / m as f64; xs.len()])?; // global weights
//! let loss = SquaredError::new(target, w.clone())?;
//! let problem = sharded_problem(&shards, LinearModel::dense(a)?, loss, w)?;
//! let res = Executor::new(problem, NaturalGradient::new())
//!     .configure(|s| s.param(vec![0.0, 0.0]).max_iters(1))
//!     .run()?;
//! assert!(res.state().get_best_cost() < 1e-20);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod model;
mod shards;

pub use model::{Sharded, ShardedLinearization, ShardedLoss};
pub use mpi;
pub use shards::{block, CommStats, Shards};

use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::metric::Metric;
use crate::model::Model;
use crate::problem::FitProblem;

/// A problem whose samples are sharded over MPI ranks (see the [module docs](self)).
pub type ShardedProblem<Mo, Lo, Me> = FitProblem<Sharded<Mo>, ShardedLoss<Lo>, Me>;

/// Builds this rank's part of a sample-sharded problem from the model, loss and metric on
/// this rank's samples (collective: every rank of `shards` calls it).
///
/// Checks, and agrees on across ranks (so that either every rank gets `Ok` or every rank
/// gets an error): that this rank has at least one sample; that `p` and the outputs per
/// sample are the same everywhere; that the metric and the loss do not couple samples
/// (they can be restricted to samples: a [`crate::DenseMetric`] or
/// [`crate::SparseMetric`] cannot, and gives [`Error::Unsupported`]); and what
/// [`FitProblem::new`] checks.
pub fn sharded_problem<Mo: Model, Lo: Loss, Me: Metric>(
    shards: &Shards,
    model: Mo,
    loss: Lo,
    metric: Me,
) -> Result<ShardedProblem<Mo, Lo, Me>> {
    let (p, n, m) = (model.n_params(), model.n_outputs(), model.n_samples());
    let local = local_checks(p, n, m, &loss, &metric);
    let q = n.checked_div(m).unwrap_or(0);
    let all = shards.gather_u64(&[u64::from(local.is_ok()), p as u64, q as u64, m as u64]);
    local?;
    let rows: Vec<&[u64]> = all.chunks(4).collect();
    if let Some(r) = rows.iter().position(|s| s[0] == 0) {
        return Err(Error::InvalidSetting(format!(
            "sharded problem: rank {r} rejected its part (see that rank's error)"
        )));
    }
    for (what, k) in [("parameters p", 1), ("outputs per sample q", 2)] {
        if let Some(r) = rows.iter().position(|s| s[k] != rows[0][k]) {
            return Err(Error::InvalidSetting(format!(
                "sharded problem: {what} differ between ranks: {} on rank 0, {} on rank {r}",
                rows[0][k], rows[r][k]
            )));
        }
    }
    let samples: u64 = rows.iter().map(|s| s[3]).sum();
    let offset: u64 = rows[..shards.rank()].iter().map(|s| s[3]).sum();
    let model = Sharded::new(model, shards.clone(), samples as usize, offset as usize);
    let loss = ShardedLoss::new(loss, shards.clone());
    // FitProblem::new checks only local sizes, which `local_checks` already did, so it
    // cannot fail on one rank alone.
    FitProblem::new(model, loss, metric)
}

/// The checks of [`sharded_problem`] that need no communication.
fn local_checks<Lo: Loss, Me: Metric>(
    p: usize,
    n: usize,
    m: usize,
    loss: &Lo,
    metric: &Me,
) -> Result<()> {
    if m == 0 || !n.is_multiple_of(m) {
        return Err(Error::InvalidSetting(format!(
            "sharded problem: this rank has {m} samples and {n} outputs; every rank needs \
             at least one sample and the same number of outputs per sample"
        )));
    }
    if p == 0 {
        return Err(Error::InvalidSetting(
            "sharded problem: the model has no parameters".into(),
        ));
    }
    let q = n / m;
    let all: Vec<usize> = (0..m).collect();
    // A metric (or loss) that can be restricted to a subset of samples is block-diagonal
    // over samples; restricting to all local samples rescales by m/m = 1.
    if let Err(e) = metric.select_samples(&all, q, m) {
        return Err(Error::Unsupported(format!(
            "sharded problem: the {} metric couples samples across shards (it cannot be \
             restricted to a subset of samples: {e}); use a metric that is block-diagonal \
             over samples (WeightedL2, Euclidean, LossHessian)",
            metric.name()
        )));
    }
    if let Err(e) = loss.select_samples(&all, q, m) {
        return Err(Error::Unsupported(format!(
            "sharded problem: the loss may couple samples across shards (it cannot be \
             restricted to a subset of samples: {e}); use a per-sample loss \
             (SquaredError with a diagonal metric, CrossEntropy)"
        )));
    }
    metric.validate(n, loss)?;
    if let Some(d) = loss.dim() {
        crate::error::check_len("loss vs model outputs", n, d)?;
    }
    Ok(())
}
