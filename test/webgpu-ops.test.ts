// The engine's op suite on webgpu: forwards against float64 references, backwards against central finite
// differences, and whole models against PyTorch's golden numbers, all read back asynchronously (the GPU's values
// are not visible to JavaScript, so the synchronous suites in engine*.test.ts and models_golden.test.ts iterate
// listBackends(), which leaves webgpu out). Shapes are small: CI runs this on SwiftShader (~0.1 GFLOP/s).
// test/webgpu.test.ts compares every kernel with js besides; this file checks the maths on the GPU directly.
//
// Skipped, with the reason, without the optional package `webgpu` or an adapter.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as E from "../src/engine/index.js";
import { backward, noGrad } from "../src/engine/autograd.js";
import { jsBackend } from "../src/engine/backends/js.js";
import { gpuForTests } from "./helpers/webgpu.js";
import { scope } from "../src/engine/scope.js";
import { Tensor } from "../src/engine/tensor.js";
import type { ModelConfig } from "../src/models/config.js";
import { buildModel } from "../src/models/registry.js";
import { Rng } from "../src/util/rng.js";
import {
  assertClose,
  f64,
  rand,
  refAttention,
  refCrossEntropy,
  refGru,
  refLayerNorm,
  refLstm,
  refMatmul,
  refRnn,
  refSoftmaxRows,
} from "./engine-ref.js";

const { gpu, skip } = await gpuForTests();

/** A js tensor's copy on the GPU (same values, same requiresGrad). */
const onGpu = (t: Tensor): Tensor => E.withBackend(gpu!, () => Tensor.fromArray(t.data, t.shape, t.requiresGrad));

/**
 * gradcheck (src/engine/gradcheck.ts) with the values read back asynchronously: the projection L = Σ r·out in
 * float64, the analytic gradient from one backward pass seeded with r, the numeric one from central differences
 * of step eps over the values as stored in float32; |a - n| <= atol + rtol·max(|a|, |n|) per entry.
 */
async function gradcheckGpu(
  f: (...xs: Tensor[]) => Tensor[],
  inputs: Tensor[],
  opts: { eps?: number; rtol?: number; atol?: number } = {},
): Promise<void> {
  const { eps = 1e-2, rtol = 1e-2, atol = 1e-4 } = opts;
  const rng = new Rng(0);
  const readAll = (ts: Tensor[]) => Promise.all(ts.map((t) => t.read()));
  const outs = f(...inputs);
  const weights = outs.map((o) => Float32Array.from({ length: o.size }, () => rng.random() * 2 - 1));
  const project = (vals: Float32Array[]): number =>
    vals.reduce((s, v, k) => s + v.reduce((a, x, i) => a + weights[k][i] * x, 0), 0);
  const loss = async (): Promise<number> => {
    const ys = scope(() => noGrad(() => f(...inputs)));
    const l = project(await readAll(ys));
    ys.forEach((y) => y.dispose());
    return l;
  };
  for (const x of inputs) x.gradStorage = null;
  backward(
    outs.filter((o) => o.requiresGrad),
    outs.flatMap((o, k) => (o.requiresGrad ? [weights[k]] : [])),
  );
  for (const [xi, x] of inputs.entries()) {
    if (!x.requiresGrad) continue;
    const analytic = await x.readGrad();
    const values = await x.read();
    for (let i = 0; i < x.size; i++) {
      const up = Math.fround(values[i] + eps);
      const dn = Math.fround(values[i] - eps);
      x.backend.write(x.storage, Float32Array.of(up), i);
      const lp = await loss();
      x.backend.write(x.storage, Float32Array.of(dn), i);
      const lm = await loss();
      x.backend.write(x.storage, Float32Array.of(values[i]), i);
      const num = (lp - lm) / (up - dn);
      const a = analytic[i];
      assert.ok(
        Math.abs(a - num) <= atol + rtol * Math.max(Math.abs(a), Math.abs(num)),
        `input ${xi} entry ${i}: analytic ${a}, numeric ${num}`,
      );
    }
  }
  for (const x of inputs) x.gradStorage = null;
}

/** Run fn with the GPU as the current backend, across its awaits (withBackend restores at the first one). */
async function onGpuBackend<T>(fn: () => Promise<T>): Promise<T> {
  const prev = E.getBackend();
  E.setBackend(gpu!);
  try {
    return await fn();
  } finally {
    E.setBackend(prev);
  }
}

/** Make js inputs with `make`, compare f's forward on the GPU with `ref` (float64 from the js values), gradcheck. */
async function opCheck(
  make: (rng: Rng) => Tensor[],
  f: (...xs: Tensor[]) => Tensor[],
  ref: (...xs: Tensor[]) => number[][],
  what: string,
  tol = { rtol: 1e-5, atol: 1e-6 },
): Promise<void> {
  const host = E.withBackend(jsBackend, () => make(new Rng(what.length)));
  const want = ref(...host);
  const xs = host.map(onGpu);
  await onGpuBackend(async () => {
    const got = await Promise.all(scope(() => noGrad(() => f(...xs))).map((t) => t.read()));
    got.forEach((g, k) => assertClose(g, want[k], tol.rtol, tol.atol, `${what} output ${k}`));
    await gradcheckGpu(f, xs);
  });
}

describe("engine ops on webgpu: float64 forwards, finite-difference backwards", { skip }, () => {
  test("matmul with every transpose, and batched", async () => {
    const [M, K, N] = [3, 5, 2];
    for (const [transA, transB] of [
      [false, false],
      [true, true],
      [false, true],
      [true, false],
    ]) {
      await opCheck(
        (r) => [rand(r, transA ? [K, M] : [M, K]), rand(r, transB ? [N, K] : [K, N])],
        (a, b) => [E.matmul(a, b, { transA, transB })],
        (a, b) => [refMatmul(f64(a), f64(b), M, K, N, transA, transB)],
        `matmul ${transA} ${transB}`,
      );
    }
    await opCheck(
      (r) => [rand(r, [2, 3, 4]), rand(r, [2, 4, 2])],
      (a, b) => [E.matmul(a, b)],
      (a, b) => [
        [0, 1].flatMap((p) => refMatmul(f64(a).slice(p * 12, p * 12 + 12), f64(b).slice(p * 8, p * 8 + 8), 3, 4, 2)),
      ],
      "batched matmul",
    );
  });

  test("broadcast add and mul, unary activations", async () => {
    await opCheck(
      (r) => [rand(r, [3, 4]), rand(r, [4])],
      (a, b) => [E.add(a, b), E.mul(a, b)],
      (a, b) => [f64(a).map((v, i) => v + b.data[i % 4]), f64(a).map((v, i) => v * b.data[i % 4])],
      "add, mul",
    );
    await opCheck(
      (r) => [rand(r, [7], -2, 2)],
      (a) => [E.tanh(a), E.sigmoid(a), E.gelu(a), E.exp(a)],
      (a) => [
        f64(a).map(Math.tanh),
        f64(a).map((v) => 1 / (1 + Math.exp(-v))),
        f64(a).map((v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)))),
        f64(a).map(Math.exp),
      ],
      "unary",
      { rtol: 1e-5, atol: 2e-6 },
    );
  });

  test("softmax, softmax cross-entropy, layer norm, embedding", async () => {
    await opCheck(
      (r) => [rand(r, [3, 5], -2, 2)],
      (x) => [E.softmax(x)],
      (x) => [refSoftmaxRows(f64(x), 5)],
      "softmax",
    );
    const targets = Int32Array.from([4, 0, 2]);
    await opCheck(
      (r) => [rand(r, [3, 5], -2, 2)],
      (x) => [E.softmaxCrossEntropy(x, targets)],
      (x) => [[refCrossEntropy(f64(x), targets, 5)]],
      "cross-entropy",
    );
    await opCheck(
      (r) => [rand(r, [2, 6]), rand(r, [6], 0.5, 1.5), rand(r, [6])],
      (x, g, b) => [E.layerNorm(x, g, b)],
      (x, g, b) => [refLayerNorm(f64(x), f64(g), f64(b), 6, 1e-5)],
      "layer norm",
      { rtol: 1e-4, atol: 1e-5 },
    );
    const ids = Int32Array.from([2, 0, 2, 3]);
    await opCheck(
      (r) => [rand(r, [4, 3])],
      (w) => [E.embedding(w, ids)],
      (w) => [Array.from(ids).flatMap((id) => f64(w).slice(id * 3, id * 3 + 3))],
      "embedding",
    );
  });

  test("causal self-attention", async () => {
    const [B, T, C, nH] = [1, 3, 4, 2];
    await opCheck(
      (r) => [rand(r, [B, T, C]), rand(r, [B, T, C]), rand(r, [B, T, C])],
      (q, k, v) => [E.causalSelfAttention(q, k, v, nH)],
      (q, k, v) => [refAttention(f64(q), f64(k), f64(v), B, T, C, nH)],
      "attention",
    );
  });

  test("lstm, gru and rnn over a short sequence", async () => {
    const [T, B, D, H] = [3, 2, 2, 3];
    await opCheck(
      (r) => [
        rand(r, [T, B, D]),
        rand(r, [D, 4 * H], -0.5, 0.5),
        rand(r, [H, 4 * H], -0.5, 0.5),
        rand(r, [4 * H]),
        rand(r, [B, H]),
        rand(r, [B, H]),
      ],
      (...a) => Object.values(E.lstm(a[0], a[1], a[2], a[3], a[4], a[5])),
      (...a) => {
        const r = refLstm(f64(a[0]), f64(a[1]), f64(a[2]), f64(a[3]), f64(a[4]), f64(a[5]), T, B, D, H);
        return [r.hs, r.hT, r.cT];
      },
      "lstm",
    );
    await opCheck(
      (r) => [
        rand(r, [T, B, D]),
        rand(r, [D, 3 * H], -0.5, 0.5),
        rand(r, [H, 3 * H], -0.5, 0.5),
        rand(r, [3 * H]),
        rand(r, [3 * H]),
        rand(r, [B, H]),
      ],
      (...a) => Object.values(E.gru(a[0], a[1], a[2], a[3], a[4], a[5])),
      (...a) => {
        const r = refGru(f64(a[0]), f64(a[1]), f64(a[2]), f64(a[3]), f64(a[4]), f64(a[5]), T, B, D, H);
        return [r.hs, r.hT];
      },
      "gru",
    );
    await opCheck(
      (r) => [
        rand(r, [T, B, D]),
        rand(r, [D, H], -0.5, 0.5),
        rand(r, [H, H], -0.5, 0.5),
        rand(r, [H]),
        rand(r, [B, H]),
      ],
      (...a) => Object.values(E.rnn(a[0], a[1], a[2], a[3], a[4])),
      (...a) => {
        const r = refRnn(f64(a[0]), f64(a[1]), f64(a[2]), f64(a[3]), f64(a[4]), T, B, D, H);
        return [r.hs, r.hT];
      },
      "rnn",
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------
// PyTorch's golden numbers (fixtures and tolerances as in models_golden.test.ts and models_gpt.test.ts)

interface Golden {
  cell?: "lstm" | "gru" | "rnn";
  config: Record<string, unknown>;
  B: number;
  T: number;
  tokens: number[];
  targets: number[];
  h0?: number[][];
  c0?: number[][];
  weights: Record<string, { shape: number[]; data: number[] }>;
  logits: number[];
  loss: number;
  grads: Record<string, { shape: number[]; data: number[] }>;
}

describe("PyTorch golden numbers on webgpu", { skip }, () => {
  for (const name of ["lstm", "gru", "rnn", "gpt"]) {
    test(`${name}: logits, loss and every gradient`, async () => {
      const g = JSON.parse(readFileSync(new URL(`./fixtures/golden_${name}.json`, import.meta.url), "utf8")) as Golden;
      const config = (name === "gpt"
        ? g.config
        : { type: "rnn", cell: name, dropout: 0, ...g.config }) as unknown as ModelConfig;
      await onGpuBackend(async () => {
        const model = buildModel(config, new Rng(0));
        const params = model.parameters();
        for (const [k, w] of Object.entries(g.weights)) {
          const p = params.get(k)!;
          p.backend.write(p.storage, Float32Array.from(w.data));
        }
        const H = (g.config as { units?: number }).units ?? 0;
        const state = g.h0
          ? {
              h: g.h0.map((h) => Tensor.fromArray(h, [g.B, H])),
              c: (g.c0 ?? []).map((c) => Tensor.fromArray(c, [g.B, H])),
            }
          : undefined;
        const out = model.forward(Int32Array.from(g.tokens), g.B, g.T, { targets: Int32Array.from(g.targets), state });
        out.loss!.backward();
        const logits = await out.logits.read();
        let dl = 0;
        for (let i = 0; i < logits.length; i++) dl = Math.max(dl, Math.abs(logits[i] - g.logits[i]));
        assert.ok(dl < 1e-4, `logits differ by ${dl}`);
        const loss = await out.loss!.value();
        assert.ok(Math.abs(loss - g.loss) < 1e-5, `loss ${loss} vs ${g.loss}`);
        for (const [k, ref] of Object.entries(g.grads)) {
          const got = await params.get(k)!.readGrad();
          for (let i = 0; i < ref.data.length; i++) {
            const err = Math.abs(got[i] - ref.data[i]);
            assert.ok(err <= 1e-5 + 1e-3 * Math.abs(ref.data[i]), `d${k}[${i}]: ${got[i]} vs ${ref.data[i]}`);
          }
        }
      });
    });
  }
});
