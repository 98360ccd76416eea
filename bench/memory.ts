// Memory over a training run: the process's resident set (RSS), the V8 heap and the backend's own memory (wasm
// linear memory, or GPU buffers held) every 50 steps of 500, with a training step per scope as the loop runs it.
//
//   npm run bench -- memory [--steps 500] [--backend wasm|js|webgpu]
//
// Embedding 32 -> 2 x LSTM 128 -> Dense 65 with dropout 0.1 and clipping, batch 32, sequence 64, Adam. After the
// first steps (warm-up: pools fill, the JIT settles) the numbers should stay flat: storage is freed when each
// step's scope ends and reused by the next step.

import { useBackend, type BackendName } from "../src/engine/index.js";
import { scope } from "../src/engine/scope.js";
import { buildModel } from "../src/models/registry.js";
import { clipGradNorm, createOptimizer } from "../src/train/optimizers.js";
import { Rng } from "../src/util/rng.js";

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

const MiB = (n: number): string => (n / 2 ** 20).toFixed(1).padStart(7);

export async function main(args: string[]): Promise<void> {
  const steps = Number(option(args, "--steps") ?? 500);
  const be = await useBackend((option(args, "--backend") ?? "wasm") as BackendName);
  const own = (): number => {
    const b = be as { heap?: { bytes: number }; bytesAllocated?: () => number };
    return b.heap?.bytes ?? b.bytesAllocated?.() ?? 0;
  };
  const [B, T, V] = [32, 64, 65];
  const model = buildModel(
    { type: "rnn", cell: "lstm", vocabSize: V, embedding: 32, units: 128, layers: 2, dropout: 0.1 },
    new Rng(0),
  );
  const params = model.parameters();
  const opt = createOptimizer("adam", params);
  const rng = new Rng(1);
  console.log(`backend ${be.name}; ${steps} steps of batch ${B} x ${T}`);
  console.log(" step   RSS MiB  V8 heap MiB  backend MiB   loss");
  for (let s = 1; s <= steps; s++) {
    const x = Int32Array.from({ length: B * T }, () => rng.int(V));
    const y = x.map((v) => (v * 3 + 1) % V);
    const loss = scope(() => {
      for (const p of params.values()) p.zeroGrad();
      const opts = { targets: y, training: true, rng };
      const r = model.forward(x, B, T, opts);
      r.loss!.backward();
      clipGradNorm(params.values(), 5);
      opt.step(3e-3);
      return r.loss!;
    });
    const value = await loss.value();
    loss.dispose();
    if (s === 1 || s % 50 === 0) {
      const m = process.memoryUsage();
      console.log(
        `${String(s).padStart(5)}  ${MiB(m.rss)}  ${MiB(m.heapUsed)}      ${MiB(own())}     ${value.toFixed(3)}`,
      );
    }
  }
}
