// Weight averaging (--ema): the average against one worked in float64, on js and on webgpu; the training loop's
// use of it (validation, the checkpoint's model, the training weights beside it, the model handed back); and the
// config's and checkpoint's checks. Bit-for-bit resume with --ema is in train-loop.test.ts.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadCheckpoint, loadTrainingWeights } from "../src/checkpoint/checkpoint.js";
import { Vocab } from "../src/data/vocab.js";
import { getBackend, setBackend } from "../src/engine/index.js";
import { Tensor } from "../src/engine/tensor.js";
import type { LanguageModel } from "../src/models/contract.js";
import { buildModel } from "../src/models/registry.js";
import { WeightAverage } from "../src/train/average.js";
import { resolveTrainConfig, type TrainConfig } from "../src/train/config.js";
import { evaluate } from "../src/train/evaluate.js";
import { exportCheckpointToTorch, loadTorchExport } from "../src/interop/torch-export.js";
import { trainLoop } from "../src/train/loop.js";
import { resumedConfig } from "../src/train/session.js";
import { Rng } from "../src/util/rng.js";
import { tinyLoopConfig } from "./helpers/loop.js";
import { gpuForTests } from "./helpers/webgpu.js";

const { gpu, skip } = await gpuForTests();

/** Two parameters on the current backend, and weights for 12 "steps" (a walk) to average. */
function walk(): { params: Map<string, Tensor>; steps: Float32Array[][] } {
  const rng = new Rng(3);
  const sizes = [7, 130];
  const params = new Map(sizes.map((n, i) => [`p${i}`, Tensor.zeros([n])]));
  let cur = sizes.map((n) => Float32Array.from({ length: n }, () => rng.random() * 2 - 1));
  const steps: Float32Array[][] = [];
  for (let t = 0; t < 12; t++) {
    cur = cur.map((w) => w.map((x) => x + (rng.random() - 0.5) * 0.3));
    steps.push(cur);
  }
  return { params, steps };
}

/** The average worked in float64: d_t = min(decay, (1 + t) / (10 + t)), a_1 = w_1, a_t = d_t a_(t-1) + (1 - d_t) w_t. */
function expected(steps: Float32Array[][], decay: number): Float64Array[] {
  let avg: Float64Array[] = [];
  steps.forEach((ws, i) => {
    const t = i + 1;
    const d = Math.min(decay, (1 + t) / (10 + t));
    avg =
      t === 1 ? ws.map((w) => Float64Array.from(w)) : avg.map((a, k) => a.map((x, j) => d * x + (1 - d) * ws[k][j]));
  });
  return avg;
}

function close(got: Float32Array, want: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(got.length, want.length, what);
  for (let i = 0; i < got.length; i++) {
    assert.ok(Math.abs(got[i] - want[i]) <= tol, `${what}[${i}]: ${got[i]} vs ${want[i]}`);
  }
}

/** Run the walk through a WeightAverage on the current backend; the averages read back, and the weights after with(). */
async function averaged(decay: number) {
  const { params, steps } = walk();
  const avg = new WeightAverage(params, decay);
  for (const ws of steps) {
    [...params.values()].forEach((p, k) => p.write(ws[k]));
    avg.update();
  }
  const inside = await avg.with(async () => Promise.all([...params.values()].map((p) => p.read())));
  const after = await Promise.all([...params.values()].map((p) => p.read()));
  const read = [...(await avg.read()).values()];
  avg.dispose();
  return { steps, inside, after, read };
}

test("the weight average matches the one worked in float64, and with() puts the training weights back", async () => {
  for (const decay of [0.5, 0.9, 0.999]) {
    const { steps, inside, after, read } = await averaged(decay);
    const want = expected(steps, decay);
    want.forEach((w, k) => close(read[k], w, 2e-6, `decay ${decay}: average p${k}`));
    inside.forEach((w, k) => assert.deepEqual(w, read[k]));
    after.forEach((w, k) => assert.deepEqual(w, steps.at(-1)![k]));
  }
  // Without warm-up the first steps' weights would weigh 0.999 of it: here step 12 already counts 1 - 21/22.
  const { steps, read } = await averaged(0.999);
  assert.ok(Math.abs(read[0][0] - steps.at(-1)![0][0]) < Math.abs(read[0][0] - steps[0][0][0]));
});

test("with() restores the training weights when its function throws; a bad decay or state is refused", async () => {
  const p = Tensor.fromArray([1, 2, 3], [3]);
  const params = new Map([["w", p]]);
  const avg = new WeightAverage(params, 0.9);
  avg.update();
  p.write(Float32Array.from([4, 5, 6]));
  avg.update();
  await assert.rejects(
    avg.with(() => Promise.reject(new Error("boom"))),
    /boom/,
  );
  assert.deepEqual(Array.from(await p.read()), [4, 5, 6]);
  for (const d of [0, 1, 1.5, -0.1, NaN]) assert.throws(() => new WeightAverage(params, d), /decay .* between 0 and 1/);
  assert.throws(() => avg.setState({ t: 3, weights: new Map([["w", new Float32Array(2)]]) }), /w/);
  avg.commit(); // t = 2: d = min(0.9, 3/12) = 0.25
  close(await p.read(), [0.25 * 1 + 0.75 * 4, 0.25 * 2 + 0.75 * 5, 0.25 * 3 + 0.75 * 6], 1e-6, "committed");
});

describe("weight average on webgpu", { skip }, () => {
  test("the same averages as on js", async () => {
    const before = getBackend();
    const onJs = await averaged(0.9);
    setBackend(gpu!);
    try {
      const onGpu = await averaged(0.9);
      onGpu.read.forEach((w, k) => close(w, onJs.read[k], 1e-6, `p${k}`));
      onGpu.after.forEach((w, k) => assert.deepEqual(w, onJs.after[k]));
    } finally {
      setBackend(before);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// In the training loop

const TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n".repeat(30);
const vocab = Vocab.build(TEXT);
const splits = { train: TEXT.slice(0, 2200), validation: TEXT.slice(2200), name: "hamlet" };
const tmp = (): string => mkdtempSync(join(tmpdir(), "charlm-ema-"));

function config(over: Partial<TrainConfig> = {}): TrainConfig {
  return tinyLoopConfig({ epochs: 2, dropout: 0.1, ...over });
}
const model = (cfg: TrainConfig): LanguageModel =>
  buildModel(
    { type: "rnn", cell: "lstm", vocabSize: vocab.size, embedding: 8, units: 12, layers: 1, dropout: cfg.dropout },
    new Rng(cfg.seed),
  );
const weightsOf = async (m: LanguageModel) =>
  Promise.all([...m.parameters().values()].map(async (t) => Float32Array.from(await t.read())));

test("--ema: validation and the checkpoint's model use the average; the training weights go beside it", async () => {
  const decay = 0.8;
  // The same run without averaging takes the same steps (averaging changes no draw): record its weights per step.
  const plain = model(config());
  const perStep: Float32Array[][] = [];
  const p = await trainLoop({
    config: config(),
    model: plain,
    vocab,
    splits,
    quiet: true,
    plot: false,
    stopAfterSteps: 9,
    onStep: async () => void perStep.push(await weightsOf(plain)),
  });
  assert.equal(perStep.length, 9);

  const dir = tmp();
  const m = model(config({ ema: decay }));
  const r = await trainLoop({
    config: config({ ema: decay }),
    model: m,
    vocab,
    splits,
    out: dir,
    quiet: true,
    plot: false,
    stopAfterSteps: 9,
  });
  assert.equal(r.status, "interrupted");
  assert.deepEqual(r.stepLosses, p.stepLosses);

  // The checkpoint: model.safetensors is the average after step 9, training.safetensors the weights of step 9.
  const saved = await loadCheckpoint(dir);
  assert.deepEqual(saved.manifest.average, { decay, t: 9 });
  const want9 = expected(perStep, decay);
  (await weightsOf(saved.model)).forEach((w, k) => close(w, want9[k], 1e-6, `model.safetensors ${k}`));
  const training = [...(await loadTrainingWeights(saved.files))!.values()];
  training.forEach((w, k) => assert.deepEqual(w, perStep[8][k]));
  // The model handed back holds the average too.
  assert.deepEqual(await weightsOf(m), await weightsOf(saved.model));

  // A PyTorch export continues the run: it takes the weights Adam steps (with their moments), not the average.
  const exported = join(tmp(), "torch");
  assert.equal((await exportCheckpointToTorch(dir, exported)).training, true);
  const back = await loadTorchExport(exported);
  (await weightsOf(back.model)).forEach((w, k) => assert.deepEqual(w, perStep[8][k]));
  assert.equal(back.optimizer?.t, 9);

  // Epoch 1's validation loss is the average's after step 6, not the training weights'.
  const at6 = model(config());
  const want6 = expected(perStep.slice(0, 6), decay);
  [...at6.parameters().values()].forEach((t, k) => t.write(Float32Array.from(want6[k])));
  const valIds = vocab.encode(splits.validation);
  const ev = await evaluate(at6, valIds, { B: 4, T: 16 });
  assert.ok(Math.abs(r.history[0].valLoss - ev.nats) < 1e-5, `${r.history[0].valLoss} vs ${ev.nats}`);
  assert.ok(Math.abs(r.history[0].valLoss - p.history[0].valLoss) > 1e-4, "the average is not the training weights");
});

test("--ema: a run that ends keeps the best average and no training weights", async () => {
  const dir = tmp();
  const cfg = config({ ema: 0.7, epochs: 3 });
  const m = model(cfg);
  const r = await trainLoop({ config: cfg, model: m, vocab, splits, out: dir, quiet: true, plot: false });
  assert.equal(r.status, "finished");
  const saved = await loadCheckpoint(dir);
  assert.equal(await loadTrainingWeights(saved.files), null);
  assert.equal(saved.manifest.files["training.safetensors"], undefined);
  assert.deepEqual(await weightsOf(saved.model), await weightsOf(m));
  const ev = await evaluate(saved.model, vocab.encode(splits.validation), { B: 4, T: 16 });
  assert.equal(ev.nats, r.bestValLoss);
  // its PyTorch export is that average
  const exported = join(tmp(), "torch");
  assert.equal((await exportCheckpointToTorch(dir, exported)).training, false);
  assert.deepEqual(await weightsOf((await loadTorchExport(exported)).model), await weightsOf(m));
});

test("--ema: its range, and a resumed run keeps it", () => {
  assert.throws(() => resolveTrainConfig({ overrides: { ema: 1 } }), /ema/);
  assert.throws(() => resolveTrainConfig({ overrides: { ema: -0.5 } }), /ema/);
  const saved = config({ ema: 0.99 });
  assert.equal(resumedConfig(saved, { ema: 0.99, epochs: 5 }, "x").epochs, 5);
  assert.throws(() => resumedConfig(saved, { ema: 0.9 }, "x"), /--ema 0.9 differs from the run's 0.99/);
});
