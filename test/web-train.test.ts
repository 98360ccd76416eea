// "Train in this tab" without a browser: the page's training module (web/tab-train.ts, the training library
// writing into memory) trains a tiny model on pasted text, and the checkpoint tar it offers for download is read by
// `charlm sample --model FILE.tar` and by `tar`. The tar writer and reader round-trip and refuse damaged files.
// test/webgpu-browser.test.ts drives the same mode in headless Chromium.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readTar, writeTar } from "../src/checkpoint/tar.js";
import { CharlmError } from "../src/util/errors.js";
import { TAB_DEFAULTS, trainInTab } from "../web/tab-train.js";
import { cli } from "./helpers/cli.js";

const TEXT = "the quick brown fox jumps over the lazy dog. ".repeat(150);

test("a tar of files reads back file for file; damage is refused with the file named", () => {
  const files: [string, Uint8Array][] = [
    ["charlm.json", new TextEncoder().encode('{"a":1}\n')],
    ["empty.bin", new Uint8Array(0)],
    ["block.bin", Uint8Array.from({ length: 1030 }, (_, i) => i % 251)],
  ];
  const tar = writeTar("run", files);
  assert.equal(tar.length % 512, 0);
  assert.deepEqual([...readTar(tar, "x.tar")], files);
  const bad = tar.slice();
  bad[10] ^= 1; // inside the first header's name
  assert.throws(
    () => readTar(bad, "x.tar"),
    (e: Error) => e instanceof CharlmError && /x\.tar: the header at byte 0 has a bad checksum/.test(e.message),
  );
  assert.throws(() => readTar(tar.slice(0, 1024), "x.tar"), /x\.tar: .*runs past the end|truncated/);
});

test("the page's training makes a checkpoint tar that charlm sample reads", async () => {
  const dir = mkdtempSync(join(tmpdir(), "charlm-tab-"));
  try {
    const lines: { type: string; step: number; loss?: number; valLoss?: number }[] = [];
    const run = await trainInTab(
      TEXT,
      { ...TAB_DEFAULTS, units: 24, embedding: 8, seqLength: 16, batchSize: 8, steps: 60, validateEvery: 20, lr: 2e-2 },
      { backend: "js", name: "fox.txt", onMetrics: (l) => lines.push(l) },
    );
    assert.equal(run.result.status, "finished");
    assert.equal(run.result.step, 60);
    const losses = lines.filter((l) => l.type === "step").map((l) => l.loss!);
    const vals = lines.filter((l) => l.type === "epoch").map((l) => l.valLoss!);
    assert.equal(losses.length, 12); // every 5 steps
    assert.equal(vals.length, 3); // every 20 steps
    assert.ok(losses.at(-1)! < losses[0] - 0.4, `training loss ${losses[0]} -> ${losses.at(-1)}`);
    assert.ok(vals.at(-1)! < vals[0], `validation loss ${vals.join(" -> ")}`);

    const file = join(dir, "fox.tar");
    writeFileSync(file, run.store.tar("charlm-fox"));
    const sample = (model: string) =>
      cli("sample", "--model", model, "--prime", "the ", "--length", "40", "--seed", "3", "--backend", "js");
    const r = await sample(file);
    assert.equal(r.code, 0, r.err);
    assert.equal(Array.from(r.out.replace(/\n$/, "")).length, 44); // the text, then a newline
    assert.ok(r.out.startsWith("the "));
    // The same bytes as a directory: `tar xf` gives the checkpoint charlm sample reads the same way.
    execFileSync("tar", ["xf", file, "-C", dir]);
    const d = await sample(join(dir, "charlm-fox"));
    assert.equal(d.out, r.out);
    const served = await cli("serve", "--model", file, "--port", "0");
    assert.equal(served.code, 2, served.err);
    assert.match(
      served.err,
      /a file \(a checkpoint tar\?\); serve reads checkpoint directories: unpack it with 'tar xf /,
    );
    writeFileSync(join(dir, "fox.txt"), TEXT);
    const e = await cli(
      "eval",
      "--model",
      file,
      "--data",
      join(dir, "fox.txt"),
      "--split",
      "validation",
      "--backend",
      "js",
      "--json",
    );
    assert.equal(e.code, 0, e.err);
    assert.ok((JSON.parse(e.out) as { nats: number }).nats < losses[0]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("text too short for one batch is refused with the sizes and the fix", async () => {
  await assert.rejects(
    trainInTab("abc", TAB_DEFAULTS, { backend: "js" }),
    /the text has 3 characters; one batch of 32 x 65 needs at least \d+: paste more text/,
  );
});
