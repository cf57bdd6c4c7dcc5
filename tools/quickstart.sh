#!/usr/bin/env bash
# README command 1: install what is missing, build, prepare the embedded default model and run
# the main job on the sample shipped in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bash tools/main_job.sh
