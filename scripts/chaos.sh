#!/usr/bin/env bash
# The chaos suite at full size: builds herald and herald_chaos, then runs a dev stack through
# a seeded workload while stages are SIGKILLed, the broker's brokers go down and up, Redis
# and PostgreSQL restart and the providers fail or slow down, and prints the accounting of
# every notification. Exits non-zero when anything was lost, sent twice, or ended without a
# reason. The stages' logs are kept in build/chaos-logs/ (KEEP_TEST_LOGS) for a post-mortem.
#
#   scripts/chaos.sh [herald_chaos options]   (defaults: --events 3000 --duration 300,
#                                              a seed from the clock, printed first)
# CTest runs the same program at a reduced size (chaos_tests).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build_dir=${HERALD_BUILD_DIR:-build}
bash scripts/build.sh herald herald_chaos
args=("$@")
has() { local o; for o in "${args[@]}"; do [ "$o" = "$1" ] && return 0; done; return 1; }
has --events || args+=(--events 3000)
has --duration || args+=(--duration 300)
has --settle || args+=(--settle 900)
has --seed || args+=(--seed "$(date +%s)")
echo "chaos.sh: herald_chaos ${args[*]}"
export KEEP_TEST_LOGS=${KEEP_TEST_LOGS:-$PWD/$build_dir/chaos-logs}
exec "$build_dir/tests/herald_chaos" "${args[@]}"
