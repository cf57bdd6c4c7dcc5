#!/usr/bin/env bash
# Builds satcap with AddressSanitizer and UndefinedBehaviorSanitizer in build-asan and runs tests
# there. Passes only when every test passes and no sanitizer wrote a report (every process's
# reports, the test executables' and those of the satcap commands they run, go to
# build-asan/sanitizer-logs/, so a finding in a command whose test expects a failure exit cannot
# pass unseen).
#
#   tools/sanitize.sh [CTEST ARGS...]   everything built, the whole suite (or e.g. -L fuzz, -R robust)
#   tools/sanitize.sh --smoke           only satcap, the fuzz replay driver and the allocator's
#                                       poisoning check built (not satcap_tests): the fuzz replays
#                                       (seeds and kept findings of every parser), the poisoning
#                                       check, then scenes, prepare, train, resume, caption, eval and
#                                       score on a small generated data set
#
# Environment: SATCAP_SANITIZE_BUILD (default build-asan), SATCAP_SANITIZE (default
# address,undefined), JOBS (build and test parallelism, default 2).
# What is suppressed, and why: tools/lsan.supp and docs/fuzzing-and-sanitizers.md.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SATCAP_SANITIZE_BUILD:-build-asan}
jobs=${JOBS:-2}
smoke=0
if [[ ${1:-} == --smoke ]]; then
  smoke=1
  shift
fi

start=$(date +%s)
# The precompiled LibTorch header saves much of the build's time (ASan makes each file slower).
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSATCAP_USE_PCH=ON \
  -DSATCAP_SANITIZE="${SATCAP_SANITIZE:-address,undefined}" >/dev/null
if [[ $smoke -eq 1 ]]; then
  cmake --build "$build" -j"$jobs" --target satcap satcap_fuzz_replay satcap_asan_allocator_poison
else
  cmake --build "$build" -j"$jobs"
fi
built=$(date +%s)

logs=$PWD/$build/sanitizer-logs
rm -rf "$logs"
mkdir -p "$logs"
# detect_stack_use_after_return stays off (its fake stacks make LibTorch's deep recursion in
# autograd and TorchScript several times slower); everything else is ASan's default, leaks included.
export ASAN_OPTIONS="log_path=$logs/asan:detect_stack_use_after_return=0:${ASAN_OPTIONS:-}"
# With ASan and UBSan together, gcc 12's runtime writes UBSan's reports to stderr whatever log_path
# says (UBSan alone honours it): abort_on_error makes such a finding a SIGABRT (exit 134), which no
# test expects, instead of exit 1, which a test of a refused input might accept.
export UBSAN_OPTIONS="log_path=$logs/ubsan:print_stacktrace=1:halt_on_error=1:abort_on_error=1:${UBSAN_OPTIONS:-}"
export LSAN_OPTIONS="suppressions=$PWD/tools/lsan.supp:print_suppressions=0:${LSAN_OPTIONS:-}"

status=0
if [[ $smoke -eq 1 ]]; then
  (cd "$build" && ctest --output-on-failure --parallel "$jobs" --timeout 3000 -L "fuzz|asan") || status=$?
  bin=$PWD/$build/satcap
  work=$PWD/$build/sanitize-smoke
  rm -rf "$work"
  mkdir -p "$work"
  step() {
    echo "+ satcap $*"
    "$bin" "$@" >"$work/last.out" 2>"$work/last.err" || {
      echo "satcap $* failed (exit $?):"
      tail -20 "$work/last.err"
      status=1
    }
  }
  train=(train --data "$work/scenes" --features "$work/features" --out "$work/run" --embed-dim 8 --attention-dim 8
    --hidden-dim 16 --min-word-count 1 --batch 4 --checkpoint-every 3)
  step scenes --out "$work/scenes" --images 12 --seed 3
  step prepare --data "$work/scenes" --out "$work/features"
  step --threads 2 "${train[@]}" --epochs 2 --max-steps 5
  step --threads 2 "${train[@]}" --epochs 2 --resume
  step caption "$work/scenes/images/scene_000001.png" --model "$work/run" --out "$work/captions.txt"
  step eval --model "$work/run" --data "$work/scenes" --out "$work/eval"
  step score --annotations "$work/scenes/captions.json" --results "$work/eval/results.json"
  # A refused input takes the error path (exit 3 or 4) without a report.
  echo '{"images": [' >"$work/broken.json"
  if "$bin" prepare --data "$work/broken.json" --out "$work/none" >/dev/null 2>&1; then
    echo "satcap prepare accepted a broken data set"
    status=1
  fi
else
  (cd "$build" && ctest --output-on-failure --parallel "$jobs" --timeout 3000 "$@") || status=$?
fi
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
