// Two training runs' checkpoint directories compared: their step losses (metrics.jsonl) and final weights, within a
// tolerance (runs on different backends sum in different orders).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { readSafetensors } from "../../src/checkpoint/checkpoint.js";

/** A run's validations from metrics.jsonl: the epochs' ("epoch") and those taken where it stopped ("eval"). */
export function validations(dir: string): { type: string; step: number; valLoss: number }[] {
  return readFileSync(join(dir, "metrics.jsonl"), "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { type: string; step: number; valLoss: number })
    .filter((l) => l.type === "epoch" || l.type === "eval");
}

/**
 * A run that stopped in its second epoch: metrics.jsonl holds two validations, the first epoch's (at `epochStep`)
 * and the one where it stopped (at `stopStep`), and `best`, the run's best validation loss, is the lower of them.
 */
export function assertStoppedValidations(dir: string, epochStep: number, stopStep: number, best: number | null): void {
  const evals = validations(dir);
  assert.deepEqual(
    evals.map((l) => [l.type, l.step]),
    [
      ["epoch", epochStep],
      ["eval", stopStep],
    ],
  );
  assert.equal(best, Math.min(...evals.map((l) => l.valLoss)));
}

/** Step losses from metrics.jsonl and the final weights. */
export async function runResult(dir: string): Promise<{ losses: number[]; weights: Map<string, Float32Array> }> {
  const losses = readFileSync(join(dir, "metrics.jsonl"), "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { type: string; loss?: number })
    .filter((r) => r.type === "step")
    .map((r) => r.loss!);
  const file = await readSafetensors(join(dir, "model.safetensors"));
  return { losses, weights: new Map([...file.tensors].map(([k, t]) => [k, t.data as Float32Array])) };
}

/** `dir` ended where `reference` did: `steps` step losses and every weight within `tol`. */
export async function assertSameRun(dir: string, reference: string, steps: number, tol = 1e-4): Promise<void> {
  const [a, b] = [await runResult(dir), await runResult(reference)];
  assert.equal(a.losses.length, steps);
  assert.equal(b.losses.length, steps);
  a.losses.forEach((l, i) => assert.ok(Math.abs(l - b.losses[i]) < tol, `step ${i + 1}: ${l} vs ${b.losses[i]}`));
  for (const [name, w] of b.weights) {
    const v = a.weights.get(name)!;
    let worst = 0;
    for (let i = 0; i < w.length; i++) worst = Math.max(worst, Math.abs(v[i] - w[i]));
    assert.ok(worst < tol, `${name}: weights differ by ${worst}`);
  }
}
