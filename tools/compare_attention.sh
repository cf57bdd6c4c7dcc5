#!/usr/bin/env bash
# Soft against hard attention (Xu et al. 2015, Table 1's question, with attention pointing added):
# generates a synthetic scenes dataset (object boxes known), prepares its features once with the
# default encoder, trains a soft- and a hard-attention decoder with the same options, budget and
# seed, evaluates both on the test split and prints one table (BLEU-1..4, ROUGE-L, CIDEr, pointing,
# attention entropy, training time). Everything is `satcap compare` (lib/include/satcap/compare.h);
# this script only fixes the settings of the reported run.
#
#   tools/compare_attention.sh            the full run      -> out/compare/
#   tools/compare_attention.sh --quick    a smoke run (minutes; checks the pipeline, not attention) -> out/compare-quick/
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

# The full run: 5,000 scenes (4,000 train, 500 val, 500 test images), the options of
# tools/scenes_training.json for both models (the default model's: widths 128/128/256, batch 64,
# Adam 2e-3, 6 epochs), beam 3 at evaluation. On two cores the two trainings run as two processes
# of one thread each (about 30 min on an idle machine), then one process evaluates both and draws
# the figure. PARALLEL=0 trains them one after the other instead (the default when other options
# are given, since --data or --scenes change what the parallel runs would share).
full=(--out out/compare --scenes 5000 --objects shapes --scenes-seed 1 --config tools/scenes_training.json
      --beam 3 --max-len 30 "${args[@]}")
parallel=${PARALLEL:-$([ ${#args[@]} -eq 0 ] && echo 1 || echo 0)}
if [ "$parallel" = 1 ]; then
  # The scenes and the shared feature store first (what compare would do), so that the two
  # training processes only read them.
  mkdir -p out/compare
  [ -f out/compare/scenes/captions.json ] || "$bin" scenes --out out/compare/scenes --images 5000 --seed 1 --force
  "$bin" prepare --data out/compare/scenes --out out/compare/features --encoder mobilenet_v2
  "$bin" --threads 1 compare "${full[@]}" --attention soft > out/compare-soft.log 2>&1 &
  soft=$!
  "$bin" --threads 1 compare "${full[@]}" --attention hard > out/compare-hard.log 2>&1 &
  hard=$!
  wait "$soft" || { tail -5 out/compare-soft.log >&2; exit 1; }
  wait "$hard" || { tail -5 out/compare-hard.log >&2; exit 1; }
fi
exec "$bin" compare "${full[@]}"
