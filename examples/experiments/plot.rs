//! SVG figures (plotters): median curves with quartile bands, on a log scale.

use plotters::prelude::*;
use std::path::Path;

/// One band: label and points `(x, q1, median, q3)`.
pub struct Band {
    /// Legend label.
    pub label: String,
    /// `(x, q1, median, q3)`, increasing in x.
    pub points: Vec<(f64, f64, f64, f64)>,
}

fn finite_pos(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

/// Draws median lines with shaded quartile bands, log-scale y.
pub fn bands(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    bands: &[Band],
) -> Result<(), Box<dyn std::error::Error>> {
    let xs = bands.iter().flat_map(|b| b.points.iter().map(|p| p.0));
    let x_max = xs.fold(0.0_f64, f64::max).max(1e-12);
    let ys: Vec<f64> = bands
        .iter()
        .flat_map(|b| b.points.iter().flat_map(|p| [p.1, p.2, p.3]))
        .filter(|&v| finite_pos(v))
        .collect();
    let y_min = ys.iter().copied().fold(f64::INFINITY, f64::min).max(1e-300);
    let y_max = ys.iter().copied().fold(0.0_f64, f64::max).max(y_min * 10.0);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_max, (y_min / 2.0..y_max * 2.0).log_scale())?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .draw()?;
    for (i, b) in bands.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<_> = b
            .points
            .iter()
            .filter(|p| finite_pos(p.1) && finite_pos(p.2) && finite_pos(p.3))
            .collect();
        if pts.len() > 1 {
            let mut poly: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.1)).collect();
            poly.extend(pts.iter().rev().map(|p| (p.0, p.3)));
            chart.draw_series(std::iter::once(Polygon::new(
                poly,
                color.mix(0.15).filled(),
            )))?;
        }
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.2)),
                color.stroke_width(2),
            ))?
            .label(b.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Writes a CSV of curves: one row per (optimiser, run, point).
pub fn write_csv(
    path: &Path,
    header: &str,
    rows: impl IntoIterator<Item = String>,
) -> std::io::Result<()> {
    let mut s = String::from(header);
    s.push('\n');
    for r in rows {
        s.push_str(&r);
        s.push('\n');
    }
    std::fs::write(path, s)
}
