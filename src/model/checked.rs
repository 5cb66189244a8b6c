//! The boundary between user code and the solver: every value a [`Linearization`] returns
//! is checked (length, finiteness) as it comes out, and the first fault is kept, naming
//! the trait method and the quantity.
//!
//! A product cannot return an error (`jvp`, `vjp`, ... write into a buffer, and faer's CG
//! calls them through `LinOp::apply`), so a fault is recorded rather than returned: the
//! value passes on (a wrong-shape Jacobian is replaced by `None`, so that nothing
//! downstream indexes out of bounds), and whoever drives the products — the solver, after
//! each solve — asks [`CheckedLinearization::fault`] first. That is how a NaN from a
//! user's jvp is reported as such, and not as the CG breakdown or Cholesky failure it
//! causes downstream.

use super::Linearization;
use crate::error::Error;
use faer::{Mat, MatMut, MatRef};

/// A [`Linearization`] whose every returned value is checked (length, finiteness), the
/// first fault kept for [`CheckedLinearization::fault`]. [`crate::FitProblem::linearize`] wraps the model's linearisation in one.
#[derive(Debug)]
pub struct CheckedLinearization<L> {
    inner: L,
    n: usize,
    p: usize,
    fault: Option<Error>,
}

/// `true` when every entry is finite. A sum of `v·0` (NaN exactly when `v` is NaN or
/// infinite) has no early exit, so it vectorises: the check costs one read of `v`.
pub(crate) fn all_finite(v: &[f64]) -> bool {
    v.iter().fold(0.0, |acc, &x| acc + x * 0.0) == 0.0
}

fn first_non_finite(v: impl IntoIterator<Item = f64>) -> Option<(usize, f64)> {
    v.into_iter().enumerate().find(|(_, x)| !x.is_finite())
}

fn mat_finite(m: MatRef<'_, f64>) -> Option<(usize, f64)> {
    first_non_finite((0..m.ncols()).flat_map(|j| m.col(j).iter().copied().collect::<Vec<_>>()))
}

impl<L: Linearization> CheckedLinearization<L> {
    /// Wraps `inner`, a linearisation of a model with `n` outputs and `p` parameters
    /// (the caller has checked that `inner` reports these sizes).
    pub(crate) fn new(inner: L, n: usize, p: usize) -> Self {
        Self {
            inner,
            n,
            p,
            fault: None,
        }
    }

    /// The first value user code returned wrongly since the linearisation was made:
    /// [`Error::NonFinite`] (a non-finite product for a finite input) or
    /// [`Error::DimensionMismatch`] (a dense Jacobian of the wrong shape), with `what`
    /// naming the trait method and the quantity. `None` when all were good.
    pub fn fault(&self) -> Option<&Error> {
        self.fault.as_ref()
    }

    /// The model's own linearisation, unchecked.
    pub fn inner_mut(&mut self) -> &mut L {
        &mut self.inner
    }

    fn record(&mut self, e: Error) {
        if self.fault.is_none() {
            self.fault = Some(e);
        }
    }

    /// Records a non-finite product `out` of a finite input (a non-finite input is the
    /// caller's, not the model's, fault).
    fn check_product(&mut self, what: &str, input_finite: impl FnOnce() -> bool, out: &[f64]) {
        if self.fault.is_none() && !all_finite(out) && input_finite() {
            let (index, value) = first_non_finite(out.iter().copied()).unwrap_or((0, f64::NAN));
            self.record(Error::NonFinite {
                what: what.to_string(),
                index,
                value,
            });
        }
    }

    fn check_block(&mut self, what: &str, input: MatRef<'_, f64>, out: MatRef<'_, f64>) {
        if self.fault.is_some() {
            return;
        }
        if let Some((index, value)) = mat_finite(out)
            && mat_finite(input).is_none()
        {
            self.record(Error::NonFinite {
                what: format!(
                    "{what} (column-major index into the {} × {} block)",
                    out.nrows(),
                    out.ncols()
                ),
                index,
                value,
            });
        }
    }
}

impl<L: Linearization> Linearization for CheckedLinearization<L> {
    fn n_params(&self) -> usize {
        self.p
    }

    fn outputs(&self) -> &[f64] {
        self.inner.outputs()
    }

    fn jvp(&mut self, t: &[f64], out: &mut [f64]) {
        self.inner.jvp(t, out);
        self.check_product(
            "Linearization::jvp returned J t with a non-finite entry for a finite t",
            || all_finite(t),
            out,
        );
    }

    fn vjp(&mut self, s: &[f64], out: &mut [f64]) {
        self.inner.vjp(s, out);
        self.check_product(
            "Linearization::vjp returned Jᵀ s with a non-finite entry for a finite s",
            || all_finite(s),
            out,
        );
    }

    /// On a non-finite result for finite `t` and `w` the product is redone as checked jvp →
    /// `w ⊙` → checked vjp, so that the fault names the method that produced it; the
    /// fused product's own fault is recorded only when both of those are finite.
    fn gram_product(&mut self, w: &[f64], t: &[f64], scratch: &mut [f64], out: &mut [f64]) {
        self.inner.gram_product(w, t, scratch, out);
        if self.fault.is_some() || all_finite(out) || !all_finite(t) || !all_finite(w) {
            return;
        }
        let (index, value) = first_non_finite(out.iter().copied()).unwrap_or((0, f64::NAN));
        self.jvp(t, scratch);
        scratch.iter_mut().zip(w).for_each(|(s, w)| *s *= w);
        self.vjp(scratch, out);
        if self.fault.is_none() {
            self.record(Error::NonFinite {
                what: "Linearization::gram_product returned Jᵀ W J t with a non-finite entry \
                       for a finite t and W (jvp and vjp alone are finite)"
                    .to_string(),
                index,
                value,
            });
        }
    }

    /// Like [`gram_product`](Self::gram_product): a non-finite `J Jᵀ s` for a finite `s` is
    /// redone as checked vjp → jvp, and the fused product's own fault is recorded only when
    /// both of those are finite.
    fn sample_gram_product(&mut self, s: &[f64], scratch: &mut [f64], out: &mut [f64]) {
        self.inner.sample_gram_product(s, scratch, out);
        if self.fault.is_some() || all_finite(out) || !all_finite(s) {
            return;
        }
        let (index, value) = first_non_finite(out.iter().copied()).unwrap_or((0, f64::NAN));
        self.vjp(s, scratch);
        self.jvp(scratch, out);
        if self.fault.is_none() {
            self.record(Error::NonFinite {
                what: "Linearization::sample_gram_product returned J Jᵀ s with a non-finite \
                       entry for a finite s (vjp and jvp alone are finite)"
                    .to_string(),
                index,
                value,
            });
        }
    }

    /// Like [`gram_product`](Self::gram_product): a non-finite block for finite `T` and `w`
    /// is redone as checked `jvp_block` → `w ⊙` → checked `vjp_block`, and the fused block
    /// product's own fault is recorded only when both of those are finite.
    fn gram_product_block(
        &mut self,
        w: &[f64],
        t: MatRef<'_, f64>,
        mut scratch: MatMut<'_, f64>,
        mut out: MatMut<'_, f64>,
    ) {
        self.inner
            .gram_product_block(w, t, scratch.rb_mut(), out.rb_mut());
        if self.fault.is_some() || !all_finite(w) || mat_finite(t).is_some() {
            return;
        }
        let Some((index, value)) = mat_finite(out.rb()) else {
            return;
        };
        super::unfused_gram_block(self, w, t, scratch, out);
        if self.fault.is_none() {
            self.record(Error::NonFinite {
                what: "Linearization::gram_product_block returned Jᵀ W J T with a non-finite \
                       entry for a finite T and W (jvp_block and vjp_block alone are finite)"
                    .to_string(),
                index,
                value,
            });
        }
    }

    fn jvp_block(&mut self, t: MatRef<'_, f64>, mut out: MatMut<'_, f64>) {
        self.inner.jvp_block(t, out.rb_mut());
        self.check_block(
            "Linearization::jvp_block returned J T with a non-finite entry for a finite T",
            t,
            out.rb(),
        );
    }

    fn vjp_block(&mut self, s: MatRef<'_, f64>, mut out: MatMut<'_, f64>) {
        self.inner.vjp_block(s, out.rb_mut());
        self.check_block(
            "Linearization::vjp_block returned Jᵀ S with a non-finite entry for a finite S",
            s,
            out.rb(),
        );
    }

    fn dense_jacobian(&mut self) -> Option<Mat<f64>> {
        let j = self.inner.dense_jacobian()?;
        if (j.nrows(), j.ncols()) != (self.n, self.p) {
            let (expected, found) = if j.nrows() != self.n {
                (self.n, j.nrows())
            } else {
                (self.p, j.ncols())
            };
            let what = if j.nrows() != self.n {
                "Linearization::dense_jacobian: rows of J vs Model::n_outputs"
            } else {
                "Linearization::dense_jacobian: columns of J vs Model::n_params"
            };
            self.record(Error::dims(what, expected, found));
            return None;
        }
        if let Some((index, value)) = mat_finite(j.as_ref()) {
            self.record(Error::NonFinite {
                what: format!(
                    "Linearization::dense_jacobian returned J with a non-finite entry (row {}, \
                     column {})",
                    index % self.n,
                    index / self.n
                ),
                index,
                value,
            });
        }
        Some(j)
    }

    fn kfac_factors(&mut self, metric_diagonal: &[f64]) -> Option<Vec<super::KfacFactors>> {
        let factors = self.inner.kfac_factors(metric_diagonal)?;
        for (l, f) in factors.iter().enumerate() {
            if f.range.end > self.p {
                self.record(Error::dims(
                    format!(
                        "Linearization::kfac_factors: end of layer {l}'s parameter range vs \
                         Model::n_params"
                    ),
                    self.p,
                    f.range.end,
                ));
                return None;
            }
            for (name, m) in [("A", f.a.as_ref()), ("B", f.b.as_ref())] {
                if let Some((index, value)) = mat_finite(m) {
                    self.record(Error::NonFinite {
                        what: format!(
                            "Linearization::kfac_factors returned layer {l}'s factor {name} \
                             with a non-finite entry"
                        ),
                        index,
                        value,
                    });
                }
            }
        }
        Some(factors)
    }

    fn gram_diagonal(&mut self, metric_diagonal: &[f64], out: &mut [f64]) -> bool {
        if !self.inner.gram_diagonal(metric_diagonal, out) {
            return false;
        }
        self.check_product(
            "Linearization::gram_diagonal returned diag(JᵀWJ) with a non-finite entry for a \
             finite W",
            || all_finite(metric_diagonal),
            out,
        );
        all_finite(out)
    }
}

use faer::prelude::{Reborrow, ReborrowMut};
