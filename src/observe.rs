//! An argmin observer that records the iterates of a run (for trajectories, plots, tests).

use crate::solver::NgState;
use argmin::core::observers::Observe;
use argmin::core::{State, KV};
use std::sync::{Arc, Mutex};

/// Records `θ_k` after every iteration that moved (not the final one of a run that ended
/// with a solver exit or convergence, which leaves θ in place). Clones share the record:
/// keep one clone, hand the other to `Executor::add_observer`.
#[derive(Debug, Clone, Default)]
pub struct Iterates(Arc<Mutex<Vec<Vec<f64>>>>);

impl Iterates {
    /// The iterates `θ_1, θ_2, …` recorded so far.
    pub fn get(&self) -> Vec<Vec<f64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Observe<NgState> for Iterates {
    fn observe_iter(&mut self, state: &NgState, _kv: &KV) -> Result<(), argmin::core::Error> {
        if !state.terminated() {
            if let Some(theta) = state.get_param() {
                self.0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(theta.clone());
            }
        }
        Ok(())
    }
}
