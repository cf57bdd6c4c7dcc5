#!/usr/bin/env bash
# One command for whoever has an NVIDIA GPU: runs every CUDA path of an already built satcap and
# writes one report, text and JSON, with each step's exit code, time and key numbers.
#
#   tools/gpu_check.sh [--satcap build/satcap] [--out gpu-check] [--device cuda] [--bench-seconds 240]
#
# Steps: the build (satcap info: LibTorch, CUDA, where std::filesystem comes from), the test suite
# (when build/satcap_tests exists, its CUDA-relevant tests), scenes, prepare on the GPU, training
# (soft, hard, bf16, fp16, a resume, encoder fine-tuning), caption on the GPU against the CPU (same
# words, log-probabilities close), eval, and `satcap bench --quick --device cuda`. Meant to end
# inside 8 minutes on one GPU. Every step runs even when an earlier one failed (each has its own
# inputs where it can); the exit status is the number of failed steps (0: all passed).
# Output: OUT/report.txt (every step's command, status, time, numbers and the last lines of its
# output) and OUT/report.json ({"steps": [{"name", "command", "exit_code", "seconds", "numbers"}],
# "passed", "failed"}); the steps' own files stay under OUT/work.
set -uo pipefail
cd "$(dirname "$0")/.."
satcap=build/satcap out=gpu-check device=cuda bench_seconds=240
while [ $# -gt 0 ]; do
  case "$1" in
    --satcap) satcap=$2; shift ;;
    --out) out=$2; shift ;;
    --device) device=$2; shift ;;
    --bench-seconds) bench_seconds=$2; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$satcap" ] || { echo "gpu_check: $satcap is not an executable satcap (build it first: see docs/gpu.md)" >&2; exit 2; }
satcap=$(cd "$(dirname "$satcap")" && pwd)/$(basename "$satcap")
python=$(command -v python3 || true)
[ -n "$python" ] || { echo "gpu_check: python3 is needed for the report" >&2; exit 2; }
rm -rf "$out"
mkdir -p "$out/work" "$out/steps"
out=$(cd "$out" && pwd)
work=$out/work
report=$out/report.txt
: > "$out/steps.jsonl"
started=$(date +%s)
failed=0

# step NAME NUMBERS_COMMAND -- COMMAND...: runs COMMAND, records its status, time and output, then
# NUMBERS_COMMAND (a shell snippet printing one JSON object of key numbers, or "{}").
step() {
  local name=$1 numbers=$2
  shift 3
  local log="$out/steps/$name.log" t0 t1 rc
  t0=$(date +%s.%N)
  "$@" > "$log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  local nums
  nums=$(cd "$work" && eval "$numbers" 2>/dev/null) || nums='{}'
  [ -n "$nums" ] || nums='{}'
  [ "$rc" -eq 0 ] || failed=$((failed + 1))
  "$python" - "$name" "$rc" "$t0" "$t1" "$nums" "$*" >> "$out/steps.jsonl" <<'PY'
import json, sys
name, rc, t0, t1, nums, cmd = sys.argv[1:]
try:
    numbers = json.loads(nums)
except ValueError:
    numbers = {"unparsed": nums}
print(json.dumps({"name": name, "command": cmd, "exit_code": int(rc),
                  "seconds": round(float(t1) - float(t0), 2), "numbers": numbers}))
PY
  {
    printf '== %s: %s (exit %d, %s s)\n' "$name" "$([ "$rc" -eq 0 ] && echo passed || echo FAILED)" "$rc" \
      "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
    echo "   \$ $*"
    echo "   numbers: $nums"
    tail -n 12 "$log" | sed 's/^/   | /'
    echo
  } >> "$report"
  printf '[gpu_check] %-16s exit %d\n' "$name" "$rc" >&2
}

# JSON of a few keys read from a JSON file: json_keys FILE KEY... (dotted paths allowed).
json_keys() {
  "$python" - "$@" <<'PY'
import json, sys
path, keys = sys.argv[1], sys.argv[2:]
data = json.load(open(path))
out = {}
for key in keys:
    v = data
    for part in key.split("."):
        v = v.get(part) if isinstance(v, dict) else None
    out[key] = v
print(json.dumps(out))
PY
}
# The last "train" record of a training log, and its "done" record.
train_numbers() {
  "$python" - "$1" <<'PY'
import json, sys
records = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
train = [r for r in records if r.get("kind") == "train"]
done = [r for r in records if r.get("kind") == "done"]
out = {}
if train:
    out.update({k: train[-1].get(k) for k in ("step", "loss", "nll", "steps_per_s", "loss_scale", "skipped_steps")})
if done:
    out["done_step"] = done[-1].get("step")
print(json.dumps({k: v for k, v in out.items() if v is not None}))
PY
}

{
  echo "satcap GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ), device $device"
  echo "binary: $satcap"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  echo
} > "$report"

S() { "$satcap" "$@" --device "$device"; }
data=$work/scenes
common=(--data "$data" --features "$work/features" --batch 32 --embed-dim 64 --attention-dim 64 --hidden-dim 128
        --epochs 2 --val-max-images 40 --log-every 10 --no-eval-test -q)

step info '{ echo "{}"; }' -- "$satcap" info --device "$device"
if [ -x "$(dirname "$satcap")/satcap_tests" ]; then
  # The tests that exercise the device, the runtime checks and every command end to end.
  step tests '{ echo "{}"; }' -- timeout 240 "$(dirname "$satcap")/satcap_tests" "[runtime],[cli],[caption],[train],[decoder]"
fi
step scenes '{ echo "{}"; }' -- "$satcap" scenes --out "$data" --images 400 --seed 7 -q
step prepare 'json_keys features/meta.json rows regions dim' -- S prepare --data "$data" --out "$work/features" -q
step train_soft 'train_numbers soft/train_log.jsonl' -- S train "${common[@]}" --out "$work/soft" --attention soft
step train_hard 'train_numbers hard/train_log.jsonl' -- S train "${common[@]}" --out "$work/hard" --attention hard
step train_bf16 'train_numbers bf16/train_log.jsonl' -- S train "${common[@]}" --out "$work/bf16" --precision bf16
step train_fp16 'train_numbers fp16/train_log.jsonl' -- S train "${common[@]}" --out "$work/fp16" --precision fp16
step train_resume_a 'train_numbers resume/train_log.jsonl' -- S train "${common[@]}" --out "$work/resume" --max-steps 10
step train_resume_b 'train_numbers resume/train_log.jsonl' -- S train "${common[@]}" --out "$work/resume" --resume
step fine_tune 'train_numbers tune/train_log.jsonl' -- \
  S train --data "$data" --out "$work/tune" --fine-tune-encoder --batch 16 --embed-dim 32 --attention-dim 32 \
  --hidden-dim 64 --epochs 1 --max-steps 20 --val-max-images 16 --log-every 5 --no-eval-test -q
step caption_cuda '{ echo "{}"; }' -- S caption datasets/samples --format json --out "$work/caption_cuda.json" -q
step caption_cpu '{ echo "{}"; }' -- "$satcap" caption datasets/samples --format json --out "$work/caption_cpu.json" -q --device cpu
step caption_same '"$python" - <<PY
import json
a = json.load(open("caption_cuda.json")); b = json.load(open("caption_cpu.json"))
same = sum(x["caption"] == y["caption"] for x, y in zip(a, b))
diff = max(abs(x["log_prob"] - y["log_prob"]) for x, y in zip(a, b))
print(json.dumps({"images": len(a), "same_words": same, "max_log_prob_difference": diff}))
PY' -- "$python" -c '
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
bad = [x["image"] for x, y in zip(a, b) if x["caption"] != y["caption"] or abs(x["log_prob"] - y["log_prob"]) > 0.05]
print("differ:", bad); sys.exit(1 if bad or len(a) != len(b) else 0)' "$work/caption_cuda.json" "$work/caption_cpu.json"
step eval 'json_keys eval/metrics.json BLEU-4 CIDEr pointing images' -- \
  S eval --model "$work/soft" --data "$data" --split test --out "$work/eval" --max-images 40 -q
step bench 'json_keys bench.json train_words_per_s_b64 train_words_per_s_b64_hard train_vs_common train_vs_common_hard beam5_captions_per_s ops_per_step ops_per_step_cuda' -- \
  timeout "$bench_seconds" "$satcap" bench --quick --device "$device" --save "$work/bench.json"

"$python" - "$out/steps.jsonl" "$out/report.json" "$failed" <<'PY'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
json.dump({"steps": steps, "passed": sum(s["exit_code"] == 0 for s in steps),
           "failed": sum(s["exit_code"] != 0 for s in steps)}, open(sys.argv[2], "w"), indent=1)
PY
{
  echo "== summary: $failed step(s) failed, $(( $(date +%s) - started )) s in all"
  echo
  echo "JSON:"
  cat "$out/report.json"
} >> "$report"
echo "gpu_check: $failed step(s) failed; report: $report" >&2
exit "$failed"
