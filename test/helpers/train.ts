// A few Adam training steps of a whole model on one backend, for the tests that hold a backend against js.

import type { Backend } from "../../src/engine/backend.js";
import type { WebgpuBackend } from "../../src/engine/backends/webgpu/index.js";
import { getBackend, setBackend } from "../../src/engine/index.js";
import { scope } from "../../src/engine/scope.js";
import type { ModelConfig } from "../../src/models/config.js";
import { buildModel } from "../../src/models/registry.js";
import { Adam } from "../../src/train/optimizers.js";
import { Rng } from "../../src/util/rng.js";

const V = 11;

/** Small models of every kind (dropout in two of them), for whole training runs on a backend against js. */
export const SMALL_MODELS: [string, ModelConfig][] = [
  ["2 x LSTM", { type: "rnn", cell: "lstm", vocabSize: V, embedding: 6, units: 10, layers: 2, dropout: 0.1 }],
  ["GRU", { type: "rnn", cell: "gru", vocabSize: V, embedding: 6, units: 10, layers: 1, dropout: 0 }],
  ["RNN", { type: "rnn", cell: "rnn", vocabSize: V, embedding: 6, units: 10, layers: 1, dropout: 0 }],
  ["GPT", { type: "gpt", vocabSize: V, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 8, dropout: 0.1, bias: true }],
];

/**
 * A few Adam training steps of a whole model (dropout included: its masks are made on the backend from a seed drawn
 * from the seeded generator) on one backend: the losses, the final weights, and (webgpu) the device memory held and
 * the uploads so far after each step.
 */
export async function train(be: Backend, cfg: ModelConfig, B: number, T: number, steps: number) {
  const prev = getBackend();
  setBackend(be);
  try {
    const rng = new Rng(3);
    const model = buildModel(cfg, rng);
    const opt = new Adam(model.parameters());
    const data = new Rng(4);
    const x = Int32Array.from({ length: B * T }, () => data.int(cfg.vocabSize));
    const y = Int32Array.from({ length: B * T }, () => data.int(cfg.vocabSize));
    const losses: number[] = [];
    const bytes: number[] = []; // GPU memory held after each step (webgpu only)
    const uploads: number[] = []; // host-to-GPU writes so far, after each step (webgpu only)
    for (let s = 0; s < steps; s++) {
      const loss = scope(() => {
        for (const p of model.parameters().values()) p.zeroGrad();
        const { loss } = model.forward(x, B, T, { targets: y, training: true });
        loss!.backward();
        opt.step(1e-2);
        return loss!;
      });
      losses.push(await loss.value());
      loss.dispose();
      bytes.push((be as Partial<WebgpuBackend>).bytesAllocated?.() ?? 0);
      uploads.push((be as Partial<WebgpuBackend>).counts?.().uploads ?? 0);
    }
    const weights = new Map<string, Float32Array>();
    for (const [name, p] of model.parameters()) weights.set(name, await p.read());
    return { losses, weights, bytes, uploads };
  } finally {
    setBackend(prev);
  }
}
