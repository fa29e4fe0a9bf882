#!/usr/bin/env bash
# Configures and builds Herald into build/ with at most 2 parallel jobs.
# Usage: scripts/build.sh [target...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build_dir=${HERALD_BUILD_DIR:-build}
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo ${HERALD_CMAKE_ARGS:-} >/dev/null
fi
if [ $# -gt 0 ]; then
  for t in "$@"; do cmake --build "$build_dir" --target "$t" -j 2; done
else
  cmake --build "$build_dir" -j 2
fi
