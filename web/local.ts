// The in-browser mode: download a model's manifest and weights once, rebuild it with the same code the server
// runs (bundled from src/), switch the engine to its WebAssembly kernels, and generate here with no server
// round-trip per token. The sampler yields one token's text at a time (the model's tokenizer, char, word or bpe,
// decodes it, as on the server); between tokens the page gets the main thread back every few milliseconds so the text paints as it appears and Stop stays clickable.

import { tokenizerFromJSON, type Tokenizer } from "../src/data/tokenizer.js";
import { setBackend } from "../src/engine/backends/index.js";
import { jsBackend } from "../src/engine/backends/js.js";
import { createWasmBackend } from "../src/engine/backends/wasm.js";
import type { LanguageModel } from "../src/models/contract.js";
import { buildModel } from "../src/models/registry.js";
import { parseModelConfig } from "../src/models/config.js";
import { generate } from "../src/sample/generate.js";
import type { Manifest } from "../src/checkpoint/checkpoint.js";
import { loadWeightsInto } from "../src/checkpoint/weights.js";
import { decodeSafetensors } from "../src/checkpoint/safetensors.js";
import { Rng } from "../src/util/rng.js";

export interface Settings {
  model: string;
  prime: string;
  length: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number | undefined;
}

interface Loaded {
  model: LanguageModel;
  vocab: Tokenizer;
  bytes: number;
}

const api = (name: string, what: string) => `/api/models/${encodeURIComponent(name)}/${what}`;

async function fetchOk(url: string): Promise<Response> {
  const res = await fetch(url);
  if (!res.ok) {
    const body = (await res.json().catch(() => null)) as { error?: string } | null;
    throw new Error(body?.error ?? `${url}: HTTP ${res.status}`);
  }
  return res;
}

/** A fresh 32-bit seed from the browser's generator (the sampler itself draws only from the seeded Rng). */
function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

const nextFrame = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

export class LocalModels {
  private readonly models = new Map<string, Promise<Loaded>>();
  private backend: Promise<string> | null = null;

  /** Switch the engine to wasm once; fall back to the js kernels if the module is missing or will not start. */
  private useBackend(): Promise<string> {
    this.backend ??= (async () => {
      try {
        const bytes = await (await fetchOk("/kernels.wasm")).arrayBuffer();
        setBackend(await createWasmBackend(bytes));
        return "wasm";
      } catch (err) {
        console.warn("charlm: wasm kernels unavailable, using the js kernels:", err);
        setBackend(jsBackend);
        return "js";
      }
    })();
    // Exposed for the end-to-end test and for curious readers of the console.
    void this.backend.then((name) => ((globalThis as { charlmBackend?: string }).charlmBackend = name));
    return this.backend;
  }

  /** The model, downloaded on first use and kept for the rest of the visit. */
  load(name: string): Promise<Loaded> {
    let p = this.models.get(name);
    if (!p) {
      p = (async () => {
        const [manifest, weights] = await Promise.all([
          fetchOk(api(name, "manifest")).then((r) => r.json() as Promise<Manifest>),
          fetchOk(api(name, "weights")).then((r) => r.arrayBuffer()),
        ]);
        const model = buildModel(parseModelConfig(manifest.model, `${name}: model`), new Rng(0));
        loadWeightsInto(model, decodeSafetensors(new Uint8Array(weights), `${name}/model.safetensors`), name);
        // A version-1 manifest has a character vocabulary where version 2 has a tokenizer.
        const vocab = tokenizerFromJSON(manifest.tokenizer ?? manifest.vocab);
        return { model, vocab, bytes: weights.byteLength };
      })();
      // A failed download is not cached: the next click tries again.
      p.catch(() => this.models.delete(name));
      this.models.set(name, p);
    }
    return p;
  }

  /** Generate with settings `s`; returns why it ended ("length", "stop" or "stopped"). */
  async generate(
    s: Settings,
    signal: AbortSignal,
    onText: (text: string) => void,
    onStatus: (message: string) => void,
  ): Promise<string> {
    // The backend first: a model's tensors live on the backend that was current when it was built.
    const backend = await this.useBackend();
    const loaded = await this.load(s.model);
    const unknown = loaded.vocab.unknownChars(s.prime);
    if (unknown.length) {
      throw new Error(
        `prime contains characters outside model '${s.model}''s vocabulary: ${unknown.map((c) => JSON.stringify(c)).join(", ")}; remove them`,
      );
    }
    onStatus(`generating in this browser (${backend} kernels, ${(loaded.bytes / 1e6).toFixed(1)} MB of weights)…`);
    const stop: string[] = [];
    let n = 0;
    let out = "";
    let lastYield = performance.now();
    for await (const ch of generate(loaded.model, loaded.vocab, {
      prime: s.prime,
      length: s.length,
      temperature: s.temperature,
      topK: s.topK > 0 ? s.topK : undefined,
      topP: s.topP < 1 ? s.topP : undefined,
      seed: s.seed ?? randomSeed(),
      stop,
      signal,
    })) {
      n++;
      out += ch;
      onText(ch);
      if (performance.now() - lastYield > 12) {
        await nextFrame();
        lastYield = performance.now();
      }
      if (signal.aborted) return "stopped";
    }
    if (signal.aborted) return "stopped";
    // `stop` is empty here, so a generation that was not stopped ran its length (n counts tokens that gave text; a
    // byte-level token can give none until its character is whole).
    return n > 0 || out.length ? "length" : "ended";
  }
}
