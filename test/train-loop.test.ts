// The training loop with tiny models: resuming is bit-for-bit (windows with dropout, streams with carried state,
// mid-epoch and at an epoch boundary), early stopping restores the best weights, a diverging learning rate stops
// with a clear message and keeps the last good checkpoint, the metrics log and loss curve are written.

import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Vocab } from "../src/data/vocab.js";
import { softmaxCrossEntropy } from "../src/engine/ops.js";
import { Tensor } from "../src/engine/tensor.js";
import type { LanguageModel } from "../src/models/contract.js";
import { buildModel } from "../src/models/registry.js";
import {
  loadBestWeights,
  loadCarriedState,
  loadCheckpoint,
  loadOptimizerState,
  loadTrainingWeights,
} from "../src/checkpoint/checkpoint.js";
import { modelConfigFor, type TrainConfig } from "../src/train/config.js";
import { generateText } from "../src/sample/generate.js";
import { evaluate } from "../src/train/evaluate.js";
import { trainLoop as train, type ResumeState, type TrainResult } from "../src/train/loop.js";
import { CharlmError } from "../src/util/errors.js";
import { Rng } from "../src/util/rng.js";
import { tinyLoopConfig } from "./helpers/loop.js";

const VERSE =
  "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n" +
  "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n";
const TEXT = VERSE.repeat(12);
const vocab = Vocab.build(TEXT);
const splits = { train: TEXT.slice(0, 1800), validation: TEXT.slice(1800), name: "verse" };

const tmp = (): string => mkdtempSync(join(tmpdir(), "charlm-loop-"));

function config(over: Partial<TrainConfig> = {}): TrainConfig {
  return tinyLoopConfig(over);
}

function model(cfg: TrainConfig): LanguageModel {
  const c = { type: "rnn" as const, cell: cfg.cell, vocabSize: vocab.size, embedding: cfg.embedding, units: cfg.units };
  return buildModel({ ...c, layers: cfg.layers, dropout: cfg.dropout }, new Rng(cfg.seed));
}

const quiet = { quiet: true, plot: false };

async function resumeFrom(dir: string, cfg: TrainConfig, extra: Partial<TrainConfig> = {}): Promise<TrainResult> {
  const loaded = await loadCheckpoint(dir);
  const resume: ResumeState = {
    manifest: loaded.manifest,
    optimizer: await loadOptimizerState(loaded.files),
    bestWeights: await loadBestWeights(loaded.files),
    carried: await loadCarriedState(loaded.files),
    trainingWeights: await loadTrainingWeights(loaded.files),
  };
  return train({
    config: { ...cfg, ...extra },
    model: loaded.model,
    vocab: loaded.vocab,
    splits,
    out: dir,
    resume,
    ...quiet,
  });
}

function weights(m: LanguageModel): number[][] {
  return [...m.parameters().values()].map((t) => Array.from(t.data));
}

for (const [label, over, stopAt] of [
  ["windows with dropout, stopped mid-epoch", { batching: "windows" }, 8],
  ["windows, stopped at an epoch boundary", { batching: "windows" }, 6],
  ["streams with carried state, stopped mid-epoch", { batching: "stream", dropout: 0 }, 9],
  ["cosine schedule with warm-up, stopped mid-epoch", { schedule: "cosine", warmup: 4, optimizer: "rmsprop" }, 5],
  // Every cell with both batching styles: a GRU or SimpleRNN state has no `c`, and it must survive the round trip.
  ["GRU, windows with dropout", { cell: "gru", batching: "windows" }, 7],
  ["GRU, streams with carried state", { cell: "gru", batching: "stream", dropout: 0 }, 9],
  ["SimpleRNN, windows with dropout", { cell: "rnn", batching: "windows" }, 7],
  ["SimpleRNN, streams with carried state", { cell: "rnn", batching: "stream", dropout: 0 }, 9],
  // The average and the training weights both come back (the checkpoint's model is the average).
  ["weight average (--ema), stopped mid-epoch", { ema: 0.9 }, 8],
  ["weight average (--ema), stopped at an epoch boundary", { ema: 0.95, schedule: "cosine" }, 12],
] as const) {
  test(`resume is bit-for-bit: ${label}`, async () => {
    const cfg = config(over as Partial<TrainConfig>);
    const fullModel = model(cfg);
    const full = await train({ config: cfg, model: fullModel, vocab, splits, out: tmp(), ...quiet });
    assert.equal(full.status, "finished");
    assert.equal(full.step, 18);

    const dir = tmp();
    const first = await train({
      config: cfg,
      model: model(cfg),
      vocab,
      splits,
      out: dir,
      stopAfterSteps: stopAt,
      ...quiet,
    });
    assert.equal(first.status, "interrupted");
    assert.equal(first.step, stopAt);
    const second = await resumeFrom(dir, cfg);
    assert.equal(second.status, "finished");

    assert.deepEqual([...first.stepLosses, ...second.stepLosses], full.stepLosses);
    assert.deepEqual(
      second.history.map((h) => [h.epoch, h.step, h.trainLoss, h.valLoss]),
      full.history.map((h) => [h.epoch, h.step, h.trainLoss, h.valLoss]),
    );
    const final = await loadCheckpoint(dir);
    assert.deepEqual(weights(final.model), weights(fullModel));
    // The metrics log reads as one uninterrupted run.
    const steps = readFileSync(join(dir, "metrics.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string; step: number; loss?: number })
      .filter((l) => l.type === "step");
    assert.deepEqual(
      steps.map((l) => [l.step, l.loss]),
      full.stepLosses.map((s) => [s.step, s.loss]),
    );
  });
}

test("resuming with data whose batches differ is refused", async () => {
  const cfg = config();
  const dir = tmp();
  await train({ config: cfg, model: model(cfg), vocab, splits, out: dir, stopAfterSteps: 8, ...quiet });
  const loaded = await loadCheckpoint(dir);
  const resume: ResumeState = {
    manifest: loaded.manifest,
    optimizer: await loadOptimizerState(loaded.files),
    bestWeights: null,
    carried: null,
  };
  const other = { ...splits, train: splits.train.slice(0, 1500) };
  await assert.rejects(
    train({ config: cfg, model: loaded.model, vocab, splits: other, out: dir, resume, ...quiet }),
    /replaying the batch order did not reach the saved state/,
  );
});

// Training text where 'b' is always followed by 'a', validation text where it is mostly followed by 'b': past the
// first epoch, the more the model learns the worse the validation loss, so epoch 1 stays the best.
const tv = Vocab.build("ab\n");
const data = { train: "aaab".repeat(150), validation: "abbbbbbb".repeat(25), name: "ab" };
const make = () =>
  buildModel(
    { type: "rnn", cell: "lstm", vocabSize: tv.size, embedding: 4, units: 8, layers: 1, dropout: 0 },
    new Rng(5),
  );
const trainAb = (cfg: TrainConfig, m: LanguageModel, o: Partial<Parameters<typeof train>[0]>) =>
  train({ config: cfg, model: m, vocab: tv, splits: data, ...quiet, ...o });

test("early stopping stops after `patience` epochs without improvement and restores the best weights", async () => {
  const cfg = config({ patience: 2, epochs: 10, optimizer: "adam", lr: 0.01, dropout: 0, minDelta: 0 });
  const dir = tmp();
  const m = make();
  const lines: string[] = [];
  const r = await trainAb(cfg, m, { out: dir, log: (l) => lines.push(l) });
  assert.equal(r.status, "early-stopped");
  assert.equal(r.epoch, 3);
  assert.ok(r.history[1].valLoss > r.history[0].valLoss && r.history[2].valLoss > r.history[0].valLoss);
  assert.ok(lines.some((l) => /restored the weights of epoch 1/.test(l)));
  // The same run stopped after one epoch has exactly the restored weights.
  const one = make();
  await trainAb({ ...cfg, epochs: 1 }, one, { out: tmp() });
  assert.deepEqual(weights(m), weights(one));
  const saved = await loadCheckpoint(dir);
  assert.deepEqual(weights(saved.model), weights(one));
  assert.equal(saved.manifest.status, "early-stopped");
  assert.equal(saved.manifest.bestValLoss, r.history[0].valLoss);
  const ev = await evaluate(saved.model, tv.encode(data.validation), { B: cfg.batchSize, T: cfg.seqLength });
  assert.equal(ev.nats, r.history[0].valLoss);
});

for (const [ema, at] of [
  [0, "mid-epoch"],
  [0.9, "mid-epoch"],
  [0.9, "at an epoch's end"],
] as const) {
  test(`endOnStop (ema ${ema}): a run stopped ${at} ends with the best validation's weights, else where it stood`, async () => {
    // The overfitting text of the test above, at patience 0 (the page's new models): epoch 1 stays the best, and a
    // stop in epoch 3 (as the page's Stop button or Minutes box) keeps epoch 1's weights, which the same run cut
    // at one epoch ends with.
    const cfg = config({ patience: 0, epochs: 10, optimizer: "adam", lr: 0.01, dropout: 0, ema });
    const stopAt = 2 * cfg.stepsPerEpoch + (at === "mid-epoch" ? 3 : 0);
    const run = async (endOnStop: boolean, dir: string) => {
      const m = make();
      const r = await trainAb(cfg, m, { out: dir, endOnStop, onStep: (s) => s.step < stopAt });
      return { m, r };
    };
    const one = make();
    await trainAb({ ...cfg, epochs: 1 }, one, { out: tmp() });

    const dir = tmp();
    const ended = await run(true, dir);
    assert.equal(ended.r.status, "stopped");
    assert.equal((await loadCheckpoint(dir)).manifest.status, "stopped");
    assert.equal(ended.r.step, stopAt);
    assert.ok(ended.r.history[1].valLoss > ended.r.history[0].valLoss);
    assert.deepEqual(weights(ended.m), weights(one));
    const saved = await loadCheckpoint(dir);
    assert.deepEqual(weights(saved.model), weights(one));
    assert.equal(await loadTrainingWeights(saved.files), null); // ended: nothing to resume the average from
    const ev = await evaluate(saved.model, tv.encode(data.validation), { B: cfg.batchSize, T: cfg.seqLength });
    assert.equal(ev.nats, ended.r.bestValLoss);

    // Without it the run stops where it stands, to resume from: not the best weights.
    const kept = await run(false, tmp());
    assert.equal(kept.r.step, stopAt);
    assert.notDeepEqual(weights(kept.m), weights(one));
  });
}

test("a learning rate that makes the loss blow up stops with one clear line and keeps the last good checkpoint", async () => {
  const cfg = config({ epochs: 1, dropout: 0, clip: 0 });
  const dir = tmp();
  await train({ config: cfg, model: model(cfg), vocab, splits, out: dir, ...quiet });
  const before = await loadCheckpoint(dir);
  // Adam moves every weight by about lr per step: at 1e38 the float32 weights overflow within a few steps.
  await assert.rejects(
    resumeFrom(dir, cfg, { epochs: 2, lr: 1e38 }),
    (e: Error) =>
      e instanceof CharlmError &&
      !e.message.includes("\n") &&
      /^training diverged at step \d+ \(epoch 2\): the (loss|gradient norm) became (NaN|Infinity)/.test(e.message) &&
      /lower --lr/.test(e.message) &&
      e.message.endsWith(`the last good checkpoint (step 6) in ${dir} is kept`),
  );
  const after = await loadCheckpoint(dir);
  assert.equal(after.manifest.step, 6);
  assert.deepEqual(weights(after.model), weights(before.model));
});

test("a fresh run diverging before any checkpoint says so", async () => {
  const cfg = config({ epochs: 1, clip: 0, lr: 1e38 });
  await assert.rejects(
    train({ config: cfg, model: model(cfg), vocab, splits, out: tmp(), ...quiet }),
    /no checkpoint had been saved yet$/,
  );
});

test("metrics.jsonl and loss.svg are written next to the checkpoint", async () => {
  const cfg = config({ epochs: 2, sampleLength: 20, logEvery: 2 });
  const dir = tmp();
  const lines: string[] = [];
  await train({ config: cfg, model: model(cfg), vocab, splits, out: dir, quiet: true, log: (l) => lines.push(l) });
  const log = readFileSync(join(dir, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.equal(log.filter((l) => l.type === "step").length, 6);
  const epochs = log.filter((l) => l.type === "epoch");
  assert.equal(epochs.length, 2);
  assert.ok(Math.abs(epochs[0].valBitsPerChar - epochs[0].valLoss / Math.LN2) < 1e-12);
  const svg = readFileSync(join(dir, "loss.svg"), "utf8");
  assert.match(svg, /^<svg[^]*<\/svg>\n$/);
  // Two lines (train, validation) through one point per epoch each, and a legend naming them.
  assert.equal((svg.match(/stroke-width="1.5"/g) ?? []).length, 2);
  assert.equal((svg.match(/<circle /g) ?? []).length, 4);
  assert.match(svg, />validation</);
  assert.ok(!existsSync(join(dir, "loss.png")), "no PNG: the SVG is the picture");
  assert.equal(lines.filter((l) => l.startsWith("--- sample at step")).length, 2);
  assert.ok(lines.some((l) => /^epoch 2\/2 .* val \d\.\d+ nats\/char \(\d\.\d+ bits\/char\)/.test(l)));
});

test("evaluate: every character after the first counted once; a uniform model scores ln V nats, log2 V bits", async () => {
  const V = vocab.size;
  const uniform: LanguageModel = {
    config: { type: "uniform" },
    parameters: () => new Map(),
    forward: (tokens, B, T, o) => {
      const logits = new Tensor(new Float32Array(B * T * V), [B, T, V]);
      return { logits, loss: o?.targets ? softmaxCrossEntropy(logits, o.targets) : undefined };
    },
  };
  const ids = vocab.encode(TEXT.slice(0, 1001));
  const w = await evaluate(uniform, ids, { B: 7, T: 30 });
  assert.equal(w.chars, 1000);
  assert.ok(Math.abs(w.nats - Math.log(V)) < 1e-6 && Math.abs(w.bits - Math.log2(V)) < 1e-6);
  assert.ok(Math.abs(w.perplexity - V) < 1e-3);
  const c = await evaluate(model(config()), ids, { B: 7, T: 30, carry: true });
  assert.equal(c.chars, 7 * Math.floor(1000 / 7));
  assert.equal((await evaluate(uniform, ids, { B: 7, T: 30, maxChars: 100 })).chars, 100);
});

test("the same loop trains a GPT-style model: loss falls, resume is bit-for-bit, and it samples", async () => {
  const cfg = config({
    type: "gpt",
    embedding: 16,
    layers: 1,
    heads: 2,
    seqLength: 16,
    dropout: 0.1,
    epochs: 2,
    stepsPerEpoch: 4,
  });
  const make = () => buildModel(modelConfigFor(cfg, vocab.size), new Rng(cfg.seed));
  const fullModel = make();
  const full = await train({ config: cfg, model: fullModel, vocab, splits, out: tmp(), ...quiet });
  assert.ok(full.history[1].valLoss < full.history[0].valLoss);
  const dir = tmp();
  const first = await train({ config: cfg, model: make(), vocab, splits, out: dir, stopAfterSteps: 3, ...quiet });
  const second = await resumeFrom(dir, cfg);
  assert.deepEqual([...first.stepLosses, ...second.stepLosses], full.stepLosses);
  const { model: loaded } = await loadCheckpoint(dir);
  assert.deepEqual(weights(loaded), weights(fullModel));
  const text = await generateText(loaded, vocab, { prime: "First", length: 40, seed: 2 });
  assert.equal(text.length, 40);
});

test("an abort from a timer stops the run within a step, even when no metrics line is written", async () => {
  // A signal handler (Ctrl-C, SIGTERM) is a macrotask like this timer: the loop must yield to the event loop between
  // steps, not only when it writes metrics.jsonl (here never: logEvery is larger than the run).
  const cfg = config({ epochs: 1, stepsPerEpoch: 100000, logEvery: 1000000, dropout: 0 });
  const ac = new AbortController();
  let stepsWhenAborted = -1;
  let steps = 0;
  setTimeout(() => {
    stepsWhenAborted = steps;
    ac.abort();
  }, 200);
  const r = await train({
    config: cfg,
    model: model(cfg),
    vocab,
    splits: { ...splits, train: TEXT.repeat(40) },
    signal: ac.signal,
    onStep: () => void steps++,
    ...quiet,
  });
  assert.equal(r.status, "interrupted");
  assert.ok(stepsWhenAborted >= 0, "the timer never fired during the run");
  assert.ok(r.step <= stepsWhenAborted + 1, `stopped at step ${r.step}, aborted after ${stepsWhenAborted}`);
});
