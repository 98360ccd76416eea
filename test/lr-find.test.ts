// The learning-rate range test (src/tune/lr-find.ts, `charlm lr-find`): the sweep's rates, the suggestion read off
// a curve, a real sweep that falls and then blows up, and the command's output, plot and refusals.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Vocab } from "../src/data/vocab.js";
import { setBackend } from "../src/engine/backends/index.js";
import { jsBackend } from "../src/engine/backends/js.js";
import { buildModel } from "../src/models/registry.js";
import { resolveTrainConfig, modelConfigFor } from "../src/train/config.js";
import { modelRngFor } from "../src/train/loop.js";
import { checkLrFindOptions, lrRangeTest, rangeRate, suggestRate, type LrPoint } from "../src/tune/lr-find.js";
import { cli } from "./helpers/cli.js";

setBackend(jsBackend);

test("the rates grow by a constant factor from --min-lr to --max-lr", () => {
  const r = Array.from({ length: 5 }, (_, i) => rangeRate(i, 5, 1e-4, 1));
  assert.ok(Math.abs(r[0] - 1e-4) < 1e-12 && Math.abs(r[4] - 1) < 1e-12);
  for (let i = 1; i < 5; i++) assert.ok(Math.abs(r[i] / r[i - 1] - 10) < 1e-9, `${r}`);
});

test("the suggestion is a tenth of the rate at the lowest smoothed loss, the steepest fall beside it; none if it never falls", () => {
  // flat at 4 up to 1e-3, falling 1 nat per factor of 10 until 1e-1 (fastest from 1e-2 to 1e-1: 2 nats), then up
  const lrs = Array.from({ length: 41 }, (_, i) => 10 ** (-5 + i / 10));
  const loss = (lr: number) => {
    const x = Math.log10(lr);
    if (x <= -3) return 4;
    if (x <= -2) return 4 - (x + 3);
    if (x <= -1) return 3 - 2 * (x + 2);
    return 1 + 3 * (x + 1);
  };
  const points: LrPoint[] = lrs.map((lr) => ({ lr, loss: loss(lr), smoothed: loss(lr) }));
  const { suggested, steepest, lowestAt } = suggestRate(points);
  assert.ok(Math.abs(Math.log10(lowestAt) + 1) < 1e-9, `lowest at ${lowestAt}`);
  assert.ok(suggested !== null && Math.abs(Math.log10(suggested) + 2) < 1e-9, `suggested ${suggested}`);
  assert.ok(steepest !== null && steepest > 1e-2 && steepest < 1e-1, `steepest ${steepest}`);
  const rising = lrs.map((lr, i) => ({ lr, loss: i, smoothed: i }));
  assert.deepEqual(
    [suggestRate(rising).suggested, suggestRate(rising).steepest],
    [null, null],
    "a loss that only rises",
  );
});

function tinyRun(seed = 1) {
  const text = "the quick brown fox jumps over the lazy dog. ".repeat(40);
  const vocab = Vocab.build(text);
  const config = resolveTrainConfig({
    preset: "tiny",
    overrides: { units: 16, embedding: 8, seqLength: 16, batchSize: 4, seed, backend: "js" },
  });
  const model = buildModel(modelConfigFor(config, vocab.size), modelRngFor(seed));
  return { config, model, vocab, splits: { train: text } };
}

test("a sweep on a small LSTM: the loss falls, then blows up and the test stops; the same seed gives the same curve", async () => {
  const a = await lrRangeTest(tinyRun(), { minLr: 1e-4, maxLr: 1e4, steps: 60 });
  assert.equal(a.ended, "diverged");
  assert.ok(a.points.length < 60, `${a.points.length} steps`);
  const first = a.points[0].smoothed;
  const lowest = Math.min(...a.points.map((p) => p.smoothed));
  assert.ok(lowest < first - 0.3, `from ${first} down to ${lowest}`);
  assert.ok(a.suggested !== null && a.steepest !== null);
  assert.equal(a.suggested, a.lowestAt / 10);
  assert.ok(a.lowestAt < a.points[a.points.length - 1].lr && a.steepest <= a.lowestAt);
  const b = await lrRangeTest(tinyRun(), { minLr: 1e-4, maxLr: 1e4, steps: 60 });
  assert.deepEqual(b.points, a.points);
  // a range too small to matter: every step, and the loss barely moves
  const c = await lrRangeTest(tinyRun(), { minLr: 1e-7, maxLr: 1e-6, steps: 12 });
  assert.equal(c.ended, "done");
  assert.equal(c.points.length, 12);
});

test("bad ranges are refused in one line", () => {
  assert.throws(() => checkLrFindOptions({ minLr: 0 }), /--min-lr 0: must be above 0/);
  assert.throws(() => checkLrFindOptions({ minLr: 1e-3, maxLr: 1e-4 }), /--max-lr 0\.0001: must be above --min-lr/);
  assert.throws(() => checkLrFindOptions({ steps: 5 }), /--steps 5: the range test needs at least 10 steps/);
});

test("charlm lr-find prints the curve and a suggestion, draws it, and refuses --lr", async () => {
  const dir = mkdtempSync(join(tmpdir(), "charlm-lrfind-"));
  try {
    const data = join(dir, "fox.txt");
    writeFileSync(data, "the quick brown fox jumps over the lazy dog. ".repeat(60));
    const common = ["--preset", "tiny", "--data", data, "--units", "16", "--steps", "40", "--quiet"];
    const plot = join(dir, "lr.svg");
    const r = await cli("lr-find", ...common, "--min-lr", "1e-4", "--max-lr", "100", "--plot", plot);
    assert.equal(r.code, 0, r.err);
    assert.match(
      r.out,
      /sweeping the learning rate from 0\.0001 to 100 over 40 steps: adam, batch 8 x 32, clipping at 5/,
    );
    assert.doesNotMatch(r.out, /^config/m, "no config block: its rate is not the one tested");
    assert.match(r.out, /learning rate {2}training loss, smoothed \(nats\/char\)/);
    assert.match(
      r.out,
      /suggested: --lr [\d.e-]+ \(a tenth of [\d.e+-]+, where the loss was lowest; it fell fastest at [\d.e+-]+\) for adam at batch 8 x 32/,
    );
    assert.match(readFileSync(plot, "utf8"), /^<svg[\s\S]*learning-rate range test[\s\S]*suggested/);
    const j = await cli("lr-find", ...common, "--json");
    assert.equal(j.code, 0, j.err);
    const doc = JSON.parse(j.out.trim().split("\n").pop()!) as { points: LrPoint[]; suggested: number | null };
    assert.equal(doc.points.length, 40);
    assert.ok(doc.points.every((p, i) => i === 0 || p.lr > doc.points[i - 1].lr));
    const bad = await cli("lr-find", ...common, "--lr", "0.1");
    assert.equal(bad.code, 2);
    assert.match(bad.err, /sweeps the learning rate itself; drop --lr/);
    const nowhere = await cli("lr-find", ...common, "--plot", join(dir, "missing", "lr.svg"));
    assert.equal(nowhere.code, 1);
    assert.match(nowhere.err, /--plot .*lr\.svg: the folder .*missing does not exist; create it or pick another path/);
    const range = await cli("lr-find", ...common, "--min-lr", "0.1", "--max-lr", "0.01");
    assert.equal(range.code, 2);
    assert.match(range.err, /--max-lr 0\.01: must be above --min-lr 0\.1/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
