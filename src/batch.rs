//! Mini-batches of sample points (docs/math.md §3, stochastic setting): a seeded,
//! serialisable random generator that draws the batch `I_k` of each step.

use crate::error::{Error, Result};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// Draws `size` distinct sample indices per step, uniformly without replacement, from a
/// `Xoshiro256PlusPlus` generator seeded with `seed`. The generator is part of the solver
/// state, so a checkpointed run draws the same batches when resumed.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct MiniBatch {
    size: usize,
    seed: u64,
    rng: Xoshiro256PlusPlus,
}

impl MiniBatch {
    /// Batches of `size ≥ 1` samples from the generator seeded with `seed`.
    pub fn new(size: usize, seed: u64) -> Result<Self> {
        if size == 0 {
            return Err(Error::InvalidSetting(
                "mini-batch size must be at least 1".into(),
            ));
        }
        Ok(Self {
            size,
            seed,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
        })
    }

    /// The batch size `b`.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Restarts the generator from its seed (at the start of a run).
    pub fn reset(&mut self) {
        self.rng = Xoshiro256PlusPlus::seed_from_u64(self.seed);
    }

    /// The next batch `I_k` of indices into `0..m`, in increasing order. Fails when the
    /// batch is larger than the number of samples.
    pub fn draw(&mut self, m: usize) -> Result<Vec<usize>> {
        if self.size > m {
            return Err(Error::InvalidSetting(format!(
                "mini-batch size {} exceeds the number of samples {m}",
                self.size
            )));
        }
        let mut batch = rand::seq::index::sample(&mut self.rng, m, self.size).into_vec();
        batch.sort_unstable();
        Ok(batch)
    }
}
