//! argmin observers for natgrad runs: [`Iterates`] records the iterates (for
//! trajectories, plots, tests), [`IterationTable`] logs a compact per-iteration table, and
//! `ProgressBar` (feature `progress`) draws an indicatif bar — so that a long run can be
//! watched without writing an `Observe` impl. The KV keys they read are documented on
//! [`crate::NaturalGradient`].

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
        if !state.terminated()
            && let Some(theta) = state.get_param()
        {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(theta.clone());
        }
        Ok(())
    }
}

/// A compact per-iteration table of a run, one line per iteration, written to any
/// [`Write`](std::io::Write) (standard error by [`IterationTable::stderr`]): iteration,
/// loss at the new iterate, `‖g‖` and λ at the old one, step norm and step scale, CG
/// iterations and the linear solver, and the termination reason at the end. The columns
/// are the KV keys documented on [`crate::NaturalGradient`]; a key a step did not report
/// shows as `-`. Hand it to `Executor::add_observer(table, ObserverMode::Always)`.
///
/// ```
/// use argmin::core::{observers::ObserverMode, Executor};
/// use natgrad::{observe::IterationTable, problems::toys, NaturalGradient};
///
/// let toy = toys::quadratic_manifold();
/// Executor::new(toy.problem, NaturalGradient::new().with_step_size(0.5)?)
///     .configure(|s| s.param(toy.theta0.clone()).max_iters(3))
///     .add_observer(IterationTable::new(std::io::sink()), ObserverMode::Always)
///     .run()?;
/// # Ok::<(), argmin::core::Error>(())
/// ```
#[derive(Debug)]
pub struct IterationTable<W> {
    out: W,
}

impl IterationTable<std::io::Stderr> {
    /// A table on standard error.
    pub fn stderr() -> Self {
        Self::new(std::io::stderr())
    }
}

impl<W: std::io::Write> IterationTable<W> {
    /// A table written to `out`.
    pub fn new(out: W) -> Self {
        Self { out }
    }

    fn line(&mut self, text: &str) -> Result<(), argmin::core::Error> {
        writeln!(self.out, "{text}")
            .map_err(|e| argmin::core::Error::msg(format!("natgrad::observe::IterationTable: {e}")))
    }
}

/// The header of [`IterationTable`]; [`table_row`] writes rows under it.
pub const TABLE_HEADER: &str =
    " iter        loss      grad_norm     damping   step_norm  scale  cg_iters  solver";

/// One row of [`IterationTable`]: iteration `k`, the loss of the state, and the KV's
/// `grad_norm`, `damping`, `step_norm`, `step_scale`, `cg_iters`, `linear_solver`.
pub fn table_row(k: u64, loss: f64, kv: &KV) -> String {
    let float =
        |key: &str, width: usize, precision: usize| match kv.get(key).and_then(|v| v.get_float()) {
            Some(v) => format!("{v:>width$.precision$e}"),
            None => format!("{:>width$}", "-"),
        };
    let cg = kv
        .get("cg_iters")
        .and_then(|v| v.get_uint())
        .map_or("-".to_string(), |v| v.to_string());
    let solver = kv
        .get("linear_solver")
        .and_then(|v| v.get_string())
        .unwrap_or_else(|| "-".into());
    format!(
        "{k:>5} {loss:>11.4e} {} {} {} {} {cg:>9}  {solver}",
        float("grad_norm", 13, 4),
        float("damping", 11, 2),
        float("step_norm", 11, 3),
        float("step_scale", 6, 0),
    )
}

impl<W: std::io::Write + Send> Observe<NgState> for IterationTable<W> {
    fn observe_init(
        &mut self,
        name: &str,
        state: &NgState,
        _kv: &KV,
    ) -> Result<(), argmin::core::Error> {
        self.line(&format!("{name}: initial loss {:.6e}", state.get_cost()))?;
        self.line(TABLE_HEADER)
    }

    fn observe_iter(&mut self, state: &NgState, kv: &KV) -> Result<(), argmin::core::Error> {
        self.line(&table_row(state.get_iter(), state.get_cost(), kv))
    }

    fn observe_final(&mut self, state: &NgState) -> Result<(), argmin::core::Error> {
        let reason = state
            .get_termination_reason()
            .map_or("not terminated".to_string(), |r| r.text().to_string());
        self.line(&format!(
            "stopped after {} iterations, best loss {:.6e}: {reason}",
            state.get_iter(),
            state.get_best_cost()
        ))?;
        self.out
            .flush()
            .map_err(|e| argmin::core::Error::msg(format!("natgrad::observe::IterationTable: {e}")))
    }
}

/// A progress bar for a run (indicatif; feature `progress`): one tick per iteration out of
/// argmin's `max_iters`, with the loss and `‖g‖` of the last iteration as its message and
/// the termination reason when the run ends. Hand it to
/// `Executor::add_observer(bar, ObserverMode::Always)`.
#[cfg(feature = "progress")]
#[derive(Debug)]
pub struct ProgressBar {
    bar: indicatif::ProgressBar,
}

#[cfg(feature = "progress")]
impl ProgressBar {
    /// A bar of `max_iters` steps (the run's `max_iters`) drawn on standard error.
    pub fn new(max_iters: u64) -> Self {
        Self::with_bar(indicatif::ProgressBar::new(max_iters))
    }

    /// Uses a bar the caller made (own style, hidden target for tests, a `MultiProgress`).
    pub fn with_bar(bar: indicatif::ProgressBar) -> Self {
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        ) {
            bar.set_style(style);
        }
        Self { bar }
    }

    /// The indicatif bar (position, message).
    pub fn bar(&self) -> &indicatif::ProgressBar {
        &self.bar
    }
}

#[cfg(feature = "progress")]
impl Observe<NgState> for ProgressBar {
    fn observe_iter(&mut self, state: &NgState, kv: &KV) -> Result<(), argmin::core::Error> {
        let grad = kv.get("grad_norm").and_then(|v| v.get_float());
        self.bar.set_message(match grad {
            Some(g) => format!("loss {:.4e}  ‖g‖ {g:.3e}", state.get_cost()),
            None => format!("loss {:.4e}", state.get_cost()),
        });
        self.bar.inc(1);
        Ok(())
    }

    fn observe_final(&mut self, state: &NgState) -> Result<(), argmin::core::Error> {
        let reason = state
            .get_termination_reason()
            .map_or("not terminated".to_string(), |r| r.text().to_string());
        // `abandon` keeps the position at the iterations done: `finish` would fill the bar
        // to its length, as if a run that stopped early had run to `max_iters`.
        self.bar
            .abandon_with_message(format!("best loss {:.4e}: {reason}", state.get_best_cost()));
        Ok(())
    }
}
