#!/usr/bin/env bash
# README command 2 (and .ci/run): install what is missing, build, run every test, then compile every
# source against LibTorch 2.x's headers (tools/check_libtorch2.sh; official LibTorch 2.x users
# build satcap with those, and no test here can link against them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
(cd build && ctest --output-on-failure --parallel "$(nproc)" --timeout 1500)
bash tools/check_libtorch2.sh build
