// Shared by the export tests: a pruned vocabulary with "<unk>", one small model of each kind, and models whose every
// parameter (biases and LayerNorm gains included) is random, so that every entry of a weight mapping is exercised.

import assert from "node:assert/strict";
import { Vocab } from "../../src/data/vocab.js";
import type { ModelConfig } from "../../src/models/config.js";
import type { LanguageModel } from "../../src/models/contract.js";
import { buildModel } from "../../src/models/registry.js";
import { Rng } from "../../src/util/rng.js";

const TEXT = "the quick brown fox jumps over the lazy dog; THE QUICK BROWN FOX! 0123456789 äö";
export const vocab = Vocab.build(TEXT, { maxSize: 20 }); // pruned: "<unk>" at 0 stands for the rest

export const MODELS: [string, ModelConfig][] = [
  ["lstm", { type: "rnn", cell: "lstm", vocabSize: vocab.size, embedding: 5, units: 7, layers: 2, dropout: 0.1 }],
  ["gru", { type: "rnn", cell: "gru", vocabSize: vocab.size, embedding: 6, units: 5, layers: 2, dropout: 0 }],
  ["rnn", { type: "rnn", cell: "rnn", vocabSize: vocab.size, embedding: 4, units: 9, layers: 1, dropout: 0 }],
  [
    "gpt-bias",
    { type: "gpt", vocabSize: vocab.size, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 12, dropout: 0.1, bias: true },
  ],
  [
    "gpt-nobias",
    { type: "gpt", vocabSize: vocab.size, blockSize: 8, nLayer: 1, nHead: 3, nEmbd: 12, dropout: 0, bias: false },
  ],
];

export function randomModel(config: ModelConfig, seed: number): LanguageModel {
  const model = buildModel(config, null);
  const rng = new Rng(seed);
  for (const [name, p] of model.parameters()) {
    const gain = name.endsWith(".gamma");
    for (let i = 0; i < p.data.length; i++) p.data[i] = gain ? 0.7 + 0.6 * rng.random() : rng.random() - 0.5;
  }
  return model;
}

export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
