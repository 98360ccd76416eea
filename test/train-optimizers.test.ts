// Optimizers against torch.optim's steps (fixture written by test/fixtures/train/optimizer-steps.py) and against
// steps worked by hand; state save/restore; gradient clipping; schedules; early stopping; config resolution.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Adam, SGD, clipGradNorm, createOptimizer, type OptimizerName, type Param } from "../src/train/optimizers.js";
import { learningRate, type ScheduleConfig } from "../src/train/schedules.js";
import { EarlyStopping } from "../src/train/early-stopping.js";
import { Tensor } from "../src/engine/tensor.js";
import {
  DEFAULT_TRAIN_CONFIG,
  PRESETS,
  TRAIN_FIELDS,
  checkPartialConfig,
  resolveTrainConfig,
} from "../src/train/config.js";
import { CharlmError } from "../src/util/errors.js";

const golden = JSON.parse(readFileSync(new URL("./fixtures/train/optimizer-steps.json", import.meta.url), "utf8")) as {
  w0: number[];
  grads: number[][];
  lr: number;
  cases: Record<string, number[][]>;
};

const SETTINGS: Record<string, [OptimizerName, Record<string, number | boolean>]> = {
  adam: ["adam", {}],
  adam_wd: ["adam", { beta1: 0.8, beta2: 0.99, weightDecay: 0.1 }],
  rmsprop: ["rmsprop", {}],
  adagrad: ["adagrad", {}],
  sgd: ["sgd", { momentum: 0.9 }],
  sgd_nesterov: ["sgd", { momentum: 0.9, nesterov: true }],
  sgd_plain: ["sgd", { momentum: 0 }],
};

/** A parameter tensor with a zero gradient (set its values through p.grad). */
function param(values: number[]): Param {
  const p = Tensor.fromArray(values, [values.length]);
  p.gradOf();
  return p;
}

/** A parameter tensor with the given gradient. */
function withGrad(values: number[], grad: number[]): Param {
  const p = param(values);
  p.grad!.set(grad);
  return p;
}

for (const [name, [type, hyper]] of Object.entries(SETTINGS)) {
  test(`${name}: three steps match torch.optim within float32 rounding`, () => {
    const p = param(golden.w0);
    const opt = createOptimizer(type, new Map([["w", p]]), hyper);
    golden.grads.forEach((g, s) => {
      p.grad!.set(g);
      opt.step(golden.lr);
      const want = golden.cases[name][s];
      for (let i = 0; i < want.length; i++) {
        assert.ok(
          Math.abs(p.data[i] - want[i]) < 2e-6,
          `${name} step ${s + 1} [${i}]: ${p.data[i]} vs torch ${want[i]}`,
        );
      }
    });
  });
}

test("Adam's first two steps worked by hand", () => {
  // w = 1, g1 = 0.5, g2 = -1, lr = 0.1, β1 = 0.9, β2 = 0.999, ε = 1e-8.
  // Step 1: m = 0.05, v = 0.00025, m̂ = 0.5, v̂ = 0.25 -> w = 1 - 0.1 * 0.5 / 0.5 = 0.9.
  // Step 2: m = -0.055, v = 0.00124975, m̂ = -0.055/0.19 = -0.2894737, v̂ = 0.00124975/0.001999 = 0.6251876,
  //         w = 0.9 + 0.1 * 0.2894737 / 0.7906880 = 0.9366104.
  const p = param([1]);
  const opt = new Adam(new Map([["w", p]]));
  p.grad![0] = 0.5;
  opt.step(0.1);
  assert.ok(Math.abs(p.data[0] - 0.9) < 1e-6);
  p.grad![0] = -1;
  opt.step(0.1);
  assert.ok(Math.abs(p.data[0] - 0.9366104) < 1e-6, String(p.data[0]));
});

test("SGD with momentum worked by hand; parameters without a gradient are left alone", () => {
  // b1 = g1 = 2 -> w = 1 - 0.1 * 2 = 0.8; b2 = 0.5 * 2 + 1 = 2 -> w = 0.8 - 0.2 = 0.6.
  const p = param([1]);
  const frozen: Param = Tensor.fromArray([5], [1]);
  const opt = new SGD(
    new Map([
      ["w", p],
      ["frozen", frozen],
    ]),
    { momentum: 0.5 },
  );
  p.grad![0] = 2;
  opt.step(0.1);
  p.grad![0] = 1;
  opt.step(0.1);
  assert.ok(Math.abs(p.data[0] - 0.6) < 1e-6);
  assert.equal(frozen.data[0], 5);
});

test("optimizer state round-trips: a restored optimizer continues exactly", async () => {
  for (const type of ["adam", "rmsprop", "adagrad", "sgd"] as const) {
    const a = param([0.3, -0.7, 1.1]);
    const optA = createOptimizer(type, new Map([["w", a]]));
    const grads = [
      [0.1, -0.2, 0.3],
      [-0.5, 0.4, 0.05],
      [0.2, 0.2, -0.9],
      [1, -1, 0.5],
    ];
    for (const g of grads.slice(0, 2)) {
      a.grad!.set(g);
      optA.step(0.05);
    }
    const b = param(Array.from(a.data));
    const optB = createOptimizer(type, new Map([["w", b]]));
    optB.setState(await optA.getState());
    for (const g of grads.slice(2)) {
      a.grad!.set(g);
      b.grad!.set(g);
      optA.step(0.05);
      optB.step(0.05);
    }
    assert.deepEqual(Array.from(b.data), Array.from(a.data), type);
  }
});

test("restoring another optimizer's state is a clear error", async () => {
  const p = param([1]);
  const adam = new Adam(new Map([["w", p]]));
  const sgd = new SGD(new Map([["w", p]]));
  const state = await adam.getState();
  assert.throws(
    () => sgd.setState(state),
    (e: Error) => e instanceof CharlmError && /--optimizer adam/.test(e.message),
  );
});

test("clip by global norm scales all gradients together and reports the norm before clipping", () => {
  const a = withGrad([0, 0], [3, 0]);
  const b = withGrad([0], [4]);
  const [norm, factor] = clipGradNorm([a, b], 1).data;
  assert.ok(Math.abs(norm - 5) < 1e-6);
  assert.ok(Math.abs(factor - 0.2) < 1e-6);
  assert.ok(Math.abs(a.grad![0] - 0.6) < 1e-5 && Math.abs(b.grad![0] - 0.8) < 1e-5);
  const small = withGrad([0], [0.5]);
  assert.deepEqual(Array.from(clipGradNorm([small], 1).data), [0.5, 1]);
  assert.equal(small.grad![0], 0.5);
  const bad = withGrad([0], [NaN]);
  assert.ok(Number.isNaN(clipGradNorm([bad], 1).data[0]));
  assert.ok(Number.isNaN(bad.grad![0]));
});

test("schedules: warm-up, constant, step decay, cosine", () => {
  const base: ScheduleConfig = {
    schedule: "constant",
    lr: 1,
    warmup: 4,
    decayEvery: 10,
    decayRate: 0.5,
    minLrFraction: 0.1,
    totalSteps: 104,
  };
  assert.deepEqual(
    [0, 1, 2, 3, 4, 50].map((s) => learningRate(s, base)),
    [0.25, 0.5, 0.75, 1, 1, 1],
  );
  const step = { ...base, schedule: "step" as const };
  assert.deepEqual(
    [4, 13, 14, 24, 34].map((s) => learningRate(s, step)),
    [1, 1, 0.5, 0.25, 0.125],
  );
  const cos = { ...base, schedule: "cosine" as const };
  assert.equal(learningRate(4, cos), 1);
  assert.ok(Math.abs(learningRate(54, cos) - 0.55) < 1e-12); // halfway: (1 + 0.1) / 2
  assert.ok(Math.abs(learningRate(104, cos) - 0.1) < 1e-12);
  assert.ok(Math.abs(learningRate(500, cos) - 0.1) < 1e-12);
});

test("early stopping: patience, min-delta, and the best weights come back", async () => {
  const p = param([0]);
  const params = new Map([["w", p]]);
  const es = new EarlyStopping(2, 0.01);
  const run = (loss: number, epoch: number, w: number) => {
    p.data[0] = w;
    return es.update(loss, epoch, params);
  };
  assert.deepEqual(await run(2.0, 1, 10), { improved: true, stop: false });
  assert.deepEqual(await run(1.5, 2, 20), { improved: true, stop: false });
  assert.deepEqual(await run(1.495, 3, 30), { improved: false, stop: false }); // within min-delta: not an improvement
  assert.deepEqual(await run(1.6, 4, 40), { improved: false, stop: true });
  assert.equal(es.bestEpoch, 2);
  assert.ok(es.restore(params));
  assert.equal(p.data[0], 20);
  const never = new EarlyStopping(0, 0);
  for (let e = 1; e < 10; e++) assert.equal((await never.update(5, e, params)).stop, false);
});

test("config: default < preset < overrides, and every field has a rule", () => {
  assert.deepEqual(Object.keys(TRAIN_FIELDS).sort(), Object.keys(DEFAULT_TRAIN_CONFIG).sort());
  const cpu = resolveTrainConfig();
  assert.equal(cpu.layers, PRESETS.cpu.layers);
  const tut = resolveTrainConfig({ preset: "tutorial", overrides: { batchSize: 16 } });
  assert.equal(tut.units, 1024);
  assert.equal(tut.embedding, 256);
  assert.equal(tut.seqLength, 100);
  assert.equal(tut.batchSize, 16);
  assert.equal(tut.optimizer, "adam");
  const withFile = resolveTrainConfig({ preset: "tiny", file: { units: 48, lr: 0.01 }, overrides: { lr: 0.02 } });
  assert.equal(withFile.units, 48);
  assert.equal(withFile.lr, 0.02);
});

test("config: unknown keys, wrong types, bad choices and ranges are errors naming the key", () => {
  const bad: [unknown, RegExp][] = [
    [{ unit: 5 }, /unknown training config key "unit"/],
    [{ units: "512" }, /"units" must be a whole number/],
    [{ units: 1.5 }, /"units" must be a whole number/],
    [{ cell: "transformer" }, /"cell" must be one of lstm, gru, rnn/],
    [{ lr: 0 }, /"lr" must be above 0/],
    [{ restoreBest: "yes" }, /"restoreBest" must be true or false/],
    [[1, 2], /expected a JSON object/],
  ];
  for (const [raw, re] of bad) {
    assert.throws(
      () => checkPartialConfig(raw, "my.json"),
      (e: Error) => e instanceof CharlmError && re.test(e.message) && e.message.startsWith("my.json"),
      String(re),
    );
  }
  assert.throws(
    () => resolveTrainConfig({ preset: "huge" }),
    /unknown preset 'huge'; the presets are cpu, tutorial, gpu, tiny/,
  );
});
