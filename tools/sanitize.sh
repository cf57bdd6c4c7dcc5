#!/usr/bin/env bash
# Builds everything (library, command, tests, the fuzz targets' replay driver) with AddressSanitizer
# and UndefinedBehaviorSanitizer in build-asan, and runs the whole test suite there. Passes only when
# every test passes and no sanitizer wrote a report (every process's reports, the test executable's
# and the satcap commands it runs, go to build-asan/sanitizer-logs/, so a finding in a command whose
# test expects a failure exit cannot pass unseen).
#
#   tools/sanitize.sh [CTEST ARGS...]     e.g. -L fuzz (the fuzz replays), -R robustness
#
# Environment: SATCAP_SANITIZE_BUILD (default build-asan), SATCAP_SANITIZE (default
# address,undefined), JOBS (build and test parallelism, default 2).
# What is suppressed, and why: tools/lsan.supp and docs/fuzzing-and-sanitizers.md.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SATCAP_SANITIZE_BUILD:-build-asan}
jobs=${JOBS:-2}

start=$(date +%s)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSATCAP_SANITIZE="${SATCAP_SANITIZE:-address,undefined}" >/dev/null
cmake --build "$build" -j"$jobs"
built=$(date +%s)

logs=$PWD/$build/sanitizer-logs
rm -rf "$logs"
mkdir -p "$logs"
# detect_stack_use_after_return stays off (its fake stacks make LibTorch's deep recursion in
# autograd and TorchScript several times slower); everything else is ASan's default, leaks included.
export ASAN_OPTIONS="log_path=$logs/asan:detect_stack_use_after_return=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="log_path=$logs/ubsan:print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
export LSAN_OPTIONS="suppressions=$PWD/tools/lsan.supp:print_suppressions=0:${LSAN_OPTIONS:-}"

status=0
(cd "$build" && ctest --output-on-failure --parallel "$jobs" --timeout 3000 "$@") || status=$?
end=$(date +%s)
echo "sanitizer build: $((built - start)) s; tests: $((end - built)) s"
if compgen -G "$logs/*" >/dev/null; then
  echo "sanitizer reports:"
  for f in "$logs"/*; do
    echo "== $f"
    head -80 "$f"
  done
  status=1
fi
exit $status
