#!/usr/bin/env bash
# The learning check of issue #4 as a user would run it: soft and hard attention trained by
# `satcap train` with nothing but --data, --features, --out and --attention (every other option at
# its default: widths 512, Adam 4e-4, dropout 0.5, alpha_c 0, 20 epochs, batch 64), then scored on
# the 500 test scenes neither model saw (BLEU/ROUGE-L/CIDEr and pointing).
#   1. satcap scenes   5,000 images, seed 1 (4,000 train / 500 val / 500 test), as tools/compare_attention.sh
#   2. satcap prepare  the default encoder (mobilenet_v2, 14x14 regions of 576)
#   3. satcap train    soft and hard at once, one thread each on the two cores (about 80 min here)
#   4. satcap eval     the test split of each, with eval's defaults too (beam 3, at most 20 words)
# Prints one line per model; results in WORK/{soft,hard}/eval/metrics.json.
# Environment: SATCAP=build/satcap  WORK=out/defaults  IMAGES=5000  SEED=1
set -euo pipefail
cd "$(dirname "$0")/.."
satcap=${SATCAP:-build/satcap}
work=${WORK:-out/defaults}
images=${IMAGES:-5000}
seed=${SEED:-1}
[ -x "$satcap" ] || { echo "error: $satcap not found; run tools/setup.sh first" >&2; exit 2; }
mkdir -p "$work"
[ -f "$work/scenes/captions.json" ] || "$satcap" scenes --out "$work/scenes" --images "$images" --seed "$seed" --force
"$satcap" prepare --data "$work/scenes" --out "$work/features" --encoder mobilenet_v2
pids=()
for a in soft hard; do
  rm -rf "$work/$a"
  "$satcap" --threads 1 train --data "$work/scenes" --features "$work/features" --out "$work/$a" --attention "$a" \
    > "$work/$a.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || { tail -5 "$work"/*.log >&2; exit 1; }; done
for a in soft hard; do
  "$satcap" eval --model "$work/$a/model" --data "$work/scenes" --features "$work/features" --split test \
    --out "$work/$a/eval" > "$work/$a-eval.log" 2>&1
  /usr/bin/python3 - "$a" "$work/$a/eval/metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[2]))
print(f"{sys.argv[1]}: BLEU-4 {m['BLEU-4']:.3f}  CIDEr {m['CIDEr']:.3f}  pointing {m['pointing']:.3f}  entropy {m['attention_entropy']:.2f}")
PY
done
