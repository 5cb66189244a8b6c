//! One hidden layer of the Taylor pass: the activation's action on every channel, its
//! tangent (θ-jvp) and its cotangent (θ-vjp).
//!
//! With `a_c` the pre-activation of channel `c` (`a₀` the value, `a_k` first partials,
//! `a_s` second-order channels), `sₙ = σ⁽ⁿ⁾(a₀)` and `q_s = Σ c·a_i a_j` the quadratic form
//! of channel `s` (docs/pinn.md, *How the Jacobian is computed*):
//!
//! ```text
//! h₀ = σ(a₀)      h_k = s₁ a_k      h_s = s₂ q_s + s₁ a_s
//! ```

use super::channels::ChannelSet;
use super::smooth::TaylorActivation;
use faer::prelude::{Reborrow, ReborrowMut};
use faer::{Mat, MatMut, MatRef};

/// Column `j` of a faer matrix as a slice (crate matrices are column-major).
fn col(m: &Mat<f64>, j: usize) -> &[f64] {
    m.col_as_slice(j)
}

/// Column `j` of a column-major view as a slice.
fn col_ref(m: MatRef<'_, f64>, j: usize) -> &[f64] {
    m.col(j)
        .try_as_col_major()
        .expect("natgrad: column-major Taylor block")
        .as_slice()
}

/// Column `j` of a column-major view as a mutable slice.
pub(super) fn col_mut(m: MatMut<'_, f64>, j: usize) -> &mut [f64] {
    m.col_mut(j)
        .try_as_col_major_mut()
        .expect("natgrad: column-major Taylor block")
        .as_slice_mut()
}

/// A hidden layer's cache: the pre-activations of every channel, `σ … σ'''` at `a₀` and
/// the quadratic forms of the second-order channels.
#[derive(Debug, Clone)]
pub(super) struct HiddenLayer {
    /// Pre-activations, `n × (C·m)`, channel-major (`col = c·m + i`).
    a: Mat<f64>,
    /// `σ(a₀)`, `σ'(a₀)`, `σ''(a₀)`, `σ'''(a₀)`, each `n × m`.
    s: [Mat<f64>; 4],
    /// `q_s` for each second-order channel, `n × m`.
    q: Vec<Mat<f64>>,
    /// The quadratic form of each second-order channel (`ChannelSet::quadratic_form`).
    forms: Vec<Vec<(usize, usize, f64)>>,
    /// Number of first-order channels `F`.
    f: usize,
    m: usize,
}

impl HiddenLayer {
    pub(super) fn new(a: Mat<f64>, act: &dyn TaylorActivation, set: &ChannelSet, m: usize) -> Self {
        let n = a.nrows();
        let mut s: [Mat<f64>; 4] = std::array::from_fn(|_| Mat::zeros(n, m));
        let forms: Vec<_> = (0..set.second().len())
            .map(|k| set.quadratic_form(k))
            .collect();
        let mut q: Vec<Mat<f64>> = forms.iter().map(|_| Mat::zeros(n, m)).collect();
        for i in 0..m {
            let [s0, s1, s2, s3] = &mut s;
            act.derivatives_slice(
                col(&a, i),
                [
                    s0.col_as_slice_mut(i),
                    s1.col_as_slice_mut(i),
                    s2.col_as_slice_mut(i),
                    s3.col_as_slice_mut(i),
                ],
            );
            for (form, qs) in forms.iter().zip(&mut q) {
                let qi = qs.col_as_slice_mut(i);
                for &(ci, cj, c) in form {
                    let (ai, aj) = (col(&a, ci * m + i), col(&a, cj * m + i));
                    for u in 0..n {
                        qi[u] += c * ai[u] * aj[u];
                    }
                }
            }
        }
        Self {
            a,
            s,
            q,
            forms,
            f: set.first().len(),
            m,
        }
    }

    fn second_index(&self, ch: usize) -> Option<usize> {
        ch.checked_sub(1 + self.f)
    }

    /// The layer's outputs on every channel, `n × (C·m)`.
    pub(super) fn outputs(&self) -> Mat<f64> {
        let (n, cm, m) = (self.a.nrows(), self.a.ncols(), self.m);
        let [s0, s1, s2, _] = &self.s;
        let mut h = Mat::zeros(n, cm);
        for j in 0..cm {
            let (ch, i) = (j / m, j % m);
            let (out, a) = (h.col_as_slice_mut(j), col(&self.a, j));
            if ch == 0 {
                out.copy_from_slice(col(s0, i));
                continue;
            }
            let d1 = col(s1, i);
            for u in 0..n {
                out[u] = d1[u] * a[u];
            }
            if let Some(k) = self.second_index(ch) {
                let (d2, qk) = (col(s2, i), col(&self.q[k], i));
                for u in 0..n {
                    out[u] += d2[u] * qk[u];
                }
            }
        }
        h
    }

    /// Copies the `C` channel columns of point `i` of `x` (`n × C·mc`, channel-major with
    /// `mc` points) into `buf` (`C·n`).
    fn gather(x: MatRef<'_, f64>, mc: usize, i: usize, buf: &mut [f64]) {
        let n = x.nrows();
        for (c, b) in buf.chunks_exact_mut(n).enumerate() {
            b.copy_from_slice(col_ref(x, c * mc + i));
        }
    }

    /// Tangent through the activation, `ȧ ↦ ḣ`, in place on `dot` (`n × C·m`):
    ///
    /// ```text
    /// ḣ₀ = s₁ ȧ₀     ḣ_k = s₂ ȧ₀ a_k + s₁ ȧ_k
    /// ḣ_s = s₃ ȧ₀ q_s + s₂ q̇_s + s₂ ȧ₀ a_s + s₁ ȧ_s,   q̇_s = Σ c (ȧ_i a_j + a_i ȧ_j)
    /// ```
    pub(super) fn tangent(&self, dot: &mut Mat<f64>) {
        self.tangent_cols(dot.as_mut(), 0);
    }

    /// [`HiddenLayer::tangent`] on the points `j0 … j0+mc` only: `dot` is `n × C·mc`,
    /// channel-major with `mc` points (a chunk of the fused Gram product).
    pub(super) fn tangent_cols(&self, mut dot: MatMut<'_, f64>, j0: usize) {
        let (n, m) = (self.a.nrows(), self.m);
        let n_ch = self.a.ncols() / m;
        let mc = dot.ncols() / n_ch;
        let [_, s1, s2, s3] = &self.s;
        let mut buf = vec![0.0; n * n_ch];
        for ii in 0..mc {
            let i = j0 + ii;
            Self::gather(dot.rb(), mc, ii, &mut buf);
            let old = |c: usize| &buf[c * n..(c + 1) * n];
            let (d1, d2, d3) = (col(s1, i), col(s2, i), col(s3, i));
            let da0 = old(0);
            for ch in 1..n_ch {
                let (a, prev) = (col(&self.a, ch * m + i), old(ch));
                let out = col_mut(dot.rb_mut(), ch * mc + ii);
                for u in 0..n {
                    out[u] = d2[u] * da0[u] * a[u] + d1[u] * prev[u];
                }
                if let Some(k) = self.second_index(ch) {
                    let qk = col(&self.q[k], i);
                    for u in 0..n {
                        out[u] += d3[u] * da0[u] * qk[u];
                    }
                    for &(ci, cj, c) in &self.forms[k] {
                        let (ai, aj) = (col(&self.a, ci * m + i), col(&self.a, cj * m + i));
                        let (ti, tj) = (old(ci), old(cj));
                        for u in 0..n {
                            out[u] += c * d2[u] * (ti[u] * aj[u] + ai[u] * tj[u]);
                        }
                    }
                }
            }
            let out = col_mut(dot.rb_mut(), ii);
            for u in 0..n {
                out[u] = d1[u] * da0[u];
            }
        }
    }

    /// Cotangent through the activation, `h̄ ↦ ā`, in place on `bar` (`n × C·m`): the
    /// adjoint of [`HiddenLayer::tangent`].
    pub(super) fn cotangent(&self, bar: &mut Mat<f64>) {
        self.cotangent_cols(bar.as_mut(), 0);
    }

    /// [`HiddenLayer::cotangent`] on the points `j0 … j0+mc` only (`bar` is `n × C·mc`,
    /// like [`HiddenLayer::tangent_cols`]).
    pub(super) fn cotangent_cols(&self, mut bar: MatMut<'_, f64>, j0: usize) {
        let (n, m) = (self.a.nrows(), self.m);
        let n_ch = self.a.ncols() / m;
        let mc = bar.ncols() / n_ch;
        let [_, s1, s2, s3] = &self.s;
        let mut buf = vec![0.0; n * n_ch];
        for ii in 0..mc {
            let i = j0 + ii;
            Self::gather(bar.rb(), mc, ii, &mut buf);
            let old = |c: usize| &buf[c * n..(c + 1) * n];
            let (d1, d2, d3) = (col(s1, i), col(s2, i), col(s3, i));
            for ch in 1..n_ch {
                let prev = old(ch);
                let out = col_mut(bar.rb_mut(), ch * mc + ii);
                for u in 0..n {
                    out[u] = d1[u] * prev[u];
                }
            }
            // ā₀ = s₁ h̄₀ + Σ_k s₂ a_k h̄_k + Σ_s (s₃ q_s + s₂ a_s) h̄_s
            let mut a0: Vec<f64> = (0..n).map(|u| d1[u] * old(0)[u]).collect();
            for ch in 1..n_ch {
                let (a, hb) = (col(&self.a, ch * m + i), old(ch));
                for u in 0..n {
                    a0[u] += d2[u] * a[u] * hb[u];
                }
                if let Some(k) = self.second_index(ch) {
                    let qk = col(&self.q[k], i);
                    for u in 0..n {
                        a0[u] += d3[u] * qk[u] * hb[u];
                    }
                    // q̄_s = s₂ h̄_s reaches the first-order channels of the form.
                    for &(ci, cj, c) in &self.forms[k] {
                        for (to, other) in [(ci, cj), (cj, ci)] {
                            let ao = col(&self.a, other * m + i);
                            let out = col_mut(bar.rb_mut(), to * mc + ii);
                            for u in 0..n {
                                out[u] += c * d2[u] * hb[u] * ao[u];
                            }
                        }
                    }
                }
            }
            col_mut(bar.rb_mut(), ii).copy_from_slice(&a0);
        }
    }
}
