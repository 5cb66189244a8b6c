//! The buffers of an [`MlpLinearization`](super::MlpLinearization), and the one-slot pool
//! through which a model hands a dropped linearisation's buffers to the next.
//!
//! A natural-gradient run linearises once per step, so without the pool every step
//! allocates (and the kernel zero-fills on first touch) `O(m·Σ n_l + p)` floats that the
//! previous step has just freed. For small networks that was most of the linearisation:
//! on the S size of `ng_step_bench` (4-10-1, m = 500) page faults and `memset` took about
//! half of its 50 µs.

use super::Mlp;
use crate::model::Model;
use faer::Mat;
use std::sync::Mutex;

/// Everything a linearisation writes: sizes fixed by the model, contents overwritten by
/// each linearisation except the rows of ones in `acts`, which are set once here.
#[derive(Debug, Default)]
pub(super) struct Workspace {
    /// The linearisation point θ.
    pub theta: Vec<f64>,
    /// Hidden layers `l = 1 … L-1`, each `(2 n_l + 1) × m` with rows `[a_l; 1; ȧ_l]`; for a
    /// scalar output the last `n_l` rows hold the sensitivities `δ` instead of a tangent
    /// (`mlp/sensitivity.rs`).
    pub acts: Vec<Vec<f64>>,
    /// Whether the sensitivities `δ` of this linearisation are in `acts` (scalar output).
    pub deltas_ready: bool,
    /// `[a_l; 1]ᵀ` for `l = 0 … L-1`, each `m × (n_l + 1)`, for the tangent passes of an
    /// output width `q > 1` only (empty on the dense path and for a scalar output, whose
    /// weight gradients take `[a_l; 1]` as a transposed view).
    pub acts_t: Vec<Vec<f64>>,
    /// `σ'_l(z_{l+1})`, each `n_{l+1} × m` (empty for the identity).
    pub derivs: Vec<Vec<f64>>,
    /// The outputs, `q × m` column-major.
    pub outputs: Vec<f64>,
    /// Two `max n_l × m` scratch blocks.
    pub bufs: [Vec<f64>; 2],
    /// `[Ẇ_l | ḃ_l | W_l]` of the widest layer (`q > 1` only, like `acts_t`).
    pub lhs: Vec<f64>,
    /// `J` (`n × p`) when `n·p` is within the model's dense limit: a faer matrix, whose
    /// columns are 64-byte aligned (a 16-byte-aligned `Vec` made the S jvp 5 µs instead of
    /// 3 µs).
    pub dense: Option<Mat<f64>>,
    /// The fused Gram product's per-group scratch and sums (allocated on first use).
    pub fused: super::fused::FusedScratch,
}

impl Workspace {
    /// Fresh buffers for `model`, with the rows of ones of `acts` in place.
    pub fn new(model: &Mlp) -> Self {
        let (m, w, nl) = (model.n_samples(), &model.widths, model.n_layers());
        let acts = (1..nl)
            .map(|l| {
                let mut a = vec![0.0; (2 * w[l] + 1) * m];
                a.iter_mut()
                    .skip(w[l])
                    .step_by(2 * w[l] + 1)
                    .for_each(|x| *x = 1.0);
                a
            })
            .collect();
        let derivs = (0..nl)
            .map(|l| match model.activations[l].is_identity() {
                true => Vec::new(),
                false => vec![0.0; w[l + 1] * m],
            })
            .collect();
        let nmax = w[1..].iter().copied().max().unwrap_or(1);
        let dense = model.forms_jacobian();
        // Only the tangent passes of an output width q > 1 read [a_l; 1]ᵀ and the jvp's
        // left factor; a scalar output's products go through δ (`mlp/sensitivity.rs`).
        let tangents = !dense && w[nl] > 1;
        let lhs_len = (1..nl).map(|l| w[l + 1] * (2 * w[l] + 1)).max();
        Self {
            theta: vec![0.0; model.n_params()],
            acts,
            deltas_ready: false,
            acts_t: match tangents {
                false => Vec::new(),
                true => (0..nl).map(|l| vec![0.0; m * (w[l] + 1)]).collect(),
            },
            derivs,
            outputs: vec![0.0; model.n_outputs()],
            bufs: [vec![0.0; nmax * m], vec![0.0; nmax * m]],
            lhs: vec![0.0; lhs_len.filter(|_| tangents).unwrap_or(0)],
            dense: dense.then(|| Mat::zeros(model.n_outputs(), model.n_params())),
            fused: Default::default(),
        }
    }

    /// Whether these buffers were made for a model of `model`'s shape.
    fn fits(&self, model: &Mlp) -> bool {
        self.theta.len() == model.n_params()
            && self.outputs.len() == model.n_outputs()
            && self.dense.is_some() == model.forms_jacobian()
    }
}

/// At most one [`Workspace`] kept between linearisations. A clone of the model starts
/// with an empty pool (a clone may be resized by `select_samples`); a poisoned lock only
/// means no reuse.
#[derive(Debug, Default)]
pub(super) struct WorkspacePool(Mutex<Option<Workspace>>);

impl Clone for WorkspacePool {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl WorkspacePool {
    /// The kept workspace, or fresh buffers for `model`.
    pub fn take(&self, model: &Mlp) -> Workspace {
        let kept = self.0.lock().ok().and_then(|mut slot| slot.take());
        kept.filter(|ws| ws.fits(model))
            .unwrap_or_else(|| Workspace::new(model))
    }

    /// Keeps `ws` for the next linearisation (replacing nothing if one is kept already).
    pub fn put(&self, ws: Workspace) {
        if let Ok(mut slot) = self.0.lock()
            && slot.is_none()
        {
            *slot = Some(ws);
        }
    }
}
