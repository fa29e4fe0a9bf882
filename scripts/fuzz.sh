#!/usr/bin/env bash
# Hardening run: builds Herald with clang, AddressSanitizer, UndefinedBehaviorSanitizer and
# libFuzzer coverage (build-fuzz/), runs the unit tests and the given integration test
# programs under the sanitizers, then each libFuzzer target for SECONDS over its seed corpus
# (tests/fuzz/corpus/<name>). Fails on any sanitizer report or fuzzer crash; a crashing
# input is kept in build-fuzz/artifacts/.
#
#   scripts/fuzz.sh [SECONDS] [integration test programs...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-60}
shift || true
build="${HERALD_FUZZ_BUILD_DIR:-$root/build-fuzz}"
fuzzers=(event ingest cron template admin)

bash "$root/scripts/bootstrap.sh" --with-fuzz
CC=clang-14 CXX=clang++-14 cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DHERALD_SANITIZE=ON -DHERALD_FUZZ=ON >/dev/null
targets=(herald unit_tests)
for f in "${fuzzers[@]}"; do targets+=("${f}_fuzz"); done
for t in "$@"; do targets+=("$t"); done
# HERALD_JOBS is this script's own; unset, so the stages the tests start never see it (they
# refuse unknown HERALD_* settings).
jobs=${HERALD_JOBS:-2}
unset HERALD_JOBS
cmake --build "$build" -j"$jobs" --target "${targets[@]}"

# Every report is fatal; leaks are reported at exit.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=suppressions=$root/tests/lsan.supp
echo "fuzz.sh: unit tests under ASan + UBSan"
(cd "$build" && ./tests/unit_tests)
# The stages those programs start are the sanitized binary too: their logs are kept and
# searched for reports (a stage that dies of one fails its test as well).
export KEEP_TEST_LOGS="$build/test-logs"
rm -rf "$KEEP_TEST_LOGS"
for t in "$@"; do
  echo "fuzz.sh: $t under ASan + UBSan"
  (cd "$build" && ./tests/"$t")
done
if [ -d "$KEEP_TEST_LOGS" ] && grep -rlE "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer" "$KEEP_TEST_LOGS"; then
  echo "fuzz.sh: a stage reported a sanitizer error (logs above)" >&2
  exit 1
fi

mkdir -p "$build/artifacts"
for f in "${fuzzers[@]}"; do
  work=$(mktemp -d)
  echo "fuzz.sh: ${f}_fuzz for ${seconds}s"
  log="$build/artifacts/${f}.log"
  set +e
  "$build/tests/${f}_fuzz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$build/artifacts/${f}-" "$work" "$root/tests/fuzz/corpus/$f" >"$log" 2>&1
  status=$?
  set -e
  grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY)|ERROR|runtime error" "$log" || true
  [ "$status" -eq 0 ] || tail -60 "$log" >&2
  rm -rf "$work"
  if [ "$status" -ne 0 ]; then
    echo "fuzz.sh: ${f}_fuzz failed (exit $status); inputs in $build/artifacts/" >&2
    exit 1
  fi
done
echo "fuzz.sh: no sanitizer report, no fuzzer crash"
