#!/usr/bin/env bash
# The main job (README command 1): captions the shipped samples (datasets/samples/) with the
# embedded default model (models/default) and shows where each word looked: one overlay PNG per
# word, a figure and a video per image under out/overlays/, and one HTML page, out/gallery.html.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p out
build/satcap caption datasets/samples --beam 3 --alternatives 3 \
  --overlay-dir out/overlays --video --html out/gallery.html --format json --out out/captions.json
build/satcap caption datasets/samples --beam 3 -q
echo
echo "captions (json, with attention rows): $PWD/out/captions.json"
echo "per-word overlays, figures, videos:   $PWD/out/overlays/"
echo "gallery (open in a browser):          $PWD/out/gallery.html"
