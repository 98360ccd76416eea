// End to end in a real browser: Debian's headless Chromium, driven by playwright-core, loads the page from a real
// server with a real (small, fixed-weight) model, generates on the server and watches the text stream in, stops a
// long generation, then generates again inside the browser (WebAssembly kernels) and checks it wrote the same
// text for the same seed; a GPT's window stride on both sides; the tab's training (stopped early; its GPT for 10
// steps, then generation; on 1 and 2 wasm threads of the cross-origin-isolated page, the same weights as Node's).
// Screenshots go to test-output/.
//
// Needs /usr/bin/chromium (`apt-get install chromium`); CHARLM_SKIP_BROWSER=1 skips this file.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { FastifyInstance } from "fastify";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { BpeTokenizer } from "../src/data/bpe.js";
import { Vocab } from "../src/data/vocab.js";
import { WordTokenizer } from "../src/data/word.js";
import { buildModel } from "../src/models/registry.js";
import { saveCheckpoint, WEIGHTS } from "../src/checkpoint/checkpoint.js";
import { readTar } from "../src/checkpoint/tar.js";
import { createServer } from "../src/server/app.js";
import { fromCheckpoint } from "../src/server/checkpoint-model.js";
import type { ServedModel } from "../src/server/served-model.js";
import { Rng } from "../src/util/rng.js";
import { getBackend, useBackend } from "../src/engine/index.js";
import { buildWeb } from "../web/build.js";
import { TAB_DEFAULTS, trainInTab } from "../web/tab-train.js";
import { TAB_MODELS } from "../web/tab-settings.js";

const CHROMIUM = process.env.CHARLM_CHROMIUM ?? "/usr/bin/chromium";
const SKIP = process.env.CHARLM_SKIP_BROWSER === "1";
const OUT = "test-output";
const TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n";

let work: string;
let app: FastifyInstance;
let base: string;
let context: BrowserContext;
let page: Page;

/** The served model, slowed to ~2 ms per character so streaming and Stop are observable at human speed. */
function slowed(m: ServedModel, ms: number): ServedModel {
  return {
    card: m.card,
    files: m.files,
    unknownChars: (t) => m.unknownChars(t),
    async *generate(req, signal) {
      for await (const ch of m.generate(req, signal)) {
        await sleep(ms);
        yield ch;
      }
    },
  };
}

before(async () => {
  if (SKIP) return;
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} not found: the browser test needs Debian's chromium; run 'apt-get install chromium' (or set CHARLM_SKIP_BROWSER=1 to skip it)`,
    );
  }
  if (!existsSync("build/kernels.wasm")) {
    throw new Error("build/kernels.wasm is missing: the in-browser mode needs it; run 'npm run build:wasm' first");
  }
  await buildWeb();
  work = mkdtempSync(join(tmpdir(), "charlm-e2e-"));
  const vocab = Vocab.build(TEXT);
  const model = buildModel(
    { type: "rnn", cell: "lstm", vocabSize: vocab.size, embedding: 8, units: 32, layers: 1, dropout: 0 },
    new Rng(42),
  );
  const dir = join(work, "tiny-lstm");
  await saveCheckpoint(dir, {
    model,
    vocab,
    step: 30,
    history: [1, 2, 3].map((e) => ({
      epoch: e,
      step: 10 * e,
      trainLoss: 3.4 - 0.2 * e,
      valLoss: 3.3 - 0.15 * e,
      lr: 0.01,
      seconds: 1,
    })),
    bestValLoss: 2.85,
    elapsedSeconds: 3,
  });
  // A byte-level BPE model and a word model: the page must decode their tokens as the server does.
  const others = [];
  for (const [name, tok] of [
    ["tiny-bpe", BpeTokenizer.train(TEXT.repeat(5), 280)],
    ["tiny-word", WordTokenizer.build(TEXT)],
  ] as const) {
    const m = buildModel(
      { type: "rnn", cell: "gru", vocabSize: tok.size, embedding: 8, units: 16, layers: 1, dropout: 0 },
      new Rng(5),
    );
    await saveCheckpoint(join(work, name), { model: m, vocab: tok, step: 1 });
    others.push(await fromCheckpoint(join(work, name)));
  }
  // A GPT with a window of 16, its weights 20 times GPT-2's scale so that its text depends on the context
  const gpt = buildModel(
    { type: "gpt", vocabSize: vocab.size, blockSize: 16, nLayer: 1, nHead: 2, nEmbd: 16, dropout: 0, bias: true },
    new Rng(3),
  );
  for (const [name, t] of gpt.parameters()) if (!name.includes("ln")) for (let i = 0; i < t.size; i++) t.data[i] *= 20;
  await saveCheckpoint(join(work, "tiny-gpt"), { model: gpt, vocab, step: 1 });
  others.push(await fromCheckpoint(join(work, "tiny-gpt")));
  // A second name for the same checkpoint, so the page has a model to switch to.
  app = createServer([slowed(await fromCheckpoint(dir), 2), await fromCheckpoint(dir, "second"), ...others], {
    rng: new Rng(1),
  });
  await app.listen({ port: 0, host: "127.0.0.1" });
  base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  context = await chromium.launchPersistentContext(join(work, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
    viewport: { width: 1400, height: 900 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  mkdirSync(OUT, { recursive: true });
});

after(async () => {
  await context?.close();
  await app?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

const outputText = () =>
  page
    .locator("#output-text")
    .textContent()
    .then((t) => t ?? "");
const status = () =>
  page
    .locator("#status")
    .textContent()
    .then((t) => t ?? "");

test("the page loads, shows the model card, and streams generated text", { skip: SKIP }, async () => {
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(base);
  await page.waitForSelector("body[data-ready=true]");
  assert.equal(await page.locator("#card-name").textContent(), "tiny-lstm");
  assert.match((await page.locator("#card-loss").textContent()) ?? "", /^2\.8500 nats\/char/);
  assert.match((await page.locator("#card-arch").textContent()) ?? "", /Total params/);
  // The loss curve is an image the browser actually decoded.
  await page.waitForFunction(() => (document.getElementById("card-curve") as HTMLImageElement).naturalWidth > 0);

  // Count how many separate updates the output receives: streamed text arrives in many small pieces.
  await page.evaluate(() => {
    const w = window as unknown as { updates: number[] };
    w.updates = [];
    new MutationObserver(() =>
      w.updates.push((document.getElementById("output-text")!.textContent ?? "").length),
    ).observe(document.getElementById("output-text")!, { characterData: true, subtree: true, childList: true });
  });
  await page.fill("#prime", "Speak");
  await page.fill("#seed", "7");
  await page.locator("#length").fill("300");
  await page.click("#generate");
  await page.waitForFunction(() => (document.getElementById("output-text")!.textContent ?? "").length > 0);
  assert.equal(await page.locator("#stop").isEnabled(), true, "Stop is live while text streams in");
  await page.waitForFunction(() => /characters in/.test(document.getElementById("status")!.textContent ?? ""), null, {
    timeout: 20_000,
  });
  const text = await outputText();
  assert.equal(Array.from(text).length, 300);
  const updates = await page.evaluate(() => (window as unknown as { updates: number[] }).updates);
  const distinct = new Set(updates).size;
  assert.ok(distinct > 20, `text arrived in ${distinct} pieces; expected a stream`);
  assert.match(await status(), /on the server; reason: length$/);
  await page.screenshot({ path: join(OUT, "e2e-server-mode.png"), fullPage: true });

  // The same seed through the JSON API gives the same text.
  const json = (await (
    await fetch(`${base}/api/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "tiny-lstm", prime: "Speak", length: 300, temperature: 0.8, seed: 7 }),
    })
  ).json()) as { text: string };
  assert.equal(text, json.text);

  // Copy puts prime and text on the clipboard.
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
  await page.click("#copy");
  await page.waitForFunction(() => /copied/.test(document.getElementById("status")!.textContent ?? ""));
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), "Speak" + text);

  // A prime the model cannot read: the page shows the server's sentence naming the characters.
  await page.fill("#prime", "Speak, Zoë");
  await page.click("#generate");
  await page.waitForFunction(() => document.getElementById("status")!.classList.contains("error"));
  assert.match(await status(), /outside model 'tiny-lstm''s vocabulary: "Z", "ë"/);
  await page.fill("#prime", "Speak");
  assert.deepEqual(errors, []);
});

test("Stop ends a long generation early; the server notices", { skip: SKIP }, async () => {
  await page.locator("#length").fill("2000");
  await page.click("#generate");
  await page.waitForFunction(() => (document.getElementById("output-text")!.textContent ?? "").length >= 20);
  await page.click("#stop");
  await page.waitForFunction(() => /stopped/.test(document.getElementById("status")!.textContent ?? ""));
  const n = Array.from(await outputText()).length;
  assert.ok(n >= 20 && n < 2000, `stopped after ${n} characters`);
  // The server's slot is free again: its generation ended when the browser dropped the stream.
  for (let i = 0; i < 100; i++) {
    const h = (await (await fetch(`${base}/healthz`)).json()) as { generations: { running: number } };
    if (h.generations.running === 0) return;
    await sleep(20);
  }
  assert.fail("the server kept generating after the browser stopped");
});

test(
  "the in-browser mode downloads the weights and generates the same text with wasm kernels",
  { skip: SKIP },
  async () => {
    await page.check('input[name="mode"][value="browser"]');
    await page.locator("#length").fill("300");
    await page.fill("#seed", "7");
    const serverText = await (async () => {
      const res = await fetch(`${base}/api/generate`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "tiny-lstm", prime: "Speak", length: 300, temperature: 0.8, seed: 7 }),
      });
      return ((await res.json()) as { text: string }).text;
    })();
    const requests: string[] = [];
    page.on("request", (r) => requests.push(new URL(r.url()).pathname));
    await page.click("#generate");
    await page.waitForFunction(
      () => /characters in|error/.test(document.getElementById("status")!.textContent ?? ""),
      null,
      {
        timeout: 20_000,
      },
    );
    assert.match(await status(), /on this browser; reason: length$/);
    assert.equal(await outputText(), serverText);
    assert.ok(requests.includes("/api/models/tiny-lstm/weights"), "weights were downloaded");
    // the relaxed-SIMD build (fused multiply-add), which this browser validates, and not the plain one; one thread,
    // as a page's main thread may not block
    assert.ok(requests.includes("/kernels-relaxed.wasm"), "wasm kernels were downloaded");
    assert.ok(!requests.includes("/kernels.wasm") && !requests.some((p) => p.includes("shared")), requests.join(" "));
    assert.ok(!requests.some((p) => p.startsWith("/api/generate")), "no server generation in browser mode");
    const backend = await page.evaluate(() => (window as unknown as { charlmBackend?: string }).charlmBackend);
    assert.equal(backend, "wasm");
    await page.screenshot({ path: join(OUT, "e2e-browser-mode.png"), fullPage: true });

    // A second run reuses the downloaded weights.
    requests.length = 0;
    await page.click("#generate");
    await page.waitForFunction(() => /characters in/.test(document.getElementById("status")!.textContent ?? ""));
    assert.ok(!requests.includes("/api/models/tiny-lstm/weights"), "weights downloaded only once");
  },
);

test("the in-browser mode decodes word and byte-level BPE models as the server does", { skip: SKIP }, async () => {
  await page.check('input[name="mode"][value="browser"]');
  for (const name of ["tiny-bpe", "tiny-word"]) {
    await page.selectOption("#model", name);
    await page.fill("#prime", "Speak");
    await page.locator("#length").fill("80");
    await page.fill("#seed", "11");
    const res = await fetch(`${base}/api/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: name, prime: "Speak", length: 80, temperature: 0.8, seed: 11 }),
    });
    const serverText = ((await res.json()) as { text: string }).text;
    await page.click("#generate");
    await page.waitForFunction(() => /characters in|error/.test(document.getElementById("status")!.textContent ?? ""));
    assert.match(await status(), /on this browser; reason: length$/, name);
    assert.equal(await outputText(), serverText, name);
    assert.ok(serverText.length > 80, `${name}: 80 tokens give more than 80 characters`);
  }
  await page.selectOption("#model", "tiny-lstm");
});

test("switching models clears a stale error; a narrow window gets one column", { skip: SKIP }, async () => {
  await page.check('input[name="mode"][value="server"]');
  await page.fill("#prime", "Speak, Zoë");
  await page.click("#generate");
  await page.waitForFunction(() => document.getElementById("status")!.classList.contains("error"));
  await page.selectOption("#model", "second");
  assert.equal(await status(), "");
  assert.equal(await page.locator("#status").evaluate((el) => el.classList.contains("error")), false);
  await page.fill("#prime", "Speak");
  await page.setViewportSize({ width: 400, height: 800 });
  try {
    const width = await page.locator("#output").evaluate((el) => el.getBoundingClientRect().width);
    assert.ok(width > 300, `the output is ${width} px wide in a 400 px window`);
    await page.screenshot({ path: join(OUT, "e2e-narrow.png"), fullPage: true });
  } finally {
    await page.setViewportSize({ width: 1400, height: 900 });
  }
});

test(
  "Stop ends training in the tab within moments, and what it learned so far can be downloaded",
  { skip: SKIP },
  async () => {
    await page.selectOption("#backend", "wasm");
    await page.fill("#train-text", "the quick brown fox jumps over the lazy dog. ".repeat(200));
    await page.selectOption("#train-model", "LSTM 32 (a quick look)");
    await page.fill("#train-steps", "100000");
    await page.click("#train-start");
    const train = () =>
      page.evaluate(() => (window as unknown as { charlmTrain: { state: string; losses: unknown[] } }).charlmTrain);
    await page.waitForFunction(
      () => (window as unknown as { charlmTrain: { losses: unknown[] } }).charlmTrain.losses.length >= 2,
    );
    const clicked = performance.now();
    await page.click("#train-stop");
    await page.waitForFunction(
      () => (window as unknown as { charlmTrain: { state: string } }).charlmTrain.state !== "training",
      undefined,
      { timeout: 20_000 },
    );
    const waited = performance.now() - clicked;
    assert.equal((await train()).state, "trained");
    const status = (await page.locator("#train-status").textContent()) ?? "";
    const m = /stopped after (\d+) steps/.exec(status);
    assert.ok(m && Number(m[1]) < 100000, status);
    assert.ok(waited < 10_000, `Stop took ${waited.toFixed(0)} ms`);
    assert.equal(await page.locator("#train-download").isVisible(), true);
    await page.selectOption("#backend", "auto");
  },
);

test(
  "a GPT shows the window stride, and the server and this browser generate with it alike",
  { skip: SKIP },
  async () => {
    const row = page.locator("#window-stride-row");
    await page.selectOption("#model", "tiny-lstm");
    assert.equal(await row.isVisible(), false, "an LSTM has no window stride");
    await page.selectOption("#model", "tiny-gpt");
    assert.equal(await row.isVisible(), true, "a GPT has one");
    assert.equal(await page.locator("#window-stride").getAttribute("max"), "16");
    const prime = "Before we proceed any further";
    await page.fill("#prime", prime);
    await page.locator("#length").fill("60");
    await page.fill("#seed", "5");
    const fromApi = async (stride: number) => {
      const res = await fetch(`${base}/api/generate`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "tiny-gpt",
          prime,
          length: 60,
          temperature: 0.8,
          seed: 5,
          window_stride: stride,
        }),
      });
      return ((await res.json()) as { text: string }).text;
    };
    const [one, eight] = [await fromApi(1), await fromApi(8)];
    assert.notEqual(one, eight, "the stride changes the text past the window");
    await page.locator("#window-stride").fill("8");
    assert.equal(await page.locator("#window-stride-out").textContent(), "8");
    for (const where of ["server", "browser"]) {
      await page.check(`input[name="mode"][value="${where}"]`);
      await page.click("#generate");
      await page.waitForFunction(() =>
        /characters in|error/.test(document.getElementById("status")!.textContent ?? ""),
      );
      assert.match(await status(), /characters in/, where);
      assert.equal(await outputText(), eight, where);
    }
    await page.locator("#window-stride").fill("1");
    await page.click("#generate");
    await page.waitForFunction(() => /characters in|error/.test(document.getElementById("status")!.textContent ?? ""));
    assert.equal(await outputText(), one, "stride 1 in the browser");
    await page.screenshot({ path: join(OUT, "e2e-window-stride.png"), fullPage: true });
    await page.check('input[name="mode"][value="server"]');
    await page.selectOption("#model", "tiny-lstm");
    assert.equal(await row.isVisible(), false, "hidden again for the LSTM");
  },
);

test("the tab trains its GPT on wasm, then generates from it", { skip: SKIP }, async () => {
  type Probe = { state: string; losses: unknown[]; text: string; error: string };
  const probe = () => page.evaluate(() => (window as unknown as { charlmTrain: Probe }).charlmTrain);
  const settled = () =>
    page.waitForFunction(
      () => !["training", "generating"].includes((window as unknown as { charlmTrain: Probe }).charlmTrain.state),
      undefined,
      { timeout: 90_000 },
    );
  await page.selectOption("#backend", "wasm");
  await page.selectOption("#train-from", "");
  await page.fill("#train-text", "the quick brown fox jumps over the lazy dog. ".repeat(200));
  await page.selectOption("#train-model", "GPT 4 x 128");
  await page.fill("#train-steps", "10");
  await page.click("#train-start");
  await settled();
  const status = (await page.locator("#train-status").textContent()) ?? "";
  assert.equal((await probe()).state, "trained", `${status} ${(await probe()).error}`);
  assert.match(status, /done after 10 steps/);
  await page.fill("#train-prime", "the ");
  await page.click("#train-generate");
  await settled();
  const after = await probe();
  assert.equal(after.state, "trained", after.error);
  assert.ok(Array.from(after.text).length >= 400, `${Array.from(after.text).length} characters generated`);
  await page.selectOption("#backend", "auto");
});

test(
  "the tab trains on wasm with relaxed SIMD on 2 threads of a cross-origin-isolated page, the same losses as on 1 and in Node",
  { skip: SKIP },
  async () => {
    const text = "the quick brown fox jumps over the lazy dog. ".repeat(200);
    type Probe = { state: string; error: string; losses: [number, number][]; validation: [number, number][] };
    const inTab = async (threads: number) => {
      const tab = await context.newPage();
      try {
        await tab.goto(`${base}/?threads=${threads}`);
        await tab.waitForSelector("body[data-ready=true]");
        assert.equal(await tab.evaluate(() => crossOriginIsolated), true, "the server's headers isolate the page");
        await tab.selectOption("#backend", "wasm");
        await tab.selectOption("#train-from", "");
        await tab.fill("#train-text", text);
        await tab.selectOption("#train-model", "LSTM 128");
        await tab.fill("#train-steps", "9");
        await tab.click("#train-start");
        await tab.waitForFunction(
          () => (window as unknown as { charlmTrain: Probe }).charlmTrain.state !== "training",
          undefined,
          { timeout: 120_000 },
        );
        const p = await tab.evaluate(() => (window as unknown as { charlmTrain: Probe }).charlmTrain);
        assert.equal(p.error, "");
        const [download] = await Promise.all([tab.waitForEvent("download"), tab.click("#train-download")]);
        const file = join(work, `tab-${threads}.tar`);
        await download.saveAs(file);
        const weights = readTar(readFileSync(file), file).get(WEIGHTS)!;
        return { ...p, weights, status: (await tab.locator("#train-status").textContent()) ?? "" };
      } finally {
        await tab.close();
      }
    };
    const one = await inTab(1);
    const two = await inTab(2);
    assert.match(one.status, /done after 9 steps .* on wasm with relaxed SIMD on 1 thread\)/);
    assert.match(two.status, /done after 9 steps .* on wasm with relaxed SIMD on 2 threads\)/);
    assert.ok(two.losses.length > 0 && two.validation.length > 0);
    assert.deepEqual(two.losses, one.losses, "any thread count computes the same bits");
    assert.deepEqual(two.validation, one.validation);
    assert.ok(Buffer.from(two.weights).equals(Buffer.from(one.weights)), "the same weights, bit for bit");
    // The code the tab's worker runs, in Node on its relaxed wasm build: the same weights again.
    await useBackend("wasm");
    const node = await trainInTab(text, { ...TAB_DEFAULTS, ...TAB_MODELS["LSTM 128"], steps: 9 }, { backend: "wasm" });
    assert.equal((getBackend() as { build?: string }).build, "relaxed");
    assert.equal(node.result.step, 9);
    assert.ok(Buffer.from(node.store.files.get(WEIGHTS)!).equals(Buffer.from(one.weights)), "Node's weights too");
  },
);
