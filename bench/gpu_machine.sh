#!/usr/bin/env bash
# Every GPU-machine measurement, in two commands that each fit the device tool's 10-minute limit (15 minutes of
# device time in all, a cold start included), each part time-boxed, its output kept under $OUT (the device tool
# brings that folder back). The GPU machine has no Node and no network: prepare here, from the project root, after
# npm ci (and apt-get update, for pack.sh's loader packages):
#   bash bench/gpu-pack.sh
#   mkdir -p bench/out/gpu && cp "$CHARLM_TINYSHAKESPEARE" bench/out/gpu/   (and an export for the torch part, see
#   bench/gpu_torch_continue.sh)
# then run there, with .gpu and bench/out/gpu carried:
#   PART=bench bash bench/gpu_machine.sh     (~6 min) the profile of a training step (bench/gpu.ts --profile: host
#                                            vs GPU time, GPU time per kernel; PROFILE_ONLY=1 stops after it), then
#                                            throughput against PyTorch CUDA in every kernel variant, the GPT
#                                            workload, generation, wasm on the CPU
#   PART=kernels bash bench/gpu_machine.sh   (~1.5 min) the recurrent step kernels alone in every combination of
#                                            their settings, and the weight gradients' split-K targets
#                                            (bench/gpu_kernels.ts); the fastest settings per shape go to
#                                            $OUT/kernels.json, which the bench's "tuned" variant and the quality
#                                            runs then use (CHARLM_WEBGPU_KERNELS)
#   PART=quality bash bench/gpu_machine.sh   (~6 min) the gpu preset's best validation loss in QUALITY_SECONDS
#                                            (300), in the layout the bench found fastest for W2 at batch 64 (read from
#                                            bench/out/gpu-last.json, which the bench part leaves on the machine);
#                                            QUALITY_SET="dropout=0.4,..." changes the recipe (bench/gpu_quality.ts);
#                                            QUALITY_AVERAGES="0.995,0.998" also judges weight averages of each run
#   PART=all ... (at most ALL_SECONDS, 590)  the kernels (T_KERNELS), the bench (T_BENCH), then the quality run, then one per recipe in
#                                            QUALITY_SWEEP ("dropout=0.35;lr=3e-3"), then the profile, in the time
#                                            left: one command, one machine start, when the budget is 15 minutes
#   PART=compare bash bench/gpu_machine.sh   (~4 min) the large products in every tile variant (gpu_kernels.ts
#                                            --products-only), then W1, W2 and W3's training against PyTorch in the
#                                            defaults and on a device without Dawn's robustness transforms
#                                            (enable-dawn-features=disable_robustness) and (where the products'
#                                            fastest variant is 128p or 128d) the defaults with that variant for the
#                                            large products (CHARLM_WEBGPU_MATMUL=auto-128p), each ROUNDS (3) times
#                                            in turn (bench/gpu.ts --compare --rounds), then generation at batch 1 for
#                                            W1, W2 and W3 (T_GEN, 60: a kernel per layer a character, the default,
#                                            against bursts in one kernel, the step route and reading the logits
#                                            back, gpu-gen.txt; with GEN_ARGS=--profile-generation also where a
#                                            character's time goes), and between the two wasm on the
#                                            machine's cores for W1 and W2 (T_WASM, 45: the "x wasm" of the
#                                            issue's target, in the same command); no quality run
# QUALITY_AUTO=1 keeps the backend's default kernels for the quality runs instead of the bench's fastest.
# Opt-in extras: THREADS=1 (wasm thread scaling), TORCH=1 (PyTorch continuing an export, gpu_torch_continue.sh).
# TINY=1 runs the same plumbing here on SwiftShader at toy sizes (with PART=compare: that part's).
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
if [ "${TINY:-0}" = 1 ] && [ "${PART:-}" = compare ]; then
  # PART=compare's plumbing at toy sizes: the products alone, then the bench's --compare rounds (128d as the variant)
  timeout 120 node .gpu/app/gpu_kernels.mjs --tiny --products-only --json "$out/kernels-all.json" 2>&1 | tee "$out/kernels.txt"
  CHARLM_BENCH_MATMUL=auto-128d timeout 300 node .gpu/app/gpu.mjs --tiny --compare --rounds 2 --training-only \
    --json "$out/gpu-bench.json" 2>&1 | tee "$out/gpu-bench.txt"
  timeout 120 node .gpu/app/gpu.mjs --tiny --wasm-only --against "$out/gpu-bench.json" 2>&1 | tee -a "$out/gpu-bench.txt"
  timeout 120 node .gpu/app/gpu.mjs --tiny --generation-only --profile-generation --json "$out/gpu-gen.json" 2>&1 |
    tee "$out/gpu-gen.txt"
  exit 0
fi
if [ "${TINY:-0}" = 1 ]; then
  timeout 300 node .gpu/app/gpu_kernels.mjs --tiny --table "$out/kernels.json" --json "$out/kernels-all.json" 2>&1 | tee "$out/kernels.txt"
  # the profile with the table it wrote (the tuned variant), the bench with its fixed list of variants
  CHARLM_WEBGPU_KERNELS=$(cat "$out/kernels.json") timeout 120 node .gpu/app/gpu.mjs --tiny --profile 2>&1 | tee "$out/profile.txt"
  [ "${PROFILE_ONLY:-0}" = 1 ] && exit 0
  timeout 300 node .gpu/app/gpu.mjs --tiny --json "$out/gpu-bench.json" 2>&1 | tee "$out/gpu-bench.txt"
  timeout 120 node .gpu/app/_threads_main.mjs --threads 1,2 --steps 1 --only 1 2>&1 | tee "$out/threads.txt"
  timeout 60 node .gpu/app/gpu_quality.mjs --seconds 1 --backend wasm 2>&1 | head -3 | tee "$out/quality.txt"
  exit 0
fi
profile() {
  # shellcheck disable=SC2086 # PROFILE_ARGS: e.g. --only W2,W3 (the GPT is profiled only when named)
  (tuned && timeout "${1:-120}" node .gpu/app/gpu.mjs --profile ${PROFILE_ARGS:-} 2>&1 | tee "$out/profile.txt")
}
kernels() {
  timeout "${T_KERNELS:-150}" node .gpu/app/gpu_kernels.mjs --table "$out/kernels.json" --json "$out/kernels-all.json" \
    --matmul bench/out/gpu-matmul.txt 2>&1 | tee "$out/kernels.txt"
  cp "$out/kernels.json" bench/out/gpu-kernels.json 2>/dev/null || true
}
# The table kernels() wrote (in this command, or in an earlier one on the same machine: bench/out stays), for the
# bench's and the profile's "tuned" variant and, where that trained W2 fastest, the quality runs; an explicit
# CHARLM_WEBGPU_KERNELS wins.
tuned() {
  if [ -z "${CHARLM_WEBGPU_KERNELS:-}" ] && [ -s bench/out/gpu-kernels.json ]; then
    CHARLM_WEBGPU_KERNELS=$(cat bench/out/gpu-kernels.json)
    export CHARLM_WEBGPU_KERNELS
  fi
  # the products' fastest tile variant there, for the bench's "tuned, matmul ..." variant
  if [ -z "${CHARLM_BENCH_MATMUL:-}" ] && [ -s bench/out/gpu-matmul.txt ]; then
    CHARLM_BENCH_MATMUL=$(cat bench/out/gpu-matmul.txt)
    export CHARLM_BENCH_MATMUL
  fi
  return 0
}
bench() {
  # shellcheck disable=SC2086 # BENCH_ARGS: more options for bench/gpu.ts, e.g. --only W1,W2
  (tuned && timeout "${T_BENCH:-300}" node .gpu/app/gpu.mjs --json "$out/gpu-bench.json" ${BENCH_ARGS:-} 2>&1 | tee "$out/gpu-bench.txt")
  cp "$out/gpu-bench.json" bench/out/gpu-last.json 2>/dev/null || true
}
quality() { # [output name] [seconds] [config fields]
  # The layout that trained W2 at batch 64 (nearest the gpu preset's 32) fastest in the bench part, if it ran here.
  if [ -f bench/out/gpu-last.json ] && [ -z "${CHARLM_WEBGPU_RECURRENT:-}" ] && [ -z "${QUALITY_AUTO:-}" ]; then
    eval "$(node -e '
      const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).results
        .filter((x) => x.workload === "W2" && x.B === 64).sort((a, b) => b.charsPerSec - a.charsPerSec)[0];
      if (r) for (const [k, v] of Object.entries(r.layout)) console.log(`export ${k}='\''${v}'\''`);
    ' bench/out/gpu-last.json 2>/dev/null || true)"
  fi
  local name=${1:-quality} seconds=${2:-${QUALITY_SECONDS:-300}} fields=${3:-${QUALITY_SET:-}}
  echo "$name run: CHARLM_WEBGPU_RECURRENT=${CHARLM_WEBGPU_RECURRENT:-auto} CHARLM_WEBGPU_ROWS=${CHARLM_WEBGPU_ROWS:-auto}" \
    "CHARLM_WEBGPU_SPLIT=${CHARLM_WEBGPU_SPLIT:-auto} CHARLM_WEBGPU_UNITS=${CHARLM_WEBGPU_UNITS:-auto}" \
    "CHARLM_WEBGPU_SPLITK=${CHARLM_WEBGPU_SPLITK:-auto} CHARLM_WEBGPU_WIDE=${CHARLM_WEBGPU_WIDE:-0}" \
    "CHARLM_WEBGPU_PREFETCH=${CHARLM_WEBGPU_PREFETCH:-0} CHARLM_WEBGPU_AHEAD=${CHARLM_WEBGPU_AHEAD:-0} CHARLM_WEBGPU_VEC4=${CHARLM_WEBGPU_VEC4:-0} CHARLM_WEBGPU_KERNELS=${CHARLM_WEBGPU_KERNELS:+the table}" | tee -a "$out/gpu.txt"
  set -- --seconds "$seconds"
  [ -n "$fields" ] && set -- "$@" --set "$fields"
  [ -n "${QUALITY_AVERAGES:-}" ] && set -- "$@" --averages "$QUALITY_AVERAGES"
  timeout "${T_QUALITY:-$((seconds + 60))}" node .gpu/app/gpu_quality.mjs "$@" 2>&1 | tee -a "$out/$name.txt"
}
case "${PART:-bench}" in
  kernels) kernels ;;
  bench)
    profile "${T_PROFILE:-120}"
    [ "${PROFILE_ONLY:-0}" = 1 ] && exit 0
    bench
    ;;
  quality) quality ;;
  compare)
    timeout "${T_KERNELS:-60}" node .gpu/app/gpu_kernels.mjs --products-only --json "$out/kernels-all.json" \
      --matmul bench/out/gpu-matmul.txt 2>&1 | tee "$out/kernels.txt"
    fastest=$(cat bench/out/gpu-matmul.txt 2>/dev/null || true)
    # 128v is auto's own since stop 23: only another large variant is worth a column
    case "$fastest" in 128p | 128d) export CHARLM_BENCH_MATMUL=auto-$fastest ;; esac
    # shellcheck disable=SC2086 # BENCH_ARGS: more options for bench/gpu.ts
    timeout "${T_BENCH:-330}" node .gpu/app/gpu.mjs --compare --rounds "${ROUNDS:-3}" --training-only \
      --json "$out/gpu-bench.json" ${BENCH_ARGS:-} 2>&1 | tee "$out/gpu-bench.txt"
    # wasm on the machine's cores, its "x wasm" against the figures just taken (appended: the device tool brings
    # back 8 files a call)
    timeout "${T_WASM:-45}" node .gpu/app/gpu.mjs --wasm-only --against "$out/gpu-bench.json" 2>&1 |
      tee -a "$out/gpu-bench.txt"
    # shellcheck disable=SC2086 # GEN_ARGS: e.g. --profile-generation (where a character's time goes)
    timeout "${T_GEN:-60}" node .gpu/app/gpu.mjs --generation-only --json "$out/gpu-gen.json" ${GEN_ARGS:-} 2>&1 |
      tee "$out/gpu-gen.txt"
    ;;
  # Everything in one command of at most ALL_SECONDS (590): the bench, the quality run, then the profile in
  # whatever time is left (it explains the bench's figures; the figures come first).
  # QUALITY_SWEEP="dropout=0.35;lr=3e-3,dropout=0.3": more quality runs, one per set of config fields, each with
  # QUALITY_SECONDS or the time left (the gpu preset takes about a minute on an H200), appended to quality.txt (the
  # device tool brings back 8 files a call: a ninth, quality-sweep.txt, would cost the main run's output).
  all)
    kernels
    bench
    # the main quality run takes QUALITY_SECONDS or what is left of ALL_SECONDS, its test loss included
    left=$((${ALL_SECONDS:-590} - SECONDS - 45))
    seconds=${QUALITY_SECONDS:-300}
    [ "$left" -gt 30 ] && T_QUALITY=$((left + 40)) quality quality $((left < seconds ? left : seconds))
    IFS=';' read -r -a sweep <<<"${QUALITY_SWEEP:-}"
    for fields in "${sweep[@]}"; do
      left=$((${ALL_SECONDS:-590} - SECONDS - 30))
      [ "$left" -gt 60 ] || break
      seconds=${QUALITY_SECONDS:-300}
      T_QUALITY=$((left + 25)) quality quality $((left < seconds ? left : seconds)) "$fields"
    done
    left=$((${ALL_SECONDS:-590} - SECONDS))
    [ "$left" -gt 20 ] && profile "$left"
    ;;
esac
if [ "${THREADS:-0}" = 1 ]; then
  timeout "${T_THREADS:-130}" node .gpu/app/_threads_main.mjs --threads 1,2,4,8,16 --torch 2>&1 | tee "$out/threads.txt"
fi
if [ "${TORCH:-0}" = 1 ]; then
  STEPS=${TORCH_STEPS:-300} timeout "${T_TORCH:-90}" bash bench/gpu_torch_continue.sh 2>&1 | tee "$out/torch-continue.txt"
fi
