//! Draws the CG-vs-Cholesky figure of `docs/performance.md` from the numbers criterion
//! measured, and prints the table and the crossover p.
//!
//! ```text
//! cargo bench --bench cg_vs_cholesky
//! cargo run --release --example perf_figure [-- target/criterion docs/figures/cg_vs_cholesky.svg]
//! ```
//!
//! Reads `<criterion dir>/cg_vs_cholesky/<series>/<p>/new/estimates.json` (median wall
//! time of one direction solve) for the series of `benches/cg_vs_cholesky.rs`, and prints
//! for each CG series the p from which it beats the parameter-space and the sample-space
//! Cholesky.

use plotters::prelude::*;
use std::path::Path;

/// The series of the sweep: criterion function name, legend, colour.
const SERIES: [(&str, &str, RGBColor); 6] = [
    ("cg20", "CG, 20 iterations", BLUE),
    (
        "cg_rtol",
        "CG to rtol 1e-8 (default: no preconditioner)",
        GREEN,
    ),
    ("cg_jacobi", "CG to rtol 1e-8, Jacobi", CYAN),
    ("cholesky", "Cholesky, parameter space (p×p)", RED),
    ("sample_cholesky", "Cholesky, sample space (m×m)", MAGENTA),
    ("auto", "LinearSolver::Auto", BLACK),
];

/// `(p, median seconds)` of one series, sorted by p.
fn read_series(dir: &Path, name: &str) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir.join("cg_vs_cholesky").join(name)) else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<f64>() else {
            continue;
        };
        let file = e.path().join("new").join("estimates.json");
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if let Some(ns) = json["median"]["point_estimate"].as_f64() {
            out.push((p, ns * 1e-9));
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The first measured p from which CG is faster than Cholesky (with the p before it).
fn crossover(cg: &[(f64, f64)], chol: &[(f64, f64)]) -> Option<(f64, f64)> {
    let mut prev = None;
    for &(p, t) in chol {
        let tc = cg.iter().find(|c| c.0 == p)?.1;
        if tc < t {
            return Some((prev.unwrap_or(p), p));
        }
        prev = Some(p);
    }
    None
}

fn draw(path: &Path, series: &[Vec<(f64, f64)>]) -> Result<(), Box<dyn std::error::Error>> {
    let all = series.iter().flatten();
    let (xmax, ymin, ymax) = all.fold((1.0f64, f64::MAX, 0.0f64), |(x, lo, hi), &(p, t)| {
        (x.max(p), lo.min(t), hi.max(t))
    });
    let root = SVGBackend::new(path, (760, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "One direction solve, 2-h-h-1 tanh MLP, m = 512",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (30.0..xmax * 1.5).log_scale(),
            (ymin / 2.0..ymax * 2.0).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("parameters p")
        .y_desc("seconds")
        .draw()?;
    for (pts, &(_, label, colour)) in series.iter().zip(&SERIES) {
        chart
            .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        chart.draw_series(
            pts.iter()
                .map(|&(x, y)| Circle::new((x, y), 3, colour.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "target/criterion".into());
    let out = args
        .next()
        .unwrap_or_else(|| "docs/figures/cg_vs_cholesky.svg".into());
    let series: Vec<Vec<(f64, f64)>> = SERIES
        .iter()
        .map(|(name, _, _)| read_series(Path::new(&dir), name))
        .collect();
    if series.iter().all(Vec::is_empty) {
        return Err(format!("no criterion results under {dir}/cg_vs_cholesky").into());
    }
    let header: Vec<&str> = SERIES.iter().map(|s| s.0).collect();
    println!("| p | {} | (ms) |", header.join(" | "));
    println!("|---:|{}", "---:|".repeat(SERIES.len() + 1));
    let mut ps: Vec<f64> = series.iter().flatten().map(|x| x.0).collect();
    ps.sort_by(f64::total_cmp);
    ps.dedup();
    for p in ps {
        let cells: Vec<String> = series
            .iter()
            .map(|s| {
                s.iter()
                    .find(|x| x.0 == p)
                    .map_or("–".to_string(), |x| format!("{:.3}", x.1 * 1e3))
            })
            .collect();
        println!("| {p} | {} | |", cells.join(" | "));
    }
    for (i, name) in [
        (0, "CG 20 iterations"),
        (1, "CG to rtol 1e-8"),
        (2, "Jacobi-CG"),
    ] {
        for (j, direct) in [
            (3, "parameter-space Cholesky"),
            (4, "sample-space Cholesky"),
        ] {
            match crossover(&series[i], &series[j]) {
                Some((a, b)) => {
                    println!("crossover ({name} beats {direct}): between p = {a} and p = {b}")
                }
                None => {
                    println!("crossover ({name} vs {direct}): not reached in the measured range")
                }
            }
        }
    }
    if let Some(parent) = Path::new(&out).parent() {
        std::fs::create_dir_all(parent)?;
    }
    draw(Path::new(&out), &series)?;
    println!("wrote {out}");
    Ok(())
}
