#!/usr/bin/env bash
# The GPU benchmark and GPU test run, for the GPU machine (no MLIR there):
# builds the runtime with CUDA, runs the GPU tests, then times diffc's
# compiled models (artifacts compiled beforehand by bench/prepare.sh into
# .carry/bench/) and PyTorch's baselines in the same call, and prints ratios.
#
# Usage (from the repository root on the GPU machine):
#   bench/run_gpu.sh [OUT_DIR]
# STAGES (default "build tests bench samples torch"; also "train": training
# steps against PyTorch's (TRAIN_PROFILE=1 adds per-kernel profiles),
# "fmnist": train the Fashion-MNIST model on the GPU)
# selects what runs, so the work can be split over device calls; ratios need
# bench and torch (or train) in one call.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-${OUT:-$ROOT/build-runtime/bench}}"
CARRY="$ROOT/.carry/bench"
mkdir -p "$OUT"
cd "$ROOT"

STAGES="${STAGES:-build tests bench samples torch}"
has() { [[ " $STAGES " == *" $1 "* ]]; }

if has build; then
echo "== build (runtime + CUDA kernels, sm_90a)"
cmake --preset runtime -DDIFFC_ENABLE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a >"$OUT/configure.log" 2>&1 ||
  { tail -30 "$OUT/configure.log"; exit 1; }
cmake --build build-runtime -j 16 --target diffrt-cli diffrt-gpu-tests >"$OUT/build.log" 2>&1 ||
  { grep -E "error|Error" "$OUT/build.log" | head -40; exit 1; }
fi

if has tests; then
echo "== GPU tests (each CUDA kernel against the CPU backend)"
DIFFRT_FAMILY_ARTIFACTS="$CARRY/family" ./build-runtime/bin/diffrt-gpu-tests --gtest_brief=1 \
  >"$OUT/gpu-tests.log" 2>&1
grep -E "^\[  (PASSED|FAILED|SKIPPED)|FAILED|relative L2|Failure|TFLOP" "$OUT/gpu-tests.log" | tail -60
fi

if has bench; then
echo "== diffc"
rm -f "$OUT/diffc.json"
for dfx in "$CARRY"/*.dfx; do
  label="$(basename "$dfx" .dfx)"
  ./build-runtime/bin/diffrt bench "$dfx" --device cuda --iterations 20 --warmup 5 \
    --label "$label" --json "$OUT/diffc.json" 2>&1 | tee -a "$OUT/diffc.log"
done
fi

if has samples; then
echo "== whole sampling runs (32 images with guidance, host sampler) and the trained Fashion-MNIST model"
D=./build-runtime/bin/diffrt
$D bench "$CARRY/dit-xl-2_b64.dfx" --device cuda --sample ddpm:250 --cfg 1.5 --json "$OUT/diffc.json"
$D bench "$CARRY/dit-moe-xl-2-8e2a_b64.dfx" --device cuda --sample rf:50 --cfg 7 --json "$OUT/diffc.json"
$D bench "$CARRY/dig-s-2_b64.dfx" --device cuda --sample ddpm:250 --cfg 1.5 --json "$OUT/diffc.json"
$D bench "$CARRY/microdit-xl-2_b64.dfx" --device cuda --sample edm:30 --cfg 5 --json "$OUT/diffc.json"
$D sample "$CARRY/samples/dit-moe-fmnist_b20.dfx" --weights models/dit-moe-fmnist.safetensors \
  --device cuda --sampler ddpm:250 --cfg 3 --seed 1 --columns 10 --zoom 3 --quiet -o "$OUT/fmnist-gpu.png"
fi

if has train; then
echo "== training steps (bf16, batch 32) against PyTorch's in the same call"
rm -f "$OUT/train.json" "$OUT/torch_train.json" "$OUT/torch_train.log"
for dfx in "$CARRY"/train/*_b32.dfx; do
  label="$(basename "$dfx" .dfx)"
  ./build-runtime/bin/diffrt bench "$dfx" --device cuda --iterations 10 --warmup 3 \
    --label "$label" --json "$OUT/train.json" ${TRAIN_PROFILE:+--profile} 2>&1 | tee -a "$OUT/train.log"
done
i=0
while read -r cases; do
  i=$((i + 1))
  timeout "${TORCH_TIMEOUT:-240}" python3 "$CARRY/torch_baselines.py" --json "$OUT/torch_train.$i.json" $cases \
    >>"$OUT/torch_train.log" 2>&1 || echo "torch training baselines line $i failed or timed out: $cases"
done <"$CARRY/torch_train_cases.txt"
python3 - "$OUT" <<'PY'
import glob, json, sys
rows = []
for f in sorted(glob.glob(sys.argv[1] + "/torch_train.*.json")):
    rows += json.load(open(f))
json.dump(rows, open(sys.argv[1] + "/torch_train.json", "w"), indent=1)
PY
python3 "$ROOT/bench/ratios.py" "$OUT/train.json" "$OUT/torch_train.json" "$CARRY/train_pairs.txt" | tee "$OUT/train_ratios.txt"
fi

if has fmnist; then
echo "== the Fashion-MNIST model trained on the GPU (bf16), then sampled"
FM_STEPS="${FM_STEPS:-12000}"
rm -rf "$OUT/fmnist-run"
./build-runtime/bin/diffrt train "$CARRY/train/dit-moe-fmnist_train_b64.dfx" --device cuda \
  --data "fashion-mnist:$CARRY/fashion-mnist" --steps "$FM_STEPS" --lr 5e-4 --ema-decay 0.9995 \
  --grad-clip 1 --seed 1 --log-every 1000 --save-every "$FM_STEPS" --ckpt-dir "$OUT/fmnist-run" 2>&1 | tail -15
./build-runtime/bin/diffrt sample "$CARRY/samples/dit-moe-fmnist_b20.dfx" --weights "$OUT/fmnist-run/weights.safetensors" \
  --device cuda --sampler ddpm:250 --cfg 3 --seed 1 --columns 10 --zoom 3 --quiet -o "$OUT/fmnist-gpu-trained.png"
fi

if has torch; then
echo "== PyTorch baselines (same GPU, same call)"
rm -f "$OUT/torch.json" "$OUT/torch.log"
i=0
while read -r cases; do
  i=$((i + 1))
  timeout "${TORCH_TIMEOUT:-240}" python3 "$CARRY/torch_baselines.py" --json "$OUT/torch.$i.json" $cases \
    >>"$OUT/torch.log" 2>&1 || echo "torch baselines line $i failed or timed out: $cases"
done <"$CARRY/torch_cases.txt"
python3 - "$OUT" <<'PY'
import glob, json, sys
rows = []
for f in sorted(glob.glob(sys.argv[1] + "/torch.*.json")):
    rows += json.load(open(f))
json.dump(rows, open(sys.argv[1] + "/torch.json", "w"), indent=1)
PY
python3 "$ROOT/bench/ratios.py" "$OUT/diffc.json" "$OUT/torch.json" "$CARRY/pairs.txt" | tee "$OUT/ratios.txt"
fi
