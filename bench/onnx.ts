// Generation speed at batch 1: onnxruntime (onnxruntime-node, CPU) running `charlm export --to onnx` against
// charlm's own step() on the wasm backend, one character at a time, both single-threaded and onnxruntime also at its
// default threads. Also the largest logit difference seen along the way.
//
//   npm run bench -- onnx [--steps N]
//
// Models: the cpu preset's shape (Embedding 64 -> 2 x LSTM 256 -> Dense 65) and a GPT of 4 blocks, 4 heads,
// C = 128, context 64 (the size docs/models.md suggests for a CPU), both with fresh seeded weights (speed does not
// depend on training). Both GPTs use their key/value cache while the window fills (64 characters) and rerun the
// last 64 tokens for each character after that.

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { Vocab } from "../src/data/vocab.js";
import { loadBackend, setBackend } from "../src/engine/backends/index.js";
import { exportCheckpointToOnnx } from "../src/interop/onnx-export.js";
import type { ModelConfig } from "../src/models/config.js";
import { buildModel } from "../src/models/registry.js";
import { saveCheckpoint } from "../src/checkpoint/checkpoint.js";
import { Rng } from "../src/util/rng.js";

const V = 65;
const MODELS: [string, ModelConfig][] = [
  ["2 x LSTM 256", { type: "rnn", cell: "lstm", vocabSize: V, embedding: 64, units: 256, layers: 2, dropout: 0 }],
  [
    "GPT 4 x 128",
    { type: "gpt", vocabSize: V, blockSize: 64, nLayer: 4, nHead: 4, nEmbd: 128, dropout: 0, bias: false },
  ],
];

export async function main(args: string[]): Promise<void> {
  const steps = Number(args[args.indexOf("--steps") + 1] ?? 0) || 200;
  setBackend(await loadBackend("wasm"));
  const vocab = new Vocab(Array.from({ length: V }, (_, i) => String.fromCharCode(32 + i)));
  const root = mkdtempSync(join(tmpdir(), "charlm-onnx-bench-"));
  const tokens = Array.from({ length: steps }, (_, i) => (i * 7 + 1) % V);
  console.log(`generation at batch 1, ${steps} characters, ms per character (lower is better)`);
  for (const [name, config] of MODELS) {
    const model = buildModel(config, new Rng(1));
    const dir = join(root, name.replace(/\W+/g, "-"));
    await saveCheckpoint(dir, { model, vocab });
    await exportCheckpointToOnnx(dir, `${dir}-onnx`);

    // charlm: step() carrying its state (the GPT's key/value cache).
    const logitsCharlm: Float32Array[] = [];
    let s = model.initialState!(1);
    let t0 = performance.now();
    for (const id of tokens) {
      const r = model.step!(Int32Array.of(id), s);
      s = r.state;
      logitsCharlm.push(r.logits.data.slice());
    }
    const charlmMs = (performance.now() - t0) / steps;

    const row = [`${name.padEnd(14)} charlm wasm 1 thread ${charlmMs.toFixed(3)}`];
    for (const threads of [1, 0]) {
      const session = await ort.InferenceSession.create(join(`${dir}-onnx`, "model.onnx"), {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
      });
      let worst = 0;
      let feeds: Record<string, ort.Tensor> = {};
      const emptyCache = (): Record<string, ort.Tensor> => {
        if (config.type !== "gpt") return {};
        const dims = [config.nLayer, 1, config.nHead, 0, config.nEmbd / config.nHead];
        return {
          past_k: new ort.Tensor("float32", new Float32Array(0), dims),
          past_v: new ort.Tensor("float32", new Float32Array(0), dims),
        };
      };
      if (config.type === "gpt") feeds = emptyCache();
      if (config.type === "rnn") {
        const zero = () =>
          new ort.Tensor("float32", new Float32Array(config.layers * config.units), [config.layers, 1, config.units]);
        feeds = { h0: zero(), c0: zero() };
      }
      t0 = performance.now();
      for (let n = 0; n < steps; n++) {
        let out: ort.InferenceSession.OnnxValueMapType;
        let last: Float32Array;
        if (config.type === "rnn") {
          out = await session.run({
            tokens: new ort.Tensor("int64", BigInt64Array.of(BigInt(tokens[n])), [1, 1]),
            ...feeds,
          });
          feeds = { h0: out.hN, c0: out.cN };
          last = out.logits.data as Float32Array;
        } else {
          // The cache while the window fills, then the last blockSize tokens from an empty cache (as charlm).
          const full = n >= config.blockSize;
          const ctx = full ? tokens.slice(n + 1 - config.blockSize, n + 1) : [tokens[n]];
          out = await session.run({
            tokens: new ort.Tensor("int64", BigInt64Array.from(ctx.map(BigInt)), [1, ctx.length]),
            ...(full ? emptyCache() : feeds),
          });
          feeds = { past_k: out.present_k, past_v: out.present_v };
          last = (out.logits.data as Float32Array).subarray((ctx.length - 1) * V);
        }
        for (let v = 0; v < V; v++) worst = Math.max(worst, Math.abs(last[v] - logitsCharlm[n][v]));
      }
      const ms = (performance.now() - t0) / steps;
      row.push(
        `onnxruntime ${threads === 1 ? "1 thread" : "default threads"} ${ms.toFixed(3)} (x${(charlmMs / ms).toFixed(1)}, max logit diff ${worst.toExponential(1)})`,
      );
      await session.release();
    }
    console.log(row.join(" | "));
  }
}
