// Checkpoints across backends: a run started on the GPU (webgpu) and resumed on js ends where a run kept on js
// ends, and the other way round, within float32 rounding (the backends' products sum in different orders).
// Runs on SwiftShader here and in CI; skipped, with the reason, where the webgpu package or an adapter is missing.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { closeBackends, loadBackend } from "../src/engine/backends/index.js";
import { readSafetensors } from "../src/checkpoint/checkpoint.js";
import { cli } from "./helpers/cli.js";

let skip: string | false = false;
try {
  await loadBackend("webgpu");
} catch (e) {
  skip = `webgpu not available here: ${(e as Error).message}`;
}
const work = mkdtempSync(join(tmpdir(), "charlm-xbackend-"));
after(async () => {
  await closeBackends();
  rmSync(work, { recursive: true, force: true });
});

const corpus = join(work, "text.txt");
const line = "Now is the winter of our discontent made glorious summer by this sun of York.\n";
writeFileSync(corpus, line.repeat(40));
const SMALL = ["--data", corpus, "--embedding", "8", "--units", "16", "--layers", "2", "--dropout", "0.1"];
const RUN = [...SMALL, "--seq-length", "16", "--batch-size", "4", "--steps-per-epoch", "5", "--epochs", "2"];

/** Step losses from metrics.jsonl and the final weights. */
async function result(dir: string): Promise<{ losses: number[]; weights: Map<string, Float32Array> }> {
  const losses = readFileSync(join(dir, "metrics.jsonl"), "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { type: string; loss?: number })
    .filter((r) => r.type === "step")
    .map((r) => r.loss!);
  const file = await readSafetensors(join(dir, "model.safetensors"));
  return { losses, weights: new Map([...file.tensors].map(([k, t]) => [k, t.data as Float32Array])) };
}

async function train(out: string, backend: string, ...more: string[]): Promise<void> {
  const r = await cli("train", ...RUN, "--log-every", "1", "--backend", backend, "--out", out, "--quiet", ...more);
  assert.equal(r.code, 0, r.err);
}

for (const [first, second] of [
  ["webgpu", "js"],
  ["js", "webgpu"],
] as const) {
  test(`a run started on ${first} resumes on ${second} and ends where a js run ends`, { skip }, async () => {
    const split = join(work, `${first}-${second}`);
    await train(split, first, "--stop-after", "4");
    const resumed = await cli("train", "--resume", split, "--backend", second, "--quiet");
    assert.equal(resumed.code, 0, resumed.err);
    assert.match(resumed.out, new RegExp(`backend: ${second}`));
    const whole = join(work, `js-${first}-${second}`);
    await train(whole, "js");
    const [a, b] = [await result(split), await result(whole)];
    assert.equal(a.losses.length, 10);
    assert.equal(b.losses.length, 10);
    a.losses.forEach((l, i) => assert.ok(Math.abs(l - b.losses[i]) < 1e-4, `step ${i + 1}: ${l} vs ${b.losses[i]}`));
    for (const [name, w] of b.weights) {
      const v = a.weights.get(name)!;
      let worst = 0;
      for (let i = 0; i < w.length; i++) worst = Math.max(worst, Math.abs(v[i] - w[i]));
      assert.ok(worst < 1e-4, `${name}: weights differ by ${worst}`);
    }
  });
}
