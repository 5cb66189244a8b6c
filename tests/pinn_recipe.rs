//! The default recipe for PINNs (`natgrad::problems::pinn::default_solver`) against the
//! exact solutions of small advection–diffusion problems (m = 100 interior points, a
//! 1-16-16-1 network): one where its watchdog warm-up
//! is kept (ε = 0.1) and one where the warm-up saturates the network and the watchdog
//! takes the run back to θ₀ (ε = 0.02).

use argmin::core::{Executor, State};
use natgrad::problems::pinn::{advection_diffusion, default_solver};

/// Relative L² error against the exact solution after `steps` steps of the recipe.
fn recipe_error(eps: f64, m: usize, steps: u64) -> f64 {
    let case = advection_diffusion(eps, m, &[16, 16], 1.0).unwrap();
    let (n, p) = (case.problem.n_outputs(), case.problem.n_params());
    let theta0 = case.problem.model().net().init_params(0);
    let res = Executor::new(case.problem.clone(), default_solver(n, p))
        .configure(|s| s.param(theta0).max_iters(steps))
        .run()
        .unwrap();
    let theta = res.state().get_best_param().unwrap();
    case.errors(theta).unwrap().rel_l2
}

#[test]
fn recipe_solves_advection_diffusion_with_a_kept_warm_up() {
    let e = recipe_error(0.1, 100, 100);
    assert!(e < 1e-5, "relative L² error {e:e}");
}

#[test]
fn recipe_solves_advection_diffusion_after_the_watchdog_goes_back() {
    let e = recipe_error(0.02, 100, 300);
    assert!(e < 1e-4, "relative L² error {e:e}");
}
