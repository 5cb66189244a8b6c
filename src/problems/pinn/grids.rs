//! Point sets of the reference problems.

use faer::Mat;

/// `[d, hidden.., 1]`.
pub(super) fn widths(d: usize, hidden: &[usize]) -> Vec<usize> {
    let mut w = vec![d];
    w.extend_from_slice(hidden);
    w.push(1);
    w
}

/// The `side × side` cell centres `((i + ½)/side, (j + ½)/side)` of the unit square,
/// first coordinate fastest.
pub(super) fn cell_grid(side: usize) -> Mat<f64> {
    let cell = |i: usize| (i as f64 + 0.5) / side as f64;
    Mat::from_fn(2, side * side, |k, j| {
        if k == 0 {
            cell(j % side)
        } else {
            cell(j / side)
        }
    })
}

/// `n` points spread evenly along the perimeter of the unit square from the origin
/// (counter-clockwise) and their outward unit normals (at a corner, the normal of the
/// edge that starts there).
pub(super) fn perimeter(n: usize) -> (Mat<f64>, Mat<f64>) {
    let at = |j: usize| {
        let s = 4.0 * j as f64 / n as f64;
        let (edge, t) = (s.floor() as usize, s.fract());
        match edge {
            0 => ([t, 0.0], [0.0, -1.0]),
            1 => ([1.0, t], [1.0, 0.0]),
            2 => ([1.0 - t, 1.0], [0.0, 1.0]),
            _ => ([0.0, 1.0 - t], [-1.0, 0.0]),
        }
    };
    (
        Mat::from_fn(2, n, |k, j| at(j).0[k]),
        Mat::from_fn(2, n, |k, j| at(j).1[k]),
    )
}
