//! Statistics over initialisations, the summary table and `summary.json`.

use serde_json::{json, Value};

/// Median and quartiles of a sample (linear interpolation between order statistics).
#[derive(Debug, Clone, Copy)]
pub struct Quartiles {
    /// 25 % quantile.
    pub q1: f64,
    /// Median.
    pub median: f64,
    /// 75 % quantile.
    pub q3: f64,
}

/// Quantile `q ∈ [0, 1]` of `v` (NaN-free input).
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s: Vec<f64> = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let pos = q * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

impl Quartiles {
    /// Quartiles of `v`.
    pub fn of(v: &[f64]) -> Self {
        Self {
            q1: quantile(v, 0.25),
            median: quantile(v, 0.5),
            q3: quantile(v, 0.75),
        }
    }

    /// As JSON.
    pub fn json(&self) -> Value {
        json!({"q1": self.q1, "median": self.median, "q3": self.q3})
    }
}

/// One row of an experiment's summary.
#[derive(Debug, Clone)]
pub struct Row {
    /// Optimiser label.
    pub optimiser: String,
    /// Settings chosen by the grid (printed with the results).
    pub settings: String,
    /// Final training measure over the initialisations.
    pub train: Quartiles,
    /// Final held-out measure over the initialisations.
    pub test: Quartiles,
    /// Extra measure (accuracy, RMS error, ...), if any.
    pub extra: Option<(String, Quartiles)>,
    /// Iterations run.
    pub iters: u64,
    /// Median seconds per iteration.
    pub seconds_per_iter: f64,
    /// Median wall time of a run.
    pub seconds: f64,
    /// Initial training measure (median), for the sanity check.
    pub initial_train: f64,
}

impl Row {
    /// As JSON.
    pub fn json(&self) -> Value {
        let mut v = json!({
            "optimiser": self.optimiser,
            "settings": self.settings,
            "train": self.train.json(),
            "test": self.test.json(),
            "iterations": self.iters,
            "seconds_per_iteration": self.seconds_per_iter,
            "seconds": self.seconds,
            "initial_train": self.initial_train,
        });
        if let Some((name, q)) = &self.extra {
            v[name.as_str()] = q.json();
        }
        v
    }
}

/// Prints a table of rows with the experiment's names for the measures.
pub fn print_table(title: &str, train_name: &str, test_name: &str, rows: &[Row]) {
    println!("\n## {title}\n");
    let extra = rows
        .iter()
        .find_map(|r| r.extra.as_ref().map(|e| e.0.clone()));
    print!(
        "| optimiser | settings | {train_name} (median [q1, q3]) | {test_name} (median [q1, q3]) |"
    );
    if let Some(e) = &extra {
        print!(" {e} (median) |");
    }
    println!(" iters | s/iter |");
    print!("|---|---|---|---|");
    if extra.is_some() {
        print!("---|");
    }
    println!("---|---|");
    for r in rows {
        print!(
            "| {} | {} | {:.2e} [{:.2e}, {:.2e}] | {:.2e} [{:.2e}, {:.2e}] |",
            r.optimiser,
            r.settings,
            r.train.median,
            r.train.q1,
            r.train.q3,
            r.test.median,
            r.test.q1,
            r.test.q3
        );
        if let Some((_, q)) = &r.extra {
            print!(" {:.4} |", q.median);
        }
        println!(" {} | {:.2e} |", r.iters, r.seconds_per_iter);
    }
}

use crate::runner::{Point, Run};

/// Per recorded iteration, the quartiles over runs of `key(point)` (a run that ended
/// early keeps its last value), with x the iteration or the median wall time.
pub fn band(runs: &[Run], key: impl Fn(&Point) -> f64, by_time: bool) -> Vec<(f64, f64, f64, f64)> {
    let longest = runs.iter().map(|r| r.curve.len()).max().unwrap_or(0);
    (0..longest)
        .map(|k| {
            let pts: Vec<&Point> = runs
                .iter()
                .map(|r| &r.curve[k.min(r.curve.len() - 1)])
                .collect();
            let vals: Vec<f64> = pts.iter().map(|p| key(p)).collect();
            let q = Quartiles::of(&vals);
            let x = if by_time {
                quantile(&pts.iter().map(|p| p.seconds).collect::<Vec<_>>(), 0.5)
            } else {
                pts.iter().map(|p| p.iter).max().unwrap_or(0) as f64
            };
            (x, q.q1, q.median, q.q3)
        })
        .collect()
}

/// The summary row of a set of runs (one per initialisation).
pub fn row(
    optimiser: &str,
    settings: String,
    runs: &[Run],
    extra: Option<(&str, Vec<f64>)>,
) -> Row {
    let last: Vec<Point> = runs.iter().map(|r| r.last()).collect();
    let train: Vec<f64> = last.iter().map(|p| p.train).collect();
    let test: Vec<f64> = last.iter().map(|p| p.test).collect();
    let init: Vec<f64> = runs.iter().map(|r| r.curve[0].train).collect();
    Row {
        optimiser: optimiser.to_string(),
        settings,
        train: Quartiles::of(&train),
        test: Quartiles::of(&test),
        extra: extra.map(|(n, v)| (n.to_string(), Quartiles::of(&v))),
        iters: last.iter().map(|p| p.iter).max().unwrap_or(0),
        seconds_per_iter: quantile(
            &runs
                .iter()
                .map(|r| r.seconds_per_iter())
                .collect::<Vec<_>>(),
            0.5,
        ),
        seconds: quantile(&last.iter().map(|p| p.seconds).collect::<Vec<_>>(), 0.5),
        initial_train: quantile(&init, 0.5),
    }
}

/// CSV lines `optimiser,run,iter,seconds,train,test` for a set of runs.
pub fn csv_lines(optimiser: &str, runs: &[Run]) -> Vec<String> {
    runs.iter()
        .enumerate()
        .flat_map(|(i, r)| {
            r.curve.iter().map(move |p| {
                format!(
                    "{optimiser},{i},{},{:.6e},{:.6e},{:.6e}",
                    p.iter, p.seconds, p.train, p.test
                )
            })
        })
        .collect()
}
