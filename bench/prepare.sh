#!/usr/bin/env bash
# Compiles the benchmark models for the GPU (CUDA target, f16) into
# .carry/bench/ with the cases PyTorch runs beside them, so that
# bench/run_gpu.sh can run on a machine without the compiler. Run here,
# after building; then carry .carry in the device call.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIFFC="$ROOT/build/bin/diffc"
CARRY="$ROOT/.carry/bench"
BASELINES="${DIFFC_TORCH_BASELINES:-$ROOT/../shared/bench/torch_baselines.py}"
rm -rf "$CARRY" && mkdir -p "$CARRY"
cp "$BASELINES" "$CARRY/torch_baselines.py"

compile() { # label, zoo name, import options...
  local label="$1" name="$2"; shift 2
  "$DIFFC" import "$name" "$@" -o "$CARRY/$label.mlir"
  "$DIFFC" compile "$CARRY/$label.mlir" --target cuda --dtype f16 -o "$CARRY/$label.dfx"
  rm "$CARRY/$label.mlir"
}
compile dit-xl-2_b64 dit-xl/2 --batch 64
compile dit-s-2_b64 dit-s/2 --batch 64
compile dit-b-2_b64 dit-b/2 --batch 64
compile dit-moe-s-2-8e2a_b64 dit-moe-s/2-8e2a --batch 64
compile dit-moe-xl-2-8e2a_b64 dit-moe-xl/2-8e2a --batch 64
compile dig-s-2_b64 dig-s/2 --batch 64
compile microdit-xl-2_b64 microdit-xl/2 --batch 64
# DiG against DiT of the same size as the resolution grows (latent = px / 8).
compile dit-s-2_1024px_b4 dit-s/2 --batch 4 --latent-size 128
compile dig-s-2_1024px_b4 dig-s/2 --batch 4 --latent-size 128
compile dit-s-2_2048px_b1 dit-s/2 --batch 1 --latent-size 256
compile dig-s-2_2048px_b1 dig-s/2 --batch 1 --latent-size 256

# The shipped Fashion-MNIST model, sampled on the GPU by run_gpu.sh's
# "samples" stage with models/dit-moe-fmnist.safetensors.
mkdir -p "$CARRY/samples"
"$DIFFC" import dit-moe-fmnist --batch 20 -o "$CARRY/samples/fmnist.mlir"
"$DIFFC" compile "$CARRY/samples/fmnist.mlir" --target cuda --dtype f16 -o "$CARRY/samples/dit-moe-fmnist_b20.dfx"
rm "$CARRY/samples/fmnist.mlir"

# Tiny models of every family for the GPU-against-CPU end-to-end tests
# (runtime/tests/gpu/FamilyGpuTest.cpp reads them from $CARRY/family).
mkdir -p "$CARRY/family"
family() { # name, zoo name, import options...
  local name="$1" zoo="$2"; shift 2
  local m="$CARRY/family/$name.mlir"
  "$DIFFC" import "$zoo" "$@" -o "$m"
  "$DIFFC" compile "$m" -o "$CARRY/family/$name.cpu.dfx" 2>/dev/null
  "$DIFFC" compile "$m" --target cuda --dtype f32 -o "$CARRY/family/$name.cuda32.dfx" 2>/dev/null
  "$DIFFC" compile "$m" --target cuda --dtype f16 -o "$CARRY/family/$name.cuda16.dfx" 2>/dev/null
  # Training steps (runtime/tests/gpu/TrainGpuTest.cpp), each family's objective.
  "$DIFFC" compile "$m" --mode train -o "$CARRY/family/$name.train.cpu.dfx" 2>/dev/null
  "$DIFFC" compile "$m" --mode train --target cuda --dtype f32 -o "$CARRY/family/$name.train.cuda32.dfx" 2>/dev/null
  "$DIFFC" compile "$m" --mode train --target cuda --dtype bf16 -o "$CARRY/family/$name.train.cudabf16.dfx" 2>/dev/null
  "$DIFFC" compile "$m" --mode train --target cuda --dtype f16 -o "$CARRY/family/$name.train.cudaf16.dfx" 2>/dev/null
  rm "$m"
}
family dit dit-s/2 --depth 2 --hidden 128 --heads 2 --latent-size 16 --num-classes 10 --batch 4
family ditmoe dit-moe-s/2-8e2a --depth 2 --hidden 128 --heads 2 --latent-size 16 --num-classes 10 --experts 8 --batch 4
family ditmoe_qk dit-moe-xl/2-8e2a --depth 2 --hidden 144 --heads 2 --latent-size 16 --num-classes 10 --experts 8 --batch 4
family dig dig-s/2 --depth 4 --hidden 128 --heads 2 --latent-size 16 --num-classes 10 --batch 4
family microdit microdit-tiny/2 --depth 4 --hidden 128 --head-dim 32 --mixer-depth 2 --mixer-hidden 96 --caption-channels 64 --caption-tokens 77 --latent-size 16 --experts 8 --batch 4
family microdit_masked microdit-tiny/2 --depth 4 --hidden 128 --head-dim 32 --mixer-depth 2 --mixer-hidden 96 --caption-channels 64 --caption-tokens 77 --latent-size 16 --experts 8 --batch 4 --mask-ratio 0.75

# Training steps (bf16, batch 32, the issue's benchmark), timed by run_gpu.sh's
# "train" stage against torch_baselines.py MODEL:train in the same call.
mkdir -p "$CARRY/train"
train() { # label, zoo name, import options... (REMAT=norms,products to recompute)
  local label="$1" name="$2"; shift 2
  "$DIFFC" import "$name" "$@" -o "$CARRY/train/$label.mlir"
  "$DIFFC" compile "$CARRY/train/$label.mlir" --mode train --target cuda --dtype bf16 --remat "${REMAT:-none}" \
    -o "$CARRY/train/$label.dfx"
  rm "$CARRY/train/$label.mlir"
}
train dit-xl-2_train_b32 dit-xl/2 --batch 32
REMAT=norms,products train dit-xl-2-remat_train_b32 dit-xl/2 --batch 32
train dit-moe-s-2-8e2a_train_b32 dit-moe-s/2-8e2a --batch 32
train dit-moe-b-2-8e2a_train_b32 dit-moe-b/2-8e2a --batch 32
# The Fashion-MNIST model trained on the GPU by the "fmnist" stage, with the
# dataset carried along (the GPU machine has no Debian package).
train dit-moe-fmnist_train_b64 dit-moe-fmnist --batch 64
mkdir -p "$CARRY/fashion-mnist"
cp /usr/share/datasets/fashion-mnist/train-*.gz "$CARRY/fashion-mnist/"
cat >"$CARRY/torch_train_cases.txt" <<'CASES'
--case dit-xl/2:train --variants eager,compile
--case dit-moe-s/2-8e2a:train --case dit-moe-b/2-8e2a:train --variants grouped
--case attention:72:256 --case attention:64:256
CASES
cat >"$CARRY/train_pairs.txt" <<'PAIRS'
dit-xl-2_train_b32 dit-xl/2:train compile 0.67 DiT-XL/2 training step, batch 32, bf16
dit-xl-2_train_b32 dit-xl/2:train eager - DiT-XL/2 training step vs eager
dit-xl-2-remat_train_b32 dit-xl/2:train compile 0.67 DiT-XL/2 training step, norms and products recomputed
dit-moe-s-2-8e2a_train_b32 dit-moe-s/2-8e2a:train grouped 0.5 DiT-MoE-S/2-8E2A training step vs grouped-GEMM PyTorch
dit-moe-b-2-8e2a_train_b32 dit-moe-b/2-8e2a:train grouped 0.5 DiT-MoE-B/2-8E2A training step vs grouped-GEMM PyTorch
PAIRS

# One torch_baselines.py invocation per line: cases and variants.
cat >"$CARRY/torch_cases.txt" <<'CASES'
--case dit-xl/2:sample --variants eager,compile
--case dit-moe-s/2-8e2a:sample --variants compile,grouped
--case dig-s/2:sample --variants compile
--case dit-moe-xl/2-8e2a:sample --variants grouped
--case dit-s/2:sample --case dit-b/2:sample --variants compile
--case attention:72:256 --case attention:64:256 --case attention:72:1024
CASES
# diffc label, PyTorch case, PyTorch variant, target ratio (diffc / PyTorch), what
cat >"$CARRY/pairs.txt" <<'PAIRS'
dit-xl-2_b64 dit-xl/2:sample compile 0.75 DiT-XL/2 forward, 64 latents, fp16
dit-xl-2_b64 dit-xl/2:sample eager - DiT-XL/2 forward vs eager
dit-s-2_b64 dit-s/2:sample compile - DiT-S/2 forward
dit-b-2_b64 dit-b/2:sample compile - DiT-B/2 forward
dit-moe-s-2-8e2a_b64 dit-moe-s/2-8e2a:sample compile 0.5 DiT-MoE-S/2-8E2A forward
dit-moe-s-2-8e2a_b64 dit-moe-s/2-8e2a:sample grouped - DiT-MoE-S/2-8E2A vs grouped-GEMM PyTorch
dit-moe-xl-2-8e2a_b64 dit-moe-xl/2-8e2a:sample grouped 0.6 DiT-MoE-XL/2-8E2A vs grouped-GEMM PyTorch
dig-s-2_b64 dig-s/2:sample compile 0.25 DiG-S/2 forward
PAIRS
ls -la "$CARRY"
