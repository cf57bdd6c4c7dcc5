#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/targets/*.cpp, with clang, AddressSanitizer and UBSan) in
# build-fuzz and runs each for SECONDS (default 60), one after the other.
#
#   tools/fuzz.sh [SECONDS] [TARGET...]      every target when none is named
#
# Each target starts from its seeds (fuzz/corpus/TARGET) and kept findings (fuzz/regressions/TARGET)
# and grows its own corpus in build-fuzz/fuzz-corpus/TARGET, kept between runs. A crash, sanitizer
# report, leak, timeout (an input running over 10 s) or out-of-memory (over 2 GiB) stops that
# target; its input is saved as build-fuzz/fuzz-findings/TARGET/{crash,leak,timeout,oom}-*, and
# `build/fuzz/satcap_fuzz_replay TARGET FILE` replays it in the ordinary build. Keep it as
# fuzz/regressions/TARGET/NAME (gzip it when it is large) once the parser is fixed: the tests
# fuzz_replay_TARGET replay it from then on. Exit status: 0 when no target found anything.
#
# Environment: SATCAP_FUZZ_BUILD (build folder, default build-fuzz), SATCAP_FUZZ_JOBS (targets run
# at once, default 1), SATCAP_FUZZ_ARGS (more libFuzzer options, e.g. "-max_len=65536"), CXX (a
# clang++, default clang++).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
if [[ $# -gt 0 ]]; then shift; fi
build=${SATCAP_FUZZ_BUILD:-build-fuzz}
jobs=${SATCAP_FUZZ_JOBS:-1}

if [[ ! -f $build/CMakeCache.txt ]]; then
  CXX=${CXX:-clang++} cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSATCAP_FUZZ=ON \
    -DSATCAP_BUILD_TESTS=OFF >/dev/null
fi
cmake --build "$build" -j2 --target satcap_fuzz

if [[ $# -gt 0 ]]; then
  targets=("$@")
else
  targets=()
  for f in fuzz/targets/*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi

# The targets that load LibTorch keep its allocations for the process's life (the CPU allocator's
# and OpenMP's pools): LeakSanitizer's reports there are LibTorch's, listed in tools/lsan.supp.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_stack_use_after_return=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tools/lsan.supp:print_suppressions=0}

run_one() {
  local t=$1
  local corpus=$build/fuzz-corpus/$t findings=$build/fuzz-findings/$t log=$build/fuzz-logs/$t.log
  mkdir -p "$corpus" "$findings" "$(dirname "$log")"
  local seeds=(fuzz/corpus/"$t")
  [[ -d fuzz/regressions/$t ]] && seeds+=(fuzz/regressions/"$t")
  local dict=()
  [[ -f fuzz/dicts/$t.dict ]] && dict=(-dict=fuzz/dicts/"$t".dict)
  local status=0
  # shellcheck disable=SC2086  # SATCAP_FUZZ_ARGS is a list of options
  "$build/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$findings/" "${dict[@]}" ${SATCAP_FUZZ_ARGS:-} "$corpus" "${seeds[@]}" >"$log" 2>&1 || status=$?
  local runs cov
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -1 || true)
  if [[ $status -eq 0 ]]; then
    echo "$t: ${seconds}s, $runs inputs, $cov: no finding"
  else
    echo "$t: FINDING after $runs inputs (exit $status): $(grep -m1 -E '^==[0-9]+==ERROR|runtime error|libFuzzer: (deadly|timeout|out-of-memory)|uncaught exception' "$log" || true)"
    ls "$findings" | sed "s|^|  $findings/|"
    echo "  log: $log"
  fi
  return "$status"
}

failed=0
running=0
for t in "${targets[@]}"; do
  if [[ ! -x $build/fuzz/fuzz_$t ]]; then echo "no fuzz target '$t' (fuzz/targets/$t.cpp)" >&2; exit 2; fi
  run_one "$t" &
  running=$((running + 1))
  if [[ $running -ge $jobs ]]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
done
while [[ $running -gt 0 ]]; do
  wait -n || failed=1
  running=$((running - 1))
done
exit $failed
