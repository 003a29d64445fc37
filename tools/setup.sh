#!/usr/bin/env bash
# Installs what diffc needs on Debian 12 (idempotent, no prompts) and builds
# it with the release preset. Sourced by tools/quickstart.sh and tools/test.sh.
set -euo pipefail

DIFFC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGES=(
  cmake ninja-build clang-19 lld g++ python3
  libmlir-19-dev mlir-19-tools llvm-19-dev llvm-19-tools
  libgtest-dev libgmock-dev libtorch-dev
  libopenblas-dev libopenblas0-pthread nlohmann-json3-dev zlib1g-dev
  dataset-fashion-mnist
)

diffc_install() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "diffc: installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  # CUDA 13 comes with the machine image; put nvcc on PATH when it is there.
  if [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH="/usr/local/cuda/bin:$PATH"
  fi
}

diffc_build() {
  cd "$DIFFC_ROOT"
  cmake --preset release >/dev/null
  cmake --build --preset release -j "$(nproc)"
}
