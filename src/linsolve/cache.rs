//! What a direction solver keeps between solves ([`SolveCache`]).

use super::{KfacState, NystromSketch, PrecondChoice};

/// Which of a step's systems a solve is: each is warm-started from its own last
/// solution (with `CgSettings::warm_start`, the default). All of them share the rest of
/// the [`SolveCache`] (the solve count, the sketch, the factors, the automatic choices).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmStart {
    /// The direction `(G_k + λI) δ = J_kᵀ r` of the step rule (docs/math.md §3).
    Direction = 0,
    /// Nesterov's extrapolation `(G_k + λI) s = β J_kᵀ h` (docs/math.md §3).
    Extrapolation = 1,
}

/// What a [`DirectionSolver`](super::DirectionSolver) keeps from one solve to the next:
/// the warm starts (the last solution of each system, [`WarmStart`]), the Nyström sketch
/// and the K-FAC factors rebuilt only every few solves, and the measurements of the
/// automatic choices. Part of the optimiser, so that it is checkpointed with it.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SolveCache {
    /// Number of direction solves made with this cache.
    pub(crate) solves: u64,
    /// The Nyström sketch of [`Preconditioner::Nystrom`](super::Preconditioner::Nystrom), if one was taken.
    pub(crate) nystrom: Option<NystromSketch>,
    /// The last sample-space solution `s` (the warm start of [`LinearSolver::SampleCg`](super::LinearSolver::SampleCg)).
    pub(crate) sample_guess: Option<Vec<f64>>,
    /// The K-FAC factors of [`Preconditioner::Kfac`](super::Preconditioner::Kfac) / [`LinearSolver::Kfac`](super::LinearSolver::Kfac), if taken.
    pub(crate) kfac: Option<KfacState>,
    /// CG iterations of [`LinearSolver::Auto`](super::LinearSolver::Auto)'s last CG solve (or its budget + 1 when CG
    /// missed it): the measurement its cost model uses for the next pick ([`auto`](super::auto)).
    pub(crate) auto_cg_iters: Option<u64>,
    /// The choice of [`Preconditioner::Auto`](super::Preconditioner::Auto) and the solve at which it was measured.
    pub precond_choice: Option<PrecondChoice>,
    /// The last solution of each system ([`WarmStart`]), the next solve's initial guess.
    pub(crate) warm: [Option<Vec<f64>>; 2],
}

impl SolveCache {
    /// Number of direction solves made with this cache.
    pub fn solves(&self) -> u64 {
        self.solves
    }

    /// The Nyström sketch of [`Preconditioner::Nystrom`](super::Preconditioner::Nystrom), if one was taken.
    pub fn nystrom(&self) -> Option<&NystromSketch> {
        self.nystrom.as_ref()
    }

    /// The K-FAC factors of [`Preconditioner::Kfac`](super::Preconditioner::Kfac) / [`LinearSolver::Kfac`](super::LinearSolver::Kfac), if taken.
    pub fn kfac(&self) -> Option<&KfacState> {
        self.kfac.as_ref()
    }

    /// CG iterations of [`LinearSolver::Auto`](super::LinearSolver::Auto)'s last CG solve (or its budget + 1 when CG
    /// missed it), the measurement its cost model uses for the next pick.
    pub fn auto_cg_iters(&self) -> Option<u64> {
        self.auto_cg_iters
    }

    /// The last solution of the system `which`, the initial guess of its next solve.
    pub fn warm_start(&self, which: WarmStart) -> Option<&[f64]> {
        self.warm[which as usize].as_deref()
    }
}
