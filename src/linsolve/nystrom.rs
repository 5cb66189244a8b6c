//! Randomized Nyström preconditioner (Frangella, Tropp & Udell, "Randomized Nyström
//! preconditioning", SIAM J. Matrix Anal. Appl. 2023, Algorithms 2.1 and 5.1).
//!
//! **Sketch.** For a symmetric positive semi-definite operator `A₀` of size `N` (the Gram
//! matrix `G = JᵀMJ`, or the kernel `JJᵀ` in sample space) and a rank `r`:
//!
//! 1. `Ω ∈ R^{N×r}` Gaussian (seeded), orthonormalised by a thin QR (faer): `Q`;
//! 2. `Y = A₀ Q` — `r` Gram products, taken as one block (`jvp_block`, `vjp_block`);
//! 3. shift `ν = ε · √N · ‖Y‖_F` (ε the machine epsilon), `Y_ν = Y + ν Q`;
//! 4. Cholesky `QᵀY_ν = L Lᵀ` (faer), `B = Y_ν L⁻ᵀ` (triangular solve);
//! 5. thin SVD `B = U Σ Vᵀ` (faer), `Λ̂ = max(Σ² − ν I, 0)`, and every `λ̂_i ≤ N ε λ̂₁`
//!    set to 0: below that it is rounding noise of the sketch, not an eigenvalue (a
//!    rank-3 Gram sketched at rank 5 gives `(3.26, 1.05, 0.18, 1.3e-17, 0)`).
//!
//! Then `Â = U Λ̂ Uᵀ` is the Nyström approximation `A₀ Q (Qᵀ A₀ Q)⁺ Qᵀ A₀` of `A₀`,
//! computed stably (`U` has orthonormal columns, `λ̂₁ ≥ … ≥ λ̂_r ≥ 0`).
//!
//! **Preconditioner.** For the system `(A₀ + μ I) x = b` (`μ = λ` in parameter space):
//!
//! ```text
//!   P    = U (Λ̂ + μI) Uᵀ / (λ̂_r + μ) + (I − UUᵀ)
//!   P⁻¹  = (λ̂_r + μ) U (Λ̂ + μI)⁻¹ Uᵀ + (I − UUᵀ)
//!        = I + U diag(c) Uᵀ,    c_i = (λ̂_r + μ) / (λ̂_i + μ) − 1  ∈ (−1, 0]
//! ```
//!
//! (`P⁻¹` inverts `P` because `UᵀU = I`: both act as the diagonal `(λ̂_i + μ)/(λ̂_r + μ)`
//! on `range U` and as the identity on its complement.) `P⁻¹` is applied with two thin
//! GEMMs (`Uᵀv`, then `U(c ⊙ ·)`), `O(N r)` flops. On `range U` the preconditioned
//! operator has eigenvalues near `λ̂_r + μ`; the rest of the spectrum of `A₀ + μI` is
//! unchanged, so PCG converges as if the `r` largest eigenvalues had been removed.
//!
//! When `λ̂_r + μ = 0` (no damping and a rank-deficient `A₀`), the smallest positive
//! `λ̂_i + μ` replaces it and the directions with `λ̂_i + μ = 0` get `c_i = 0`, which keeps
//! `P⁻¹` symmetric positive definite.
//!
//! **Sample space with a non-scalar metric.** There the operator is `JJᵀ + λM⁻¹`, which is
//! not of the form `A₀ + μI`; the sketch is then taken of the whole operator (`A₀ = JJᵀ +
//! λM⁻¹`, `μ = 0`). For `M = wI` (Euclidean, uniform weights) `A₀ = JJᵀ`, `μ = λ/w`.

use super::SolveFailure;
use crate::gram::{GramOperator, Space};
use crate::metric::Metric;
use crate::model::Linearization;
use faer::dyn_stack::{MemStack, StackReq};
use faer::linalg::matmul::matmul;
use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::matrix_free::{LinOp, Precond};
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;

/// A rank-`r` Nyström approximation `Â = U Λ̂ Uᵀ` of a Gram operator, kept in the
/// [`SolveCache`](super::SolveCache) between steps and rebuilt every `refresh_every`
/// solves.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NystromSketch {
    space: Space,
    dim: usize,
    /// `U`, `dim × rank`, column-major.
    basis: Vec<f64>,
    /// `λ̂₁ ≥ … ≥ λ̂_r ≥ 0`.
    eigenvalues: Vec<f64>,
    /// `μ = λ · shift_per_damping` (1 in parameter space, `1/w` in sample space with
    /// `M = wI`, 0 when the sketch already contains the damping).
    shift_per_damping: f64,
    /// Value of `SolveCache::solves` when the sketch was taken.
    built_at: u64,
    /// Gram products the sketch cost (`r`).
    products: u64,
}

impl NystromSketch {
    /// Sketches `A₀` (the operator `op`, whose damping must be the part of the operator
    /// that is *not* the `μ I` shift) with `rank` Gram products from a Gaussian test matrix
    /// drawn from `seed`. `rank` is clamped to the operator's dimension; `μ = λ ·
    /// shift_per_damping` for damping `λ`.
    /// Fails (with the reason) on a non-finite sketch, a metric without inverse, or a
    /// failed factorisation.
    pub fn build<L: Linearization, Me: Metric>(
        op: &GramOperator<'_, L, Me>,
        rank: usize,
        seed: u64,
        shift_per_damping: f64,
        par: Par,
    ) -> Result<Self, SolveFailure> {
        let dim = op.dim();
        let r = rank.min(dim).max(1);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let omega = Mat::<f64>::from_fn(dim, r, |_, _| StandardNormal.sample(&mut rng));
        let q = omega.qr().compute_thin_Q();
        let mut y = Mat::<f64>::zeros(dim, r);
        let before = op.products();
        let mut mem = faer::dyn_stack::MemBuffer::new(op.apply_scratch(r, par));
        op.apply(y.as_mut(), q.as_ref(), par, MemStack::new(&mut mem));
        let products = op.products() - before;
        let fail = |reason: String| SolveFailure::Nystrom { reason };
        if op.metric_failed() {
            return Err(fail("the metric cannot apply M⁻¹".into()));
        }
        if let Some(bad) = y
            .col_iter()
            .flat_map(|c| c.iter())
            .position(|v| !v.is_finite())
        {
            return Err(fail(format!("non-finite sketch entry at index {bad}")));
        }
        let nu = f64::EPSILON * (dim as f64).sqrt() * y.norm_l2();
        let y_nu = &y + &q * faer::Scale(nu);
        let mut c = Mat::<f64>::zeros(r, r);
        matmul(
            c.as_mut(),
            Accum::Replace,
            q.transpose(),
            y_nu.as_ref(),
            1.0,
            par,
        );
        let c = Mat::from_fn(r, r, |i, j| 0.5 * (c[(i, j)] + c[(j, i)]));
        let llt = c.llt(Side::Lower).map_err(|e| {
            fail(format!(
                "Cholesky of QᵀY_ν failed ({e:?}); the Gram operator is not positive \
                 semi-definite or the rank is too large for it"
            ))
        })?;
        // B = Y_ν L⁻ᵀ, i.e. Bᵀ = L⁻¹ Y_νᵀ.
        let mut bt = y_nu.transpose().to_owned();
        solve_lower_triangular_in_place(llt.L(), bt.as_mut(), par);
        let svd = bt
            .transpose()
            .thin_svd()
            .map_err(|e| fail(format!("thin SVD of the sketch failed ({e:?})")))?;
        let mut eigenvalues: Vec<f64> = svd
            .S()
            .column_vector()
            .iter()
            .map(|s| (s * s - nu).max(0.0))
            .collect();
        // Rounding noise relative to the largest eigenvalue (module docs, step 5).
        let noise = dim as f64 * f64::EPSILON * eigenvalues.iter().fold(0.0_f64, |a, &b| a.max(b));
        eigenvalues
            .iter_mut()
            .filter(|l| **l <= noise)
            .for_each(|l| *l = 0.0);
        let u = svd.U();
        let basis: Vec<f64> = (0..r)
            .flat_map(|j| u.col(j).iter().copied().collect::<Vec<_>>())
            .collect();
        Ok(Self {
            space: op.space(),
            dim,
            basis,
            eigenvalues,
            shift_per_damping,
            built_at: 0,
            products,
        })
    }

    /// The space of the sketched operator.
    pub fn space(&self) -> Space {
        self.space
    }

    /// The dimension `N` of the sketched operator.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The rank `r`.
    pub fn rank(&self) -> usize {
        self.eigenvalues.len()
    }

    /// `U`, the `N × r` orthonormal eigenvectors of `Â`.
    pub fn basis(&self) -> MatRef<'_, f64> {
        MatRef::from_column_major_slice(&self.basis, self.dim, self.rank())
    }

    /// `λ̂₁ ≥ … ≥ λ̂_r ≥ 0`, the eigenvalues of `Â`.
    pub fn eigenvalues(&self) -> &[f64] {
        &self.eigenvalues
    }

    /// The shift `μ` of the system `(A₀ + μI)` for damping `λ`.
    pub fn shift(&self, damping: f64) -> f64 {
        damping * self.shift_per_damping
    }

    /// Value of the cache's solve counter when the sketch was taken.
    pub fn built_at(&self) -> u64 {
        self.built_at
    }

    /// The same sketch, recorded as taken at solve `solves` (the refresh logic of the
    /// direction solver's cache).
    pub(crate) fn with_built_at(mut self, solves: u64) -> Self {
        self.built_at = solves;
        self
    }

    /// Gram products the sketch cost.
    pub fn products(&self) -> u64 {
        self.products
    }

    /// The coefficients `c_i` of `P⁻¹ = I + U diag(c) Uᵀ` for the shift `μ`.
    pub fn coefficients(&self, mu: f64) -> Vec<f64> {
        let last = self.eigenvalues.last().copied().unwrap_or(0.0) + mu;
        let floor = if last > 0.0 {
            last
        } else {
            self.eigenvalues
                .iter()
                .map(|l| l + mu)
                .filter(|&v| v > 0.0)
                .fold(f64::INFINITY, f64::min)
        };
        self.eigenvalues
            .iter()
            .map(|l| {
                let v = l + mu;
                if v > 0.0 && floor.is_finite() {
                    floor / v - 1.0
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// The preconditioner `P⁻¹` for damping `λ`, as a faer [`Precond`].
    pub fn preconditioner(&self, damping: f64) -> NystromPrecond<'_> {
        NystromPrecond {
            u: self.basis(),
            c: self.coefficients(self.shift(damping)),
        }
    }
}

/// `v ↦ P⁻¹ v = v + U diag(c) Uᵀ v`, the Nyström preconditioner (see the module docs).
#[derive(Debug)]
pub struct NystromPrecond<'a> {
    u: MatRef<'a, f64>,
    c: Vec<f64>,
}

impl NystromPrecond<'_> {
    /// `out = P⁻¹ v` for one vector (allocates `r` scratch; for tests and one-off use).
    pub fn apply_vec(&self, v: &[f64], out: &mut [f64]) {
        let mut mem = faer::dyn_stack::MemBuffer::new(self.apply_scratch(1, Par::Seq));
        self.apply(
            faer::ColMut::from_slice_mut(out).as_mat_mut(),
            faer::ColRef::from_slice(v).as_mat(),
            Par::Seq,
            MemStack::new(&mut mem),
        );
    }
}

impl LinOp<f64> for NystromPrecond<'_> {
    fn apply_scratch(&self, rhs_ncols: usize, _par: Par) -> StackReq {
        faer::linalg::temp_mat_scratch::<f64>(self.u.ncols(), rhs_ncols)
    }
    fn nrows(&self) -> usize {
        self.u.nrows()
    }
    fn ncols(&self) -> usize {
        self.u.nrows()
    }
    fn apply(&self, mut out: MatMut<'_, f64>, rhs: MatRef<'_, f64>, par: Par, st: &mut MemStack) {
        let k = rhs.ncols();
        let (mut w, _) = faer::linalg::temp_mat_zeroed::<f64, _, _>(self.u.ncols(), k, st);
        let mut w = w.as_mat_mut();
        matmul(
            w.rb_mut(),
            Accum::Replace,
            self.u.transpose(),
            rhs,
            1.0,
            par,
        );
        for j in 0..k {
            for (i, c) in self.c.iter().enumerate() {
                w[(i, j)] *= c;
            }
        }
        out.copy_from(rhs);
        matmul(out.rb_mut(), Accum::Add, self.u, w.rb(), 1.0, par);
    }
    fn conj_apply(&self, out: MatMut<'_, f64>, rhs: MatRef<'_, f64>, par: Par, st: &mut MemStack) {
        self.apply(out, rhs, par, st)
    }
}

impl Precond<f64> for NystromPrecond<'_> {}

use faer::mat::AsMatMut;
use faer::prelude::{Reborrow, ReborrowMut};
