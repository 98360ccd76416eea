// The in-browser mode: download a model's manifest and weights once, rebuild it with the same code the server
// runs (bundled from src/), switch the engine to its WebAssembly kernels, and generate here with no server
// round-trip per character. The sampler yields one character at a time; between characters the page gets the
// main thread back every few milliseconds so the text paints as it appears and Stop stays clickable.

import { load, useKernels, type BrowserModel } from "../src/browser.js";

export interface Settings {
  model: string;
  prime: string;
  length: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number | undefined;
}

const api = (name: string, what: string) => `/api/models/${encodeURIComponent(name)}/${what}`;

/** A fresh 32-bit seed from the browser's generator (the sampler itself draws only from the seeded Rng). */
function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

const nextFrame = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

export class LocalModels {
  private readonly models = new Map<string, Promise<BrowserModel>>();

  /** Switch the engine to wasm once; fall back to the js kernels if the module is missing or will not start. */
  private useBackend(): Promise<string> {
    const backend = useKernels("/kernels.wasm");
    // Exposed for the end-to-end test and for curious readers of the console.
    void backend.then((name) => ((globalThis as { charlmBackend?: string }).charlmBackend = name));
    return backend;
  }

  /** The model, downloaded on first use and kept for the rest of the visit. */
  load(name: string): Promise<BrowserModel> {
    let p = this.models.get(name);
    if (!p) {
      p = load({ manifest: api(name, "manifest"), weights: api(name, "weights") }, { wasm: "/kernels.wasm" });
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
    for await (const ch of loaded.stream({
      prime: s.prime,
      length: s.length,
      temperature: s.temperature,
      topK: s.topK > 0 ? s.topK : undefined,
      topP: s.topP < 1 ? s.topP : undefined,
      seed: s.seed ?? randomSeed(),
      stop,
      signal,
    })) {
      n += Array.from(ch).length;
      out += ch;
      onText(ch);
      if (performance.now() - lastYield > 12) {
        await nextFrame();
        lastYield = performance.now();
      }
      if (signal.aborted) return "stopped";
    }
    if (signal.aborted) return "stopped";
    return n >= s.length ? "length" : out.length ? "stop" : "ended";
  }
}
