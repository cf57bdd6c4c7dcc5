#!/usr/bin/env bash
# Soft against hard attention (Xu et al. 2015, Table 1's question, with attention pointing added):
# generates a synthetic scenes dataset (object boxes known), prepares its features once with the
# default encoder, trains a soft- and a hard-attention decoder with the same options, budget and
# seed, evaluates both on the test split and prints one table (BLEU-1..4, ROUGE-L, CIDEr, pointing,
# attention entropy, training time). Everything is `satcap compare` (lib/include/satcap/compare.h);
# this script only fixes the settings of the reported run.
#
#   tools/compare_attention.sh            the full run      -> out/compare/
#   tools/compare_attention.sh --quick    a smoke run (~1 min) -> out/compare-quick/
#   tools/compare_attention.sh [--quick] --data DIR ...   any other `satcap compare` option is passed on
#
# Outputs: OUT/compare.md (the table), OUT/compare.json, OUT/attention_soft_vs_hard.png (one test
# image, soft figure above hard figure), OUT/{soft,hard}/ (training runs, model/, eval/metrics.json,
# eval/pointing.jsonl), OUT/scenes/, OUT/features/. A rerun reuses finished pieces (--retrain to
# train again).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SATCAP_BIN:-build/satcap}
if [ ! -x "$bin" ]; then
  echo "compare_attention: $bin not found; build first (tools/setup.sh)" >&2
  exit 1
fi

quick=0
args=()
for a in "$@"; do
  if [ "$a" = "--quick" ]; then quick=1; else args+=("$a"); fi
done

if [ "$quick" = 1 ]; then
  exec "$bin" compare --quick --out out/compare-quick "${args[@]}"
fi

# The full run: 2000 scenes (1600 train, 200 val, 200 test), the paper's batch (64) and widths
# halved for a CPU (256), 12 epochs of both models, beam 3.
exec "$bin" compare --out out/compare \
  --scenes 2000 --objects shapes --scenes-seed 1 \
  --epochs 12 --batch 64 --lr 4e-4 --hidden-dim 256 --embed-dim 256 --attention-dim 256 \
  --val-max-images 200 --seed 1 --min-word-count 5 \
  --beam 3 --max-len 20 \
  "${args[@]}"
