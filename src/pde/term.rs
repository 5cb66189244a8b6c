//! One term of a physics-informed loss: points, channels, residual, weight (and normals
//! or data per point).

use super::residual::{value_only, ErasedResidual, Point, Residual};
use crate::error::{check_finite_mat, check_len, Error, Result};
use crate::model::taylor::ChannelSet;
use faer::{Mat, MatRef};
use std::sync::Arc;

/// A term `w/(2m) Σ_i r(x_i)²` of the loss: interior PDE, Dirichlet, Neumann/Robin
/// (normals per point), initial condition or data fit — they differ only in their points,
/// channels and residual. Its outputs are `√(w/m) r(x_i)`.
#[derive(Clone)]
pub struct Term {
    pub(crate) name: String,
    pub(crate) points: Mat<f64>,
    pub(crate) set: ChannelSet,
    pub(crate) residual: Arc<dyn ErasedResidual>,
    pub(crate) weight: f64,
    pub(crate) normals: Option<Mat<f64>>,
    pub(crate) data: Option<Mat<f64>>,
    /// `√(w/m)` with `m` the term's full number of points (kept by mini-batches).
    pub(crate) scale: f64,
}

impl std::fmt::Debug for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Term")
            .field("name", &self.name)
            .field("points", &self.points.ncols())
            .field("channels", &self.set)
            .field("weight", &self.weight)
            .finish_non_exhaustive()
    }
}

impl Term {
    /// A term named `name` (it appears in errors) with points `d × m` (one column per
    /// point), the channels its residual reads, and the residual; weight 1.
    pub fn new<R: Residual + 'static>(
        name: impl Into<String>,
        points: MatRef<'_, f64>,
        channels: ChannelSet,
        residual: R,
    ) -> Self {
        Self {
            name: name.into(),
            points: points.to_owned(),
            set: channels,
            residual: Arc::new(residual),
            weight: 1.0,
            normals: None,
            data: None,
            scale: f64::NAN,
        }
    }

    /// The weight `w > 0` of the term (`w/(2m) Σ r²` in the loss).
    #[must_use]
    pub fn with_weight(mut self, weight: f64) -> Self {
        self.weight = weight;
        self
    }

    /// Outward unit normals, `d × m` (a column per point), for Neumann and Robin terms
    /// ([`super::Fields::dn`], [`Point::normal`]).
    #[must_use]
    pub fn with_normals(mut self, normals: MatRef<'_, f64>) -> Self {
        self.normals = Some(normals.to_owned());
        self
    }

    /// Data per point, `k × m` (a column per point: a source, boundary values,
    /// measurements), read as [`Point::data`].
    #[must_use]
    pub fn with_data(mut self, data: MatRef<'_, f64>) -> Self {
        self.data = Some(data.to_owned());
        self
    }

    /// The term's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of points `m`.
    pub fn n_points(&self) -> usize {
        self.points.ncols()
    }

    /// The points, `d × m`.
    pub fn points(&self) -> MatRef<'_, f64> {
        self.points.as_ref()
    }

    /// The channels requested.
    pub fn channels(&self) -> &ChannelSet {
        &self.set
    }

    /// Point `i` as the residual sees it.
    pub(crate) fn point<'a>(&'a self, i: usize, x: &'a [f64]) -> Point<'a> {
        Point {
            x,
            normal: self.normals.as_ref().map_or(&[], |n| n.col_as_slice(i)),
            data: self.data.as_ref().map_or(&[], |d| d.col_as_slice(i)),
            index: i,
        }
    }

    /// Checks the term against a network with input dimension `d` and `q` outputs, and
    /// fixes its scale `√(w/m)`.
    pub(crate) fn validate(&mut self, d: usize, q: usize) -> Result<()> {
        let what = |s: &str| format!("term `{}`: {s}", self.name);
        let m = self.points.ncols();
        check_shape(&what, self.points.as_ref(), &self.set, d)?;
        check_finite_mat(&what("points"), self.points.as_ref())?;
        if let Some(n) = &self.normals {
            check_len(&what("length of the normals"), d, n.nrows())?;
            check_len(&what("normals vs points"), m, n.ncols())?;
            check_finite_mat(&what("normals"), n.as_ref())?;
        }
        check_data(&what, self.data.as_ref(), m)?;
        if !(self.weight > 0.0 && self.weight.is_finite()) {
            return Err(Error::InvalidSetting(what(&format!(
                "the weight must be finite and > 0, got {}",
                self.weight
            ))));
        }
        self.probe(q)?;
        self.scale = (self.weight / m as f64).sqrt();
        Ok(())
    }

    /// Evaluates the residual once at the first point on made-up channel values and
    /// rejects a residual that reads a channel the term did not request.
    fn probe(&self, q: usize) -> Result<()> {
        let x: Vec<f64> = self.points.col_as_slice(0).to_vec();
        let channels = vec![0.5; q * self.set.len()];
        value_only(&*self.residual, &self.point(0, &x), &channels, q, &self.set).map_err(
            |missing| {
                Error::InvalidSetting(format!(
                    "term `{}`: the residual reads {missing}, which the term's channels do \
                     not carry ({:?}); request it in the term's ChannelSet",
                    self.name, self.set
                ))
            },
        )?;
        Ok(())
    }

    /// The same term on the given points (indices into this term's points); keeps the
    /// scale of the full term, so that a mini-batch estimates the full loss after the
    /// problem's rescaling.
    pub(crate) fn select(&self, idx: &[usize]) -> Self {
        let pick = |m: &Mat<f64>| Mat::from_fn(m.nrows(), idx.len(), |r, j| m[(r, idx[j])]);
        Self {
            points: pick(&self.points),
            normals: self.normals.as_ref().map(pick),
            data: self.data.as_ref().map(pick),
            ..self.clone()
        }
    }
}

/// The checks every kind of term (residual or energy) makes first, in this order: at
/// least one point, points of dimension `d`, a channel set of dimension `d`. `what`
/// prefixes the message with the term.
pub(crate) fn check_shape(
    what: &dyn Fn(&str) -> String,
    points: MatRef<'_, f64>,
    set: &ChannelSet,
    d: usize,
) -> Result<()> {
    if points.ncols() == 0 {
        return Err(Error::InvalidSetting(what("no points (an empty term)")));
    }
    check_len(&what("rows of the points (dimension d)"), d, points.nrows())?;
    check_len(&what("dimension of the channel set"), d, set.input_dim())
}

/// Data per point, if any: one finite column per point (`m` points).
pub(crate) fn check_data(
    what: &dyn Fn(&str) -> String,
    data: Option<&Mat<f64>>,
    m: usize,
) -> Result<()> {
    if let Some(data) = data {
        check_len(&what("data columns vs points"), m, data.ncols())?;
        check_finite_mat(&what("data"), data.as_ref())?;
    }
    Ok(())
}
