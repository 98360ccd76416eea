// The train, sample, eval and summary commands: one real process end to end (train, then sample from what it
// wrote), then in-process runs of main() for resume and for each bad input's one-line message and exit code.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { cli } from "./helpers/cli.js";
import { assertStoppedValidations } from "./helpers/runs.js";

const VERSE =
  "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n" +
  "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n";
const work = mkdtempSync(join(tmpdir(), "charlm-cli-"));
const corpus = join(work, "verse.txt");
writeFileSync(corpus, VERSE.repeat(20));
const TINY = ["--preset", "tiny", "--embedding", "8", "--units", "12", "--seq-length", "16", "--batch-size", "4"];

test("end to end in a real process: train on a corpus file, then sample, eval and summary from the checkpoint", () => {
  const out = join(work, "e2e");
  const run = (...args: string[]) =>
    spawnSync(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { encoding: "utf8" });
  const t = run("train", "--data", corpus, ...TINY, "--steps-per-epoch", "5", "--epochs", "2", "--out", out);
  assert.equal(t.status, 0, t.stderr);
  assert.match(t.stdout, /config \(preset tiny\):\n {2}data +.*verse\.txt/);
  assert.match(t.stdout, /^ {2}seqLength +16$/m);
  assert.match(t.stdout, /^epoch 2\/2 +step 10 +train \d\.\d+ +val \d\.\d+ nats\/char/m);
  assert.match(t.stdout, /^finished: 10 steps, 2 epoch\(s\), best validation loss/m);
  // Not a terminal: the progress bar becomes plain lines on stderr (no carriage returns).
  assert.match(t.stderr, /epoch 1\/2 .*5\/5 .*char\/s/);
  assert.ok(!t.stderr.includes("\r"));
  for (const f of ["charlm.json", "model.safetensors", "optimizer.safetensors", "metrics.jsonl", "loss.svg"]) {
    assert.ok(existsSync(join(out, f)), f);
  }
  const s = run("sample", "--model", out, "--prime", "First", "--length", "40", "--seed", "3", "--temperature", "0.8");
  assert.equal(s.status, 0, s.stderr);
  assert.ok(s.stdout.startsWith("First"));
  assert.equal(s.stdout.length, "First".length + 40 + 1);
});

test("in process: sample streams several seeded samples, eval prints nats, bits and perplexity, summary a table", async () => {
  const out = join(work, "inproc");
  const t = await cli(
    "train",
    "--data",
    corpus,
    ...TINY,
    "--steps-per-epoch",
    "4",
    "--epochs",
    "1",
    "--out",
    out,
    "--quiet",
  );
  assert.equal(t.code, 0, t.err);
  const twoSamples = [
    "sample",
    "--model",
    out,
    "--prime",
    "All:",
    "--length",
    "30",
    "--seed",
    "4",
    "--num-samples",
    "2",
  ];
  const a = await cli(...twoSamples);
  assert.equal(a.code, 0, a.err);
  // The headers go to stderr, so stdout holds the generated text alone.
  // the first line names the backend (and why), then the headers between samples
  assert.match(a.err, /^backend: [^\n]+\n--- sample 1\/2 \(seed 4\) ---\n--- sample 2\/2 \(seed 5\) ---\n$/);
  assert.match(a.out, /^All:[^]{30}\n\nAll:[^]{30}\n$/);
  const b = await cli(...twoSamples);
  assert.equal(b.out, a.out);
  // --json: one document with each sample's seed and text, the same text as streamed.
  const json = await cli(...twoSamples, "--json");
  assert.equal(json.code, 0, json.err);
  const doc = JSON.parse(json.out) as { samples: { seed: number; text: string }[] };
  assert.deepEqual(
    doc.samples.map((x) => x.seed),
    [4, 5],
  );
  assert.equal(doc.samples.map((x) => x.text + "\n").join("\n"), a.out);
  // --stop and --prime understand \n, \t and \\ as typed in a shell (the README's --stop "\n").
  const line = await cli(
    "sample",
    "--model",
    out,
    "--prime",
    "All:\\n",
    "--stop",
    "\\n",
    "--length",
    "300",
    "--seed",
    "2",
  );
  assert.equal(line.code, 0, line.err);
  assert.match(line.out, /^All:\n[^\n]*\n\n?$/);
  const e = await cli("eval", "--model", out, "--split", "validation");
  assert.equal(e.code, 0, e.err);
  assert.match(e.out, /loss +\d\.\d{4} nats\/char\n +\d\.\d{4} bits\/char\n {2}perplexity +\d+\.\d{3}/);
  const j = await cli("eval", "--model", out, "--split", "validation", "--json");
  const r = JSON.parse(j.out) as { nats: number; bits: number; perplexity: number };
  assert.ok(Math.abs(r.bits - r.nats / Math.LN2) < 1e-12 && Math.abs(r.perplexity - Math.exp(r.nats)) < 1e-9);
  const sm = await cli("summary", "--model", out);
  assert.match(sm.out, /rnn\.0 \(LSTM\)/);
  assert.match(sm.out, /Total params: [\d,]+/);
  // GRU (reset-after, two biases): 3 (E H + H H + 2 H) per layer; embedding 65 x 64; dense 64 x 65 + 65.
  const cfg = await cli("summary", "--cell", "gru", "--units", "64", "--layers", "2");
  assert.match(cfg.out, /Total params: 58,305/);
});

test("in process: --data repeats, and the run reads every file it names", async () => {
  const second = join(work, "second.txt");
  writeFileSync(second, "Second file.\n".repeat(40));
  const r = await cli(
    "train",
    "--data",
    corpus,
    "--data",
    second,
    ...TINY,
    "--steps-per-epoch",
    "1",
    "--epochs",
    "1",
    "--sample-length",
    "0",
    "--out",
    join(work, "two"),
    "--quiet",
  );
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^data: 2 files, /m);
  assert.match(r.out, /^ {2}data +\[".*verse\.txt",".*second\.txt"\]$/m);
});

test("in process: --stop-after then --resume finishes the run", async () => {
  const out = join(work, "resume");
  const first = await cli(
    "train",
    "--data",
    corpus,
    ...TINY,
    "--steps-per-epoch",
    "4",
    "--epochs",
    "2",
    "--out",
    out,
    "--quiet",
    "--stop-after",
    "3",
  );
  assert.equal(first.code, 0, first.err);
  assert.match(first.out, /interrupted: 3 steps/);
  assert.match(first.out, /continue with: charlm train --resume/);
  const second = await cli("train", "--resume", out, "--quiet");
  assert.equal(second.code, 0, second.err);
  assert.match(second.out, /^resuming .* at step 3 \(epoch 1\)/);
  assert.match(second.out, /finished: 8 steps, 2 epoch\(s\)/);
  const again = await cli("train", "--resume", out, "--quiet");
  assert.equal(again.code, 1);
  assert.match(again.err, /already trained 2 epoch\(s\) of 2; raise --epochs/);
  const more = await cli("train", "--resume", out, "--quiet", "--epochs", "3");
  assert.equal(more.code, 0, more.err);
  assert.match(more.out, /finished: 12 steps, 3 epoch\(s\)/);
});

test("in process: --end-on-stop ends a stopped run validated and with its best weights, status stopped", async () => {
  const out = join(work, "end-on-stop");
  const args = [...TINY, "--data", corpus, "--steps-per-epoch", "4", "--epochs", "3", "--out", out, "--quiet"];
  const r = await cli("train", ...args, "--sample-length", "0", "--stop-after", "6", "--end-on-stop");
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^stopped at step 6: val \d\.\d{4} nats\/char/m);
  assert.match(r.out, /^stopped: 6 steps, 1 epoch\(s\)/m);
  const m = JSON.parse(readFileSync(join(out, "charlm.json"), "utf8")) as { status: string; bestValLoss: number };
  assert.equal(m.status, "stopped");
  assertStoppedValidations(out, 4, 6, m.bestValLoss);
  assert.ok(!existsSync(join(out, "training.safetensors")), "ended: no training weights to resume an average from");
  // A resume goes on from those weights, to the end of its epochs.
  const more = await cli("train", "--resume", out, "--quiet", "--sample-length", "0");
  assert.equal(more.code, 0, more.err);
  assert.match(more.out, /finished: 12 steps, 3 epoch\(s\)/);
});

test("bad input: each gets one line on stderr and a non-zero exit, and loses nothing", async () => {
  const out = join(work, "bad");
  assert.equal(
    (await cli("train", "--data", corpus, ...TINY, "--steps-per-epoch", "2", "--epochs", "1", "--out", out, "--quiet"))
      .code,
    0,
  );
  const manifest = readFileSync(join(out, "charlm.json"), "utf8");
  // A directory another live process (this test's parent) has locked.
  const busy = join(work, "locked");
  mkdirSync(busy);
  writeFileSync(join(busy, "charlm.lock"), JSON.stringify({ pid: process.ppid }));
  // A copy whose manifest asks for a model too big to build.
  const huge = join(work, "huge");
  cpSync(out, huge, { recursive: true });
  const m = JSON.parse(manifest) as { model: { units: number } };
  m.model.units = 100000;
  writeFileSync(join(huge, "charlm.json"), JSON.stringify(m));
  const empty = mkdtempSync(join(work, "empty-"));
  const otherCorpus = join(work, "other.txt");
  writeFileSync(otherCorpus, VERSE.repeat(20).toUpperCase() + "ÉÈ\n");
  const badConfig = join(work, "bad.json");
  writeFileSync(badConfig, JSON.stringify({ unitz: 3 }));
  const cases: [string[], number, RegExp][] = [
    [["sample", "--model", out, "--temperature", "0"], 2, /^charlm sample: --temperature must be above 0, got 0$/],
    [["sample", "--model", out, "--top-p", "1.5"], 2, /^charlm sample: --top-p must be at most 1, got 1\.5$/],
    [
      ["sample", "--model", out, "--window-stride", "0"],
      2,
      /^charlm sample: --window-stride must be at least 1, got 0$/,
    ],
    [
      ["sample", "--model", out, "--window-stride", "8"],
      1,
      /a window stride applies to a GPT .* this model is rnn: leave it unset/,
    ],
    [["sample", "--model", out, "--prime", "Zebra"], 1, /the prime text has characters the model does not know: 'Z'/],
    [["sample", "--model", empty], 1, /no charlm\.json in this directory, so it is not a charlm checkpoint/],
    [["sample"], 2, /sample needs --model DIR/],
    [["eval", "--model", out, "--split", "test"], 1, /has no test split .*; use --split validation$/],
    [["train", "--data", corpus, "--out", out], 2, /already holds a checkpoint; continue it with --resume/],
    [["train", "--resume", out, "--units", "64"], 2, /--units 64 differs from the run's 12; .* start a new run$/],
    [
      ["train", "--resume", out, "--epochs", "3", "--data", otherCorpus],
      1,
      /vocabulary .* differs from the checkpoint's .*resume with the data the run was started on/,
    ],
    [["train", "--config", badConfig, "--out", join(work, "x")], 1, /bad\.json: unknown training config key "unitz"/],
    [["train", "--preset", "huge", "--out", join(work, "y")], 2, /unknown preset 'huge'/],
    [["train", "--lr", "fast"], 2, /--lr must be a number, got 'fast'/],
    // Stray arguments and repeated flags are refused instead of ignored.
    [["train", "extra-arg"], 2, /unexpected argument 'extra-arg' for 'charlm train'; flags start with --/],
    [["train", "-u", "32"], 2, /unknown flag -u for 'charlm train'; flags start with -- /],
    [["train", "--lr", "1", "--lr", "2"], 2, /--lr given twice \('1' and '2'\); give it once/],
    [["sample", "--model", out, "--seed", "1", "--seed", "2"], 2, /--seed given twice/],
    // Models too big for memory: one line before any allocation.
    [["train", "--data", corpus, "--units", "100000", "--out", join(work, "u")], 2, /--units .*too big.*memory/],
    [["train", "--data", corpus, "--units", "1e12", "--out", join(work, "u")], 2, /too big/],
    [["train", "--data", corpus, "--embedding", "1e9", "--out", join(work, "u")], 2, /too big/],
    // --out and --data that are not a directory or a regular file: checked before any work.
    [["train", "--data", corpus, "--out", corpus], 1, /verse\.txt: not a directory .*; pick a directory/],
    [["train", "--data", corpus, "--out", join(corpus, "sub")], 1, /verse\.txt is not a directory/],
    [["train", "--data", corpus, "--out", "/dev/null"], 1, /^charlm train: \/dev\/null: not a directory/],
    [["train", "--data", corpus, "--out", "/proc/x"], 1, /^charlm train: \/proc\/x: .*pick a checkpoint directory/],
    [["train", "--data", "/dev/zero", "--out", join(work, "z")], 1, /\/dev\/zero: not a regular file/],
    [
      ["train", "--data", corpus, "--out", busy],
      3,
      /locked is being written by another charlm process \(pid \d+\); wait/,
    ],
    [["sample", "--model", huge], 1, /charlm\.json: model config: .* parameters .* is too big to build/],
    [["summary", "--model", huge], 1, /is too big to build/],
    [["serve", "--model", out, "--timeout", "2200000"], 2, /--timeout must be at most 86400, got 2200000/],
    [["serve", "--model", out, "--cors", "example.org"], 2, /--cors example\.org: not an origin/],
  ];
  for (const [args, code, re] of cases) {
    const r = await cli(...args);
    assert.equal(r.code, code, `${args.join(" ")}: ${r.err}`);
    const line = r.err.trim();
    assert.ok(!line.includes("\n"), `${args.join(" ")}: more than one line: ${line}`);
    assert.match(line, re, args.join(" "));
  }
  assert.equal(readFileSync(join(out, "charlm.json"), "utf8"), manifest);
});

for (const [cell, batching] of [
  ["lstm", "windows"],
  ["lstm", "stream"],
  ["gru", "windows"],
  ["gru", "stream"],
  ["rnn", "windows"],
  ["rnn", "stream"],
]) {
  test(`a ${cell} run (${batching} batching) killed with SIGKILL resumes and ends bit-for-bit like an uninterrupted one`, async () => {
    await killAndResume(["--cell", cell, "--batching", batching, "--dropout", batching === "stream" ? "0" : "0.2"]);
  });
}

/** `charlm train ARGS --out OUT` in its own process: its stderr so far, its exit code, and a wait for N metrics lines. */
function spawnTrain(args: string[], out: string) {
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", "train", ...args, "--out", out], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  child.stderr.setEncoding("utf8").on("data", (s: string) => (err += s));
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  const metricsLines = () =>
    existsSync(join(out, "metrics.jsonl")) ? readFileSync(join(out, "metrics.jsonl"), "utf8").split("\n").length : 0;
  return {
    child,
    exited,
    stderr: () => err,
    async waitForLines(n: number): Promise<void> {
      for (let i = 0; i < 1000 && metricsLines() < n; i++) await sleep(20);
    },
  };
}

async function killAndResume(style: string[]): Promise<void> {
  const args = [...TINY, "--data", corpus, "--steps-per-epoch", "12", "--epochs", "2", ...style];
  const common = [...args, "--save-every", "3", "--log-every", "1", "--sample-length", "0", "--quiet"];
  const label = style.join("");
  const whole = join(work, "whole" + label);
  assert.equal((await cli("train", ...common, "--out", whole)).code, 0);
  const killed = join(work, "killed" + label);
  const run = spawnTrain(common, killed);
  await run.waitForLines(9);
  run.child.kill("SIGKILL");
  await run.exited;
  const at = JSON.parse(readFileSync(join(killed, "charlm.json"), "utf8")) as { step: number };
  assert.ok(at.step > 0 && at.step < 24, `killed after the checkpoint at step ${at.step}`);
  const r = await cli("train", "--resume", killed, "--quiet");
  assert.equal(r.code, 0, r.err);
  assert.equal(
    readFileSync(join(killed, "metrics.jsonl"), "utf8").replace(/"(time|charsPerSec|seconds)":[\d.e+-]+/g, ""),
    readFileSync(join(whole, "metrics.jsonl"), "utf8").replace(/"(time|charsPerSec|seconds)":[\d.e+-]+/g, ""),
  );
  assert.deepEqual(readFileSync(join(killed, "model.safetensors")), readFileSync(join(whole, "model.safetensors")));
}

test("a sampler in a loop against a trainer saving every step: no failure on either side", async () => {
  const out = join(work, "busy");
  const args = [...TINY, "--data", corpus, "--steps-per-epoch", "40", "--epochs", "2", "--save-every", "1"];
  const trainer = spawnTrain([...args, "--sample-length", "0", "--quiet"], out);
  let running = true;
  void trainer.exited.then(() => (running = false));
  while (running && !existsSync(join(out, "charlm.json"))) await sleep(10);
  let ok = 0;
  const failures: string[] = [];
  while (running) {
    const r = await cli("sample", "--model", out, "--length", "5", "--seed", "1", "--backend", "js");
    if (r.code === 0) ok++;
    else failures.push(r.err);
  }
  assert.equal(await trainer.exited, 0, trainer.stderr());
  assert.deepEqual(failures, []);
  assert.ok(ok >= 5, `only ${ok} samples ran while the trainer was saving`);
});

test("SIGTERM, as a supervisor sends it, saves a checkpoint like Ctrl-C and exits 143", async () => {
  const out = join(work, "term");
  const args = [...TINY, "--data", corpus, "--steps-per-epoch", "400", "--epochs", "1", "--log-every", "1"];
  const run = spawnTrain([...args, "--sample-length", "0", "--quiet"], out);
  await run.waitForLines(4);
  run.child.kill("SIGTERM");
  assert.equal(await run.exited, 143, run.stderr());
  assert.match(run.stderr(), /terminated: saving a checkpoint/);
  const m = JSON.parse(readFileSync(join(out, "charlm.json"), "utf8")) as { step: number; status: string };
  assert.ok(m.step >= 3 && m.step < 400, `saved at step ${m.step}`);
  assert.equal(m.status, "running");
  assert.ok(!existsSync(join(out, "charlm.lock")), "the lock is given back");
});
