// The tokenizers (char, word, bpe) behind one interface: what a user checks is that text comes back from its ids,
// that spacing around punctuation and line breaks survives the word tokenizer, that byte-level BPE never needs an
// unknown token and round-trips any text, that a saved tokenizer loads back the same, and that the character spans
// used for nats/char add up to the text.

import { test } from "node:test";
import assert from "node:assert/strict";
import { BpeTokenizer } from "../src/data/bpe.js";
import { tokenizerFromJSON, type Tokenizer } from "../src/data/tokenizer.js";
import { Vocab } from "../src/data/vocab.js";
import { WordTokenizer } from "../src/data/word.js";
import { Rng } from "../src/util/rng.js";

const PROSE =
  'First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak!\n\n"Yes," she said (quietly); ' +
  "we'll see... o'er the well-a-day hill?\nCafé naïve 東京 — ok 👍 3 apples\n";

/** Stream-decode `ids` one at a time, as the sampler does. */
function streamed(t: Tokenizer, ids: ArrayLike<number>): string {
  const d = t.decoder();
  let s = "";
  for (let i = 0; i < ids.length; i++) s += d.push(ids[i]);
  return s + d.flush();
}

const codePoints = (s: string): number => Array.from(s).length;

test("char: encode/decode round-trips unicode, streams, and a version-1 vocabulary ({chars, unk}) loads as char", () => {
  const v = Vocab.build(PROSE);
  const ids = v.encode(PROSE);
  assert.equal(v.decode(ids), PROSE);
  assert.equal(streamed(v, ids), PROSE);
  const m = v.measure(PROSE);
  assert.equal(m.ends[m.ends.length - 1], codePoints(PROSE));
  const back = tokenizerFromJSON(v.serialize());
  assert.equal(back.kind, "char");
  assert.deepEqual(back.encode(PROSE), ids);
  const v1 = tokenizerFromJSON(v.toJSON()); // no "kind": a version-1 manifest's vocabulary
  assert.equal(v1.kind, "char");
  assert.deepEqual(v1.encode(PROSE), ids);
});

test("word: punctuation spacing, quotes, line breaks and unicode come back as written", () => {
  const w = WordTokenizer.build(PROSE);
  const ids = w.encode(PROSE);
  assert.equal(w.decode(ids), PROSE);
  assert.equal(streamed(w, ids), PROSE);
  assert.ok(ids.includes(w.encode("o'er")[0]) && w.encode("o'er").length === 1, "inner apostrophes stay in the word");
  assert.equal(w.encode("Speak, speak!").length, 4, "words and marks are tokens; spaces are not");
  // Runs of spaces and tabs are not stored: they come back as one space.
  assert.equal(w.decode(w.encode("hear  me\tspeak .")), "hear me speak.");
});

test("word: a capped vocabulary maps the rest to <unk>, charged ln K nats per character of the word", () => {
  const text = "the cat sat on the mat and the cat ran\n";
  const w = WordTokenizer.build(text, { maxSize: 4 }); // <unk>, line break, "the", "cat"
  assert.deepEqual(w.words, ["<unk>", "\n", "the", "cat"]);
  const m = w.measure("the dog sat\n");
  assert.deepEqual(Array.from(m.ids), [2, 0, 0, 1]);
  assert.equal(m.unknown, 2);
  const K = new Set(text).size;
  assert.ok(Math.abs(m.extra![1] - 3 * Math.log(K)) < 1e-12, "dog: 3 characters at ln K each");
  assert.ok(Math.abs(m.extra![2] - 3 * Math.log(K)) < 1e-12);
  assert.equal(m.extra![0], 0);
  assert.deepEqual(Array.from(m.ends), [3, 7, 11, 12], "a token's span includes the space before it");
  assert.equal(w.decode(m.ids), "the <unk> <unk>\n");
});

test("word: case folding lowercases the vocabulary and the encoding", () => {
  const w = WordTokenizer.build("The the THE cat", { lowercase: true });
  assert.deepEqual(w.words, ["<unk>", "\n", "the", "cat"]);
  assert.equal(w.decode(w.encode("THE Cat")), "the cat");
  const back = tokenizerFromJSON(JSON.parse(JSON.stringify(w.serialize())));
  assert.equal(back.describe(), "word (case folded), 4 tokens");
  assert.deepEqual(back.encode("THE Cat"), w.encode("THE Cat"));
});

test("bpe: learns the size asked for, never emits <unk>, round-trips arbitrary text, and saves and loads back", () => {
  const train = PROSE.repeat(20);
  const b = BpeTokenizer.train(train, 300);
  assert.equal(b.size, 300);
  assert.equal(b.unk, -1);
  const rng = new Rng(7);
  // Random code points from every plane (surrogates excluded) and random ASCII: none was in the training text.
  for (let trial = 0; trial < 20; trial++) {
    let s = "";
    for (let i = 0; i < 50; i++) {
      const r = rng.random();
      const cp =
        r < 0.5 ? 32 + rng.int(95) : r < 0.8 ? 0x80 + rng.int(0xd800 - 0x80) : 0xe000 + rng.int(0x10ffff - 0xe000);
      s += String.fromCodePoint(cp);
    }
    const ids = b.encode(s);
    assert.ok(ids.every((id) => id >= 0 && id < b.size));
    assert.equal(b.decode(ids), s);
    assert.equal(streamed(b, ids), s);
    const m = b.measure(s);
    assert.equal(m.ends[m.ends.length - 1], codePoints(s), "the spans add up to the text's characters");
  }
  const ids = b.encode(PROSE);
  assert.ok(ids.length < 0.7 * new TextEncoder().encode(PROSE).length, "merges shorten the text");
  const back = tokenizerFromJSON(JSON.parse(JSON.stringify(b.serialize())));
  assert.deepEqual(back.encode(PROSE), ids);
  assert.deepEqual(BpeTokenizer.train(train, 300).serialize(), b.serialize(), "same text, same merges");
});

test("bpe: a token that ends inside a UTF-8 character is held back until the character is whole", () => {
  const b = new BpeTokenizer([]); // bytes only
  const ids = b.encode("é👍");
  assert.deepEqual(Array.from(ids), [0xc3, 0xa9, 0xf0, 0x9f, 0x91, 0x8d]);
  const d = b.decoder();
  assert.deepEqual(
    Array.from(ids, (id) => d.push(id)),
    ["", "é", "", "", "", "👍"],
  );
  const cut = b.decoder();
  cut.push(0xf0);
  assert.equal(cut.flush(), "\ufffd", "an unfinished character becomes U+FFFD at the end");
});

test("bad tokenizer states are refused with one line naming what is wrong", () => {
  assert.throws(() => tokenizerFromJSON({ kind: "sentencepiece" }), /tokenizer kind "sentencepiece" is not known/);
  assert.throws(() => tokenizerFromJSON({ kind: "bpe", merges: [1, 300] }), /bpe merge 0 joins 1 and 300/);
  assert.throws(() => tokenizerFromJSON({ kind: "word", words: ["a"] }), /word tokenizer is damaged/);
  assert.throws(() => BpeTokenizer.train("abc", 100), /from 256 to 8192, got 100/);
});
