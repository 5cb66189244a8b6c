//! `--run-steps K`: the Nyström sketch amortised over a real run. From the same θ, `K`
//! natural-gradient steps (the library's `NaturalGradient` through argmin's `Executor`:
//! Plain, α = 1, fixed step, damping λ, cold-started CG to relative residual 1e-8), once
//! with plain CG and once with Nyström-PCG at each rank (`refresh_every = --refresh`,
//! default 10: one sketch for a 10-step run, which then goes stale as θ moves). The Gram
//! products are counted by the problem's jvp counter (argmin's `jvp_count`): every Gram
//! product, CG's and the sketch's, is one jvp and one vjp, and a Plain step with a fixed
//! step size makes no other jvp.
//!
//! Fields: `gram_products` = all Gram products of the run (the problem's jvp count);
//! `cg_products` = the sum of the steps' `cg_iters` (KV); `sketch_products` = the
//! difference (the sketches' `r` each); `cg_iters` per step; `max_cg_rel_residual` over the
//! steps; `factor_vs_plain` = plain CG's `gram_products` (same space, same θ) divided by
//! this run's; `final_loss` at `θ_K`, `losses` at `θ_0 … θ_{K−1}`; `rel_diff_loss` and
//! `rel_diff_theta` = relative difference of the final loss and of `θ_K` from the plain-CG
//! run's; `wall_s` = wall time of the whole run (sketch included).

use super::{in_space, Opts};
use argmin::core::observers::{Observe, ObserverMode};
use argmin::core::{Executor, State, KV};
use natgrad::linsolve::{LinearSolver, Preconditioner};
use natgrad::loss::Loss;
use natgrad::metric::Metric;
use natgrad::model::Model;
use natgrad::{FitProblem, NaturalGradient, NgState};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Per-step KV values: (`cg_iters`, `rel_residual`, `start_loss` at θ_k).
#[derive(Clone, Default)]
struct StepLog(Arc<Mutex<Vec<(u64, f64, f64)>>>);

impl Observe<NgState> for StepLog {
    fn observe_iter(&mut self, _state: &NgState, kv: &KV) -> Result<(), argmin::core::Error> {
        let get = |k: &str| kv.get(k);
        let iters = get("cg_iters").and_then(|v| v.get_uint()).unwrap_or(0);
        let res = get("rel_residual")
            .and_then(|v| v.get_float())
            .unwrap_or(f64::NAN);
        let loss = get("start_loss")
            .and_then(|v| v.get_float())
            .unwrap_or(f64::NAN);
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((iters, res, loss));
        Ok(())
    }
}

/// What one run did.
struct RunOutcome {
    theta: Vec<f64>,
    loss: f64,
    steps: u64,
    jvp: u64,
    vjp: u64,
    log: Vec<(u64, f64, f64)>,
    wall_s: f64,
    termination: String,
}

/// `steps` Plain natural-gradient steps (α = 1, damping `lambda`) from `theta` with
/// `solver`, counted and timed.
fn run<Mo: Model, Lo: Loss, Me: Metric>(
    pb: &FitProblem<Mo, Lo, Me>,
    theta: &[f64],
    lambda: f64,
    steps: u64,
    solver: LinearSolver,
) -> Result<RunOutcome, String>
where
    FitProblem<Mo, Lo, Me>: Clone,
{
    let ng = NaturalGradient::new()
        .with_step_size(1.0)
        .and_then(|s| s.with_damping(lambda))
        .and_then(|s| s.with_linear_solver(solver))
        .map_err(|e| e.to_string())?;
    let log = StepLog::default();
    let t0 = Instant::now();
    let res = Executor::new(pb.clone(), ng)
        .configure(|s| s.param(theta.to_vec()).max_iters(steps).counting(true))
        .add_observer(log.clone(), ObserverMode::Always)
        .run()
        .map_err(|e| e.to_string())?;
    let wall_s = t0.elapsed().as_secs_f64();
    let state = res.state();
    let counts = state.get_func_counts();
    let count = |k: &str| counts.get(k).copied().unwrap_or(0);
    let log = log.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(RunOutcome {
        theta: state.get_param().cloned().unwrap_or_default(),
        loss: state.get_cost(),
        steps: state.get_iter(),
        jvp: count("jvp_count"),
        vjp: count("vjp_count"),
        log,
        wall_s,
        termination: state
            .get_termination_reason()
            .map(|r| r.text().to_string())
            .unwrap_or_default(),
    })
}

/// Plain CG, then Nyström-PCG at each rank, for `o.run_steps` steps from `theta`, in each
/// space of `o.spaces`; one JSON line per run.
pub(crate) fn runs<Mo: Model, Lo: Loss, Me: Metric>(
    case: &str,
    pb: &FitProblem<Mo, Lo, Me>,
    theta: &[f64],
    lambda: f64,
    train_loss: f64,
    o: &Opts,
) where
    FitProblem<Mo, Lo, Me>: Clone,
{
    let (n, p) = (pb.n_outputs(), pb.n_params());
    for space in &o.spaces {
        let mut configs = vec![(0, in_space(space, o.cg(Preconditioner::None)))];
        for &rank in &o.ranks {
            configs.push((rank, in_space(space, o.cg(o.nystrom(rank)))));
        }
        let mut plain: Option<RunOutcome> = None;
        for (rank, solver) in configs {
            let out = match run(pb, theta, lambda, o.run_steps, solver) {
                Ok(out) => out,
                Err(e) => {
                    println!(
                        "{{\"case\":\"{case}\",\"space\":\"{space}\",\"rank\":{rank},\
                         \"error\":{e:?}}}"
                    );
                    continue;
                }
            };
            let cg_iters: Vec<u64> = out.log.iter().map(|s| s.0).collect();
            let cg_total: u64 = cg_iters.iter().sum();
            // Every jvp is a Gram product; those CG did not make are the sketch's.
            let sketch = out.jvp.saturating_sub(cg_total);
            let max_res = out.log.iter().map(|s| s.1).fold(0.0, f64::max);
            let (factor, theta_diff, loss_diff) = match &plain {
                Some(pl) => {
                    let num: f64 = out
                        .theta
                        .iter()
                        .zip(&pl.theta)
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum();
                    let den: f64 = pl.theta.iter().map(|b| b * b).sum();
                    (
                        format!("{:.3}", pl.jvp as f64 / out.jvp as f64),
                        format!("{:e}", (num / den).sqrt()),
                        format!("{:e}", ((out.loss - pl.loss) / pl.loss).abs()),
                    )
                }
                None if rank == 0 => ("1.000".into(), "0".into(), "0".into()),
                None => ("null".into(), "null".into(), "null".into()),
            };
            let losses: Vec<String> = out.log.iter().map(|s| format!("{:e}", s.2)).collect();
            println!(
                "{{\"case\":\"{case}\",\"mode\":\"run\",\"train_steps\":{},\
                 \"start_loss\":{train_loss:e},\"n\":{n},\"p\":{p},\"lambda\":{lambda:e},\
                 \"space\":\"{space}\",\"preconditioner\":\"{}\",\"rank\":{rank},\
                 \"refresh\":{},\"steps\":{},\"gram_products\":{},\"cg_products\":{cg_total},\
                 \"sketch_products\":{sketch},\"cg_iters\":{cg_iters:?},\
                 \"max_cg_rel_residual\":{max_res:e},\"factor_vs_plain\":{factor},\
                 \"final_loss\":{:e},\"rel_diff_loss\":{loss_diff},\
                 \"rel_diff_theta\":{theta_diff},\"losses\":[{}],\"wall_s\":{:.2},\
                 \"vjp\":{},\"termination\":{:?}}}",
                o.train_steps,
                if rank == 0 { "none" } else { "nystrom" },
                o.refresh,
                out.steps,
                out.jvp,
                out.loss,
                losses.join(","),
                out.wall_s,
                out.vjp,
                out.termination,
            );
            if rank == 0 {
                plain = Some(out);
            }
        }
    }
}
