#!/usr/bin/env bash
# The main job on the shipped sample, with the embedded default encoder.
set -euo pipefail
cd "$(dirname "$0")/.."
build/satcap encode datasets/samples/*.jpg --json
