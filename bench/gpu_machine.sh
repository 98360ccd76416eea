#!/usr/bin/env bash
# Every GPU-machine measurement in one command, each part time-boxed, its output kept under $OUT (the device tool
# brings that folder back). The GPU machine has no Node and no network: prepare here, from the project root, after
# npm ci (and apt-get update, for pack.sh's loader packages):
#   bash bench/gpu-pack.sh
#   mkdir -p bench/out/gpu && cp "$CHARLM_TINYSHAKESPEARE" bench/out/gpu/   (and an export for the torch part, see
#   bench/gpu_torch_continue.sh)
# then run `bash bench/gpu_machine.sh` there with .gpu and bench/out/gpu carried. TINY=1 runs the same plumbing here
# on SwiftShader at toy sizes. First comes the profile of a training step (bench/gpu.ts --profile: host vs GPU time,
# GPU time per kernel) into $out/profile.txt; PROFILE_ONLY=1 stops after it. The default time boxes add up to 650 s,
# more than one 600 s device command: lower some (T_BENCH, T_THREADS, T_QUALITY, T_TORCH) or run parts apart.
set -u
out=${OUT:-bench/out/gpu-run}
mkdir -p "$out"
. .gpu/setup.sh
# setup.sh falls back to SwiftShader when the NVIDIA Vulkan driver's manifest is not where it looks: find it, or
# write one for the driver's library if the driver is there without it.
if [ "${TINY:-0}" != 1 ] && [[ "${VK_ICD_FILENAMES:-}" != *nvidia* ]]; then
  icd=$(find / -name 'nvidia_icd*.json' -not -path '/proc/*' 2>/dev/null | head -n 1)
  if [ -z "$icd" ] && ldconfig -p | grep -q 'libGLX_nvidia.so.0'; then
    icd=/tmp/nvidia_icd.json
    echo '{"file_format_version":"1.0.0","ICD":{"library_path":"libGLX_nvidia.so.0","api_version":"1.3.0"}}' >"$icd"
  fi
  [ -n "$icd" ] && export VK_ICD_FILENAMES=$icd VK_DRIVER_FILES=$icd
  echo "Vulkan driver: ${VK_ICD_FILENAMES:-none}"
fi
export CHARLM_WASM_DIR=$PWD/.gpu/app CHARLM_TINYSHAKESPEARE=$PWD/bench/out/gpu/tinyshakespeare.txt
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi") 2>&1 | tee "$out/gpu.txt"
lscpu | grep -E "Model name|^CPU\(s\)" | tee -a "$out/gpu.txt"
if [ "${TINY:-0}" = 1 ]; then
  timeout 120 node .gpu/app/gpu.mjs --tiny --profile 2>&1 | tee "$out/profile.txt"
  [ "${PROFILE_ONLY:-0}" = 1 ] && exit 0
  timeout 300 node .gpu/app/gpu.mjs --tiny 2>&1 | tee "$out/gpu-bench.txt"
  timeout 120 node .gpu/app/_threads_main.mjs --threads 1,2 --steps 1 --only 1 2>&1 | tee "$out/threads.txt"
  timeout 60 node .gpu/app/gpu_quality.mjs --seconds 1 --backend wasm 2>&1 | head -3 | tee "$out/quality.txt"
  exit 0
fi
timeout "${T_PROFILE:-90}" node .gpu/app/gpu.mjs --profile 2>&1 | tee "$out/profile.txt"
[ "${PROFILE_ONLY:-0}" = 1 ] && exit 0
timeout "${T_BENCH:-170}" node .gpu/app/gpu.mjs 2>&1 | tee "$out/gpu-bench.txt"
timeout "${T_THREADS:-130}" node .gpu/app/_threads_main.mjs --threads 1,2,4,8,16 --torch 2>&1 | tee "$out/threads.txt"
timeout "${T_QUALITY:-170}" node .gpu/app/gpu_quality.mjs --seconds "${QUALITY_SECONDS:-130}" 2>&1 | tee "$out/quality.txt"
STEPS=${TORCH_STEPS:-300} timeout "${T_TORCH:-90}" bash bench/gpu_torch_continue.sh 2>&1 | tee "$out/torch-continue.txt"
