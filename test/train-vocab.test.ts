// Pruning and enriching the vocabulary from `charlm train`: --max-vocab, --min-count and --extra-chars reach the
// checkpoint's vocabulary, pruned characters train as "<unk>", a resumed run must rebuild the same vocabulary,
// sampling refuses a prime with a pruned character, and bad values are one-line errors.

import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cli } from "./helpers/cli.js";
import { UNK } from "../src/data/vocab.js";
import { DEFAULT_TRAIN_CONFIG, buildTrainVocab } from "../src/train/config.js";

const VERSE =
  "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n" +
  "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n";
// VERSE has 34 distinct characters, each at least once per copy; the tail adds four rare ones: 'Q', 'j', '!' once
// and 'x' twice. The tail lands in the validation split, so pruned characters are encoded there as "<unk>".
const TEXT = VERSE.repeat(20) + "Quixotic jinx!\n";
const VERSE_CHARS = [...new Set(VERSE)].sort();
const work = mkdtempSync(join(tmpdir(), "charlm-vocab-"));
const corpus = join(work, "verse.txt");
writeFileSync(corpus, TEXT);
const QUICK = [
  ...["--data", corpus, "--preset", "tiny", "--embedding", "8", "--units", "12", "--seq-length", "16"],
  ...["--batch-size", "4", "--steps-per-epoch", "2", "--sample-length", "0", "--quiet"],
];

function savedVocab(dir: string): { chars: string[]; unk: number } {
  const { chars, unk } = (
    JSON.parse(readFileSync(join(dir, "charlm.json"), "utf8")) as { tokenizer: { chars: string[]; unk: number } }
  ).tokenizer;
  return { chars, unk };
}

test("--max-vocab 20 keeps the 19 most frequent characters and <unk>; eval and sample work, a pruned prime is refused", async () => {
  const out = join(work, "max20");
  const r = await cli("train", ...QUICK, "--epochs", "1", "--max-vocab", "20", "--out", out);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /vocabulary 20 \(19 pruned characters map to <unk>\)/);
  const vocab = savedVocab(out);
  assert.equal(vocab.chars.length, 20);
  assert.equal(vocab.unk, 0);
  assert.equal(vocab.chars[0], UNK);
  for (const ch of ["e", " ", "\n", "r", "a"]) assert.ok(vocab.chars.includes(ch), JSON.stringify(ch));
  for (const ch of ["Q", "y", "?"]) assert.ok(!vocab.chars.includes(ch), ch);
  const manifest = JSON.parse(readFileSync(join(out, "charlm.json"), "utf8")) as { model: { vocabSize: number } };
  assert.equal(manifest.model.vocabSize, 20);

  // The validation split holds pruned characters: eval encodes them as <unk> rather than failing.
  const ev = await cli("eval", "--model", out, "--split", "validation");
  assert.equal(ev.code, 0, ev.err);
  const ok = await cli("sample", "--model", out, "--prime", "hear", "--length", "20", "--seed", "3");
  assert.equal(ok.code, 0, ok.err);
  // A prime with a pruned character gets the sampler's existing one-line error, as in the server.
  const bad = await cli("sample", "--model", out, "--prime", "You", "--length", "5");
  assert.equal(bad.code, 1);
  assert.match(
    bad.err.trim(),
    /^charlm sample: the prime text has characters the model does not know: 'Y' \(U\+0059\)/,
  );
  assert.ok(!bad.err.trim().includes("\n"));
});

test("--min-count prunes rare characters to <unk>; --extra-chars adds characters the corpus lacks", async () => {
  const rare = join(work, "min3");
  const r = await cli("train", ...QUICK, "--epochs", "1", "--min-count", "3", "--out", rare);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /vocabulary 35 \(4 pruned characters map to <unk>\)/);
  assert.deepEqual(savedVocab(rare), { chars: [UNK, ...VERSE_CHARS], unk: 0 });

  const rich = join(work, "extra");
  const e = await cli("train", ...QUICK, "--epochs", "1", "--extra-chars", "éZ", "--out", rich);
  assert.equal(e.code, 0, e.err);
  const vocab = savedVocab(rich);
  assert.equal(vocab.unk, -1);
  assert.deepEqual(vocab.chars, [...new Set(TEXT + "éZ")].sort());
  const s = await cli("sample", "--model", rich, "--prime", "Zé", "--length", "10", "--seed", "1");
  assert.equal(s.code, 0, s.err);
  assert.ok(s.out.startsWith("Zé"));

  // Both at once, from a config file: extra characters survive pruning and take no "<unk>" slot of their own.
  const cfgFile = join(work, "vocab.json");
  writeFileSync(cfgFile, JSON.stringify({ maxVocab: 10, minCount: 2, extraChars: "Q~" }));
  const both = join(work, "both");
  const b = await cli("train", ...QUICK, "--epochs", "1", "--config", cfgFile, "--out", both);
  assert.equal(b.code, 0, b.err);
  const v = savedVocab(both);
  assert.equal(v.chars.length, 10);
  assert.equal(v.chars[0], UNK);
  assert.ok(v.chars.includes("Q") && v.chars.includes("~"));
});

test("a resumed run keeps its vocabulary settings and rebuilds the same vocabulary", async () => {
  const out = join(work, "resume");
  const first = await cli("train", ...QUICK, "--max-vocab", "20", "--epochs", "2", "--stop-after", "1", "--out", out);
  assert.equal(first.code, 0, first.err);
  const again = await cli("train", "--resume", out, "--quiet");
  assert.equal(again.code, 0, again.err);
  assert.match(again.out, /vocabulary 20 \(19 pruned characters map to <unk>\)/);
  assert.match(again.out, /finished: 4 steps/);
  const cases: [string[], RegExp][] = [
    [["--max-vocab", "30"], /^charlm train: --max-vocab 30 differs from the run's 20; .* start a new run$/],
    [["--min-count", "2"], /^charlm train: --min-count 2 differs from the run's 1; /],
    [["--extra-chars", "é"], /^charlm train: --extra-chars é differs from the run's ""; /],
  ];
  for (const [args, re] of cases) {
    const r = await cli("train", "--resume", out, "--epochs", "3", ...args);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err.trim(), re);
  }
  // Same settings, but data whose frequent characters differ: the rebuilt vocabulary does not match.
  const other = join(work, "other.txt");
  writeFileSync(other, TEXT.toUpperCase());
  const r = await cli("train", "--resume", out, "--epochs", "3", "--data", other);
  assert.equal(r.code, 1);
  assert.match(
    r.err.trim(),
    /vocabulary \(20 symbols\) differs from the checkpoint's \(20 symbols\); resume with the data/,
  );
});

test("a checkpoint written before these settings existed resumes with their defaults", async () => {
  const out = join(work, "old");
  const first = await cli("train", ...QUICK, "--epochs", "2", "--stop-after", "1", "--out", out);
  assert.equal(first.code, 0, first.err);
  const file = join(out, "charlm.json");
  const manifest = JSON.parse(readFileSync(file, "utf8")) as { train: Record<string, unknown> };
  delete manifest.train.maxVocab;
  delete manifest.train.minCount;
  delete manifest.train.extraChars;
  writeFileSync(file, JSON.stringify(manifest));
  const again = await cli("train", "--resume", out, "--quiet", "--max-vocab", "0");
  assert.equal(again.code, 0, again.err);
  assert.match(again.out, /finished: 4 steps/);
  const resaved = JSON.parse(readFileSync(file, "utf8")) as { train: Record<string, unknown> };
  assert.deepEqual([resaved.train.maxVocab, resaved.train.minCount, resaved.train.extraChars], [0, 1, ""]);
});

test("bad vocabulary settings are one-line errors that name the flag", async () => {
  const cfgFile = join(work, "neg.json");
  writeFileSync(cfgFile, JSON.stringify({ minCount: -2 }));
  const cases: [string[], number, RegExp][] = [
    [["--max-vocab", "-1"], 2, /^charlm train: --max-vocab must be at least 0, got -1$/],
    [["--min-count", "-3"], 2, /^charlm train: --min-count must be at least 1, got -3$/],
    [["--min-count", "0"], 2, /^charlm train: --min-count must be at least 1, got 0$/],
    [["--max-vocab", "2.5"], 2, /^charlm train: --max-vocab must be a whole number, got '2\.5'$/],
    [["--max-vocab", "1"], 2, /--max-vocab 1 leaves room for "<unk>" alone; use at least 2, or 0/],
    [["--max-vocab", "3", "--extra-chars", "abc"], 2, /--max-vocab 3 leaves no room beside the 3 --extra-chars/],
    [["--config", cfgFile], 1, /neg\.json: "minCount" must be at least 1, got -2$/], // a file's value: bad input
  ];
  for (const [args, code, re] of cases) {
    const r = await cli("train", ...QUICK, ...args, "--out", join(work, "never"));
    assert.equal(r.code, code, `${args.join(" ")}: ${r.err}`);
    const line = r.err.trim();
    assert.ok(!line.includes("\n"), `${args.join(" ")}: more than one line: ${line}`);
    assert.match(line, re, args.join(" "));
  }
  assert.ok(!existsSync(join(work, "never")), "a refused run wrote nothing");
});

test("buildTrainVocab: defaults keep every character; extra characters may fill --max-vocab exactly", () => {
  const all = buildTrainVocab(DEFAULT_TRAIN_CONFIG, VERSE);
  assert.deepEqual(all.chars, VERSE_CHARS);
  assert.equal(all.unk, -1);
  // Every corpus character is an extra one, so nothing needs "<unk>" and all four slots hold extras.
  const exact = buildTrainVocab({ maxVocab: 4, minCount: 1, extraChars: "abcd" }, "abba");
  assert.deepEqual(exact.chars, ["a", "b", "c", "d"]);
  assert.throws(() => buildTrainVocab({ maxVocab: 4, minCount: 1, extraChars: "abcd" }, "abbae"), /no room/);
});
