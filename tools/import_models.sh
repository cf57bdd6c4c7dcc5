#!/usr/bin/env bash
# Imports the embedded encoders (nsfwjs@4.4.0's MobileNetV2 and InceptionV3, MIT) from
# tools/node/node_modules into models/embedded/<name>/{model.json,weights.bin}.
# Idempotent: a model is re-imported only when missing or older than the npm package.
# Called by tools/setup.sh after `npm ci`.
set -euo pipefail
cd "$(dirname "$0")/.."
pkg=tools/node/node_modules/nsfwjs/package.json
if [ ! -f "$pkg" ]; then
  echo "import_models: $pkg missing; run: (cd tools/node && npm ci)" >&2
  exit 1
fi
for name in mobilenet_v2 inception_v3; do
  out=models/embedded/$name
  if [ -f "$out/model.json" ] && [ -f "$out/weights.bin" ] && [ "$out/model.json" -nt "$pkg" ] && [ "$out/model.json" -nt tools/node/import_nsfwjs.js ]; then
    continue
  fi
  node tools/node/import_nsfwjs.js "$name" "$out"
done
