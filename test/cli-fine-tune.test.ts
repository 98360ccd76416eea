// `charlm train --init-from DIR`: fine-tuning a trained model (a charlm checkpoint or a PyTorch export) on another
// text. What a user would check: the run starts from the source's weights (its first step's loss is the source
// model's loss on that batch), with a fresh optimizer and step count, the source's model and vocabulary, the
// fine-tuning defaults, unknown characters as <unk> or refused, shape flags refused, and the manifest saying where
// the run started from. Tiny models and a few steps, run in process.

import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { WindowEpoch } from "../src/data/batching.js";
import { loadSplits } from "../src/data/corpus.js";
import { parseModelConfig } from "../src/models/config.js";
import { buildModel } from "../src/models/registry.js";
import { loadCheckpoint, readManifest, type Manifest } from "../src/checkpoint/checkpoint.js";
import { Rng } from "../src/util/rng.js";
import { dataRngFor } from "../src/train/loop.js";
import { resolveTrainConfig } from "../src/train/config.js";
import { cli } from "./helpers/cli.js";

const VERSE =
  "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n" +
  "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n";
// The new text: mostly the source's characters, plus a few it never saw ('W', 'y', ';', '!', 'j', 'x', 'z').
const LETTER = "We spoke of the citizens; all are resolved! Jolly Roger, hear me speak.\nYou are far from famish.\n";
const work = mkdtempSync(join(tmpdir(), "charlm-finetune-"));
const verse = join(work, "verse.txt");
const letter = join(work, "letter.txt");
writeFileSync(verse, VERSE.repeat(20));
writeFileSync(letter, LETTER.repeat(30));
const SHAPE = ["--embedding", "8", "--units", "12", "--seq-length", "16", "--batch-size", "4"];
const RUN = ["--preset", "tiny", "--quiet"];

const manifestOf = (dir: string): Manifest => JSON.parse(readFileSync(join(dir, "charlm.json"), "utf8")) as Manifest;
const charsOf = (m: Manifest): { chars: string[]; unk: number } => m.tokenizer as { chars: string[]; unk: number };

/** A source trained for 20 steps on the verse; `--max-vocab` prunes it, which gives its vocabulary a <unk>. */
async function trainSource(name: string, ...extra: string[]): Promise<string> {
  const out = join(work, name);
  const steps = ["--steps-per-epoch", "5", "--epochs", "4", "--lr", "0.01"];
  const r = await cli("train", "--data", verse, ...RUN, ...SHAPE, ...steps, "--out", out, ...extra);
  assert.equal(r.code, 0, r.err);
  return out;
}
const withUnk = await trainSource("src-unk", "--max-vocab", "24");
const noUnk = await trainSource("src-full");

/** Fine-tuning `source` on the letter into `out` for one step (unless `extra` says), logging every step's loss. */
const fineTune = (source: string, out: string, ...extra: string[]) =>
  cli(
    "train",
    "--init-from",
    source,
    "--data",
    letter,
    ...RUN,
    ...(extra.includes("--stop-after") ? [] : ["--stop-after", "1"]),
    "--log-every",
    "1",
    "--out",
    out,
    ...extra,
  );

/** The first step's loss of a fine-tuning run, from its metrics log (the loss before the first update). */
function firstStepLoss(run: string): number {
  const lines = readFileSync(join(run, "metrics.jsonl"), "utf8").trim().split("\n");
  const first = lines
    .map((l) => JSON.parse(l) as { type: string; step: number; loss: number })
    .find((l) => l.step === 1);
  assert.ok(first && first.type === "step", "metrics.jsonl has a line for step 1");
  return first.loss;
}

/**
 * The loss the source model gives the batch that a run with seed 1 and the tiny preset's B 8, T 32 takes first from
 * `data`: the batches come from the data generator alone (loop.ts), so the same split and seed give the same batch.
 */
async function sourceLossOnFirstBatch(source: string, data: string): Promise<number> {
  const { model, vocab } = await loadCheckpoint(source);
  const splits = await loadSplits(data, { validationFraction: 0.1 });
  const ids = vocab.encode(splits.train, "unk");
  const batch = new WindowEpoch(ids, 8, 32, dataRngFor(1)).batches().next().value!;
  // The sources have no dropout, so the training forward pass is the plain one.
  const res = model.forward(batch.inputs, batch.B, batch.T, { targets: batch.targets });
  return res.loss!.value();
}

test("fine-tuning starts from the source's weights, with a fresh optimizer, its model and vocabulary, and records where it started", async () => {
  const out = join(work, "tuned");
  const r = await fineTune(withUnk, out);
  assert.equal(r.code, 0, r.err);
  const src = manifestOf(withUnk);
  assert.equal(src.step, 20);
  assert.match(
    r.out,
    new RegExp(
      `^fine-tuning .*src-unk \\(checkpoint, step 20\\) into .*tuned, learning rate 0\\.01 \\(the source's; --lr sets another\\)$`,
      "m",
    ),
  );
  // 'W', 'y', ';', '!', 'J', 'j' ... are not in the verse's vocabulary: they become <unk>, and the run says how many.
  assert.match(r.out, /vocabulary 24 \(\d+ characters the model does not know map to <unk>\)/);

  const m = manifestOf(out);
  assert.equal(m.step, 1, "the step count starts again at 0");
  assert.equal(m.optimizer?.t, 1, "a fresh optimizer: one update so far, not the source's 21st");
  assert.equal(src.optimizer?.t, 20);
  assert.deepEqual(m.model, src.model, "the source's model config");
  assert.deepEqual(m.tokenizer, src.tokenizer, "the source's vocabulary, as it is");
  assert.deepEqual(m.initFrom, { path: resolve(withUnk), step: 20, format: "charlm" });
  // The fine-tuning defaults: the rate the source was trained at (0.01, not the tiny preset's 2e-3), and the
  // preset's epochs (not the source's 4).
  const tiny = resolveTrainConfig({ preset: "tiny", overrides: {} });
  assert.deepEqual([m.train?.epochs, m.train?.lr], [tiny.epochs, 0.01]);
  assert.ok(tiny.epochs !== 4 && tiny.lr !== 0.01);
  assert.deepEqual([m.train?.embedding, m.train?.units, m.train?.maxVocab], [8, 12, 24]);

  // The first step ran on the source's weights: its loss is the source model's loss on that very batch.
  const expected = await sourceLossOnFirstBatch(withUnk, letter);
  assert.ok(Math.abs(firstStepLoss(out) - expected) < 1e-5, `${firstStepLoss(out)} vs ${expected}`);

  // A fine-tuned run resumes like any run, keeping its source's vocabulary and the record of where it started.
  const more = await cli("train", "--resume", out, "--quiet", "--stop-after", "3");
  assert.equal(more.code, 0, more.err);
  assert.match(more.out, /^resuming .* at step 1 \(epoch 1\)/);
  const after = await readManifest(out);
  assert.equal(after.step, 3);
  assert.deepEqual(after.initFrom, m.initFrom);
  assert.deepEqual(after.tokenizer, src.tokenizer);
});

test("fine-tuning: the first step differs from a run from scratch, and explicit --epochs, --lr and --dropout are kept", async () => {
  const tuned = join(work, "tuned-flags");
  const r = await cli(
    "train",
    "--init-from",
    withUnk,
    "--data",
    letter,
    ...RUN,
    "--epochs",
    "2",
    "--lr",
    "0.001",
    "--dropout",
    "0.2",
    "--stop-after",
    "2",
    "--log-every",
    "1",
    "--out",
    tuned,
  );
  assert.equal(r.code, 0, r.err);
  const m = manifestOf(tuned);
  assert.deepEqual([m.train?.epochs, m.train?.lr, m.train?.dropout, m.model.dropout], [2, 0.001, 0.2, 0.2]);
  assert.match(r.out, /^fine-tuning .* into .*tuned-flags, learning rate 0\.001$/m);
  // The same model trained from scratch on the letter starts near ln(V); the source already knows English-like text.
  const scratch = join(work, "scratch");
  const s = await cli(
    "train",
    "--data",
    letter,
    ...RUN,
    ...SHAPE,
    "--max-vocab",
    "24",
    "--stop-after",
    "1",
    "--log-every",
    "1",
    "--out",
    scratch,
  );
  assert.equal(s.code, 0, s.err);
  assert.equal(manifestOf(scratch).initFrom, undefined, "a run from scratch records no source");
  assert.ok(
    firstStepLoss(tuned) < firstStepLoss(scratch) - 0.1,
    `${firstStepLoss(tuned)} vs ${firstStepLoss(scratch)}`,
  );
});

test("fine-tuning from a PyTorch export (charlm export --to torch) starts from the same weights", async () => {
  const exported = join(work, "src.torch");
  const e = await cli("export", withUnk, "--to", "torch", exported);
  assert.equal(e.code, 0, e.err);
  const out = join(work, "tuned-torch");
  const r = await fineTune(exported, out);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^fine-tuning .*src\.torch \(PyTorch export, step 20\) into/m);
  const m = manifestOf(out);
  assert.deepEqual(m.initFrom, { path: resolve(exported), step: 20, format: "torch" });
  assert.deepEqual(m.tokenizer, manifestOf(withUnk).tokenizer);
  assert.equal(m.optimizer?.t, 1, "the export's Adam state is not carried over");
  assert.equal(m.train?.lr, 0.01, "the rate of the charlm run the export came from");
  const expected = await sourceLossOnFirstBatch(withUnk, letter);
  assert.ok(Math.abs(firstStepLoss(out) - expected) < 1e-5, `${firstStepLoss(out)} vs ${expected}`);
});

test("fine-tuning refuses, in one line: unknown characters without <unk>, shape flags, --resume, its own source as --out", async () => {
  const config = join(work, "shape.json");
  writeFileSync(config, JSON.stringify({ units: 64 }));
  const out = join(work, "refused");
  const cases: [string[], number, RegExp][] = [
    [
      ["--data", letter],
      1,
      /letter\.txt: has \d+ characters the model in .*src-full does not know \('W' \(U\+0057\), .*\) and its vocabulary has no <unk>; fine-tune on text the model knows, add --extend-vocab to give them new rows, or train from scratch without --init-from$/,
    ],
    [
      ["--data", verse, "--units", "64"],
      2,
      /--units: fine-tuning keeps the model and vocabulary of .*src-full \(its weights fix them\)/,
    ],
    [["--data", verse, "--cell", "gru"], 2, /^charlm train: --cell: fine-tuning keeps the model/],
    [["--data", verse, "--type", "gpt"], 2, /--type: fine-tuning keeps/],
    [["--data", verse, "--layers", "2"], 2, /--layers: fine-tuning keeps/],
    [["--data", verse, "--max-vocab", "10"], 2, /--max-vocab: fine-tuning keeps/],
    [["--data", verse, "--extra-chars", "xyz"], 2, /--extra-chars: fine-tuning keeps/],
    [["--data", verse, "--config", config], 1, /shape\.json: "units": fine-tuning keeps/],
    [["--data", verse, "--resume", noUnk], 2, /--init-from starts a new run and --resume continues one/],
    [["--data", verse, "--out", noUnk, "--force"], 2, /is the --init-from directory; .*pick another --out/],
  ];
  for (const [args, code, message] of cases) {
    const r = await cli(
      "train",
      "--init-from",
      noUnk,
      ...RUN,
      ...(args.includes("--out") ? [] : ["--out", out]),
      ...args,
    );
    assert.equal(r.code, code, `${args.join(" ")}: ${r.err}`);
    assert.match(r.err.trim(), message, args.join(" "));
    assert.equal(r.err.trim().split("\n").length, 1, `one line: ${r.err}`);
    assert.ok(!existsSync(join(out, "charlm.json")), "nothing written");
  }
  const missing = await cli("train", "--init-from", join(work, "nope"), "--data", verse, ...RUN, "--out", out);
  assert.equal(missing.code, 1);
  assert.match(missing.err, /nope: no such directory; pass to --init-from the --out directory of a charlm train run/);
  // A source whose model is too big to train here (a damaged or edited charlm.json): its directory is named, not
  // shape flags the command line never gave.
  const huge = join(work, "huge");
  cpSync(noUnk, huge, { recursive: true });
  const m = manifestOf(huge);
  writeFileSync(join(huge, "charlm.json"), JSON.stringify({ ...m, model: { ...m.model, units: 100000 } }));
  const big = await cli("train", "--init-from", huge, "--data", verse, ...RUN, "--out", out);
  assert.equal(big.code, 1, big.err);
  assert.match(big.err.trim(), /^charlm train: .*huge: its model has [\d,]+ parameters .*too big to train/);
  assert.doesNotMatch(big.err, /--units/);
  // The source is untouched by all of this.
  assert.equal((await readManifest(noUnk)).step, 20);
});

test("--help states the fine-tuning defaults; a damaged initFrom in a manifest is refused by name", async () => {
  const help = await cli("train", "--help");
  assert.match(help.out, /--init-from DIR/);
  assert.match(help.out, /--lr and --dropout default to the source's/);

  const m = manifestOf(noUnk) as unknown as Record<string, unknown>;
  const damaged = join(work, "damaged");
  const r = await cli("train", "--init-from", noUnk, "--data", verse, ...RUN, "--stop-after", "1", "--out", damaged);
  assert.equal(r.code, 0, r.err);
  const tuned = manifestOf(damaged) as unknown as Record<string, unknown>;
  writeFileSync(
    join(damaged, "charlm.json"),
    JSON.stringify({ ...tuned, initFrom: { path: "x", step: "ten", format: "charlm" } }),
  );
  await assert.rejects(
    readManifest(damaged),
    /charlm\.json: "initFrom\.step" must be a whole number of at least 0, got "ten"/,
  );
  writeFileSync(
    join(damaged, "charlm.json"),
    JSON.stringify({ ...tuned, initFrom: { path: "x", step: 1, format: "tf" } }),
  );
  await assert.rejects(readManifest(damaged), /"initFrom\.format" must be one of "charlm", "torch", got "tf"/);
  // A checkpoint from before the field (a run from scratch writes none) still loads.
  assert.ok(!("initFrom" in m));
  await loadCheckpoint(noUnk);
});

test("fine-tuning a GPT keeps its context as the sequence length, and refuses a longer one", async () => {
  const gpt = join(work, "src-gpt");
  const shape = ["--type", "gpt", "--embedding", "8", "--layers", "1", "--heads", "2", "--seq-length", "12"];
  const s = await cli(
    "train",
    "--data",
    verse,
    ...RUN,
    ...shape,
    "--max-vocab",
    "24",
    "--stop-after",
    "2",
    "--out",
    gpt,
  );
  assert.equal(s.code, 0, s.err);
  const out = join(work, "tuned-gpt");
  const r = await fineTune(gpt, out);
  assert.equal(r.code, 0, r.err);
  const m = manifestOf(out);
  assert.deepEqual(m.model, manifestOf(gpt).model);
  assert.deepEqual([m.train?.type, m.train?.seqLength, m.train?.heads], ["gpt", 12, 2]);
  const shorter = await fineTune(gpt, join(work, "tuned-gpt8"), "--seq-length", "8");
  assert.equal(shorter.code, 0, shorter.err);
  const longer = await fineTune(gpt, join(work, "tuned-gpt16"), "--seq-length", "16");
  assert.equal(longer.code, 2);
  assert.match(
    longer.err,
    /^charlm train: --seq-length 16: the GPT in .*src-gpt has a context of 12 characters; use at most 12\n$/,
  );
});

test("the source loads onto the run's backend: fine-tuning on wasm from a js-trained source gives js's losses", async () => {
  const losses = async (backend: string): Promise<number[]> => {
    const out = join(work, `tuned-${backend}`);
    const r = await fineTune(withUnk, out, "--backend", backend, "--dropout", "0.1", "--stop-after", "3");
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, new RegExp(`^backend: ${backend}\\b`, "m"));
    const lines = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n");
    return lines
      .map((l) => JSON.parse(l) as { type: string; loss: number })
      .filter((l) => l.type === "step")
      .map((l) => l.loss);
  };
  const js = await losses("js");
  const wasm = await losses("wasm");
  assert.equal(js.length, 3);
  assert.ok(
    js.every((l, i) => Math.abs(l - wasm[i]) < 1e-4),
    `${js} vs ${wasm}`,
  );
});

test("--extend-vocab: the new characters get new rows, initialised as a new model's; the rest are the source's", async () => {
  const out = join(work, "extended");
  // A learning rate so small that the one step leaves every weight where it started (Adam moves each by about lr).
  const r = await fineTune(noUnk, out, "--extend-vocab", "--lr", "1e-9");
  assert.equal(r.code, 0, r.err);
  const src = manifestOf(noUnk);
  const m = manifestOf(out);
  const V = charsOf(src).chars.length;
  const newChars = [...new Set(LETTER)].filter((c) => !VERSE.includes(c));
  assert.match(
    r.out,
    new RegExp(`vocabulary ${V + newChars.length} \\(${newChars.length} characters added by --extend-vocab\\)`),
  );
  assert.deepEqual(charsOf(m).chars.slice(0, V), charsOf(src).chars, "the old ids stay");
  assert.deepEqual(charsOf(m).chars.slice(V).sort(), newChars.sort());
  assert.equal(charsOf(m).unk, -1);
  assert.deepEqual(m.initFrom?.addedChars, charsOf(m).chars.slice(V));
  assert.equal(m.model.vocabSize, V + newChars.length);

  const tuned = (await loadCheckpoint(out)).model.parameters();
  const source = (await loadCheckpoint(noUnk)).model.parameters();
  const fresh = buildModel(parseModelConfig(m.model), new Rng(1)).parameters(); // a new run's init, seed 1
  let grown = 0;
  for (const [name, t] of tuned) {
    const from = source.get(name)!;
    const [got, old, init] = [await t.read(), await from.read(), await fresh.get(name)!.read()];
    const width = t.shape[t.shape.length - 1];
    const [oldRows, oldWidth] = from.shape.length === 2 ? from.shape : [1, from.shape[0]];
    if (old.length !== got.length) grown++;
    for (let k = 0; k < got.length; k++) {
      const [i, j] = [Math.floor(k / width), k % width];
      const want = i < oldRows && j < oldWidth ? old[i * oldWidth + j] : init[k];
      assert.ok(Math.abs(got[k] - want) < 1e-6, `${name}[${i}, ${j}]: ${got[k]} vs ${want}`);
    }
  }
  assert.equal(grown, 3, "the embedding, the output weights and the output bias grew");

  const alone = await cli("train", "--data", letter, ...RUN, "--extend-vocab", "--out", join(work, "alone"));
  assert.equal(alone.code, 2);
  assert.match(
    alone.err,
    /--extend-vocab adds characters to the vocabulary of the --init-from model; add --init-from DIR/,
  );
});
