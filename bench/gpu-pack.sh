#!/usr/bin/env bash
# Packs bench/gpu.ts for the GPU machine into .gpu/ (../shared/gpu/pack.sh: Node, Dawn, the Vulkan loaders, the
# bundle), plus what the bundle finds next to itself there: the PyTorch side (train_torch.py) and the wasm builds
# (the wasm backend's worker threads run source text from the bundle itself). From the project root, after npm ci
# and npm run build:wasm:
#
#   bash bench/gpu-pack.sh
#   then on the GPU machine, with .gpu carried:  . .gpu/setup.sh && node .gpu/app/gpu.mjs
#
# Trying it here first (SwiftShader, tiny sizes): `. .gpu/setup.sh && node .gpu/app/gpu.mjs --tiny`; that unpacks
# Node and Dawn inside .gpu, so run this script again before carrying .gpu (it drops them: 29 MiB travels, 64 can).
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
# pack.sh adds .gpu/ to the git directory's info/exclude, which a linked worktree's git directory lacks
mkdir -p "$(git rev-parse --git-dir)/info"
bash ../shared/gpu/pack.sh bench/gpu.ts bench/gpu_kernels.ts bench/_threads_main.ts bench/gpu_quality.ts
ls build/kernels.wasm >/dev/null 2>&1 || { echo "gpu-pack.sh: build/kernels.wasm missing; run npm run build:wasm" >&2; exit 1; }
cp bench/train_torch.py build/*.wasm .gpu/app/
echo '{"type":"module"}' >.gpu/app/package.json
du -sh .gpu | awk '{print "gpu-pack.sh: .gpu is " $1 "; carry it (and bench/out/gpu) and run there: bash bench/gpu_machine.sh"}'
