//! The evaluation counts of a problem (forward passes, gradients, jvps, vjps): the
//! counters the problem, its linearisations and their Gram operators bump, in their own
//! module so that the operator (`gram`) and the problem (`problem`) both use them without
//! importing each other.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counts of model evaluations made through a [`FitProblem`](crate::FitProblem).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evaluations {
    /// Forward passes (plain or linearising); each evaluates the loss, so this is argmin's
    /// `cost_count`.
    pub forward: u64,
    /// Parameter gradients `g = Jᵀ∇_yℓ` formed (each one vjp, also counted in `vjp`);
    /// argmin's `gradient_count`.
    pub gradient: u64,
    /// Jacobian–vector products `J t`.
    pub jvp: u64,
    /// Vector–Jacobian products `Jᵀ s`.
    pub vjp: u64,
}

impl std::ops::Sub for Evaluations {
    type Output = Evaluations;
    fn sub(self, rhs: Self) -> Self {
        Evaluations {
            forward: self.forward.saturating_sub(rhs.forward),
            gradient: self.gradient.saturating_sub(rhs.gradient),
            jvp: self.jvp.saturating_sub(rhs.jvp),
            vjp: self.vjp.saturating_sub(rhs.vjp),
        }
    }
}

impl std::ops::Add for Evaluations {
    type Output = Evaluations;
    fn add(self, rhs: Self) -> Self {
        Evaluations {
            forward: self.forward + rhs.forward,
            gradient: self.gradient + rhs.gradient,
            jvp: self.jvp + rhs.jvp,
            vjp: self.vjp + rhs.vjp,
        }
    }
}

/// The live counters behind [`Evaluations`], shared by a problem, its linearisations and
/// their Gram operators (atomic: faer's `LinOp::apply` takes `&self`).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    forward: AtomicU64,
    gradient: AtomicU64,
    jvp: AtomicU64,
    vjp: AtomicU64,
}

impl Counters {
    /// The counts so far.
    pub(crate) fn snapshot(&self) -> Evaluations {
        Evaluations {
            forward: self.forward.load(Relaxed),
            gradient: self.gradient.load(Relaxed),
            jvp: self.jvp.load(Relaxed),
            vjp: self.vjp.load(Relaxed),
        }
    }

    /// One forward pass.
    pub(crate) fn forward(&self) {
        self.forward.fetch_add(1, Relaxed);
    }

    /// One parameter gradient `Jᵀ∇_yℓ` (one vjp, also counted as such).
    pub(crate) fn gradient(&self) {
        self.gradient.fetch_add(1, Relaxed);
        self.vjp.fetch_add(1, Relaxed);
    }

    /// `jvp` Jacobian–vector and `vjp` vector–Jacobian products.
    pub(crate) fn products(&self, jvp: u64, vjp: u64) {
        self.jvp.fetch_add(jvp, Relaxed);
        self.vjp.fetch_add(vjp, Relaxed);
    }
}
