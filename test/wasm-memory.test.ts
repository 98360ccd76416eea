// Memory of a training run on the wasm backend: after warm-up, 500 steps (forward, backward, clipping, Adam, each in
// one scope as the training loop runs them) take no new wasm memory and leave no storage behind.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createWasmBackend } from "../src/engine/backends/wasm/index.js";
import { withBackend } from "../src/engine/index.js";
import { scope } from "../src/engine/scope.js";
import type { ModelConfig } from "../src/models/config.js";
import { buildModel } from "../src/models/registry.js";
import { Adam, clipGradNorm } from "../src/train/optimizers.js";
import { Rng } from "../src/util/rng.js";

const be = await createWasmBackend({ threads: 2, threadMinMacs: 256, threadMinElems: 64 });
after(() => be.close());

for (const config of [
  { type: "rnn", cell: "lstm", vocabSize: 11, embedding: 6, units: 9, layers: 2, dropout: 0.1 },
  { type: "gpt", vocabSize: 11, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 8, dropout: 0.1, bias: true },
] as ModelConfig[]) {
  test(`${config.type}: wasm memory is flat over 500 training steps`, () => {
    const [B, T, V] = [3, 7, config.vocabSize];
    const rng = new Rng(5);
    withBackend(be, () => {
      const model = buildModel(config, rng);
      const params = model.parameters();
      const opt = new Adam(params);
      const step = () => {
        const x = Int32Array.from({ length: B * T }, () => rng.int(V));
        const y = Int32Array.from({ length: B * T }, () => rng.int(V));
        const out = scope(() => {
          for (const p of params.values()) p.zeroGrad();
          const { loss } = model.forward(x, B, T, { targets: y, training: true });
          loss!.backward();
          const norm = clipGradNorm(params.values(), 1);
          opt.step(1e-3);
          return { loss: loss!, norm };
        });
        const v = out.loss.item();
        out.loss.dispose();
        out.norm.dispose();
        return v;
      };
      for (let i = 0; i < 5; i++) step(); // warm-up: parameters' gradients and Adam's slots are made
      const [bytes, live] = [be.heap.bytes, be.heap.live];
      let last = 0;
      for (let i = 0; i < 500; i++) last = step();
      assert.ok(Number.isFinite(last), `loss ${last}`);
      assert.equal(be.heap.bytes, bytes, "wasm memory grew");
      assert.equal(be.heap.live, live, "storage was left behind");
    });
  });
}
