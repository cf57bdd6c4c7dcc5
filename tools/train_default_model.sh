#!/usr/bin/env bash
# Reproduces models/default, the model `satcap caption` uses when no --model is given:
#   1. satcap scenes   a synthetic COCO-style data set (5,000 images, seed 1: 4,000 train, 500 val, 500 test)
#   2. satcap prepare  its features with the default encoder (mobilenet_v2 from nsfwjs, 14x14x576)
#   3. satcap train    a soft-attention decoder with tools/scenes_training.json (the options
#                      tools/compare_attention.sh uses for both attentions; its soft run is this model)
#   4. satcap eval     the test split (beam 3): BLEU, ROUGE-L, CIDEr and pointing
#   5. the best bundle (config.json, vocab.json, weights.pt) and the scores are copied to models/default/
# Needs build/satcap and the imported encoder (tools/setup.sh). Environment:
#   SATCAP=build/satcap  WORK=out/default-model  IMAGES=5000  SEED=1  INSTALL=1 (0: do not touch models/default)
set -euo pipefail
cd "$(dirname "$0")/.."
satcap=${SATCAP:-build/satcap}
work=${WORK:-out/default-model}
images=${IMAGES:-5000}
seed=${SEED:-1}
install=${INSTALL:-1}

log() { printf '\033[1m[default-model]\033[0m %s\n' "$*" >&2; }
[ -x "$satcap" ] || { echo "error: $satcap not found; run tools/setup.sh first" >&2; exit 2; }
mkdir -p "$work"
start=$(date +%s)

log "1/3 scenes: $images images, seed $seed -> $work/scenes"
"$satcap" scenes --out "$work/scenes" --images "$images" --seed "$seed" --force
t1=$(date +%s)
log "2/3 prepare: features with mobilenet_v2 -> $work/features"
"$satcap" prepare --data "$work/scenes" --out "$work/features" --encoder mobilenet_v2
t2=$(date +%s)
log "3/4 train -> $work/train"
rm -rf "$work/train"
"$satcap" train --data "$work/scenes" --features "$work/features" --out "$work/train" \
  --config tools/scenes_training.json --no-eval-test "$@"
t3=$(date +%s)
log "4/4 eval: the test split, beam 3, with pointing -> $work/eval"
"$satcap" eval --model "$work/train/model" --data "$work/scenes" --features "$work/features" --split test \
  --beam 3 --max-len 30 --out "$work/eval"
log "times: scenes $((t1 - start)) s, prepare $((t2 - t1)) s, train $((t3 - t2)) s"

if [ "$install" = 1 ]; then
  rm -rf models/default.new
  mkdir -p models/default.new
  cp "$work/train/model/config.json" "$work/train/model/vocab.json" "$work/train/model/weights.pt" models/default.new/
  cp "$work/eval/metrics.json" models/default.new/test_scores.json
  rm -rf models/default.old
  [ -d models/default ] && mv models/default models/default.old
  mv models/default.new models/default
  rm -rf models/default.old
  log "installed models/default ($(du -sh models/default | cut -f1))"
fi
