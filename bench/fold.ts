// The embedding folded into the first recurrent layer (src/models/rnn.ts) against the plain form, in whole training
// steps of the same model on the same batch, taking turns (plain, folded; then folded, plain; ...), so that both see
// the same machine load.
//
//   npm run bench -- fold [--only 1|2] [--steps N] [--pairs N]
//     W1: Embedding 64 -> LSTM 256 -> Dense 65; W2: Embedding 64 -> 2 x LSTM 512 -> Dense 65; batch 64, sequence
//     100, Adam. Each turn runs N steps (default 4 for W1, 2 for W2); per pair it prints characters/s by wall time
//     and by the process's CPU time (all threads: on a shared machine the steadier of the two) and the folded/plain
//     ratio of each, then the range of the ratios. CHARLM_THREADS sets the wasm threads (docs/wasm.md).
//
// No reference here: both sides are charlm, and the fold changes only how the first layer's input projections are
// computed (their values agree up to float rounding; test/models.test.ts).

import { getBackend, listBackends, useBackend } from "../src/engine/index.js";
import { scope } from "../src/engine/scope.js";
import type { RnnModelConfig } from "../src/models/config.js";
import { buildModel } from "../src/models/registry.js";
import type { RnnModel } from "../src/models/rnn.js";
import { Adam } from "../src/train/optimizers.js";
import { Rng } from "../src/util/rng.js";

function flag(args: string[], name: string, fallback: number): number {
  const at = args.indexOf(name);
  if (at < 0) return fallback;
  const v = Number(args[at + 1]);
  if (!Number.isInteger(v) || v < 1) {
    console.error(`bench fold: ${name} takes a positive whole number, got "${args[at + 1]}"`);
    process.exit(2);
  }
  return v;
}

export async function main(args: string[]): Promise<void> {
  const backends = await listBackends();
  await useBackend(backends.includes("wasm") ? "wasm" : "js");
  const be = getBackend() as { name: string; threads?: number };
  const only = flag(args, "--only", 0);
  const pairs = flag(args, "--pairs", 3);
  const [V, B, T] = [65, 64, 100];
  console.log(`charlm backend: ${be.name} (${be.threads ?? 1} thread(s)); batch ${B}, sequence ${T}, Adam`);
  const workloads = [
    { name: "W1: Embedding 64 -> LSTM 256 -> Dense 65", units: 256, layers: 1, steps: flag(args, "--steps", 4) },
    { name: "W2: Embedding 64 -> 2 x LSTM 512 -> Dense 65", units: 512, layers: 2, steps: flag(args, "--steps", 2) },
  ];
  for (const [i, w] of workloads.entries()) {
    if (only && only !== i + 1) continue;
    console.log(`\n${w.name}, ${w.steps} steps a turn`);
    const config: RnnModelConfig = {
      type: "rnn",
      cell: "lstm",
      vocabSize: V,
      embedding: 64,
      units: w.units,
      layers: w.layers,
      dropout: 0,
    };
    const model = buildModel(config, new Rng(1), "torch") as RnnModel;
    const opt = new Adam(model.parameters());
    const rng = new Rng(2);
    const x = Int32Array.from({ length: B * T }, () => rng.int(V));
    const y = Int32Array.from({ length: B * T }, () => rng.int(V));
    const step = (fold: boolean): void =>
      scope(() => {
        const { loss } = model.forward(x, B, T, { targets: y, fold, training: true, rng });
        for (const t of model.parameters().values()) t.zeroGrad();
        loss!.backward();
        opt.step(1e-3);
      });
    step(false); // warm-up: the kernels compiled, the memory grown
    step(true);
    const turn = (fold: boolean): { wall: number; cpu: number } => {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      for (let s = 0; s < w.steps; s++) step(fold);
      const wall = (performance.now() - t0) / 1000;
      const c = process.cpuUsage(c0);
      const chars = w.steps * B * T;
      return { wall: chars / wall, cpu: chars / ((c.user + c.system) / 1e6) };
    };
    const wallRatios: number[] = [];
    const cpuRatios: number[] = [];
    for (let p = 0; p < pairs; p++) {
      const r: Record<string, { wall: number; cpu: number }> = {};
      for (const fold of p % 2 ? [true, false] : [false, true]) r[fold ? "folded" : "plain"] = turn(fold);
      const { plain, folded } = r;
      wallRatios.push(folded.wall / plain.wall);
      cpuRatios.push(folded.cpu / plain.cpu);
      const k = (v: number) => `${Math.round(v).toLocaleString("en-US")}`;
      console.log(
        `  pair ${p + 1}: plain ${k(plain.wall)} / folded ${k(folded.wall)} char/s wall (x${wallRatios[p].toFixed(2)}), ` +
          `${k(plain.cpu)} / ${k(folded.cpu)} by CPU time (x${cpuRatios[p].toFixed(2)})`,
      );
    }
    const range = (a: number[]) => `${Math.min(...a).toFixed(2)}-${Math.max(...a).toFixed(2)}`;
    console.log(`  folded / plain: ${range(wallRatios)}x by wall time, ${range(cpuRatios)}x by CPU time`);
  }
}
