// The command line around the commands: help for every command, the environment variables and exit codes in
// --help, `charlm ls`, and the --json forms that scripts read.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cli } from "./helpers/cli.js";

const work = mkdtempSync(join(tmpdir(), "charlm-main-"));
const corpus = join(work, "verse.txt");
writeFileSync(corpus, "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die?\n\n".repeat(30));
const TINY = ["--preset", "tiny", "--embedding", "8", "--units", "12", "--seq-length", "16", "--batch-size", "4"];
const runs = join(work, "runs");
const QUICK = ["--data", corpus, ...TINY, "--steps-per-epoch", "2", "--sample-length", "0", "--quiet"];

test("help: 'charlm help CMD' is 'charlm CMD --help'; unknown commands are refused", async () => {
  for (const name of ["train", "sample", "eval", "summary", "scratch", "serve", "ls"]) {
    const a = await cli("help", name);
    const b = await cli(name, "--help");
    assert.equal(a.code, 0, name);
    assert.equal(a.out, b.out, name);
    assert.match(a.out, new RegExp(`^charlm ${name}: `));
  }
  const bad = await cli("help", "trian");
  assert.equal(bad.code, 2);
  assert.match(bad.err, /^charlm: unknown command 'trian'; run 'charlm --help' for the list\n$/);
});

test("--help lists the CHARLM_* environment variables and the exit codes", async () => {
  const top = await cli("--help");
  const vars = [
    "CHARLM_THREADS",
    "CHARLM_TINYSHAKESPEARE",
    "CHARLM_CACHE_DIR",
    "CHARLM_WASM_BUILD",
    "CHARLM_WEBGPU_RECURRENT",
  ];
  for (const v of vars) {
    assert.match(top.out, new RegExp(`^  ${v} `, "m"), v);
  }
  assert.match(top.out, /^Exit codes:\n {2}0 +success\n {2}1 +/m);
  const train = await cli("train", "--help");
  assert.match(train.out, /^Environment:\n(?: {2}CHARLM_\w+ .*\n)+/m);
  assert.match(train.out, /^ {2}CHARLM_THREADS /m);
});

test("ls lists runs with status, epochs, best validation loss and settings; --json for scripts", async () => {
  assert.equal((await cli("train", ...QUICK, "--epochs", "2", "--out", join(runs, "done"))).code, 0);
  const gru = ["--cell", "gru", "--epochs", "3", "--stop-after", "3", "--out", join(runs, "half")];
  assert.equal((await cli("train", ...QUICK, ...gru)).code, 0);
  writeFileSync(join(runs, "notes.txt"), "not a run");
  const r = await cli("ls", runs);
  assert.equal(r.code, 0, r.err);
  const lines = r.out.trimEnd().split("\n");
  assert.match(lines[0], /^RUN +STATUS +EPOCHS +BEST VAL +MODEL +DATA$/);
  assert.match(lines[1], /^done +finished +2\/2 +\d\.\d{4} +lstm 1x12 +verse\.txt$/);
  assert.match(lines[2], /^half +running +1\/3 +\d\.\d{4} +gru 1x12 +verse\.txt$/);
  assert.equal(lines.length, 3);
  const j = await cli("ls", runs, "--json");
  const doc = JSON.parse(j.out) as { runs: { name: string; status: string; epoch: number; bestValLoss: number }[] };
  assert.deepEqual(
    doc.runs.map((x) => [x.name, x.status, x.epoch]),
    [
      ["done", "finished", 2],
      ["half", "running", 1],
    ],
  );
  const none = await cli("ls", join(work, "nowhere"));
  assert.equal(none.code, 1);
  assert.match(none.err, /^charlm ls: .*nowhere: no such directory/);
});

test("--json: summary prints the layers and totals, train's last line is one JSON object", async () => {
  const s = await cli("summary", "--cell", "gru", "--units", "64", "--layers", "2", "--json");
  assert.equal(s.code, 0, s.err);
  const doc = JSON.parse(s.out) as { totalParams: number; layers: { name: string; type: string; params: number }[] };
  assert.equal(doc.totalParams, 58305);
  assert.equal(
    doc.layers.reduce((a, l) => a + l.params, 0),
    58305,
  );
  assert.deepEqual(
    doc.layers.map((l) => l.type),
    ["Embedding", "GRU", "Dropout", "GRU", "Dropout", "Dense"], // the cpu preset has dropout
  );
  const out = join(work, "json");
  const t = await cli("train", ...QUICK, "--epochs", "1", "--out", out, "--json");
  assert.equal(t.code, 0, t.err);
  const last = JSON.parse(t.out.trimEnd().split("\n").at(-1)!) as Record<string, unknown>;
  assert.equal(last.status, "finished");
  assert.equal(last.steps, 2);
  assert.equal(last.epochs, 1);
  assert.equal(last.checkpoint, out);
  assert.equal(typeof last.bestValLoss, "number");
});
