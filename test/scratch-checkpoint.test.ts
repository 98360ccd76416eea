import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Vocab } from "../src/data/vocab.js";
import { loadScratchCheckpoint, saveScratchCheckpoint } from "../src/scratch/checkpoint.js";
import { PARAM_NAMES, ScratchRNN } from "../src/scratch/rnn.js";
import { DEFAULT_SCRATCH_CONFIG, ScratchTrainer, trainLoop } from "../src/scratch/train.js";
import { Rng } from "../src/util/rng.js";

const TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer. ".repeat(3);
const config = { ...DEFAULT_SCRATCH_CONFIG, hidden: 12, seqLength: 8 };
const data = { name: "text", trainChars: TEXT.length };

function fresh(seed = 5) {
  const vocab = Vocab.build(TEXT);
  const rng = new Rng(seed);
  const trainer = new ScratchTrainer(new ScratchRNN(vocab.size, config.hidden, rng), vocab.encode(TEXT), config);
  return { vocab, rng, trainer };
}

const train = (t: ScratchTrainer, rng: Rng, iterations: number) =>
  trainLoop(t, { iterations, rng, sampleEvery: 7, sampleLength: 20 });

test("save then load gives back the weights, Adagrad memory, training position, RNG and vocabulary", async () => {
  const dir = await mkdtemp(join(tmpdir(), "charlm-scratch-"));
  const { vocab, rng, trainer } = fresh();
  await train(trainer, rng, 15);
  const m = await saveScratchCheckpoint(dir, { trainer, vocab, rng, data });
  assert.equal(m.format, "charlm-scratch-rnn");
  assert.equal(m.version, 1);
  const ck = await loadScratchCheckpoint(dir);
  for (const n of PARAM_NAMES) {
    assert.deepEqual(ck.model.params[n], trainer.model.params[n]);
    assert.deepEqual(ck.model.memory[n], trainer.model.memory[n]);
  }
  assert.deepEqual(ck.state, trainer.state);
  assert.deepEqual(ck.rng.getState(), rng.getState());
  assert.deepEqual(ck.vocab.chars, vocab.chars);
  assert.deepEqual(ck.config, config);
});

test("resume continues exactly: 10 + 20 iterations equal 30 in one go", async () => {
  const dir = await mkdtemp(join(tmpdir(), "charlm-scratch-"));
  const once = fresh();
  await train(once.trainer, once.rng, 30);

  const first = fresh();
  await train(first.trainer, first.rng, 10);
  await saveScratchCheckpoint(dir, { trainer: first.trainer, vocab: first.vocab, rng: first.rng, data });
  const ck = await loadScratchCheckpoint(dir);
  const resumed = new ScratchTrainer(ck.model, ck.vocab.encode(TEXT), ck.config, ck.state);
  await train(resumed, ck.rng, 30);

  assert.equal(resumed.state.iteration, 30);
  assert.equal(resumed.state.smoothLoss, once.trainer.state.smoothLoss);
  for (const n of PARAM_NAMES) assert.deepEqual(resumed.model.params[n], once.trainer.model.params[n]);
  assert.deepEqual(ck.rng.getState(), once.rng.getState());
});

test("missing, damaged or foreign checkpoints are refused with a message saying what to do", async () => {
  const dir = await mkdtemp(join(tmpdir(), "charlm-scratch-"));
  await assert.rejects(
    loadScratchCheckpoint(dir),
    /no scratch RNN checkpoint here \(scratch\.json missing\); train one/,
  );
  await writeFile(join(dir, "charlm.json"), "{}");
  await assert.rejects(
    loadScratchCheckpoint(dir),
    /holds a charlm-checkpoint, not a scratch RNN; sample it with 'charlm sample'/,
  );

  const { vocab, rng, trainer } = fresh();
  await saveScratchCheckpoint(dir, { trainer, vocab, rng, data });
  const manifest = await readFile(join(dir, "scratch.json"), "utf8");
  const weights = await readFile(join(dir, "scratch.weights.bin"));

  await writeFile(join(dir, "scratch.json"), manifest.slice(0, 100));
  await assert.rejects(loadScratchCheckpoint(dir), /scratch\.json: damaged \(not valid JSON\)/);
  await writeFile(join(dir, "scratch.json"), manifest.replace('"charlm-scratch-rnn"', '"something-else"'));
  await assert.rejects(loadScratchCheckpoint(dir), /format 'something-else' is not 'charlm-scratch-rnn'/);
  await writeFile(join(dir, "scratch.json"), manifest.replace('"version": 1', '"version": 9'));
  await assert.rejects(loadScratchCheckpoint(dir), /version 9 of charlm-scratch-rnn, this charlm reads version 1/);
  await writeFile(join(dir, "scratch.json"), manifest);

  const flipped = Buffer.from(weights);
  flipped[100] ^= 0xff;
  await writeFile(join(dir, "scratch.weights.bin"), flipped);
  await assert.rejects(loadScratchCheckpoint(dir), /damaged weights \(size or sha256 differs from the manifest\)/);
  await writeFile(join(dir, "scratch.weights.bin"), weights.subarray(0, 64));
  await assert.rejects(loadScratchCheckpoint(dir), /damaged weights/);
  await writeFile(join(dir, "scratch.weights.bin"), weights);
  assert.ok((await loadScratchCheckpoint(dir)).model instanceof ScratchRNN);
});
