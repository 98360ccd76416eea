// The library API (src/api.ts, what `import { train, load } from "charlm"` gives): the README's example runs as
// written, training in memory writes nothing, callbacks see every step and epoch and can stop the run, a stopped
// run resumes to the same losses, the backend option is honoured, and load() generates what the trained model did.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { load, train } from "../src/index.js";
import { listBackends } from "../src/engine/backends/index.js";
import { assertStoppedValidations } from "./helpers/runs.js";

const VERSE = readFileSync(new URL("../README.md", import.meta.url), "utf8").replace(/[^\x20-\x7e\n]/g, "");
const tmp = (): string => mkdtempSync(join(tmpdir(), "charlm-lib-"));
// Small settings on top of the tiny preset: a run takes a second or two on the js kernels.
const small = { preset: "tiny", text: VERSE, epochs: 2, stepsPerEpoch: 6, sampleLength: 0, backend: "js" } as const;

test("the README's Library example runs as written and trains, saves, loads and samples", (t) => {
  if (!process.env.CHARLM_TINYSHAKESPEARE) return t.skip("set CHARLM_TINYSHAKESPEARE=/path/to/input.txt (no network)");
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const section = readme.slice(readme.indexOf("## Library"));
  const code = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(code, "README has a ts block under ## Library");
  assert.ok(code.split("\n").filter((l) => l.trim()).length <= 10, "the example stays ten lines");
  const dir = tmp();
  const index = resolve("src/index.ts");
  writeFileSync(join(dir, "example.mts"), code.replace(`from "charlm"`, `from ${JSON.stringify(index)}`));
  const out = execFileSync(process.execPath, ["--import", import.meta.resolve("tsx"), "example.mts"], {
    cwd: dir,
    encoding: "utf8",
  });
  const lines = out.trimEnd().split("\n");
  assert.match(lines[0], /^epoch 1: validation \d+\.\d{3} nats\/char$/);
  assert.match(lines[1], /^epoch 2: validation \d+\.\d{3} nats\/char$/);
  assert.ok(lines.slice(2).join("\n").length >= 150, "then a sample of about 200 characters");
  assert.ok(existsSync(join(dir, "runs/lib/charlm.json")), "and the checkpoint it loaded from");
});

test("train() in memory writes nothing; onStep and onEpoch see every step and epoch", async () => {
  const dir = tmp();
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    const steps: number[] = [];
    const epochs: number[] = [];
    const run = await train({
      ...small,
      onStep: ({ step, loss }) => void (assert.ok(Number.isFinite(loss)), steps.push(step)),
      onEpoch: ({ epoch, valLoss }) => void (assert.ok(valLoss > 0), epochs.push(epoch)),
    });
    assert.equal(run.status, "finished");
    assert.deepEqual(
      steps,
      Array.from({ length: 12 }, (_, i) => i + 1),
    );
    assert.deepEqual(epochs, [1, 2]);
    assert.equal(run.history.length, 2);
    assert.equal(run.backend, "js");
    assert.equal((await run.generate({ length: 40, seed: 3 })).length, 40);
    assert.deepEqual(readdirSync(dir), [], "nothing written to the working directory");
  } finally {
    process.chdir(cwd);
  }
});

test("a callback returning false stops the run with a checkpoint; resuming ends where an unstopped run does", async () => {
  const full = await train({ ...small, out: join(tmp(), "full") });
  const dir = join(tmp(), "run");
  const saved: number[] = [];
  const stopped = await train({
    ...small,
    out: dir,
    onStep: ({ step }) => step < 8,
    onCheckpoint: ({ step, dir: at }) => void (assert.equal(at, dir), saved.push(step)),
  });
  assert.equal(stopped.status, "interrupted");
  assert.equal(stopped.result.step, 8);
  assert.deepEqual(saved, [6, 8], "the end of epoch 1, then where it stopped");
  const resumed = await train({ ...small, resume: dir });
  assert.equal(resumed.status, "finished");
  assert.equal(resumed.bestValLoss, full.bestValLoss, "bit for bit");
  const a = await full.generate({ prime: "The ", length: 60, seed: 7 });
  const b = await (await load(dir, { backend: "js" })).generate({ prime: "The ", length: 60, seed: 7 });
  assert.equal(b, a, "load() gives back the model that trained");
});

test("endOnStop: a callback's stop ends the run, validated where it stood and with the best weights", async () => {
  const dir = join(tmp(), "run");
  const stopped = await train({ ...small, out: dir, endOnStop: true, onStep: ({ step }) => step < 8 });
  assert.equal(stopped.status, "stopped");
  assert.equal(stopped.result.step, 8);
  const loaded = await load(dir, { backend: "js" });
  assert.equal(loaded.manifest.status, "stopped");
  // Epoch 1's validation and the one where it stopped: the best of them is the run's.
  assertStoppedValidations(dir, 6, 8, stopped.bestValLoss);
});

test("train() honours backend: the named one, or auto's choice (not silently js)", async () => {
  const backends = await listBackends();
  if (!backends.includes("wasm")) return; // no build/kernels.wasm in this checkout
  const named = await train({ ...small, epochs: 1, stepsPerEpoch: 2, backend: "wasm" });
  assert.equal(named.backend, "wasm");
  const { backend: _, ...rest } = small;
  const auto = await train({ ...rest, epochs: 1, stepsPerEpoch: 2, backend: "auto" });
  assert.notEqual(auto.backend, "js");
});

test("train() refuses bad options with one line naming them", async () => {
  await assert.rejects(train({ ...small, units: -3 }), /"units" must be at least 1/);
  await assert.rejects(train({ ...small, data: "x.txt" }), /either data .* or text/);
  await assert.rejects(train({ ...small, text: "" }), /text is empty/);
});
