//! The seed's experiments end to end: toys, Mackey–Glass, XOR and PINNs — numbers,
//! curves and figures.
//!
//! ```text
//! cargo run --release --example experiments -- [all|toys|mackey_glass|xor|pinn] [--out DIR] [--quick]
//!     [--only CONFIG]
//! ```
//!
//! `--only CONFIG` runs one PINN configuration (`ad_eps0.1_m100`, `ad_eps0.02_m100`,
//! `ad_eps0.1_m1000`, `ad_eps0.02_m1000`, `poisson2d`, `heat1d`, `nonlinear2d`,
//! `neumann2d`) with the budget it would get; `--optimiser TEXT` keeps the PINN
//! optimisers whose label contains `TEXT` (e.g. `--optimiser tuned`).
//!
//! Prints a summary table per experiment (markdown) on stdout, shows a progress bar per
//! experiment on stderr, and writes `DIR/summary.json`, one CSV of curves and one SVG
//! figure per experiment (default `DIR = results/`). `--quick` shrinks every budget (CI
//! runs it and checks its own summary: every optimiser's final loss is finite and below
//! its initial loss).

mod mackey_glass;
mod pinn;
mod plot;
mod report;
mod runner;
mod suite;
mod toys;
mod xor;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Budgets shared by the experiments.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// `--quick`.
    pub quick: bool,
}

/// The command line.
struct Args {
    which: Vec<String>,
    /// `pinn` named on its own: the full accuracy-record budget.
    pinn_full: bool,
    /// `--only CONFIG`: one PINN configuration.
    only: Option<String>,
    /// `--optimiser TEXT`: the PINN optimisers whose label contains it.
    optimiser: Option<String>,
    out: PathBuf,
    budget: Budget,
}

fn parse_args() -> Result<Args, String> {
    let mut which = Vec::new();
    let mut out = PathBuf::from("results");
    let mut quick = false;
    let mut only = None;
    let mut optimiser = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--only" => only = Some(it.next().ok_or("--only needs a PINN configuration")?),
            "--optimiser" => {
                optimiser = Some(it.next().ok_or("--optimiser needs a label fragment")?)
            }
            "--out" => out = PathBuf::from(it.next().ok_or("--out needs a directory")?),
            s if s.starts_with("--out=") => out = PathBuf::from(&s[6..]),
            "all" | "toys" | "mackey_glass" | "xor" | "pinn" => which.push(a),
            "-h" | "--help" => {
                return Err(
                    "usage: experiments [all|toys|mackey_glass|xor|pinn] [--out DIR] [--quick] \
                     [--only CONFIG] [--optimiser TEXT]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    let pinn_full = which.iter().any(|w| w == "pinn") && !which.iter().any(|w| w == "all");
    if which.is_empty() || which.iter().any(|w| w == "all") {
        which = ["toys", "mackey_glass", "xor", "pinn"]
            .map(String::from)
            .to_vec();
    }
    Ok(Args {
        which,
        pinn_full,
        only,
        optimiser,
        out,
        budget: Budget { quick },
    })
}

/// Checks the summary of one experiment: every optimiser's final training measure is
/// finite and below its initial one. Returns the violations.
fn check_summary(name: &str, rows: &[report::Row]) -> Vec<String> {
    rows.iter()
        .filter(|r| !(r.train.median.is_finite() && r.train.median < r.initial_train))
        .map(|r| {
            format!(
                "{name}/{}: final train {:e} vs initial {:e}",
                r.optimiser, r.train.median, r.initial_train
            )
        })
        .collect()
}

fn run_one(
    name: &str,
    out: &Path,
    budget: Budget,
    pinn_full: bool,
    only: Option<&str>,
    optimiser: Option<&str>,
) -> Result<(Vec<report::Row>, Value), Box<dyn std::error::Error>> {
    match name {
        "toys" => toys::run(out, budget),
        "mackey_glass" => mackey_glass::run(out, budget),
        "xor" => xor::run(out, budget),
        "pinn" => pinn::run(out, budget, pinn_full, only, optimiser),
        _ => unreachable!("parsed"),
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!("cannot create {}: {e}", args.out.display());
        std::process::exit(1);
    }
    let start = Instant::now();
    let mut summary = serde_json::Map::new();
    let mut problems = Vec::new();
    for name in &args.which {
        let t = Instant::now();
        match run_one(
            name,
            &args.out,
            args.budget,
            args.pinn_full,
            args.only.as_deref(),
            args.optimiser.as_deref(),
        ) {
            Ok((rows, extra)) => {
                problems.extend(check_summary(name, &rows));
                summary.insert(
                    name.clone(),
                    json!({
                        "optimisers": rows.iter().map(|r| r.json()).collect::<Vec<_>>(),
                        "seconds": t.elapsed().as_secs_f64(),
                        "details": extra,
                    }),
                );
            }
            Err(e) => {
                problems.push(format!("{name}: failed: {e}"));
            }
        }
    }
    summary.insert("total_seconds".into(), json!(start.elapsed().as_secs_f64()));
    summary.insert("quick".into(), json!(args.budget.quick));
    let path = args.out.join("summary.json");
    if let Err(e) = std::fs::write(
        &path,
        serde_json::to_string_pretty(&Value::Object(summary)).unwrap(),
    ) {
        eprintln!("cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
    println!(
        "\nwrote {} in {:.1} s",
        path.display(),
        start.elapsed().as_secs_f64()
    );
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("CHECK FAILED: {p}");
        }
        std::process::exit(1);
    }
}
