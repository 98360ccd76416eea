import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadCorpus, loadSplits } from "../src/data/corpus.js";
import { codePointIndex, codePointLength, findInvalidUtf8 } from "../src/data/utf8.js";
import { CharlmError } from "../src/util/errors.js";

const tmp = () => mkdtemp(join(tmpdir(), "charlm-corpus-"));

test("findInvalidUtf8 accepts valid text and gives the offset of the first bad sequence", () => {
  const ok = Buffer.from("plain ASCII, é, 中文, 😀 and 𝄞", "utf8");
  assert.equal(findInvalidUtf8(ok), -1);
  const cases: [number[], number][] = [
    [[0x61, 0x62, 0xff, 0x63], 2], // never valid
    [[0x61, 0x80], 1], // stray continuation byte
    [[0xc0, 0xaf], 0], // overlong "/"
    [[0x61, 0xe0, 0x80, 0x80], 1], // overlong 3-byte form
    [[0xed, 0xa0, 0x80], 0], // UTF-16 surrogate encoded
    [[0xf4, 0x90, 0x80, 0x80], 0], // above U+10FFFF
    [[0x61, 0x62, 0x63, 0xe4, 0xb8], 3], // truncated at end of file
    [[0xc3, 0x28], 0], // lead byte without continuation
  ];
  for (const [bytes, at] of cases) assert.equal(findInvalidUtf8(Uint8Array.from(bytes)), at, JSON.stringify(bytes));
});

test("code point helpers count an astral character once", () => {
  const s = "a😀b";
  assert.equal(s.length, 4);
  assert.equal(codePointLength(s), 3);
  assert.equal(codePointIndex(s, 2), 3);
  assert.equal(codePointIndex(s, 3), 4);
});

test("a file with invalid UTF-8 is an error naming the file and byte offset", async () => {
  const dir = await tmp();
  const file = join(dir, "bad.txt");
  await writeFile(file, Buffer.concat([Buffer.from("hello wörld\n"), Buffer.from([0xfe]), Buffer.from("more")]));
  await assert.rejects(loadCorpus([file]), (err: Error) => {
    assert.ok(err instanceof CharlmError);
    assert.equal(err.message, `${file}: invalid UTF-8 at byte 13; re-encode the file as UTF-8`);
    return true;
  });
});

test("missing files, empty corpora and empty directories get one clear line", async () => {
  const dir = await tmp();
  await assert.rejects(loadCorpus([join(dir, "nope.txt")]), /nope\.txt: no such file or directory; check the path/);
  await writeFile(join(dir, "empty.txt"), "");
  await assert.rejects(loadCorpus([join(dir, "empty.txt")]), /empty\.txt: the corpus is empty/);
  await mkdir(join(dir, "sub"));
  await assert.rejects(loadCorpus([join(dir, "sub")]), /sub: directory has no \.txt files/);
  await assert.rejects(loadCorpus([]), /no corpus given/);
  await assert.rejects(loadCorpus([join(dir, "empty.txt")], { validationFraction: 1 }), /validation fraction/);
});

test("a directory is read as its .txt files in sorted order, recursively; files are joined by newlines", async () => {
  const dir = await tmp();
  await writeFile(join(dir, "b.txt"), "second");
  await writeFile(join(dir, "a.txt"), "first\n");
  await writeFile(join(dir, "notes.md"), "ignored");
  await writeFile(join(dir, ".hidden.txt"), "ignored");
  await mkdir(join(dir, "c"));
  await writeFile(join(dir, "c", "z.txt"), "third");
  const c = await loadCorpus([dir], { validationFraction: 0 });
  assert.deepEqual(c.files, [join(dir, "a.txt"), join(dir, "b.txt"), join(dir, "c", "z.txt")]);
  assert.equal(c.text, "first\nsecond\nthird");
  assert.equal(c.train, c.text);
  assert.equal(c.validation, "");
  // Several paths, in the order given.
  const two = await loadCorpus([join(dir, "b.txt"), join(dir, "a.txt")], { validationFraction: 0 });
  assert.equal(two.text, "second\nfirst\n");
});

test("validation is a contiguous tail counted in code points, never splitting a surrogate pair", async () => {
  const dir = await tmp();
  const file = join(dir, "emoji.txt");
  // 10 code points, the last 3 are astral (2 UTF-16 units each).
  await writeFile(file, "\ufeffabcdefg😀😁😂"); // a BOM is dropped
  const c = await loadCorpus([file], { validationFraction: 0.3 });
  assert.equal(c.train, "abcdefg");
  assert.equal(c.validation, "😀😁😂");
  assert.equal(c.train + c.validation, c.text);
  const d = await loadCorpus([file], { validationFraction: 0.25 }); // ceil(2.5) = 3 code points
  assert.equal(d.validation, "😀😁😂");
});

test("loadSplits: custom files get a tail split and a name; tinyshakespeare:FILE needs a file", async () => {
  const dir = await tmp();
  const file = join(dir, "c.txt");
  await writeFile(file, "0123456789");
  const s = await loadSplits(file, { validationFraction: 0.2 });
  assert.deepEqual([s.train, s.validation, s.test, s.name], ["01234567", "89", undefined, "c.txt"]);
  await assert.rejects(loadSplits("tinyshakespeare:"), /names no file/);
  await assert.rejects(loadSplits(`tinyshakespeare:${file}`), /has 10 bytes, Tiny Shakespeare has 1115394/);
});
