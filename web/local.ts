// The in-browser mode: download a model's manifest and weights once, rebuild it with the same code the server
// runs (charlm/browser, bundled from src/), switch the engine to the kernels the page's selector picks (auto: wasm,
// see ./backend-choice.ts), and generate here with no server round-trip per token. The sampler yields one
// token's text at a time (the model's tokenizer, char, word or bpe, decodes it, as on the server); between tokens
// the page gets the main thread back every few milliseconds so the text paints as it appears and Stop stays clickable.

import { load, type BrowserModel } from "../src/browser.js";
import { setBackend } from "../src/engine/backends/index.js";
import { chooseForGeneration, generationRate, type BackendChoice, type Chosen } from "./backend-choice.js";

export interface Settings {
  model: string;
  prime: string;
  length: number;
  temperature: number;
  topK: number;
  topP: number;
  windowStride?: number; // a GPT's window stride (GenerateOptions.windowStride); undefined for other models
  seed: number | undefined;
  backend: BackendChoice;
}

/** A served model's file on the server (what: manifest, weights). */
export const api = (name: string, what: string) => `/api/models/${encodeURIComponent(name)}/${what}`;

/** A fresh 32-bit seed from the browser's generator (the sampler itself draws only from the seeded Rng). */
function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

const nextFrame = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

export class LocalModels {
  private readonly models = new Map<string, Promise<BrowserModel>>();
  /** Auto's choice per model, timed on its first generation of the visit (see chooseForGeneration). */
  private readonly auto = new Map<string, Chosen>();

  /** Switch the engine to the kernels `choice` picks for generating with `model` (webgpu, wasm, or js). */
  private async useBackend(choice: BackendChoice, model: string): Promise<{ name: string; note: string }> {
    let chosen = choice === "auto" ? this.auto.get(model) : undefined;
    if (!chosen) {
      chosen = await chooseForGeneration(choice, async (c) => {
        setBackend(c.backend);
        const m = await this.load(model, c.name);
        return generationRate((length) => m.stream({ prime: "", length, temperature: 1, seed: 1 }));
      });
      if (choice === "auto") this.auto.set(model, chosen);
    }
    setBackend(chosen.backend);
    // Exposed for the end-to-end test and for curious readers of the console.
    (globalThis as { charlmBackend?: string }).charlmBackend = chosen.name;
    return chosen;
  }

  /** The model, downloaded on first use and kept for the rest of the visit. */
  load(name: string, backend: string): Promise<BrowserModel> {
    // A model's tensors live on the backend current when it was built: one copy per backend.
    const key = `${backend}:${name}`;
    let p = this.models.get(key);
    if (!p) {
      p = load({ manifest: api(name, "manifest"), weights: api(name, "weights") }, { keepBackend: backend });
      // A failed download is not cached: the next click tries again.
      p.catch(() => this.models.delete(key));
      this.models.set(key, p);
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
    if (s.backend === "auto" && !this.auto.has(s.model) && "gpu" in navigator)
      onStatus("timing this model's generation on webgpu and wasm…");
    const backend = await this.useBackend(s.backend, s.model);
    const loaded = await this.load(s.model, backend.name);
    const unknown = loaded.vocab.unknownChars(s.prime);
    if (unknown.length) {
      throw new Error(
        `prime contains characters outside model '${s.model}''s vocabulary: ${unknown.map((c) => JSON.stringify(c)).join(", ")}; remove them`,
      );
    }
    onStatus(`generating in this browser (${backend.note}; ${(loaded.bytes / 1e6).toFixed(1)} MB of weights)…`);
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
      windowStride: s.windowStride,
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
