#!/usr/bin/env bash
# README command 2 (and .ci/run): install what is missing, build, and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
cd build
ctest --output-on-failure --parallel "$(nproc)" --timeout 1500
