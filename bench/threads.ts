// `npm run bench -- threads [--threads 1,2,4,8,16] [--steps N] [--only 1|2] [--torch]`
//
// How the wasm backend's training speed scales with threads: Embedding 64 -> LSTM 256 -> Dense 65 (W1) and
// Embedding 64 -> 2 x LSTM 512 -> Dense 65 (W2), batch 64, sequence 100, Adam, one full step (forward, loss, backward,
// clipping, update) per scope as the training loop runs it; characters/s, wall clock, and the speedup over 1 thread.
// Every thread count also checks that the losses are the same bits as on 1 thread. With --torch, PyTorch CPU
// (bench/train_torch.py) runs the same workloads at its default threads in the same run, for the ratio.
// Wall-clock on a shared machine drifts: read the ratios, and the speedups only where the cores were free.

import { spawnSync } from "node:child_process";
import { availableParallelism, loadavg } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createWasmBackend } from "../src/engine/backends/wasm/index.js";
import { withBackend } from "../src/engine/index.js";
import { scope } from "../src/engine/scope.js";
import type { RnnModelConfig } from "../src/models/config.js";
import { buildModel } from "../src/models/registry.js";
import { Adam, clipGradNorm } from "../src/train/optimizers.js";
import { Rng } from "../src/util/rng.js";

const [B, T, V] = [64, 100, 65];

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

/** chars/s over `steps` steps after one warm-up step, and the losses (to compare across thread counts). */
function run(threadsBackend: Parameters<typeof withBackend>[0], H: number, L: number, steps: number) {
  return withBackend(threadsBackend, () => {
    const rng = new Rng(0);
    const cfg: RnnModelConfig = {
      type: "rnn",
      cell: "lstm",
      vocabSize: V,
      embedding: 64,
      units: H,
      layers: L,
      dropout: 0,
    };
    const model = buildModel(cfg, rng);
    const params = model.parameters();
    const opt = new Adam(params);
    const x = Int32Array.from({ length: B * T }, () => rng.int(V));
    const y = Int32Array.from({ length: B * T }, () => rng.int(V));
    const step = () => {
      const out = scope(() => {
        for (const p of params.values()) p.zeroGrad();
        const { loss } = model.forward(x, B, T, { targets: y, training: true });
        loss!.backward();
        const norm = clipGradNorm(params.values(), 5);
        opt.step(2e-3);
        return { loss: loss!, norm };
      });
      const v = out.loss.item();
      out.loss.dispose();
      out.norm.dispose();
      return v;
    };
    const losses = [step()]; // warm-up: JIT, wasm memory growth
    const t0 = performance.now();
    for (let s = 0; s < steps; s++) losses.push(step());
    const sec = (performance.now() - t0) / 1000;
    for (const p of params.values()) p.dispose();
    return { charsPerSec: (B * T * steps) / sec, losses };
  });
}

function torch(H: number, L: number, steps: number): string {
  const script = join(dirname(fileURLToPath(import.meta.url)), "train_torch.py");
  const args = ["throughput", "--embedding", "64", "--units", `${H}`, "--layers", `${L}`, "--vocab", `${V}`];
  args.push("--batch", `${B}`, "--seq", `${T}`, "--steps", `${steps + 2}`, "--warmup", "1");
  const r = spawnSync("python3", [script, ...args], { encoding: "utf8" });
  if (r.status !== 0) return `PyTorch failed: ${(r.stderr || String(r.error)).trim().split("\n").pop()}`;
  const res = JSON.parse(r.stdout.trim().split("\n").pop()!) as { charsPerSec: number; threads: number };
  return `PyTorch CPU (${res.threads} threads): ${res.charsPerSec.toFixed(0)} chars/s`;
}

export async function main(args: string[]): Promise<void> {
  const threads = (flag(args, "--threads") ?? "1,2,4,8,16").split(",").map(Number);
  const steps = Number(flag(args, "--steps") ?? 3);
  const only = Number(flag(args, "--only") ?? 0);
  const backends = [];
  for (const t of threads) backends.push(await createWasmBackend({ threads: t }));
  const load = loadavg().map((v) => v.toFixed(1));
  console.log(
    `wasm build ${backends[0].build}; ${availableParallelism()} cores, load average ${load.join(" ")} at start`,
  );
  const workloads = [
    { name: "W1 Embedding 64 -> LSTM 256 -> Dense 65", H: 256, L: 1, steps },
    { name: "W2 Embedding 64 -> 2 x LSTM 512 -> Dense 65", H: 512, L: 2, steps: Math.max(1, steps - 1) },
  ];
  for (const [i, w] of workloads.entries()) {
    if (only && only !== i + 1) continue;
    console.log(`\n${w.name}, batch ${B}, sequence ${T}, Adam (${w.steps} steps after one warm-up)`);
    let base = 0;
    let baseLosses: number[] = [];
    for (const be of backends) {
      const r = run(be, w.H, w.L, w.steps);
      if (base === 0) [base, baseLosses] = [r.charsPerSec, r.losses];
      const same = r.losses.every((l, j) => Object.is(l, baseLosses[j]));
      console.log(
        `  ${String(be.threads).padStart(2)} thread(s): ${r.charsPerSec.toFixed(0).padStart(7)} chars/s  x${(r.charsPerSec / base).toFixed(2)}` +
          `  losses ${same ? "identical to" : "DIFFER from"} the first count's`,
      );
    }
    if (args.includes("--torch")) console.log(`  ${torch(w.H, w.L, w.steps)}`);
  }
  await Promise.all(backends.map((be) => be.close()));
}
