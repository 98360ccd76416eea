// The worker that trains in the tab, off the page's thread (bundled by web/build.ts into web/dist/train-worker.js).
// It holds the run: fetch the served model to fine-tune if one was picked, train on the chosen backend
// (./tab-train.ts), stop on request, generate from the model, and hand the checkpoint tar to the page.
// Protocol: ./train-protocol.ts.

import { WEIGHTS } from "../src/checkpoint/checkpoint.js";
import { decodeSafetensors } from "../src/checkpoint/safetensors.js";
import { loadWeightsInto } from "../src/checkpoint/weights.js";
import { fetchOk } from "../src/browser.js";
import { getBackend, setBackend } from "../src/engine/backends/index.js";
import { parseModelConfig } from "../src/models/config.js";
import type { LanguageModel } from "../src/models/contract.js";
import { buildModel } from "../src/models/registry.js";
import { generate } from "../src/sample/generate.js";
import { chooseBackend, chooseForGeneration, generationRate, type Chosen } from "./backend-choice.js";
import { api } from "./local.js";
import { TabDeviceLost, trainInTab, type TabRun, type TabSource } from "./tab-train.js";
import type { FromWorker, ToWorker } from "./train-protocol.js";

const post = (m: FromWorker, transfer: Transferable[] = []): void =>
  (self as unknown as Worker).postMessage(m, transfer);

// The browser test reaches the backend in use through this, to destroy its GPU device under a training run from
// outside, as a driver reset or the browser dropping its GPU process would (test/webgpu-browser.test.ts).
(self as unknown as { charlmBackend: typeof getBackend }).charlmBackend = getBackend;

let run: Omit<TabRun, "result"> | null = null;
let trainedOn = "";
let stopTraining: AbortController | null = null;
let stopGenerating: AbortController | null = null;
const generators = new Map<string, LanguageModel>(); // backend name -> the trained model on it
let autoPick: Chosen | null = null; // auto's kernels for generating with the trained model, timed once

/** A served model's charlm.json and model.safetensors, as the page's in-browser mode fetches them. */
async function fetchSource(name: string): Promise<TabSource> {
  const [manifest, weights] = await Promise.all([
    fetchOk(api(name, "manifest")).then((r) => r.json() as Promise<Record<string, unknown>>),
    fetchOk(api(name, "weights")).then((r) => r.arrayBuffer()),
  ]);
  return { name, manifest, weights: new Uint8Array(weights) };
}

async function onTrain(m: Extract<ToWorker, { type: "train" }>): Promise<void> {
  const from = m.from ? await fetchSource(m.from) : undefined;
  const chosen = await chooseBackend(m.choice, "train", m.wasmUrl, m.threads);
  setBackend(chosen.backend);
  trainedOn = chosen.name;
  generators.clear();
  autoPick = null;
  post({ type: "backend", purpose: "train", name: chosen.name, note: chosen.note });
  stopTraining = new AbortController();
  const t0 = performance.now();
  let r: { status: string; step: number; bestValLoss: number | null };
  let lost: string | undefined;
  try {
    const done = await trainInTab(m.text, m.settings, {
      name: m.name,
      from,
      backend: chosen.name as "webgpu" | "wasm" | "js",
      signal: stopTraining.signal,
      onMetrics: (line) => post({ type: "metrics", line }),
    });
    run = done;
    r = done.result;
  } catch (err) {
    if (!(err instanceof TabDeviceLost)) throw err;
    // The checkpoint saved before the loss is the run: generation loads it on whichever backend it picks (a new
    // GPU device, as the lost one is dropped, or wasm).
    run = err.saved;
    r = { status: "lost", step: err.saved.step, bestValLoss: err.saved.bestValLoss };
    lost = err.message;
    trainedOn = "";
  } finally {
    stopTraining = null;
  }
  const tar = run.store.tar(m.dirName);
  post(
    {
      type: "trained",
      status: r.status,
      step: r.step,
      seconds: (performance.now() - t0) / 1000,
      bestValLoss: r.bestValLoss,
      charsPerStep: run.config.batchSize * run.config.seqLength,
      unknown: run.unknown.length,
      tokenizer: run.vocab.kind,
      tar: tar.buffer as ArrayBuffer,
      lost,
    },
    [tar.buffer as ArrayBuffer],
  );
}

/** The trained model on the backend generation runs on: the one it trained on, or a copy from its checkpoint. */
function modelOn(name: string): LanguageModel {
  if (!run) throw new Error("train a model first");
  if (name === trainedOn) return run.model;
  let m = generators.get(name);
  if (!m) {
    m = buildModel(parseModelConfig(run.model.config), null); // a fine-tuned model's shape is its source's
    loadWeightsInto(m, decodeSafetensors(run.store.files.get(WEIGHTS)!, WEIGHTS), WEIGHTS);
    generators.set(name, m);
  }
  return m;
}

async function onGenerate(m: Extract<ToWorker, { type: "generate" }>): Promise<void> {
  if (!run) throw new Error("train a model first");
  const unknown = run.vocab.unknownChars(m.prime);
  if (unknown.length) {
    throw new Error(
      `the priming text has characters the model never saw: ${unknown.map((c) => JSON.stringify(c)).join(", ")}; remove them`,
    );
  }
  // auto: the faster of webgpu and wasm for this model, timed on its first generation (see chooseForGeneration)
  if (m.choice === "auto" && !autoPick && "gpu" in navigator)
    post({ type: "status", message: "timing this model's generation…" });
  const chosen =
    (m.choice === "auto" ? autoPick : null) ??
    (await chooseForGeneration(
      m.choice,
      async (c) => {
        setBackend(c.backend);
        const on = modelOn(c.name);
        return generationRate((length) =>
          generate(on, run!.vocab, { prime: m.prime, length, temperature: 1, seed: 1 }),
        );
      },
      m.wasmUrl,
      m.threads,
    ));
  if (m.choice === "auto") autoPick = chosen;
  setBackend(chosen.backend);
  post({ type: "backend", purpose: "generate", name: chosen.name, note: chosen.note });
  const model = modelOn(chosen.name);
  stopGenerating = new AbortController();
  const t0 = performance.now();
  let chunk = "";
  let chars = 0;
  let last = t0;
  for await (const ch of generate(model, run.vocab, {
    prime: m.prime,
    length: m.length,
    temperature: m.temperature,
    seed: m.seed,
    signal: stopGenerating.signal,
  })) {
    chunk += ch;
    chars++;
    if (performance.now() - last > 30) {
      post({ type: "text", text: chunk });
      chunk = "";
      last = performance.now();
      await new Promise((resolve) => setTimeout(resolve, 0)); // let a Stop message in
    }
  }
  if (chunk) post({ type: "text", text: chunk });
  post({ type: "generated", chars, seconds: (performance.now() - t0) / 1000 });
  stopGenerating = null;
}

self.onmessage = (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  if (m.type === "stop") {
    stopTraining?.abort();
    stopGenerating?.abort();
    return;
  }
  const work = m.type === "train" ? onTrain(m) : onGenerate(m);
  work.catch((err: unknown) => {
    stopTraining = null;
    stopGenerating = null;
    post({ type: "error", message: err instanceof Error ? err.message : String(err) });
  });
};
