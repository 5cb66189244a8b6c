//! Which derivatives in x a Taylor pass carries: the value, chosen first partials and
//! chosen second-order channels.
//!
//! Channel 0 is the value; channels `1..=F` are the first partials `∂_k` for the
//! coordinates in [`ChannelSet::first`] (in that order); the remaining channels are the
//! requested second-order ones in [`ChannelSet::second`]. A second-order channel is a
//! combination `Σ c_ij ∂_i∂_j` of Hessian entries — one entry `∂²/∂x_i∂x_j`, or the
//! Laplacian `Σ_k ∂_k²` as one channel — so the cost grows with the channels requested,
//! not with `d²`. A second-order channel needs the first partials it is built from, so
//! requesting one adds them.

use crate::error::{Error, Result};

/// One requested second-order channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecondOrder {
    /// The Hessian entry `∂²u/∂x_i∂x_j` (symmetric: `(i, j)` and `(j, i)` are the same).
    Entry(usize, usize),
    /// The Laplacian `Δu = Σ_k ∂²u/∂x_k²` as one channel.
    Laplacian,
}

/// The channels of a Taylor pass: channel 0 the value, `1..=F` the first partials of
/// [`ChannelSet::first`], then the second-order channels of [`ChannelSet::second`], each a
/// combination `Σ c_ij ∂_i∂_j` (a Hessian entry or the Laplacian).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSet {
    d: usize,
    first: Vec<usize>,
    second: Vec<SecondOrder>,
}

impl ChannelSet {
    /// Only the value, for points in `R^d` (Dirichlet data, initial conditions, data fits).
    pub fn value(d: usize) -> Self {
        Self {
            d,
            first: Vec::new(),
            second: Vec::new(),
        }
    }

    /// Value, every first partial and the Laplacian: the `d + 2` channels of the classic
    /// PINN pass.
    pub fn laplacian(d: usize) -> Self {
        Self::value(d)
            .with_gradient()
            .with_second(SecondOrder::Laplacian)
            .expect("the Laplacian is valid in every dimension")
    }

    /// Adds every first partial `∂_1 … ∂_d`.
    #[must_use]
    pub fn with_gradient(mut self) -> Self {
        self.first = (0..self.d).collect();
        self
    }

    /// Adds the first partial `∂_k`. Errors if `k ≥ d`.
    pub fn with_partial(mut self, k: usize) -> Result<Self> {
        self.check_coordinate(k)?;
        self.add_first(k);
        Ok(self)
    }

    /// Adds a second-order channel (and the first partials it needs). Errors on a
    /// coordinate `≥ d`; a channel requested twice is kept once.
    pub fn with_second(mut self, s: SecondOrder) -> Result<Self> {
        let s = match s {
            SecondOrder::Entry(i, j) => {
                self.check_coordinate(i)?;
                self.check_coordinate(j)?;
                self.add_first(i);
                self.add_first(j);
                SecondOrder::Entry(i.min(j), i.max(j))
            }
            SecondOrder::Laplacian => {
                (0..self.d).for_each(|k| self.add_first(k));
                s
            }
        };
        if !self.second.contains(&s) {
            self.second.push(s);
        }
        Ok(self)
    }

    fn check_coordinate(&self, k: usize) -> Result<()> {
        if k < self.d {
            Ok(())
        } else {
            Err(Error::InvalidSetting(format!(
                "ChannelSet: coordinate {k} out of range for points in R^{}",
                self.d
            )))
        }
    }

    fn add_first(&mut self, k: usize) {
        if let Err(pos) = self.first.binary_search(&k) {
            self.first.insert(pos, k);
        }
    }

    /// The input dimension `d`.
    pub fn input_dim(&self) -> usize {
        self.d
    }

    /// The coordinates with a first-partial channel, ascending.
    pub fn first(&self) -> &[usize] {
        &self.first
    }

    /// The second-order channels, in the order requested.
    pub fn second(&self) -> &[SecondOrder] {
        &self.second
    }

    /// Number of channels `C = 1 + F + S`.
    pub fn len(&self) -> usize {
        1 + self.first.len() + self.second.len()
    }

    /// Always false: the value channel is always there.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The channel of `∂_k`, if carried.
    pub fn partial_channel(&self, k: usize) -> Option<usize> {
        self.first.binary_search(&k).ok().map(|p| 1 + p)
    }

    /// The channel of a second-order quantity, if carried.
    pub fn second_channel(&self, s: SecondOrder) -> Option<usize> {
        let s = match s {
            SecondOrder::Entry(i, j) => SecondOrder::Entry(i.min(j), i.max(j)),
            s => s,
        };
        let f = self.first.len();
        self.second.iter().position(|&t| t == s).map(|p| 1 + f + p)
    }

    /// Second-order channel `s` as the quadratic form `Σ c · a_{ci} a_{cj}` of first-order
    /// channels: `(channel i, channel j, c)` triples, one per Hessian entry in the sum.
    pub(crate) fn quadratic_form(&self, s: usize) -> Vec<(usize, usize, f64)> {
        let ch = |k: usize| self.partial_channel(k).expect("added with the channel");
        match self.second[s] {
            SecondOrder::Entry(i, j) => vec![(ch(i), ch(j), 1.0)],
            SecondOrder::Laplacian => (0..self.d).map(|k| (ch(k), ch(k), 1.0)).collect(),
        }
    }
}
