import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Vocab } from "../src/data/vocab.js";
import { PARAM_NAMES, ScratchRNN, type ParamName } from "../src/scratch/rnn.js";
import { DEFAULT_SCRATCH_CONFIG, ScratchTrainer, trainLoop } from "../src/scratch/train.js";
import { Rng } from "../src/util/rng.js";

/** A small model with weights large enough for tanh to be non-linear, and non-zero biases. */
function smallModel(V: number, H: number, seed: number): ScratchRNN {
  const rng = new Rng(seed);
  const m = new ScratchRNN(V, H, rng, 0.5);
  for (const b of [m.params.bh, m.params.by]) for (let i = 0; i < b.length; i++) b[i] = rng.normal() * 0.3;
  return m;
}

test("init: weights randn*0.01 from the seeded Rng, zero biases, zero Adagrad memory", () => {
  const m = new ScratchRNN(65, 100, new Rng(1));
  const { Wxh, Whh, Why, bh, by } = m.params;
  assert.deepEqual([Wxh.length, Whh.length, Why.length, bh.length, by.length], [6500, 10000, 6500, 100, 65]);
  let sum = 0;
  let sq = 0;
  for (const x of Whh) {
    sum += x;
    sq += x * x;
  }
  assert.ok(Math.abs(sum / Whh.length) < 0.001, `mean ${sum / Whh.length}`);
  assert.ok(Math.abs(Math.sqrt(sq / Whh.length) - 0.01) < 0.001, `std ${Math.sqrt(sq / Whh.length)}`);
  assert.ok(bh.every((x) => x === 0) && by.every((x) => x === 0), "zero biases");
  assert.ok(
    m.memory.Whh.every((x) => x === 0),
    "zero memory",
  );
  assert.deepEqual(new ScratchRNN(65, 100, new Rng(1)).params.Why, Why);
});

test("gradient check: BPTT matches central differences on every parameter and h0 (float64, no clipping)", () => {
  const V = 7;
  const H = 9;
  const T = 6;
  const m = smallModel(V, H, 3);
  const rng = new Rng(4);
  const inputs = Int32Array.from({ length: T }, () => rng.int(V));
  const targets = Int32Array.from({ length: T }, () => rng.int(V));
  const h0 = Float64Array.from({ length: H }, () => rng.normal() * 0.5);
  m.lossFun(inputs, targets, h0, Infinity);
  const analytic: Record<string, Float64Array> = {
    ...Object.fromEntries(PARAM_NAMES.map((n) => [n, m.grads[n].slice()])),
    h0: m.grads.dh0.slice(),
  };
  const eps = 1e-5;
  for (const name of [...PARAM_NAMES, "h0"] as (ParamName | "h0")[]) {
    const arr = name === "h0" ? h0 : m.params[name];
    // Sample entries; every entry of Wxh's columns for inputs that occur, and of everything else, is reachable.
    const picks = new Set<number>();
    while (picks.size < Math.min(12, arr.length)) picks.add(rng.int(arr.length));
    if (name === "Wxh") picks.add(inputs[0]); // a column that certainly has a non-zero gradient
    let checked = 0;
    for (const i of picks) {
      const old = arr[i];
      arr[i] = old + eps;
      const up = m.lossFun(inputs, targets, h0, Infinity).loss;
      arr[i] = old - eps;
      const down = m.lossFun(inputs, targets, h0, Infinity).loss;
      arr[i] = old;
      const n = (up - down) / (2 * eps);
      const a = analytic[name][i];
      if (a === 0 && Math.abs(n) < 1e-12) continue; // an input column that never occurs: both zero
      const rel = Math.abs(a - n) / Math.abs(a + n);
      assert.ok(rel < 1e-6, `${name}[${i}]: analytic ${a}, numeric ${n}, relative error ${rel}`);
      checked++;
    }
    assert.ok(checked >= 1, `${name}: no entry checked`);
  }
});

test("matches the NumPy min-char-rnn on a fixed model (golden loss, gradients, last h)", () => {
  // Made by test/fixtures/scratch_golden.py (the seed's lossFun in NumPy, weights from a formula).
  const g = JSON.parse(readFileSync(new URL("./fixtures/scratch_golden.json", import.meta.url), "utf8")) as {
    V: number;
    H: number;
    inputs: number[];
    targets: number[];
    params: Record<string, number[]>;
    hprev: number[];
    loss: number;
    grads: Record<string, number[]>;
    h: number[];
  };
  const m = new ScratchRNN(g.V, g.H, new Rng(0));
  for (const n of PARAM_NAMES) m.params[n].set(g.params[n]);
  const { loss, h } = m.lossFun(g.inputs, g.targets, Float64Array.from(g.hprev));
  assert.ok(Math.abs(loss - g.loss) < 1e-10, `loss ${loss} vs ${g.loss}`);
  for (const n of PARAM_NAMES) {
    const got = m.grads[n];
    g.grads[n].forEach((x, i) => assert.ok(Math.abs(got[i] - x) < 1e-10, `${n}[${i}] ${got[i]} vs ${x}`));
  }
  g.h.forEach((x, i) => assert.ok(Math.abs(h[i] - x) < 1e-12, `h[${i}] ${h[i]} vs ${x}`));
});

test("gradients are clipped element-wise to [-5, 5]", () => {
  const m = smallModel(5, 6, 9);
  for (const w of [m.params.Why, m.params.Whh]) for (let i = 0; i < w.length; i++) w[i] *= 20;
  const inputs = [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1];
  const targets = [4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4];
  const h0 = new Float64Array(6);
  m.lossFun(inputs, targets, h0, Infinity);
  const maxRaw = Math.max(...PARAM_NAMES.map((n) => Math.max(...Array.from(m.grads[n], Math.abs))));
  assert.ok(maxRaw > 5, `test needs a large gradient, got ${maxRaw}`);
  m.lossFun(inputs, targets, h0);
  for (const n of PARAM_NAMES) for (const x of m.grads[n]) assert.ok(x >= -5 && x <= 5, `${n}: ${x}`);
});

test("Adagrad: mem += g^2, w -= lr g / (sqrt(mem) + 1e-8)", () => {
  const m = smallModel(3, 2, 1);
  const w0 = m.params.Whh.slice();
  m.grads.Whh.set([1, -2, 0, 4]);
  m.adagrad(0.1);
  m.adagrad(0.1);
  // Same gradient twice: step 1 moves by lr*sign(g), step 2 by lr*g/(sqrt(2 g^2)) = lr*sign(g)/sqrt(2).
  [1, -1, 0, 1].forEach((s, i) => {
    const want = w0[i] - 0.1 * s * (1 + Math.SQRT1_2);
    assert.ok(Math.abs(m.params.Whh[i] - want) < 1e-7, `Whh[${i}] ${m.params.Whh[i]} vs ${want}`);
  });
  assert.deepEqual(Array.from(m.memory.Whh), [2, 8, 0, 32]);
});

test("training walks the data in chunks, carries h, resets at the start; smooth loss starts at -log(1/V)*T", () => {
  const vocab = Vocab.build("abcdefghij");
  const ids = vocab.encode("abcdefghij");
  const model = new ScratchRNN(vocab.size, 8, new Rng(0));
  const t = new ScratchTrainer(model, ids, { ...DEFAULT_SCRATCH_CONFIG, hidden: 8, seqLength: 3 });
  assert.ok(Math.abs(t.state.smoothLoss - Math.log(10) * 3) < 1e-12, `smooth loss ${t.state.smoothLoss}`);
  assert.equal(t.iterationsPerEpoch, 3); // chunks at 0, 3, 6 (6 + 3 + 1 = 10 fits exactly)
  const positions: number[] = [];
  for (let k = 0; k < 7; k++) {
    positions.push(t.state.position);
    const loss = t.step();
    assert.ok(Number.isFinite(loss) && loss > 0, `loss ${loss}`);
    assert.ok(
      t.state.hprev.some((x) => x !== 0),
      "hidden state carried",
    );
  }
  assert.deepEqual(positions, [0, 3, 6, 9, 3, 6, 9]);
  // Two wrap-arounds so far (before steps 4 and 7); the third pass ends when the chunk at 6 is done.
  assert.equal(t.state.epoch, 2);
  assert.equal(t.epochsDone(), 2);
  t.step();
  t.step();
  assert.equal(t.epochsDone(), 3);
});

test("learns to reproduce 'hello world' (loss falls; greedy sample from 'h' is the text)", async () => {
  const text = "hello world";
  const vocab = Vocab.build(text);
  const rng = new Rng(42);
  const model = new ScratchRNN(vocab.size, 100, rng);
  const trainer = new ScratchTrainer(model, vocab.encode(text), { ...DEFAULT_SCRATCH_CONFIG, seqLength: 5 });
  const losses: number[] = [];
  await trainLoop(trainer, { iterations: 400, rng, onStep: (l) => losses.push(l) });
  const first = (losses[0] + losses[1]) / 2;
  const last = (losses[398] + losses[399]) / 2;
  assert.ok(first > 8 && last < 0.1, `loss per chunk ${first} -> ${last}`);
  assert.ok(trainer.state.smoothLoss < Math.log(vocab.size) * 5, `smooth loss ${trainer.state.smoothLoss}`);
  const h = new Float64Array(100);
  assert.equal("h" + vocab.decode(model.sample(h, vocab.encode("h")[0], 10, rng, 0)), text);
  // Low temperature sampling gives the text too.
  assert.equal("h" + vocab.decode(model.sample(h, vocab.encode("h")[0], 10, new Rng(1), 0.3)), text);
  // And the mean loss over the text is tiny.
  assert.ok(model.evaluate(vocab.encode(text)) < 0.05, `loss on the text ${model.evaluate(vocab.encode(text))}`);
});

test("determinism: the same seed gives the same losses and samples; another seed differs", async () => {
  const text = "the quick brown fox jumps over the lazy dog. ".repeat(4);
  const run = async (seed: number) => {
    const vocab = Vocab.build(text);
    const rng = new Rng(seed);
    const trainer = new ScratchTrainer(new ScratchRNN(vocab.size, 16, rng), vocab.encode(text), {
      ...DEFAULT_SCRATCH_CONFIG,
      hidden: 16,
      seqLength: 10,
    });
    const losses: number[] = [];
    const samples: string[] = [];
    await trainLoop(trainer, {
      iterations: 60,
      rng,
      sampleEvery: 20,
      sampleLength: 30,
      onStep: (l) => losses.push(l),
      onSample: (ids) => samples.push(vocab.decode(ids)),
    });
    return { losses, samples };
  };
  const a = await run(7);
  assert.deepEqual(await run(7), a);
  assert.equal(a.samples.length, 3);
  assert.notDeepEqual((await run(8)).losses, a.losses);
});

test("evaluate: mean nats per predicted character; an untrained model is near log(V)", () => {
  const m = new ScratchRNN(20, 10, new Rng(0));
  const ids = Int32Array.from({ length: 500 }, (_, i) => (i * 7) % 20);
  assert.ok(Math.abs(m.evaluate(ids) - Math.log(20)) < 0.01, `untrained loss ${m.evaluate(ids)}`);
  assert.ok(Number.isNaN(m.evaluate([3])), "one character: nothing to predict");
  // feed + step agree with evaluate's own recurrence.
  const h = m.feed(ids.subarray(0, 10));
  assert.equal(h.length, 10);
});
