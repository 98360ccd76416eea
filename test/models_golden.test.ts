// Golden numbers from PyTorch: the same tiny Embedding -> 2 x (LSTM | GRU | RNN) -> Linear model with the same
// weights, tokens and initial state gives the same logits, loss, final state and parameter gradients.
// Fixtures: test/fixtures/golden_<cell>.json, written by scripts/golden/make_rnn_golden.py (PyTorch, float64).
//
// Tolerances: charlm computes in float32 against a float64 reference. Measured (js and wasm backends): logits within
// 2.2e-7 (wasm 2.5e-7 with stop 24's tanh), loss within 1.1e-7, gradients within 6.8e-8 (largest gradient 0.23). We
// assert 1e-4 on logits and states (the bar the issue sets), 1e-5 on the loss, and gradients within 1e-5 absolute plus
// 1e-3 relative, which leaves room for faster kernels (other summation orders, approximate tanh) without hiding a wrong
// rule.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { listBackends, useBackend } from "../src/engine/index.js";
import { Tensor } from "../src/engine/tensor.js";
import { buildModel } from "../src/models/registry.js";
import type { RnnModel, RnnState } from "../src/models/rnn.js";
import { Rng } from "../src/util/rng.js";

interface Golden {
  cell: "lstm" | "gru" | "rnn";
  config: { vocabSize: number; embedding: number; units: number; layers: number };
  B: number;
  T: number;
  tokens: number[];
  targets: number[];
  h0: number[][];
  c0: number[][];
  weights: Record<string, { shape: number[]; data: number[] }>;
  logits: number[];
  loss: number;
  hT: number[][];
  cT: number[][];
  grads: Record<string, { shape: number[]; data: number[] }>;
}

function load(cell: string): Golden {
  return JSON.parse(readFileSync(new URL(`./fixtures/golden_${cell}.json`, import.meta.url), "utf8")) as Golden;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

for (const backend of await listBackends()) {
  for (const [cell, fold] of (["lstm", "gru", "rnn"] as const).flatMap((c) => [
    [c, false] as const,
    [c, true] as const,
  ])) {
    const how = fold ? ", the embedding folded into the first layer" : "";
    test(`[${backend}] ${cell} matches PyTorch: logits, loss, state and every gradient${how}`, async () => {
      await useBackend(backend);
      const g = load(cell);
      const model = buildModel({ type: "rnn", cell, dropout: 0, ...g.config }, new Rng(0)) as RnnModel;
      const params = model.parameters();
      assert.deepEqual([...params.keys()].sort(), Object.keys(g.weights).sort());
      for (const [name, w] of Object.entries(g.weights)) {
        const p = params.get(name)!;
        assert.deepEqual(p.shape, w.shape, name);
        p.data.set(w.data);
      }
      const H = g.config.units;
      const state: RnnState = {
        h: g.h0.map((h) => Tensor.fromArray(h, [g.B, H])),
        c: g.c0.map((c) => Tensor.fromArray(c, [g.B, H])),
      };
      const out = model.forward(Int32Array.from(g.tokens), g.B, g.T, {
        targets: Int32Array.from(g.targets),
        state,
        fold,
      });
      assert.deepEqual(out.logits.shape, [g.B, g.T, g.config.vocabSize]);
      const dl = maxAbsDiff(out.logits.data, g.logits);
      assert.ok(dl < 1e-4, `logits differ by ${dl}`);
      assert.ok(Math.abs(out.loss!.item() - g.loss) < 1e-5, `loss ${out.loss!.item()} vs ${g.loss}`);
      const next = out.state as RnnState;
      for (let l = 0; l < g.config.layers; l++) {
        assert.ok(maxAbsDiff(next.h[l].data, g.hT[l]) < 1e-4, `hT[${l}]`);
        if (cell === "lstm") assert.ok(maxAbsDiff(next.c[l].data, g.cT[l]) < 1e-4, `cT[${l}]`);
      }

      out.loss!.backward();
      for (const [name, ref] of Object.entries(g.grads)) {
        const got = params.get(name)!.grad;
        assert.ok(got, `${name} has no gradient`);
        for (let i = 0; i < ref.data.length; i++) {
          const err = Math.abs(got[i] - ref.data[i]);
          assert.ok(err <= 1e-5 + 1e-3 * Math.abs(ref.data[i]), `d${name}[${i}]: ${got[i]} vs ${ref.data[i]}`);
        }
      }
    });
  }
}
