// The two initialisation schemes (`init` keras | torch): the statistics of a new model's parameters match the
// distributions nn/init.ts states, the draws are seeded, and a model trains from either.

import { test } from "node:test";
import assert from "node:assert/strict";
import { Vocab } from "../src/data/vocab.js";
import { buildModel } from "../src/models/registry.js";
import type { InitScheme } from "../src/nn/init.js";
import { resolveTrainConfig } from "../src/train/config.js";
import { trainLoop as train } from "../src/train/loop.js";
import { Rng } from "../src/util/rng.js";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const V = 40;
const E = 48;
const H = 64;

function params(cell: "lstm" | "gru" | "rnn", init: InitScheme, seed = 3): Map<string, Float32Array> {
  const m = buildModel(
    { type: "rnn", cell, vocabSize: V, embedding: E, units: H, layers: 2, dropout: 0 },
    new Rng(seed),
    init,
  );
  return new Map([...m.parameters()].map(([k, t]) => [k, Float32Array.from(t.data)]));
}

function stats(x: Float32Array): { mean: number; std: number; maxAbs: number } {
  let s = 0;
  let s2 = 0;
  let maxAbs = 0;
  for (const v of x) {
    s += v;
    s2 += v * v;
    maxAbs = Math.max(maxAbs, Math.abs(v));
  }
  const mean = s / x.length;
  return { mean, std: Math.sqrt(s2 / x.length - mean * mean), maxAbs };
}

/** U(±k): inside ±k, std k/√3, filling the range; a sum of two: inside ±2k, std k·√(2/3). */
function assertUniform(name: string, x: Float32Array, k: number, draws = 1): void {
  const { mean, std, maxAbs } = stats(x);
  const wantStd = k * Math.sqrt(draws / 3);
  assert.ok(maxAbs <= draws * k + 1e-7, `${name}: |x| ${maxAbs} exceeds ${draws * k}`);
  assert.ok(Math.abs(std / wantStd - 1) < 0.05 + 3 / Math.sqrt(x.length), `${name}: std ${std}, want ${wantStd}`);
  assert.ok(Math.abs(mean) < (4 * wantStd) / Math.sqrt(x.length), `${name}: mean ${mean}`);
  if (draws === 1) assert.ok(maxAbs > 0.9 * k, `${name}: |x| only reaches ${maxAbs} of ${k}`);
}

test("torch init: embedding N(0, 1), every recurrent weight and bias U(±1/√H), dense U(±1/√H)", () => {
  const k = 1 / Math.sqrt(H);
  for (const cell of ["lstm", "gru", "rnn"] as const) {
    const p = params(cell, "torch");
    const emb = stats(p.get("embedding.weight")!);
    assert.ok(Math.abs(emb.std - 1) < 0.06 && Math.abs(emb.mean) < 0.06, `${cell} embedding: ${JSON.stringify(emb)}`);
    for (const l of [0, 1]) {
      assertUniform(`${cell} rnn.${l}.wx`, p.get(`rnn.${l}.wx`)!, k);
      assertUniform(`${cell} rnn.${l}.wh`, p.get(`rnn.${l}.wh`)!, k);
      if (cell === "gru") {
        assertUniform(`gru rnn.${l}.bx`, p.get(`rnn.${l}.bx`)!, k);
        assertUniform(`gru rnn.${l}.bh`, p.get(`rnn.${l}.bh`)!, k);
      } else {
        // One bias standing for PyTorch's b_ih + b_hh: the sum of two draws.
        assertUniform(`${cell} rnn.${l}.b`, p.get(`rnn.${l}.b`)!, k, 2);
      }
    }
    // nn.Linear(H, V): weight and bias U(±1/√fan_in), fan_in = H.
    assertUniform(`${cell} dense.weight`, p.get("dense.weight")!, k);
    assertUniform(`${cell} dense.bias`, p.get("dense.bias")!, k);
  }
});

test("keras init is unchanged: embedding U(±0.05), Glorot input kernels, LSTM forget bias 1, zero dense bias", () => {
  const p = params("lstm", "keras");
  assertUniform("embedding", p.get("embedding.weight")!, 0.05);
  assertUniform("rnn.0.wx", p.get("rnn.0.wx")!, Math.sqrt(6 / (E + 4 * H)));
  const b = p.get("rnn.0.b")!;
  assert.deepEqual([b[0], b[H], b[2 * H - 1], b[2 * H], b[4 * H - 1]], [0, 1, 1, 0, 0]);
  assert.ok(p.get("dense.bias")!.every((v) => v === 0));
  // The default is keras.
  const d = buildModel(
    { type: "rnn", cell: "lstm", vocabSize: V, embedding: E, units: H, layers: 2, dropout: 0 },
    new Rng(3),
  );
  assert.deepEqual([...d.parameters().get("rnn.0.wh")!.data], [...p.get("rnn.0.wh")!]);
});

test("torch init is seeded: same seed, same weights; another seed, other weights", () => {
  const a = params("lstm", "torch", 5);
  const b = params("lstm", "torch", 5);
  const c = params("lstm", "torch", 6);
  for (const [k, v] of a) assert.deepEqual([...v], [...b.get(k)!], k);
  assert.notDeepEqual([...a.get("rnn.0.wh")!], [...c.get("rnn.0.wh")!]);
});

test("a model trains from either initialisation: the validation loss falls well below ln V", async () => {
  const text = "the quick brown fox jumps over the lazy dog. ".repeat(60);
  const vocab = Vocab.build(text);
  const splits = { train: text.slice(0, 2200), validation: text.slice(2200), name: "fox" };
  for (const init of ["keras", "torch"] as const) {
    const cfg = resolveTrainConfig({
      preset: "tiny",
      overrides: {
        init,
        embedding: 16,
        units: 32,
        seqLength: 16,
        batchSize: 8,
        epochs: 3,
        stepsPerEpoch: 30,
        lr: 1e-2,
      },
    });
    const m = buildModel(
      { type: "rnn", cell: "lstm", vocabSize: vocab.size, embedding: 16, units: 32, layers: 1, dropout: 0 },
      new Rng(1),
      init,
    );
    const out = mkdtempSync(join(tmpdir(), "charlm-init-"));
    const r = await train({
      config: { ...cfg, sampleLength: 0, evalChars: 0 },
      model: m,
      vocab,
      splits,
      out,
      quiet: true,
      plot: false,
    });
    assert.equal(r.status, "finished");
    assert.ok(
      r.bestValLoss! < 0.75 * Math.log(vocab.size),
      `${init}: val ${r.bestValLoss} vs ln V ${Math.log(vocab.size)}`,
    );
  }
});
