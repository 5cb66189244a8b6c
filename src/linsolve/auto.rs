//! [`LinearSolver::Auto`](super::LinearSolver::Auto): which space, direct or CG.
//!
//! **Space.** The parameter-space system is `p×p`, the sample-space one `n×n`; they give the
//! same direction (push-through, MATH.md §2) and have the same non-zero spectrum
//! (`JᵀMJ` and `M^{½}JJᵀM^{½}`), so CG needs about as many products in either, and a
//! product costs one jvp and one vjp in both. The smaller system is cheaper for everything
//! else: a direct factorisation (`k³/3` flops, `k²` memory for `k = min(n, p)`), CG's vector
//! work and the Nyström sketch (`k×r` per block). So Auto works in sample space when
//! `n < p`, the right-hand side is an output-space cotangent and the metric can apply
//! `M⁻¹`; otherwise in parameter space.
//!
//! **Direct or CG.** With `k = min(n, p)`, the direct path forms `J` (`k` jvps or vjps,
//! `n·p` memory), the `k×k` matrix by one GEMM (`n·p·k` flops) and factors it (`k³/3`).
//! CG costs `iters × (jvp + vjp)` ≈ `iters × 4 n p` flops for a dense Jacobian and keeps
//! only vectors. The GEMM alone equals about `k/4` CG iterations; on ill-conditioned Gram
//! matrices (the natural-gradient case) CG needs far more than that to reach `1e-8`, so the
//! direct path wins whenever it fits in memory and `k³/3` stays small. Auto therefore takes
//! the direct path when `k ≤ max_direct_dim` (default 2048: a `k×k` factor of 32 MiB and a
//! factorisation of ~3 Gflop, about a second on one core) and `n·p ≤ max_dense_entries`
//! (default `2²⁵` ≈ 33.5 M entries, a 256 MiB Jacobian), and CG otherwise.

use super::CgSettings;

/// The four ways to solve for the direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// CG on `JᵀMJ + λI` (parameter space).
    ParamCg,
    /// Cholesky of `JᵀMJ + λI` (parameter space).
    ParamCholesky,
    /// CG on `JJᵀ + λM⁻¹` (sample space).
    SampleCg,
    /// Cholesky of `JJᵀ + λM⁻¹` (sample space).
    SampleCholesky,
}

impl Path {
    /// The name reported by an automatic choice, `"auto:<space>-<method>"`.
    pub fn auto_name(self) -> &'static str {
        match self {
            Path::ParamCg => "auto:param-cg",
            Path::ParamCholesky => "auto:param-cholesky",
            Path::SampleCg => "auto:sample-cg",
            Path::SampleCholesky => "auto:sample-cholesky",
        }
    }
}

/// Settings of [`LinearSolver::Auto`](super::LinearSolver::Auto).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AutoSettings {
    /// CG settings when CG is chosen (in either space).
    pub cg: CgSettings,
    /// Largest system size `min(n, p)` solved directly (default 2048).
    pub max_direct_dim: usize,
    /// Largest dense Jacobian `n·p` the direct path may form (default `2²⁵`).
    pub max_dense_entries: usize,
}

impl Default for AutoSettings {
    fn default() -> Self {
        Self {
            cg: CgSettings::default(),
            max_direct_dim: 2048,
            max_dense_entries: 1 << 25,
        }
    }
}

impl AutoSettings {
    /// The path for `n` outputs and `p` parameters; `sample_ok` says whether sample space
    /// is possible (an output-space right-hand side and a metric with an inverse).
    pub fn choose(&self, n: usize, p: usize, sample_ok: bool) -> Path {
        let sample = sample_ok && n < p;
        let k = if sample { n } else { p };
        let direct = k <= self.max_direct_dim && n.saturating_mul(p) <= self.max_dense_entries;
        match (sample, direct) {
            (false, false) => Path::ParamCg,
            (false, true) => Path::ParamCholesky,
            (true, false) => Path::SampleCg,
            (true, true) => Path::SampleCholesky,
        }
    }
}
