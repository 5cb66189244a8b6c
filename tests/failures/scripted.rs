//! A user-written model that goes wrong on purpose: `y(θ) = Aθ + ½ b ‖θ‖²` (so
//! `J = A + b θᵀ`), whose chosen trait method returns NaN or a wrong length from its
//! `from`-th call on (1-based). Calls are counted per method over all linearisations.

#![allow(dead_code)]
use faer::{Mat, MatMut, MatRef};
use natgrad::{Linearization, Model};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// The trait method that misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Linearize,
    Forward,
    Outputs,
    NParams,
    Jvp,
    Vjp,
    JvpBlock,
    VjpBlock,
    DenseJacobian,
    GramDiagonal,
}

impl Method {
    pub const ALL: [Method; 10] = [
        Method::Linearize,
        Method::Forward,
        Method::Outputs,
        Method::NParams,
        Method::Jvp,
        Method::Vjp,
        Method::JvpBlock,
        Method::VjpBlock,
        Method::DenseJacobian,
        Method::GramDiagonal,
    ];

    /// The name the crate must use for it (`Trait::method`).
    pub fn path(self) -> &'static str {
        match self {
            Method::Linearize => "Linearization::outputs",
            Method::Forward => "Model::forward",
            Method::Outputs => "Linearization::outputs",
            Method::NParams => "Linearization::n_params",
            Method::Jvp => "Linearization::jvp",
            Method::Vjp => "Linearization::vjp",
            Method::JvpBlock => "Linearization::jvp_block",
            Method::VjpBlock => "Linearization::vjp_block",
            Method::DenseJacobian => "Linearization::dense_jacobian",
            Method::GramDiagonal => "Linearization::gram_diagonal",
        }
    }

    fn index(self) -> usize {
        Method::ALL.iter().position(|&m| m == self).unwrap()
    }
}

/// How it misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NaN,
    WrongLength,
}

/// `method` misbehaves from its `from`-th call on, once the model has been linearised
/// at least `linearized` times.
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    pub method: Method,
    pub from: usize,
    pub kind: Kind,
    pub linearized: usize,
}

impl Fault {
    pub fn new(method: Method, from: usize, kind: Kind) -> Self {
        Self {
            method,
            from,
            kind,
            linearized: 0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Scripted {
    a: Mat<f64>,
    b: Vec<f64>,
    /// Whether the linearisation offers its dense Jacobian and overrides the block products.
    dense: bool,
    fault: Option<Fault>,
    calls: Arc<[AtomicUsize; 10]>,
    fired: Arc<AtomicBool>,
}

impl Scripted {
    pub fn new(a: Mat<f64>, b: Vec<f64>, dense: bool, fault: Option<Fault>) -> Self {
        assert_eq!(a.nrows(), b.len());
        Self {
            a,
            b,
            dense,
            fault,
            calls: Arc::new(Default::default()),
            fired: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether the fault has happened (shared by clones).
    pub fn fired(&self) -> bool {
        self.fired.load(Relaxed)
    }

    /// The fault, if this call of `m` is faulty (and counts the call).
    fn faulty(&self, m: Method) -> Option<Kind> {
        let k = self.calls[m.index()].fetch_add(1, Relaxed) + 1;
        let linearized = self.calls[Method::Linearize.index()].load(Relaxed);
        let kind = self
            .fault
            .filter(|f| f.method == m && k >= f.from && linearized >= f.linearized)
            .map(|f| f.kind);
        if kind.is_some() {
            self.fired.store(true, Relaxed);
        }
        kind
    }

    fn value(&self, theta: &[f64], y: &mut [f64]) {
        let half_sq = 0.5 * theta.iter().map(|t| t * t).sum::<f64>();
        for (i, yi) in y.iter_mut().enumerate() {
            *yi = (0..theta.len())
                .map(|j| self.a[(i, j)] * theta[j])
                .sum::<f64>()
                + self.b[i] * half_sq;
        }
    }

    /// `J(θ) = A + b θᵀ`.
    pub fn jacobian(&self, theta: &[f64]) -> Mat<f64> {
        Mat::from_fn(self.a.nrows(), self.a.ncols(), |i, j| {
            self.a[(i, j)] + self.b[i] * theta[j]
        })
    }
}

pub struct ScriptedLin<'a> {
    model: &'a Scripted,
    y: Vec<f64>,
    j: Mat<f64>,
}

impl Model for Scripted {
    type Linearization<'a> = ScriptedLin<'a>;

    fn n_params(&self) -> usize {
        self.a.ncols()
    }

    fn n_outputs(&self) -> usize {
        self.a.nrows()
    }

    fn linearize(&self, theta: &[f64]) -> natgrad::Result<ScriptedLin<'_>> {
        let mut y = vec![0.0; self.n_outputs()];
        self.value(theta, &mut y);
        match self.faulty(Method::Linearize) {
            Some(Kind::NaN) => y[0] = f64::NAN,
            Some(Kind::WrongLength) => y.push(0.0),
            None => {}
        }
        Ok(ScriptedLin {
            model: self,
            y,
            j: self.jacobian(theta),
        })
    }

    fn forward(&self, theta: &[f64], out: &mut [f64]) -> natgrad::Result<()> {
        self.value(theta, out);
        if self.faulty(Method::Forward).is_some() {
            // A buffer of fixed length cannot be too long: both kinds write NaN.
            out[out.len() - 1] = f64::NAN;
        }
        Ok(())
    }
}

/// Faults strike only finite inputs: a NaN out of a NaN in is not the model's doing.
fn finite(v: &[f64]) -> bool {
    v.iter().all(|x| x.is_finite())
}

fn spoil(kind: Option<Kind>, out: &mut [f64]) {
    if kind.is_some() && !out.is_empty() {
        out[out.len() / 2] = f64::NAN;
    }
}

impl Linearization for ScriptedLin<'_> {
    fn n_params(&self) -> usize {
        match self.model.faulty(Method::NParams) {
            Some(_) => self.j.ncols() + 1,
            None => self.j.ncols(),
        }
    }

    fn outputs(&self) -> &[f64] {
        // Counted in `linearize` (outputs() is a borrow and is called many times).
        &self.y
    }

    fn jvp(&mut self, t: &[f64], out: &mut [f64]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = (0..t.len()).map(|j| self.j[(i, j)] * t[j]).sum();
        }
        if finite(t) {
            spoil(self.model.faulty(Method::Jvp), out);
        }
    }

    fn vjp(&mut self, s: &[f64], out: &mut [f64]) {
        for (j, o) in out.iter_mut().enumerate() {
            *o = (0..s.len()).map(|i| self.j[(i, j)] * s[i]).sum();
        }
        if finite(s) {
            spoil(self.model.faulty(Method::Vjp), out);
        }
    }

    fn jvp_block(&mut self, t: MatRef<'_, f64>, mut out: MatMut<'_, f64>) {
        if !self.model.dense {
            return block_by_columns(self, t, out, true);
        }
        out.copy_from(&self.j * t);
        if self.model.faulty(Method::JvpBlock).is_some() {
            out[(0, 0)] = f64::NAN;
        }
    }

    fn vjp_block(&mut self, s: MatRef<'_, f64>, mut out: MatMut<'_, f64>) {
        if !self.model.dense {
            return block_by_columns(self, s, out, false);
        }
        out.copy_from(self.j.transpose() * s);
        if self.model.faulty(Method::VjpBlock).is_some() {
            out[(0, 0)] = f64::NAN;
        }
    }

    fn dense_jacobian(&mut self) -> Option<Mat<f64>> {
        if !self.model.dense {
            return None;
        }
        let mut j = self.j.clone();
        match self.model.faulty(Method::DenseJacobian) {
            Some(Kind::NaN) => j[(0, 0)] = f64::NAN,
            Some(Kind::WrongLength) => {
                j = Mat::from_fn(j.nrows(), j.ncols() + 1, |r, c| {
                    if c < j.ncols() {
                        j[(r, c)]
                    } else {
                        0.0
                    }
                })
            }
            None => {}
        }
        Some(j)
    }

    fn gram_diagonal(&mut self, w: &[f64], out: &mut [f64]) -> bool {
        for (c, o) in out.iter_mut().enumerate() {
            *o = (0..w.len()).map(|r| w[r] * self.j[(r, c)].powi(2)).sum();
        }
        spoil(self.model.faulty(Method::GramDiagonal), out);
        true
    }
}

/// The default block products (column by column), for the matrix-free variant.
fn block_by_columns(
    lin: &mut ScriptedLin<'_>,
    x: MatRef<'_, f64>,
    mut out: MatMut<'_, f64>,
    forward: bool,
) {
    for c in 0..x.ncols() {
        let xc: Vec<f64> = x.col(c).iter().copied().collect();
        let mut oc = vec![0.0; out.nrows()];
        if forward {
            lin.jvp(&xc, &mut oc);
        } else {
            lin.vjp(&xc, &mut oc);
        }
        for (r, v) in oc.into_iter().enumerate() {
            out[(r, c)] = v;
        }
    }
}

/// [`Scripted`] with the crate's default `Model::forward` (linearise and copy).
#[derive(Debug, Clone)]
pub struct DefaultForward(pub Scripted);

impl Model for DefaultForward {
    type Linearization<'a> = ScriptedLin<'a>;

    fn n_params(&self) -> usize {
        self.0.n_params()
    }

    fn n_outputs(&self) -> usize {
        self.0.n_outputs()
    }

    fn linearize(&self, theta: &[f64]) -> natgrad::Result<ScriptedLin<'_>> {
        self.0.linearize(theta)
    }
}
