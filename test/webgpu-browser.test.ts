// The WebGPU backend in a browser: Debian's headless Chromium (WebGPU on SwiftShader, its CPU Vulkan), driven by
// playwright-core, loads a page from a local server (127.0.0.1 is a secure context, which WebGPU requires) whose
// script, bundled here with esbuild, takes the device from navigator.gpu, trains a small LSTM model for a few Adam
// steps on webgpu and on js, and reports both loss sequences and the worst weight difference. Then the real page
// (charlm serve's): "train in this tab" on webgpu in its worker, the loss falls, the model generates (auto times it
// on webgpu and wasm and keeps the faster: wasm, against SwiftShader), and the downloaded checkpoint tar is read by
// `charlm sample`. And fine-tuning in the tab: a served
// model picked under "Start from", a text with a character it lacks refused in one line, then a few steps on webgpu
// and a tar whose manifest records initFrom. And the worker's GPU device destroyed under a run in the tab: the page
// keeps the last epoch's checkpoint, downloads it and generates from it on a new device.
//
// Needs /usr/bin/chromium; CHARLM_SKIP_BROWSER=1 skips this file, as it does the other browser test.

import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { MANIFEST } from "../src/checkpoint/checkpoint.js";
import { readTar } from "../src/checkpoint/tar.js";
import { createServer as createCharlmServer } from "../src/server/app.js";
import { loadServedModels } from "../src/server/checkpoint-model.js";
import { TAB_DEFAULTS, trainInTab } from "../web/tab-train.js";
import { buildWeb, nodeBuiltinsStub } from "../web/build.js";
import { cli } from "./helpers/cli.js";

const CHROMIUM = process.env.CHARLM_CHROMIUM ?? "/usr/bin/chromium";
const launch = () =>
  chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--enable-unsafe-webgpu",
      "--enable-features=Vulkan",
      "--use-vulkan=swiftshader",
      "--use-webgpu-adapter=swiftshader",
      "--disable-vulkan-surface",
    ],
  });
const skip =
  process.env.CHARLM_SKIP_BROWSER === "1"
    ? "CHARLM_SKIP_BROWSER=1"
    : existsSync(CHROMIUM)
      ? false
      : `${CHROMIUM} not found (apt-get install chromium)`;

// Runs in the page. Same seeds on both backends; the result goes to window.__result.
const PAGE_SCRIPT = `
import { createWebgpuBackend } from "./src/engine/backends/webgpu/index.ts";
import { jsBackend } from "./src/engine/backends/js.ts";
import { setBackend } from "./src/engine/index.ts";
import { scope } from "./src/engine/scope.ts";
import { buildModel } from "./src/models/registry.ts";
import { Adam } from "./src/train/optimizers.ts";
import { Rng } from "./src/util/rng.ts";

async function train(be) {
  setBackend(be);
  const cfg = { type: "rnn", cell: "lstm", vocabSize: 9, embedding: 5, units: 12, layers: 1, dropout: 0 };
  const model = buildModel(cfg, new Rng(1));
  const opt = new Adam(model.parameters());
  const data = new Rng(2);
  const [B, T] = [3, 6];
  const x = Int32Array.from({ length: B * T }, () => data.int(9));
  const y = Int32Array.from({ length: B * T }, () => data.int(9));
  const losses = [];
  for (let s = 0; s < 3; s++) {
    const loss = scope(() => {
      for (const p of model.parameters().values()) p.zeroGrad();
      const { loss } = model.forward(x, B, T, { targets: y, training: true });
      loss.backward();
      opt.step(1e-2);
      return loss;
    });
    losses.push(await loss.value());
    loss.dispose();
  }
  const weights = [];
  for (const p of model.parameters().values()) weights.push(...(await p.read()));
  return { losses, weights };
}

try {
  const gpu = await createWebgpuBackend();
  const a = await train(gpu);
  const b = await train(jsBackend);
  const worst = a.weights.reduce((m, v, i) => Math.max(m, Math.abs(v - b.weights[i])), 0);
  window.__result = { device: gpu.device, gpu: a.losses, js: b.losses, worst };
  gpu.destroy();
} catch (e) {
  window.__result = { error: String(e && e.stack || e) };
}
`;

test("webgpu backend in headless Chromium (navigator.gpu on SwiftShader) trains like js", { skip }, async () => {
  const bundle = await build({
    stdin: { contents: PAGE_SCRIPT, resolveDir: process.cwd(), loader: "ts" },
    bundle: true,
    format: "esm",
    platform: "browser",
    write: false,
    logLevel: "error",
    plugins: [nodeBuiltinsStub], // as the page's own build: Node-only imports the page never calls
  });
  const js = bundle.outputFiles[0].text;
  const server = createServer((req, res) => {
    const script = req.url === "/app.js";
    res.writeHead(200, { "content-type": script ? "text/javascript" : "text/html" });
    res.end(script ? js : '<!doctype html><script type="module" src="/app.js"></script>');
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    await page.waitForFunction(() => "__result" in window, undefined, { timeout: 120_000 });
    const r = (await page.evaluate(() => (window as unknown as { __result: unknown }).__result)) as {
      error?: string;
      device: string;
      gpu: number[];
      js: number[];
      worst: number;
    };
    assert.equal(r.error, undefined, r.error);
    r.gpu.forEach((l, i) => assert.ok(Math.abs(l - r.js[i]) <= 1e-5 * r.js[i], `loss ${i}: gpu ${l} js ${r.js[i]}`));
    assert.ok(r.worst <= 1e-3, `weights differ by up to ${r.worst}`);
  } finally {
    await browser.close();
    server.close();
  }
});

interface TrainProbe {
  state: string;
  backend: string;
  losses: [number, number][];
  validation: [number, number][];
  text: string;
  error: string;
  from: string;
}

/** The page from a charlm server of `models`, in headless Chromium on SwiftShader, with the tab's training probe. */
async function openPage(models: Parameters<typeof createCharlmServer>[0]) {
  await buildWeb();
  const app = createCharlmServer(models);
  await app.listen({ port: 0, host: "127.0.0.1" });
  const browser = await launch();
  const close = async () => {
    await browser.close();
    await app.close();
  };
  const page = await browser.newPage({ acceptDownloads: true });
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  try {
    await page.goto(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}/`);
    await page.waitForSelector("body[data-ready=true]");
  } catch (e) {
    await close();
    throw e;
  }
  return {
    page,
    errors,
    probe: () => page.evaluate(() => (window as unknown as { charlmTrain: TrainProbe }).charlmTrain),
    /** Waits until the tab's work (training or generating) has ended, well or with an error. */
    until: (states: string[]) =>
      page.waitForFunction(
        (s) => s.includes((window as unknown as { charlmTrain: TrainProbe }).charlmTrain.state),
        states,
        { timeout: 240_000 },
      ),
    /** Pastes the fox text, picks the LSTM 32 and starts training it in the tab for `steps` steps. */
    trainFox: async (steps: number) => {
      await page.fill("#train-text", "the quick brown fox jumps over the lazy dog. ".repeat(200));
      await page.selectOption("#train-model", "LSTM 32 (a quick look)");
      await page.fill("#train-steps", String(steps));
      await page.click("#train-start");
    },
    /** Saves the tab's checkpoint tar as `file`; its suggested name. */
    download: async (file: string) => {
      const [download] = await Promise.all([page.waitForEvent("download"), page.click("#train-download")]);
      await download.saveAs(file);
      return download.suggestedFilename();
    },
    close,
  };
}

test(
  "the page trains in the tab on webgpu, generates, and its checkpoint tar loads in charlm sample",
  { skip },
  async () => {
    const { page, errors, probe, until, trainFox, download, close } = await openPage([]);
    const work = mkdtempSync(join(tmpdir(), "charlm-tab-"));
    try {
      await trainFox(15);
      await until(["trained", "error"]);
      const p = await probe();
      assert.equal(p.error, "");
      assert.equal(p.backend, "webgpu", "auto trains on webgpu where the browser has an adapter");
      assert.match(
        (await page.locator("#train-status").textContent()) ?? "",
        /done after 15 steps .* on webgpu \(google swiftshader\)/,
      );
      assert.equal(p.losses.length, 3); // a point every 5 steps
      assert.ok(p.losses[2][1] < p.losses[0][1] - 0.05, `loss ${p.losses.map((l) => l[1].toFixed(3)).join(" ")}`);
      assert.equal(p.validation.length, 1); // one epoch: 15 batches of this text
      assert.ok((await page.locator("#train-chart svg path").count()) >= 3, "the loss curve is drawn");

      await page.fill("#train-prime", "the ");
      await page.click("#train-generate");
      await until(["trained", "error"]);
      const g = await probe();
      assert.equal(g.error, "");
      // auto timed this model's generation on both and kept the faster: wasm, against SwiftShader's CPU Vulkan
      const note =
        /on wasm with relaxed SIMD on \d+ threads? \(auto, timed here: ([\d,]+) characters\/s against ([\d,]+) characters\/s on webgpu\)$/.exec(
          (await page.locator("#train-status").textContent()) ?? "",
        );
      assert.ok(note, (await page.locator("#train-status").textContent()) ?? "");
      const [wasmRate, gpuRate] = [note[1], note[2]].map((x) => Number(x.replace(/,/g, "")));
      assert.ok(wasmRate > gpuRate && gpuRate > 0, `${wasmRate} vs ${gpuRate}`);
      assert.equal(g.backend, "wasm", "auto generates on the faster kernels here");
      assert.equal(Array.from(g.text).length, 400);
      // the kernels selector's webgpu generates on the GPU (its characters drawn there, a burst per read-back)
      await page.selectOption("#backend", "webgpu");
      await page.click("#train-generate");
      await until(["trained", "error"]);
      const onGpu = await probe();
      assert.equal(onGpu.error, "");
      assert.equal(onGpu.backend, "webgpu");
      assert.equal(Array.from(onGpu.text).length, 400);
      const known = new Set("the quick brown fox jumps over the lazy dog. ");
      assert.ok(
        Array.from(onGpu.text).every((c) => known.has(c)),
        onGpu.text.slice(0, 60),
      );
      await page.selectOption("#backend", "auto");

      mkdirSync("test-output", { recursive: true });
      await page.setViewportSize({ width: 1400, height: 1100 });
      await page.locator("#train-panel").screenshot({ path: "test-output/webgpu-train-tab.png" });

      const file = join(work, "run.tar");
      assert.equal(await download(file), "charlm-pasted-text.tar");
      const r = await cli(
        "sample",
        "--model",
        file,
        "--prime",
        "the ",
        "--length",
        "30",
        "--seed",
        "1",
        "--backend",
        "js",
      );
      assert.equal(r.code, 0, r.err);
      assert.ok(r.out.startsWith("the ") && Array.from(r.out.trimEnd()).length >= 30, r.out);
      assert.deepEqual(errors, []);
    } finally {
      await close();
      rmSync(work, { recursive: true, force: true });
    }
  },
);

test(
  "the page fine-tunes a served model in the tab on webgpu; the tar records where it started",
  { skip },
  async () => {
    const FOX = "the quick brown fox jumps over the lazy dog. ";
    const work = mkdtempSync(join(tmpdir(), "charlm-tabft-"));
    // The served model: a small LSTM trained on FOX by the tab's own module, unpacked into a checkpoint directory.
    const source = await trainInTab(
      FOX.repeat(150),
      { ...TAB_DEFAULTS, units: 24, embedding: 8, seqLength: 16, batchSize: 8, steps: 40, validateEvery: 20, lr: 2e-2 },
      { backend: "js", name: "fox.txt" },
    );
    mkdirSync(join(work, "fox"));
    for (const [name, bytes] of source.store.files) writeFileSync(join(work, "fox", name), bytes);
    const { page, errors, probe, until, download, close } = await openPage(
      await loadServedModels([`fox=${join(work, "fox")}`]),
    );
    try {
      await page.selectOption("#train-from", "fox");
      assert.ok(await page.locator("#train-model").isDisabled(), "the source fixes the model's size");
      const settled = () => until(["trained", "error"]);

      // "Z" is not in the source's vocabulary, which has no <unk>.
      await page.fill("#train-text", FOX.replace("z", "Z").repeat(200));
      await page.click("#train-start");
      await settled();
      assert.match(
        (await probe()).error,
        /has 1 character the model in server:fox does not know \('Z' .*--extend-vocab$/,
      );
      assert.match((await page.locator("#train-status").textContent()) ?? "", /does not know/);

      // 8,100 training characters: 3 batches of 32 x 65 a pass, validated after each; 6 steps.
      await page.fill("#train-text", "over the lazy dog jumps the quick brown fox. ".repeat(200));
      await page.fill("#train-steps", "6");
      await page.click("#train-start");
      await settled();
      const p = await probe();
      assert.equal(p.error, "");
      assert.equal(p.from, "fox");
      assert.equal(p.backend, "webgpu");
      assert.match(
        (await page.locator("#train-status").textContent()) ?? "",
        /^fine-tuned fox: done after 6 steps .* on webgpu \(google swiftshader\)/,
      );
      assert.equal(p.validation.length, 2);

      const file = join(work, "tuned.tar");
      await download(file);
      const files = readTar(readFileSync(file), file);
      const manifest = JSON.parse(new TextDecoder().decode(files.get(MANIFEST))) as Record<string, unknown>;
      const sourceManifest = JSON.parse(new TextDecoder().decode(source.store.files.get(MANIFEST))) as typeof manifest;
      assert.deepEqual(manifest.initFrom, { path: "server:fox", step: 40, format: "charlm" });
      assert.deepEqual(manifest.model, sourceManifest.model);
      assert.deepEqual(manifest.tokenizer, sourceManifest.tokenizer);
      const r = await cli(
        "sample",
        "--model",
        file,
        ...["--prime", "the ", "--length", "20", "--seed", "1", "--backend", "js"],
      );
      assert.equal(r.code, 0, r.err);
      assert.deepEqual(errors, []);
    } finally {
      await close();
      rmSync(work, { recursive: true, force: true });
    }
  },
);

test(
  "a GPU device lost under the tab's training keeps the last checkpoint: it downloads and generates on a new device",
  { skip },
  async () => {
    const { page, errors, probe, until, trainFox, download, close } = await openPage([]);
    const work = mkdtempSync(join(tmpdir(), "charlm-tablost-"));
    try {
      await trainFox(3000);
      // An epoch is 15 steps of this text, each ending in a checkpoint. Once the second epoch's steps are under way
      // (its first checkpoint saved), the device dies under the run, destroyed from outside the backend as a driver
      // reset or the browser would.
      await page.waitForFunction(
        () => {
          const p = (window as unknown as { charlmTrain: TrainProbe }).charlmTrain;
          return p.losses.some(([step]) => step > 15) || p.state !== "training";
        },
        undefined,
        { timeout: 240_000 },
      );
      assert.equal((await probe()).state, "training", (await probe()).error);
      const [worker] = page.workers();
      await worker.evaluate(() =>
        (self as unknown as { charlmBackend: () => { gpuDevice: GPUDevice } }).charlmBackend().gpuDevice.destroy(),
      );
      await until(["trained", "error"]);
      const p = await probe();
      assert.equal(p.state, "trained", p.error);
      const lost =
        /^training stopped at step (\d+) \(epoch \d+\): the GPU device was lost \(.+\); the last checkpoint \(step (\d+)\) is kept$/.exec(
          p.error,
        );
      assert.ok(lost, p.error);
      const [at, saved] = [Number(lost[1]), Number(lost[2])];
      assert.ok(saved >= 15 && saved % 15 === 0 && saved < at && at < 3000, `stopped at ${at}, saved ${saved}`);
      assert.ok(
        p.validation.some(([step]) => step === saved),
        "the kept checkpoint is an epoch's end",
      );
      assert.match(
        (await page.locator("#train-status").textContent()) ?? "",
        /is kept: download it or generate from it \(on a new device or wasm\); best validation \d\.\d{3} nats\/char$/,
      );

      // The tar is the kept checkpoint, and charlm sample reads it.
      const file = join(work, "run.tar");
      await download(file);
      const files = readTar(readFileSync(file), file);
      const manifest = JSON.parse(new TextDecoder().decode(files.get(MANIFEST))) as { step: number };
      assert.equal(manifest.step, saved);
      const r = await cli("sample", "--model", file, ...["--prime", "the ", "--length", "20", "--backend", "js"]);
      assert.equal(r.code, 0, r.err);

      // The page generates from it on webgpu: a new device, the lost one dropped.
      await page.fill("#train-prime", "the ");
      await page.selectOption("#backend", "webgpu");
      await page.click("#train-generate");
      await until(["trained", "error"]);
      const g = await probe();
      assert.equal(g.error, "");
      assert.equal(g.backend, "webgpu");
      assert.equal(Array.from(g.text).length, 400);
      assert.deepEqual(errors, []);
    } finally {
      await close();
      rmSync(work, { recursive: true, force: true });
    }
  },
);
