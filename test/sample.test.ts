// The sampler against a model with fixed logits, so the distribution of every character is known exactly:
// temperature, top-k and top-p shape it as their formulas say; a seed fixes the text; stop strings, abort, the
// forward-only path (no step()) and bad options behave.

import { test } from "node:test";
import assert from "node:assert/strict";
import { Vocab } from "../src/data/vocab.js";
import { Tensor } from "../src/engine/tensor.js";
import type { ForwardResult, LanguageModel, State } from "../src/models/contract.js";
import { buildModel } from "../src/models/registry.js";
import { generate, generateText, samplingWeights } from "../src/sample/generate.js";
import { CharlmError } from "../src/util/errors.js";
import { Rng } from "../src/util/rng.js";

const vocab = new Vocab(["a", "b", "c", "d", "e"]);
const LOGITS = [2, 1, 0, -1, -3];

/** Ignores its input: every step gives the same logits. Counts steps to check one step per character. */
class FixedModel implements LanguageModel {
  readonly config = { type: "fixed" };
  steps = 0;
  constructor(readonly logits: number[] = LOGITS) {}
  parameters(): Map<string, Tensor> {
    return new Map();
  }
  forward(_tokens: Int32Array, B: number, T: number): ForwardResult {
    const V = this.logits.length;
    const data = new Float32Array(B * T * V);
    for (let i = 0; i < B * T; i++) data.set(this.logits, i * V);
    return { logits: new Tensor(data, [B, T, V]) };
  }
  initialState(): State {
    return null;
  }
  step(tokens: Int32Array, state: State): { logits: Tensor; state: State } {
    this.steps++;
    return { logits: new Tensor(Float32Array.from(this.logits), [1, this.logits.length]), state };
  }
}

function softmax(z: number[], temperature = 1): number[] {
  const m = Math.max(...z);
  const e = z.map((x) => Math.exp((x - m) / temperature));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

async function frequencies(opts: { temperature?: number; topK?: number; topP?: number }, n = 20000): Promise<number[]> {
  const text = await generateText(new FixedModel(), vocab, { prime: "a", length: n, seed: 11, ...opts });
  const counts = [0, 0, 0, 0, 0];
  for (const ch of text) counts[vocab.chars.indexOf(ch)]++;
  return counts.map((c) => c / n);
}

/** Every frequency within 4 standard errors of its expected probability. */
function close(freq: number[], p: number[], n = 20000): void {
  p.forEach((pi, i) => {
    const se = Math.sqrt((pi * (1 - pi)) / n) + 1e-9;
    assert.ok(Math.abs(freq[i] - pi) <= 4 * se, `symbol ${i}: frequency ${freq[i]} vs probability ${pi}`);
  });
}

test("temperature 1 samples softmax(logits); 0.5 sharpens, 2 flattens", async () => {
  close(await frequencies({}), softmax(LOGITS));
  close(await frequencies({ temperature: 0.5 }), softmax(LOGITS, 0.5));
  close(await frequencies({ temperature: 2 }), softmax(LOGITS, 2));
});

test("top-k keeps exactly the k most likely characters, renormalised", async () => {
  const p = softmax(LOGITS);
  const top2 = [p[0], p[1]].map((x) => x / (p[0] + p[1]));
  const f = await frequencies({ topK: 2 });
  assert.equal(f[2] + f[3] + f[4], 0);
  close(f, [...top2, 0, 0, 0]);
  close(await frequencies({ topK: 1 }), [1, 0, 0, 0, 0]);
});

test("top-p keeps the smallest most-likely set reaching p", async () => {
  const p = softmax(LOGITS); // ≈ 0.644, 0.237, 0.087, 0.032, 0.004
  // p = 0.85: 0.644 < 0.85 <= 0.881, so {a, b}.
  const f = await frequencies({ topP: 0.85 });
  assert.equal(f[2] + f[3] + f[4], 0);
  close(f, [p[0] / (p[0] + p[1]), p[1] / (p[0] + p[1]), 0, 0, 0]);
  // p = 0.5: the top character alone reaches it.
  close(await frequencies({ topP: 0.5 }), [1, 0, 0, 0, 0]);
  // p = 1: nothing removed.
  const w = samplingWeights(LOGITS, 1, 0, 1);
  assert.ok(Array.from(w).every((x) => x > 0));
  // top-k and top-p together: the smaller set wins.
  const both = samplingWeights(LOGITS, 1, 3, 0.85);
  assert.deepEqual(
    Array.from(both).map((x) => x > 0),
    [true, true, false, false, false],
  );
});

test("the same seed gives the same text; different seeds differ; one step per character", async () => {
  const m = new FixedModel([0, 0, 0, 0, 0]);
  const a = await generateText(m, vocab, { prime: "abc", length: 200, seed: 5 });
  assert.equal(m.steps, 3 + 199); // the prime, then one step per generated character but the last
  const b = await generateText(new FixedModel([0, 0, 0, 0, 0]), vocab, { prime: "abc", length: 200, seed: 5 });
  const c = await generateText(new FixedModel([0, 0, 0, 0, 0]), vocab, { prime: "abc", length: 200, seed: 6 });
  assert.equal(a.length, 200);
  assert.equal(a, b);
  assert.notEqual(a, c);
});

test("a real recurrent model: seeded generation is reproducible, and step() agrees with forward()", async () => {
  const v = Vocab.build("hello world\n");
  const model = buildModel(
    { type: "rnn", cell: "lstm", vocabSize: v.size, embedding: 4, units: 8, layers: 2, dropout: 0 },
    new Rng(1),
  );
  const x = await generateText(model, v, { prime: "hel", length: 50, seed: 9, temperature: 0.7, topK: 4 });
  const y = await generateText(model, v, { prime: "hel", length: 50, seed: 9, temperature: 0.7, topK: 4 });
  assert.equal(x, y);
  // Without step(), the sampler reruns forward over the context: same distribution, same text.
  const forwardOnly: LanguageModel = {
    config: model.config,
    parameters: () => model.parameters(),
    forward: (t, B, T, o) => model.forward(t, B, T, o),
  };
  const z = await generateText(forwardOnly, v, { prime: "hel", length: 50, seed: 9, temperature: 0.7, topK: 4 });
  assert.equal(z, x);
});

test("stop strings end the sample and are not emitted, even across characters", async () => {
  // Logits that make 'a' then 'b' overwhelmingly likely alternately are not possible with a fixed model, so use
  // top-k 1 (always 'a') and stop strings made of a's.
  const out = await generateText(new FixedModel(), vocab, { prime: "", length: 50, topK: 1, stop: ["aaa"], seed: 1 });
  assert.equal(out, "");
  const m = new FixedModel([0, 0, -50, -50, -50]); // only a and b
  const full = await generateText(m, vocab, { prime: "a", length: 400, seed: 3 });
  const at = full.indexOf("bb");
  assert.ok(at >= 0);
  const cut = await generateText(new FixedModel([0, 0, -50, -50, -50]), vocab, {
    prime: "a",
    length: 400,
    seed: 3,
    stop: ["bb", "zzz"],
  });
  assert.equal(cut, full.slice(0, at));
  // A held-back prefix that never completes is flushed at the end.
  const tail = await generateText(new FixedModel(), vocab, {
    prime: "",
    length: 5,
    topK: 1,
    stop: ["aaaaaab"],
    seed: 1,
  });
  assert.equal(tail, "aaaaa");
});

test("abort stops the generator", async () => {
  const ac = new AbortController();
  let n = 0;
  for await (const _ of generate(new FixedModel(), vocab, { prime: "a", length: 10000, seed: 1, signal: ac.signal })) {
    if (++n === 100) ac.abort();
  }
  assert.equal(n, 100);
});

test("bad options are one-line CharlmErrors that say what to do", async () => {
  const bad: [object, RegExp][] = [
    [{ temperature: 0 }, /^temperature must be above 0, got 0;/],
    [{ temperature: -1 }, /^temperature must be above 0, got -1;/],
    [{ topP: 1.5 }, /^top-p must be in \(0, 1\], got 1\.5;/],
    [{ topP: 0 }, /^top-p must be in \(0, 1\], got 0;/],
    [{ topK: -2 }, /^top-k must be a whole number >= 0/],
    [{ prime: "abz?" }, /^the prime text has characters the model does not know: 'z' \(U\+007A\), '\?' \(U\+003F\);/],
    [{ stop: [""] }, /^a stop string is empty/],
  ];
  for (const [opts, re] of bad) {
    await assert.rejects(
      generateText(new FixedModel(), vocab, { prime: "a", length: 5, ...opts }),
      (e: Error) => e instanceof CharlmError && re.test(e.message) && !e.message.includes("\n"),
      String(re),
    );
  }
});

// A GPT's prime goes to prefill() whole: the model runs the window that stepping through it would leave. The text
// after primes shorter than, as long as and longer than the window, with strides 1, 2 and 3, is the one a model
// without prefill (the sampler then steps through every token of the prime) generates.
test("a GPT's prime through prefill() gives the text of stepping through it, past its window too", async () => {
  const v = Vocab.build("abcdefghijkl\n");
  const gpt = buildModel(
    { type: "gpt", vocabSize: v.size, blockSize: 6, nLayer: 2, nHead: 2, nEmbd: 8, dropout: 0, bias: true },
    new Rng(2),
  ) as LanguageModel;
  // weights 20 times GPT-2's scale (layer norms as they are): logits that depend on the context
  for (const [name, t] of gpt.parameters()) if (!name.includes("ln")) for (let i = 0; i < t.size; i++) t.data[i] *= 20;
  let prefills = 0;
  const counted = Object.assign(Object.create(gpt) as LanguageModel, {
    prefill: (...a: Parameters<NonNullable<LanguageModel["prefill"]>>) => (prefills++, gpt.prefill!(...a)),
  });
  const stepping = Object.assign(Object.create(gpt) as LanguageModel, { prefill: undefined });
  const texts = new Set<string>();
  for (const windowStride of [1, 2, 3]) {
    for (const prime of ["abc", "abcdef", "abcdefghijk\nlkjihg"]) {
      const opts = { prime, length: 30, seed: 4, windowStride };
      const fast = await generateText(counted, v, opts);
      assert.equal(
        fast,
        await generateText(stepping, v, opts),
        `stride ${windowStride}, prime ${JSON.stringify(prime)}`,
      );
      texts.add(fast);
    }
  }
  assert.equal(prefills, 9);
  assert.ok(texts.size >= 6, `${texts.size} different texts`); // the primes and strides do change the text
});
