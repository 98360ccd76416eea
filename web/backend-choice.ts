// Which kernels the page runs on, for training in the tab and for generating in the browser. The page offers
// auto / webgpu / wasm. Auto trains on webgpu when the browser has an adapter (wasm otherwise): training steps are
// large and never wait for the GPU, which is where it pays. For generating, auto times the model on both where the
// browser has an adapter and keeps the faster (chooseForGeneration): generation at batch 1 is one small step per
// character, so which wins depends on the GPU, the CPU and the model. Reading each character's logits back bounded
// a GPU at 3,118 characters/s for an LSTM 256 on an H200 through Dawn, against about 7,500 on wasm with 2 CPU
// cores (docs/webgpu.md); since stop 7 the GPU draws the characters itself, up to 64 per read-back.

import type { Backend } from "../src/engine/backend.js";
import { jsBackend } from "../src/engine/backends/js.js";
import { loadBackend } from "../src/engine/backends/index.js";
import { browserThreads, wasmKernels } from "../src/browser.js";
import { generationRate as timeGeneration } from "../src/sample/generate.js";

export type BackendChoice = "auto" | "webgpu" | "wasm";
export type Purpose = "train" | "generate";

export interface Chosen {
  backend: Backend;
  /** "webgpu", "wasm" or "js". */
  name: string;
  /** For the page: what runs and why, e.g. "webgpu (google swiftshader)" or "wasm: this browser has no WebGPU". */
  note: string;
}

/**
 * The page's or worker's one WebGPU device, as Node's: made on first use, a failure (no navigator.gpu, no adapter)
 * retried, and a lost device (the browser dropped its GPU process, a driver reset) replaced by a new one.
 */
const loadGpu = () => loadBackend("webgpu") as Promise<Backend & { device: string }>;

/**
 * "wasm with relaxed SIMD on 4 threads": which build runs (relaxed: fused multiply-add, where the browser has
 * relaxed SIMD) and on how many threads (more than 1 in the training worker of a cross-origin-isolated page).
 */
export function describeWasm(b: Backend): string {
  const { build, threads = 1 } = b as { build?: string; threads?: number };
  const simd = build === "relaxed" ? "relaxed SIMD" : "SIMD";
  return `wasm with ${simd} on ${threads} thread${threads === 1 ? "" : "s"}`;
}

const reason = (e: unknown): string => (e instanceof Error ? e.message : String(e)).split("\n")[0];

/**
 * The backend for `purpose` under `choice`, falling back (webgpu -> wasm -> js) with the reason in `note`; wasm on
 * `threads` (default: browserThreads()) where this is a worker of a cross-origin-isolated page, else on one.
 */
export async function chooseBackend(
  choice: BackendChoice,
  purpose: Purpose,
  wasmUrl = "/kernels.wasm",
  threads?: number,
): Promise<Chosen> {
  let why = "";
  if (choice === "webgpu" || (choice === "auto" && purpose === "train")) {
    try {
      const b = await loadGpu();
      return { backend: b, name: "webgpu", note: `webgpu (${b.device})` };
    } catch (e) {
      why = `: no WebGPU here, ${reason(e)}`;
    }
  }
  try {
    const backend = await wasmKernels(wasmUrl, undefined, browserThreads(threads));
    return { backend, name: "wasm", note: `${describeWasm(backend)}${why}` };
  } catch (e) {
    return { backend: jsBackend, name: "js", note: `js (the wasm kernels did not load: ${reason(e)})${why}` };
  }
}

/** Characters of the generation auto times on each backend, after a warm-up one of WARM_CHARS (kernels compiled). */
export const PROBE_CHARS = 200;
const WARM_CHARS = 24;

/** Characters per second of `run(PROBE_CHARS)`, after `run(WARM_CHARS)`: `run` generates that many with the model. */
export async function generationRate(run: (length: number) => AsyncIterable<string>): Promise<number> {
  return (await timeGeneration(run, PROBE_CHARS, WARM_CHARS)).perSecond;
}

const perSecond = (x: number) => `${Math.round(x).toLocaleString("en-US")} characters/s`;

/**
 * The kernels to generate with under `choice`. Auto, where the browser has a WebGPU adapter and the wasm kernels
 * load, calls `rate` on each (which switches the engine to it, puts the model there and returns generationRate of
 * its generation) and takes the faster, saying both figures in `note`; else as chooseBackend. The caller keeps the
 * result for the model: timing costs two short generations.
 */
export async function chooseForGeneration(
  choice: BackendChoice,
  rate: (c: Chosen) => Promise<number>,
  wasmUrl?: string,
  threads?: number,
): Promise<Chosen> {
  if (choice !== "auto") return chooseBackend(choice, "generate", wasmUrl, threads);
  const gpuChosen = await chooseBackend("webgpu", "generate", wasmUrl, threads);
  if (gpuChosen.name !== "webgpu") return gpuChosen; // wasm (or js), with why there is no WebGPU
  const cpuChosen = await chooseBackend("wasm", "generate", wasmUrl, threads);
  if (cpuChosen.name !== "wasm") return gpuChosen; // the wasm kernels did not load: the GPU, untimed
  const gpuRate = await rate(gpuChosen);
  const cpuRate = await rate(cpuChosen);
  const [won, lost, [fast, slow]] =
    gpuRate > cpuRate ? [gpuChosen, "wasm", [gpuRate, cpuRate]] : [cpuChosen, "webgpu", [cpuRate, gpuRate]];
  return { ...won, note: `${won.note} (auto, timed here: ${perSecond(fast)} against ${perSecond(slow)} on ${lost})` };
}
