// Word and BPE models end to end through the CLI, tiny settings: train, sample (prime, stop string, same seed same
// text), eval (nats/char of the text beside nats/token, the <unk> share), fine-tune keeping the source's tokenizer,
// and the clear refusals (--extend-vocab, --vocab-size out of range or on char, a PyTorch export of a bpe model).

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Manifest } from "../src/checkpoint/checkpoint.js";
import { cli } from "./helpers/cli.js";

const VERSE =
  "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n" +
  "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n";
const OTHER = "Second Citizen:\nWould you proceed especially against Caius Marcius?\n\nAll:\nAgainst him first.\n\n";
const work = mkdtempSync(join(tmpdir(), "charlm-tokenizer-"));
const verse = join(work, "verse.txt");
const other = join(work, "other.txt");
writeFileSync(verse, VERSE.repeat(30) + OTHER.repeat(3)); // the validation tail holds words the training text lacks
writeFileSync(other, OTHER.repeat(30));
const SMALL = ["--preset", "tiny", "--embedding", "8", "--units", "16", "--seq-length", "12", "--batch-size", "4"];
const QUICK = ["--steps-per-epoch", "6", "--epochs", "2", "--sample-length", "0", "--quiet"];
const manifestOf = (dir: string): Manifest => JSON.parse(readFileSync(join(dir, "charlm.json"), "utf8")) as Manifest;

async function trainRun(name: string, ...extra: string[]): Promise<string> {
  const out = join(work, name);
  const r = await cli("train", "--data", verse, ...SMALL, ...QUICK, "--out", out, ...extra);
  assert.equal(r.code, 0, r.err);
  return out;
}

const word = await trainRun("word", "--tokenizer", "word", "--vocab-size", "20");
const bpe = await trainRun("bpe", "--tokenizer", "bpe", "--vocab-size", "300");

test("a word model trains, samples words with restored spacing, and evaluates per token and per character", async () => {
  const m = manifestOf(word);
  assert.equal(m.version, 2);
  assert.equal(m.tokenizer.kind, "word");
  assert.equal(m.model.vocabSize, 20);
  const s = await cli("sample", "--model", word, "--prime", "First Citizen:\n", "--length", "30", "--seed", "4");
  assert.equal(s.code, 0, s.err);
  assert.ok(s.out.startsWith("First Citizen:\n"));
  assert.doesNotMatch(s.out, / [,.:?]/, "no space before punctuation");
  const e = await cli("eval", "--model", word, "--split", "validation", "--json");
  assert.equal(e.code, 0, e.err);
  const r = JSON.parse(e.out) as Record<string, number | string>;
  assert.equal(r.tokenizer, "word");
  assert.ok((r.unknownShare as number) > 0 && (r.unknownShare as number) < 1, "some validation words are <unk>");
  // Unknown words cost ln K per character on top of the model's loss, so per character it is above the plain ratio.
  const plain = ((r.nats as number) * (r.chars as number)) / (r.textChars as number);
  assert.ok((r.natsPerChar as number) > plain, `${r.natsPerChar} vs ${plain}`);
  const text = await cli("eval", "--model", word, "--split", "validation");
  assert.match(text.out, /nats\/token .* per char +\d\.\d{4} nats\/char .*<unk> +\d+\.\d\d% of the tokens/s);
});

test("a bpe model samples the same text from the same seed, stops at a stop string, and its nats/char add up", async () => {
  const args = ["sample", "--model", bpe, "--prime", "All:", "--length", "40", "--seed", "9"];
  const a = await cli(...args);
  const b = await cli(...args);
  assert.equal(a.code, 0, a.err);
  assert.equal(a.out, b.out);
  const stopped = await cli(...args, "--stop", "e");
  assert.equal(stopped.code, 0, stopped.err);
  assert.ok(!stopped.out.slice(4).includes("e") && a.out.startsWith(stopped.out.trimEnd()));
  const e = await cli("eval", "--model", bpe, "--split", "validation", "--json");
  const r = JSON.parse(e.out) as Record<string, number>;
  assert.equal(r.unknownShare, 0);
  assert.ok(Math.abs(r.natsPerChar * r.textChars - r.nats * r.chars) < 1e-6 * r.nats * r.chars);
  assert.ok(r.chars < r.textChars, "fewer tokens than characters");
});

test("fine-tuning keeps the source's tokenizer; --extend-vocab is refused for word and bpe", async () => {
  const out = join(work, "tuned");
  const r = await cli("train", "--init-from", bpe, "--data", other, "--batch-size", "4", ...QUICK, "--out", out);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(manifestOf(out).tokenizer, manifestOf(bpe).tokenizer);
  const ext = await cli("train", "--init-from", word, "--data", other, ...QUICK, "--extend-vocab", "--out", out + "2");
  assert.equal(ext.code, 2);
  assert.match(ext.err, /--extend-vocab adds characters to a char vocabulary, and .* uses the word tokenizer/);
  const bad = await cli("train", "--init-from", word, "--data", other, "--tokenizer", "bpe", "--out", out + "3");
  assert.match(bad.err, /--tokenizer: fine-tuning keeps the model and vocabulary/);
});

test("--vocab-size out of range or on a char model, and a PyTorch export of a bpe model, are refused in one line", async () => {
  const small = await cli(
    "train",
    "--data",
    verse,
    "--tokenizer",
    "bpe",
    "--vocab-size",
    "100",
    "--out",
    join(work, "x"),
  );
  assert.match(small.err, /--vocab-size 100: a bpe vocabulary holds 256 to 8192 tokens/);
  const ch = await cli("train", "--data", verse, "--vocab-size", "50", "--out", join(work, "y"), "--force");
  assert.match(ch.err, /a char vocabulary is capped with --max-vocab 50/);
  const ex = await cli("export", bpe, "--to", "torch", join(work, "torch"));
  assert.notEqual(ex.code, 0);
  assert.match(ex.err, /carries a character vocabulary, and this model uses the bpe tokenizer/);
});

test("a bpe run that learns fewer tokens than --vocab-size asked says so", async () => {
  const out = join(work, "bpe-short");
  const r = await cli("train", "--data", verse, ...SMALL, ...QUICK, "--out", out, "--tokenizer", "bpe");
  assert.equal(r.code, 0, r.err);
  const size = manifestOf(out).model.vocabSize;
  assert.ok(size < 1024, `${size} tokens`);
  assert.match(r.out, new RegExp(`\\(${size} of the 1024 tokens asked: no pair repeats in the text\\)`));
});
