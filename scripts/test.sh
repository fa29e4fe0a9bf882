#!/usr/bin/env bash
# Installs what is missing, builds everything and runs the whole test suite: unit tests,
# integration tests against real PostgreSQL, Redis, SMTP and Kafka clients, and the
# README's quick start.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh --with-browser
bash scripts/build.sh
cd "${HERALD_BUILD_DIR:-build}"
ctest --output-on-failure --timeout 900 "$@"
