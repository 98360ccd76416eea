// The training time limit (`timeLimit`): a run stops cleanly when its training time in all reaches it (validation
// loss measured, checkpoint saved with status "time-limit"), and a resume with a larger limit trains further.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Vocab } from "../src/data/vocab.js";
import { buildModel } from "../src/models/registry.js";
import { loadBestWeights, loadCheckpoint, loadOptimizerState } from "../src/checkpoint/checkpoint.js";
import { resolveTrainConfig, type TrainConfig } from "../src/train/config.js";
import { evaluate } from "../src/train/evaluate.js";
import { trainLoop as train } from "../src/train/loop.js";
import { Rng } from "../src/util/rng.js";

const TEXT = "Speak, speak. You are all resolved rather to die than to famish? Resolved. resolved.\n".repeat(400);
const vocab = Vocab.build(TEXT);
const splits = { train: TEXT.slice(0, 32000), validation: TEXT.slice(32000), name: "verse" };

const config = (over: Partial<TrainConfig>): TrainConfig =>
  resolveTrainConfig({
    preset: "tiny",
    overrides: { epochs: 1000, stepsPerEpoch: 1000, sampleLength: 0, evalChars: 0, logEvery: 1, ...over },
  });

test("a run stops at its time limit with a validation loss and a checkpoint; a larger limit resumes it", async () => {
  const out = mkdtempSync(join(tmpdir(), "charlm-time-"));
  const cfg = config({ timeLimit: 0.4 });
  const model = buildModel(
    { type: "rnn", cell: "lstm", vocabSize: vocab.size, embedding: 16, units: 32, layers: 1, dropout: 0 },
    new Rng(1),
  );
  const lines: string[] = [];
  const first = await train({
    config: cfg,
    model,
    vocab,
    splits,
    out,
    quiet: true,
    plot: false,
    log: (l) => lines.push(l),
  });
  assert.equal(first.status, "time-limit");
  assert.ok(first.elapsedSeconds >= 0.4 && first.elapsedSeconds < 5, `${first.elapsedSeconds} s`);
  assert.ok(first.step > 0 && first.epoch === 0, `step ${first.step}, epoch ${first.epoch}`);
  assert.match(lines.join("\n"), /time limit of 0\.4 s reached at step \d+: val \d\.\d{4} nats\/char/);
  const evals = readFileSync(join(out, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { type: string; step: number; valLoss?: number })
    .filter((l) => l.type === "eval");
  assert.equal(evals.length, 1);
  assert.equal(evals[0].step, first.step);
  assert.ok(evals[0].valLoss! > 0 && evals[0].valLoss! < Math.log(vocab.size) + 0.5);

  const resumeWith = async (limit: number) => {
    const loaded = await loadCheckpoint(out);
    assert.equal(loaded.manifest.status, "time-limit");
    const resume = {
      manifest: loaded.manifest,
      optimizer: await loadOptimizerState(loaded.files),
      bestWeights: await loadBestWeights(loaded.files),
      carried: null,
    };
    return train({
      config: { ...cfg, timeLimit: limit },
      model: loaded.model,
      vocab,
      splits,
      out,
      resume,
      quiet: true,
      plot: false,
    });
  };
  // The same limit again: nothing left to train, and the message says what to raise.
  await assert.rejects(() => resumeWith(0.4), /already trained .* of its --time-limit 0\.4; raise --time-limit/);
  const second = await resumeWith(0.9);
  assert.equal(second.status, "time-limit");
  assert.ok(second.step > first.step, `${second.step} steps after ${first.step}`);
  assert.ok(second.elapsedSeconds >= 0.9, `${second.elapsedSeconds} s in all`);
});

test("a time limit reached at an epoch's end stops after that epoch's evaluation", async () => {
  const out = mkdtempSync(join(tmpdir(), "charlm-time-"));
  // One step per epoch: every step ends an epoch, so the limit is seen at an epoch boundary.
  const cfg = config({ timeLimit: 0.3, stepsPerEpoch: 1 });
  const model = buildModel(
    { type: "rnn", cell: "lstm", vocabSize: vocab.size, embedding: 16, units: 32, layers: 1, dropout: 0 },
    new Rng(1),
  );
  const r = await train({ config: cfg, model, vocab, splits, out, quiet: true, plot: false });
  assert.equal(r.status, "time-limit");
  assert.equal(r.epoch, r.step);
  assert.equal(r.history.length, r.epoch);
  assert.equal((await loadCheckpoint(out)).manifest.status, "time-limit");
});

test("endOnStop: a time limit ends the run with the best validation's weights, status stopped", async () => {
  // Text that overfits (the early-stopping test's in train-loop.test.ts): the validation loss rises after the first
  // epoch, so where the limit finds the run is not its best. Two steps an epoch: the limit is reached mid-epoch 6
  // (step 11 waits for it).
  const tv = Vocab.build("ab\n");
  const data = { train: "aaab".repeat(150), validation: "abbbbbbb".repeat(25), name: "ab" };
  const out = mkdtempSync(join(tmpdir(), "charlm-time-"));
  const cfg = config({ timeLimit: 1, stepsPerEpoch: 0, patience: 0, lr: 0.01, dropout: 0, ema: 0 });
  const model = buildModel(
    { type: "rnn", cell: "lstm", vocabSize: tv.size, embedding: 4, units: 8, layers: 1, dropout: 0 },
    new Rng(5),
  );
  const t0 = performance.now();
  const onStep = ({ step }: { step: number }) => {
    while (step === 11 && performance.now() - t0 < 1050);
  };
  const r = await train({
    config: cfg,
    model,
    vocab: tv,
    splits: data,
    out,
    quiet: true,
    plot: false,
    endOnStop: true,
    onStep,
  });
  assert.equal(r.status, "stopped");
  assert.equal(r.step, 11);
  assert.equal(r.history.length, 5);
  assert.ok(r.history[4].valLoss > r.history[0].valLoss, "the run overfitted");
  const saved = await loadCheckpoint(out);
  assert.equal(saved.manifest.status, "stopped");
  const ev = await evaluate(saved.model, tv.encode(data.validation), { B: cfg.batchSize, T: cfg.seqLength });
  assert.equal(ev.nats, r.bestValLoss);
  assert.equal(ev.nats, r.history[0].valLoss);
});
