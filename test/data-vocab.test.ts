import { test } from "node:test";
import assert from "node:assert/strict";
import { UNK, Vocab } from "../src/data/vocab.js";
import { CharlmError } from "../src/util/errors.js";

test("build: sorted unique code points; encode/decode round-trip", () => {
  const v = Vocab.build("hello world");
  assert.deepEqual(v.chars, [" ", "d", "e", "h", "l", "o", "r", "w"]);
  assert.equal(v.unk, -1);
  assert.equal(v.size, 8);
  const ids = v.encode("hello world");
  assert.deepEqual(Array.from(ids), [3, 2, 4, 4, 5, 0, 7, 5, 6, 4, 1]);
  assert.equal(v.decode(ids), "hello world");
});

test("characters are code points, not UTF-16 halves", () => {
  const v = Vocab.build("a😀b😀");
  assert.deepEqual(v.chars, ["a", "b", "😀"]);
  assert.deepEqual(Array.from(v.encode("😀a")), [2, 0]);
  assert.equal(v.decode([2, 1]), "😀b");
  assert.ok(v.has("😀"));
  assert.ok(!v.has("😁"));
});

test("unknown characters: error (default, naming them), <unk>, or skip", () => {
  const v = Vocab.build("abc");
  assert.deepEqual(v.unknownChars("abxyxz"), ["x", "y", "z"]);
  assert.throws(
    () => v.encode("abx"),
    (e: Error) => e instanceof CharlmError && /outside the vocabulary: 'x' \(U\+0078\)/.test(e.message),
  );
  assert.deepEqual(Array.from(v.encode("axb", "skip")), [0, 1]);
  // No <unk> symbol to map to: still an error, not a crash.
  assert.throws(() => v.encode("axb", "unk"), CharlmError);
  assert.equal(Vocab.build("aaab", { maxSize: 2 }).unk, -1); // fits without pruning
  const u = Vocab.build("aaabc", { maxSize: 2 });
  assert.deepEqual(u.chars, [UNK, "a"]);
  assert.deepEqual(Array.from(u.encode("abz", "unk")), [1, 0, 0]);
  assert.equal(u.decode([1, 0]), "a<unk>");
});

test("pruning: maxSize keeps the most frequent (ties by code point), minCount drops rare ones", () => {
  const text = "aaaa bbb cc d e";
  const top = Vocab.build(text, { maxSize: 4 }); // <unk> + 3 most frequent: ' ' (4), a (4), b (3)
  assert.deepEqual(top.chars, [UNK, " ", "a", "b"]);
  assert.equal(top.unk, 0);
  const min = Vocab.build(text, { minCount: 2 });
  assert.deepEqual(min.chars, [UNK, " ", "a", "b", "c"]);
  // Nothing pruned: no <unk>.
  assert.equal(Vocab.build(text, { maxSize: 100 }).unk, -1);
  assert.equal(Vocab.build("abc", { maxSize: 3 }).unk, -1);
  assert.throws(() => Vocab.build(text, { maxSize: 1 }), /maxSize/);
  assert.throws(() => Vocab.build(text, { minCount: 0 }), /minCount/);
});

test("enrichment: extra characters are always representable", () => {
  const v = Vocab.build("aaabc", { extra: "zé", maxSize: 4 });
  assert.deepEqual(v.chars, [UNK, "a", "z", "é"]);
  assert.ok(v.has("é") && v.has("z") && !v.has("b"));
  assert.equal(v.decode(v.encode("zéa")), "zéa");
  assert.deepEqual(Vocab.build("ab", { extra: "c" }).chars, ["a", "b", "c"]);
});

test("JSON round trip, and damaged JSON is refused with a clear message", () => {
  const v = Vocab.build("the quick brown 🦊", { minCount: 2 });
  const back = Vocab.fromJSON(JSON.parse(JSON.stringify(v)));
  assert.deepEqual(back.chars, v.chars);
  assert.equal(back.unk, v.unk);
  assert.deepEqual(back.encode("the ox", "unk"), v.encode("the ox", "unk"));
  assert.throws(() => Vocab.fromJSON({ chars: "abc" }), /vocabulary is damaged/);
  assert.throws(() => Vocab.fromJSON({ chars: ["a", "a"], unk: -1 }), /twice/);
  assert.throws(() => Vocab.fromJSON({ chars: ["a", "bc"], unk: -1 }), /not one character/);
  assert.throws(() => Vocab.fromJSON({ chars: ["a"], unk: 5 }), /out of range/);
  assert.throws(() => v.decode([99]), /outside the vocabulary/);
});
