#!/usr/bin/env bash
# Re-measures everything docs/performance.md reports, on a quiet machine:
#   docs/perf-refresh.sh            -> target/perf/*.json, *.rss, the CG-vs-Cholesky SVG
# Then copy the numbers into docs/performance.md (the script prints them).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/perf
cargo build --release --example ng_step_bench --example perf_figure
for size in S M L XL; do
    /usr/bin/time -v target/release/examples/ng_step_bench --size "$size" --json \
        > "target/perf/$size.json" 2> "target/perf/$size.time"
    rss_kb=$(grep "Maximum resident set size" "target/perf/$size.time" | awk '{print $NF}')
    echo "$(cat "target/perf/$size.json")  max_rss_mb=$((rss_kb / 1024))"
done
cargo bench --bench cg_vs_cholesky
cargo run --release --example perf_figure
