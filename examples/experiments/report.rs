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
    if s[lo] == s[hi] || s[hi].is_infinite() {
        // no interpolation (and none towards an infinite "never reached")
        return if pos > lo as f64 { s[hi] } else { s[lo] };
    }
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
    /// Training measure at the common iteration count, over the initialisations.
    pub train: Quartiles,
    /// Held-out measure at the common iteration count, over the initialisations.
    pub test: Quartiles,
    /// Held-out measure at the end of the optimiser's own budget (first-order methods
    /// run longer).
    pub final_test: Quartiles,
    /// `(T, held-out measure at wall time T)`: the comparison at equal wall time.
    pub at_time: Option<(f64, Quartiles)>,
    /// `(target, median seconds until the held-out measure is ≤ target)`; infinite when
    /// the median run never gets there.
    pub to_target: Option<(f64, f64)>,
    /// Extra measure (accuracy, RMS error, ...), if any.
    pub extra: Option<(String, Quartiles)>,
    /// Iterations of the equal-iteration comparison.
    pub iters: u64,
    /// Iterations run in all (the optimiser's own budget).
    pub total_iters: u64,
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
            "total_iterations": self.total_iters,
            "final_test": self.final_test.json(),
            "seconds_per_iteration": self.seconds_per_iter,
            "seconds": self.seconds,
            "initial_train": self.initial_train,
        });
        if let Some((name, q)) = &self.extra {
            v[name.as_str()] = q.json();
        }
        if let Some((t, q)) = &self.at_time {
            v["test_at_equal_time"] = json!({"seconds": t, "test": q.json()});
        }
        if let Some((target, s)) = self.to_target {
            let s = if s.is_finite() { json!(s) } else { Value::Null };
            v["seconds_to_target"] = json!({"target": target, "median_seconds": s});
        }
        v
    }
}

/// Prints a table of rows with the experiment's names for the measures.
pub fn print_table(title: &str, train_name: &str, test_name: &str, rows: &[Row]) {
    println!("\n## {title}\n");
    let iters = rows.first().map_or(0, |r| r.iters);
    let at = if rows.iter().all(|r| r.iters == iters) {
        format!("@{iters} it")
    } else {
        "final".to_string()
    };
    let mut head = vec![
        "optimiser".to_string(),
        "settings".into(),
        format!("{train_name} {at} (median [q1, q3])"),
        format!("{test_name} {at} (median [q1, q3])"),
    ];
    if let Some((name, _)) = rows.iter().find_map(|r| r.extra.as_ref()) {
        head.push(format!("{name} (median)"));
    }
    if let Some((t, _)) = rows.iter().find_map(|r| r.at_time) {
        head.push(format!("{test_name} @{t:.2} s (median [q1, q3])"));
    }
    if let Some((target, _)) = rows.iter().find_map(|r| r.to_target) {
        head.push(format!("s to {test_name} ≤ {target:.0e} (median)"));
    }
    head.extend(["iters run".into(), "s/iter".into()]);
    println!("| {} |", head.join(" | "));
    println!("|{}", "---|".repeat(head.len()));
    let q = |q: &Quartiles| format!("{:.2e} [{:.2e}, {:.2e}]", q.median, q.q1, q.q3);
    for r in rows {
        let mut cells = vec![
            r.optimiser.clone(),
            r.settings.clone(),
            q(&r.train),
            q(&r.test),
        ];
        if let Some((name, e)) = &r.extra {
            cells.push(if name.contains("accuracy") {
                format!("{:.4}", e.median)
            } else {
                format!("{:.2e}", e.median)
            });
        }
        if let Some((_, t)) = &r.at_time {
            cells.push(q(t));
        }
        if let Some((_, s)) = r.to_target {
            cells.push(if s.is_finite() {
                format!("{s:.2}")
            } else {
                "—".into()
            });
        }
        cells.extend([
            r.total_iters.to_string(),
            format!("{:.2e}", r.seconds_per_iter),
        ]);
        println!("| {} |", cells.join(" | "));
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

/// The last recorded point of `run` that satisfies `within` (curves are monotone in
/// iteration and time), or its initial point.
pub fn point_within(run: &Run, within: impl Fn(&Point) -> bool) -> Point {
    run.curve
        .iter()
        .take_while(|p| within(p))
        .last()
        .copied()
        .unwrap_or(run.curve[0])
}

/// The summary row of a set of runs (one per initialisation), at their end.
pub fn row(
    optimiser: &str,
    settings: String,
    runs: &[Run],
    extra: Option<(&str, Vec<f64>)>,
) -> Row {
    row_at(optimiser, settings, runs, u64::MAX, extra)
}

/// The summary row of a set of runs (one per initialisation), compared at iteration
/// `iters`.
pub fn row_at(
    optimiser: &str,
    settings: String,
    runs: &[Run],
    iters: u64,
    extra: Option<(&str, Vec<f64>)>,
) -> Row {
    let at: Vec<Point> = runs
        .iter()
        .map(|r| point_within(r, |p| p.iter <= iters))
        .collect();
    let last: Vec<Point> = runs.iter().map(|r| r.last()).collect();
    let of = |pts: &[Point], key: fn(&Point) -> f64| {
        Quartiles::of(&pts.iter().map(key).collect::<Vec<_>>())
    };
    Row {
        optimiser: optimiser.to_string(),
        settings,
        train: of(&at, |p| p.train),
        test: of(&at, |p| p.test),
        final_test: of(&last, |p| p.test),
        at_time: None,
        to_target: None,
        extra: extra.map(|(n, v)| (n.to_string(), Quartiles::of(&v))),
        iters: at.iter().map(|p| p.iter).max().unwrap_or(0),
        total_iters: last.iter().map(|p| p.iter).max().unwrap_or(0),
        seconds_per_iter: quantile(
            &runs
                .iter()
                .map(|r| r.seconds_per_iter())
                .collect::<Vec<_>>(),
            0.5,
        ),
        seconds: quantile(&last.iter().map(|p| p.seconds).collect::<Vec<_>>(), 0.5),
        initial_train: of(&runs.iter().map(|r| r.curve[0]).collect::<Vec<_>>(), |p| {
            p.train
        })
        .median,
    }
}

impl Row {
    /// Adds the comparison at equal wall time `t` and the time to reach `target` (both on
    /// the held-out measure).
    pub fn with_time(mut self, runs: &[Run], t: f64, target: Option<f64>) -> Self {
        let at: Vec<f64> = runs
            .iter()
            .map(|r| point_within(r, |p| p.seconds <= t).test)
            .collect();
        self.at_time = Some((t, Quartiles::of(&at)));
        self.to_target = target.map(|target| {
            let secs: Vec<f64> = runs
                .iter()
                .map(|r| {
                    r.curve
                        .iter()
                        .find(|p| p.test <= target)
                        .map_or(f64::INFINITY, |p| p.seconds)
                })
                .collect();
            (target, quantile(&secs, 0.5))
        });
        self
    }
}

/// One CSV field (RFC 4180): quoted, with inner quotes doubled, when it holds a comma, a
/// quote or a line break — optimiser labels such as "NGD plain, grid" do.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// CSV lines `optimiser,run,iter,seconds,train,test` for a set of runs.
pub fn csv_lines(optimiser: &str, runs: &[Run]) -> Vec<String> {
    let optimiser = csv_field(optimiser);
    runs.iter()
        .enumerate()
        .flat_map(|(i, r)| {
            let optimiser = optimiser.clone();
            r.curve.iter().map(move |p| {
                format!(
                    "{optimiser},{i},{},{:.6e},{:.6e},{:.6e}",
                    p.iter, p.seconds, p.train, p.test
                )
            })
        })
        .collect()
}
