#!/usr/bin/env bash
# Installs, builds and runs every test (lit and GoogleTest together through
# ctest). GPU tests skip where no GPU is present.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
diffc_install
diffc_build
cd "$DIFFC_ROOT"
ctest --preset release -j "$(nproc)"
