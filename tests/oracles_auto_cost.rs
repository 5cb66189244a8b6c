//! `LinearSolver::Auto`'s flop model against values worked by hand from the constants its
//! module documentation states (`src/linsolve/auto.rs`; issue 20: cargo-mutants showed
//! that no test read the model's numbers, only the paths it picks on large problems).
//!
//! The constants: a Gram product `4np`; the metric per CG iteration `n` (diagonal), `n²`
//! (dense, applied in parameter space) or `2n²` (dense, solved in sample space); vector
//! work `10·dim`. The direct paths: forming `J` `2np·min(n, p)`; in parameter space `MJ`
//! (`np` diagonal, `2n²p` dense), the GEMM `2np²` and a Cholesky `p³/3`; in sample space
//! the GEMM `2n²p`, `M⁻¹` (`n` diagonal, `2n³` dense) and a Cholesky `n³/3`. Every expected
//! value below is that arithmetic done by hand, written out beside it.

use natgrad::linsolve::{AutoSettings, CostModel, Path};

fn model(n: usize, p: usize, metric_diagonal: bool) -> CostModel {
    CostModel {
        n,
        p,
        metric_diagonal,
    }
}

fn close(got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-12 * want.abs(),
        "got {got}, want {want}"
    );
}

#[test]
fn cg_iteration_costs_match_the_documented_constants() {
    // n = 3, p = 5: 4np = 60.
    close(model(3, 5, true).cg_iteration(false), 60.0 + 3.0 + 50.0);
    close(model(3, 5, true).cg_iteration(true), 60.0 + 3.0 + 30.0);
    close(model(3, 5, false).cg_iteration(false), 60.0 + 9.0 + 50.0);
    close(model(3, 5, false).cg_iteration(true), 60.0 + 18.0 + 30.0);
    // n = 7, p = 2 (n > p, so a swapped n and p shows): 4np = 56.
    close(model(7, 2, true).cg_iteration(false), 56.0 + 7.0 + 20.0);
    close(model(7, 2, true).cg_iteration(true), 56.0 + 7.0 + 70.0);
    close(model(7, 2, false).cg_iteration(false), 56.0 + 49.0 + 20.0);
    close(model(7, 2, false).cg_iteration(true), 56.0 + 98.0 + 70.0);
}

#[test]
fn direct_costs_match_the_documented_constants() {
    // n = 3, p = 5: J 2·3·5·3 = 90; parameter space: MJ 15 or 2·9·5 = 90, GEMM 2·3·25 =
    // 150, Cholesky 125/3; sample space: GEMM 2·9·5 = 90, M⁻¹ 3 or 2·27 = 54, Cholesky 9.
    close(
        model(3, 5, true).direct(false),
        90.0 + 15.0 + 150.0 + 125.0 / 3.0,
    );
    close(
        model(3, 5, false).direct(false),
        90.0 + 90.0 + 150.0 + 125.0 / 3.0,
    );
    close(model(3, 5, true).direct(true), 90.0 + 90.0 + 3.0 + 9.0);
    close(model(3, 5, false).direct(true), 90.0 + 90.0 + 54.0 + 9.0);
    // n = 7, p = 2: J 2·7·2·2 = 56; parameter space: MJ 14 or 2·49·2 = 196, GEMM 2·7·4 =
    // 56, Cholesky 8/3; sample space: GEMM 196, M⁻¹ 7 or 2·343 = 686, Cholesky 343/3.
    close(
        model(7, 2, true).direct(false),
        56.0 + 14.0 + 56.0 + 8.0 / 3.0,
    );
    close(
        model(7, 2, false).direct(false),
        56.0 + 196.0 + 56.0 + 8.0 / 3.0,
    );
    close(
        model(7, 2, true).direct(true),
        56.0 + 196.0 + 7.0 + 343.0 / 3.0,
    );
    close(
        model(7, 2, false).direct(true),
        56.0 + 196.0 + 686.0 + 343.0 / 3.0,
    );
}

#[test]
fn paths_name_their_space_and_kind() {
    assert!(Path::ParamCholesky.is_direct() && Path::SampleCholesky.is_direct());
    assert!(!Path::ParamCg.is_direct() && !Path::SampleCg.is_direct());
    assert_eq!(Path::ParamCholesky.cg(), Path::ParamCg);
    assert_eq!(Path::ParamCg.cg(), Path::ParamCg);
    assert_eq!(Path::SampleCholesky.cg(), Path::SampleCg);
    assert_eq!(Path::SampleCg.cg(), Path::SampleCg);
}

#[test]
fn plan_takes_the_cheapest_possible_path_by_hand() {
    let s = AutoSettings::default();
    let m = model(3, 5, true);
    // 10 CG iterations: 1 130 (parameter CG), 296.67 (parameter Cholesky), 930 (sample CG),
    // 192 (sample Cholesky): the sample-space Cholesky.
    let (path, cost) = s.plan(&m, true, 10);
    assert_eq!(path, Path::SampleCholesky);
    close(cost, 192.0);
    // Without the sample space: the parameter-space Cholesky, 296.67.
    let (path, cost) = s.plan(&m, false, 10);
    assert_eq!(path, Path::ParamCholesky);
    close(cost, 90.0 + 15.0 + 150.0 + 125.0 / 3.0);
    // One CG iteration: 113 against 93 in sample space.
    let (path, cost) = s.plan(&m, true, 1);
    assert_eq!(path, Path::SampleCg);
    close(cost, 93.0);
    let (path, cost) = s.plan(&m, false, 1);
    assert_eq!(path, Path::ParamCg);
    close(cost, 113.0);
    // No direct path possible (k = min(n, p) = 3 > 2): CG in the cheaper space, 10·93.
    let small = AutoSettings {
        max_direct_dim: 2,
        ..AutoSettings::default()
    };
    let (path, cost) = small.plan(&m, true, 10);
    assert_eq!(path, Path::SampleCg);
    close(cost, 930.0);
}

#[test]
fn plan_keeps_the_parameter_space_and_cg_on_exact_ties() {
    let s = AutoSettings::default();
    // n = p = 4, diagonal: one CG iteration costs 4·16 + 4 + 40 = 108 in either space; the
    // module docs put the sample space only where n < p, so a tie stays in parameter space.
    let (path, cost) = s.plan(&model(4, 4, true), true, 1);
    assert_eq!(path, Path::ParamCg);
    close(cost, 108.0);
    // n = p = 1: both direct paths cost 2 + 1 + 2 + 1/3 (J, MJ or M⁻¹, the GEMM, Cholesky),
    // far below 1 000 CG iterations (15 000): the first direct path found stays.
    let (path, cost) = s.plan(&model(1, 1, true), true, 1000);
    assert_eq!(path, Path::ParamCholesky);
    close(cost, 5.0 + 1.0 / 3.0);
}

#[test]
fn cg_budget_is_the_break_even_iteration_count() {
    // n = 100, p = 50, diagonal metric. Direct: J 2·100·50·50 = 500 000; parameter space
    // 500 000 + 5 000 + 2·100·2 500 + 125 000/3 = 1 046 666.67; sample space 500 000 +
    // 2·10 000·50 + 100 + 10⁶/3 = 1 833 433.33. One parameter-space CG iteration:
    // 4·5 000 + 100 + 500 = 20 600, so the budget is ⌊1 046 666.67 / 20 600⌋ = 50.
    let s = AutoSettings::default();
    let m = model(100, 50, true);
    assert_eq!(s.cg_budget(&m, true, Path::ParamCg), Some(50));
    assert_eq!(s.cg_budget(&m, false, Path::ParamCg), Some(50));
    // A sample-space iteration: 20 000 + 100 + 1 000 = 21 100: ⌊49.6⌋ = 49.
    assert_eq!(s.cg_budget(&m, true, Path::SampleCg), Some(49));
    // Capped by CG's own limit, at least 1.
    let capped = AutoSettings {
        cg: natgrad::CgSettings {
            max_iters: 20,
            ..Default::default()
        },
        ..AutoSettings::default()
    };
    assert_eq!(capped.cg_budget(&m, true, Path::ParamCg), Some(20));
    assert_eq!(
        s.cg_budget(&model(3, 5, true), true, Path::ParamCg),
        Some(1)
    );
    // No direct path possible: no budget.
    let none = AutoSettings {
        max_direct_dim: 10,
        ..AutoSettings::default()
    };
    assert_eq!(none.cg_budget(&m, true, Path::ParamCg), None);
    let too_dense = AutoSettings {
        max_dense_entries: 4_999,
        ..AutoSettings::default()
    };
    assert_eq!(too_dense.cg_budget(&m, true, Path::ParamCg), None);
    assert!(s.direct_possible(100, 50, false) && !too_dense.direct_possible(100, 50, false));
}
