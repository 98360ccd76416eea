// charlm in a browser (`import { load } from "charlm/browser"`): fetch a checkpoint's manifest and weights, run on
// the WebAssembly kernels (or the js ones) and generate. Nothing here or below imports a Node built-in; a test
// bundles this file for the browser and fails on any.

import { modelFromBytes } from "./checkpoint/from-bytes.js";
import type { Backend } from "./engine/backend.js";
import { setBackend } from "./engine/backends/index.js";
import { jsBackend } from "./engine/backends/js.js";
import { createWasmBackend } from "./engine/backends/wasm.js";
import { CharModel } from "./sample/model.js";

export { CharModel } from "./sample/model.js";
export type { GenerateRequest } from "./sample/model.js";
export { CharlmError } from "./util/errors.js";

export interface BrowserLoadOptions {
  /** URL of kernels.wasm; default: the package's build/kernels.wasm beside this module; false: the js kernels. */
  wasm?: string | URL | false;
  /** Passed to fetch (credentials, headers, signal). */
  fetchInit?: RequestInit;
  /**
   * Build the model on the backend the caller has already made current (e.g. webgpu via setBackend) instead of
   * switching to the kernels from `wasm`; `backend` then names it as given.
   */
  keepBackend?: string;
}

/** Where a checkpoint's two files are: a directory URL (charlm.json and model.safetensors in it), or each one. */
export type CheckpointSource = string | URL | { manifest: string | URL; weights: string | URL };

/** What load() resolves to: a model that generates, and the kernels it runs on. */
export type BrowserModel = CharModel & { manifest: Record<string, unknown>; backend: string; bytes: number };

let kernels: Promise<"wasm" | "js"> | null = null;
let kernelsFrom: string | null = null;
const wasmFrom = new Map<string, Promise<Backend>>();

/** The wasm kernels fetched from `url`, started once per URL (a failed fetch or start is tried again next time). */
export function wasmKernels(url: string, fetchInit?: RequestInit): Promise<Backend> {
  let p = wasmFrom.get(url);
  if (!p) {
    p = fetchOk(url, fetchInit).then(async (res) => createWasmBackend(await res.arrayBuffer()));
    p.catch(() => wasmFrom.delete(url));
    wasmFrom.set(url, p);
  }
  return p;
}

/**
 * Make the engine run on the wasm kernels from `wasm` (once per URL), falling back to the js kernels when the
 * module cannot be fetched or started. A model's tensors live on the backend current when it was built, so this
 * comes before any model is built.
 */
export function useKernels(wasm: string | URL | false | undefined, fetchInit?: RequestInit): Promise<"wasm" | "js"> {
  const url = wasm === false ? null : String(wasm ?? new URL("../build/kernels.wasm", import.meta.url));
  if (kernels && kernelsFrom === url) return kernels;
  kernelsFrom = url;
  kernels = (async () => {
    if (url === null) {
      setBackend(jsBackend);
      return "js";
    }
    try {
      setBackend(await wasmKernels(url, fetchInit));
      return "wasm";
    } catch (err) {
      console.warn("charlm: wasm kernels unavailable, using the js kernels:", err);
      setBackend(jsBackend);
      return "js";
    }
  })();
  return kernels;
}

/** Fetch a checkpoint and rebuild its model for generation. */
export async function load(source: CheckpointSource, options: BrowserLoadOptions = {}): Promise<BrowserModel> {
  const backend = options.keepBackend ?? (await useKernels(options.wasm, options.fetchInit));
  const urls =
    typeof source === "object" && !(source instanceof URL)
      ? { manifest: String(source.manifest), weights: String(source.weights) }
      : { manifest: join(source, "charlm.json"), weights: join(source, "model.safetensors") };
  const [manifest, weights] = await Promise.all([
    fetchOk(urls.manifest, options.fetchInit).then((r) => r.json() as Promise<Record<string, unknown>>),
    fetchOk(urls.weights, options.fetchInit).then((r) => r.arrayBuffer()),
  ]);
  const { model, vocab } = modelFromBytes(manifest, new Uint8Array(weights), urls.manifest);
  return Object.assign(new CharModel(model, vocab), { manifest, backend, bytes: weights.byteLength });
}

/** fetch, with a failed response turned into an error naming the URL (and the server's own message, if JSON). */
export async function fetchOk(url: string, init?: RequestInit): Promise<Response> {
  const res = await fetch(url, init);
  if (!res.ok) {
    const body = (await res.json().catch(() => null)) as { error?: string } | null;
    throw new Error(body?.error ?? `${url}: HTTP ${res.status}`);
  }
  return res;
}

const join = (dir: string | URL, file: string): string => String(dir).replace(/\/*$/, "/") + file;
