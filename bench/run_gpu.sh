#!/usr/bin/env bash
# The GPU benchmark and GPU test run, for the GPU machine (no MLIR there):
# builds the runtime with CUDA, runs the GPU tests, then times diffc's
# compiled models (artifacts compiled beforehand by bench/prepare.sh into
# .carry/bench/) and PyTorch's baselines in the same call, and prints ratios.
#
# Usage (from the repository root on the GPU machine):
#   bench/run_gpu.sh [OUT_DIR]
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-${OUT:-$ROOT/build-runtime/bench}}"
CARRY="$ROOT/.carry/bench"
mkdir -p "$OUT"
cd "$ROOT"

echo "== build (runtime + CUDA kernels, sm_90a)"
cmake --preset runtime -DDIFFC_ENABLE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a >"$OUT/configure.log" 2>&1 ||
  { tail -30 "$OUT/configure.log"; exit 1; }
cmake --build build-runtime -j 16 --target diffrt-cli diffrt-gpu-tests >"$OUT/build.log" 2>&1 ||
  { grep -E "error|Error" "$OUT/build.log" | head -40; exit 1; }

echo "== GPU tests (each CUDA kernel against the CPU backend)"
./build-runtime/bin/diffrt-gpu-tests --gtest_brief=1 2>&1 | tee "$OUT/gpu-tests.log" | tail -25

echo "== diffc"
rm -f "$OUT/diffc.json"
for dfx in "$CARRY"/*.dfx; do
  label="$(basename "$dfx" .dfx)"
  ./build-runtime/bin/diffrt bench "$dfx" --device cuda --iterations 20 --warmup 5 \
    --label "$label" --json "$OUT/diffc.json" 2>&1 | tee -a "$OUT/diffc.log"
done

echo "== PyTorch baselines (same GPU, same call)"
rm -f "$OUT/torch.json"
python3 "$CARRY/torch_baselines.py" --json "$OUT/torch.json" $(cat "$CARRY/torch_cases.txt") \
  >"$OUT/torch.log" 2>&1 || tail -20 "$OUT/torch.log"
python3 "$ROOT/bench/ratios.py" "$OUT/diffc.json" "$OUT/torch.json" "$CARRY/pairs.txt" | tee "$OUT/ratios.txt"
