#!/usr/bin/env bash
# The main job, from a fresh checkout: install, build, then take the
# project's default model (the Fashion-MNIST DiT-MoE of the zoo) through
# the compiler and show what it becomes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
diffc_install
diffc_build

DIFFC="$DIFFC_ROOT/build/bin/diffc"
OUT="${DIFFC_OUT:-$DIFFC_ROOT/build/quickstart}"
mkdir -p "$OUT"
echo
echo "== diffc import dit-moe-fmnist (batch 20: 10 classes with guidance)"
"$DIFFC" import dit-moe-fmnist --batch 20 -o "$OUT/dit-moe-fmnist.mlir"
"$DIFFC" stats "$OUT/dit-moe-fmnist.mlir"
echo
echo "== diffc compile (CPU, f32)"
"$DIFFC" compile "$OUT/dit-moe-fmnist.mlir" --emit=kern-fused -o "$OUT/dit-moe-fmnist.kern.mlir"
echo "  ops of the kernel-level program (dit.split results are views, not kernels):"
grep -o -E '= (kern|dit)\.[a-z_]+' "$OUT/dit-moe-fmnist.kern.mlir" | sed 's/^= //' | sort | uniq -c |
  sort -rn | sed 's/^/  /'
"$DIFFC" compile "$OUT/dit-moe-fmnist.mlir" -o "$OUT/dit-moe-fmnist.dfx"
WEIGHTS="$DIFFC_ROOT/models/dit-moe-fmnist.safetensors"
if [ -f "$WEIGHTS" ]; then
  echo
  echo "== diffc sample: one image per class from the trained weights"
  "$DIFFC" sample "$OUT/dit-moe-fmnist.dfx" --weights "$WEIGHTS" --sampler ddpm:100 --cfg 2.0 \
    --columns 10 --zoom 3 -o "$OUT/fmnist-classes.png"
  echo "diffc: the class grid is $OUT/fmnist-classes.png"
fi
