import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cli } from "./helpers/cli.js";

const charlm = cli;

/** A bad input: non-zero exit and exactly one line on stderr matching `pattern`. */
async function fails(pattern: RegExp, ...argv: string[]): Promise<void> {
  const r = await charlm(...argv);
  assert.notEqual(r.code, 0, `exit code for ${argv.join(" ")}`);
  const lines = r.err.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line for ${argv.join(" ")}, got:\n${r.err}`);
  assert.match(lines[0], /^charlm scratch: /);
  assert.match(lines[0], pattern);
}

const tmp = () => mkdtemp(join(tmpdir(), "charlm-cli-scratch-"));

test("charlm scratch learns 'hello world', saves a checkpoint, and samples it back", async () => {
  const out = join(await tmp(), "hello");
  const r = await charlm(
    "scratch",
    "--text",
    "hello world",
    "--seq-length",
    "5",
    "--iterations",
    "300",
    "--sample-every",
    "150",
    "--out",
    out,
    "--quiet",
  );
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /scratch RNN: data text \(train 11 chars, validation 0\), vocab 8, hidden 100, seq-length 5/);
  assert.match(r.out, /---- iteration 150, smooth loss/);
  assert.match(r.out, /train loss: 0\.0\d+ nats\/char \(0\.\d+ bits\/char\) over 11 chars/);
  const s = await charlm("scratch", "sample", "--model", out, "--prime", "h", "--length", "10", "--temperature", "0");
  assert.equal(s.code, 0, s.err);
  assert.equal(s.out, "hello world\n");
  // Sampling is seeded: same seed, same text.
  const a = await charlm("scratch", "sample", "--model", out, "--length", "40", "--seed", "3");
  const b = await charlm("scratch", "sample", "--model", out, "--length", "40", "--seed", "3");
  assert.equal(a.out, b.out);
  // Resume continues to a higher iteration count; a second fresh run into the same directory is refused.
  const c = await charlm(
    "scratch",
    "--text",
    "hello world",
    "--iterations",
    "320",
    "--out",
    out,
    "--resume",
    "--quiet",
  );
  assert.equal(c.code, 0, c.err);
  assert.match(c.out, /resuming .* at iteration 300/);
  assert.match(c.out, /trained 20 iterations \(320 total/);
  await fails(
    /already holds a scratch checkpoint; pass --resume/,
    "scratch",
    "--text",
    "hello world",
    "--iterations",
    "5",
    "--out",
    out,
  );
  await fails(
    /--hidden 50 differs from the checkpoint's 100; drop it to resume/,
    "scratch",
    "--text",
    "hello world",
    "--iterations",
    "400",
    "--out",
    out,
    "--resume",
    "--hidden",
    "50",
  );
  await fails(
    /trained on text \(11 chars\), not text \(12\)/,
    "scratch",
    "--text",
    "hello  world",
    "--iterations",
    "400",
    "--out",
    out,
    "--resume",
  );
  await fails(
    /characters the checkpoint in .* never saw \('!' \(U\+0021\)\); resume with the same --data/,
    "scratch",
    "--text",
    "hello world!",
    "--iterations",
    "400",
    "--out",
    out,
    "--resume",
  );
  await fails(
    /--prime has characters outside the model's vocabulary: 'Z' \(U\+005A\), 'Q' \(U\+0051\); use only characters/,
    "scratch",
    "sample",
    "--model",
    out,
    "--prime",
    "hZQ",
  );
});

test("a validation split is reported in nats and bits per character", async () => {
  const dir = await tmp();
  const file = join(dir, "corpus.txt");
  await writeFile(file, "abcabcabd ".repeat(40));
  const r = await charlm(
    "scratch",
    "--data",
    file,
    "--iterations",
    "30",
    "--hidden",
    "8",
    "--seq-length",
    "10",
    "--out",
    join(dir, "m"),
    "--quiet",
    "--sample-every",
    "0",
  );
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /data corpus\.txt \(train 360 chars, validation 40\)/);
  assert.match(r.out, /validation loss: \d\.\d{4} nats\/char \(\d\.\d{4} bits\/char\) over 40 chars/);
  const nats = Number(/validation loss: ([\d.]+)/.exec(r.out)![1]);
  const bits = Number(/\(([\d.]+) bits/.exec(r.out)![1]);
  assert.ok(Math.abs(bits - nats / Math.LN2) < 1e-3, `${nats} nats vs ${bits} bits`);
  await fails(
    /has no test split; use --split validation/,
    "scratch",
    "--data",
    file,
    "--iterations",
    "2",
    "--hidden",
    "4",
    "--seq-length",
    "5",
    "--out",
    join(dir, "m2"),
    "--quiet",
    "--split",
    "test",
  );
});

test("bad input: one clear line and a non-zero exit", async () => {
  const dir = await tmp();
  const out = join(dir, "out");
  const bad = join(dir, "latin1.txt");
  await writeFile(bad, Buffer.from([0x68, 0x69, 0x20, 0xe9, 0x74, 0xe9])); // "hi été" in Latin-1
  const empty = join(dir, "empty.txt");
  await writeFile(empty, "");
  const short = join(dir, "short.txt");
  await writeFile(short, "tiny text");
  const run = ["--iterations", "5", "--out", out, "--quiet"];

  await fails(
    /nope\.txt: no such file or directory; check the path/,
    "scratch",
    "--data",
    join(dir, "nope.txt"),
    ...run,
  );
  await fails(/latin1\.txt: invalid UTF-8 at byte 3; re-encode the file as UTF-8/, "scratch", "--data", bad, ...run);
  await fails(/empty\.txt: the corpus is empty; give a non-empty UTF-8 text file/, "scratch", "--data", empty, ...run);
  await fails(
    /short\.txt: the training text has 9 characters, fewer than one sequence of --seq-length 25 \+ 1; use a shorter --seq-length/,
    "scratch",
    "--data",
    short,
    "--validation-fraction",
    "0",
    ...run,
  );
  await fails(/--hidden must be at least 1, got 0/, "scratch", "--text", "hello world", "--hidden", "0", ...run);
  await fails(
    /--seq-length must be at least 1, got -5/,
    "scratch",
    "--text",
    "hello world",
    "--seq-length",
    "-5",
    ...run,
  );
  await fails(/--iterations must be at least 1, got 0/, "scratch", "--text", "hello world", "--iterations", "0");
  await fails(/--lr must be above 0, got -0\.1/, "scratch", "--text", "hello world", "--lr", "-0.1", ...run);
  await fails(/--length must be at least 1, got 0/, "scratch", "sample", "--model", out, "--length", "0");
  await fails(
    /--hidden must be a whole number, got '1\.5'/,
    "scratch",
    "--text",
    "hello world",
    "--hidden",
    "1.5",
    ...run,
  );
  await fails(/unknown flag --hiden for 'charlm scratch'; run 'charlm scratch --help'/, "scratch", "--hiden", "10");
  await fails(/say how long to train: give --iterations N or --epochs N/, "scratch", "--text", "hello world");
  await fails(
    /give the training text: --data FILE\|DIR\|tinyshakespeare or --text TEXT/,
    "scratch",
    "--iterations",
    "5",
  );
  await fails(/give the checkpoint to sample: --model DIR/, "scratch", "sample");
  await fails(/no scratch RNN checkpoint here/, "scratch", "sample", "--model", join(dir, "none"));
  await fails(
    /--prime belongs to 'charlm scratch sample', not 'train'/,
    "scratch",
    "--text",
    "hi",
    "--prime",
    "x",
    ...run,
  );
  await fails(
    /--iterations belongs to 'charlm scratch \(train\)', not 'sample'/,
    "scratch",
    "sample",
    "--model",
    out,
    "--iterations",
    "3",
  );
  await fails(/unknown mode 'trian'/, "scratch", "trian");
});

test("--help lists the flags and examples", async () => {
  const r = await charlm("scratch", "--help");
  assert.equal(r.code, 0);
  for (const flag of [
    "--data",
    "--iterations",
    "--epochs",
    "--hidden",
    "--seq-length",
    "--lr",
    "--out",
    "--seed",
    "--resume",
    "--prime",
  ]) {
    assert.ok(r.out.includes(flag), flag);
  }
  assert.match(r.out, /charlm scratch sample --model/);
});
