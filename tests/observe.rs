//! Watching a run (issue 15 item 8): every KV key a run reports is documented on
//! `NaturalGradient`, the iteration table writes one row per iteration, and the progress
//! bar (feature `progress`) ticks once per iteration.

use argmin::core::observers::{Observe, ObserverMode};
use argmin::core::{Executor, KV};
use natgrad::observe::{table_row, IterationTable, TABLE_HEADER};
use natgrad::problems::toys;
use natgrad::{NaturalGradient, NgState, StepControl, StepRule};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Collects every KV key observed.
#[derive(Clone, Default)]
struct Keys(Arc<Mutex<Vec<String>>>);

impl Observe<NgState> for Keys {
    fn observe_iter(&mut self, _: &NgState, kv: &KV) -> Result<(), argmin::core::Error> {
        let mut keys = self.0.lock().unwrap();
        for (k, _) in kv.keys() {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        Ok(())
    }
}

/// The rustdoc of `NaturalGradient` has a table row "/// | `key` |" for every key that
/// runs with momentum, Levenberg–Marquardt (including rejections), line searches,
/// mini-batches and a failing step report.
#[test]
fn every_reported_kv_key_is_documented() {
    let doc = include_str!("../src/solver.rs");
    let keys = Keys::default();
    let settings: Vec<NaturalGradient> = vec![
        NaturalGradient::new()
            .with_step_rule(StepRule::HeavyBall { beta: 0.8 })
            .unwrap()
            .with_adaptive_damping(1e-6, 1e6)
            .unwrap()
            .with_step_size(3.0)
            .unwrap(),
        // A failing step: CG capped at one iteration.
        NaturalGradient::new()
            .with_linear_solver(natgrad::LinearSolver::Cg(natgrad::CgSettings {
                rel_tol: 1e-15,
                max_iters: 1,
                preconditioner: natgrad::Preconditioner::None,
                ..Default::default()
            }))
            .unwrap(),
    ];
    for ng in settings {
        let toy = toys::quadratic_manifold();
        Executor::new(toy.problem, ng)
            .configure(|s| s.param(toy.theta0.clone()).max_iters(20))
            .add_observer(keys.clone(), ObserverMode::Always)
            .run()
            .unwrap();
    }
    // Mini-batches need a model that can select samples.
    let a = faer::mat![[1.0, 0.5], [0.0, 2.0], [1.0, -1.0]];
    let batched = natgrad::FitProblem::new(
        natgrad::model::LinearModel::dense(a).unwrap(),
        natgrad::SquaredError::l2(vec![1.0, -2.0, 0.5]).unwrap(),
        natgrad::WeightedL2::uniform(3).unwrap(),
    )
    .unwrap();
    let ng = NaturalGradient::new()
        .with_step_control(StepControl::armijo())
        .unwrap()
        .with_batch_size(1)
        .unwrap();
    Executor::new(batched, ng)
        .configure(|s| s.param(vec![0.0, 0.0]).max_iters(5))
        .add_observer(keys.clone(), ObserverMode::Always)
        .run()
        .unwrap();
    let keys = keys.0.lock().unwrap().clone();
    for k in [
        "start_loss",
        "lm_rho",
        "momentum_restart",
        "batch_size",
        "reason",
        "line_search",
    ] {
        assert!(keys.iter().any(|x| x == k), "no run reported {k}: {keys:?}");
    }
    for k in &keys {
        assert!(
            doc.contains(&format!("/// | `{k}` |")),
            "KV key `{k}` is not documented on NaturalGradient"
        );
    }
}

/// A `Write` that keeps what was written.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn iteration_table_has_a_row_per_iteration_and_the_reason() {
    let toy = toys::quadratic_manifold();
    let buf = Buffer::default();
    let res = Executor::new(
        toy.problem,
        NaturalGradient::new().with_step_size(0.5).unwrap(),
    )
    .configure(|s| s.param(toy.theta0.clone()).max_iters(4))
    .add_observer(IterationTable::new(buf.clone()), ObserverMode::Always)
    .run()
    .unwrap();
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // name + initial loss, header, 4 rows, final line
    assert_eq!(lines.len(), 7, "{text}");
    assert_eq!(lines[1], TABLE_HEADER);
    assert!(
        lines[0].starts_with("NaturalGradient: initial loss"),
        "{text}"
    );
    for (k, row) in lines[2..6].iter().enumerate() {
        let fields: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(fields[0], k.to_string(), "{row}");
        assert_eq!(fields.len(), 8, "{row}");
        assert_eq!(fields[5], "1e0", "step scale t of a fixed step: {row}");
    }
    assert!(lines[6].contains("stopped after 4 iterations"), "{text}");
    assert!(lines[6].contains("Maximum number of iterations"), "{text}");
    let best = res.state().get_best_cost();
    assert!(lines[6].contains(&format!("{best:.6e}")), "{text}");
    // A KV without the keys prints dashes.
    let row = table_row(3, 1.0, &KV::new());
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["3", "1.0000e0", "-", "-", "-", "-", "-", "-"]
    );
}

/// Each column of a row holds its own KV entry, in the header's order (the run above only
/// fixes the number of fields and the fixed step's scale, which a swap of two columns keeps).
#[test]
fn table_row_puts_each_kv_entry_in_its_column() {
    let mut kv = KV::new();
    kv.insert("grad_norm", 0.5.into())
        .insert("damping", 1e-3.into())
        .insert("step_norm", 0.25.into())
        .insert("step_scale", 0.5.into())
        .insert("cg_iters", 7u64.into())
        .insert("linear_solver", "cg".to_string().into());
    assert_eq!(
        table_row(12, 2.5e-7, &kv)
            .split_whitespace()
            .collect::<Vec<_>>(),
        [
            "12",
            "2.5000e-7",
            "5.0000e-1",
            "1.00e-3",
            "2.500e-1",
            "5e-1",
            "7",
            "cg"
        ]
    );
}

#[cfg(feature = "progress")]
#[test]
fn progress_bar_ticks_once_per_iteration() {
    use natgrad::observe::ProgressBar;
    let toy = toys::quadratic_manifold();
    // A bar longer than the run: the position must be the iterations done (finishing the
    // bar would fill it to its length and hide a missing tick).
    let bar = indicatif::ProgressBar::hidden();
    bar.set_length(8);
    let observer = ProgressBar::with_bar(bar.clone());
    Executor::new(
        toy.problem,
        NaturalGradient::new().with_step_size(0.5).unwrap(),
    )
    .configure(|s| s.param(toy.theta0.clone()).max_iters(5))
    .add_observer(observer, ObserverMode::Always)
    .run()
    .unwrap();
    assert_eq!(bar.position(), 5);
    assert!(bar.is_finished());
    assert!(
        bar.message().contains("Maximum number of iterations"),
        "{}",
        bar.message()
    );
}
