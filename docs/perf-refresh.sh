#!/usr/bin/env bash
# Re-measures everything docs/performance.md reports, on a quiet machine, and prints the
# markdown tables to paste there:
#   docs/perf-refresh.sh [--quick]     (--quick: criterion's quick mode for the sweep)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/perf
cargo build --release --example ng_step_bench --example perf_figure
for size in S M L XL; do
    /usr/bin/time -v target/release/examples/ng_step_bench --size "$size" --json \
        > "target/perf/$size.json" 2> "target/perf/$size.time"
done
python3 - <<'PY'
import json
print("| size | widths | m | p | ng step [s] | CG phase [s] | pair [s] | Cholesky [s] | fwd GFLOP | GEMM GFLOP/s | CG GFLOP/s | fraction | live pair [s] | products / GEMM | faer CG alone [s] | cap | peak RSS [MB] |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for s in ["S", "M", "L", "XL"]:
    j = json.load(open(f"target/perf/{s}.json"))
    rss = [l for l in open(f"target/perf/{s}.time") if "Maximum resident" in l][0].split()[-1]
    chol = "–" if j["cholesky_step_s"] is None else f'{j["cholesky_step_s"]:.3g}'
    print(f'| {s} | {"-".join(map(str, j["widths"]))} | {j["m"]} | {j["p"]} | {j["ng_step_s"]:.3g} '
          f'| {j["cg_phase_s"]:.3g} | {j["jvp_vjp_pair_s"]:.3g} | {chol} | {j["fwd_gflop"]:.3g} '
          f'| {j["gemm_gflops"]:.1f} | {j["cg_gflops"]:.1f} | {100 * j["gemm_fraction"]:.0f} % '
          f'| {j["product_pair_s"]:.3g} | {100 * 4 * j["fwd_gflop"] / j["gemm_gflops"] / j["product_pair_s"]:.0f} % '
          f'| {j["faer_cg_own_s"]:.3g} | {100 * j["faer_cg_cap"]:.0f} % | {int(rss) / 1024:.0f} |')
PY
cargo bench --bench cg_vs_cholesky -- "$@"
cargo run --release --example perf_figure
