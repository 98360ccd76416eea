// charlm tune-gpu: the step kernels timed in every setting on the GPU at hand (SwiftShader here: the plumbing, not
// the speed), the fastest kept per adapter in the cache directory, and later commands on webgpu taking them.

import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { selectBackend } from "../src/cli/backend.js";
import { setBackend, withBackend } from "../src/engine/backends/index.js";
import { ROUTE_NAMES, useBurstRoute } from "../src/engine/backends/webgpu/kernels/generate.js";
import { buildModel } from "../src/models/registry.js";
import { generateText, takesFusedBursts } from "../src/sample/generate.js";
import { Vocab } from "../src/data/vocab.js";
import { Rng } from "../src/util/rng.js";
import { loadTunedKernels, saveTunedKernels, tunedKernelsPath } from "../src/engine/backends/tuned-kernels.js";
import { pickVariant, TUNED_VARIANTS, useMatmulVariant } from "../src/engine/backends/webgpu/kernels/matmul.js";
import { lstmStepSettings, useKernelTable } from "../src/engine/backends/webgpu/kernels/recurrent.js";
import { stepGrid, tuneLstmSteps, tuneProducts, tuneSteps } from "../src/engine/backends/webgpu/tune.js";
import { jsBackend } from "../src/engine/backends/js.js";
import { cli } from "./helpers/cli.js";
import { gpuForTests } from "./helpers/webgpu.js";

const { gpu, skip } = await gpuForTests();

test("the grid: every combination of rows, slices, units, wide tiles and prefetching (8 rows from batch 128), then the products layout in 1 to 8 parts", () => {
  // 3 rows x 3 slices x wide x (no prefetch, prefetch, prefetch with weights ahead); the products layout's fused
  // kernel with 2 and 4 rows, and 2, 4, 8 parts
  assert.equal(stepGrid(false, 64).length, 54 + 5);
  assert.equal(stepGrid(true, 64).length, 162 + 5); // x 3 units
  assert.equal(stepGrid(false, 256).length, 63 + 5); // 8 rows: 64 wide anyway, so no wide variant
  assert.equal(stepGrid(true, 256).length, 189 + 5);
  assert.ok(stepGrid(true, 256).every((s) => !(s.rows === 8 && s.wide)));
  assert.ok(stepGrid(false, 64).every((s) => !s.ahead || s.prefetch));
  assert.ok(stepGrid(false, 64, true).every((s) => !s.ahead)); // --quick: none
  const parts = (g: ReturnType<typeof stepGrid>) => g.filter((s) => s.products).map((s) => `${s.slices}/${s.rows}`);
  assert.deepEqual(parts(stepGrid(true, 64)), ["1/2", "1/4", "2/4", "4/4", "8/4"]); // parts / rows
  assert.deepEqual(parts(stepGrid(false, 64, true)), ["2/4", "8/4"]);
});

describe("charlm tune-gpu", { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), "charlm-tune-gpu-"));
  const env = { CHARLM_CACHE_DIR: dir };
  Object.assign(process.env, env);
  after(() => {
    delete process.env.CHARLM_CACHE_DIR;
    useBurstRoute(null);
    useKernelTable(null);
    useMatmulVariant(null);
    setBackend(jsBackend);
  });

  test("times every setting, keeps the fastest whose output matches the defaults'", async () => {
    const seen: string[] = [];
    const { table, kernels } = await tuneLstmSteps(gpu!, [{ H: 8, B: 4 }], {
      T: 2,
      reps: 1,
      small: true,
      onKernel: (k) => seen.push(k.key),
    });
    assert.deepEqual(seen, ["lstmForward H8 B4", "lstmBackward H8 B4"]);
    assert.deepEqual(Object.keys(table), seen);
    for (const k of kernels) {
      assert.ok(k.timings.length >= 8, `${k.key}: ${k.timings.length} settings`);
      for (const t of k.timings) assert.ok(t.diff < 1e-5, `${k.key}: a setting's output differs by ${t.diff}`);
      assert.equal(k.timings.filter((t) => t.settings.products).length, 2, `${k.key}: the products layout's timings`);
      assert.deepEqual(table[k.key], k.best.settings);
      assert.equal(k.best.us, Math.min(...k.timings.map((t) => t.us)));
    }
    assert.deepEqual(lstmStepSettings(false, 4, 8), { R: 1, S: 8, U: 1, W: 64, P: false }); // the defaults again
  });

  test("the GRU's and the RNN's step kernels too", async () => {
    for (const cell of ["gru", "rnn"] as const) {
      const { table, kernels } = await tuneSteps(gpu!, cell, [{ H: 8, B: 4 }], { T: 2, reps: 1, small: true });
      assert.deepEqual(Object.keys(table), [`${cell}Forward H8 B4`, `${cell}Backward H8 B4`]);
      for (const k of kernels) {
        for (const t of k.timings) assert.ok(t.diff < 1e-5, `${k.key}: a setting's output differs by ${t.diff}`);
        // units a thread apply to the kernels with one product per unit: the backward steps and the RNN's forward
        const units = new Set(k.timings.map((t) => t.settings.units));
        assert.deepEqual([...units].sort(), cell === "gru" && k.kernel === "gruForward" ? [1] : [1, 4], k.key);
      }
    }
  });

  test("the matrix products: each tile choice timed on a shape's three large products, all giving the same outputs", async () => {
    const timings = await tuneProducts(gpu!, "lstm", { H: 8, B: 4 }, { T: 3, reps: 1 });
    assert.deepEqual(timings.map((t) => t.variant).sort(), [...TUNED_VARIANTS].sort());
    for (const t of timings) assert.ok(t.diff === 0 && t.us > 0, `${t.variant}: ${t.us} us, diff ${t.diff}`);
    assert.deepEqual(
      timings.map((t) => t.us),
      timings.map((t) => t.us).sort((a, b) => a - b),
    );
    assert.equal(pickVariant(false, false, 25600, 2048).key, "matmulNN.128.v"); // the default again
    process.env.CHARLM_WEBGPU_MATMUL = "64";
    try {
      await assert.rejects(() => tuneProducts(gpu!, "lstm", { H: 8, B: 4 }), /CHARLM_WEBGPU_MATMUL is set/);
    } finally {
      delete process.env.CHARLM_WEBGPU_MATMUL;
    }
  });

  test("the command saves the settings per adapter; webgpu commands then run with them", async () => {
    const r = await cli("tune-gpu", "--units", "8", "--batch-size", "4", "--seq-length", "2", "--quick");
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /lstmForward H8 B4: [\d.]+ us a step with .*; the defaults [\d.]+/);
    assert.match(r.out, /lstmBackward H8 B4: /);
    assert.match(r.out, /matrix products \(.*\): .*\b64 [\d.]+ ms.*; (64|auto|auto-128|auto-128p|auto-128d) kept \(/);
    assert.match(r.out, /saved in .*webgpu-kernels\.json/);
    const file = JSON.parse(readFileSync(tunedKernelsPath(), "utf8"));
    const table = file.adapters[gpu!.device].table;
    const matmul = file.adapters[gpu!.device].matmul;
    // generation: the three routes timed on the gpu preset's model with 8 units, the fastest kept
    const gen =
      /generation at batch 1 \(2 x LSTM 8, embedding \d+, 65 symbols\): (\d+) chars\/s in one kernel a burst, (\d+) in a kernel per layer a character, (\d+) step by step; (fused|wide|steps) kept/.exec(
        r.out,
      );
    assert.ok(gen, r.out);
    const rates = { fused: Number(gen[1]), wide: Number(gen[2]), steps: Number(gen[3]) };
    const kept = gen[4] as keyof typeof rates;
    assert.equal(rates[kept], Math.max(...Object.values(rates)));
    assert.equal(file.adapters[gpu!.device].generation, kept);
    assert.deepEqual(Object.keys(table), ["lstmForward H8 B4", "lstmBackward H8 B4"]);
    assert.ok((TUNED_VARIANTS as readonly string[]).includes(matmul), matmul);
    assert.match(r.out, new RegExp(`; ${matmul} kept \\(`));
    useKernelTable(null);
    useMatmulVariant(null);
    const { line } = await selectBackend("webgpu");
    const route = ROUTE_NAMES[kept];
    assert.match(
      line,
      new RegExp(`step kernels tuned here for 2 shapes, matrix products in ${matmul}, generation ${route} \\(`),
    );
    // the variant kept is what a large product now takes
    const want = {
      "64": "matmulNN",
      auto: "matmulNN.128.v",
      "auto-128": "matmulNN.128",
      "auto-128p": "matmulNN.128.p",
      "auto-128d": "matmulNN.128.d",
    };
    assert.equal(pickVariant(false, false, 25600, 2048).key, want[matmul as keyof typeof want]);
    useMatmulVariant(null);
    const f = table["lstmForward H8 B4"];
    const got = lstmStepSettings(false, 4, 8);
    assert.deepEqual([got.R, got.S, got.P], [f.rows, f.slices, f.prefetch]);
    // another shape keeps the defaults; another adapter's entry does not apply
    assert.deepEqual(lstmStepSettings(false, 5, 8), { R: 1, S: 8, U: 1, W: 64, P: false });
    useKernelTable(null);
    assert.deepEqual(await loadTunedKernels("another adapter"), { shapes: 0, matmul: null, generation: null });
    // a variant saved for this adapter is the one its large products then take
    await saveTunedKernels(gpu!.device, {}, tunedKernelsPath(), "auto-128p");
    assert.deepEqual(await loadTunedKernels(gpu!.device), { shapes: 2, matmul: "auto-128p", generation: kept });
    assert.equal(pickVariant(false, false, 25600, 2048).key, "matmulNN.128.p");
    assert.equal(pickVariant(false, false, 25600, 65).key, "matmulNN");
    await saveTunedKernels(gpu!.device, {}); // a later save without a variant keeps it
    assert.equal(JSON.parse(readFileSync(tunedKernelsPath(), "utf8")).adapters[gpu!.device].matmul, "auto-128p");
    // the generation route saved for this adapter is the one generation then takes
    const model = withBackend(gpu!, () =>
      buildModel(
        { type: "rnn", cell: "lstm", vocabSize: 5, embedding: 4, units: 8, layers: 1, dropout: 0 },
        new Rng(1),
      ),
    );
    const vocab = new Vocab("abcde".split(""));
    const dispatches = async (): Promise<number> => {
      const g = gpu as typeof gpu & { counts(): { dispatches: number } };
      const d0 = g.counts().dispatches;
      await withBackend(gpu!, () => generateText(model, vocab, { prime: "a", length: 16, seed: 1 }));
      return g.counts().dispatches - d0;
    };
    const count: Record<string, number> = {};
    for (const r of ["steps", "fused", "wide"] as const) {
      await saveTunedKernels(gpu!.device, {}, tunedKernelsPath(), undefined, r);
      assert.equal((await loadTunedKernels(gpu!.device)).generation, r);
      assert.equal(takesFusedBursts(model, gpu!), r !== "steps", r);
      count[r] = await dispatches();
    }
    // 16 characters past the prime's step: bursts of 8 and 8; in one kernel each, or 2 dispatches a character
    // (the layer, the logits) and a first draw each
    assert.equal(count.wide - count.fused, 2 * 16 + 2 - 2);
    assert.ok(count.steps > count.wide, JSON.stringify(count));
    useBurstRoute(null);
    useMatmulVariant(null);
    useKernelTable(null);
  });

  test("a damaged file is refused with a line saying what to do; settings in the environment stop tuning", async () => {
    const file = join(dir, "damaged.json");
    writeFileSync(
      file,
      '{"format": "charlm-webgpu-kernels", "version": 1, "adapters": {"x": {"table": {"lstmForward H8 B4": {"rows": 3}}}}}',
    );
    await assert.rejects(
      () => loadTunedKernels("x", file),
      /damaged\.json: "lstmForward H8 B4" is not a step kernel .*; delete it or run charlm tune-gpu again/,
    );
    writeFileSync(
      file,
      '{"format": "charlm-webgpu-kernels", "version": 1, "adapters": {"x": {"table": {}, "matmul": "256"}}}',
    );
    await assert.rejects(
      () => loadTunedKernels("x", file),
      /damaged\.json: adapter "x"'s "matmul" is not one of 64, auto/,
    );
    writeFileSync(
      file,
      '{"format": "charlm-webgpu-kernels", "version": 1, "adapters": {"x": {"table": {}, "generation": "fast"}}}',
    );
    await assert.rejects(
      () => loadTunedKernels("x", file),
      /damaged\.json: adapter "x"'s "generation" is not "fused", "wide" or "steps"/,
    );
    writeFileSync(file, "{not json");
    await assert.rejects(() => loadTunedKernels("x", file), /damaged\.json: not JSON/);
    process.env.CHARLM_WEBGPU_ROWS = "2";
    try {
      const r = await cli("tune-gpu", "--units", "8", "--batch-size", "4", "--quick");
      assert.notEqual(r.code, 0);
      assert.match(r.err, /CHARLM_WEBGPU_ROWS is set and overrides the settings tried; unset it/);
    } finally {
      delete process.env.CHARLM_WEBGPU_ROWS;
    }
  });
});
