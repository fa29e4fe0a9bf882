#!/usr/bin/env bash
# Installs what is missing, builds everything and runs the whole test suite: unit tests,
# integration tests against real PostgreSQL, Redis, SMTP and Kafka clients, and the
# README's quick start; then the hardening run (scripts/fuzz.sh): a clang build with ASan and
# UBSan running the unit tests and some integration programs, and every fuzzer for a while.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh --with-browser --with-fuzz
bash scripts/build.sh
(cd "${HERALD_BUILD_DIR:-build}" && ctest --output-on-failure --timeout 900 "$@")
if [ "$#" -eq 0 ] && [ "${HERALD_SKIP_FUZZ:-0}" != 1 ]; then
  bash scripts/fuzz.sh "${HERALD_FUZZ_SECONDS:-30}" redis_tests ledger_tests admin_api_tests pipeline_e2e_tests
fi
