#!/usr/bin/env bash
# Builds Herald and runs the end-to-end benchmark on the embedded stack.
# Usage: scripts/bench-e2e.sh [--recipients N] [--high-rate R] [...]  (see --help)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/build.sh herald herald_bench_e2e
exec build/bench/herald_bench_e2e "$@"
