//! Running one optimiser from one start and recording its curve.

use argmin::core::observers::{Observe, ObserverMode};
use argmin::core::{CostFunction, Error, Executor, Gradient, State, KV};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use natgrad::{NaturalGradient, NgState};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One point of a curve.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    /// Iterations done.
    pub iter: u64,
    /// Training loss (the optimised objective).
    pub train: f64,
    /// The experiment's held-out measure (test MSE, test loss, error vs exact solution).
    pub test: f64,
    /// Wall time of the optimiser so far, evaluation of `test` excluded.
    pub seconds: f64,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct Run {
    /// The curve, starting at iteration 0.
    pub curve: Vec<Point>,
    /// Final parameters.
    pub theta: Vec<f64>,
    /// Why it stopped.
    pub stop: String,
}

impl Run {
    /// The last point.
    pub fn last(&self) -> Point {
        *self.curve.last().expect("a run has its initial point")
    }

    /// Seconds per iteration over the run.
    pub fn seconds_per_iter(&self) -> f64 {
        let l = self.last();
        if l.iter == 0 {
            0.0
        } else {
            l.seconds / l.iter as f64
        }
    }
}

/// The held-out measure of θ.
pub type TestFn = Arc<dyn Fn(&[f64]) -> f64 + Send + Sync>;

/// argmin observer that records `(iter, cost, test(θ), time)`; the time spent in `test`
/// is excluded from the optimiser's time.
struct Recorder {
    start: Instant,
    excluded: f64,
    test: TestFn,
    every: u64,
    curve: Arc<Mutex<Vec<Point>>>,
}

impl Recorder {
    fn record(&mut self, iter: u64, theta: &[f64], train: f64) {
        let now = self.start.elapsed().as_secs_f64() - self.excluded;
        let t0 = Instant::now();
        let test = (self.test)(theta);
        self.excluded += t0.elapsed().as_secs_f64();
        self.curve.lock().unwrap().push(Point {
            iter,
            train,
            test,
            seconds: now,
        });
    }
}

impl<S: State<Param = Vec<f64>, Float = f64>> Observe<S> for Recorder {
    fn observe_iter(&mut self, state: &S, _kv: &KV) -> Result<(), Error> {
        let iter = state.get_iter() + 1;
        if (iter.is_multiple_of(self.every) || state.terminated())
            && let Some(theta) = state.get_param()
        {
            self.record(iter, theta, state.get_cost());
        }
        Ok(())
    }
}

/// The optimisers compared in the experiments.
#[derive(Debug, Clone)]
pub enum Optimiser {
    /// argmin's L-BFGS with Moré–Thuente line search and memory `m`.
    Lbfgs {
        /// History length.
        m: usize,
    },
    /// A natgrad solver (natural gradient with a step rule, or gradient descent).
    Natgrad(Box<NaturalGradient>),
}

/// Runs `opt` on `problem` from `theta0` for `iters` iterations, recording every `every`.
pub fn run<P>(
    problem: P,
    theta0: &[f64],
    opt: &Optimiser,
    iters: u64,
    every: u64,
    test: TestFn,
) -> Result<Run, Error>
where
    P: CostFunction<Param = Vec<f64>, Output = f64>
        + Gradient<Param = Vec<f64>, Gradient = Vec<f64>>
        + 'static,
    NaturalGradient: argmin::core::Solver<P, NgState>,
{
    let curve = Arc::new(Mutex::new(Vec::new()));
    let init_cost = problem.cost(&theta0.to_vec())?;
    let mut recorder = Recorder {
        start: Instant::now(),
        excluded: 0.0,
        test: test.clone(),
        every: every.max(1),
        curve: curve.clone(),
    };
    recorder.record(0, theta0, init_cost);
    recorder.start = Instant::now();
    recorder.excluded = 0.0;
    let configure = |s: NgState| s.param(theta0.to_vec()).max_iters(iters);
    let (theta, stop) = match opt {
        Optimiser::Lbfgs { m } => {
            let solver = LBFGS::new(MoreThuenteLineSearch::new(), *m);
            let res = Executor::new(problem, solver)
                .configure(configure)
                .add_observer(recorder, ObserverMode::Always)
                .run()?;
            finish(res.state())
        }
        Optimiser::Natgrad(ng) => {
            let res = Executor::new(problem, (**ng).clone())
                .configure(configure)
                .add_observer(recorder, ObserverMode::Always)
                .run()?;
            finish(res.state())
        }
    };
    let curve = Arc::try_unwrap(curve).unwrap().into_inner().unwrap();
    Ok(Run { curve, theta, stop })
}

fn finish(state: &NgState) -> (Vec<f64>, String) {
    let theta = state
        .get_best_param()
        .or(state.get_param())
        .cloned()
        .unwrap_or_default();
    let stop = state
        .get_termination_reason()
        .map(|r| r.text().to_string())
        .unwrap_or_default();
    (theta, stop)
}
