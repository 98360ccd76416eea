// Checkpoints across backends: a run started on the GPU (webgpu) and resumed on js ends where a run kept on js
// ends, and the other way round, within float32 rounding (the backends' products sum in different orders).
// Runs on SwiftShader here and in CI; skipped, with the reason, where the webgpu package or an adapter is missing.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { closeBackends, loadBackend } from "../src/engine/backends/index.js";
import { cli } from "./helpers/cli.js";
import { assertSameRun } from "./helpers/runs.js";

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
    await assertSameRun(split, whole, 10);
  });
}
