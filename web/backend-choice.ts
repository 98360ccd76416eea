// Which kernels the page runs on, for training in the tab and for generating in the browser. The page offers
// auto / webgpu / wasm. Auto trains on webgpu when the browser has an adapter (wasm otherwise) and generates on
// wasm: generation at batch 1 is one small step per character, and reading each character's logits back bounded it
// on a GPU (measured on an H200 through Dawn: 3,118 characters/s for an LSTM 256, against about 7,500 on wasm with
// 2 CPU cores; docs/webgpu.md). The GPU now draws the characters itself, up to 64 per read-back, which lifts that
// bound; until a GPU session has timed it, auto stays on wasm for generation and webgpu generates when picked.
// Training steps are large and never wait for the GPU, which is where it pays.

import type { Backend } from "../src/engine/backend.js";
import { jsBackend } from "../src/engine/backends/js.js";
import { wasmKernels } from "../src/browser.js";

export type BackendChoice = "auto" | "webgpu" | "wasm";
export type Purpose = "train" | "generate";

export interface Chosen {
  backend: Backend;
  /** "webgpu", "wasm" or "js". */
  name: string;
  /** For the page: what runs and why, e.g. "webgpu (google swiftshader)" or "wasm: this browser has no WebGPU". */
  note: string;
}

let gpu: Promise<Backend & { device: string }> | null = null;

/** One WebGPU device per page or worker, made on first use; a failure (no navigator.gpu, no adapter) is retried. */
function loadGpu(): Promise<Backend & { device: string }> {
  gpu ??= import("../src/engine/backends/webgpu/index.js").then((m) => m.createWebgpuBackend());
  gpu.catch(() => (gpu = null));
  return gpu;
}

const reason = (e: unknown): string => (e instanceof Error ? e.message : String(e)).split("\n")[0];

/** The backend for `purpose` under `choice`, falling back (webgpu -> wasm -> js) with the reason in `note`. */
export async function chooseBackend(
  choice: BackendChoice,
  purpose: Purpose,
  wasmUrl = "/kernels.wasm",
): Promise<Chosen> {
  let why = "";
  if (choice === "webgpu" || (choice === "auto" && purpose === "train")) {
    try {
      const b = await loadGpu();
      return { backend: b, name: "webgpu", note: `webgpu (${b.device})` };
    } catch (e) {
      why = `: no WebGPU here, ${reason(e)}`;
    }
  } else if (choice === "auto") {
    why = " (auto generates on wasm, faster than a GPU at batch 1)";
  }
  try {
    return { backend: await wasmKernels(wasmUrl), name: "wasm", note: `wasm${why}` };
  } catch (e) {
    return { backend: jsBackend, name: "js", note: `js (the wasm kernels did not load: ${reason(e)})${why}` };
  }
}
