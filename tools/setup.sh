#!/usr/bin/env bash
# Installs what satcap needs on Debian bookworm (only what is missing), fetches the embedded
# encoder's weights from the npm registry, and builds build/satcap in Release.
#   tools/setup.sh            dependencies + models + build (what tools/quickstart.sh and tools/test.sh call)
#   SATCAP_BUILD_DIR=dir      build elsewhere (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build_dir=${SATCAP_BUILD_DIR:-build}

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------------------------
packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev libgloo-dev libopenblas0-openmp   # LibTorch (CPU) and a fast BLAS for it
  libopencv-dev libjpeg-dev nlohmann-json3-dev libcli11-dev catch2
  darknet                                         # real photographs for the encoder's tests
  dataset-fashion-mnist                           # product photographs for `satcap scenes --objects fashion`
  python3 python3-torch python3-torchvision python3-numpy  # export_encoder.py and the Python benchmarks
  chromium                                        # the gallery page's browser test
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm import the embedded encoder from the npm registry. Many machines carry their own
# Node.js (with its npm) instead of Debian's, and Debian's npm conflicts with it: only install
# Debian's when the commands are missing.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- npm: the embedded encoder's weights (nsfwjs) and TensorFlow.js for the parity check ------
if [ ! -d tools/node/node_modules/nsfwjs ] || [ tools/node/package-lock.json -nt tools/node/node_modules/.package-lock.json ]; then
  log "npm ci in tools/node"
  (cd tools/node && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ -x tools/import_models.sh ]; then
  bash tools/import_models.sh
fi

# --- build -------------------------------------------------------------------------------------
log "building in $build_dir (Release)"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build_dir" --parallel "$(nproc)"
